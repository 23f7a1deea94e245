// End to end against `wrangler dev` (workerd, local KV seeded like `make dev`, the demo origin
// behind it), over real HTTP on 127.0.0.1 — the stack `make dev` runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { startStack, browser } from './stack.mjs';

let stack;
before(async () => { stack = await startStack({ FLUSH_MAX_AGE_MS: '0' }); });
after(() => stack && stack.stop());

test('a shopper browsing through wrangler dev gets related items first, in the API and in the page', async () => {
  const go = browser(stack.base);
  const page = await go('/p/sku-0005');
  assert.equal(page.status, 200);
  assert.match(await page.text(), /data-edgerec-tracker/);
  for (let i = 0; i < 3; i++) {
    const r = await go('/v1/events', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ type: 'view', item: 'sku-0005', ts: Date.now() }] }),
    });
    assert.equal(r.status, 202);
  }
  const r = await go('/v1/recommendations?limit=4&slot=home-top');
  assert.equal(r.headers.get('x-edgerec-tier'), 'full');
  const body = await r.json();
  assert.equal(body.items[0].id, 'sku-0008');
  assert.ok(body.items[0].why.includes('rule:repeat-view-related'));
  const home = await (await go('/')).text();
  assert.match(home, /data-edgerec-slot="home-top" data-edgerec-filled="full"><a class="edgerec-item" href="\/p\/sku-0008"/);
  const css = await go('/style.css');
  assert.match(css.headers.get('content-type'), /text\/css/);
});

test('events through the edge reach the collector: totals equal what was sent, none doubled', async () => {
  const go = browser(stack.base);
  const now = Date.now();
  const sent = { 'sku-0101': 3, 'sku-0102': 2, 'sku-0103': 4 };
  let n = 0;
  for (const [item, times] of Object.entries(sent)) {
    for (let i = 0; i < times; i++) {
      const r = await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ events: [{ type: 'click', item, ts: now + n++, seq: n }] }) });
      assert.equal(r.status, 202);
    }
  }
  // A redelivery of the last event (same seq) is recognised and not counted again.
  const dup = await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ type: 'click', item: 'sku-0103', ts: now + n - 1, seq: n }] }) });
  assert.equal((await dup.json()).duplicates, 1);
  const clicks = () => {
    if (!existsSync(stack.records)) return {};
    const out = {};
    for (const line of readFileSync(stack.records, 'utf8').split('\n').filter(Boolean)) {
      const r = JSON.parse(line);
      if (r.topic === 'edgerec.clicks') out[r.value.item] = (out[r.value.item] || 0) + r.value.count;
    }
    return out;
  };
  for (let i = 0; i < 40 && JSON.stringify(clicks()) !== JSON.stringify(sent); i++) {
    await (await go('/v1/health')).arrayBuffer(); // later requests drive the flush
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.deepEqual(clicks(), sent);
});
