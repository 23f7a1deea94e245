// A 200,000-item generated catalog served by the worker in workerd (Miniflare): decisions read
// only the shards they need (one bulk read, then the isolate's LRU), and when the config KV
// turns slow and then unavailable mid-run they degrade — popular and category lists from the
// head, `partial` in the answer — and never answer 5xx. The CONFIG binding is the real
// Miniflare KV namespace behind a wrapper that can delay or fail every call (the only test
// double here: it injects the outage; helpers.mjs `chaosKv`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Miniflare } from 'miniflare';
import { publishEntries, serverSession, chaosKv, setChaos, edgeWorker } from './helpers.mjs';

const ITEMS = 200_000;
const U = 'http://localhost';
const CACHE_BYTES = 4 << 20;

let mf;
after(async () => mf && mf.dispose());

const setMode = (m) => setChaos(mf, m);

const sku = (i) => `sku-${String(i).padStart(5, '0')}`;

/** One shopper: views two items, then asks for recommendations. Returns the answer. */
async function shopper(id, a, b) {
  const h = { ...serverSession(id), 'content-type': 'application/json' };
  const t = Date.now();
  const e = await mf.dispatchFetch(`${U}/v1/events`, { method: 'POST', headers: h, body: JSON.stringify({ events: [
    { type: 'view', item: sku(a), ts: t, seq: 1 }, { type: 'view', item: sku(b), ts: t + 1, seq: 2 }] }) });
  const r = await mf.dispatchFetch(`${U}/v1/recommendations?limit=6`, { headers: serverSession(id) });
  return { events: e.status, status: r.status, body: r.status === 200 ? await r.json() : await r.text() };
}

test(`${ITEMS} items: cold and warm decisions read only their shards; slow and unavailable KV degrade, never 5xx`, { timeout: 600_000 }, async () => {
  const entries = publishEntries('data/demo/rules.json', null, 'build/release-scale', ['--synthetic', String(ITEMS)]);
  const shards = entries.filter((e) => e.key.startsWith('shard:'));
  assert.ok(shards.length > 10_000, `${shards.length} shards`);
  assert.ok(shards.every((e) => e.value.length <= 64 * 1024), 'every shard <= 64 KiB');
  mf = new Miniflare({
    workers: [
      edgeWorker({
        KV_BUDGET_MS: '1000', CONFIG_BUDGET_MS: '1000', SHARD_BUDGET_MS: '400',
        BREAKER_THRESHOLD: '3', BREAKER_COOLDOWN_MS: '1000', CONFIG_TTL_MS: '600000',
        FLUSH_MAX_AGE_MS: '600000', SHARD_CACHE_BYTES: String(CACHE_BYTES),
      }, { kvNamespaces: ['SESSIONS'], wrappedBindings: { CONFIG: { scriptName: 'kv-chaos' } } }),
      chaosKv(),
    ],
  });
  const inner = await mf.getKVNamespace('INNER', 'kv-chaos');
  for (let i = 0; i < entries.length; i += 200) {
    await Promise.all(entries.slice(i, i + 200).map((e) => inner.put(e.key,
      typeof e.value === 'string' ? e.value : e.value.buffer.slice(e.value.byteOffset, e.value.byteOffset + e.value.length))));
  }
  await setMode('normal');
  const statuses = [];
  const stats = async () => (await (await mf.dispatchFetch(`${U}/v1/stats`)).json()).counters;

  // Normal: every decision complete, explained by the session's own items.
  let n = 0;
  for (let s = 0; s < 12; s++) {
    const a = (s * 16_661) % ITEMS;
    const r = await shopper(`scale-session-${n++}`, a, (a + 100) % ITEMS);
    statuses.push(r.events, r.status);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.partial, undefined, JSON.stringify(r.body));
    assert.equal(r.body.items.length, 6);
    assert.ok(r.body.items.some((i) => i.why.some((w) => w.startsWith('related:'))), JSON.stringify(r.body.items));
    assert.ok(r.body.items.every((i) => i.title && i.category), 'items described from the shards');
  }
  let c = await stats();
  // One bulk read per decision at most (events and recommendations each decide once).
  assert.ok(c.shard_reads <= 2 * n, JSON.stringify(c));
  const health = await (await mf.dispatchFetch(`${U}/v1/health`)).json();
  assert.equal(health.items, ITEMS);
  assert.ok(health.shards.bytes <= CACHE_BYTES + 512 * 1024, `cache within its bound: ${JSON.stringify(health.shards)}`);
  // Warm: the same shopper's next decision reads nothing.
  const before = (await stats()).shard_reads;
  const again = await mf.dispatchFetch(`${U}/v1/recommendations?limit=6`, { headers: serverSession("scale-session-0") });
  assert.equal(again.status, 200);
  assert.equal((await stats()).shard_reads, before, 'a warm decision makes no shard read');

  // Slow KV: new shoppers' shards time out; answers come from the head, said to be partial.
  await setMode('slow');
  for (let s = 0; s < 4; s++) {
    const a = 7 + s * 31_337;
    const r = await shopper(`slow-session-${s}`, a, a + 1);
    statuses.push(r.events, r.status);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.items.length > 0);
    assert.ok(r.body.partial && r.body.partial.missing > 0, JSON.stringify(r.body));
  }
  // Unavailable KV: the same, and the breaker soon stops trying.
  await setMode('down');
  for (let s = 0; s < 6; s++) {
    const a = 11 + s * 23_456;
    const r = await shopper(`down-session-${s}`, a, a + 1);
    statuses.push(r.events, r.status);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.items.length > 0);
    assert.ok(r.body.partial, JSON.stringify(r.body));
  }
  c = await stats();
  assert.ok(c.shard_read_failures >= 3, JSON.stringify(c));
  assert.ok(c.decisions_partial >= 10, JSON.stringify(c));

  // Back: after the breaker's cooldown, decisions are complete again.
  await setMode('normal');
  await new Promise((r) => setTimeout(r, 1200));
  let complete = false;
  for (let s = 0; s < 5 && !complete; s++) {
    const r = await shopper(`back-session-${s}`, 1234 + s, 99_999 + s);
    statuses.push(r.events, r.status);
    assert.equal(r.status, 200);
    complete = r.body.partial === undefined;
  }
  assert.ok(complete, 'complete decisions once KV is back');
  assert.deepEqual(statuses.filter((x) => x >= 500), [], 'never a 5xx');
  assert.ok(statuses.filter((x) => x === 202).length >= 20, 'events accepted throughout');
});
