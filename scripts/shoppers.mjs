// Simulated shoppers with a known ground truth, for experiments: each opens a product page (a
// view), asks the edge for a list of four, reports the impressions, and clicks the first listed
// item it wants with a probability that falls with the position (maybe buying it). Every shopper
// is a new session from its own client address (wrangler dev passes `cf-connecting-ip` through;
// on Cloudflare the platform sets it), so the new-session rate limit sees many clients.
//
// `make shoppers` (with `make dev` running) sends 400 of them to 127.0.0.1:8787 with the demo's
// ground truth: a shopper on product P wants the items of P's related list in the demo catalog.
// It prints, per variant, the clicks and impressions the shoppers made and how many of the shown
// items they wanted: the truth `edgerec experiments report` (after the trainer's next round) is
// held against. The experiment tests drive the same code with their own truth.
//
// Usage: node scripts/shoppers.mjs [count=400] [base=http://127.0.0.1:8787] [seed=1]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A seeded generator (mulberry32): the same shoppers' choices every run. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tiny cookie jar over fetch (the tests' `browser`). */
export function jar(base) {
  const cookies = new Map();
  return async (p, init = {}) => {
    const cookie = [...cookies.values()].join('; ');
    const r = await fetch(`${base}${p}`, { ...init, headers: { ...(init.headers || {}), cookie } });
    for (const c of r.headers.getSetCookie()) { const kv = c.split(';')[0]; cookies.set(kv.split('=')[0], kv); }
    return r;
  };
}

/**
 * One shopper. `truth = { page(i), wants(item, page), click(position), noise, buy }`: the page it
 * opens, whether it wants an item, the chance of clicking a wanted item at a position, the chance
 * of clicking an unwanted one, the chance of buying what it clicked.
 */
export async function shopper(base, { random, i, seed, truth }) {
  const go = jar(base);
  const ip = `10.${seed & 255}.${(i >> 8) & 255}.${i & 255}`;
  const headers = { 'content-type': 'application/json', 'cf-connecting-ip': ip };
  const post = async (events) => {
    const r = await go('/v1/events', { method: 'POST', headers, body: JSON.stringify({ events }) });
    if (r.status !== 202) throw new Error(`shopper ${i}: /v1/events answered ${r.status}: ${await r.text()}`);
  };
  const t0 = Date.now();
  const page = truth.page(i);
  await post([{ type: 'view', item: page, ts: t0, seq: 1 }]);
  const d = await (await go('/v1/recommendations?limit=4&debug=1')).json();
  const items = (d.items || []).map((x) => x.id);
  const events = items.map((item, k) => ({ type: 'impression', item, ts: t0 + 1 + k, seq: 2 + k }));
  let clicked = null;
  for (const [k, item] of items.entries()) {
    if (random() < (truth.wants(item, page) ? truth.click(k) : truth.noise)) {
      clicked = item;
      events.push({ type: 'click', item, ts: t0 + 10, seq: 10 });
      if (random() < truth.buy) events.push({ type: 'purchase', item, price: 20, quantity: 1, ts: t0 + 11, seq: 11 });
      break;
    }
  }
  await post(events);
  return { variant: d.variant, top: items[0], shown: items.length, clicked: clicked !== null, wanted: items.filter((x) => truth.wants(x, page)).length };
}

/** `n` shoppers, `concurrency` at a time (bounded load on one edge). */
export async function shoppers(base, n, { seed = 1, truth, concurrency = 4 }) {
  const random = rng(seed);
  const seen = [];
  for (let i = 0; i < n; i += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, n - i) }, (_, k) => shopper(base, { random, i: i + k, seed, truth }));
    seen.push(...await Promise.all(batch));
  }
  return seen;
}

/** The demo's ground truth: a shopper on product P wants P's related items (demo catalog). */
export function demoTruth(root) {
  const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
  const related = new Map(catalog.items.map((it) => [it.id, new Set((it.related || []).map((r) => r[0]))]));
  return {
    page: (i) => catalog.items[(i * 7) % catalog.items.length].id,
    wants: (item, page) => related.get(page)?.has(item) || false,
    click: (k) => 0.6 / (1 + k),
    noise: 0.02,
    buy: 0.3,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const n = Math.min(Number(process.argv[2] || 400), 10_000);
  const base = process.argv[3] || 'http://127.0.0.1:8787';
  const seed = Number(process.argv[4] || 1);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const seen = await shoppers(base, n, { seed, truth: demoTruth(root) });
  // The edge ships its counters on a later request once they are FLUSH_MAX_AGE_MS (10 s) old:
  // wait that long and ask once more, so the report does not wait for the next shopper.
  await new Promise((r) => setTimeout(r, 11_000));
  await fetch(`${base}/v1/health`).then((r) => r.arrayBuffer(), () => null);
  const by = {};
  for (const s of seen) {
    const v = (by[s.variant || '-'] ||= { shoppers: 0, clicks: 0, impressions: 0, wanted_shown: 0 });
    v.shoppers += 1;
    v.clicks += s.clicked ? 1 : 0;
    v.impressions += s.shown;
    v.wanted_shown += s.wanted;
  }
  for (const v of Object.values(by)) v.ctr = v.impressions ? v.clicks / v.impressions : 0;
  console.log(JSON.stringify({ shoppers: seen.length, by_variant: by }));
}
