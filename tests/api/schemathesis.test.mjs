// Property-based API tests from the OpenAPI documents (schemathesis, PyPI): the edge under
// wrangler dev and the collector, each for a bounded number of generated requests. Every
// answer must be a documented status with a documented content type and body shape, and none
// a 5xx. (The conformance of the documents to the code's route tables is checked natively:
// worker/src/routes.rs and collector/tests/http.rs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startStack, root } from '../e2e/stack.mjs';

let stack;
before(async () => { stack = await startStack(); });
after(() => { if (stack) stack.stop(); });

/**
 * GET after a schemathesis run: spawnSync blocked this process's event loop while the servers
 * closed idle pooled connections (the collector's HEADER_TIMEOUT_MS); undici only learns of it
 * on reuse, so one retry on a fresh connection.
 */
async function get(url) {
  try { return await fetch(url); } catch { return fetch(url); }
}

const CHECKS = 'not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance';

function schemathesis(schema, url, env = {}) {
  const r = spawnSync(path.join(root, 'build/venv/bin/st'), ['run', schema, '--url', url, '--checks', CHECKS,
    '--max-examples', process.env.ST_MAX_EXAMPLES || '30', '--max-time', process.env.ST_MAX_TIME || '30', '--workers', '1',
    '--request-timeout', '10', '--phases', 'examples,coverage,fuzzing', '--no-color'],
  { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, ...env } });
  const out = `${r.stdout}\n${r.stderr}`;
  const summary = out.split('\n').filter((l) => /passed|failed|errored|Test cases|API Operations|generated/i.test(l)).slice(-6).join('\n');
  console.log(summary.split('\n').map((l) => `# ${l}`).join('\n'));
  return { status: r.status, out };
}

test('the edge API answers every generated request as its OpenAPI document says, never 5xx', () => {
  const served = JSON.parse(readFileSync(path.join(root, 'schema/edge.openapi.json'), 'utf8'));
  const r = schemathesis('schema/edge.openapi.json', stack.base);
  assert.equal(r.status, 0, r.out.slice(-6000));
  assert.ok(Object.keys(served.paths).length >= 10);
});

test('the collector API answers every generated request as its OpenAPI document says, never 5xx', async () => {
  // Signed like the edge signs (tests/api/sign_hooks.py), so generated bodies reach the decoder.
  const r = schemathesis('schema/collector.openapi.json', stack.collector,
    { PYTHONPATH: path.join(root, 'tests/api'), SCHEMATHESIS_HOOKS: 'sign_hooks', COLLECTOR_SECRET: 'dev-collector-secret' });
  assert.equal(r.status, 0, r.out.slice(-6000));
  const metrics = await (await get(`${stack.collector}/metrics`)).text();
  const deadLetters = Number((metrics.match(/rejects_total\{reason="undecodable"\} (\d+)/) || [0, 0])[1]);
  console.log(`# collector: ${deadLetters} signed generated bodies dead-lettered as undecodable`);
  assert.ok(deadLetters > 0, 'signed requests reached the decoder');
});

test('both services serve their document as kept in the repository', async () => {
  const edge = await (await get(`${stack.base}/v1/openapi.json`)).json();
  assert.deepEqual(edge, JSON.parse(readFileSync(path.join(root, 'schema/edge.openapi.json'), 'utf8')));
  const collector = await (await get(`${stack.collector}/openapi.json`)).json();
  assert.deepEqual(collector, JSON.parse(readFileSync(path.join(root, 'schema/collector.openapi.json'), 'utf8')));
});
