// Simulated shoppers with a known ground truth, for experiments: each opens a product page (a
// view), asks the edge for a list of four, reports the impressions (placed: `from`, `pos`, as
// the tracker sends them), and clicks the first listed item it decides to click, with a
// probability the truth gives per item and position (maybe buying it). Every shopper is a new
// session from its own client address (wrangler dev passes `cf-connecting-ip` through; on
// Cloudflare the platform sets it), so the new-session rate limit sees many clients.
//
// `make shoppers` (with `make dev` running) sends 1,200 of them to 127.0.0.1:8787 with the
// demo's ground truth (`demoTruth`): shoppers on twelve product pages like some products and
// not others, which no model knows. The demo's experiment serves the control without exposure
// feedback and the treatment with it. The script prints, per variant, the clicks and impressions
// the shoppers made and the CTR the truth expects of the lists each variant showed, and the lift
// the truth implies: `edgerec experiments report` (after the trainer's next rounds) is held
// against it. The experiment tests drive the same code with their own truth.
//
// Usage: node scripts/shoppers.mjs [count=1200] [base=http://127.0.0.1:8787] [seed=1] [waves=4]
// (the waves are 55 s apart, so the model learns between them: about three minutes in all)
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
  const list = d.items || [];
  const items = list.map((x) => x.id);
  // Where a related list placed each item, as the slot markup says (`related:<anchor>`).
  const place = list.map((x, k) => {
    const from = (x.why || []).find((w) => w.startsWith('related:'));
    return from ? { from: from.slice('related:'.length), pos: k } : {};
  });
  const events = items.map((item, k) => ({ type: 'impression', item, ts: t0 + 1 + k, seq: 2 + k, ...place[k] }));
  const chance = items.map((item, k) => (truth.wants(item, page) ? truth.click(k) : truth.noise));
  let clicked = null;
  for (const [k, item] of items.entries()) {
    if (random() < chance[k]) {
      clicked = item;
      events.push({ type: 'click', item, ts: t0 + 10, seq: 10, ...place[k] });
      if (random() < truth.buy) events.push({ type: 'purchase', item, price: 20, quantity: 1, ts: t0 + 11, seq: 11 });
      break;
    }
  }
  await post(events);
  // The truth's chance that this shopper clicks anything in this list (it clicks at most once).
  const expected = 1 - chance.reduce((a, c) => a * (1 - c), 1);
  return { variant: d.variant, page, top: items[0], items, shown: items.length, clicked: clicked !== null, expected, wanted: items.filter((x) => truth.wants(x, page)).length };
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

/** FNV-1a (32 bits) of a string: a fixed, model-independent property of an id. */
function fnv(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The demo's ground truth, `pages` product pages (the catalog's `first`-th item, then every
 * `step`-th): shoppers like about half of all
 * products (a hash of the id decides, so no model knows it and no list is sorted by it) and
 * click a liked item at position k with probability 0.5 / (1 + k/4), anything else rarely.
 * Co-visitation learns from clicks; only exposure feedback also learns from the items shown
 * and passed over, which is what the demo's experiment compares.
 */
export function demoTruth(root, { pages = 12, first = 17, step = 23 } = {}) {
  const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
  const ids = catalog.items.map((it) => it.id);
  return {
    page: (i) => ids[(first + (i % pages) * step) % ids.length],
    wants: (item) => fnv(item) % 2 === 0,
    click: (k) => 0.5 / (1 + k / 4),
    noise: 0.02,
    buy: 0.3,
  };
}

/** Per variant: shoppers, clicks, impressions, observed CTR and the CTR the truth expects. */
export function byVariant(seen) {
  const by = {};
  for (const s of seen) {
    const v = (by[s.variant || '-'] ||= { shoppers: 0, clicks: 0, impressions: 0, expected_clicks: 0, wanted_shown: 0 });
    v.shoppers += 1;
    v.clicks += s.clicked ? 1 : 0;
    v.impressions += s.shown;
    v.expected_clicks += s.expected;
    v.wanted_shown += s.wanted;
  }
  for (const v of Object.values(by)) {
    v.ctr = v.impressions ? v.clicks / v.impressions : 0;
    v.truth_ctr = v.impressions ? v.expected_clicks / v.impressions : 0;
  }
  return by;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const n = Math.min(Number(process.argv[2] || 1200), 10_000);
  const base = process.argv[3] || 'http://127.0.0.1:8787';
  const seed = Number(process.argv[4] || 1);
  const waves = Math.max(1, Number(process.argv[5] || 4));
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const truth = demoTruth(root);
  // In waves, with a pause for the trainer's round (20 s) and the edge's config refresh (30 s)
  // between them: what one wave teaches the model, the next is served.
  const seen = [];
  for (let w = 0; w < waves; w++) {
    if (w > 0) await new Promise((r) => setTimeout(r, 55_000));
    const wave = await shoppers(base, Math.ceil(n / waves), { seed: seed * 1000 + w, truth });
    seen.push(...wave);
    const by = byVariant(wave);
    console.error(`wave ${w + 1}/${waves}: truth CTR control ${by.control?.truth_ctr.toFixed(4)}, treatment ${by.treatment?.truth_ctr.toFixed(4)}`);
  }
  // The edge ships its counters on a later request once they are FLUSH_MAX_AGE_MS (10 s) old:
  // wait that long and ask once more, so the report does not wait for the next shopper.
  await new Promise((r) => setTimeout(r, 11_000));
  await fetch(`${base}/v1/health`).then((r) => r.arrayBuffer(), () => null);
  const by = byVariant(seen);
  const [c, t] = [by.control, by.treatment];
  const truthLift = c && t && c.truth_ctr > 0 ? t.truth_ctr / c.truth_ctr - 1 : null;
  console.log(JSON.stringify({ shoppers: seen.length, by_variant: by, truth_ctr_lift: truthLift }, null, 1));
  console.log('The report (edgerec experiments report --file data/trainer/experiments.json, after the trainer\'s'
    + ' next rounds) should hold the truth\'s CTR lift inside its interval for the treatment.');
}
