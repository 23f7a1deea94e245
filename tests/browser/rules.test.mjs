// "Changing rules safely", as README walks it, on the real stack (wrangler dev, collector,
// origin) and Chromium: a candidate bundle is checked, simulated against traced sessions (its
// HTML report opened in Chromium), staged and run in the shadow of the live bundle (the
// dashboard's live/shadow panel shows it), promoted, and rolled back. Screenshots in artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startStack, browser, root } from '../e2e/stack.mjs';
import { launch, artifacts } from './browser.mjs';

let stack;
let chrome;
const cli = path.join(root, 'target/release/edgerec');
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1', EDGEREC_USER: 'ci' };

before(async () => {
  stack = await startStack({ FLUSH_MAX_AGE_MS: '0', CONFIG_TTL_MS: '1000', TRACE_RATE_PPM: '1000000', SHADOW_RATE_PPM: '1000000', SHADOW_MAX_PER_SECOND: '1000' });
  chrome = await launch();
});

after(async () => {
  if (chrome) await chrome.close();
  if (stack) stack.stop();
});

function edgerec(...args) {
  const r = spawnSync(cli, args, { cwd: root, env, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}
const release = (...args) => edgerec('release', ...args, '--kv', 'local', '--persist-to', stack.state);

// The candidate: the demo rules, a rule that pins one item first on every decision, and a rule
// that can never fire (a country no request has).
const rules = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
rules.version = 'candidate';
rules.rules.push({ id: 'pin-sku-0200', priority: 1, when: { all: [] }, then: [{ pin: { item: 'sku-0200', slot: 0 } }] });
rules.rules.push({ id: 'nowhere', priority: 1, when: { feature: { name: 'context.country', op: '==', value: 'ZZ' } }, then: [{ boost_category: { category: 'audio', weight: 2 } }] });

async function shop(n) {
  const t0 = Date.now() - 60_000;
  for (let i = 0; i < n; i++) {
    const go = browser(stack.base);
    for (let j = 0; j < 4; j++) {
      const item = `sku-${String(5 + ((i * 7 + j * 3) % 60)).padStart(4, '0')}`;
      const r = await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ events: [{ type: 'view', item, ts: t0 + i * 100 + j, seq: j + 1 }] }) });
      assert.equal(r.status, 202);
      const rec = await go('/v1/recommendations?limit=8');
      assert.equal(rec.status, 200);
      await rec.arrayBuffer();
    }
  }
}

const served = async () => {
  const go = browser(stack.base);
  await (await go('/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ events: [{ type: 'view', item: 'sku-0005', ts: Date.now() - 1000, seq: 1 }] }) })).arrayBuffer();
  return (await go('/v1/recommendations?limit=8')).json();
};

test('check-bundle → simulate (HTML report) → shadow (dashboard) → promote → rollback', { timeout: 300_000 }, async () => {
  const file = path.join(stack.state, 'candidate.json');
  writeFileSync(file, JSON.stringify(rules, null, 1));
  const checked = edgerec('check-bundle', file);
  assert.equal(checked.status, 0, checked.out + checked.err);
  const hash = JSON.parse(checked.out).hash;

  // Traced sessions from real traffic, then the simulation against the live bundle.
  await shop(8);
  for (let i = 0; i < 40; i++) {
    const lines = readFileSync(stack.records, 'utf8').split('\n').filter((l) => l.includes('"edgerec.sessions"'));
    if (lines.reduce((n, l) => n + JSON.parse(l).value.events.length, 0) >= 32) break;
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 250));
  }
  const html = path.join(artifacts, 'simulate-report.html');
  const sim = edgerec('simulate', '--candidate', file, '--catalog', 'data/demo/catalog.json', '--traces', stack.records,
    '--kv', 'local', '--persist-to', stack.state, '--html', html, '--json', '--fail-if', 'changed_share > 0.5');
  assert.equal(sim.status, 3, 'the pin changes every list: the gate fails');
  const rep = JSON.parse(sim.out);
  assert.equal(rep.inputs.traces.sessions, 8 + 0, 'one traced session per shopper');
  assert.equal(rep.changed_share, 1);
  assert.ok(rep.warnings.some((w) => w.kind === 'never_fires' && w.rule === 'nowhere'), JSON.stringify(rep.warnings));
  assert.ok(rep.warnings.some((w) => w.kind === 'always_fires' && w.rule === 'pin-sku-0200'));
  const report = await chrome.context.newPage();
  await report.goto(`file://${html}`);
  assert.ok((await report.$$('svg.plot')).length >= 3, 'plots drawn');
  assert.match(await report.textContent('body'), /never_fires\s+nowhere/);
  await report.screenshot({ path: path.join(artifacts, 'simulate-report.png'), fullPage: true });
  await report.close();

  // Shadow: staged, named in the pointer, evaluated after each answer, on the dashboard.
  assert.equal(JSON.parse(release('stage', file).out).staged, hash);
  assert.equal(release('shadow', hash).status, 0);
  await new Promise((r) => setTimeout(r, 1500));
  const before = await served();
  assert.ok(!before.rule_hits.includes('pin-sku-0200'), 'the shadow is never served');
  await shop(3);
  const dash = await chrome.context.newPage();
  await dash.goto(`${stack.base}/dashboard`);
  await dash.waitForFunction((h) => document.body.dataset.shadow === h, hash, { timeout: 60_000 });
  const panel = await dash.$eval('[data-plot="shadow"]', (el) => el.parentElement.textContent);
  assert.match(panel, /evaluations/);
  const rows = await dash.$$eval('[data-plot="shadow"] svg text', (ts) => ts.map((t) => t.textContent));
  assert.ok(rows.includes('pin-sku-0200'), rows.join(','));
  await dash.screenshot({ path: path.join(artifacts, 'dashboard-shadow.png'), fullPage: true });
  await dash.close();

  // Promote: served within the config TTL. Rollback: one pointer write back.
  assert.equal(release('promote', hash).status, 0);
  await new Promise((r) => setTimeout(r, 1500));
  const promoted = await served();
  assert.ok(promoted.rule_hits.includes('pin-sku-0200'), JSON.stringify(promoted.rule_hits));
  assert.equal(promoted.items[0].id, 'sku-0200');
  assert.equal(release('rollback').status, 0);
  await new Promise((r) => setTimeout(r, 1500));
  const back = await served();
  assert.ok(!back.rule_hits.includes('pin-sku-0200'));
  const listed = JSON.parse(release('list', '--json').out);
  assert.deepEqual(listed.history.map((e) => e.by), ['publish', 'shadow:ci', 'promote:ci', 'rollback:ci']);
});
