// What a hostile client can and cannot do, and what an outage costs, in workerd (Miniflare):
// another session's id without its cookie, a poisoned sequence number, a replayed older hot
// copy, floods against the rate-limiting binding, a deploy with the dev secrets, and a
// collector that is down while traffic goes on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startWorker, demoOrigin, recordingCollector, Jar, sleep, root, serverSession } from './helpers.mjs';

const require = createRequire(import.meta.url);
const wasm = require(path.join(root, 'build/wasm-node/edgerec_wasm.js'));
const U = 'http://localhost';
const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {}); });

async function worker(bindings = {}, opts = {}) {
  const mf = await startWorker(bindings, opts);
  cleanups.push(async () => mf.dispose());
  return mf;
}

const events = (mf, jar, evs, headers = {}) => mf.dispatchFetch(`${U}/v1/events`, {
  method: 'POST',
  body: JSON.stringify({ events: evs }),
  headers: { 'content-type': 'application/json', cookie: jar.header(), ...headers },
}).then((r) => { jar.take(r); return r; });

const debug = (mf, jar, headers = {}) => mf.dispatchFetch(`${U}/v1/recommendations?limit=4&debug=1`, { headers: { cookie: jar.header(), ...headers } })
  .then(async (r) => { jar.take(r); return { status: r.status, body: await r.json() }; });

/**
 * The binding counts in fixed windows aligned to the epoch (as Cloudflare's does, per
 * location): a loop that straddles a window boundary may pass one more window's worth.
 */
function withinLimit(got, limit, periodS, what) {
  const windows = Math.floor(got.end / (periodS * 1000)) - Math.floor(got.start / (periodS * 1000)) + 1;
  assert.ok(got[202] >= limit && got[202] <= limit * windows, `${what}: ${got[202]} passed over ${windows} window(s)`);
  assert.ok(got[429] > 0, `${what}: some refused`);
}

const sidOf = (jar) => jar.cookies.get('edgerec_sid').split('.')[0];

test('another session id without its cookie reads and writes nothing of that session', async () => {
  const mf = await worker();
  const victim = new Jar();
  const t = Date.now();
  assert.equal((await events(mf, victim, [{ type: 'add_to_cart', item: 'sku-0005', ts: t, seq: 1 }])).status, 202);
  const before = await debug(mf, victim);
  const sid = sidOf(victim);
  // The id alone, as a header: refused without the server key, and with a wrong one.
  const attacker = new Jar();
  for (const h of [{ 'x-edgerec-session': sid }, { 'x-edgerec-session': sid, authorization: 'Bearer wrong-key-wrong-key' }]) {
    const r = await events(mf, attacker, [{ type: 'view', item: 'sku-0100', ts: t + 1 }], h);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).errors[0].field, 'authorization');
    const rec = await debug(mf, attacker, h);
    assert.equal(rec.status, 401);
  }
  // With the server key the header names a server session: its own key space, never the cookie's.
  const server = new Jar();
  for (let i = 0; i < 4; i++) {
    assert.equal((await events(mf, server, [{ type: 'view', item: 'sku-0100', ts: t + 2 + i }], serverSession(sid))).status, 202);
  }
  const seenByServer = await debug(mf, server, serverSession(sid));
  assert.deepEqual([seenByServer.body.features.cart_lines, seenByServer.body.features.add_to_carts], [0, 0], 'the victim\'s cart is not visible');
  assert.equal(server.cookies.size, 0, 'header clients get no cookies');
  // The id inside a forged cookie: a new session, the victim untouched.
  const forger = new Jar();
  forger.cookies.set('edgerec_sid', `${sid}.AAAA`);
  await events(mf, forger, [{ type: 'view', item: 'sku-0101', ts: t + 10 }]);
  assert.notEqual(sidOf(forger), sid);
  const afterAll = await debug(mf, victim);
  const timeless = (f) => ({ ...f, session_duration_s: 0, since_last_event_s: 0 });
  assert.deepEqual(timeless(afterAll.body.features), timeless(before.body.features), 'the victim sees exactly what it saw before');
  const kv = await mf.getKVNamespace('SESSIONS');
  await sleep(300);
  const cookieState = JSON.parse(wasm.inspectSession(new Uint8Array(await kv.get(`s:${sid}`, 'arrayBuffer'))));
  assert.deepEqual(cookieState.items.map((i) => i.id), ['sku-0005']);
  const serverState = JSON.parse(wasm.inspectSession(new Uint8Array(await kv.get(`h:${sid}`, 'arrayBuffer'))));
  assert.deepEqual(serverState.items.map((i) => i.id), ['sku-0100']);
});

test('a sequence number far ahead is refused with 400 naming it; later events still count', async () => {
  const mf = await worker();
  const jar = new Jar();
  const t = Date.now();
  assert.equal((await events(mf, jar, [{ type: 'view', item: 'sku-0005', ts: t, seq: 1 }])).status, 202);
  const poison = await events(mf, jar, [{ type: 'view', item: 'sku-0006', ts: t + 1, seq: 9007199254740991 }]);
  assert.equal(poison.status, 400);
  assert.deepEqual((await poison.json()).errors.map((e) => e.field), ['events[0].seq']);
  for (const [i, type] of [[2, 'add_to_cart'], [3, 'purchase']]) {
    const r = await events(mf, jar, [{ type, item: 'sku-0005', ts: t + 2 + i, seq: i }]);
    assert.deepEqual(await r.json(), { accepted: 1, duplicates: 0, session: 'isolate' }, type);
  }
});

test('a replayed older hot copy never replaces newer state: not in this isolate, not in a fresh one', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgerec-kv-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const opts = { options: { kvPersist: dir } };
  const mf = await worker({}, opts);
  const jar = new Jar();
  const t = Date.now();
  await events(mf, jar, [{ type: 'add_to_cart', item: 'sku-0005', ts: t, seq: 1 }]);
  const old = jar.cookies.get('edgerec_hot');
  await sleep(5);
  const buy = await events(mf, jar, [{ type: 'purchase', item: 'sku-0005', ts: t + 1, seq: 2 }]);
  assert.equal((await buy.json()).accepted, 1);
  await sleep(1200); // the first put of a session goes out at once; let it land
  // Replay the cookie from before the purchase and send the purchase again.
  const replay = new Jar();
  replay.cookies.set('edgerec_sid', jar.cookies.get('edgerec_sid'));
  replay.cookies.set('edgerec_hot', old);
  const again = await events(mf, replay, [{ type: 'purchase', item: 'sku-0005', ts: t + 1, seq: 2 }]);
  assert.deepEqual(await again.json(), { accepted: 0, duplicates: 1, session: 'isolate' });
  // A fresh isolate (a new workerd on the same KV): KV's newer copy wins over the old cookie.
  await mf.dispose();
  const fresh = await worker({}, opts);
  const replay2 = new Jar();
  replay2.cookies.set('edgerec_sid', jar.cookies.get('edgerec_sid'));
  replay2.cookies.set('edgerec_hot', old);
  const third = await events(fresh, replay2, [{ type: 'purchase', item: 'sku-0005', ts: t + 1, seq: 2 }]);
  assert.deepEqual(await third.json(), { accepted: 0, duplicates: 1, session: 'kv' });
  const stats = (await (await fresh.dispatchFetch(`${U}/v1/stats`)).json()).counters;
  assert.equal(stats.hot_copies_stale, 1);
  // The newest cookie itself is still honoured (read-your-writes).
  const own = await events(fresh, jar, [{ type: 'view', item: 'sku-0007', ts: t + 3, seq: 3 }]);
  assert.equal((await own.json()).accepted, 1);
});

test('floods are throttled by the rate-limiting binding and one client cannot move the counters', async () => {
  const mf = await worker({}, {
    options: {
      ratelimits: {
        LIMIT_CLIENT: { simple: { limit: 200, period: 10 } },
        LIMIT_SESSION: { simple: { limit: 30, period: 10 } },
        LIMIT_NEW_SESSION: { simple: { limit: 20, period: 60 } },
      },
    },
  });
  const flood = Array.from({ length: 500 }, (_, i) => ({ type: 'view', item: i % 2 ? 'sku-0163' : 'sku-0005', ts: Date.now() - 1000 + i }));
  const tally = async (n, jarFor, ip) => {
    const out = { 202: 0, 429: 0, start: Date.now() };
    for (let i = 0; i < n; i++) {
      const r = await events(mf, jarFor(i), flood, { 'cf-connecting-ip': ip });
      out[r.status] = (out[r.status] || 0) + 1;
      await r.arrayBuffer();
    }
    out.end = Date.now();
    return out;
  };
  // 400 cookie-less requests of 500 views from one address: a new session each.
  const fresh = await tally(400, () => new Jar(), '198.51.100.7');
  // 400 requests of one session from another address.
  const one = new Jar();
  const same = await tally(400, () => one, '198.51.100.8');
  console.log(`# flood: cookie-less ${JSON.stringify(fresh)}, one session ${JSON.stringify(same)}`);
  withinLimit(fresh, 20, 60, 'new sessions per address per minute');
  withinLimit(same, 30, 10, 'requests per session per 10 s');
  // What the edge ships: at most 10 views of an item per session, one transition into it.
  const { aggregates } = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  const sessions = fresh[202] + 1;
  assert.equal(aggregates.delta.items['sku-0163'].views, sessions * 10);
  const into = aggregates.delta.transitions['sku-0005']['sku-0163'];
  assert.ok(into <= sessions, `${into} transitions`);
  console.log(`# flood shipped: ${aggregates.delta.items['sku-0163'].views} views of sku-0163 and ${into} transitions into it out of ${(fresh[202] + same[202]) * 250} sent`);
  // Browser reports: same limits, per session.
  const reports = { 202: 0, 429: 0, start: Date.now() };
  const jar = new Jar();
  await events(mf, jar, [{ type: 'view', item: 'sku-0001', ts: Date.now() }], { 'cf-connecting-ip': '198.51.100.9' });
  for (let i = 0; i < 60; i++) {
    const r = await mf.dispatchFetch(`${U}/v1/browser-decisions`, {
      method: 'POST', headers: { cookie: jar.header(), 'cf-connecting-ip': '198.51.100.9' },
      body: JSON.stringify({ id: i.toString(16).padStart(16, '0'), delta: { decisions: 1, tiers: { browser: 1 } } }),
    });
    reports[r.status] = (reports[r.status] || 0) + 1;
    await r.arrayBuffer();
  }
  reports.end = Date.now();
  // The session already spent one request of its first window on its event.
  withinLimit({ ...reports, 202: reports[202] + 1 }, 30, 10, 'reports per session per 10 s');
  // Other clients are not affected.
  const other = await events(mf, new Jar(), [{ type: 'view', item: 'sku-0001', ts: Date.now() }], { 'cf-connecting-ip': '203.0.113.1' });
  assert.equal(other.status, 202);
});

test('the dev secrets are refused unless EDGEREC_DEV=1: health says why, pages pass through', async () => {
  const origin = await demoOrigin();
  cleanups.push(origin.close);
  for (const secrets of [{ SESSION_SECRET: 'dev-session-secret' }, { SESSION_SECRET: undefined }, { SESSION_SECRET: 'short' },
    { COLLECTOR_URL: 'http://127.0.0.1:9/v1/aggregates', COLLECTOR_SECRET: 'dev-collector-secret' }]) {
    const mf = await worker({ ORIGIN_URL: origin.url, ...secrets });
    const h = await mf.dispatchFetch(`${U}/v1/health`);
    assert.equal(h.status, 503, JSON.stringify(secrets));
    const why = (await h.json()).refusing;
    assert.match(why, /SESSION_SECRET|COLLECTOR_SECRET/);
    const e = await mf.dispatchFetch(`${U}/v1/events`, { method: 'POST', body: '{"events":[]}' });
    assert.equal(e.status, 503);
    assert.equal((await e.json()).errors[0].field, 'config');
    const page = await mf.dispatchFetch(`${U}/p/sku-0005`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(html.includes('fallback') && !html.includes('data-edgerec-filled'), 'the origin page, untouched');
    assert.equal(page.headers.getSetCookie().length, 0);
  }
  const dev = await worker({ SESSION_SECRET: undefined, EDGEREC_DEV: '1' });
  assert.equal((await dev.dispatchFetch(`${U}/v1/health`)).status, 200);
});

test('a collector outage merges counters into one buffer: few batches, nothing dropped, exact totals after', async () => {
  let down = true;
  const collector = await recordingCollector(() => (down ? 503 : 200));
  cleanups.push(collector.close);
  const mf = await worker({ COLLECTOR_URL: `${collector.url}/v1/aggregates`, FLUSH_MAX_AGE_MS: '0', BREAKER_COOLDOWN_MS: '2000' });
  let sent = 0;
  const start = Date.now();
  // 20 requests/s for 6 s with the collector answering 503.
  for (let i = 0; i < 120; i++) {
    const jar = new Jar();
    const r = await events(mf, jar, [{ type: 'view', item: `sku-0${100 + (i % 50)}`, ts: Date.now() }]);
    assert.equal(r.status, 202);
    sent += 1;
    await sleep(Math.max(0, start + (i + 1) * 50 - Date.now()));
  }
  const during = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  down = false;
  for (let i = 0; i < 150 && collector.batches.reduce((n, b) => n + b.delta.events, 0) < sent; i++) {
    await (await mf.dispatchFetch(`${U}/v1/health`)).arrayBuffer();
    await sleep(100);
  }
  const stats = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  console.log(`# outage: ${collector.attempts.length} posts during ${sent} requests; sealed ${stats.counters.batches_sealed ?? '-'}, unacked during ${during.aggregates.unacked_batches}`);
  assert.equal(during.aggregates.unacked_batches, 1, 'one sealed batch waits; the rest merges');
  assert.equal(during.aggregates.buffered_events + during.aggregates.unacked_events, sent - 0, 'every event is held');
  assert.equal(stats.counters.events_dropped || 0, 0);
  const events2 = collector.batches.reduce((n, b) => n + b.delta.events, 0);
  assert.equal(events2, sent, 'every event reaches the collector exactly once');
  assert.ok(collector.attempts.length < 30, `${collector.attempts.length} posts: retries back off`);
});

test('a browser report is relayed under a batch id that is the same on every resend and fits the collector', async () => {
  const collector = await recordingCollector();
  cleanups.push(collector.close);
  const mf = await worker({ COLLECTOR_URL: `${collector.url}/v1/aggregates` });
  const jar = new Jar();
  await events(mf, jar, [{ type: 'view', item: 'sku-0001', ts: Date.now() }]);
  const report = { id: 'ab'.repeat(32), delta: { decisions: 2, tiers: { browser: 2 }, rule_hits: { 'no-gift-cards': 1 } } };
  for (let i = 0; i < 2; i++) {
    const r = await mf.dispatchFetch(`${U}/v1/browser-decisions`, { method: 'POST', headers: { cookie: jar.header() }, body: JSON.stringify(report) });
    assert.equal(r.status, 202);
  }
  const ids = collector.batches.map((b) => b.id);
  assert.equal(ids.length, 2);
  assert.equal(ids[0], ids[1], 'a resend keeps its id, so the collector counts it once');
  assert.ok(ids[0].length <= 64 && ids[0].startsWith('b-'), ids[0]);
  // Another session sending the same page id gets another batch id.
  const other = new Jar();
  await events(mf, other, [{ type: 'view', item: 'sku-0002', ts: Date.now() }]);
  await mf.dispatchFetch(`${U}/v1/browser-decisions`, { method: 'POST', headers: { cookie: other.header() }, body: JSON.stringify(report) });
  assert.notEqual(collector.batches[2].id, ids[0]);
});

test('FLUSH_MAX_KEYS and MAX_UNACKED_BATCHES bound what an outage holds; the overflow is counted, the rest arrives once', async () => {
  let down = true;
  const collector = await recordingCollector(() => (down ? 503 : 200));
  cleanups.push(collector.close);
  const KEYS = 10;
  const mf = await worker({
    COLLECTOR_URL: `${collector.url}/v1/aggregates`, FLUSH_MAX_AGE_MS: '0', FLUSH_MAX_KEYS: String(KEYS),
    MAX_UNACKED_BATCHES: '2', BREAKER_COOLDOWN_MS: '1500',
  });
  // 60 views of 60 different items from three sessions: each decision adds a few keys (the
  // item, the transition from the session's previous item, its tier and rule counters).
  const jars = [new Jar(), new Jar(), new Jar()];
  let sent = 0;
  for (let i = 0; i < 60; i++) {
    const r = await events(mf, jars[i % 3], [{ type: 'view', item: `sku-0${100 + i}`, ts: Date.now() }]);
    assert.equal(r.status, 202);
    sent += 1;
  }
  const during = await (await mf.dispatchFetch(`${U}/v1/stats`)).json();
  const a = during.aggregates;
  const dropped = during.counters.events_dropped;
  console.log(`# held ${a.unacked_keys} + ${a.buffered_keys} keys, ${a.unacked_events} + ${a.buffered_events} events; dropped ${dropped}`);
  assert.equal(a.unacked_batches, 2, 'both slots taken');
  // Bound: two sealed batches and the open buffer, each at most FLUSH_MAX_KEYS plus the keys of
  // the one delta that filled it (at most 4 here: item, transition, tier, rule).
  assert.ok(a.unacked_keys + a.buffered_keys <= 3 * (KEYS + 4), JSON.stringify(a));
  assert.ok(dropped > 0, 'the overflow is refused and counted');
  assert.equal(a.unacked_events + a.buffered_events + dropped, sent, 'every event held or counted as dropped');
  down = false;
  const arrived = () => collector.batches.reduce((n, b) => n + b.delta.events, 0);
  for (let i = 0; i < 100 && arrived() < sent - dropped; i++) {
    await (await mf.dispatchFetch(`${U}/v1/health`)).arrayBuffer();
    await sleep(100);
  }
  assert.equal(arrived(), sent - dropped, 'what was held arrives, once');
  const keys = (d) => Object.keys(d.items).length + Object.keys(d.rule_hits).length + Object.keys(d.tiers).length
    + Object.keys(d.variants).length + Object.values(d.transitions).reduce((n, m) => n + Object.keys(m).length, 0);
  for (const b of collector.batches) assert.ok(keys(b.delta) <= KEYS + 4, `batch of ${keys(b.delta)} keys`);
  assert.equal(new Set(collector.batches.map((b) => b.id)).size, collector.batches.length, 'no batch twice');
});
