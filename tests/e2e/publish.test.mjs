// The trainer publishing through wrangler's local KV (the `wrangler kv` commands `make dev`
// uses): the first round writes a release and moves the pointer; a second trainer that learns
// the same model from the same records writes nothing and leaves the pointer where it is.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root } from './stack.mjs';

const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', DO_NOT_TRACK: '1' };
const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgerec-publish-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const kv = path.join(tmp, 'kv');

function pointer() {
  const out = execFileSync('npx', ['wrangler', 'kv', 'key', 'get', 'config:current', '--binding', 'CONFIG', '--local', '--persist-to', kv],
    { cwd: root, env, encoding: 'utf8' });
  return JSON.parse(out.trim());
}

/** One `records` round with a fresh or given state folder; the trainer's publish report. */
function train(state) {
  const r = spawnSync(path.join(root, 'target/release/edgerec-trainer'), [
    'records', '--file', path.join(tmp, 'records.jsonl'), '--state-dir', state, '--out', path.join(tmp, 'model'),
    '--base-catalog', 'data/demo/catalog.json', '--kv', 'local', '--persist-to', kv,
  ], { cwd: root, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const reports = r.stderr.split('\n').filter((l) => l.includes('"published"')).map((l) => JSON.parse(l));
  assert.equal(reports.length, 1, r.stderr);
  return reports[0];
}

test('an unchanged model is not re-published: no key written, the pointer stays', { timeout: 180_000 }, () => {
  execFileSync(path.join(root, 'target/release/edgerec'), ['publish', '--bundle', 'data/demo/rules.json',
    '--catalog', 'data/demo/catalog.json', '--out', path.join(tmp, 'seed'), '--kv', 'local', '--persist-to', kv],
  { cwd: root, env, stdio: 'ignore' });
  const seeded = pointer();
  // Shoppers moving from sku-0005 to sku-0008, as the collector writes them (one batch).
  const ts = Date.now();
  const line = (from, to, count) => JSON.stringify({
    topic: 'edgerec.transitions', key: `${from}#0`,
    headers: { 'edgerec-batch-id': 'b1', 'edgerec-schema': '1', 'content-type': 'application/msgpack' },
    value: { v: 1, batch: 'b1', source: 'edge', ts, from, to, count },
  });
  writeFileSync(path.join(tmp, 'records.jsonl'), [line('sku-0005', 'sku-0008', 5), line('sku-0008', 'sku-0011', 3)].join('\n') + '\n');
  const first = train(path.join(tmp, 'state-1'));
  assert.equal(first.switched, true, JSON.stringify(first));
  assert.ok(first.keys_written >= 3, `shards, head, history and pointer: ${first.keys_written}`);
  const live = pointer();
  assert.equal(live.catalog, first.head);
  assert.notEqual(live.catalog, seeded.catalog);
  assert.equal(live.bundle, seeded.bundle, 'the live rule bundle is kept');
  // Another trainer instance, same records: the same model, so nothing to write.
  const second = train(path.join(tmp, 'state-2'));
  assert.equal(second.head, first.head);
  assert.deepEqual([second.keys_written, second.switched], [0, false]);
  assert.deepEqual(pointer(), live);
});
