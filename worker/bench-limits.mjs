// What the abuse limits cost per request: POST /v1/events (one event, a returning cookie
// session, so the session blob comes from the isolate) on the same worker build in workerd
// (Miniflare), with the three rate-limiting bindings and without them, interleaved in one run.
// Prints medians and p90s and the ratio. `make bench` runs it.
import { startWorker, Jar } from './test/helpers.mjs';

const N = Number(process.env.N || 400);
const limited = await startWorker({}, {
  options: {
    ratelimits: {
      LIMIT_CLIENT: { simple: { limit: 1000000, period: 10 } },
      LIMIT_SESSION: { simple: { limit: 1000000, period: 10 } },
      LIMIT_NEW_SESSION: { simple: { limit: 1000000, period: 60 } },
    },
  },
});
const plain = await startWorker();
const jars = [new Jar(), new Jar()];
const times = [[], []];
const post = async (mf, jar, i) => {
  const t = performance.now();
  const r = await mf.dispatchFetch('http://localhost/v1/events', {
    method: 'POST',
    body: JSON.stringify({ events: [{ type: 'view', item: `sku-0${100 + (i % 200)}`, ts: Date.now() }] }),
    headers: { 'content-type': 'application/json', cookie: jar.header(), 'cf-connecting-ip': '198.51.100.1' },
  });
  jar.take(r);
  await r.arrayBuffer();
  if (r.status !== 202) throw new Error(`status ${r.status}`);
  return performance.now() - t;
};
for (let i = 0; i < 50; i++) { await post(limited, jars[0], i); await post(plain, jars[1], i); }
for (let i = 0; i < N; i++) {
  times[0].push(await post(limited, jars[0], i));
  times[1].push(await post(plain, jars[1], i));
}
const q = (a, p) => [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))];
const [l, p] = times.map((t) => ({ p50: q(t, 0.5), p90: q(t, 0.9) }));
console.log(`events POST, ${N} each, interleaved: with rate limits p50 ${l.p50.toFixed(2)} ms p90 ${l.p90.toFixed(2)} ms; without p50 ${p.p50.toFixed(2)} ms p90 ${p.p90.toFixed(2)} ms; ratio p50 ${(l.p50 / p.p50).toFixed(2)}x (+${(l.p50 - p.p50).toFixed(2)} ms)`);
await limited.dispose();
await plain.dispose();
