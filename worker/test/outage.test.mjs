// Config KV outages in workerd (Miniflare), seen as a user sees them: the worker keeps serving
// the release it has while refreshes fail, the config-KV breaker opens after BREAKER_THRESHOLD
// failures and makes no KV call during its cool-down, a failed trial re-opens it, and once KV is
// back the next trial loads the release published meanwhile. A slow KV costs a request at most
// CONFIG_BUDGET_MS. A slow session KV costs at most KV_BUDGET_MS and serves the cached tier,
// then its breaker skips it. CONFIG and SESSIONS are real Miniflare namespaces behind
// helpers.mjs `chaosKv`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Miniflare } from 'miniflare';
import { root, publishEntries, seedConfig, serverSession, chaosKv, setChaos, chaosCalls, sleep, edgeWorker } from './helpers.mjs';

const U = 'http://localhost';
const TTL = 2000; // CONFIG_TTL_MS; a failed refresh is retried after 1 s (config.rs)
const COOLDOWN = 4000; // BREAKER_COOLDOWN_MS
const BUDGET = 300; // CONFIG_BUDGET_MS, SHARD_BUDGET_MS and KV_BUDGET_MS
const mfs = [];
after(async () => { for (const mf of mfs) await mf.dispose(); });

async function start() {
  const mf = new Miniflare({
    workers: [
      edgeWorker({
        KV_BUDGET_MS: String(BUDGET), CONFIG_BUDGET_MS: String(BUDGET), SHARD_BUDGET_MS: String(BUDGET),
        BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: String(COOLDOWN), CONFIG_TTL_MS: String(TTL),
        FLUSH_MAX_AGE_MS: '600000',
      }, { wrappedBindings: { CONFIG: { scriptName: 'kv-chaos' }, SESSIONS: { scriptName: 'sessions-chaos' } } }),
      chaosKv(),
      chaosKv('sessions-chaos'),
    ],
  });
  mfs.push(mf);
  await seedConfig(await mf.getKVNamespace('INNER', 'kv-chaos'));
  await setChaos(mf, 'normal');
  await setChaos(mf, 'normal', 'sessions-chaos');
  return mf;
}

const json = async (mf, p, init) => (await mf.dispatchFetch(`${U}${p}`, init)).json();

/** One decision for a session that holds no items: it needs no shard beyond the first call's. */
async function decide(mf) {
  const r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=4`, { headers: serverSession('outage-session-1') });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.items.length, 4);
  return { tier: r.headers.get('x-edgerec-tier'), body };
}

test('config KV down: the loaded release keeps serving, the breaker opens, cools down, and the next release loads when KV is back', async () => {
  const mf = await start();
  const first = await decide(mf);
  assert.equal(first.tier, 'full');
  let h = await json(mf, '/v1/health');
  assert.equal(h.rules, 10);
  const live = h.config;

  // A release published while KV is unreachable to this isolate (written behind the wrapper).
  const bundle = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
  bundle.rules.pop();
  mkdirSync(path.join(root, 'build'), { recursive: true });
  writeFileSync(path.join(root, 'build/rules-outage.json'), JSON.stringify(bundle));
  await setChaos(mf, 'down');
  await seedConfig(await mf.getKVNamespace('INNER', 'kv-chaos'), publishEntries('build/rules-outage.json', 'data/demo/catalog.json', 'build/release-outage'));

  // TTL passed: the refresh fails (failure 1), the loaded release answers unchanged.
  await sleep(TTL + 100);
  let d = await decide(mf);
  assert.equal(d.tier, 'full');
  assert.deepEqual(d.body.items, first.body.items, 'same release, same answer');
  let s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 1, JSON.stringify(s.counters));
  assert.deepEqual([s.breakers.config_kv.failures, s.breakers.config_kv.opened], [1, 0]);

  // Within the 1 s retry pause nothing is tried; after it, failure 2 opens the breaker.
  d = await decide(mf);
  s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 1, 'no retry within the pause');
  await sleep(1100);
  d = await decide(mf);
  assert.equal(d.tier, 'full');
  s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 2);
  assert.deepEqual([s.breakers.config_kv.failures, s.breakers.config_kv.opened], [2, 1]);
  const openedAt = Date.now();

  // Open: past the retry pause, yet no KV call at all, and still the loaded release.
  const calls = await chaosCalls(mf);
  for (let i = 0; i < 3; i++) {
    await sleep(1100);
    d = await decide(mf);
    assert.deepEqual(d.body.items, first.body.items);
    h = await json(mf, '/v1/health');
    assert.deepEqual(h.config, live);
  }
  assert.equal(await chaosCalls(mf), calls, 'an open breaker makes no KV call');
  s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 2);

  // Cool-down over, KV still down: exactly one trial call, which fails and re-opens it.
  await sleep(Math.max(0, openedAt + COOLDOWN + 200 - Date.now()));
  d = await decide(mf);
  assert.equal(d.tier, 'full');
  assert.equal(await chaosCalls(mf), calls + 1, 'one trial: the pointer read');
  s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 3);
  assert.equal(s.breakers.config_kv.opened, 2, JSON.stringify(s.breakers));
  const reopenedAt = Date.now();

  // KV back; after the second cool-down the trial succeeds and loads the new release.
  await setChaos(mf, 'normal');
  await decide(mf);
  assert.equal(await chaosCalls(mf), calls + 1, 'still open: no call');
  await sleep(Math.max(0, reopenedAt + COOLDOWN + 200 - Date.now()));
  d = await decide(mf);
  assert.equal(d.tier, 'full');
  h = await json(mf, '/v1/health');
  assert.equal(h.rules, 9, 'the release published during the outage');
  assert.notDeepEqual(h.config, live);
  assert.deepEqual([h.breakers.config_kv.failures, h.breakers.config_kv.open_until_ms], [0, 0], 'closed again');
  s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_loads, 2);
  assert.equal(s.counters.config_refresh_failures, 3);
});

test(`config KV slow: a due refresh costs a request at most CONFIG_BUDGET_MS (${BUDGET} ms) plus 250 ms tolerance`, async (t) => {
  const mf = await start();
  await decide(mf);
  // Baseline in the same run: a decision with a fresh config.
  const times = async (n) => {
    const t = [];
    for (let i = 0; i < n; i++) { const t0 = performance.now(); await decide(mf); t.push(performance.now() - t0); }
    return t.sort((a, b) => a - b)[n >> 1];
  };
  const base = await times(5);
  await setChaos(mf, 'slow'); // every KV call takes 1.5 s
  await sleep(TTL + 100);
  const t0 = performance.now();
  const d = await decide(mf);
  const slow = performance.now() - t0;
  t.diagnostic(`baseline ${base.toFixed(1)} ms, request with a slow refresh ${slow.toFixed(1)} ms`);
  assert.equal(d.tier, 'full', 'the loaded release answered');
  const s = await json(mf, '/v1/stats');
  assert.equal(s.counters.config_refresh_failures, 1, 'the blown budget counts as a failure');
  assert.ok(slow - base <= BUDGET + 250, `slow refresh cost ${Math.round(slow - base)} ms over a ${Math.round(base)} ms baseline`);
  assert.ok(slow >= BUDGET, `the budget was waited out (${Math.round(slow)} ms)`);
});

test(`session KV slow: the cached tier answers within KV_BUDGET_MS (${BUDGET} ms) plus 250 ms tolerance, and after BREAKER_THRESHOLD timeouts KV is skipped`, async (t) => {
  const mf = await start();
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    assert.equal((await decide(mf)).tier, 'full');
    times.push(performance.now() - t0);
  }
  const base = times.sort((a, b) => a - b)[2];
  await setChaos(mf, 'slow', 'sessions-chaos'); // every session KV call takes 1.5 s
  const timed = async () => {
    const t0 = performance.now();
    const d = await decide(mf);
    return { ...d, ms: performance.now() - t0 };
  };
  const slow = [await timed(), await timed()];
  const calls = await chaosCalls(mf, 'sessions-chaos');
  const skipped = await timed();
  t.diagnostic(`baseline ${base.toFixed(1)} ms; slow reads ${slow.map((x) => x.ms.toFixed(1))} ms; breaker open ${skipped.ms.toFixed(1)} ms`);
  for (const d of slow) {
    assert.equal(d.tier, 'cached');
    assert.ok(d.ms >= BUDGET && d.ms - base <= BUDGET + 250, `${d.ms} ms`);
  }
  assert.equal(skipped.tier, 'cached');
  assert.equal(await chaosCalls(mf, 'sessions-chaos'), calls, 'an open breaker makes no session KV call');
  assert.ok(skipped.ms < BUDGET, `skipping costs no budget: ${skipped.ms} ms`);
  const s = await json(mf, '/v1/stats');
  assert.equal(s.counters.kv_read_timeouts, 2, JSON.stringify(s.counters));
  assert.equal(s.counters.kv_reads_skipped_breaker, 1);
  assert.equal(s.breakers.session_kv.opened, 1);
});
