// `edgerec simulate` on the YOOCHOOSE validation split: replaying data/eval/default.json (as
// live) against data/eval/return-aware.json (as candidate) must reproduce the HR/MRR that
// `edgerec-trainer eval` reports for the same files, to the digit, with an interval around the
// difference; its HTML report is one self-contained page; `--fail-if` gates with exit 3.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root } from './stack.mjs';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgerec-simulate-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
// The split lives outside the repository (see `make eval`): EVAL_DATA, else beside the clone,
// else where this machine keeps it.
const data = [process.env.EVAL_DATA, path.join(root, '../shared/data/yoochoose-100k'), '/work/shared/data/yoochoose-100k']
  .find((d) => d && existsSync(path.join(d, 'yoochoose-clicks-100k_train_valid.txt')));
const train = data && path.join(data, 'yoochoose-clicks-100k_train_tr.txt');
const valid = data && path.join(data, 'yoochoose-clicks-100k_train_valid.txt');

function simulate(...extra) {
  return spawnSync(path.join(root, 'target/release/edgerec'), ['simulate', '--baseline', 'data/eval/default.json',
    '--candidate', 'data/eval/return-aware.json', '--train', train, '--clicks', valid, ...extra],
  { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 });
}

test('simulate reproduces eval on the YOOCHOOSE split, with an interval', { skip: !data && 'YOOCHOOSE split not found (EVAL_DATA)', timeout: 120_000 }, () => {
  const ev = spawnSync(path.join(root, 'target/release/edgerec-trainer'), ['eval', '--train', train, '--test', valid,
    '--bundle', 'data/eval/default.json', '--bundle', 'data/eval/return-aware.json'], { cwd: root, encoding: 'utf8' });
  assert.equal(ev.status, 0, ev.stderr);
  const row = (version) => ev.stdout.split('\n').find((l) => l.includes(`\`${version}\``)).split('|').map((c) => c.trim());
  const [def, ret] = [row('eval-default-policy'), row('eval-return-aware')];
  const predictions = Number(/(\d+) predictions/.exec(ev.stdout)[1]);

  const html = path.join(tmp, 'report.html');
  const r = simulate('--json', '--html', html);
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.decisions, predictions);
  assert.equal(rep.inputs.click_bad_rows, 0);
  const m = Object.fromEntries(rep.metrics.map((x) => [x.name, x]));
  // eval's columns: HR@10, MRR@10, HR@20, MRR@20.
  for (const [i, name] of ['hr10', 'mrr10', 'hr20', 'mrr20'].entries()) {
    assert.equal(m[name].live.toFixed(4), def[2 + i], `${name} live`);
    assert.equal(m[name].candidate.toFixed(4), ret[2 + i], `${name} candidate`);
    assert.ok(m[name].lo < m[name].delta && m[name].delta < m[name].hi, `${name}: ${JSON.stringify(m[name])}`);
    assert.ok(m[name].lo > 0, `${name}: return-aware is better, the interval excludes 0`);
  }
  assert.ok(rep.changed_share > 0 && rep.overlap_mean < 1);

  const page = readFileSync(html, 'utf8');
  assert.match(page, /^<!doctype html>/);
  assert.match(page, /<svg class="plot"/);
  assert.doesNotMatch(page, /<script|https?:\/\/|src=/, 'self-contained: no scripts, nothing fetched');

  const gate = simulate('--bootstrap', '100', '--fail-if', 'hr20_delta < 0', '--fail-if', 'changed_share > 0.5');
  assert.equal(gate.status, 3, gate.stdout + gate.stderr);
  assert.match(gate.stdout, /FAIL: changed_share > 0.5/);
  assert.doesNotMatch(gate.stdout, /FAIL: hr20_delta/);
  const bad = simulate('--fail-if', 'nonsense > 1');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown number; known: .*hr20_delta/);
});
