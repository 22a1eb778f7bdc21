// The hooks every browser test file registers: before all, the built package copied, one emulator
// started and Chromium launched; before each test, the browser contexts of the previous one closed
// and the emulator reset; after all, everything closed.

import { before, after, beforeEach } from 'node:test';
import { startEmulator } from './emulator.mjs';
import { copyBuiltPackage, launchChromium } from './browser.mjs';

/**
 * Registers the hooks and returns a handle whose `emu` and `browser` are set once `before` has
 * run. `newContext()` opens a browser context that the next test's `beforeEach` closes.
 * @param {string[]} emulatorArgs
 */
export function useEmulatorAndBrowser(emulatorArgs) {
  const contexts = new Set();
  const closeContexts = async () => {
    for (const c of contexts) await c.close().catch(() => {});
    contexts.clear();
  };
  const h = {
    /** @type {Awaited<ReturnType<typeof startEmulator>>} */
    emu: undefined,
    /** @type {import('playwright-core').Browser} */
    browser: undefined,
    async newContext() {
      const context = await h.browser.newContext();
      contexts.add(context);
      return context;
    },
  };
  before(async () => {
    await copyBuiltPackage();
    h.emu = await startEmulator(emulatorArgs);
    h.browser = await launchChromium();
  });
  after(async () => {
    await closeContexts();
    await h.browser?.close();
    await h.emu?.stop();
  });
  beforeEach(async () => {
    await closeContexts();
    await h.emu.control.reset();
  });
  return h;
}
