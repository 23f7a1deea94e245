// The tracker (www/tracker.js, as written) in real Chromium against a scripted stand-in edge on
// 127.0.0.1: a Node server that serves a test page and answers `POST /v1/events` with the
// status each test chooses, recording every request. The stand-in is the test double here (the
// real edge is tested with the tracker in shop.test.mjs); what is under test is the tracker's
// own behaviour: a 400 or 413 drops the batch and is not retried, other failures back off
// 1 s, 2 s, 4 s (at most 8 s), `pagehide` sends what is left by sendBeacon, and an impression is
// counted once, when at least half of the item is visible.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { launch } from './browser.mjs';

const tracker = readFileSync(new URL('../../www/tracker.js', import.meta.url), 'utf8');
const PAGE = `<!doctype html><html><head><meta charset="utf-8">
<script>window.edgerecConfig = { budgetMs: 150 };</script></head>
<body style="margin:0">
<article data-edgerec-view="p1">Product p1</article>
<div style="height:3000px"></div>
<div data-edgerec-slot="home" data-edgerec-filled="full">
  <a class="edgerec-item" data-edgerec-item="r1" href="/p/r1" style="display:block;height:100px">r1</a>
  <div style="height:3000px"></div>
  <a class="edgerec-item" data-edgerec-item="r2" href="/p/r2" style="display:block;height:100px">r2</a>
</div>
<script type="module" src="/edgerec/tracker.js"></script></body></html>`;

let server;
let base;
let chrome;
/** Every POST /v1/events: arrival time (ms), headers, events. */
let posts = [];
/** Status for the n-th POST (1-based). */
let answer = () => 202;

before(async () => {
  server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/events') {
        const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
        posts.push({ t: Date.now(), headers: req.headers, events: body.events || [] });
        const status = answer(posts.length);
        res.writeHead(status, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(status === 202
          ? { accepted: body.events.length, duplicates: 0 }
          : { errors: [{ field: 'events', message: 'refused by the test' }] }));
      }
      if (req.url === '/page' || req.url === '/other') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end(PAGE);
      }
      if (req.url === '/edgerec/tracker.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        return res.end(tracker);
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not here');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
  chrome = await launch();
});

after(async () => {
  if (chrome) await chrome.close();
  if (server) server.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const outbox = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('edgerec_outbox') || '[]'));

/** A fresh page (empty storage) whose n-th POST gets `statusOf(n)`. */
async function open(statusOf, viewport = { width: 800, height: 600 }) {
  posts = [];
  answer = statusOf;
  const page = await chrome.context.newPage();
  await page.setViewportSize(viewport);
  page.on('pageerror', (e) => console.error('page error:', e));
  // Storage cleared from a page without the tracker, so nothing is sent before the test's page.
  await page.goto(`${base}/blank`);
  await page.evaluate(() => localStorage.clear());
  posts = [];
  await page.goto(`${base}/page`);
  return page;
}

async function until(what, f, ms = 15_000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

for (const status of [400, 413]) {
  test(`a ${status} drops the batch, names nothing to retry, and later events still go`, async () => {
    const page = await open((n) => (n === 1 ? status : 202));
    await until('the first post', () => posts.length >= 1);
    await until('the outbox emptied', async () => (await outbox(page)).length === 0);
    assert.deepEqual(posts[0].events.map((e) => [e.type, e.item, e.seq]), [['view', 'p1', 1]]);
    const stats = await page.evaluate(() => globalThis.edgerec.stats);
    assert.equal(stats.rejected, 1);
    assert.equal(stats.acked, 0);
    // Longer than the first backoff (1 s): no retry of a refused batch.
    await sleep(2500);
    assert.equal(posts.length, 1, 'not retried');
    await page.evaluate(() => globalThis.edgerec.track('click', 'r1'));
    await until('the next post', () => posts.length >= 2);
    assert.deepEqual(posts[1].events.map((e) => [e.type, e.item, e.seq]), [['click', 'r1', 2]]);
    await until('acknowledged', async () => (await page.evaluate(() => globalThis.edgerec.stats)).acked === 1);
    await page.close();
  });
}

test('failures back off 1 s, 2 s, 4 s, then the same events are acknowledged once', async () => {
  const page = await open((n) => (n <= 3 ? 503 : 202));
  await until('four posts', () => posts.length >= 4, 20_000);
  const gaps = posts.slice(1, 4).map((p, i) => p.t - posts[i].t);
  // Each wait is the backoff (setTimeout: never early) plus the page's scheduling and one
  // request on loopback: documented tolerance 400 ms.
  for (const [i, want] of [1000, 2000, 4000].entries()) {
    assert.ok(gaps[i] >= want - 20 && gaps[i] <= want + 400, `gap ${i + 1}: ${gaps[i]} ms, backoff ${want} ms (all: ${gaps})`);
  }
  const seqs = posts.slice(0, 4).map((p) => p.events.map((e) => e.seq).join());
  assert.deepEqual(seqs, ['1', '1', '1', '1'], 'the same event each time');
  await until('the outbox emptied', async () => (await outbox(page)).length === 0);
  await sleep(1500);
  assert.equal(posts.length, 4, 'nothing sent after the acknowledgement');
  const stats = await page.evaluate(() => globalThis.edgerec.stats);
  assert.deepEqual([stats.acked, stats.rejected], [1, 0]);
  await page.close();
});

test('leaving the page sends what is left by sendBeacon; the next page resends it until acknowledged', async () => {
  const page = await open((n) => (n <= 1 ? 503 : 202));
  await until('the failed post', () => posts.length >= 1);
  await page.evaluate(() => globalThis.edgerec.track('add_to_cart', 'p1'));
  assert.deepEqual((await outbox(page)).map((e) => e.seq), [1, 2]);
  // Within the 1 s backoff: the page goes away.
  await page.goto(`${base}/other`);
  await until('the beacon and the next page\'s post', () => posts.length >= 3);
  const beacon = posts[1];
  assert.equal(beacon.headers['x-edgerec-want-state'], undefined, 'a beacon (it cannot set headers)');
  assert.match(beacon.headers['content-type'], /^application\/json/);
  assert.deepEqual(beacon.events.map((e) => [e.type, e.seq]), [['view', 1], ['add_to_cart', 2]]);
  // The beacon has no answer to read: the events stayed in the outbox, and the new page sends
  // them again with its own view (the edge reports the first two as duplicates).
  const next = posts[2];
  assert.equal(next.headers['x-edgerec-want-state'], '1');
  assert.deepEqual(next.events.map((e) => e.seq), [1, 2, 3]);
  await until('the outbox emptied', async () => (await outbox(page)).length === 0);
  await page.close();
});

test('an impression counts once, when at least half of the item is visible', async () => {
  const page = await open(() => 202);
  await until('the view acknowledged', async () => posts.length >= 1 && (await outbox(page)).length === 0);
  const impressions = async () => posts.flatMap((p) => p.events).filter((e) => e.type === 'impression')
    .concat((await outbox(page)).filter((e) => e.type === 'impression'))
    .map((e) => e.item);
  const top = await page.$eval('[data-edgerec-item="r1"]', (el) => el.getBoundingClientRect().top + scrollY);
  const show = (px) => page.evaluate(([t, px]) => scrollTo(0, t - innerHeight + px), [top, px]);
  // 30 of its 100 px visible: not an impression.
  await show(30);
  await sleep(1500);
  assert.deepEqual(await impressions(), []);
  // 70 px: one.
  await show(70);
  await until('the impression', async () => (await impressions()).length === 1);
  // Away and back, twice: still one; r2 was never on screen.
  for (let i = 0; i < 2; i++) {
    await page.evaluate(() => scrollTo(0, 0));
    await sleep(300);
    await show(100);
    await sleep(300);
  }
  await sleep(1500);
  assert.deepEqual(await impressions(), ['r1']);
  await page.close();
});
