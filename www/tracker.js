// edgerec tracker (minimal edge-served version; the browser issue extends it): records views
// and clicks from data-edgerec-* attributes and sends them to the edge in batches.
const queue = [];
let seq = Number(localStorage.getItem('edgerec_seq') || 0);

function track(type, item) {
  if (!item) return;
  seq += 1;
  localStorage.setItem('edgerec_seq', String(seq));
  queue.push({ type, item, ts: Date.now(), seq });
  if (queue.length >= 10) flush();
}

function flush() {
  if (queue.length === 0) return;
  const body = JSON.stringify({ events: queue.splice(0, queue.length) });
  fetch('/v1/events', { method: 'POST', body, keepalive: true, headers: { 'content-type': 'application/json' } })
    .catch(() => {});
}

document.querySelectorAll('[data-edgerec-view]').forEach((el) => track('view', el.dataset.edgerecView));
document.addEventListener('click', (e) => {
  const el = e.target.closest('[data-edgerec-item]');
  if (el) track('click', el.dataset.edgerecItem);
  const cart = e.target.closest('[data-edgerec-add-to-cart]');
  if (cart) track('add_to_cart', cart.dataset.edgerecAddToCart);
});
addEventListener('pagehide', flush);
setTimeout(flush, 1000);
