// What every browser test file shares: where the repo and the built package are, a private copy
// of the package to serve, the emulator binary, and headless Chromium. Node >= 20, playwright-core.
//
// Env (set by `cargo xtask test`; defaults for a manual run): B24_REPO, B24_PKG_DIR,
// B24_EMULATOR_BIN, B24_CHROMIUM.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = process.env.B24_REPO || path.resolve(here, '..', '..', '..');
const builtPkgDir = process.env.B24_PKG_DIR || path.join(repo, 'pkg');
if (!process.env.B24_EMULATOR_BIN) {
  const bin = path.join(repo, 'target', 'debug', 'emulator');
  if (fs.existsSync(bin)) process.env.B24_EMULATOR_BIN = bin;
}

/** A private copy of the built package to serve, so a rebuild while tests run cannot change it. */
export const pkgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'b24-pkg-'));
process.once('exit', () => fs.rmSync(pkgDir, { recursive: true, force: true }));

/** Fills `pkgDir` from pkg/, waiting (up to 2 min) for a build in progress to finish. */
export async function copyBuiltPackage() {
  const files = ['index.js'];
  for (let i = 0; i < 120 && !files.every((f) => fs.existsSync(path.join(builtPkgDir, f))); i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  assert.ok(fs.existsSync(path.join(builtPkgDir, 'index.js')), `no built package at ${builtPkgDir}: run \`cargo xtask build\``);
  fs.cpSync(builtPkgDir, pkgDir, { recursive: true });
}

export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Debian's Chromium, headless; never a downloaded browser. */
export function launchChromium() {
  return chromium.launch({ executablePath: process.env.B24_CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}
