// Shadow evaluation in workerd (Miniflare): two edges with the same release, one whose pointer
// also names a shadow bundle (sampled at 100%). The same server session, the same events and
// requests on both: every answer is byte-identical, and the shadow edge ships exactly one
// shadow evaluation per full decision under the shadow bundle's hash (its own rule counted,
// the served decision's counters unchanged). A shadow that does not load changes nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startWorker, recordingCollector, publishEntries, seedConfig, sleep, root, serverSession } from './helpers.mjs';

const U = 'http://localhost';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {}); });

// The candidate: the demo rules plus one that fires on every decision and pins an item first.
const rules = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
rules.version = 'shadow-candidate';
rules.rules.push({ id: 'shadow-only', priority: 1, when: { all: [] }, then: [{ pin: { item: 'sku-0200', slot: 0 } }] });
const dir = mkdtempSync(path.join(os.tmpdir(), 'edgerec-shadow-'));
const candidate = path.join(dir, 'candidate.json');
writeFileSync(candidate, JSON.stringify(rules));
const hash = JSON.parse(execFileSync(path.join(root, 'target/release/edgerec'), ['check-bundle', '--no-cost', candidate], { encoding: 'utf8' })).hash;

async function edge(shadow, collector, { store = true } = {}) {
  const mf = await startWorker({
    COLLECTOR_URL: `${collector.url}/v1/aggregates`, FLUSH_MAX_AGE_MS: '0',
    SHADOW_RATE_PPM: '1000000', SHADOW_MAX_PER_SECOND: '1000', SHADOW_CPU_BUDGET_US: '1000000000',
  }, { seed: false });
  cleanups.push(() => mf.dispose());
  const entries = publishEntries();
  const kv = await mf.getKVNamespace('CONFIG');
  await seedConfig(kv, entries);
  if (shadow) {
    if (store) await kv.put(`bundle:${shadow}`, readFileSync(candidate, 'utf8'));
    const pointer = JSON.parse(await kv.get('config:current'));
    await kv.put('config:current', JSON.stringify({ ...pointer, shadow }));
  }
  return mf;
}

const session = serverSession('shadow-test-session-1');
const post = (mf, events) => mf.dispatchFetch(`${U}/v1/events`, {
  method: 'POST', body: JSON.stringify({ events }), headers: { 'content-type': 'application/json', ...session },
});
const recs = (mf) => mf.dispatchFetch(`${U}/v1/recommendations?limit=8`, { headers: session });

async function drain(mf, collector, done) {
  for (let i = 0; i < 100 && !done(); i++) {
    await (await mf.dispatchFetch(`${U}/v1/health`)).arrayBuffer();
    await sleep(100);
  }
}

const sum = (batches, f) => batches.reduce((n, b) => n + f(b.delta), 0);

test('answers are byte-identical with and without a shadow; the shadow is counted once per decision', { timeout: 120_000 }, async () => {
  const [ca, cb] = [await recordingCollector(), await recordingCollector()];
  cleanups.push(ca.close, cb.close);
  const [a, b] = [await edge(null, ca), await edge(hash, cb)];
  const t = Date.now() - 60_000;
  const views = ['sku-0005', 'sku-0005', 'sku-0005', 'sku-0042', 'sku-0101'];
  const REQUESTS = 6;
  const answers = [[], []];
  for (let i = 0; i < views.length; i++) {
    const ev = [{ type: 'view', item: views[i], ts: t + i * 1000, seq: i + 1 }];
    for (const mf of [a, b]) assert.equal((await post(mf, ev)).status, 202);
  }
  for (let i = 0; i < REQUESTS; i++) {
    for (const [j, mf] of [a, b].entries()) {
      const r = await recs(mf);
      assert.equal(r.status, 200);
      answers[j].push({ tier: r.headers.get('x-edgerec-tier'), cookie: r.headers.get('set-cookie'), body: await r.text() });
    }
  }
  assert.deepEqual(answers[1], answers[0], 'the shadow changes no byte of any answer');
  assert.ok(answers[0].every((x) => x.tier === 'full'));

  const shadowOf = (d) => (d.shadow || {})[hash] || {};
  await drain(b, cb, () => sum(cb.batches, (d) => shadowOf(d).evaluations || 0) >= REQUESTS && sum(cb.batches, (d) => d.decisions) >= REQUESTS);
  await drain(a, ca, () => sum(ca.batches, (d) => d.decisions) >= REQUESTS);
  const evals = sum(cb.batches, (d) => shadowOf(d).evaluations || 0);
  assert.equal(evals, REQUESTS, 'one shadow evaluation per full decision');
  assert.equal(sum(cb.batches, (d) => shadowOf(d).skipped || 0), 0);
  assert.equal(sum(cb.batches, (d) => (shadowOf(d).rule_hits || {})['shadow-only'] || 0), REQUESTS, 'its own rule fired every time');
  const changed = sum(cb.batches, (d) => shadowOf(d).changed || 0);
  const overlap = sum(cb.batches, (d) => shadowOf(d).overlap_milli || 0) / 1000 / REQUESTS;
  console.log(`# shadow ${hash}: ${evals} evaluations, ${changed} changed, mean overlap@8 ${overlap.toFixed(3)}`);
  assert.equal(changed, REQUESTS, 'the pin changes every list');
  assert.ok(overlap > 0.5 && overlap < 1, `one item in, one out: ${overlap}`);
  // The served decisions' counters are the same on both edges; only the shadow edge has shadow counters.
  const served = (bs) => ({ decisions: sum(bs, (d) => d.decisions), hits: sum(bs, (d) => Object.values(d.rule_hits).reduce((x, y) => x + y, 0)) });
  assert.deepEqual(served(cb.batches), served(ca.batches));
  assert.equal(sum(ca.batches, (d) => Object.keys(d.shadow || {}).length), 0);
  assert.ok(!sum(cb.batches, (d) => ((d.rule_hits || {})['shadow-only'] || 0)), 'the shadow rule never counts as served');
});

test('a shadow that does not load is counted and changes nothing', { timeout: 60_000 }, async () => {
  const c = await recordingCollector();
  cleanups.push(c.close);
  // Named but never stored, and stored under a hash that is not its content's.
  const mf = await edge('ffffffffffffffff', c, { store: false });
  const forged = await edge('eeeeeeeeeeeeeeee', c);
  assert.equal((await post(mf, [{ type: 'view', item: 'sku-0005', ts: Date.now() - 1000, seq: 1 }])).status, 202);
  const r = await recs(mf);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-edgerec-tier'), 'full');
  const stats = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  assert.ok(stats.counters.shadow_load_failures >= 1, JSON.stringify(stats.counters));
  assert.equal(stats.counters.shadow_evaluations ?? 0, 0);
  assert.deepEqual(stats.aggregates.delta.shadow, {});
  assert.equal((await post(forged, [{ type: 'view', item: 'sku-0005', ts: Date.now() - 1000, seq: 1 }])).status, 202);
  assert.equal((await recs(forged)).status, 200);
  const f = await (await forged.dispatchFetch(`${U}/v1/stats`)).json();
  assert.ok(f.counters.shadow_load_failures >= 1, 'a bundle whose content does not hash to its key is refused');
  assert.equal(f.counters.shadow_evaluations ?? 0, 0);
});
