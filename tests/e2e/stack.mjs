// Starts the `make dev` stack on free loopback ports for tests and benchmarks: local KV seeded
// by scripts/seed-kv.sh, the demo origin, and the worker under `wrangler dev` (workerd).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1' };

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

export async function waitFor(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(url)).ok) return; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} not up after ${ms} ms`);
}

/**
 * Starts the stack; `vars` are extra worker vars, `collectorEnv` extra collector settings (e.g.
 * KAFKA_BROKERS), `originEnv` the demo origin's (e.g. EXPERIMENTS_REPORT). Returns { base, origin, collector, records, state, stop, stopEdge, startEdge }; `state` is wrangler's
 * local state folder (`--persist-to`), where a trainer publishes.
 */
export async function startStack(vars = {}, { collectorEnv = {}, originEnv = {}, state: keep = null, ready = '/v1/health' } = {}) {
  // `keep`: an already seeded local KV folder, left in place afterwards (benchmarks).
  const state = keep || mkdtempSync(path.join(os.tmpdir(), 'edgerec-stack-'));
  const records = path.join(state, 'records.jsonl');
  const collectorPort = await freePort();
  const collector = spawn(path.join(root, 'target/release/edgerec-collector'), [], {
    stdio: 'ignore',
    env: { ...process.env, COLLECTOR_ADDR: `127.0.0.1:${collectorPort}`, OUTPUT_FILE: records, COLLECTOR_SECRET: 'dev-collector-secret', ...collectorEnv },
  });
  if (!keep) execFileSync(path.join(root, 'scripts/seed-kv.sh'), ['data/demo/rules.json', 'data/demo/catalog.json', '--persist-to', state], { cwd: root, env, stdio: 'ignore' });
  const originPort = await freePort();
  const port = await freePort();
  const origin = spawn('node', [path.join(root, 'www/origin/server.mjs'), String(originPort)], {
    stdio: 'ignore', env: { ...process.env, COLLECTOR_URL: `http://127.0.0.1:${collectorPort}`, ...originEnv },
  });
  const varArgs = Object.entries({
    EDGEREC_DEV: '1',
    ORIGIN_URL: `http://127.0.0.1:${originPort}`,
    COLLECTOR_URL: `http://127.0.0.1:${collectorPort}/v1/aggregates`,
    ...vars,
  }).flatMap(([k, v]) => ['--var', `${k}:${v}`]);
  let wrangler = null;
  const startEdge = () => {
    wrangler = spawn('npx', ['wrangler', 'dev', '--local', '--ip', '127.0.0.1', '--port', String(port), '--persist-to', state,
      '--show-interactive-dev-session=false', ...varArgs], { cwd: root, env, stdio: process.env.STACK_LOG ? 'inherit' : 'ignore', detached: true });
  };
  const stopEdge = async () => {
    const w = wrangler;
    wrangler = null;
    if (!w) return;
    const gone = new Promise((r) => w.once('exit', r));
    try { process.kill(-w.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    try { process.kill(-w.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  startEdge();
  const base = `http://127.0.0.1:${port}`;
  const stop = () => {
    try { if (wrangler) process.kill(-wrangler.pid, 'SIGTERM'); } catch { /* gone */ }
    try { origin.kill('SIGTERM'); } catch { /* gone */ }
    try { collector.kill('SIGTERM'); } catch { /* gone */ }
    if (!keep) rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitFor(`http://127.0.0.1:${collectorPort}/readyz`, 30_000);
    await waitFor(`${base}${ready}`, 90_000);
  } catch (e) {
    stop();
    throw e;
  }
  return {
    base, origin: `http://127.0.0.1:${originPort}`, collector: `http://127.0.0.1:${collectorPort}`, records, state, stop,
    /** Stops the edge (wrangler dev) only; origin, collector and KV state stay. */
    stopEdge,
    /** Starts the edge again on the same port and state; resolves when it answers. */
    startEdge: async () => { startEdge(); await waitFor(`${base}${ready}`, 90_000); },
    /** The wrangler process group's pid (its workerd is a descendant). */
    edgePid: () => wrangler && wrangler.pid,
  };
}

/** A tansu broker (Kafka protocol, in-memory) on a free port; resolves once it answers. */
export async function startTansu() {
  const port = await freePort();
  const brokers = `127.0.0.1:${port}`;
  const url = `tcp://${brokers}`;
  const child = spawn('tansu', ['broker', '--listener-url', url, '--advertised-listener-url', url, '--storage-engine', 'memory://tansu/'], { stdio: 'ignore' });
  for (let i = 0; i < 150; i++) {
    if (spawnSync('tansu', ['topic', 'list', '--broker', url], { stdio: 'ignore' }).status === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return { brokers, stop: () => child.kill('SIGTERM') };
}

/** A tiny cookie jar over fetch (one browser's cookies). */
export { jar as browser } from '../../scripts/shoppers.mjs';
