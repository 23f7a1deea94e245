// HTTP latency of the worker under `wrangler dev`, same loopback client, same run:
// GET /v1/recommendations (a 30-event session) against GET /v1/health/kv (one uncached KV
// get: the baseline), then POST /v1/events sequentially and with 8 concurrent clients.
import { startStack, browser } from '../tests/e2e/stack.mjs';

const N = Number(process.env.N || 400);
const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) * p)]; };
const fmt = (xs) => ({ median_ms: +q(xs, 0.5).toFixed(2), p90_ms: +q(xs, 0.9).toFixed(2), p99_ms: +q(xs, 0.99).toFixed(2) });

async function timed(fn, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fn(i);
    await r.arrayBuffer();
    out.push(performance.now() - t);
  }
  return out;
}

const stack = await startStack();
try {
  const go = browser(stack.base);
  const now = Date.now();
  const events = Array.from({ length: 30 }, (_, i) => ({ type: i % 5 === 4 ? 'click' : 'view', item: `sku-${String(1 + (i * 7) % 320).padStart(4, '0')}`, ts: now - 60_000 + i * 1000 }));
  await (await go('/v1/events', { method: 'POST', body: JSON.stringify({ events }), headers: { 'content-type': 'application/json' } })).arrayBuffer();
  // Warm-up, then interleave the two routes so drift affects both alike.
  await timed(() => go('/v1/recommendations?limit=10'), 50);
  await timed(() => fetch(`${stack.base}/v1/health/kv`), 50);
  const recs = [];
  const kv = [];
  for (let i = 0; i < N; i++) {
    recs.push(...await timed(() => go('/v1/recommendations?limit=10'), 1));
    kv.push(...await timed(() => fetch(`${stack.base}/v1/health/kv`), 1));
  }
  const ingest = await timed((i) => go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ type: 'view', item: `sku-${String(1 + i % 320).padStart(4, '0')}`, ts: Date.now() }] }) }), N);
  const clients = 8;
  const t0 = performance.now();
  const conc = (await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const b = browser(stack.base);
    return timed((i) => b('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ type: 'view', item: `sku-${String(1 + (c * 40 + i) % 320).padStart(4, '0')}`, ts: Date.now() }] }) }), N / 4);
  }))).flat();
  const secs = (performance.now() - t0) / 1000;
  const r = {
    recommendations: fmt(recs),
    kv_get_baseline: fmt(kv),
    ratio_median: +(q(recs, 0.5) / q(kv, 0.5)).toFixed(2),
    events_sequential: { ...fmt(ingest), per_s: +(N / (ingest.reduce((a, b) => a + b, 0) / 1000)).toFixed(0) },
    events_8_clients: { ...fmt(conc), per_s: +(conc.length / secs).toFixed(0) },
  };
  console.log(JSON.stringify(r, null, 1));
} finally {
  stack.stop();
}
