// `edgerec release` against wrangler's local KV (what `make dev` serves): stage a bundle,
// shadow it, promote it, roll back twice, and the refusals, reading the pointer and the history
// back from KV after each step. And `check-bundle`'s cost budget.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root } from './stack.mjs';

const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1', EDGEREC_USER: 'ci' };
const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgerec-release-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const kv = path.join(tmp, 'kv');
const cli = path.join(root, 'target/release/edgerec');

function get(key) {
  return execFileSync('npx', ['wrangler', 'kv', 'key', 'get', key, '--text', '--binding', 'CONFIG', '--local', '--persist-to', kv],
    { cwd: root, env, encoding: 'utf8' }).trim();
}

function release(...args) {
  // No trainer writes this KV: nothing to settle.
  const r = spawnSync(cli, ['release', ...args, '--kv', 'local', '--persist-to', kv, '--settle-s', '0'], { cwd: root, env, encoding: 'utf8' });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

function ok(...args) {
  const r = release(...args);
  assert.equal(r.status, 0, `release ${args.join(' ')}: ${r.err}`);
  return r.out;
}

test('stage → shadow → promote → rollback, each one recorded switch of one pointer', { timeout: 240_000 }, () => {
  execFileSync(cli, ['publish', '--bundle', 'data/demo/rules.json', '--catalog', 'data/demo/catalog.json',
    '--out', path.join(tmp, 'seed'), '--kv', 'local', '--persist-to', kv], { cwd: root, env, stdio: 'ignore' });
  const seeded = JSON.parse(get('config:current'));
  assert.equal(seeded.shadow, undefined);

  const rules = JSON.parse(readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'));
  rules.version = 'candidate';
  writeFileSync(path.join(tmp, 'candidate.json'), JSON.stringify(rules));
  const staged = JSON.parse(ok('stage', path.join(tmp, 'candidate.json'))).staged;
  assert.match(staged, /^[0-9a-f]{16}$/);
  assert.notEqual(staged, seeded.bundle);
  assert.deepEqual(JSON.parse(get('config:current')), seeded, 'staging serves nothing');
  assert.equal(JSON.parse(get(`bundle:${staged}`)).version, 'candidate');

  ok('shadow', staged);
  assert.deepEqual(JSON.parse(get('config:current')), { ...seeded, shadow: staged });
  ok('promote', staged);
  assert.deepEqual(JSON.parse(get('config:current')), { ...seeded, bundle: staged });
  ok('rollback');
  assert.deepEqual(JSON.parse(get('config:current')), { ...seeded, shadow: staged });
  ok('rollback');
  assert.deepEqual(JSON.parse(get('config:current')), seeded);

  // Refusals: nothing written.
  const none = release('rollback');
  assert.equal(none.status, 1);
  assert.match(none.err, /nothing to roll back to/);
  const unknown = release('promote', 'ffffffffffffffff');
  assert.equal(unknown.status, 1);
  assert.match(unknown.err, /neither bundle:ffffffffffffffff nor model:ffffffffffffffff/);
  assert.deepEqual(JSON.parse(get('config:current')), seeded);

  const listed = JSON.parse(ok('list', '--json'));
  assert.deepEqual(listed.live, seeded);
  assert.deepEqual(listed.history.map((e) => e.by),
    ['publish', 'shadow:ci', 'promote:ci', 'rollback:ci', 'rollback:ci']);
  assert.deepEqual(listed.history.at(-1).previous, { ...seeded, shadow: staged });
  assert.match(ok('list'), /^live: bundle [0-9a-f]{16}/);
});

test('check-bundle reports a cost and refuses a bundle over the budget', () => {
  const run = (...args) => spawnSync(cli, ['check-bundle', 'data/demo/rules.json', ...args], { cwd: root, encoding: 'utf8' });
  const fine = run('--decisions', '200');
  assert.equal(fine.status, 0, fine.stderr);
  const report = JSON.parse(fine.stdout);
  assert.equal(report.ok, true);
  assert.ok(report.cost.median_us > 0 && report.cost.baseline_median_us > 0, fine.stdout);
  assert.equal(report.cost.decisions, 200);
  const over = run('--decisions', '200', '--budget-us', '0.001');
  assert.equal(over.status, 1);
  const refused = JSON.parse(over.stdout);
  assert.equal(refused.ok, false);
  assert.match(refused.errors[0].message, /over the budget of 0.001 µs/);
});
