// The conformance corpus in Chromium, against the browser build (www/pkg, `--target web`, the
// size-optimised profile): every case meets its expectations and every step equals the
// native engine's output exactly (items, scores, reasons) — so native, the edge (workerd, see
// worker/test) and the browser cannot disagree.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { root, freePort, waitFor } from '../e2e/stack.mjs';
import { launch } from './browser.mjs';

const dir = path.join(root, 'tests/conformance');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
let origin;
let chrome;
let reports;

before(async () => {
  const port = await freePort();
  origin = spawn('node', [path.join(root, 'www/origin/server.mjs'), String(port)], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`, 15_000);
  chrome = await launch();
  const page = await chrome.context.newPage();
  // Any same-origin document will do: the module is imported from /edgerec/pkg/.
  await page.goto(`${base}/healthz`);
  const cases = files.map((file) => {
    const text = readFileSync(path.join(dir, file), 'utf8');
    const c = JSON.parse(text);
    return { file, text, bundle: readFileSync(path.join(root, c.bundle), 'utf8'), catalog: readFileSync(path.join(root, c.catalog), 'utf8') };
  });
  reports = await page.evaluate(async (cases) => {
    const m = await import('/edgerec/pkg/edgerec_wasm.js');
    await m.default({ module_or_path: '/edgerec/pkg/edgerec_wasm_bg.wasm' });
    return Object.fromEntries(cases.map((c) => [c.file, JSON.parse(m.runScenario(c.text, c.bundle, new TextEncoder().encode(c.catalog)))]));
  }, cases);
});

after(async () => {
  if (chrome) await chrome.close();
  if (origin) origin.kill('SIGTERM');
});

const native = JSON.parse(execFileSync(path.join(root, 'target/release/edgerec'), ['conformance', '--dir', dir, '--root', root], { encoding: 'utf8' }));

test('every case ran in the browser', () => {
  assert.ok(files.length >= 10);
  assert.deepEqual(Object.keys(reports).sort(), files);
});

for (const file of files) {
  test(`chromium: ${file}`, () => {
    const report = reports[file];
    assert.deepEqual(report.mismatches, [], report.mismatches.join('\n'));
    const nat = native.find((r) => r.file === file);
    assert.deepEqual(report.steps, nat.report.steps, 'browser and native disagree');
  });
}
