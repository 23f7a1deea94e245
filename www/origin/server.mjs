// The demo origin: a small shop on the demo catalog, served as plain HTML with recommendation
// slots (`data-edgerec-slot`) that the edge worker fills. Usage: node server.mjs [port]
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
const byId = new Map(catalog.items.map((i) => [i.id, i]));
const port = Number(process.argv[2] || process.env.ORIGIN_PORT || 8788);

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const css = `body{font-family:system-ui,sans-serif;margin:0;color:#1d232a;background:#f7f7f5}
header{background:#1d3557;color:#fff;padding:12px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1000px;margin:0 auto;padding:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.card,.edgerec-item{display:block;background:#fff;border-radius:8px;padding:10px;color:inherit;text-decoration:none;box-shadow:0 1px 3px #0002}
[data-edgerec-slot]{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;min-height:40px}
.price{color:#2a9d8f;font-weight:600}button{background:#e76f51;color:#fff;border:0;border-radius:6px;padding:8px 14px}`;

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><link rel="stylesheet" href="/style.css"><title>${esc(title)}</title></head>
<body><header><a href="/">edgerec demo shop</a></header><main>${body}</main></body></html>`;
}

function card(item) {
  return `<a class="card" href="/p/${esc(item.id)}" data-edgerec-item="${esc(item.id)}"><div>${esc(item.title || item.id)}</div>
<div class="price">${item.price != null ? '€' + item.price.toFixed(2) : ''}</div><small>${esc(item.category || '')}</small></a>`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://origin');
  const send = (status, type, body) => {
    res.writeHead(status, { 'content-type': type, 'x-origin': 'edgerec-demo' });
    res.end(body);
  };
  if (url.pathname === '/style.css') return send(200, 'text/css; charset=utf-8', css);
  if (url.pathname === '/healthz') return send(200, 'application/json', '{"ok":true}');
  if (url.pathname === '/') {
    const grid = catalog.items.filter((_, i) => i % 10 === 0).map(card).join('');
    return send(200, 'text/html; charset=utf-8', page('edgerec demo shop',
      `<h2>Recommended for you</h2><div data-edgerec-slot="home-top"></div><h2>All products</h2><div class="grid">${grid}</div>`));
  }
  const m = url.pathname.match(/^\/p\/([A-Za-z0-9_-]+)$/);
  if (m && byId.has(m[1])) {
    const it = byId.get(m[1]);
    return send(200, 'text/html; charset=utf-8', page(it.title || it.id,
      `<article data-edgerec-view="${esc(it.id)}"><h1>${esc(it.title || it.id)}</h1><p class="price">€${(it.price ?? 0).toFixed(2)}</p>
<p>${esc(it.category || '')} · ${esc((it.tags || []).join(', '))}</p>
<button data-edgerec-add-to-cart="${esc(it.id)}">Add to cart</button></article>
<h2>You may also like</h2><div data-edgerec-slot="product-related"></div>`));
  }
  return send(404, 'text/html; charset=utf-8', page('Not found', '<h1>Not found</h1>'));
});

server.listen(port, '127.0.0.1', () => console.log(`demo origin on http://127.0.0.1:${port}`));
