// Session traces through the real stack: shoppers at wrangler dev (every session sampled:
// TRACE_RATE_PPM=1000000) → edge flush → collector → the records file, and → Kafka (tansu) read
// back with `edgerec-collector dump`; `edgerec simulate --traces` joins them into exactly the
// sessions that were sent, with exactly their events, under pseudonyms that are not session ids.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startStack, startTansu, browser, root } from './stack.mjs';

const stops = [];
after(() => stops.forEach((s) => s()));

// Six shoppers: shopper i views i + 1 distinct items over two requests (shopper 0 views one
// item: a session simulate cannot predict in, so it is skipped, but it is traced).
const SHOPPERS = 6;
const viewsOf = (i) => i + 1;
const EVENTS = Array.from({ length: SHOPPERS }, (_, i) => viewsOf(i)).reduce((a, b) => a + b, 0);

async function shop(base) {
  const sids = [];
  const t0 = Date.now();
  for (let i = 0; i < SHOPPERS; i++) {
    const go = browser(base);
    const items = Array.from({ length: viewsOf(i) }, (_, j) => `sku-${String(10 + i * 8 + j).padStart(4, '0')}`);
    const halves = [items.slice(0, Math.ceil(items.length / 2)), items.slice(Math.ceil(items.length / 2))];
    let n = 0;
    let sid = null;
    for (const half of halves.filter((h) => h.length)) {
      const events = half.map((item) => ({ type: 'view', item, ts: t0 + i * 100 + n++, seq: n }));
      const r = await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ events }) });
      assert.equal(r.status, 202);
      const set = r.headers.getSetCookie().find((c) => c.startsWith('edgerec_sid='));
      if (set) sid = set.split(';')[0].split('=')[1].split('.')[0];
    }
    sids.push(sid);
  }
  return sids;
}

/** Traced events in records-file lines. */
function traced(lines, topic) {
  const frags = lines.filter((l) => l.trim()).map((l) => JSON.parse(l)).filter((r) => r.topic === topic);
  return { frags, events: frags.reduce((a, r) => a + r.value.events.length, 0) };
}

function simulate(file, prefix) {
  const r = spawnSync(path.join(root, 'target/release/edgerec'), ['simulate', '--baseline', 'data/demo/rules.json',
    '--candidate', 'data/demo/rules.json', '--catalog', 'data/demo/catalog.json', '--traces', file, '--prefix', prefix,
    '--bootstrap', '50', '--json'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function check(rep, frags, sids) {
  assert.equal(rep.inputs.traces.sessions, SHOPPERS, 'one joined session per shopper');
  assert.equal(rep.inputs.traces.bad, 0);
  assert.equal(rep.sessions, SHOPPERS - 1, 'the one-view shopper predicts nothing');
  assert.equal(rep.skipped_sessions, 1);
  assert.equal(rep.decisions, EVENTS - SHOPPERS, 'one decision per event but each session\'s last');
  assert.equal(rep.changed_share, 0, 'same bundle on both sides');
  for (const f of frags) {
    assert.match(f.key, /^[0-9a-f]{16}$/);
    for (const sid of sids) assert.ok(sid && !JSON.stringify(f).includes(sid), 'no session id in a trace');
  }
}

test('traces → collector → records file → simulate: exact sessions and events', { timeout: 240_000 }, async () => {
  const stack = await startStack({ TRACE_RATE_PPM: '1000000', FLUSH_MAX_AGE_MS: '0' });
  stops.push(stack.stop);
  const sids = await shop(stack.base);
  let got = { frags: [], events: 0 };
  for (let i = 0; i < 80 && got.events < EVENTS; i++) {
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 250));
    got = existsSync(stack.records) ? traced(readFileSync(stack.records, 'utf8').split('\n'), 'edgerec.sessions') : got;
  }
  assert.equal(got.events, EVENTS, 'every accepted event traced once');
  check(simulate(stack.records, 'edgerec'), got.frags, sids);
});

test('traces → collector → Kafka → dump → simulate: exact sessions and events', { timeout: 240_000 }, async () => {
  const tansu = await startTansu();
  stops.push(tansu.stop);
  const stack = await startStack({ TRACE_RATE_PPM: '1000000', FLUSH_MAX_AGE_MS: '0' },
    { collectorEnv: { KAFKA_BROKERS: tansu.brokers, TOPIC_PREFIX: 'tr' } });
  stops.push(stack.stop);
  const sids = await shop(stack.base);
  const file = path.join(stack.state, 'sessions.jsonl');
  let got = { frags: [], events: 0 };
  for (let i = 0; i < 30 && got.events < EVENTS; i++) {
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 500));
    const out = execFileSync(path.join(root, 'target/release/edgerec-collector'), ['dump', 'tr.sessions', '60'],
      { env: { ...process.env, KAFKA_BROKERS: tansu.brokers }, encoding: 'utf8', maxBuffer: 1 << 26 });
    writeFileSync(file, out);
    got = traced(out.split('\n'), 'tr.sessions');
  }
  assert.equal(got.events, EVENTS, 'every accepted event traced once');
  check(simulate(file, 'tr'), got.frags, sids);
});
