// Integrity end to end, through wrangler dev (workerd), real collectors, a real Kafka-protocol
// broker (tansu) and the trainer:
// 1. both collectors stopped for 60 s while 20 shoppers send 20 requests/s, behind a load
//    balancer that spreads retries over the two and loses some of their answers (so a batch
//    is written by both): the trainer and `tally` count exactly what the edge accepted;
// 2. a bounded flood from one client is throttled and cannot change the model's top related
//    item, which 60 ordinary shoppers set.
// The load balancer is a 40-line Node proxy standing in for the one in front of the collectors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { decode } from '@msgpack/msgpack';
import { startStack, startTansu, browser, freePort, root } from './stack.mjs';

const SECRET = 'dev-collector-secret';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let tansu;
let brokers;
const cleanups = [];

before(async () => {
  tansu = await startTansu();
  brokers = tansu.brokers;
});

after(() => {
  for (const c of cleanups.reverse()) { try { c(); } catch { /* gone */ } }
  if (tansu) tansu.stop();
});

/** A collector process in Kafka mode on a fixed port (restartable on the same port). */
function collector(port, prefix) {
  let child = null;
  const start = async () => {
    child = spawn(path.join(root, 'target/release/edgerec-collector'), [], {
      stdio: 'ignore',
      env: { ...process.env, COLLECTOR_ADDR: `127.0.0.1:${port}`, COLLECTOR_SECRET: SECRET, KAFKA_BROKERS: brokers, TOPIC_PREFIX: prefix },
    });
    for (let i = 0; i < 120; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return; } catch { /* starting */ }
      await sleep(250);
    }
    throw new Error(`collector on ${port} not ready`);
  };
  const stop = () => { if (child) child.kill('SIGKILL'); child = null; };
  cleanups.push(stop);
  return { start, stop, url: `http://127.0.0.1:${port}` };
}

/** Round-robin proxy over the collectors; every `loseEvery`-th answer is lost after the write. */
async function loadBalancer(targets, loseEvery) {
  let n = 0;
  const stats = { requests: 0, lost: 0, unreachable: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const i = n++;
      stats.requests++;
      const target = new URL(req.url, targets[i % targets.length]);
      const up = http.request(target, { method: req.method, headers: req.headers }, (r) => {
        const body = [];
        r.on('data', (c) => body.push(c));
        r.on('end', () => {
          if (i % loseEvery === loseEvery - 1) {
            stats.lost++;
            req.socket.destroy(); // written, but the edge never hears it
            return;
          }
          res.writeHead(r.statusCode, r.headers);
          res.end(Buffer.concat(body));
        });
      });
      up.on('error', () => { stats.unreachable++; res.writeHead(502); res.end('{"errors":[{"field":"collector","message":"unreachable"}]}'); });
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return { url: `http://127.0.0.1:${server.address().port}`, stats };
}

function trainKafka(prefix, work) {
  const out = execFileSync(path.join(root, 'target/release/edgerec-trainer'), ['kafka', '--brokers', brokers, '--prefix', prefix,
    '--group', `${prefix}-trainer`, '--idle', '5s', '--half-life', '0',
    '--state-dir', path.join(work, 'state'), '--out', path.join(work, 'out')],
  { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out.trim().split('\n').pop());
}

const tally = (topic) => JSON.parse(execFileSync(path.join(root, 'target/release/edgerec-collector'), ['tally', topic, '90'],
  { env: { ...process.env, KAFKA_BROKERS: brokers }, encoding: 'utf8' }));

test('a 60 s outage of both collectors at 20 requests/s, retries over two collectors: exact totals in Kafka and in the trainer', async () => {
  const prefix = 'int';
  const a = collector(await freePort(), prefix);
  const b = collector(await freePort(), prefix);
  await Promise.all([a.start(), b.start()]);
  const lb = await loadBalancer([a.url, b.url], 3);
  const stack = await startStack({ COLLECTOR_URL: `${lb.url}/v1/aggregates`, FLUSH_MAX_AGE_MS: '1000' });
  cleanups.push(stack.stop);
  const shoppers = Array.from({ length: 20 }, (_, s) => ({ go: browser(stack.base), ip: `198.51.100.${s + 1}`, k: 0, last: null, seen: new Set() }));
  const views = {};
  let transitions = 0;
  let accepted = 0;
  const RATE = 20;
  const SECONDS = 80;
  const start = Date.now();
  let phase = 'up';
  for (let i = 0; i < RATE * SECONDS; i++) {
    const t = (Date.now() - start) / 1000;
    if (phase === 'up' && t >= 10) { a.stop(); b.stop(); phase = 'down'; }
    if (phase === 'down' && t >= 70) { await Promise.all([a.start(), b.start()]); phase = 'back'; }
    const s = shoppers[i % shoppers.length];
    const item = `sku-0${100 + (s.k++ % 60)}`;
    const r = await s.go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json', 'cf-connecting-ip': s.ip },
      body: JSON.stringify({ events: [{ type: 'view', item, ts: Date.now() }] }) });
    const text = await r.text();
    assert.equal(r.status, 202, text);
    accepted += JSON.parse(text).accepted;
    views[item] = (views[item] || 0) + 1;
    // The edge ships a transition on a session's first arrival at an item.
    if (!s.seen.has(item) && s.last) transitions++;
    s.seen.add(item);
    s.last = item;
    await sleep(Math.max(0, start + ((i + 1) * 1000) / RATE - Date.now()));
  }
  const seconds = (Date.now() - start) / 1000;
  assert.equal(accepted, RATE * SECONDS);
  // Later requests drive the outbox until it is empty.
  let st;
  for (let i = 0; i < 240; i++) {
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    st = await (await fetch(`${stack.base}/v1/stats`)).json();
    if (st.aggregates.unacked_batches === 0 && st.aggregates.buffered_events === 0) break;
    await sleep(250);
  }
  console.log(`# ${accepted} events in ${seconds.toFixed(1)} s (${(accepted / seconds).toFixed(1)}/s), collectors down 60 s; load balancer ${JSON.stringify(lb.stats)}; edge ${JSON.stringify({ acked: st.counters.batches_acked, failures: st.counters.batch_send_failures, deferred: st.counters.batches_deferred_breaker, dropped: st.counters.events_dropped || 0 })}`);
  assert.deepEqual([st.aggregates.unacked_batches, st.aggregates.buffered_events], [0, 0], 'the outbox drained');
  assert.equal(st.counters.events_dropped || 0, 0, 'nothing dropped at the edge');
  assert.ok(lb.stats.lost >= 1, 'some answers were lost, so some batches went to both collectors');

  const v = tally(`${prefix}.views`);
  console.log(`# tally ${prefix}.views: ${v.records} records, ${v.doubles} doubles, ${v.batches} batches`);
  assert.deepEqual(v.items, views, 'per-item views in Kafka, each batch counted once, equal what the edge accepted');
  assert.ok(v.doubles >= 1, 'two collectors wrote some batches twice: tally sees them');
  const work = mkdtempSync(path.join(os.tmpdir(), 'edgerec-int-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const learned = trainKafka(prefix, work);
  console.log(`# trainer: ${JSON.stringify(learned)}`);
  assert.equal(learned.totals.views, accepted, 'the trainer learned every view exactly once');
  assert.equal(learned.totals.transitions, transitions, 'and every transition');
  assert.ok(learned.copies >= v.doubles, 'copies were recognised and skipped');
});

test('a bounded flood from one client is throttled and cannot change the model\'s top related item', async () => {
  const stack = await startStack({ FLUSH_MAX_AGE_MS: '500' });
  cleanups.push(stack.stop);
  const [A, X, Y] = ['sku-0005', 'sku-0163', 'sku-0170'];
  const post = (go, ip, events) => go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json', 'cf-connecting-ip': ip }, body: JSON.stringify({ events }) });
  // 60 shoppers, each from their own address, go from A to X (a flood straddling a rate-limit
  // window gets at most 2 × 20 sessions, each shipping one A→Y transition).
  for (let s = 0; s < 60; s++) {
    const go = browser(stack.base);
    const t = Date.now();
    assert.equal((await post(go, `203.0.113.${s + 1}`, [{ type: 'view', item: A, ts: t }, { type: 'view', item: X, ts: t + 1 }])).status, 202);
  }
  // One client: 400 cookie-less requests of 500 events going back and forth from A to Y.
  const flood = Array.from({ length: 500 }, (_, i) => ({ type: 'view', item: i % 2 ? Y : A, ts: Date.now() - 2000 + i }));
  const got = { 202: 0, 429: 0 };
  const t0 = Date.now();
  for (let i = 0; i < 400; i++) {
    const r = await post(browser(stack.base), '192.0.2.66', flood);
    got[r.status] = (got[r.status] || 0) + 1;
    await r.arrayBuffer();
  }
  const t1 = Date.now();
  console.log(`# flood: ${JSON.stringify(got)} of 400 requests (200,000 events) in ${t1 - t0} ms`);
  // Fixed one-minute windows aligned to the epoch: a flood straddling a boundary gets two.
  const windows = Math.floor(t1 / 60_000) - Math.floor(t0 / 60_000) + 1;
  assert.ok(got[202] >= 20 && got[202] <= 20 * windows, `new sessions per client per minute: ${got[202]}`);
  for (let i = 0; i < 120; i++) {
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    const st = await (await fetch(`${stack.base}/v1/stats`)).json();
    if (st.aggregates.unacked_batches === 0 && st.aggregates.buffered_events === 0) break;
    await sleep(250);
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'edgerec-flood-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const out = execFileSync(path.join(root, 'target/release/edgerec-trainer'), ['records', '--file', stack.records, '--half-life', '0',
    '--state-dir', path.join(work, 'state'), '--out', path.join(work, 'out'), '--base-catalog', 'data/demo/catalog.json'],
  { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  console.log(`# trainer: ${out.trim().split('\n').pop()}`);
  // The published shards (MessagePack after a format byte, base64 in KV's bulk file): find A's
  // record — [card, popularity, tags, related], card = [id, …], related = [[card, score], …].
  const bulk = readdirSync(path.join(work, 'out')).filter((f) => /^shards-[0-9a-f]{16}-\d+\.json$/.test(f));
  const records = bulk.flatMap((f) => JSON.parse(readFileSync(path.join(work, 'out', f), 'utf8')))
    .flatMap((e) => decode(Buffer.from(e.value, 'base64url').subarray(1))[0]);
  const top = records.find((r) => r[0][0] === A)[3].map(([card, score]) => [card[0], score]);
  console.log(`# related to ${A}: ${JSON.stringify(top.slice(0, 3))}`);
  assert.equal(top[0][0], X, 'the shoppers\' relation stays on top');
});
