// The storefront in real Chromium against the README's run stack (edge under wrangler dev,
// origin, collector) behind a fail-open CDN stand-in: a shopper's views steer the home page,
// the page decides by itself (tier `browser`) when the edge is slow or gone, buffered events
// reach the edge exactly once when it is back, and the dashboard's plots move with traffic.
// Screenshots go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startStack } from '../e2e/stack.mjs';
import { startCdn } from './cdn.mjs';
import { launch, artifacts } from './browser.mjs';

let stack;
let cdn;
let chrome;
let page;
const catalog = JSON.parse(readFileSync(new URL('../../data/demo/catalog.json', import.meta.url), 'utf8'));
const related = (id) => catalog.items.find((i) => i.id === id).related.map((r) => r[0]);
const metrics = {};

before(async () => {
  stack = await startStack({ FLUSH_MAX_AGE_MS: '0' });
  cdn = await startCdn(stack.base, stack.origin);
  chrome = await launch();
  page = await chrome.context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
});

after(async () => {
  writeFileSync(path.join(artifacts, 'browser-metrics.json'), JSON.stringify(metrics, null, 1));
  if (chrome) await chrome.close();
  if (cdn) cdn.close();
  if (stack) stack.stop();
});

const outboxEmpty = () => page.waitForFunction(() => JSON.parse(localStorage.getItem('edgerec_outbox') || '[]').length === 0, null, { timeout: 30_000 });
const slotItems = (slot) => page.$$eval(`[data-edgerec-slot="${slot}"] .edgerec-item`, (els) => els.map((e) => ({ id: e.dataset.edgerecItem, why: e.dataset.edgerecWhy })));

test('a shopper who views one product three times sees its related items first, with the rule named', async () => {
  for (let i = 0; i < 3; i++) {
    await page.goto(`${cdn.url}/p/sku-0005`);
    await outboxEmpty();
  }
  await page.screenshot({ path: path.join(artifacts, 'product-page.png'), fullPage: true });
  await page.goto(`${cdn.url}/`);
  const slot = page.locator('[data-edgerec-slot="home-top"]');
  assert.equal(await slot.getAttribute('data-edgerec-filled'), 'full');
  const items = await slotItems('home-top');
  assert.equal(items.length, 4);
  assert.ok(related('sku-0005').includes(items[0].id), `first item ${items[0].id} not related to sku-0005`);
  assert.match(items[0].why, /rule:repeat-view-related/);
  // The shop shows the reasons in words.
  await slot.locator('.why-btn').first().click();
  const reasons = await slot.locator('.why').first().innerText();
  assert.match(reasons, /rule repeat-view-related fired/);
  assert.match(reasons, /related to .+, which you looked at/);
  // The debug drawer shows the decision behind it.
  await page.click('.debug-toggle');
  await page.waitForSelector('.drawer.open [data-debug-tier]');
  // Normally `full`; `browser` if wrangler dev took longer than the 150 ms budget.
  assert.match(await page.locator('[data-debug-tier]').innerText(), /^(full|browser)$/);
  assert.match(await page.locator('.drawer').innerText(), /most viewed item\s+sku-0005 × 3/);
  await page.screenshot({ path: path.join(artifacts, 'storefront-debug.png') });
  await page.click('.drawer [data-close]');
  await page.screenshot({ path: path.join(artifacts, 'storefront.png'), fullPage: true });
  // Phone-sized viewport: two columns, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${cdn.url}/`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone screen`);
  await page.screenshot({ path: path.join(artifacts, 'storefront-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  // The local engine was warmed while the edge was up (lazily, after load).
  await page.waitForFunction(() => globalThis.edgerec?.stats.engineLoadMs != null, null, { timeout: 30_000 });
  metrics.engineWarmMs = await page.evaluate(() => globalThis.edgerec.stats.engineLoadMs);
});

test('a slow edge: the page decides locally within the budget', async () => {
  await page.goto(`${cdn.url}/p/sku-0121`);
  await outboxEmpty();
  // Recommendations now take 3 s at the edge; the tracker gives it 150 ms.
  await page.route('**/v1/recommendations*', (r) => setTimeout(() => r.continue().catch(() => {}), 3000));
  const detail = await page.evaluate(() => new Promise((resolve) => {
    document.addEventListener('edgerec:render', (e) => resolve({ tier: e.detail.tier, ms: e.detail.ms, n: e.detail.items.length }), { once: true });
    globalThis.edgerec.refresh();
  }));
  await page.unroute('**/v1/recommendations*');
  assert.equal(detail.tier, 'browser');
  assert.equal(detail.n, 4);
  metrics.slowEdgeRenderMs = detail.ms;
  // The page waits out its budget, then decides locally (a few ms): budget + 150 ms tolerance
  // for timers on a loaded 2-core machine (measured 154-157 ms).
  assert.ok(detail.ms >= 150 && detail.ms <= 150 + 150, `local list after ${detail.ms} ms (budget 150 ms)`);
});

const summary = async () => (await fetch(`${stack.collector}/v1/summary`)).json();
const noReports = () => page.waitForFunction(async () => {
  await globalThis.edgerec.report();
  return !localStorage.getItem('edgerec_report') && !localStorage.getItem('edgerec_report_sealed');
}, null, { timeout: 30_000, polling: 500 });

test('the edge stops: recommendations still show (tier browser); it restarts: buffered events and the page\'s decisions arrive exactly once', async () => {
  // Earlier local decisions (the slow-edge test) are reported before the outage.
  await noReports();
  const browserBefore = (await summary()).tiers.browser || 0;
  await stack.stopEdge();
  // The CDN fails open: the page comes from the origin, its slot empty, the API gone.
  await page.goto(`${cdn.url}/p/sku-0161`);
  const slot = page.locator('[data-edgerec-slot="product-related"]');
  await page.waitForFunction(() => document.querySelector('[data-edgerec-slot="product-related"]').dataset.edgerecFilled, null, { timeout: 10_000 });
  assert.equal(await slot.getAttribute('data-edgerec-filled'), 'browser');
  const items = await slotItems('product-related');
  assert.equal(items.length, 4);
  // Decided from the browser's copy of the session plus this page's view, by the same rules:
  // the three views of sku-0005 still fire the repeat-view rule.
  assert.ok(related('sku-0005').includes(items[0].id), JSON.stringify(items));
  assert.match(items[0].why, /rule:repeat-view-related/);
  const debug = await page.evaluate(() => globalThis.edgerec.recommend('debug', 4));
  assert.equal(debug.tier, 'browser');
  assert.equal(debug.features.last_item, 'sku-0161');
  assert.deepEqual(debug.features.most_viewed_item, ['sku-0005', 3]);
  // The page holds the model head and only the shards its session needed, never the whole model.
  const held = await page.evaluate(async () => (await (await caches.open('edgerec-model-v1')).keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search));
  const shards = held.filter((u) => u.startsWith('/v1/model/shard?'));
  console.log(`# model files in the page's cache: ${held.length} (${shards.length} shards of 13)`);
  assert.ok(held.includes('/v1/model/catalog') && shards.length >= 1 && shards.length <= 8, JSON.stringify(held));
  const firstLocal = await page.evaluate(() => globalThis.edgerec.stats.firstLocalMs);
  metrics.pageLoadToFirstLocalMs = firstLocal;
  // Edge refused at once, engine and shards from Cache Storage: within the 150 ms budget plus
  // 500 ms tolerance for compiling the cached wasm on a loaded machine (measured 122-129 ms).
  assert.ok(firstLocal != null && firstLocal <= 150 + 500, `first local list ${firstLocal} ms after navigation`);
  // Add to cart while the edge is away: the list is decided again in the page.
  const localBeforeAdd = await page.evaluate(() => globalThis.edgerec.stats.local);
  await page.click('button.add');
  // The refresh after the click waits on a flush to the stopped edge before it decides; wait for
  // that decision so it lands in this report, not the next.
  await page.waitForFunction((n) => globalThis.edgerec.stats.local > n
    && JSON.parse(localStorage.getItem('edgerec_outbox') || '[]').some((e) => e.type === 'add_to_cart'), localBeforeAdd);
  await page.screenshot({ path: path.join(artifacts, 'edge-down-browser-tier.png'), fullPage: true });
  const buffered = await page.evaluate(() => JSON.parse(localStorage.getItem('edgerec_outbox')));
  const kinds = buffered.map((e) => e.type).filter((t) => t !== 'impression');
  assert.deepEqual(kinds, ['view', 'add_to_cart']);
  // The page's own decisions wait in a sealed report (its send fails while the edge is away).
  const { local, sealed } = await page.evaluate(async () => {
    await globalThis.edgerec.report();
    return { local: globalThis.edgerec.stats.local, sealed: JSON.parse(localStorage.getItem('edgerec_report_sealed')) };
  });
  assert.ok(local >= 3, `local decisions: ${local}`);
  // Every decision this page made is in the sealed report (the report waits for one still
  // loading its shards); the previous page, still open when the edge went away, may have
  // added its own last ones, so the report is the count the collector must receive.
  const reported = sealed.delta.decisions;
  assert.ok(reported >= local, `sealed ${reported}, this page ${local}`);
  assert.deepEqual(sealed.delta.tiers, { browser: reported });

  await stack.startEdge();
  await outboxEmpty();
  const after = await page.evaluate(async () => {
    const r = await fetch('/v1/recommendations?limit=4&debug=1');
    return r.json();
  });
  assert.equal(after.tier, 'full');
  assert.equal(after.features.add_to_carts, 1, 'the buffered add-to-cart arrived once');
  assert.ok(after.features.cart_items.includes('sku-0161'));
  // A lost acknowledgement means a resend: the edge recognises every event.
  const again = await page.evaluate(async (events) => {
    const r = await fetch('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ events }) });
    return r.json();
  }, buffered);
  assert.equal(again.accepted, 0);
  assert.equal(again.duplicates, buffered.length);
  const final = await page.evaluate(async () => (await fetch('/v1/recommendations?limit=4&debug=1')).json());
  assert.equal(final.features.add_to_carts, 1);
  // And downstream: the collector wrote that add-to-cart once.
  let carts = 0;
  for (let i = 0; i < 40 && carts < 1; i++) {
    await page.evaluate(() => fetch('/v1/health'));
    carts = readFileSync(stack.records, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .filter((r) => r.topic === 'edgerec.add_to_carts' && r.value.item === 'sku-0161').reduce((a, r) => a + r.value.count, 0);
    if (carts < 1) await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(carts, 1);
  // The page's decisions reached the collector once, as tier `browser`; a resend of the same
  // report (a lost answer) is acknowledged and not counted again.
  // Every report this page sent and saw acknowledged counts: the sealed one, and any decision
  // made after it was sealed (a list re-decided while the edge was still coming back).
  await noReports();
  const sent = await page.evaluate(() => globalThis.edgerec.stats.reported);
  assert.ok(sent >= reported, `sent ${sent}, sealed ${reported}`);
  let browserAfter = 0;
  for (let i = 0; i < 40; i++) {
    browserAfter = (await summary()).tiers.browser || 0;
    if (browserAfter >= browserBefore + sent) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(browserAfter, browserBefore + sent);
  const resend = await page.evaluate(async (body) => (await fetch('/v1/browser-decisions', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status, sealed);
  assert.equal(resend, 202);
  assert.equal((await summary()).tiers.browser, browserBefore + sent);
  // A report that claims more than decisions is refused, naming the field.
  const bad = await page.evaluate(async () => {
    const r = await fetch('/v1/browser-decisions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'ab'.repeat(8), delta: { decisions: 1, tiers: { full: 5 } } }) });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(bad.status, 400);
  assert.ok(bad.body.errors.some((e) => e.field === 'delta.tiers'));
});

test('the dashboard plots change after traffic', async () => {
  const dash = await chrome.context.newPage();
  await dash.goto(`${cdn.url}/dashboard`);
  await dash.waitForFunction(() => Number(document.body.dataset.ticks || 0) >= 2, null, { timeout: 20_000 });
  const totals = () => dash.$$eval('[data-plot] svg', (svgs) => Object.fromEntries(svgs.map((s) => [s.parentElement.dataset.plot, Number(s.dataset.total)])));
  const before = await totals();
  // Traffic: shoppers browsing through the edge.
  for (const id of ['sku-0201', 'sku-0202', 'sku-0201', 'sku-0041']) {
    await page.goto(`${cdn.url}/p/${id}`);
    await outboxEmpty();
    await page.locator('[data-edgerec-slot] .edgerec-item').first().scrollIntoViewIfNeeded();
  }
  await page.locator('[data-edgerec-slot] .edgerec-item').first().click();
  await page.waitForLoadState();
  await outboxEmpty();
  const ticks = await dash.evaluate(() => Number(document.body.dataset.ticks));
  await dash.waitForFunction((t) => Number(document.body.dataset.ticks) >= t + 2, ticks, { timeout: 20_000 });
  const afterTraffic = await totals();
  for (const p of ['decisions', 'tiers', 'rules', 'items']) {
    assert.ok(afterTraffic[p] > before[p], `${p}: ${before[p]} → ${afterTraffic[p]}`);
  }
  assert.ok((await dash.$$('[data-plot] svg path, [data-plot] svg rect')).length > 5, 'plots drawn');
  await dash.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
  await dash.close();
});
