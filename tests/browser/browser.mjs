// Debian's Chromium driven by playwright-core (never a downloaded browser), fresh profile.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root } from '../e2e/stack.mjs';

export const artifacts = path.join(root, 'artifacts');

export async function launch(options = {}) {
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(path.join(os.tmpdir(), 'edgerec-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...options,
  });
  return { context, close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}
