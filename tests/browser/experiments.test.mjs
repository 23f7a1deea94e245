// Experiments through the real stack: simulated shoppers at wrangler dev → edge flush →
// collector → Kafka (tansu) → the trainer as a consumer group, whose controller reads the live
// bundle from wrangler's local KV. Shoppers follow a known ground truth: they click the top
// recommendation 80% of the time when it is a product they want, and almost never when it is
// the junk item the harmful variant pins first.
//
// 1. An A/A experiment (two identical arms, guardrails declared): reported, not stopped.
// 2. A variant with a deliberately harmful rule: stopped automatically; the release history
//    names the guardrail; afterwards every new session is served the control.
// 3. The dashboard's experiments panel in Chromium shows both (screenshot in artifacts/).
// 4. A real Prometheus scrapes the collector's /metrics (the edge's counters and the
//    controller's verdicts) and its alerting rules (collector/prometheus/alerts.yml) fire on
//    the stop and the breached guardrail, not on the A/A experiment.
// 5. The demo's experiment, the feedback loop: shoppers with a hidden taste; the trainer learns
//    exposure feedback from what they were shown and passed over; the treatment (the model with
//    feedback) then shows them better lists than the control (the model without it), by the
//    truth's own click probabilities, and the report's CTR lift interval holds the true lift.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startStack, startTansu, root, freePort } from '../e2e/stack.mjs';
import { launch, artifacts } from './browser.mjs';
import { shoppers as simulated, demoTruth, byVariant } from '../../scripts/shoppers.mjs';

const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1', EDGEREC_USER: 'ci' };
const JUNK = 'sku-0300';
const SHOPPERS = 240;
let stack;
let tansu;
let work;

let chrome;

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'edgerec-experiments-'));
  tansu = await startTansu();
  stack = await startStack({ FLUSH_MAX_AGE_MS: '0', CONFIG_TTL_MS: '1000' }, {
    collectorEnv: { KAFKA_BROKERS: tansu.brokers, TOPIC_PREFIX: 'ex', EXPERIMENTS_REPORT: path.join(work, 'state/experiments.json') },
    originEnv: { EXPERIMENTS_REPORT: path.join(work, 'state/experiments.json') },
  });
  chrome = await launch();
});
after(async () => {
  if (chrome) await chrome.close();
  stack?.stop();
  tansu?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function cli(...args) {
  const r = spawnSync(path.join(root, 'target/release/edgerec'), args, { cwd: root, env, encoding: 'utf8' });
  assert.equal(r.status, 0, `edgerec ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

function kvGet(key) {
  return execFileSync('npx', ['wrangler', 'kv', 'key', 'get', key, '--text', '--binding', 'CONFIG', '--local',
    '--persist-to', stack.state], { cwd: root, env, encoding: 'utf8' }).trim();
}

/** Stages and promotes a bundle: the demo rules with this experiment and extra rules. */
function serve(experiment, extraRules = []) {
  const rules = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
  rules.version = `exp-${experiment.id}`;
  rules.experiment = experiment;
  rules.rules = rules.rules.filter((r) => r.id !== 'treatment-last-item').concat(extraRules);
  const file = path.join(work, `${experiment.id}.json`);
  writeFileSync(file, JSON.stringify(rules, null, 1));
  const hash = JSON.parse(cli('release', 'stage', file, '--kv', 'local', '--persist-to', stack.state)).staged;
  cli('release', 'promote', hash, '--kv', 'local', '--persist-to', stack.state, '--settle-s', '0');
  return hash;
}

// Ground truth of these tests: every product is wanted but the junk item the harmful variant
// pins first; only the top of the list is clicked (80% when wanted, 2% when not).
const truth = {
  page: (i) => `sku-${String(1 + (i % 150)).padStart(4, '0')}`,
  wants: (item) => item !== JUNK,
  click: (k) => (k === 0 ? 0.8 : 0),
  noise: 0.02,
  buy: 0.4,
};
const shoppers = (n, seed) => simulated(stack.base, n, { seed, truth, concurrency: 8 });

/**
 * Waits until the collector has written `want` of a tally field (sessions by default; of a
 * per-session metric, its sum) under `expId/…` (and `/variant`, if given) to Kafka; returns
 * what arrived. A session's later requests may ride later batches than its first.
 */
async function arrived(expId, want, field = 'sessions', variant = '') {
  const of = (t) => (typeof t[field] === 'object' ? t[field].sum : t[field]) || 0;
  let got = 0;
  for (let i = 0; i < 60 && got < want; i++) {
    await (await fetch(`${stack.base}/v1/health`)).arrayBuffer();
    const out = execFileSync(path.join(root, 'target/release/edgerec-collector'), ['dump', 'ex.experiments', '30'],
      { env: { ...process.env, KAFKA_BROKERS: tansu.brokers }, encoding: 'utf8', maxBuffer: 1 << 26 });
    got = out.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.value.key.startsWith(`${expId}/${variant}`))
      .reduce((a, r) => a + of(r.value.tally), 0);
    if (got < want) await new Promise((r) => setTimeout(r, 500));
  }
  return got;
}

/** One trainer run (consumer group `ex-trainer`, resuming): reads to the end, publishes, controls. */
function trainer() {
  const r = spawnSync(path.join(root, 'target/release/edgerec-trainer'), ['kafka', '--brokers', tansu.brokers, '--prefix', 'ex',
    '--group', 'ex-trainer', '--session-timeout-ms', '2000', '--idle', '3s', '--half-life', '0',
    '--state-dir', path.join(work, 'state'), '--out', path.join(work, 'out'),
    '--base-catalog', 'data/demo/catalog.json', '--kv', 'local', '--persist-to', stack.state],
  { cwd: root, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

const report = () => JSON.parse(cli('experiments', 'report', '--file', path.join(work, 'state/experiments.json'), '--json'));

test('an A/A experiment is reported and left running', { timeout: 300_000 }, async () => {
  const hash = serve({
    id: 'aa', salt: 'aa-1', primary: 'ctr',
    variants: [{ name: 'control', weight: 1 }, { name: 'twin', weight: 1 }],
    guardrails: [{ metric: 'ctr', max_drop: 0.1 }, { metric: 'fallback_share', max: 0.05 }],
  });
  await new Promise((r) => setTimeout(r, 1500));
  const seen = await shoppers(SHOPPERS, 1);
  const split = seen.filter((s) => s.variant === 'twin').length;
  assert.ok(split > 60 && split < 180, `twin sessions ${split}`);
  assert.equal(await arrived('aa', SHOPPERS), SHOPPERS, 'one session per shopper, each counted once');
  const shownAll = seen.reduce((n, x) => n + x.shown, 0);
  assert.equal(await arrived('aa', shownAll, 'impressions'), shownAll, 'every impression counted once');
  trainer();
  const doc = report();
  const aa = doc.experiments.aa;
  assert.equal(aa.stops.length, 0, JSON.stringify(aa.stops));
  assert.equal(aa.report.control_sessions + aa.report.variants[0].sessions, SHOPPERS);
  assert.equal(aa.report.variants[0].sessions, split);
  assert.equal(aa.report.srm.mismatch, false);
  assert.ok(aa.report.variants[0].guardrails.every((g) => !g.breached), JSON.stringify(aa.report.variants[0].guardrails));
  // The clicks the shoppers made are the clicks counted.
  const ctr = aa.report.variants[0].metrics.find((m) => m.metric === 'ctr');
  const twin = seen.filter((s) => s.variant === 'twin');
  const clicks = twin.filter((s) => s.clicked).length;
  const shown = twin.reduce((a, s) => a + s.shown, 0);
  assert.ok(Math.abs(ctr.variant.mean - clicks / shown) < 1e-12, `ctr ${ctr.variant.mean} vs ${clicks}/${shown}`);
  assert.equal(JSON.parse(kvGet('config:current')).bundle, hash, 'not stopped: the A/A bundle is still live');
  const table = cli('experiments', 'report', '--file', path.join(work, 'state/experiments.json'));
  console.log(table);
  assert.match(table, /experiment aa/);
  assert.match(table, /sample ratio: .* ok/);
  // The error-share guardrail: every shopper had three answers (two 202s, one 200) under its
  // variant; one more session's refused batch (a sequence jump: 400) is one error in its arm.
  // Each on a fresh connection: after the trainer's pause a pooled keep-alive socket may be one
  // wrangler already closed, and a POST is not retried (nor should it be: it would count twice).
  const cookies = new Map();
  const fresh = (method, p, body) => new Promise((resolve, reject) => {
    const r = http.request(`${stack.base}${p}`, {
      method, agent: false,
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': '10.99.0.1', cookie: [...cookies.values()].join('; ') },
    }, (res) => {
      for (const c of res.headers['set-cookie'] || []) { const kv = c.split(';')[0]; cookies.set(kv.split('=')[0], kv); }
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    r.on('error', reject);
    r.end(body);
  });
  const send = (seq) => fresh('POST', '/v1/events', JSON.stringify({ events: [{ type: 'view', item: 'sku-0001', ts: Date.now(), seq }] }));
  assert.equal((await send(1)).status, 202);
  assert.equal((await send(1_000_000)).status, 400);
  const mine = JSON.parse((await fresh('GET', '/v1/recommendations?limit=2')).text).variant;
  const arm = mine === 'twin' ? split : SHOPPERS - split;
  assert.equal(await arrived('aa', 3 * arm + 3, 'responses', mine), 3 * arm + 3, 'every answer counted once');
  assert.equal(await arrived('aa', 1, 'errors', mine), 1);
  assert.equal(await arrived('aa', 1, 'errors'), 1, 'the other arm: none');
  trainer();
  const share = report().experiments.aa.report.variants[0].metrics.find((m) => m.metric === 'error_share');
  const [bad, good] = mine === 'twin' ? [share.variant, share.control] : [share.control, share.variant];
  assert.equal(bad.n, 3 * arm + 3);
  assert.ok(Math.abs(bad.mean - 1 / bad.n) < 1e-12, JSON.stringify(share));
  assert.equal(good.mean, 0);
});

test('a harmful variant is stopped by its guardrail, and the history says why', { timeout: 300_000 }, async () => {
  const hash = serve({
    id: 'harm', salt: 'harm-1', primary: 'ctr',
    variants: [{ name: 'control', weight: 1 }, { name: 'harmful', weight: 1 }],
    guardrails: [{ metric: 'ctr', max_drop: 0.1 }],
  }, [{ id: 'pin-junk', description: 'deliberately harmful: the junk item first', priority: 1000,
    when: { feature: { name: 'context.variant', op: '==', value: 'harmful' } },
    then: [{ pin: { item: JUNK, slot: 0 } }] }]);
  await new Promise((r) => setTimeout(r, 1500));
  let seen = await shoppers(SHOPPERS, 2);
  // The controller acts once each arm has MIN_SESSIONS (100): top up an unlucky split (with
  // 240 shoppers an arm falls short about once in a hundred runs).
  const smaller = () => Math.min(...['control', 'harmful'].map((v) => seen.filter((s) => s.variant === v).length));
  for (let k = 0; k < 10 && smaller() < 110; k++) seen = seen.concat(await shoppers(40, 20 + k));
  assert.ok(smaller() >= 100, `arms ${smaller()}`);
  assert.ok(seen.filter((s) => s.variant === 'harmful').every((s) => s.top === JUNK), 'the harmful rule fired');
  const control = seen.filter((s) => s.variant === 'control');
  assert.ok(control.filter((s) => s.top === JUNK).length <= control.length / 10, 'the control rarely shows it first');
  assert.equal(await arrived('harm', seen.length), seen.length);
  const shownAll = seen.reduce((n, x) => n + x.shown, 0);
  assert.equal(await arrived('harm', shownAll, 'impressions'), shownAll, 'every impression counted once');
  const log = trainer();
  assert.match(log, /experiment_stopped/);
  const harm = report().experiments.harm;
  console.log(`stopped: ${harm.stops[0].reason}`);
  assert.equal(harm.stops.length, 1);
  assert.match(harm.stops[0].reason, /^guardrail ctr breached by variant harmful/);
  const pointer = JSON.parse(kvGet('config:current'));
  assert.equal(harm.stops[0].from_bundle, hash);
  assert.equal(pointer.bundle, harm.stops[0].to_bundle);
  const history = JSON.parse(kvGet('config:releases')).entries;
  const last = history[history.length - 1];
  assert.equal(last.by, 'controller');
  assert.match(last.reason, /guardrail ctr breached by variant harmful/);
  assert.equal(last.previous.bundle, hash);
  const listed = cli('release', 'list', '--kv', 'local', '--persist-to', stack.state);
  assert.match(listed, /controller/);
  // Within the config TTL every new session is served the control, without the junk pin.
  await new Promise((r) => setTimeout(r, 1500));
  const after = await shoppers(12, 3);
  assert.ok(after.every((s) => s.variant === 'control'), JSON.stringify(after));
  assert.ok(after.filter((s) => s.top === JUNK).length <= 2, JSON.stringify(after));
  // A second run sees a stopped experiment and changes nothing.
  trainer();
  assert.equal(JSON.parse(kvGet('config:current')).bundle, pointer.bundle);
  assert.equal(report().experiments.harm.stops.length, 1);
});

test('the dashboard shows each experiment: lift with its interval, sample ratio, guardrails, the stop', { timeout: 120_000 }, async () => {
  const dash = await chrome.context.newPage();
  await dash.goto(`${stack.base}/dashboard`);
  await dash.waitForSelector('[data-experiment="harm"][data-status="stopped"]', { timeout: 30_000 });
  assert.equal(await dash.getAttribute('[data-experiment="aa"]', 'data-status'), 'running');
  assert.equal(await dash.getAttribute('[data-experiment="aa"]', 'data-srm'), 'ok');
  assert.equal(await dash.getAttribute('[data-experiment="harm"] [data-guardrail="ctr"]', 'data-breached'), 'true');
  assert.match(await dash.textContent('[data-experiment="harm"]'), /STOPPED .*guardrail ctr breached by variant harmful/);
  const bands = await dash.$$eval('[data-experiment] svg[data-metric]', (s) => s.map((x) => Number(x.dataset.total)));
  assert.ok(bands.length >= 2 && bands.every((n) => n >= 1), JSON.stringify(bands));
  // The data-quality alarms: all evaluated, none firing on this healthy stack.
  const alarms = await dash.$$eval('[data-alarm]', (ls) => Object.fromEntries(ls.map((l) => [l.dataset.alarm, l.dataset.state])));
  assert.deepEqual(Object.keys(alarms).sort(), ['dead-letters', 'event-volume', 'fallback', 'model-age', 'rejected', 'srm']);
  assert.ok(Object.values(alarms).every((v) => v === 'ok'), JSON.stringify(alarms));
  await dash.screenshot({ path: path.join(artifacts, 'dashboard-experiments.png'), fullPage: true });
  await dash.close();
});

test('Prometheus scrapes the verdicts and raises the stop, not the A/A experiment', { timeout: 120_000 }, async () => {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgerec-prom-'));
  const target = new URL(stack.collector).host;
  writeFileSync(path.join(dir, 'prometheus.yml'), `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${path.join(root, 'collector/prometheus/alerts.yml')}
scrape_configs:
  - job_name: edgerec-collector
    static_configs:
      - targets: ['${target}']
`);
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  const api = async (p) => (await (await fetch(`http://127.0.0.1:${port}${p}`)).json()).data;
  const query = async (q) => (await api(`/api/v1/query?query=${encodeURIComponent(q)}`))?.result || [];
  try {
    let firing = [];
    for (let i = 0; i < 60; i++) {
      try {
        firing = ((await api('/api/v1/alerts'))?.alerts || []).filter((a) => a.state === 'firing');
        if (firing.some((a) => a.labels.alertname === 'EdgerecExperimentStopped')) break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 500));
    }
    const names = firing.map((a) => `${a.labels.alertname}/${a.labels.experiment}`).sort();
    assert.deepEqual(names, ['EdgerecExperimentGuardrailBreached/harm', 'EdgerecExperimentStopped/harm'], JSON.stringify(firing));
    const up = await query('up{job="edgerec-collector"}');
    assert.equal(up[0]?.value[1], '1', 'the scrape parsed');
    const decisions = await query('sum(edgerec_edge_decisions_total)');
    assert.ok(Number(decisions[0]?.value[1]) >= 2 * SHOPPERS, JSON.stringify(decisions));
    const sessions = await query('sum by (experiment) (edgerec_experiment_sessions)');
    const by = Object.fromEntries(sessions.map((r) => [r.metric.experiment, Number(r.value[1])]));
    assert.equal(by.aa, SHOPPERS + 1, 'the shoppers and the session with the refused batch');
    const lift = await query('edgerec_experiment_lift{experiment="harm",metric="ctr",bound="high"}');
    assert.ok(Number(lift[0]?.value[1]) < -0.1, JSON.stringify(lift));
  } finally {
    prom.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the feedback loop: the treatment learns from what shoppers passed over; the verdict holds the truth', { timeout: 600_000 }, async () => {
  const FB = 320;
  // The demo's own experiment (control without exposure feedback, treatment with it), on pages
  // the earlier tests' shoppers never opened.
  const demo = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
  serve(demo.experiment);
  await new Promise((r) => setTimeout(r, 1500));
  const taste = demoTruth(root, { pages: 8, first: 160, step: 19 });
  const go = (n, seed) => simulated(stack.base, n, { seed, truth: taste, concurrency: 8 });
  // 1. Both arms serve the same model (no feedback learned yet).
  const learn = await go(FB, 11);
  assert.equal(await arrived('feedback', FB), FB);
  const shownFirst = learn.reduce((n, x) => n + x.shown, 0);
  assert.equal(await arrived('feedback', shownFirst, 'impressions'), shownFirst, 'the placed impressions too');
  trainer();
  await new Promise((r) => setTimeout(r, 1500));
  // 2. The model now carries feedback: the treatment's lists change, the control's do not.
  const measure = await go(FB, 12);
  assert.equal(await arrived('feedback', 2 * FB), 2 * FB, 'every session counted once');
  const shownAll = learn.concat(measure).reduce((n, x) => n + x.shown, 0);
  assert.equal(await arrived('feedback', shownAll, 'impressions'), shownAll);
  trainer();
  const lists = (seen, variant) => new Map(seen.filter((s) => s.variant === variant).map((s) => [s.page, s.items.join(' ')]));
  const [control, treatment] = [lists(measure, 'control'), lists(measure, 'treatment')];
  const differ = [...treatment].filter(([page, l]) => control.has(page) && control.get(page) !== l).length;
  assert.ok(differ >= 4, `the arms' lists differ on ${differ} of 8 pages`);
  console.log(JSON.stringify({ learn: byVariant(learn), measure: byVariant(measure) }));
  // By the truth's click probabilities, page by page (each arm shows one list per page, so the
  // arms' different page mixes do not enter): the treatment's lists earn more clicks.
  const chance = (variant) => new Map(measure.filter((s) => s.variant === variant).map((s) => [s.page, s.expected]));
  const [c, t] = [chance('control'), chance('treatment')];
  const pages = [...t.keys()].filter((p) => c.has(p));
  const mean = (m) => pages.reduce((a, p) => a + m.get(p), 0) / pages.length;
  const better = pages.filter((p) => t.get(p) > c.get(p) + 1e-9).length;
  const worse = pages.filter((p) => t.get(p) < c.get(p) - 1e-9).length;
  console.log(`click chance per shopper: treatment ${mean(t)}, control ${mean(c)}; better on ${better}, worse on ${worse} of ${pages.length} pages`);
  assert.ok(mean(t) > mean(c) && better > worse, `treatment ${mean(t)} vs control ${mean(c)}`);
  // 3. The verdict against the truth: the report's always-valid CTR lift interval holds the
  //    lift the truth's click probabilities imply over every session of the experiment.
  const all = byVariant(learn.concat(measure));
  const truthLift = all.treatment.truth_ctr / all.control.truth_ctr - 1;
  const fb = report().experiments.feedback;
  assert.equal(fb.stops.length, 0, JSON.stringify(fb.stops));
  assert.equal(fb.report.control_sessions + fb.report.variants[0].sessions, 2 * FB);
  const ctr = fb.report.variants[0].metrics.find((m) => m.metric === 'ctr');
  console.log(`CTR lift ${ctr.lift} in [${ctr.lift_ci}], truth ${truthLift}, significant ${ctr.significant}`);
  assert.ok(ctr.lift_ci[0] <= truthLift && truthLift <= ctr.lift_ci[1], `truth ${truthLift} outside [${ctr.lift_ci}]`);
  // A significant verdict must point the truth's way.
  if (ctr.significant) assert.equal(ctr.better, truthLift > 0);
});
