// Shared setup for the worker tests: the built worker in workerd (Miniflare), config seeded
// into its CONFIG KV exactly as `make dev` seeds wrangler's local KV, a demo origin, and a
// recording collector endpoint that verifies batch signatures.
import { Miniflare } from 'miniflare';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode } from '@msgpack/msgpack';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const COLLECTOR_SECRET = 'test-collector-secret';
/** The key server-to-server clients present (`authorization: Bearer …`). */
export const SERVER_API_KEY = 'test-server-api-key-0123';
/** Headers naming a server-to-server session. */
export const serverSession = (id) => ({ 'x-edgerec-session': id, authorization: `Bearer ${SERVER_API_KEY}` });

/**
 * The release `edgerec publish` prepares for a bundle and catalog (the demo's by default), in
 * write order: [{key, value}] with `value` a string (shards) or bytes (bundle, head, pointer).
 */
export function publishEntries(bundle = 'data/demo/rules.json', catalog = 'data/demo/catalog.json', out = 'build/release-demo', extra = []) {
  out = path.join(root, out);
  const source = catalog ? ['--catalog', path.join(root, catalog)] : [];
  execFileSync(path.join(root, 'target/release/edgerec'), [
    'publish', '--bundle', path.join(root, bundle), ...source, '--out', out, ...extra,
  ], { maxBuffer: 1 << 26 });
  return JSON.parse(readFileSync(path.join(out, 'keys.json'), 'utf8')).flatMap((k) => k.kind === 'bulk'
    ? JSON.parse(readFileSync(path.join(out, k.file), 'utf8'))
    : [{ key: k.key, value: readFileSync(path.join(out, k.file)) }]);
}

export async function seedConfig(kv, entries = publishEntries()) {
  for (const e of entries) {
    const v = e.value;
    await kv.put(e.key, typeof v === 'string' ? v : v.buffer.slice(v.byteOffset, v.byteOffset + v.length));
  }
}

/** An HTTP server on 127.0.0.1 with an ephemeral port. */
export async function listen(handler) {
  const server = http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/**
 * A collector endpoint that checks signatures and records decoded batches. `respond` picks the
 * status per request (default 200).
 */
export async function recordingCollector(respond = () => 200) {
  const batches = [];
  const attempts = [];
  const srv = await listen((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const ts = req.headers['x-edgerec-timestamp'];
      const want = 'v1=' + createHmac('sha256', COLLECTOR_SECRET).update(`${ts}.`).update(body).digest('hex');
      const signed = req.headers['x-edgerec-signature'] === want;
      let batch = null;
      try { batch = decode(body); } catch { /* recorded as undecodable */ }
      attempts.push({ signed, id: batch && batch.id });
      const status = signed ? respond(attempts.length, batch) : 401;
      if (status === 200 && batch) batches.push(batch);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: status === 200 }));
    });
  });
  return { ...srv, batches, attempts };
}

export async function demoOrigin() {
  const origin = await listen((req, res) => {
    if (req.url === '/style.css') {
      res.writeHead(200, { 'content-type': 'text/css', 'x-origin': 'demo', 'cache-control': 'max-age=60' });
      return res.end('body{color:red}');
    }
    if (req.url === '/p/sku-0005') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end('<!doctype html><html><body><article data-edgerec-view="sku-0005">Shoe</article>' +
        '<div data-edgerec-slot="product-related">fallback</div></body></html>');
    }
    if (req.url === '/echo-cookies') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ cookie: req.headers.cookie || '' }));
    }
    res.writeHead(404, { 'content-type': 'text/html' });
    res.end('<html><body><h1>Not found</h1></body></html>');
  });
  return origin;
}

/**
 * The worker's Miniflare definition (the test build) with the test secrets and `bindings`;
 * `extra` adds fields such as `kvNamespaces` or `wrappedBindings`. A binding given as
 * `undefined` is left out (a worker without that setting).
 */
export function edgeWorker(bindings = {}, extra = {}) {
  return {
    name: 'edge',
    cf: false,
    modules: true,
    scriptPath: path.join(root, 'worker/build-test/index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-01',
    ...extra,
    bindings: Object.fromEntries(Object.entries({
      SESSION_SECRET: 'test-session-secret',
      COLLECTOR_SECRET,
      SERVER_API_KEY,
      ...bindings,
    }).filter(([, v]) => v !== undefined)),
  };
}

export async function startWorker(bindings = {}, { seed = true, kv = ['SESSIONS', 'CONFIG'], options = {} } = {}) {
  const mf = new Miniflare({
    ...options,
    ...edgeWorker({
      KV_BUDGET_MS: '1000',
      CONFIG_BUDGET_MS: '2000',
      FLUSH_MAX_AGE_MS: '600000',
      ...bindings,
    }, { kvNamespaces: kv }),
  });
  if (seed) await seedConfig(await mf.getKVNamespace('CONFIG'));
  return mf;
}

/** A cookie jar for one simulated browser. */
export class Jar {
  constructor() { this.cookies = new Map(); }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
  take(resp) {
    for (const c of resp.headers.getSetCookie ? resp.headers.getSetCookie() : []) {
      const [kv] = c.split(';');
      const i = kv.indexOf('=');
      this.cookies.set(kv.slice(0, i), kv.slice(i + 1));
    }
    return resp;
  }
}

export const T = () => Date.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A Miniflare worker (named `name`) whose default export wraps a real KV namespace (INNER) so
 * a test can make it slow (1.5 s per call) or unavailable (every call throws) by writing
 * `mode` into its CONTROL namespace; it counts the calls it is given (CONTROL `calls`). Bind it
 * with `wrappedBindings: { CONFIG: { scriptName: name } }`. The only test double: it injects
 * the outage; the data behind it is the real namespace.
 */
export const chaosKv = (name = 'kv-chaos') => ({
  name,
  modules: true,
  kvNamespaces: { INNER: `${name}-inner`, CONTROL: `${name}-control` },
  script: `
let calls = 0;
export default function (env) {
  const guard = async () => {
    await env.CONTROL.put('calls', String(++calls));
    const m = await env.CONTROL.get('mode');
    if (m === 'slow') await new Promise((r) => setTimeout(r, 1500));
    if (m === 'down') throw new Error('KV unavailable (injected)');
  };
  return {
    async get(k, o) { await guard(); return env.INNER.get(k, o); },
    async getWithMetadata(k, o) { await guard(); return env.INNER.getWithMetadata(k, o); },
    async put(k, v, o) { await guard(); return env.INNER.put(k, v, o); },
    async list(o) { await guard(); return env.INNER.list(o); },
    async delete(k) { await guard(); return env.INNER.delete(k); },
  };
}`,
});

/** Sets a chaos wrapper's mode: 'normal', 'slow' or 'down'. */
export async function setChaos(mf, mode, name = 'kv-chaos') {
  await (await mf.getKVNamespace('CONTROL', name)).put('mode', mode);
}

/** Calls a chaos wrapper has been given so far. */
export async function chaosCalls(mf, name = 'kv-chaos') {
  return Number(await (await mf.getKVNamespace('CONTROL', name)).get('calls') || 0);
}
