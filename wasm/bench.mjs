// Per-call latency of the standard decision in wasm under Node, timed one call at a time like
// benches/latency.rs, printing one JSON line (median and p99 in microseconds).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const wasm = require(path.join(root, 'build/wasm-node/edgerec_wasm.js'));
const iters = Number(process.env.ITERS || 50000);
const bench = new wasm.Bench();
for (let i = 0; i < 2000; i++) bench.decideOne();
const ns = new Float64Array(iters);
for (let i = 0; i < iters; i++) {
  const t = process.hrtime.bigint();
  bench.decideOne();
  ns[i] = Number(process.hrtime.bigint() - t);
}
ns.sort();
const q = (p) => ns[Math.floor((ns.length - 1) * p)] / 1000;
console.log(JSON.stringify({
  host: 'wasm-node', iters, median_us: +q(0.5).toFixed(2), p90_us: +q(0.9).toFixed(2),
  p99_us: +q(0.99).toFixed(2), blob_bytes: bench.blobBytes,
}));
