// The worker's HTTP contract, in workerd (Miniflare): events in, recommendations out, cookies,
// validation, coalesced KV writes, robustness against malformed input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { encode } from '@msgpack/msgpack';
import { startWorker, Jar, sleep, root, serverSession } from './helpers.mjs';

const require = createRequire(import.meta.url);
const wasm = require(path.join(root, 'build/wasm-node/edgerec_wasm.js'));
let mf;
const U = 'http://localhost';

before(async () => { mf = await startWorker(); });
after(async () => { await mf.dispose(); });

async function post(jar, events, headers = {}) {
  const r = await mf.dispatchFetch(`${U}/v1/events`, {
    method: 'POST',
    body: JSON.stringify({ events }),
    headers: { 'content-type': 'application/json', cookie: jar.header(), ...headers },
  });
  jar.take(r);
  return r;
}

async function recs(jar, query = 'limit=5') {
  const r = await mf.dispatchFetch(`${U}/v1/recommendations?${query}`, { headers: { cookie: jar.header() } });
  jar.take(r);
  return r;
}

test('health reports the published config', async () => {
  const r = await mf.dispatchFetch(`${U}/v1/health`);
  assert.equal(r.status, 200);
  const h = await r.json();
  assert.equal(h.ok, true);
  assert.match(h.config.catalog, /^[0-9a-f]{16}$/, 'the pointer names a model head by its hash');
  assert.equal(h.items, 320);
  assert.equal(h.rules, 10);
});

test('three views of an item put its related items first, with the rule in why', async () => {
  const jar = new Jar();
  const now = Date.now();
  for (let i = 0; i < 3; i++) {
    const r = await post(jar, [{ type: 'view', item: 'sku-0005', ts: now - 3000 + i * 1000 }]);
    assert.equal(r.status, 202);
    assert.equal((await r.json()).accepted, 1);
  }
  assert.ok(jar.cookies.has('edgerec_sid') && jar.cookies.has('edgerec_hot'));
  const r = await recs(jar);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-edgerec-tier'), 'full');
  const body = await r.json();
  assert.equal(body.tier, 'full');
  assert.ok(['control', 'treatment'].includes(body.variant));
  assert.ok(body.rule_hits.includes('repeat-view-related'), JSON.stringify(body.rule_hits));
  assert.equal(body.items[0].id, 'sku-0008');
  assert.ok(body.items[0].why.includes('rule:repeat-view-related'));
  assert.ok(!body.items.some((i) => i.id === 'sku-0005'), 'just-viewed item is not recommended');
  // Each item carries what a client needs to render it, straight from the catalog.
  const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
  for (const item of body.items) {
    const c = catalog.items.find((x) => x.id === item.id);
    assert.deepEqual([item.title, item.category, item.price], [c.title, c.category, c.price], item.id);
  }
});

test('/v1/health/kv makes one uncached read of the pointer', async () => {
  const r = await mf.dispatchFetch(`${U}/v1/health/kv`);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { ok: true, pointer: true });
  const empty = await startWorker({}, { seed: false });
  try {
    assert.deepEqual(await (await empty.dispatchFetch(`${U}/v1/health/kv`)).json(), { ok: true, pointer: false });
  } finally {
    await empty.dispose();
  }
});

test('the browser fallback gets the live model and, when it asks, the session blob', async () => {
  const jar = new Jar();
  const r = await post(jar, [{ type: 'view', item: 'sku-0163', ts: Date.now() }], { 'x-edgerec-want-state': '1' });
  const body = await r.json();
  assert.equal(body.sid, undefined, 'answers never carry the session id');
  assert.match(body.unit, /^[0-9a-f]{16}$/, 'only the experiment unit, a keyed hash');
  const blob = Buffer.from(body.state, 'base64url');
  assert.equal(JSON.parse(wasm.inspectSession(blob)).items.length, 1);
  const b = await mf.dispatchFetch(`${U}/v1/model/bundle`);
  assert.equal(b.status, 200);
  const etag = b.headers.get('etag');
  const bundleText = await b.text();
  assert.equal(JSON.parse(bundleText).version, JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8')).version);
  assert.equal((await mf.dispatchFetch(`${U}/v1/model/bundle`, { headers: { 'if-none-match': etag } })).status, 304);
  const c = await mf.dispatchFetch(`${U}/v1/model/catalog`);
  assert.equal(c.headers.get('content-type'), 'application/msgpack');
  const headTag = c.headers.get('etag');
  assert.match(headTag, /^"[0-9a-f]{16}"$/, 'the head\'s ETag is its content hash');
  const again = await mf.dispatchFetch(`${U}/v1/model/catalog`, { headers: { 'if-none-match': headTag } });
  assert.equal(again.status, 304);
  assert.equal((await again.arrayBuffer()).byteLength, 0);
  assert.equal((await mf.dispatchFetch(`${U}/v1/model/catalog`, { headers: { 'if-none-match': etag } })).status, 200, 'the bundle\'s tag is not the head\'s');
  const head = new Uint8Array(await c.arrayBuffer());
  assert.ok(head.length < 64 * 1024, `the head is small (${head.length} bytes)`);
  const engine = new wasm.Engine(bundleText, head);
  assert.equal(engine.catalogVersion, 'demo-1');
  // The page fetches only the shards its session needs, each content-addressed and immutable.
  const now = Date.now();
  const keys = JSON.parse(engine.plan(blob, '', '{}', now, 'browser'));
  assert.ok(keys.length >= 1 && keys.length < 13, `a few of the 13 shards: ${keys}`);
  for (const key of keys) {
    const r = await mf.dispatchFetch(`${U}/v1/model/shard?key=${encodeURIComponent(key)}`);
    assert.equal(r.status, 200, key);
    assert.match(r.headers.get('cache-control'), /immutable/);
    engine.addShard(key, await r.text());
  }
  assert.deepEqual(JSON.parse(engine.plan(blob, '', '{}', now, 'browser')), [], 'nothing left to fetch');
  // The blob from the edge decides in the wasm build: same session, tier browser, items
  // described from the shards (title, category, price).
  const d = JSON.parse(engine.decide(blob, '', '{}', now, 3, 'browser').json);
  assert.equal(d.tier, 'browser');
  assert.equal(d.missing, 0);
  assert.equal(d.features.last_item, 'sku-0163');
  const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
  for (const it of d.items) {
    const want = catalog.items.find((i) => i.id === it.id);
    assert.deepEqual([it.title, it.price], [want.title, want.price], it.id);
  }
  // The shard route serves shard keys only, nothing else of the config namespace.
  for (const key of ['config:current', `bundle:${JSON.parse(bundleText).version}`, 'shard:zz:1', '']) {
    assert.equal((await mf.dispatchFetch(`${U}/v1/model/shard?key=${encodeURIComponent(key)}`)).status, 400, key);
  }
  assert.equal((await mf.dispatchFetch(`${U}/v1/model/shard?key=patch:0123456789abcdef`)).status, 404);
});

test('MessagePack bodies are accepted like JSON', async () => {
  const jar = new Jar();
  const r = await mf.dispatchFetch(`${U}/v1/events`, {
    method: 'POST',
    body: encode({ events: [{ type: 'click', item: 'sku-0161', ts: Date.now() }] }),
    headers: { 'content-type': 'application/msgpack' },
  });
  assert.equal(r.status, 202);
  assert.equal((await r.json()).accepted, 1);
});

test('invalid batches get 400 naming every field and store nothing', async () => {
  const jar = new Jar();
  const ok = await post(jar, [{ type: 'view', item: 'sku-0001', ts: Date.now() }]);
  assert.equal(ok.status, 202);
  const before = jar.cookies.get('edgerec_hot');
  const r = await post(jar, [
    { type: 'view', item: 'sku-0002', ts: Date.now() },
    { type: 'teleport', item: '', ts: 'soon' },
  ]);
  assert.equal(r.status, 400);
  const body = await r.json();
  assert.deepEqual(body.errors.map((e) => e.field), ['events[1].type', 'events[1].item', 'events[1].ts']);
  assert.equal(jar.cookies.get('edgerec_hot'), before, 'no new state was issued');
  const state = JSON.parse(wasm.inspectSession(Buffer.from(before.split('.')[0], 'base64url')));
  assert.deepEqual(state.totals, [1, 0, 0, 0, 0], 'the valid half of the bad batch was not stored');
});

test('oversize bodies get 413', async () => {
  const big = JSON.stringify({ events: [{ type: 'view', item: 'x'.repeat(100), ts: 1 }] }).padEnd(70 * 1024, ' ');
  const r = await mf.dispatchFetch(`${U}/v1/events`, { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 413);
  assert.equal((await r.json()).errors[0].field, 'body');
});

test('a forged or malformed session cookie starts a new session', async () => {
  for (const bad of ['edgerec_sid=abcdefghijklmnop.forged', 'edgerec_sid=%%%', 'edgerec_sid=', 'edgerec_sid=a.b.c']) {
    const r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=3`, { headers: { cookie: bad } });
    assert.equal(r.status, 200);
    const set = r.headers.getSetCookie().join('\n');
    assert.match(set, /edgerec_sid=[A-Za-z0-9_-]{22}\./, `fresh cookie for ${bad}`);
  }
});

test('bad query strings get 400 naming the parameter', async () => {
  for (const [q, field] of [['limit=0', 'limit'], ['limit=abc', 'limit'], ['limit=1000', 'limit'], ['slot=%01', 'slot']]) {
    const r = await mf.dispatchFetch(`${U}/v1/recommendations?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal((await r.json()).errors[0].field, field);
  }
});

test('a burst of 20 events in a second causes at most one KV put per second, and none is lost', async () => {
  const statsBefore = (await (await mf.dispatchFetch(`${U}/v1/stats`)).json()).counters;
  const sid = 'burst-session-0001';
  const start = Date.now();
  for (let i = 0; i < 20; i++) {
    const r = await mf.dispatchFetch(`${U}/v1/events`, {
      method: 'POST',
      body: JSON.stringify({ events: [{ type: 'view', item: `sku-00${10 + i}`, ts: start + i }] }),
      headers: { 'content-type': 'application/json', ...serverSession(sid) },
    });
    assert.equal(r.status, 202);
  }
  const burstMs = Date.now() - start;
  await sleep(1500); // let the delayed (coalesced) put happen
  const stats = (await (await mf.dispatchFetch(`${U}/v1/stats`)).json()).counters;
  const puts = (stats.kv_puts || 0) - (statsBefore.kv_puts || 0);
  const allowed = 1 + Math.ceil((burstMs + 1500) / 1000);
  assert.ok(puts >= 1 && puts <= Math.min(allowed, 3), `puts=${puts} over ${burstMs} ms`);
  assert.ok((stats.kv_writes_coalesced || 0) - (statsBefore.kv_writes_coalesced || 0) >= 15);
  const blob = await (await mf.getKVNamespace('SESSIONS')).get(`h:${sid}`, 'arrayBuffer');
  const state = JSON.parse(wasm.inspectSession(new Uint8Array(blob)));
  assert.equal(state.totals[0], 20, 'the last put carries all 20 views');
});

test('malformed requests get their exact refusal, naming the field, and never break the worker', async () => {
  const now = Date.now();
  const batch = (n) => JSON.stringify({ events: Array.from({ length: n }, (_, i) => ({ type: 'view', item: 'sku-0005', ts: now + i })) });
  // [url, init, status, first error field (null: not a refusal)]
  const nasty = [
    [`${U}/v1/events`, { method: 'POST', body: '{"events":', headers: { 'content-type': 'application/json' } }, 400, 'body'],
    [`${U}/v1/events`, { method: 'POST', body: '\u0000\u0001garbage', headers: { 'content-type': 'application/msgpack' } }, 400, 'body'],
    [`${U}/v1/events`, { method: 'POST', body: '[]' }, 400, 'events'],
    // MAX_EVENTS_PER_BATCH = 500: 500 are taken, 501 and 600 refused whole.
    [`${U}/v1/events`, { method: 'POST', body: batch(500) }, 202, null],
    [`${U}/v1/events`, { method: 'POST', body: batch(501) }, 400, 'events'],
    [`${U}/v1/events`, { method: 'POST', body: JSON.stringify({ events: Array(600).fill({ type: 'view', item: 'a', ts: 1 }) }) }, 400, 'events'],
    [`${U}/v1/events`, { method: 'POST', body: JSON.stringify({ events: [{ type: 'view', item: 'a', ts: 1e300, price: 'NaN' }] }) }, 400, 'events[0].price'],
    [`${U}/v1/recommendations?limit=${'9'.repeat(400)}&slot=${'x'.repeat(5000)}`, {}, 400, 'limit'],
    // An unusable session cookie is replaced by a new session, not refused.
    [`${U}/v1/recommendations`, { headers: { cookie: 'edgerec_sid=' + 'A'.repeat(8000) } }, 200, null],
    [`${U}/v1/recommendations`, { headers: { cookie: 'edgerec_sid=abcdefghijkl.x; edgerec_hot=' + 'B'.repeat(6000) + '.1.sig' } }, 200, null],
    [`${U}/v1/recommendations`, { headers: { 'x-edgerec-session': '../../etc/passwd', 'user-agent': '\u00ff'.repeat(2000) } }, 401, 'authorization'],
    // Reports only come from an existing cookie session (the bodies are checked below, with one).
    [`${U}/v1/browser-decisions`, { method: 'POST', body: '{"id":' }, 401, 'cookie'],
    [`${U}/v1/browser-decisions`, { method: 'POST', body: '['.repeat(100000) }, 413, 'body'],
    [`${U}/v1/model/catalog`, { headers: { 'if-none-match': '"'.repeat(4000) } }, 200, null],
    [`${U}/v1/model/bundle`, { method: 'POST', body: 'x' }, 404, 'path'],
    [`${U}/v1/recommendations`, { headers: { 'x-edgerec-want-state': '1'.repeat(3000) } }, 200, null],
    [`${U}/v1/nope`, { method: 'DELETE' }, 404, 'path'],
    [`${U}/v1/events`, { method: 'PUT', body: 'x' }, 404, 'path'],
  ];
  const check = async (url, init, status, field) => {
    const r = await mf.dispatchFetch(url, init);
    const what = `${init.method || 'GET'} ${url.slice(0, 60)} (${(init.body || '').length} B body)`;
    assert.equal(r.status, status, what);
    const text = await r.text();
    if (field) assert.equal(JSON.parse(text).errors[0].field, field, `${what}: ${text.slice(0, 200)}`);
    return text;
  };
  for (const [url, init, status, field] of nasty) await check(url, init, status, field);
  const limit = await check(`${U}/v1/events`, { method: 'POST', body: batch(501) }, 400, 'events');
  assert.match(limit, /at most 500 events per batch/);
  // Report bodies, from a real session: each refused with the field at fault.
  const session = new Jar();
  assert.equal((await post(session, [{ type: 'view', item: 'sku-0005', ts: now }])).status, 202);
  const reports = [
    ['{"id":', 'body'],
    [JSON.stringify({ id: 'z'.repeat(5000), delta: { decisions: -1 } }), 'body'],
    [JSON.stringify({ id: 'ab'.repeat(8), delta: { decisions: 1e300, tiers: { browser: 1e300 } } }), 'body'],
    [JSON.stringify({ id: 'ab'.repeat(8), delta: { decisions: 2, tiers: { browser: 2 }, items: { x: { views: 9 } } } }), 'delta'],
    [JSON.stringify({ id: 'z'.repeat(20), delta: { decisions: 1, tiers: { browser: 1 } } }), 'id'],
  ];
  for (const [body, field] of reports) {
    await check(`${U}/v1/browser-decisions`, { method: 'POST', body, headers: { cookie: session.header() } }, 400, field);
  }
  const jar = new Jar();
  assert.equal((await post(jar, [{ type: 'view', item: 'sku-0005', ts: Date.now() }])).status, 202);
  const r = await recs(jar);
  assert.equal(r.status, 200);
  const after = await r.json();
  assert.equal(after.items.length, 5, 'the worker still answers in full (limit=5)');
  assert.equal(after.tier, 'full');
  const stats = (await (await mf.dispatchFetch(`${U}/v1/stats`)).json()).counters;
  assert.equal(stats.internal_errors || 0, 0);
});

test('browser decision reports are checked, naming the field', async () => {
  const jar = new Jar();
  await post(jar, [{ type: 'view', item: 'sku-0001', ts: Date.now() }]);
  const send = async (body, cookie = jar.header()) => {
    const r = await mf.dispatchFetch(`${U}/v1/browser-decisions`, { method: 'POST', body: JSON.stringify(body), headers: { cookie } });
    return { status: r.status, body: await r.json() };
  };
  // Only from an existing cookie session: none, or a forged one, is refused before the body.
  for (const cookie of ['', 'edgerec_sid=abcdefghijklmnop.forged']) {
    const r = await send({ id: 'ab'.repeat(8), delta: { decisions: 1, tiers: { browser: 1 } } }, cookie);
    assert.deepEqual([r.status, r.body.errors[0].field], [401, 'cookie'], cookie);
  }
  const ok = await send({ id: 'cd'.repeat(8), delta: { decisions: 2, tiers: { browser: 2 }, rule_hits: { 'no-gift-cards': 2 } } });
  // No collector configured in this worker: accepted and counted as discarded.
  assert.deepEqual([ok.status, ok.body.discarded], [202, true]);
  const bad = await send({ id: 'not-hex', delta: { decisions: 1, tiers: { browser: 1 }, rule_hits: { r: 5 } } });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.body.errors.map((e) => e.field), ['id', 'delta.rule_hits["r"]']);
  // Rule ids and variants must be the live bundle's.
  const invented = await send({ id: 'ef'.repeat(8), delta: { decisions: 3, tiers: { browser: 3 }, rule_hits: { 'made-up': 1 }, variants: { 'related-boost/evil': { exposures: 3 } } } });
  assert.equal(invented.status, 400);
  assert.deepEqual(invented.body.errors.map((e) => e.field), ['delta.rule_hits["made-up"]', 'delta.variants["related-boost/evil"]']);
});
