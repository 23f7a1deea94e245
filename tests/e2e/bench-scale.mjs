// The sharded model under wrangler dev (workerd) at catalog sizes (`make bench-scale`): a
// generated catalog published into local KV (every shard), shoppers' sessions stored, then a
// fresh isolate: the first GET /v1/recommendations (cold: head and shards from KV) against warm
// ones, cold-shard decisions in a warm isolate, and workerd's resident memory. Prints JSON.
// Sizes: BENCH_ITEMS (default "20000,1000000"); the seeded KV folders are kept under build/ so
// a second run skips the (minutes-long) seeding.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startStack, root } from './stack.mjs';

const sizes = (process.env.BENCH_ITEMS || '20000,1000000').split(',').map(Number);
const SESSIONS = Number(process.env.BENCH_SESSIONS || 200);
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1' };
const sku = (i) => `sku-${String(i).padStart(5, '0')}`;
const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const ms = (t) => Math.round(t * 100) / 100;

/** Resident memory of the workerd processes under a pid (kB): now and peak. */
function workerdMemory(pid) {
  const out = { rss_kb: 0, peak_kb: 0 };
  const kids = (p) => {
    try { return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean); } catch { return []; }
  };
  const walk = (p) => {
    let status = '';
    try { status = readFileSync(`/proc/${p}/status`, 'utf8'); } catch { return; }
    if (/^Name:\s*workerd/m.test(status)) {
      out.rss_kb += Number((status.match(/VmRSS:\s*(\d+)/) || [0, 0])[1]);
      out.peak_kb += Number((status.match(/VmHWM:\s*(\d+)/) || [0, 0])[1]);
    }
    kids(p).forEach(walk);
  };
  walk(pid);
  return out;
}

async function timed(url, init) {
  const t = performance.now();
  const r = await fetch(url, init);
  await r.arrayBuffer();
  return { ms: performance.now() - t, status: r.status, tier: r.headers.get('x-edgerec-tier') };
}

const results = [];
for (const items of sizes) {
  const state = path.join(root, `build/bench-scale-${items}/state`);
  const out = path.join(root, `build/bench-scale-${items}/release`);
  let publish = null;
  if (!existsSync(path.join(out, 'current.json'))) {
    const t = Date.now();
    publish = JSON.parse(execFileSync(path.join(root, 'target/release/edgerec'), ['publish', '--bundle', 'data/demo/rules.json',
      '--synthetic', String(items), '--out', out, '--kv', 'local', '--persist-to', state], { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 24 }));
    publish.seconds = Math.round((Date.now() - t) / 1000);
  }
  const stack = await startStack({ BREAKER_THRESHOLD: '1000', SERVER_API_KEY: 'bench-server-api-key-0123' }, { state, ready: '/v1/openapi.json' });
  try {
    const h = (i) => ({ 'x-edgerec-session': `bench-scale-${i}`, authorization: 'Bearer bench-server-api-key-0123' });
    // Sessions: three views each, stored in the session KV.
    for (let i = 0; i < SESSIONS; i++) {
      const t = Date.now();
      const r = await fetch(`${stack.base}/v1/events`, { method: 'POST', headers: { ...h(i), 'content-type': 'application/json' },
        body: JSON.stringify({ events: [0, 1, 2].map((k) => ({ type: 'view', item: sku((i * 7919 + k * 104_729) % items), ts: t + k, seq: k + 1 })) }) });
      if (r.status !== 202) throw new Error(`events: ${r.status} ${await r.text()}`);
    }
    // A fresh isolate: nothing loaded.
    await stack.stopEdge();
    await stack.startEdge();
    const idle = workerdMemory(stack.edgePid());
    const cold = await timed(`${stack.base}/v1/recommendations?limit=6`, { headers: h(0) });
    const warm = [];
    for (let k = 0; k < 30; k++) warm.push((await timed(`${stack.base}/v1/recommendations?limit=6`, { headers: h(0) })).ms);
    // Warm isolate, cold shards: every other stored session's first decision.
    const coldShards = [];
    const tiers = new Set();
    for (let i = 1; i < SESSIONS; i++) {
      const r = await timed(`${stack.base}/v1/recommendations?limit=6`, { headers: h(i) });
      coldShards.push(r.ms);
      tiers.add(`${r.status} ${r.tier}`);
    }
    const warmAll = [];
    for (let i = 1; i < SESSIONS; i += 4) warmAll.push((await timed(`${stack.base}/v1/recommendations?limit=6`, { headers: h(i) })).ms);
    const health = await (await fetch(`${stack.base}/v1/health`)).json();
    const counters = (await (await fetch(`${stack.base}/v1/stats`)).json()).counters;
    const mem = workerdMemory(stack.edgePid());
    results.push({
      items, publish, answers: [...tiers],
      cold_first_ms: ms(cold.ms), warm_median_ms: ms(median(warm)), cold_over_warm: ms(cold.ms / median(warm)),
      cold_shards_median_ms: ms(median(coldShards)), warm_other_sessions_median_ms: ms(median(warmAll)),
      shard_reads: counters.shard_reads, shard_cache_hits: counters.shard_cache_hits, decisions_partial: counters.decisions_partial || 0,
      shard_cache: health.shards, wasm_memory_mb: Math.round(health.wasm_memory_bytes / 1048576 * 10) / 10,
      workerd_rss_mb_idle: Math.round(idle.rss_kb / 1024), workerd_rss_mb_after: Math.round(mem.rss_kb / 1024), workerd_peak_mb: Math.round(mem.peak_kb / 1024),
      release_files: readdirSync(out).filter((f) => f.startsWith('shards-')).length,
    });
    console.log(JSON.stringify(results[results.length - 1]));
  } finally {
    await stack.stopEdge();
    stack.stop();
  }
}
