// The hooks every browser test file registers: before all, the built package copied, one emulator
// started and Chromium launched; before each test, the browser contexts of the previous one closed
// and the emulator reset; after all, everything closed.

import { before, after, beforeEach } from 'node:test';
import { startEmulator } from './emulator.mjs';
import { copyBuiltPackage, launchChromium } from './browser.mjs';

/**
 * Registers the hooks and returns a handle whose `emu` and `browser` are set once `before` has
 * run. `newContext()` opens a browser context that the next test's `beforeEach` closes;
 * `openPage()` opens the package's test page in one.
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
    /**
     * A fresh context and page at `server`'s test page (`/`), once the package has loaded
     * (`window.ready`). Records console lines (page errors with their stack) and every /rest/
     * request but preflights: `{method, url, headers, body, at}`. `init`: also load the wasm, so
     * later timings measure calls, not the first call's lazy load.
     */
    async openPage({ server = h.emu, init = false } = {}) {
      const context = await h.newContext();
      const page = await context.newPage();
      const consoleLines = [];
      const restRequests = [];
      const failed = [];
      page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
      page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}\n${err.stack}`));
      page.on('request', (req) => {
        if (new URL(req.url()).pathname.startsWith('/rest/') && req.method() !== 'OPTIONS') {
          restRequests.push({ method: req.method(), url: req.url(), headers: req.headers(), body: req.postData(), at: Date.now() });
        }
      });
      page.on('requestfailed', (req) => failed.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
      const t0 = Date.now();
      await page.goto(`http://localhost:${server.port}/`);
      try {
        await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
      } catch (e) {
        e.message += `\n(after ${Date.now() - t0} ms) console: ${JSON.stringify(consoleLines)} failed requests: ${JSON.stringify(failed)}`;
        throw e;
      }
      if (init) await page.evaluate(() => window.lib.init());
      return { page, context, consoleLines, restRequests };
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
