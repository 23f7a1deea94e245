// The demo origin: a small shop on the demo catalog (home with a product grid, category and
// product pages, a cart, generated SVG product images), the live dashboard, and the static
// files of www/ (tracker, shop script, the browser build in /edgerec/pkg/). Pages carry
// recommendation slots (`data-edgerec-slot`) that the edge fills; the tracker fills what the
// edge did not (or decides in the page when the edge is down). The dashboard's collector data
// is proxied from COLLECTOR_URL, so the page reads one origin.
// The experiment controller's report (the trainer writes it into its state directory) is served
// as /experiments/report for the dashboard's experiments panel.
// Usage: node server.mjs [port]   (env COLLECTOR_URL, default http://127.0.0.1:8789;
// EXPERIMENTS_REPORT, default data/trainer/experiments.json)
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { esc } from '../html.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const www = path.join(root, 'www');
const catalog = JSON.parse(readFileSync(path.join(root, 'data/demo/catalog.json'), 'utf8'));
const byId = new Map(catalog.items.map((i) => [i.id, i]));
const categories = [...new Set(catalog.items.map((i) => i.category).filter(Boolean))];
const port = Number(process.argv[2] || process.env.ORIGIN_PORT || 8788);
const collector = (process.env.COLLECTOR_URL || 'http://127.0.0.1:8789').replace(/\/$/, '');
const experimentsReport = process.env.EXPERIMENTS_REPORT || path.join(root, 'data/trainer/experiments.json');

const money = (p) => (p != null ? `€${Number(p).toFixed(2)}` : '');
const label = (c) => String(c || '').replace(/-/g, ' ');

// One hue and one drawing per category: recognisable, generated, no binary assets.
const look = {
  'running-shoes': [12, '<path d="M40 130 q10-40 40-45 l20 15 q30 5 60 20 q12 8 10 20 H40z" /><path d="M40 150 h130" stroke-width="8"/>'],
  'running-apparel': [200, '<path d="M70 50 l30-15 h20 l30 15 l20 30 -20 12 v70 H70 V92 l-20-12z"/>'],
  outdoor: [130, '<path d="M30 160 L95 50 L160 160z"/><path d="M110 160 L150 95 L190 160z" opacity=".7"/>'],
  coffee: [28, '<rect x="60" y="70" width="70" height="85" rx="10"/><path d="M130 90 q30 0 30 25 t-30 25" fill="none" stroke-width="10"/><path d="M75 55 q10-15 0-30 M95 55 q10-15 0-30" fill="none" stroke-width="5"/>'],
  kitchen: [350, '<circle cx="110" cy="105" r="55"/><rect x="160" y="95" width="45" height="20" rx="8"/>'],
  books: [265, '<rect x="55" y="45" width="90" height="120" rx="6"/><path d="M75 70 h50 M75 90 h50 M75 110 h35" stroke-width="6"/>'],
  audio: [290, '<path d="M50 120 v-20 q0-60 60-60 t60 60 v20" fill="none" stroke-width="12"/><rect x="40" y="110" width="30" height="50" rx="8"/><rect x="150" y="110" width="30" height="50" rx="8"/>'],
  accessories: [175, '<circle cx="110" cy="105" r="50" fill="none" stroke-width="12"/><path d="M110 75 v32 l20 12" fill="none" stroke-width="8"/>'],
};

function svg(item) {
  const [hue, art] = look[item.category] || [0, '<circle cx="110" cy="105" r="50"/>'];
  const n = Number(item.id.replace(/\D/g, '')) || 0;
  const h = (hue + (n % 5) * 9) % 360;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 220 220" role="img" aria-label="${esc(item.title || item.id)}">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl(${h} 70% 92%)"/><stop offset="1" stop-color="hsl(${h} 60% 80%)"/></linearGradient></defs>
<rect width="220" height="220" fill="url(#g)"/>
<g fill="hsl(${h} 55% 42%)" stroke="hsl(${h} 55% 30%)" stroke-width="3" stroke-linejoin="round">${art}</g>
<text x="110" y="205" text-anchor="middle" font-family="system-ui,sans-serif" font-size="14" fill="hsl(${h} 40% 25%)">${esc(item.title || item.id)}</text></svg>`;
}

const css = readFileSync(path.join(www, 'shop.css'), 'utf8');

function page(title, body, { dashboard = false } = {}) {
  const nav = categories.map((c) => `<a href="/c/${esc(c)}">${esc(label(c))}</a>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><link rel="stylesheet" href="/style.css"><title>${esc(title)}</title>
<script>window.edgerecConfig = { budgetMs: 150, limit: 4, debug: true };</script></head>
<body><header><a class="brand" href="/">Northwind Goods</a><nav>${nav}</nav>
<a class="cart-link" href="/cart">Cart <span id="cart-count">0</span></a><a class="dash-link" href="/dashboard">Dashboard</a></header>
<main>${body}</main>
${dashboard ? '<script type="module" src="/dashboard.js"></script>' : '<script type="module" src="/edgerec/tracker.js"></script><script type="module" src="/shop.js"></script>'}
</body></html>`;
}

function card(item) {
  return `<a class="card" href="/p/${esc(item.id)}" data-edgerec-item="${esc(item.id)}">
<img src="/img/${esc(item.id)}.svg" alt="" loading="lazy" width="220" height="220">
<span class="title">${esc(item.title || item.id)}</span><span class="price">${money(item.price)}</span>
<small>${esc(label(item.category))}</small></a>`;
}

function grid(items) {
  return `<div class="grid">${items.map(card).join('')}</div>`;
}

const types = { '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css; charset=utf-8' };

function file(res, rel) {
  const p = path.normalize(path.join(www, rel));
  if (!p.startsWith(www + path.sep) || !existsSync(p)) return false;
  res.writeHead(200, { 'content-type': types[path.extname(p)] || 'application/octet-stream', 'cache-control': 'no-cache' });
  res.end(readFileSync(p));
  return true;
}

async function proxyCollector(res, p) {
  try {
    const r = await fetch(`${collector}${p}`, { signal: AbortSignal.timeout(2000) });
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') || 'text/plain', 'cache-control': 'no-store' });
    res.end(Buffer.from(await r.arrayBuffer()));
  } catch (e) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ field: 'collector', message: String(e.message || e) }] }));
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://origin');
  const send = (status, type, body, extra = {}) => {
    res.writeHead(status, { 'content-type': type, 'x-origin': 'edgerec-demo', ...extra });
    res.end(body);
  };
  const html = (status, body) => send(status, 'text/html; charset=utf-8', body);
  const p = url.pathname;
  if (p === '/style.css') return send(200, 'text/css; charset=utf-8', css);
  if (p === '/healthz') return send(200, 'application/json', '{"ok":true}');
  if (p === '/shop.js' || p === '/dashboard.js' || p === '/html.js') { if (file(res, p.slice(1))) return; }
  if (p === '/edgerec/tracker.js') { if (file(res, 'tracker.js')) return; }
  if (p.startsWith('/edgerec/pkg/')) { if (file(res, p.slice('/edgerec/'.length))) return; }
  if (p === '/collector/metrics') return proxyCollector(res, '/metrics');
  if (p === '/collector/summary') return proxyCollector(res, '/v1/summary');
  if (p === '/collector/readyz') return proxyCollector(res, '/readyz');
  if (p === '/experiments/report') {
    // No report yet (no experiment sums have reached the trainer): an empty document.
    const body = existsSync(experimentsReport) ? readFileSync(experimentsReport) : '{"experiments":{}}';
    return send(200, 'application/json', body, { 'cache-control': 'no-store' });
  }
  let m = p.match(/^\/img\/([A-Za-z0-9_-]+)\.svg$/);
  if (m && byId.has(m[1])) return send(200, 'image/svg+xml', svg(byId.get(m[1])), { 'cache-control': 'public, max-age=3600' });
  if (p === '/') {
    const featured = catalog.items.filter((_, i) => i % 7 === 0).slice(0, 24);
    return html(200, page('Northwind Goods', `<section class="hero"><h1>Gear for the road, the trail and the kitchen</h1>
<p>Every list on this page is decided at the edge, for you, from what you do here.</p></section>
<h2>Recommended for you</h2><div class="slot" data-edgerec-slot="home-top"></div>
<h2>Featured</h2>${grid(featured)}`));
  }
  m = p.match(/^\/c\/([a-z-]+)$/);
  if (m && categories.includes(m[1])) {
    return html(200, page(label(m[1]), `<h1 class="cap">${esc(label(m[1]))}</h1>${grid(catalog.items.filter((i) => i.category === m[1]))}`));
  }
  m = p.match(/^\/p\/([A-Za-z0-9_-]+)$/);
  if (m && byId.has(m[1])) {
    const it = byId.get(m[1]);
    return html(200, page(it.title || it.id, `<article class="product" data-edgerec-view="${esc(it.id)}">
<img src="/img/${esc(it.id)}.svg" alt="${esc(it.title || it.id)}" width="320" height="320">
<div><h1>${esc(it.title || it.id)}</h1><p class="price big">${money(it.price)}</p>
<p><a href="/c/${esc(it.category)}">${esc(label(it.category))}</a> · ${esc((it.tags || []).join(', '))}</p>
<p>${it.available ? 'In stock' : 'Out of stock'}</p>
<button class="add" data-edgerec-add-to-cart="${esc(it.id)}" data-edgerec-price="${it.price ?? ''}" data-title="${esc(it.title || it.id)}">Add to cart</button></div></article>
<h2>You may also like</h2><div class="slot" data-edgerec-slot="product-related"></div>`));
  }
  if (p === '/cart') {
    return html(200, page('Your cart', `<h1>Your cart</h1><div id="cart"></div>
<h2>Goes well with your cart</h2><div class="slot" data-edgerec-slot="cart"></div>`));
  }
  if (p === '/dashboard') {
    return html(200, page('edgerec dashboard', `<h1>What edgerec is doing</h1><p class="muted" id="dash-status">connecting…</p>
<div class="dash" id="dash"></div>`, { dashboard: true }));
  }
  if (p === '/catalog.json') return send(200, 'application/json', JSON.stringify(catalog.items.map(({ id, title, price, category }) => ({ id, title, price, category }))));
  return html(404, page('Not found', '<h1>Not found</h1>'));
});

server.listen(port, '127.0.0.1', () => console.log(`demo origin on http://127.0.0.1:${port}`));
