// End to end with Kafka: events into wrangler dev → edge flush → collector → Kafka (a tansu
// broker on a free port) → consumed back; the totals equal what was sent. Then the feedback
// loop: shoppers' moves → Kafka → trainer → snapshot in the edge's KV → new recommendations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { startStack, startTansu, browser, root } from './stack.mjs';

let stack;
let tansu;
let brokers;

before(async () => {
  tansu = await startTansu();
  brokers = tansu.brokers;
  stack = await startStack({ FLUSH_MAX_AGE_MS: '0', CONFIG_TTL_MS: '1000' }, { collectorEnv: { KAFKA_BROKERS: brokers, TOPIC_PREFIX: 'e2e' } });
});

after(() => {
  if (stack) stack.stop();
  if (tansu) tansu.stop();
});

test('clicks at the edge are consumed back from Kafka with exact totals', async () => {
  const go = browser(stack.base);
  const sent = { 'sku-0201': 2, 'sku-0202': 5, 'sku-0203': 1 };
  const now = Date.now();
  let n = 0;
  for (const [item, times] of Object.entries(sent)) {
    for (let i = 0; i < times; i++) {
      const r = await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ events: [{ type: 'click', item, ts: now + n++ }] }) });
      assert.equal(r.status, 202);
    }
  }
  // Later requests drive the edge's flush; wait until the collector has written enough.
  const total = Object.values(sent).reduce((a, b) => a + b, 0);
  for (let i = 0; i < 60; i++) {
    await (await go('/v1/health')).arrayBuffer();
    const m = await (await fetch(`${stack.collector}/metrics`)).text();
    const written = [...m.matchAll(/records_total\{topic="e2e\.clicks"\} (\d+)/g)].reduce((a, x) => a + Number(x[1]), 0);
    if (written >= Object.keys(sent).length) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const out = JSON.parse(execFileSync(path.join(root, 'target/release/edgerec-collector'), ['tally', 'e2e.clicks', '60'],
    { env: { ...process.env, KAFKA_BROKERS: brokers }, encoding: 'utf8' }));
  assert.deepEqual(out.items, sent);
  assert.equal(Object.values(out.items).reduce((a, b) => a + b, 0), total);
  assert.equal(out.doubles, 0, 'tally read to the end: no record written twice');
});

async function recs(go) {
  const r = await go('/v1/recommendations?limit=5');
  assert.equal(r.status, 200);
  return (await r.json()).items;
}

test('feedback loop: moves seen at the edge reach Kafka, the trainer publishes, the edge recommends them', async () => {
  // Before: a shopper looking at the racer is not shown the kitchen scale.
  const before = browser(stack.base);
  const view = (go, item, ts) => go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ type: 'view', item, ts }] }) });
  assert.equal((await view(before, 'sku-0005', Date.now())).status, 202);
  assert.ok(!(await recs(before)).some((i) => i.id === 'sku-0163'));

  // Six shoppers go from the racer to the scale.
  for (let s = 0; s < 6; s++) {
    const go = browser(stack.base);
    const t = Date.now();
    assert.equal((await view(go, 'sku-0005', t)).status, 202);
    assert.equal((await view(go, 'sku-0163', t + 1)).status, 202);
  }
  for (let i = 0; i < 60; i++) {
    await (await browser(stack.base)('/v1/health')).arrayBuffer();
    const m = await (await fetch(`${stack.collector}/metrics`)).text();
    const written = [...m.matchAll(/records_total\{topic="e2e\.transitions"\} (\d+)/g)].reduce((a, x) => a + Number(x[1]), 0);
    if (written >= 1) break;
    await new Promise((r) => setTimeout(r, 250));
  }

  // The trainer consumes the topics and publishes into the stack's local KV.
  const work = mkdtempSync(path.join(os.tmpdir(), 'edgerec-trainer-'));
  const out = execFileSync(path.join(root, 'target/release/edgerec-trainer'), ['kafka', '--brokers', brokers, '--prefix', 'e2e',
    '--group', 'e2e-trainer', '--session-timeout-ms', '2000', '--idle', '3s', '--half-life', '0',
    '--state-dir', path.join(work, 'state'), '--out', path.join(work, 'out'),
    '--base-catalog', 'data/demo/catalog.json', '--kv', 'local', '--persist-to', stack.state],
  { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(out, /applied [1-9]\d* records/);
  const pointer = JSON.parse(execFileSync('npx', ['wrangler', 'kv', 'key', 'get', '--local', '--binding', 'CONFIG',
    '--persist-to', stack.state, 'config:current'], { cwd: root, encoding: 'utf8' }));
  assert.match(pointer.catalog, /^[0-9a-f]{16}$/, "the pointer names the new model head");

  // After: a new shopper on the racer gets the scale first, explained by the racer. (The
  // first request after the pause may meet a keep-alive socket wrangler already closed.)
  try { await fetch(`${stack.base}/v1/health`); } catch { /* stale pooled socket */ }
  let items = [];
  for (let i = 0; i < 40; i++) {
    const go = browser(stack.base);
    await view(go, 'sku-0005', Date.now());
    items = await recs(go);
    if (items[0]?.id === 'sku-0163') break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(items[0]?.id, 'sku-0163', JSON.stringify(items));
  assert.ok(items[0].why.includes('related:sku-0005'), JSON.stringify(items[0]));
  rmSync(work, { recursive: true, force: true });
});
