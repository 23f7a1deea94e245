// End to end against `wrangler dev` (workerd, local KV seeded like `make dev`, the demo origin
// behind it), over real HTTP on 127.0.0.1 — the stack `make dev` runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, browser } from './stack.mjs';

let stack;
before(async () => { stack = await startStack(); });
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
