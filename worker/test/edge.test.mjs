// Interception, fallbacks, aggregates and the conformance corpus, in workerd (Miniflare).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startWorker, demoOrigin, recordingCollector, Jar, sleep, root, serverSession } from './helpers.mjs';

const U = 'http://localhost';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function worker(bindings, opts) {
  const mf = await startWorker(bindings, opts);
  cleanups.push(() => mf.dispose());
  return mf;
}

test('HTML pages get slots filled and the tracker; everything else passes through untouched', async () => {
  const origin = await demoOrigin();
  cleanups.push(origin.close);
  const mf = await worker({ ORIGIN_URL: origin.url });
  const jar = new Jar();
  let r = await mf.dispatchFetch(`${U}/p/sku-0005`);
  jar.take(r);
  const html = await r.text();
  assert.equal(r.status, 200);
  assert.match(html, /<div data-edgerec-slot="product-related" data-edgerec-filled="full"><a class="edgerec-item"/);
  assert.doesNotMatch(html, />fallback</);
  assert.match(html, /<script type="module" src="\/edgerec\/tracker.js" data-edgerec-tracker><\/script><\/body>/);
  assert.equal((html.match(/class="edgerec-item"/g) || []).length, 4);
  r = await mf.dispatchFetch(`${U}/style.css`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'body{color:red}');
  assert.equal(r.headers.get('x-origin'), 'demo');
  assert.equal(r.headers.get('cache-control'), 'max-age=60');
  r = await mf.dispatchFetch(`${U}/missing`);
  assert.equal(r.status, 404, 'origin status kept');
  assert.match(await r.text(), /Not found/);
  // The origin never sees edgerec cookies.
  r = await mf.dispatchFetch(`${U}/echo-cookies`, { headers: { cookie: `theme=dark; ${jar.header()}` } });
  assert.deepEqual(await r.json(), { cookie: 'theme=dark' });
  r = await mf.dispatchFetch(`${U}/edgerec/tracker.js`);
  assert.match(r.headers.get('content-type'), /javascript/);
  // The tracker as served: www/tracker.js without comments and indentation.
  const served = await r.text();
  const source = (await import('node:fs')).readFileSync(new URL('../../www/tracker.js', import.meta.url), 'utf8');
  assert.ok(served.length < source.length * 0.8, `${served.length} vs ${source.length}`);
  assert.ok(served.includes('globalThis.edgerec = {') && !served.includes('// '));
});

test('no session KV: decisions fall back to the cached tier, then the breaker stops calling it', async () => {
  // The SESSIONS binding is unusable (here: not a KV namespace at all).
  const mf = await worker({ SESSIONS: 'not-a-namespace', BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '60000' }, { kv: ['CONFIG'] });
  const tiers = [];
  for (let i = 0; i < 5; i++) {
    const r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=4`, { headers: { ...serverSession('fallback-session-1'), 'x-edgerec-country': 'AT' } });
    assert.equal(r.status, 200);
    tiers.push(r.headers.get('x-edgerec-tier'));
    const body = await r.json();
    assert.equal(body.items.length, 4);
  }
  assert.deepEqual([...new Set(tiers)], ['cached'], tiers.join());
  const stats = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  // BREAKER_THRESHOLD=2: requests 1 and 2 find the binding unusable and open the breaker;
  // requests 3-5 skip KV. One segment (AT, no slot, limit 4): computed once, then 4 hits.
  assert.equal(stats.counters.kv_binding_errors, 2, JSON.stringify(stats.counters));
  assert.equal(stats.counters.kv_reads_skipped_breaker, 3);
  assert.equal(stats.breakers.session_kv.opened, 1);
  assert.equal(stats.counters.fallback_cached, 5);
  assert.equal(stats.counters.segment_cache_hits, 4);
});

test('an internal error in a decision: the static rung answers (test-build fault header), pages still filled', async () => {
  const origin = await demoOrigin();
  cleanups.push(origin.close);
  const mf = await worker({ ENABLE_CONFORMANCE: '1', ORIGIN_URL: origin.url });
  const session = serverSession('ladder-session-1');
  let r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=4&slot=home`, { headers: session });
  assert.equal(r.headers.get('x-edgerec-tier'), 'full', 'without the fault: the full rung');
  r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=4&slot=home`, { headers: { ...session, 'x-edgerec-fault': 'decide' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-edgerec-tier'), 'static');
  const body = await r.json();
  assert.equal(body.tier, 'static');
  assert.equal(body.items.length, 4);
  assert.equal(body.state, undefined, 'the static rung hands back no session state');
  // The slot markup is the core's: one link per item, in order, to ITEM_URL_TEMPLATE's default.
  const ids = [...body.html.matchAll(/<a class="edgerec-item" href="\/p\/([^"]+)" data-edgerec-item="([^"]+)"/g)];
  assert.deepEqual(ids.map((m) => m[2]), body.items.map((i) => i.id));
  assert.deepEqual(ids.map((m) => m[1]), body.items.map((i) => encodeURIComponent(i.id)));
  const page = await mf.dispatchFetch(`${U}/p/sku-0005`, { headers: { 'x-edgerec-fault': 'decide' } });
  assert.match(await page.text(), /data-edgerec-filled="static"><a class="edgerec-item"/);
  const stats = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  assert.equal(stats.counters.fallback_static, 2, JSON.stringify(stats.counters));
  assert.equal(stats.counters.decisions_static, 2);
  assert.equal(stats.counters.decisions_full, 1);
});

test('without ENABLE_CONFORMANCE the fault header is ignored', async () => {
  const mf = await worker({});
  const r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=4`, { headers: { ...serverSession('ladder-session-2'), 'x-edgerec-fault': 'decide' } });
  assert.equal(r.headers.get('x-edgerec-tier'), 'full');
});

test('no config at all: an empty static answer, still 200; events are refused with 503, not lost silently', async () => {
  const mf = await worker({}, { seed: false });
  const r = await mf.dispatchFetch(`${U}/v1/recommendations`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-edgerec-tier'), 'static');
  assert.deepEqual((await r.json()).items, []);
  const e = await mf.dispatchFetch(`${U}/v1/events`, { method: 'POST', body: JSON.stringify({ events: [{ type: 'view', item: 'a', ts: Date.now() }] }) });
  assert.equal(e.status, 503);
  assert.equal((await e.json()).errors[0].field, 'config');
});

test('aggregates reach the collector signed, and a failed batch is retried with the same id', async () => {
  let refuse = 2;
  const collector = await recordingCollector(() => (refuse-- > 0 ? 503 : 200));
  cleanups.push(collector.close);
  const mf = await worker({ COLLECTOR_URL: `${collector.url}/v1/aggregates`, FLUSH_MAX_AGE_MS: '0', BREAKER_THRESHOLD: '100' });
  const jar = new Jar();
  const now = Date.now();
  let sent = 0;
  for (let i = 0; i < 6; i++) {
    const r = await mf.dispatchFetch(`${U}/v1/events`, {
      method: 'POST',
      body: JSON.stringify({ events: [{ type: 'view', item: `sku-000${i + 1}`, ts: now + i }, { type: 'click', item: `sku-000${i + 1}`, ts: now + i }] }),
      headers: { 'content-type': 'application/json', cookie: jar.header() },
    });
    jar.take(r);
    sent += 2;
    await sleep(50);
  }
  // Later requests drive retries, which back off 1 s, then 2 s.
  for (let i = 0; i < 80 && collector.batches.reduce((n, b) => n + b.delta.events, 0) < sent; i++) {
    await (await mf.dispatchFetch(`${U}/v1/health`)).arrayBuffer();
    await sleep(100);
  }
  assert.ok(collector.attempts.every((a) => a.signed), 'every request is signed');
  const ids = collector.batches.map((b) => b.id);
  assert.equal(new Set(ids).size, ids.length, 'acknowledged batches are distinct');
  const refused = collector.attempts.slice(0, 2).map((a) => a.id);
  assert.ok(refused.every((id) => ids.includes(id)), 'refused batches were retried under the same id');
  const views = collector.batches.reduce((n, b) => n + Object.values(b.delta.items).reduce((m, c) => m + (c.views || 0), 0), 0);
  const events = collector.batches.reduce((n, b) => n + b.delta.events, 0);
  assert.equal(events, sent, 'every event counted exactly once');
  assert.equal(views, 6);
  const transitions = collector.batches.flatMap((b) => Object.keys(b.delta.transitions || {}));
  assert.ok(transitions.includes('sku-0001'), 'item→item transitions are shipped');
});

test('the conformance corpus gives the same decisions in workerd as natively', async () => {
  const mf = await worker({ ENABLE_CONFORMANCE: '1' });
  const dir = path.join(root, 'tests/conformance');
  const native = JSON.parse(execFileSync(path.join(root, 'target/release/edgerec'), ['conformance', '--dir', dir, '--root', root], { encoding: 'utf8' }));
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 10);
  for (const file of files) {
    const caseText = readFileSync(path.join(dir, file), 'utf8');
    const c = JSON.parse(caseText);
    const r = await mf.dispatchFetch(`${U}/v1/_conformance`, {
      method: 'POST',
      body: JSON.stringify({ case: caseText, bundle: readFileSync(path.join(root, c.bundle), 'utf8'), catalog: readFileSync(path.join(root, c.catalog), 'utf8') }),
    });
    assert.equal(r.status, 200, file);
    const report = await r.json();
    assert.deepEqual(report.mismatches, [], `${file}: ${report.mismatches.join('; ')}`);
    assert.deepEqual(report.steps, native.find((n) => n.file === file).report.steps, `${file}: workerd and native disagree`);
  }
});
