// The demo shop's own script (not part of the tracker): cart in localStorage, product images
// and readable "why" on recommended items, a tier label per slot, and the debug drawer that
// shows the decision behind the lists (features, window counts, variant, tier).
import { esc } from './html.js';

const $ = (s, root = document) => root.querySelector(s);
const money = (p) => (p != null && p !== '' ? `€${Number(p).toFixed(2)}` : '');

let catalog = null;
async function items() {
  catalog ||= fetch('/catalog.json').then((r) => r.json()).then((l) => new Map(l.map((i) => [i.id, i]))).catch(() => new Map());
  return catalog;
}

// --- cart --------------------------------------------------------------------------------

const cart = {
  get: () => { try { return JSON.parse(localStorage.getItem('shop_cart') || '[]'); } catch { return []; } },
  set: (l) => { localStorage.setItem('shop_cart', JSON.stringify(l)); badge(); },
};
function badge() {
  const n = cart.get().reduce((a, l) => a + l.qty, 0);
  const el = $('#cart-count');
  if (el) el.textContent = String(n);
}
function toast(text) {
  const t = document.createElement('div');
  t.className = 'toast';
  t.textContent = text;
  document.body.append(t);
  setTimeout(() => t.remove(), 1800);
}

document.addEventListener('click', (e) => {
  const add = e.target instanceof Element && e.target.closest('button.add');
  if (add) {
    const l = cart.get();
    const id = add.dataset.edgerecAddToCart;
    const line = l.find((x) => x.id === id);
    if (line) line.qty += 1;
    else l.push({ id, title: add.dataset.title, price: Number(add.dataset.edgerecPrice) || 0, qty: 1 });
    cart.set(l);
    toast(`Added ${add.dataset.title}`);
    // The tracker has queued the add_to_cart event; show lists that know about it.
    setTimeout(() => globalThis.edgerec?.refresh(), 0);
  }
  const whyBtn = e.target instanceof Element && e.target.closest('.why-btn');
  if (whyBtn) {
    e.preventDefault();
    e.stopPropagation();
    const list = whyBtn.nextElementSibling;
    list.hidden = !list.hidden;
    whyBtn.setAttribute('aria-expanded', String(!list.hidden));
  }
}, true);

function renderCart() {
  const root = $('#cart');
  if (!root) return;
  const l = cart.get();
  if (!l.length) {
    root.innerHTML = '<p class="muted">Your cart is empty.</p>';
    return;
  }
  const total = l.reduce((a, x) => a + x.price * x.qty, 0);
  root.innerHTML = l.map((x) => `<div class="line"><img src="/img/${esc(x.id)}.svg" alt=""><span>${esc(x.title)} × ${x.qty}</span><b>${money(x.price * x.qty)}</b></div>`).join('')
    + `<p><b>Total ${money(total)}</b></p><button class="buy" data-edgerec-purchase="${esc(l.map((x) => x.id).join(' '))}">Buy now</button>`;
  $('.buy', root).addEventListener('click', () => {
    cart.set([]);
    root.innerHTML = '<p>Thank you! Your order is on its way.</p>';
    setTimeout(() => globalThis.edgerec?.refresh(), 0);
  });
}

// --- recommended items: image, price, why ----------------------------------------------------

function reason(r, byId) {
  const [kind, ...rest] = r.split(':');
  const what = rest.join(':');
  switch (kind) {
    case 'rule': return `rule <b>${esc(what)}</b> fired`;
    case 'related': return `related to ${esc(byId.get(what)?.title || what)}, which you looked at`;
    case 'category': return `top pick in ${esc(what.replace(/-/g, ' '))}, a category you browse`;
    case 'recent': return 'you looked at it recently';
    case 'pin': return `placed here by rule <b>${esc(what)}</b>`;
    case 'popular': return 'popular right now';
    default: return esc(r);
  }
}

async function decorate(slot) {
  const byId = await items();
  const tier = slot.dataset.edgerecFilled;
  slot.dataset.tierLabel = tier === 'browser' ? 'decided in your browser' : `decided at the edge (${tier})`;
  for (const a of slot.querySelectorAll('.edgerec-item:not([data-decorated])')) {
    a.dataset.decorated = '1';
    const it = byId.get(a.dataset.edgerecItem) || {};
    const why = (a.dataset.edgerecWhy || '').split(' ').filter(Boolean);
    a.insertAdjacentHTML('afterbegin', `<img src="/img/${esc(a.dataset.edgerecItem)}.svg" alt="" width="220" height="220">`);
    a.insertAdjacentHTML('beforeend', `<span class="price">${money(it.price)}</span>
<button class="why-btn" type="button" aria-expanded="false">why?</button><ul class="why" hidden>${why.map((r) => `<li data-reason="${esc(r)}">${reason(r, byId)}</li>`).join('')}</ul>`);
  }
}

document.addEventListener('edgerec:render', (e) => {
  decorate(e.target);
  last = e.detail;
  if ($('.drawer.open')) showDebug(e.detail.decision);
});

// --- debug drawer ------------------------------------------------------------------------------

let last = null;
const drawer = document.createElement('aside');
drawer.className = 'drawer';
drawer.setAttribute('aria-label', 'Decision debug');
const toggle = document.createElement('button');
toggle.className = 'debug-toggle';
toggle.textContent = 'Why these?';

function rows(obj) {
  return Object.entries(obj).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === 'object' ? JSON.stringify(v) : v)}</td></tr>`).join('');
}

function showDebug(d) {
  if (!d) return;
  const f = d.features || {};
  const tier = d.tier || '?';
  drawer.innerHTML = `<button class="why-btn" data-close>close</button>
<h3>Served by</h3><p><span class="pill ${tier === 'browser' ? 'browser' : ''}" data-debug-tier>${esc(tier)}</span>
variant <span class="pill" data-debug-variant>${esc(d.variant ?? 'none')}</span></p>
<h3>Rules that fired</h3><p>${(d.rule_hits || []).map((r) => `<span class="pill">${esc(r)}</span>`).join(' ') || '<span class="muted">none</span>'}</p>
<h3>Session window counts</h3><table>${rows({
    events: f.events, views: f.views, clicks: f.clicks, 'add to carts': f.add_to_carts, purchases: f.purchases,
    impressions: f.impressions, 'distinct items': f.distinct_items,
    'most viewed item': f.most_viewed_item ? `${f.most_viewed_item[0]} × ${f.most_viewed_item[1]}` : '–',
    'last item': f.last_item ?? '–',
  })}</table>
<h3>Features</h3><table>${rows({
    'session length (s)': f.session_duration_s != null ? Math.round(f.session_duration_s) : '–',
    'top categories': (f.top_categories || []).map((c) => `${c[0]} ${c[1]}`).join(', ') || '–',
    'cart lines': f.cart_lines, 'cart value': money(f.cart_value), purchased: (f.purchased || []).join(', ') || '–',
    device: f.context?.device, country: f.context?.country ?? '–', slot: f.context?.slot,
  })}</table>
<h3>List</h3><ol>${(d.items || []).map((i) => `<li>${esc(i.title || i.id)} <small class="muted">${esc((i.why || []).join(', '))} · ${Number(i.score).toFixed(3)}</small></li>`).join('')}</ol>`;
  $('[data-close]', drawer).addEventListener('click', () => drawer.classList.remove('open'));
}

toggle.addEventListener('click', async () => {
  drawer.classList.add('open');
  drawer.innerHTML = '<p class="muted">loading…</p>';
  const d = globalThis.edgerec ? await globalThis.edgerec.recommend('debug', 4) : last?.decision;
  showDebug(d ? { ...d, items: d.items } : null);
});

document.body.append(drawer, toggle);
badge();
renderCart();
document.querySelectorAll('[data-edgerec-filled]').forEach(decorate);
