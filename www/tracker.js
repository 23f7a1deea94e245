// edgerec tracker: the snippet a site adds to its pages (plain ES module, no framework).
//
// - Records views, clicks, add-to-cart and purchases from `data-edgerec-*` attributes and
//   impressions of rendered recommendations; each event gets a client sequence number.
// - Events wait in an outbox in localStorage until the edge acknowledges them (202), so a
//   page change or an edge outage loses nothing; a redelivery (same seq) is ignored by the
//   edge, so nothing counts twice. Sent in batches with fetch(keepalive), sendBeacon on exit.
// - Fills `data-edgerec-slot` elements the edge did not fill. When the edge does not answer
//   within `budgetMs` (or fails), the page decides locally with the same core compiled to
//   wasm, from the session blob kept in localStorage, the rule bundle and the model head cached
//   from the edge, and the few item shards the session needs (content-addressed: cached for
//   good): tier `browser`. The wasm, head and shards are fetched lazily (after load, when idle)
//   and kept in Cache Storage; never the whole catalog.
//
// Settings: `window.edgerecConfig = { endpoint, budgetMs, limit, pkg, itemUrl, debug }`.
// - Decisions made in the page are reported (counts only) once the edge is back, exactly once.
// API: `window.edgerec.{track, flush, refresh, recommend, report, stats}`; a `edgerec:render`
// event on each slot filled here (detail: {slot, tier, items, ms, decision}).

const cfg = {
  endpoint: '',
  budgetMs: 150,
  limit: 4,
  pkg: '/edgerec/pkg/',
  itemUrl: '/p/{id}',
  debug: false,
  maxOutbox: 500,
  ...(globalThis.edgerecConfig || {}),
};
const KEY = { outbox: 'edgerec_outbox', seq: 'edgerec_seq', state: 'edgerec_state', unit: 'edgerec_unit', report: 'edgerec_report', sealed: 'edgerec_report_sealed' };
const MODEL_CACHE = 'edgerec-model-v1';
const stats = { sent: 0, acked: 0, duplicates: 0, rejected: 0, dropped: 0, local: 0, edge: 0, reported: 0, firstLocalMs: null, engineLoadMs: null };

const load = (k, d) => { try { const v = localStorage.getItem(k); return v == null ? d : JSON.parse(v); } catch { return d; } };
const save = (k, v) => { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* full or disabled */ } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- events -----------------------------------------------------------------------------

function track(type, item, extra = {}) {
  if (!item) return;
  const seq = load(KEY.seq, 0) + 1;
  save(KEY.seq, seq);
  const box = load(KEY.outbox, []);
  box.push({ type, item: String(item), ts: Date.now(), seq, ...extra });
  if (box.length > cfg.maxOutbox) stats.dropped += box.splice(0, box.length - cfg.maxOutbox).length;
  save(KEY.outbox, box);
  schedule(type === 'impression' ? 1000 : 200);
}

let timer = 0;
let backoff = 0;
function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(flush, Math.max(ms, backoff));
}

function keepState(j) {
  if (j && typeof j.state === 'string') save(KEY.state, j.state);
  // The experiment unit the edge buckets by (a keyed hash; the session id itself stays in its cookie).
  if (j && typeof j.unit === 'string') save(KEY.unit, j.unit);
}

let sending = null;
/** Sends the outbox (100 events per request); resolves when done or failed. */
function flush() {
  if (sending) return sending;
  const batch = load(KEY.outbox, []).slice(0, 100);
  if (!batch.length) return report();
  sending = (async () => {
    try {
      stats.sent += batch.length;
      const r = await fetch(`${cfg.endpoint}/v1/events`, {
        method: 'POST', keepalive: true, credentials: 'include',
        headers: { 'content-type': 'application/json', 'x-edgerec-want-state': '1' },
        body: JSON.stringify({ events: batch }),
      });
      if (r.status === 202) {
        const j = await r.json();
        stats.acked += j.accepted || 0;
        stats.duplicates += j.duplicates || 0;
        keepState(j);
        ack(batch);
        backoff = 0;
        report();
      } else if (r.status === 400 || r.status === 413) {
        // Retrying cannot help; the answer names the bad fields.
        stats.rejected += batch.length;
        console.warn('edgerec: events rejected', r.status, await r.text());
        ack(batch);
      } else {
        throw new Error(`status ${r.status}`);
      }
    } catch {
      backoff = Math.min(backoff ? backoff * 2 : 1000, 8000);
    } finally {
      sending = null;
    }
    if (load(KEY.outbox, []).length) schedule(backoff);
  })();
  return sending;
}

function ack(batch) {
  const done = new Set(batch.map((e) => e.seq));
  save(KEY.outbox, load(KEY.outbox, []).filter((e) => !done.has(e.seq)));
}

// On exit: a beacon the browser delivers after the page is gone. The events stay in the
// outbox (no answer to read); the next page resends them and the edge reports duplicates.
addEventListener('pagehide', () => {
  const box = load(KEY.outbox, []);
  if (box.length && navigator.sendBeacon) {
    navigator.sendBeacon(`${cfg.endpoint}/v1/events`, new Blob([JSON.stringify({ events: box.slice(0, 100) })], { type: 'application/json' }));
  }
});
addEventListener('online', () => flush());

// --- reports of the page's own decisions -----------------------------------------------------
// Decisions made here (tier `browser`) are counted into an open report; once the edge answers
// again the report is sealed under a random id and sent until the edge returns 202. The edge
// relays it as one batch to the collector, which drops a batch id it has already written: a
// lost answer means a resend, never a second count.

function countLocal(delta) {
  const r = load(KEY.report, { decisions: 0, tiers: {}, rule_hits: {}, variants: {} });
  const add = (m, k, n) => { m[k] = (m[k] || 0) + n; };
  r.decisions += delta.decisions;
  for (const [k, n] of Object.entries(delta.tiers || {})) add(r.tiers, k, n);
  for (const [k, n] of Object.entries(delta.rule_hits || {})) add(r.rule_hits, k, n);
  for (const [k, v] of Object.entries(delta.variants || {})) {
    if (v.exposures) r.variants[k] = { exposures: (r.variants[k]?.exposures || 0) + v.exposures };
  }
  save(KEY.report, r);
}

let reporting = null;
/** Seals the page's counted decisions (after any still being made) and sends them once. */
function report() {
  if (reporting) return reporting;
  reporting = (async () => {
    try {
      // A decision in flight (its shards still loading) belongs in this report, not the next.
      while (deciding.size) await Promise.allSettled([...deciding]);
      let sealed = load(KEY.sealed, null);
      if (!sealed) {
        const open = load(KEY.report, null);
        if (!open || !open.decisions) return;
        const id = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
        sealed = { id, delta: open };
        save(KEY.sealed, sealed);
        localStorage.removeItem(KEY.report);
      }
      const r = await fetch(`${cfg.endpoint}/v1/browser-decisions`, {
        method: 'POST', keepalive: true, credentials: 'include',
        headers: { 'content-type': 'application/json' }, body: JSON.stringify(sealed),
      });
      if (r.status === 202 || r.status === 400) {
        if (r.status === 400) console.warn('edgerec: report rejected', await r.text());
        else stats.reported += sealed.delta.decisions;
        localStorage.removeItem(KEY.sealed);
      }
    } catch { /* the next successful flush retries */ } finally {
      reporting = null;
    }
  })();
  return reporting;
}

// --- the local engine (lazy) ----------------------------------------------------------

async function cached(url, preferCache) {
  const cache = globalThis.caches ? await caches.open(MODEL_CACHE).catch(() => null) : null;
  if (preferCache && cache) {
    const hit = await cache.match(url);
    if (hit) return hit;
  }
  try {
    const r = await fetch(url, { credentials: 'include' });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    if (cache) await cache.put(url, r.clone());
    return r;
  } catch (e) {
    const hit = cache && (await cache.match(url));
    if (hit) return hit;
    throw e;
  }
}

let engineP = null;
let modelTag = null;
/** The wasm engine with the cached model; `fresh` re-checks the model with the edge. */
function engine(fresh = false) {
  if (engineP && !fresh) return engineP;
  const previous = engineP;
  engineP = (async () => {
    const t0 = performance.now();
    const mod = await import(`${cfg.pkg}edgerec_wasm.js`);
    if (!previous) await mod.default({ module_or_path: await cached(`${cfg.pkg}edgerec_wasm_bg.wasm`, true) });
    const b = await cached(`${cfg.endpoint}/v1/model/bundle`, !fresh);
    const c = await cached(`${cfg.endpoint}/v1/model/catalog`, !fresh);
    const tag = `${b.headers.get('etag')}|${c.headers.get('etag')}`;
    if (previous && tag === modelTag) return previous;
    const eng = new mod.Engine(await b.text(), new Uint8Array(await c.arrayBuffer()));
    modelTag = tag;
    stats.engineLoadMs = Math.round(performance.now() - t0);
    return { mod, eng };
  })();
  engineP.catch(() => { engineP = previous; });
  return engineP;
}

const b64 = {
  decode: (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)),
  encode: (u) => btoa(String.fromCharCode(...u)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''),
};

/** The page's decision input: the stored session plus every event not yet acknowledged. */
function localInput(mod, slot) {
  const stored = load(KEY.state, null);
  const context = { slot, path: location.pathname, device: mod.deviceClass(navigator.userAgent), session_id: load(KEY.unit, null) };
  // Redelivered events (same seq) are ignored by the core, so the whole outbox can be passed.
  const box = load(KEY.outbox, []);
  return [stored ? b64.decode(stored) : undefined, box.length ? JSON.stringify({ events: box }) : '', JSON.stringify(context), Date.now()];
}

/** Shards that could not be fetched, and until when not to ask again (ms). */
const unreachable = new Map();

/** Loads the item shards a decision on `input` needs (cache first: they never change). */
async function loadShards(eng, input) {
  const now = Date.now();
  const keys = JSON.parse(eng.plan(...input, 'browser')).filter((k) => !(unreachable.get(k) > now));
  await Promise.all(keys.map(async (key) => {
    try {
      const r = await cached(`${cfg.endpoint}/v1/model/shard?key=${encodeURIComponent(key)}`, true);
      eng.addShard(key, await r.text());
    } catch {
      // Decided without it (the decision says what was missing); an outage is not asked about
      // on every decision.
      unreachable.set(key, now + 30_000);
    }
  }));
}

/** Local decisions still being made (`report` waits for them). */
const deciding = new Set();

/** Decides in the page: the stored session plus every event not yet acknowledged by the edge. */
function decideLocally(slot, limit) {
  const p = decideNow(slot, limit);
  deciding.add(p);
  const done = () => deciding.delete(p);
  p.then(done, done);
  return p;
}

async function decideNow(slot, limit) {
  const { mod, eng } = await engine();
  const input = localInput(mod, slot);
  await loadShards(eng, input);
  const d = eng.decide(...input, limit, 'browser');
  const decision = JSON.parse(d.json);
  if (d.state) save(KEY.state, b64.encode(d.state));
  countLocal(decision.delta);
  stats.local += 1;
  // The slot's markup comes from the core, as the edge's does (edgerec::api::slot_html).
  const html = mod.slotHtml(JSON.stringify(decision.items), cfg.itemUrl);
  return { items: decision.items, tier: decision.tier, variant: decision.variant, rule_hits: decision.rule_hits, features: decision.features, missing: decision.missing, html };
}

// --- recommendations -------------------------------------------------------------------

/** Recommendations for a slot: the edge within the budget, else the page itself. */
async function recommend(slot, limit = cfg.limit, deadline = performance.now() + cfg.budgetMs) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), Math.max(0, deadline - performance.now()));
  try {
    const q = `limit=${limit}&slot=${encodeURIComponent(slot)}${cfg.debug ? '&debug=1' : ''}`;
    const r = await fetch(`${cfg.endpoint}/v1/recommendations?${q}`, {
      signal: ctl.signal, credentials: 'include', headers: { 'x-edgerec-want-state': '1' },
    });
    if (!r.ok || !(r.headers.get('content-type') || '').includes('json')) throw new Error(`status ${r.status}`);
    const j = await r.json();
    keepState(j);
    stats.edge += 1;
    return j;
  } catch {
    return decideLocally(slot, limit);
  } finally {
    clearTimeout(t);
  }
}

async function fill(el, deadline) {
  const t0 = performance.now();
  const slot = el.dataset.edgerecSlot;
  let d;
  try {
    d = await recommend(slot, Number(el.dataset.edgerecLimit || cfg.limit), deadline);
  } catch (e) {
    // Neither the edge nor a local model (never cached): the page keeps its own content.
    console.warn('edgerec: no recommendations for', slot, e);
    return;
  }
  // Markup made by the core (the edge's answer to a slot, or slotHtml for a local decision).
  el.innerHTML = d.html || '';
  el.dataset.edgerecFilled = d.tier;
  const ms = Math.round(performance.now() - t0);
  if (d.tier === 'browser' && stats.firstLocalMs == null) stats.firstLocalMs = Math.round(performance.now());
  observe(el);
  el.dispatchEvent(new CustomEvent('edgerec:render', { bubbles: true, detail: { slot, tier: d.tier, items: d.items, ms, decision: d } }));
}

/** Sends pending events, then (re)fills every slot (or only the unfilled ones). */
async function refresh({ all = true } = {}) {
  const deadline = performance.now() + cfg.budgetMs;
  await Promise.race([flush(), sleep(cfg.budgetMs / 2)]);
  const slots = [...document.querySelectorAll('[data-edgerec-slot]')].filter((el) => all || !el.dataset.edgerecFilled);
  await Promise.all(slots.map((el) => fill(el, deadline)));
}

// --- impressions and interactions --------------------------------------------------------

const seen = new WeakSet();
const io = globalThis.IntersectionObserver
  ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting && !seen.has(e.target)) {
        seen.add(e.target);
        io.unobserve(e.target);
        track('impression', e.target.dataset.edgerecItem, placed(e.target));
      }
    }
  }, { threshold: 0.5 })
  : null;
// Where a related list placed a recommended item (slot markup from the core): sent with its
// impression and click, so the trainer can tell clicks earned from clicks a position gives.
function placed(el) {
  const { edgerecFrom: from, edgerecPos: pos } = el.dataset;
  return from && /^\d+$/.test(pos || '') ? { from, pos: Number(pos) } : {};
}
function observe(root) {
  if (io) root.querySelectorAll('.edgerec-item[data-edgerec-item]').forEach((el) => io.observe(el));
}

document.addEventListener('click', (e) => {
  const t = e.target instanceof Element ? e.target : null;
  if (!t) return;
  const item = t.closest('[data-edgerec-item]');
  if (item) track('click', item.dataset.edgerecItem, placed(item));
  const cart = t.closest('[data-edgerec-add-to-cart]');
  if (cart) track('add_to_cart', cart.dataset.edgerecAddToCart, cart.dataset.edgerecPrice ? { price: Number(cart.dataset.edgerecPrice) } : {});
  const buy = t.closest('[data-edgerec-purchase]');
  if (buy) for (const id of buy.dataset.edgerecPurchase.split(/\s+/).filter(Boolean)) track('purchase', id);
});

function start() {
  document.querySelectorAll('[data-edgerec-view]').forEach((el) => track('view', el.dataset.edgerecView));
  observe(document);
  refresh({ all: false });
  // Warm the local engine and this session's shards once the page is idle, so an outage later
  // finds them ready.
  const warm = () => engine(true).then(({ mod, eng }) => loadShards(eng, localInput(mod, ''))).catch(() => {});
  (globalThis.requestIdleCallback || ((f) => setTimeout(f, 500)))(warm);
  schedule(0);
}

globalThis.edgerec = { track, flush, refresh, recommend, report, stats, config: cfg };
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
