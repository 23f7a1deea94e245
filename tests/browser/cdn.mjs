// A stand-in for the CDN in front of the edge worker, as deployed with "fail open": requests go
// to the worker; when it cannot be reached, they go straight to the origin. Pages then arrive
// without filled slots and the API routes answer 404 — the situation the browser fallback is
// for. Same host and port throughout, so the page keeps its cookies and localStorage.
import http from 'node:http';

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-encoding', 'content-length', 'host']);

export function startCdn(edge, origin) {
  const state = { edgeUp: 0, failedOpen: 0 };
  // A request cut off midway (the edge stopped while answering, the page navigated away)
  // ends its response; it must not surface as an unhandled rejection after the tests.
  const server = http.createServer((req, res) => proxy(req, res).catch(() => res.destroy()));
  async function proxy(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks);
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP.has(k)));
    const go = (base) => fetch(base + req.url, { method: req.method, headers, body, redirect: 'manual' });
    let r;
    try {
      r = await go(edge);
      state.edgeUp += 1;
    } catch {
      state.failedOpen += 1;
      try {
        r = await go(origin);
      } catch {
        res.writeHead(502).end();
        return;
      }
    }
    const out = {};
    r.headers.forEach((v, k) => { if (!HOP.has(k) && k !== 'set-cookie') out[k] = v; });
    const cookies = r.headers.getSetCookie();
    if (cookies.length) out['set-cookie'] = cookies;
    res.writeHead(r.status, out);
    res.end(Buffer.from(await r.arrayBuffer()));
  }
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      state,
      close: () => server.close(),
    }));
  });
}
