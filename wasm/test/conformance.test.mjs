// The conformance corpus, run through the wasm build under Node: every case must meet its
// expectations, and every step must equal the native engine's output exactly (items, scores,
// reasons), so the wasm hosts (worker, browser) cannot drift from native.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const wasm = require(path.join(root, 'build/wasm-node/edgerec_wasm.js'));
const dir = path.join(root, 'tests/conformance');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

const native = JSON.parse(
  execFileSync(path.join(root, 'target/release/edgerec'), ['conformance', '--dir', dir, '--root', root], {
    encoding: 'utf8',
  }),
);

test('the corpus is not empty', () => {
  assert.ok(files.length >= 10, `only ${files.length} cases`);
  assert.equal(native.length, files.length);
});

for (const file of files) {
  test(`wasm: ${file}`, () => {
    const caseText = readFileSync(path.join(dir, file), 'utf8');
    const c = JSON.parse(caseText);
    const report = JSON.parse(
      wasm.runScenario(caseText, readFileSync(path.join(root, c.bundle), 'utf8'), readFileSync(path.join(root, c.catalog))),
    );
    assert.deepEqual(report.mismatches, [], report.mismatches.join('\n'));
    const nat = native.find((r) => r.file === file);
    assert.ok(nat, `native report for ${file}`);
    assert.deepEqual(report.steps, nat.report.steps, 'wasm and native disagree');
  });
}

test('the Engine binding decides, carries state, and rejects bad input with field errors', () => {
  const engine = new wasm.Engine(
    readFileSync(path.join(root, 'data/demo/rules.json'), 'utf8'),
    readFileSync(path.join(root, 'data/demo/catalog.json')),
  );
  const t = 1764201600000;
  let state;
  for (let i = 0; i < 3; i++) {
    const d = engine.decide(state, JSON.stringify({ events: [{ type: 'view', item: 'sku-0005', ts: t + i * 1000 }] }),
      JSON.stringify({ variant: 'control' }), t + i * 1000 + 500, 5, 'full');
    state = d.state;
    if (i === 2) {
      const out = JSON.parse(d.json);
      assert.equal(out.items[0].id, 'sku-0008');
      assert.ok(out.rule_hits.includes('repeat-view-related'));
    }
  }
  assert.throws(() => engine.decide(undefined, '{"events":[{"type":"nope"}]}', '', t, 5, 'full'), (e) => {
    const body = JSON.parse(e.message);
    return body.errors.some((f) => f.field === 'events[0].type');
  });
  assert.throws(() => engine.decide(undefined, '', '', t, 5, 'warp'), /tier/);
  assert.throws(() => new wasm.Engine('{"version":"1","rules":[{}]}', Buffer.from('{}')), /rules\[0\]/);
  // Garbage state is not an error: a fresh session starts.
  const d = engine.decide(new Uint8Array([1, 2, 3]), '', '', t, 3, 'full');
  assert.match(JSON.parse(d.json).state_error, /corrupt/);
});
