// One clock (issue 16 §1): the built package (pkg/) in headless Chromium with the page's wall clock
// (`Date.now`) moved 10 minutes back or forward while a client is in use. Deadlines, pacing, backoff
// and the operating-limit wait run on the monotonic clock (performance.now()); the wall clock is
// only asked for a portal time that comes without its own `finish`.
//
//   node --test --test-concurrency=1 tests/js/clock.test.mjs
//
// Env (set by `cargo xtask test`; defaults for a manual run): B24_REPO, B24_PKG_DIR, B24_EMULATOR_BIN.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pkgDir } from './support/browser.mjs';
import { useEmulatorAndBrowser } from './support/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const STATIC = ['--static', `/pkg=${pkgDir}`, '--static', `/=${path.join(here, 'pages')}`];
const SPA = 1268;
const TEN_MINUTES = 10 * 60 * 1000;

const h = useEmulatorAndBrowser(['--no-limits', ...STATIC]);

/** A test page whose `Date.now` is the real one plus `window.setSkew(ms)`'s offset. */
async function skewablePage() {
  const { page, restRequests } = await h.openPage({ init: true });
  await page.evaluate(() => {
    const realNow = Date.now.bind(Date);
    let skew = 0;
    Date.now = () => realNow() + skew;
    window.setSkew = (ms) => {
      skew = ms;
    };
  });
  return { page, restRequests };
}

async function items(count) {
  return (await h.emu.control.items(SPA, count)).ids;
}

function assertAllResolved(results, label) {
  const rejected = results.filter((r) => !r.ok);
  assert.equal(rejected.length, 0, `${label}: ${rejected.length} of ${results.length} rejected: ${JSON.stringify(rejected.map((r) => [r.error.code, Math.round(r.ms)]))}`);
}

test('paced calls: the wall clock set back 10 minutes, then forward, between and during bursts; every call resolves', async () => {
  await h.emu.control.config({ burst: 50, drain: 2 });
  const { page } = await skewablePage();
  const ids = await items(24);
  const results = await page.evaluate(async ([webhookUrl, t, ids, tenMinutes]) => {
    // The default pacing; 8 calls at once, three times.
    const client = new window.lib.Client({ webhookUrl, timeoutMs: 10000 });
    const burst = (slice) => Promise.all(slice.map((id) => window.settle(client.deleteItem(t, id))));
    const first = await burst(ids.slice(0, 8));
    window.setSkew(-tenMinutes);
    const back = await burst(ids.slice(8, 16));
    // Forward again while these calls are paced.
    const forward = burst(ids.slice(16, 24));
    window.setSkew(tenMinutes);
    return { first, back, forward: await forward };
  }, [h.emu.webhook, SPA, ids, TEN_MINUTES]);
  assertAllResolved(results.first, 'before');
  assertAllResolved(results.back, 'clock set back');
  assertAllResolved(results.forward, 'clock set forward');
  const s = await h.emu.control.state();
  assert.equal(s.requests.byMethod['crm.item.delete'], 24, 'one request per call');
});

test('a 429 OPERATION_TIME_LIMIT with a near operating_reset_at is waited for with the wall clock 10 minutes behind or ahead', async () => {
  for (const skew of [-TEN_MINUTES, TEN_MINUTES]) {
    const label = `wall clock ${skew > 0 ? 'ahead' : 'behind'}`;
    await h.emu.control.reset();
    // Each call costs the whole 1 s budget; the 10-minute window is scaled to 2 s.
    // Built on the docs' model (a 429 that carries its reset time), as resilience.test.mjs's.
    await h.emu.control.config({ limiter: 'docs', operatingLimit: 1, operatingCost: 1, timeScale: 300 });
    const { page } = await skewablePage();
    const [spend, limited] = await items(2);
    const r = await page.evaluate(async ([webhookUrl, t, spend, limited, skew]) => {
      const client = new window.lib.Client({ webhookUrl, rateLimit: false, timeoutMs: 8000 });
      const first = await window.settle(client.deleteItem(t, spend));
      window.setSkew(skew);
      const second = await window.settle(client.deleteItem(t, limited));
      return { first, second };
    }, [h.emu.webhook, SPA, spend, limited, skew]);
    assert.equal(r.first.ok, true, `${label}: the call that spends the budget: ${JSON.stringify(r.first.error)}`);
    assert.equal(r.second.ok, true, `${label}: the limited call: ${JSON.stringify(r.second.error)}`);
    assert.ok(r.second.ms >= 1000 && r.second.ms <= 6000, `${label}: took ${r.second.ms} ms, expected the wait for operating_reset_at`);
    const s = await h.emu.control.state();
    assert.equal(s.rejected.OPERATION_TIME_LIMIT, 1, `${label}: one 429, then the repeat after the reset`);
  }
});

test('a bulk job whose refused commands wait for the reset: the wall clock set back 10 minutes mid-run; all deleted', async () => {
  // Each delete costs 1 s of a 3 s budget per window; the 10-minute window is scaled to 2 s.
  await h.emu.control.config({ operatingLimit: 3, operatingCost: 1, timeScale: 300 });
  const { page } = await skewablePage();
  const ids = await items(6);
  const r = await page.evaluate(async ([webhookUrl, t, ids, tenMinutes]) => {
    const client = new window.lib.Client({ webhookUrl, rateLimit: { burst: 50, perSecond: 2 }, timeoutMs: 15000 });
    // After the first batch (3 deleted, 3 refused until the reset), the clock goes back.
    const onProgress = () => window.setSkew(-tenMinutes);
    return window.settle(client.deleteItems(t, ids, { onProgress, timeoutMs: 20000 }));
  }, [h.emu.webhook, SPA, ids, TEN_MINUTES]);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.deepEqual([...r.value.deleted].sort((a, b) => a - b), [...ids].sort((a, b) => a - b),
    `all deleted: ${JSON.stringify(r.value.failed)}`);
  assert.ok(r.ms < 10000, `took ${r.ms} ms`);
});
