// Browser build benchmark (run by `make bench`): per-decision time of the size-optimised
// browser wasm in Chromium against the speed-optimised Node wasm build in the same run, on the
// same inputs (demo rules + catalog, a steady 60-event session plus one view), plus the
// browser build's sizes. Prints medians and the ratio.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { root, freePort, waitFor } from '../e2e/stack.mjs';
import { launch } from './browser.mjs';

const N = 3000;
const bundle = readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8');
const catalog = readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8');

// Runs in the page and in Node: `m` is the wasm module. A steady 60-event session (30 items),
// then each timed decision adds one view to that same stored session.
function run(m, bundle, catalog, n) {
  const eng = new m.Engine(bundle, new TextEncoder().encode(catalog));
  const t0 = 1764201600000;
  const sku = (i) => `sku-${String(1 + ((i * 37) % 30)).padStart(4, '0')}`;
  const warm = JSON.stringify({ events: Array.from({ length: 60 }, (_, i) => ({ type: 'view', item: sku(i), ts: t0 + i * 1000, seq: i + 1 })) });
  const state = eng.decide(undefined, warm, '', t0 + 60_000, 0, 'browser').state;
  const now = t0 + 61_000;
  const one = (i) => eng.decide(state, JSON.stringify({ events: [{ type: 'view', item: sku(i), ts: now, seq: 100 + i }] }), '{"slot":"bench"}', now, 10, 'browser');
  for (let i = 0; i < 300; i++) one(i);
  // Batches of 100, timed as a whole: browsers coarsen performance.now() to 100 µs.
  const batches = [];
  for (let b = 0; b < n / 100; b++) {
    const s = performance.now();
    for (let j = 0; j < 100; j++) one(b * 100 + j);
    batches.push(((performance.now() - s) / 100) * 1000);
  }
  batches.sort((a, b) => a - b);
  return { median_us: batches[Math.floor(batches.length / 2)], max_us: batches[batches.length - 1] };
}

const port = await freePort();
const origin = spawn('node', [path.join(root, 'www/origin/server.mjs'), String(port)], { stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
await waitFor(`${base}/healthz`, 15_000);
const chrome = await launch();
const page = await chrome.context.newPage();
await page.goto(`${base}/healthz`);
const browser = await page.evaluate(async ([src, bundle, catalog, n]) => {
  const m = await import('/edgerec/pkg/edgerec_wasm.js');
  const t = performance.now();
  await m.default({ module_or_path: '/edgerec/pkg/edgerec_wasm_bg.wasm' });
  const init = performance.now() - t;
  const run = new Function(`return (${src})`)();
  return { init_ms: init, ...run(m, bundle, catalog, n) };
}, [run.toString(), bundle, catalog, N]);
await chrome.close();
origin.kill('SIGTERM');

const node = run(createRequire(import.meta.url)(path.join(root, 'build/wasm-node/edgerec_wasm.js')), bundle, catalog, N);
const sizes = JSON.parse(readFileSync(path.join(root, 'www/pkg/sizes.json'), 'utf8'));
console.log(`browser build (opt-level z) in Chromium: init ${browser.init_ms.toFixed(1)} ms, decide ${browser.median_us.toFixed(1)} µs (median of 100-decision batch means; worst batch ${browser.max_us.toFixed(1)} µs)`);
console.log(`node wasm build (opt-level 3), same inputs: decide ${node.median_us.toFixed(1)} µs (worst batch ${node.max_us.toFixed(1)} µs)`);
console.log(`ratio browser/node median: ${(browser.median_us / node.median_us).toFixed(2)}×`);
console.log(`sizes: wasm ${sizes.wasm.raw} raw / ${sizes.wasm.gzip} gzip / ${sizes.wasm.brotli} brotli; glue ${sizes.glue.gzip} gzip; tracker ${sizes.tracker.gzip} gzip`);
