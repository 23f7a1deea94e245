// End to end with Kafka: events into wrangler dev → edge flush → collector → Kafka (a tansu
// broker on a free port) → consumed back; the totals equal what was sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { startStack, browser, freePort, root } from './stack.mjs';

let stack;
let tansu;
let brokers;

before(async () => {
  const port = await freePort();
  brokers = `127.0.0.1:${port}`;
  const url = `tcp://${brokers}`;
  tansu = spawn('tansu', ['broker', '--listener-url', url, '--advertised-listener-url', url, '--storage-engine', 'memory://tansu/'], { stdio: 'ignore' });
  for (let i = 0; i < 150; i++) {
    if (spawnSync('tansu', ['topic', 'list', '--broker', url], { stdio: 'ignore' }).status === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  stack = await startStack({ FLUSH_MAX_AGE_MS: '0' }, { collectorEnv: { KAFKA_BROKERS: brokers, TOPIC_PREFIX: 'e2e' } });
});

after(() => {
  if (stack) stack.stop();
  if (tansu) tansu.kill('SIGTERM');
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
  const out = execFileSync(path.join(root, 'target/release/edgerec-collector'), ['tally', 'e2e.clicks', String(total), '30'],
    { env: { ...process.env, KAFKA_BROKERS: brokers }, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out).items, sent);
});
