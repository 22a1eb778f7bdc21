// Issue 4: the library inside a Bitrix24 frame, and the placement widget example (www/widget/).
// The built package (pkg/) in headless Chromium, in the emulator's frame host (/app/{name}), which
// embeds a page the way a portal does and answers BX24.js's postMessage commands; plus fixture pages
// (tests/js/pages/frame/) with a stub BX24 that never answers, and a bench page for the cost of a call.
//
//   node --test --test-concurrency=1 tests/js/frame.test.mjs
//
// Env (set by `cargo xtask test`; defaults for a manual run): B24_REPO, B24_PKG_DIR, B24_EMULATOR_BIN.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { repo, pkgDir } from './support/browser.mjs';
import { useEmulatorAndBrowser } from './support/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

const SPA = 1268;
const DEAL = 2;
const WIDGET = '/widget/index.html';
const STATIC = ['--static', `/=${path.join(repo, 'www')}`, '--static', `/pkg=${pkgDir}`,
  '--static', `/frame-fixtures=${path.join(here, 'pages', 'frame')}`];

/** Limits off: the measurement sends hundreds of calls; the widget's own pacing stays on. */
const h = useEmulatorAndBrowser(['--no-limits', ...STATIC]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function newPage({ initScript } = {}) {
  const context = await h.newContext();
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`); });
  page.on('response', (res) => { if (res.status() >= 400 && !new URL(res.url()).pathname.startsWith('/rest/')) problems.push(`${res.status()} ${res.url()}`); });
  /** REST requests of every frame of the page: {url, contentType, body}. */
  const rest = [];
  page.on('request', (req) => {
    if (new URL(req.url()).pathname.startsWith('/rest/') && req.method() === 'POST') {
      rest.push({ url: req.url(), contentType: req.headers()['content-type'], body: req.postData() });
    }
  });
  return { page, problems, rest };
}

/** The frame host's URL for `url` (a path on the emulator) in `placement` with `options`. */
function hostUrl(url, { placement = 'CRM_DYNAMIC_1268_DETAIL_TAB', options, user, lifetime } = {}) {
  const q = new URLSearchParams({ url, placement });
  if (options !== undefined) q.set('options', JSON.stringify(options));
  if (user !== undefined) q.set('user', String(user));
  if (lifetime !== undefined) q.set('lifetime', String(lifetime));
  return `${h.emu.url}/app/widget?${q}`;
}

async function frameOf(page, urlPart) {
  for (let i = 0; i < 200; i++) {
    const f = page.frames().find((fr) => fr !== page.mainFrame() && fr.url().includes(urlPart));
    if (f) return f;
    await sleep(50);
  }
  throw new Error(`no frame with ${urlPart} in ${page.frames().map((f) => f.url())}`);
}

/** Opens the widget in the frame host and waits until it has read its placement. */
async function openWidget(opts = {}) {
  const { page, problems, rest } = await newPage(opts);
  await page.goto(hostUrl(WIDGET, opts));
  const frame = await frameOf(page, WIDGET);
  try {
    await frame.waitForFunction(() => !['loading', undefined].includes(document.body?.dataset.state), null, { timeout: 15000 });
  } catch (e) {
    e.message += `\nproblems: ${JSON.stringify(problems)}`;
    throw e;
  }
  return { page, frame, problems, rest };
}

const text = (frame, sel) => frame.locator(sel).textContent().then((t) => t.trim());

/** Delete → Yes, delete; resolves the widget's final state, outcome and error code. */
async function deleteThroughWidget(frame) {
  await frame.click('#delete');
  assert.equal(await frame.isVisible('#confirm'), true, 'the confirmation step shows "Yes, delete"');
  assert.equal(await frame.isVisible('#cancel'), true, 'and Cancel');
  await frame.click('#confirm');
  await frame.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 35000 });
  return {
    state: await frame.evaluate(() => document.body.dataset.state),
    outcome: await text(frame, '#outcome'),
    code: await text(frame, '#error-code'),
  };
}

async function itemsOf(type) {
  return (await h.emu.control.state()).items[String(type)] ?? [];
}

async function requestsOf(method) {
  return (await h.emu.control.state()).requests.byMethod[method] ?? 0;
}

// ---- the widget --------------------------------------------------------------------------------

test('widget in a smart-process detail tab: shows the item, Delete → Yes, delete → deleted, one direct request', async () => {
  const id = (await itemsOf(SPA))[6];
  const { frame, problems, rest } = await openWidget({ options: { ID: String(id) } });
  assert.equal(await frame.getAttribute('#target', 'data-entity-type-id'), '1268');
  assert.equal(await frame.getAttribute('#target', 'data-id'), String(id));
  const target = await text(frame, '#target');
  assert.match(target, /\b1268\b/, 'the target names the type');
  assert.match(target, new RegExp(`#${id}\\b`), 'and the id');
  assert.equal(await frame.isVisible('#confirm'), false, 'no confirmation before Delete');

  // Cancel goes back without deleting.
  await frame.click('#delete');
  await frame.click('#cancel');
  assert.equal(await frame.isVisible('#confirm'), false);
  assert.equal(await frame.isVisible('#delete'), true);
  assert.equal(await requestsOf('crm.item.delete'), 0, 'Cancel sent nothing');

  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'done', JSON.stringify(r));
  assert.match(r.outcome, /^Deleted\b/);
  assert.match(r.outcome, new RegExp(`#${id}\\b`));
  assert.equal(r.code, '');
  assert.equal((await itemsOf(SPA)).includes(id), false, 'the item is gone from the emulator');
  const state = await h.emu.control.state();
  assert.deepEqual(state.deleted, [{ entityTypeId: SPA, id }]);
  assert.equal(state.requests.byMethod['crm.item.delete'], 1);
  // Directly: the library's JSON POST to DOMAIN/rest/crm.item.delete with the frame's token, not BX24's form POST.
  const deletes = rest.filter((q) => /\/rest\/crm\.item\.delete/.test(q.url));
  assert.equal(deletes.length, 1, JSON.stringify(rest));
  assert.equal(deletes[0].url, `${h.emu.url}/rest/crm.item.delete`);
  assert.match(deletes[0].contentType, /^application\/json/);
  const body = JSON.parse(deletes[0].body);
  assert.deepEqual({ entityTypeId: body.entityTypeId, id: body.id }, { entityTypeId: SPA, id });
  assert.equal(typeof body.auth, 'string');
  assert.deepEqual(problems, []);
});

test('widget in a deal detail tab (CRM_DEAL_DETAIL_TAB) deletes the deal (entityTypeId 2)', async () => {
  const id = (await itemsOf(DEAL))[2];
  const { frame, problems } = await openWidget({ placement: 'CRM_DEAL_DETAIL_TAB', options: { ID: String(id) } });
  assert.equal(await frame.getAttribute('#target', 'data-entity-type-id'), '2');
  assert.match(await text(frame, '#target'), new RegExp(`^Deal #${id}\\b`));
  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'done', JSON.stringify(r));
  const state = await h.emu.control.state();
  assert.deepEqual(state.deleted, [{ entityTypeId: DEAL, id }]);
  assert.equal(state.items[String(SPA)].length, 20, 'no smart-process item touched');
  assert.deepEqual(problems, []);
});

/** In the widget's frame: BX24.placement.info() gives PLACEMENT_OPTIONS as a JSON string. */
function optionsAsString() {
  if (window === window.top) return;
  let bx24;
  Object.defineProperty(window, 'BX24', {
    configurable: true,
    get: () => bx24,
    set: (value) => {
      bx24 = value;
      if (!value?.placement) return;
      const info = value.placement.info;
      value.placement.info = () => ({ ...info(), options: JSON.stringify(info().options) });
    },
  });
}

test('widget: PLACEMENT_OPTIONS as an object (BX24.placement.info) or as a JSON string; ID or ENTITY_ID', async () => {
  const ids = await itemsOf(SPA);
  for (const [placement, options, initScript, label] of [
    ['CRM_DYNAMIC_1268_DETAIL_TAB', { ID: String(ids[0]) }, undefined, 'object, ID'],
    ['CRM_DYNAMIC_1268_DETAIL_TAB', { ID: String(ids[1]) }, optionsAsString, 'string, ID'],
    ['CRM_DYNAMIC_1268_DETAIL_TOOLBAR', { ENTITY_ID: String(ids[2]) }, optionsAsString, 'string, ENTITY_ID'],
    ['CRM_DYNAMIC_1268_LIST_MENU', { ENTITY_ID: String(ids[3]) }, undefined, 'object, ENTITY_ID'],
  ]) {
    const { frame } = await openWidget({ placement, options, initScript });
    const seen = await frame.evaluate(() => typeof BX24.placement.info().options);
    assert.equal(seen, initScript ? 'string' : 'object', label);
    assert.equal(await frame.getAttribute('#target', 'data-entity-type-id'), '1268', label);
    assert.equal(await frame.getAttribute('#target', 'data-id'), options.ID ?? options.ENTITY_ID, label);
    assert.equal(await frame.isVisible('#delete'), true, label);
  }
});

test('widget: the entity type from each placement code', async () => {
  for (const [placement, type, name] of [
    ['CRM_LEAD_DETAIL_TAB', 1, 'Lead'], ['CRM_DEAL_LIST_MENU', 2, 'Deal'], ['CRM_CONTACT_DETAIL_TOOLBAR', 3, 'Contact'],
    ['CRM_COMPANY_DETAIL_TAB', 4, 'Company'], ['CRM_QUOTE_DETAIL_TAB', 7, 'Estimate'],
    ['CRM_SMART_INVOICE_DETAIL_TAB', 31, 'Invoice'], ['CRM_DYNAMIC_183_DETAIL_ACTIVITY', 183, 'Smart process item (type 183)'],
  ]) {
    const { frame } = await openWidget({ placement, options: { ID: '42' } });
    assert.equal(await frame.getAttribute('#target', 'data-entity-type-id'), String(type), placement);
    assert.match(await text(frame, '#target'), new RegExp(`^${name.replace(/[()]/g, '\\$&')} #42,`), placement);
  }
  for (const [placement, options] of [['CRM_FUNNELS_TOOLBAR', { ID: '42' }], ['CRM_DEAL_DETAIL_TAB', { ID: '0' }],
    ['CRM_DEAL_DETAIL_TAB', { ID: 'abc' }], ['CRM_DEAL_LIST_TOOLBAR', {}]]) {
    const { frame } = await openWidget({ placement, options });
    assert.equal(await frame.evaluate(() => document.body.dataset.state), 'no-item', `${placement} ${JSON.stringify(options)}`);
    assert.equal(await frame.isVisible('#delete'), false);
  }
});

test('widget: a denied delete (control.deny) shows ACCESS_DENIED in plain words; the item is kept', async () => {
  const id = (await itemsOf(SPA))[3];
  await h.emu.control.deny(SPA, [id]);
  const { frame } = await openWidget({ options: { ID: String(id) } });
  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'error');
  assert.equal(r.code, 'ACCESS_DENIED');
  assert.equal(r.outcome, 'You do not have permission to delete this item.');
  assert.equal((await itemsOf(SPA)).includes(id), true, 'the item is kept');
  assert.equal(await requestsOf('crm.item.delete'), 1, 'not retried');
});

test('widget: the frame host\'s user 2 (no delete right on 1268) gets ACCESS_DENIED; the item is kept', async () => {
  const id = (await itemsOf(SPA))[4];
  const { frame } = await openWidget({ options: { ID: String(id) }, user: 2 });
  const r = await deleteThroughWidget(frame);
  assert.equal(r.code, 'ACCESS_DENIED');
  assert.equal(r.outcome, 'You do not have permission to delete this item.');
  assert.equal((await itemsOf(SPA)).includes(id), true);
});

test('widget: a missing item shows NOT_FOUND in plain words', async () => {
  const { frame } = await openWidget({ options: { ID: '99999' } });
  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'error');
  assert.equal(r.code, 'NOT_FOUND');
  assert.equal(r.outcome, 'This item does not exist any more: it may have been deleted already.');
  assert.equal(await frame.isVisible('#delete'), false, 'nothing left to delete');
  assert.equal((await itemsOf(SPA)).length, 20);
});

test('widget: a placement without an item (DEFAULT) says so and offers no Delete', async () => {
  const { frame, problems } = await openWidget({ placement: 'DEFAULT' });
  assert.equal(await frame.evaluate(() => document.body.dataset.state), 'no-item');
  assert.match(await text(frame, '#target'), /DEFAULT.*nothing to delete/);
  assert.equal(await frame.isVisible('#delete'), false);
  assert.deepEqual(problems, []);
});

test('widget: token expired mid-session (lifetime 1 s): the delete still works through BX24.refreshAuth', async () => {
  const id = (await itemsOf(SPA))[5];
  const { page, frame } = await openWidget({ options: { ID: String(id) }, lifetime: 1 });
  await sleep(2000);
  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'done', JSON.stringify(r));
  assert.equal((await itemsOf(SPA)).includes(id), false, 'the item is gone');
  const log = await page.evaluate(() => window.__b24host.log);
  assert.ok(log.some((e) => e.cmd === 'refreshAuth' && e.accepted), `the parent refreshed the token: ${JSON.stringify(log)}`);
});

test('widget: the portal answers expired_token (tokens revoked): refreshAuth, then one repeat succeeds', async () => {
  const id = (await itemsOf(SPA))[7];
  const { page, frame } = await openWidget({ options: { ID: String(id) } });
  await h.emu.control.expireTokens();
  const r = await deleteThroughWidget(frame);
  assert.equal(r.state, 'done', JSON.stringify(r));
  const state = await h.emu.control.state();
  assert.deepEqual(state.deleted, [{ entityTypeId: SPA, id }]);
  assert.equal(state.requests.byMethod['crm.item.delete'], 2, 'the expired_token answer and the repeat');
  assert.equal(state.rejected.expired_token, 1);
  const log = await page.evaluate(() => window.__b24host.log);
  assert.equal(log.filter((e) => e.cmd === 'refreshAuth' && e.accepted).length, 1, JSON.stringify(log));
});

/** Five deletes at once with the page's unconfigured (frame) client; resolves the settled results. */
function fiveAtOnce(frame, ids) {
  return frame.evaluate(async (ids) => {
    const lib = await import('/pkg/index.js');
    const { settle } = await import('/frame-fixtures/settle.js');
    return Promise.all(ids.map((id) => settle(lib.deleteItem(1268, id, { timeoutMs: 10000 }), lib.B24Error)));
  }, ids);
}

test('five concurrent deletes after the frame\'s token ran out (lifetime 1 s): all succeed, one refreshAuth', async () => {
  const ids = (await itemsOf(SPA)).slice(10, 15);
  const { page, frame } = await openWidget({ options: { ID: '1' }, lifetime: 1 });
  await sleep(2000);
  const results = await fiveAtOnce(frame, ids);
  assert.deepEqual(results.map((r) => r.ok ? 'ok' : r.error.code), ['ok', 'ok', 'ok', 'ok', 'ok'], JSON.stringify(results));
  assert.deepEqual((await itemsOf(SPA)).filter((id) => ids.includes(id)), []);
  const log = await page.evaluate(() => window.__b24host.log);
  assert.equal(log.filter((e) => e.cmd === 'refreshAuth').length, 1, `one shared refresh: ${JSON.stringify(log)}`);
});

test('five concurrent deletes answered expired_token (tokens revoked): all succeed after one shared refreshAuth', async () => {
  const ids = (await itemsOf(SPA)).slice(15, 20);
  const { page, frame } = await openWidget({ options: { ID: '1' } });
  await h.emu.control.expireTokens();
  const results = await fiveAtOnce(frame, ids);
  assert.deepEqual(results.map((r) => r.ok ? 'ok' : r.error.code), ['ok', 'ok', 'ok', 'ok', 'ok'], JSON.stringify(results));
  assert.deepEqual((await itemsOf(SPA)).filter((id) => ids.includes(id)), []);
  const log = await page.evaluate(() => window.__b24host.log);
  assert.equal(log.filter((e) => e.cmd === 'refreshAuth').length, 1, `one shared refresh: ${JSON.stringify(log)}`);
  assert.equal(await requestsOf('crm.item.delete'), 10, 'five expired_token answers, five repeats');
});

test('widget opened outside a frame: a clear message, no Delete, no crash; isInsideBitrix24() false', async () => {
  const { page, problems } = await newPage();
  await page.goto(`${h.emu.url}${WIDGET}`);
  await page.waitForFunction(() => document.body.dataset.state === 'outside', null, { timeout: 15000 });
  assert.match(await text(page, '#target'), /^Open this page inside Bitrix24/);
  assert.equal(await text(page, '#outcome'), 'This page is not running inside Bitrix24, so it has no portal to talk to.');
  assert.equal(await text(page, '#error-code'), 'NOT_CONFIGURED');
  assert.equal(await page.isVisible('#delete'), false);
  assert.equal(await page.evaluate(async () => (await import('/pkg/index.js')).isInsideBitrix24()), false);
  // The library itself, unconfigured here, rejects NOT_CONFIGURED (and sends nothing).
  const code = await page.evaluate(async () => {
    const lib = await import('/pkg/index.js');
    return lib.deleteItem(1268, 1).then(() => 'resolved', (e) => e.code);
  });
  assert.equal(code, 'NOT_CONFIGURED');
  // The only error is BX24.js's own, which refuses to load outside a frame (as the real one does).
  assert.deepEqual(problems, ['pageerror: Unable to initialize Bitrix24 JS library!']);
  assert.equal(await requestsOf('crm.item.delete'), 0);
});

test('isInsideBitrix24() is true inside the frame host', async () => {
  const { frame } = await openWidget({ options: { ID: '1' } });
  assert.equal(await frame.evaluate(async () => (await import('/pkg/index.js')).isInsideBitrix24()), true);
});

// ---- BX24 that never answers, and BX24.callMethod's errors (stub pages) ------------------------

async function openStub(mode, extra = '') {
  const { page, problems, rest } = await newPage();
  await page.goto(`${h.emu.url}/frame-fixtures/stub.html?mode=${mode}${extra}`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  await page.evaluate(() => window.lib.init());
  return { page, problems, rest };
}

test('BX24.init never calls back: deleteItem(…, {timeoutMs: 1500}) rejects TIMEOUT in 1.5-2.5 s', async () => {
  const { page, rest } = await openStub('never-init');
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 1500 })));
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.isB24, true);
  assert.equal(r.error.code, 'TIMEOUT');
  assert.equal(r.error.kind, 'timeout');
  assert.ok(r.ms >= 1400 && r.ms <= 2500, `took ${r.ms} ms`);
  assert.deepEqual(rest, [], 'nothing sent');
  assert.deepEqual(await page.evaluate(() => window.bx24Calls), ['init']);
});

/**
 * deleteItem(1268, 1) in a page of frame stub `stub`, with a 5 s deadline and a signal aborted after
 * 300 ms (with `new Error(reason)` when a reason is given); settled into plain data.
 */
async function deleteAbortedAfter300ms(stub, reason) {
  const { page } = await openStub(stub);
  return page.evaluate((reason) => {
    const controller = new AbortController();
    setTimeout(() => (reason === undefined ? controller.abort() : controller.abort(new Error(reason))), 300);
    return window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 5000, signal: controller.signal }));
  }, reason);
}

test('BX24.init throws: INVALID_ARGUMENT (kind config) at once, with the thrown error as cause, not TIMEOUT; nothing sent', async () => {
  const { page, rest } = await openStub('throwing-init');
  const r = await page.evaluate(async () => {
    const settled = await window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 3000 }));
    try {
      await window.lib.deleteItem(1268, 1);
    } catch (e) {
      settled.cause = e.cause?.message;
    }
    return settled;
  });
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.deepEqual([r.error.code, r.error.kind, r.error.retryable, r.error.isB24], ['INVALID_ARGUMENT', 'config', false, true]);
  assert.match(r.error.description, /BX24\.init threw/);
  assert.equal(r.cause, 'BX24 is broken');
  assert.ok(r.ms < 1000, `took ${r.ms} ms: a throw is not a wait`);
  assert.deepEqual(rest, []);
  assert.deepEqual(await page.evaluate(() => window.bx24Calls), ['init', 'init']);
});

test('a call that waits on another call\'s BX24.init keeps its own deadline and signal (5 s call pending; 1 s call TIMEOUT, aborted call ABORTED)', async () => {
  const { page } = await openStub('never-init');
  const r = await page.evaluate(async () => {
    const t0 = performance.now();
    const long = window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 5000 }));
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('user left')), 300);
    const [short, aborted] = await Promise.all([
      window.settle(window.lib.deleteItem(1268, 2, { timeoutMs: 1000 })),
      window.settle(window.lib.deleteItem(1268, 3, { timeoutMs: 5000, signal: controller.signal })),
    ]);
    const settledAt = performance.now() - t0;
    const first = await Promise.race([long.then(() => 'long'), new Promise((resolve) => setTimeout(() => resolve('still waiting'), 50))]);
    return { short, aborted, settledAt, first, long: await long };
  });
  assert.equal(r.short.error?.code, 'TIMEOUT', JSON.stringify(r.short));
  assert.ok(r.short.ms >= 900 && r.short.ms < 2000, `the 1 s call took ${r.short.ms} ms`);
  assert.equal(r.aborted.error?.code, 'ABORTED', JSON.stringify(r.aborted));
  assert.ok(r.aborted.ms < 1000, `the aborted call took ${r.aborted.ms} ms`);
  assert.equal(r.first, 'still waiting', 'the 5 s call was still pending');
  assert.equal(r.long.error?.code, 'TIMEOUT');
  assert.ok(r.long.ms >= 4500, `the 5 s call took ${r.long.ms} ms`);
});

test('an AbortSignal aborts a call that waits for BX24.init: ABORTED at once, not at the deadline', async () => {
  const r = await deleteAbortedAfter300ms('never-init', 'user left');
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'ABORTED', `after ${r.ms} ms`);
  assert.equal(r.error.kind, 'aborted');
  assert.ok(r.ms >= 250 && r.ms < 1000, `took ${r.ms} ms`);
});

test('BX24.refreshAuth never calls back (no token from getAuth): TIMEOUT within the deadline', async () => {
  const { page, rest } = await openStub('silent-refresh');
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 1500 })));
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'TIMEOUT');
  assert.ok(r.ms >= 1400 && r.ms <= 2500, `took ${r.ms} ms`);
  assert.deepEqual(rest, []);
});

test('BX24.init and then BX24.refreshAuth share one deadline: init after 800 ms, refreshAuth silent, timeoutMs 1000 → TIMEOUT by ~1 s', async () => {
  const { page, rest } = await openStub('slow-init-silent-refresh');
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 1, { timeoutMs: 1000 })));
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'TIMEOUT');
  assert.ok(r.ms >= 900 && r.ms < 1500, `took ${r.ms} ms (the two waits must not each get the whole deadline)`);
  assert.deepEqual(rest, []);
});

test('a minimal BX24 (callMethod only, no init/getAuth/refreshAuth): an unconfigured deleteItem goes through callMethod', async () => {
  const { page, rest } = await openStub('no-init');
  const r = await page.evaluate(async () => [window.lib.isInsideBitrix24(), await window.settle(window.lib.deleteItem(1268, 5, { timeoutMs: 2000 }))]);
  assert.equal(r[0], true);
  assert.equal(r[1].ok, true, JSON.stringify(r[1]));
  assert.deepEqual([r[1].value.entityTypeId, r[1].value.id], [1268, 5]);
  assert.deepEqual(rest, [], 'no direct fetch');
  assert.deepEqual(await page.evaluate(() => window.bx24Calls), ['callMethod:crm.item.delete:{"entityTypeId":1268,"id":5}']);
});

test('an AbortSignal aborts a call that waits for BX24.refreshAuth: ABORTED at once', async () => {
  const r = await deleteAbortedAfter300ms('silent-refresh');
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'ABORTED', `after ${r.ms} ms`);
  assert.ok(r.ms >= 250 && r.ms < 1000, `took ${r.ms} ms`);
});

test('an AbortSignal aborts a call that waits for BX24.callMethod: ABORTED at once', async () => {
  const r = await deleteAbortedAfter300ms('silent-method');
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'ABORTED');
  assert.ok(r.ms >= 250 && r.ms < 1000, `took ${r.ms} ms`);
});

test('no token (getAuth false, refreshAuth false) and callMethod never calls back: TIMEOUT within the deadline', async () => {
  const { page, rest } = await openStub('silent-method');
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, '3', { timeoutMs: 1500 })));
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'TIMEOUT');
  assert.ok(r.ms >= 1400 && r.ms <= 2500, `took ${r.ms} ms`);
  assert.deepEqual(rest, [], 'no direct request without a token');
  const calls = await page.evaluate(() => window.bx24Calls);
  assert.ok(calls.includes('callMethod:crm.item.delete:{"entityTypeId":1268,"id":3}'), JSON.stringify(calls));
  assert.ok(calls.includes('refreshAuth'), JSON.stringify(calls));
});

test('BX24.callMethod answers an ajaxResult 403 ACCESS_DENIED: B24Error ACCESS_DENIED, status 403', async () => {
  const { page } = await openStub('denied-method');
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 5, { timeoutMs: 5000 })));
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.isB24, true);
  assert.equal(r.error.isError, true);
  assert.equal(r.error.code, 'ACCESS_DENIED');
  assert.equal(r.error.description, 'Access denied');
  assert.equal(r.error.status, 403);
  assert.equal(r.error.kind, 'api');
  assert.equal(r.error.retryable, false);
  assert.equal(r.error.method, 'crm.item.delete');
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.equal(calls.length, 1, 'not retried');
});

/** deleteItems in a stub page, settled, with the report reduced to plain data. */
function stubDeleteItems(page, ids, opts) {
  return page.evaluate(async ([ids, opts]) => {
    const r = await window.settle(window.lib.deleteItems(1268, ids, opts));
    if (r.ok) r.value = { deleted: r.value.deleted, notFound: r.value.notFound, failed: r.value.failed.map((f) => ({ id: f.id, code: f.error.code, isB24: f.error instanceof window.lib.B24Error })) };
    return r;
  }, [ids, opts]);
}

test('deleteItems with a BX24 whose init never calls back: a report with every id failed TIMEOUT, within the deadline', async () => {
  const { page, rest } = await openStub('never-init');
  const r = await stubDeleteItems(page, [1, 2, 3], { timeoutMs: 1500 });
  assert.equal(r.ok, true, `resolves a report: ${JSON.stringify(r)}`);
  assert.deepEqual(r.value.deleted, []);
  assert.deepEqual(r.value.notFound, []);
  assert.deepEqual(r.value.failed, [1, 2, 3].map((id) => ({ id, code: 'TIMEOUT', isB24: true })));
  assert.ok(r.ms >= 1400 && r.ms <= 2500, `took ${r.ms} ms`);
  assert.deepEqual(rest, []);
});

test('deleteItems through a BX24.callMethod that never calls back: every id failed TIMEOUT, within the deadline', async () => {
  const { page } = await openStub('silent-method');
  const r = await stubDeleteItems(page, [4, 5], { timeoutMs: 1500 });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(r.value.failed, [4, 5].map((id) => ({ id, code: 'TIMEOUT', isB24: true })));
  assert.ok(r.ms >= 1400 && r.ms <= 2500, `took ${r.ms} ms`);
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.ok(calls.length >= 1 && calls.every((c) => c.startsWith('callMethod:batch:')), JSON.stringify(calls));
});

test('deleteItems through a BX24.callMethod that answers 403 ACCESS_DENIED: every id failed ACCESS_DENIED', async () => {
  const { page } = await openStub('denied-method');
  const r = await stubDeleteItems(page, [6, 7], { timeoutMs: 5000 });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(r.value.failed, [6, 7].map((id) => ({ id, code: 'ACCESS_DENIED', isB24: true })));
  assert.ok(r.ms < 2000, `took ${r.ms} ms`);
});

test('BX24.init still pending at the first call (answers after 800 ms): the call waits for it, then deletes directly', async () => {
  const { access_token: token } = await h.emu.control.token({});
  const id = (await itemsOf(SPA))[9];
  const { page, rest } = await openStub('slow-init', `&token=${token}`);
  const r = await page.evaluate((id) => window.settle(window.lib.deleteItem(1268, id, { timeoutMs: 5000 })), id);
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual({ entityTypeId: r.value.entityTypeId, id: r.value.id }, { entityTypeId: SPA, id });
  assert.ok(r.ms >= 700, `took ${r.ms} ms: it waited for BX24.init`);
  assert.equal(rest.length, 1);
  assert.equal(rest[0].url, `${h.emu.url}/rest/crm.item.delete`);
  assert.equal((await itemsOf(SPA)).includes(id), false);
});

test('a frame on a plain-http, non-loopback portal: no direct fetch (https rule), BX24.callMethod instead', async () => {
  const { page, rest } = await openStub('http-portal');
  const requests = [];
  page.on('request', (req) => requests.push(req.url()));
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 11, { timeoutMs: 5000 })));
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual({ entityTypeId: r.value.entityTypeId, id: r.value.id }, { entityTypeId: SPA, id: 11 });
  assert.deepEqual(rest, []);
  assert.deepEqual(requests.filter((u) => u.includes('acme.example.com')), [], 'nothing sent to http://acme.example.com');
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.deepEqual(calls, ['callMethod:crm.item.delete:{"entityTypeId":1268,"id":11}']);
});

/** Deletes `ids` one after the other in the page; asserts each succeeded; the settled results. */
async function deleteInTurn(page, ids) {
  const r = await page.evaluate(async (ids) => {
    const out = [];
    for (const id of ids) out.push(await window.settle(window.lib.deleteItem(1268, id, { timeoutMs: 5000 })));
    return out;
  }, ids);
  for (const [i, id] of ids.entries()) {
    assert.equal(r[i].ok, true, JSON.stringify(r[i]));
    assert.equal(r[i].value.id, id);
  }
  return r;
}

/** Answers a routed request as an https portal would: a CORS preflight, or a crm.item.delete success. */
function answerAsPortal(route) {
  const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': 'Content-Type, Accept', 'Access-Control-Allow-Methods': 'POST' };
  if (route.request().method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
  return route.fulfill({ status: 200, headers: cors, contentType: 'application/json',
    body: JSON.stringify({ result: [], time: { start: 1, finish: 1.01, duration: 0.01 } }) });
}

test('a frame whose direct requests never reach the portal (CORS, CSP): each call falls back to BX24.callMethod at once; after two such failures, calls go to callMethod only', async () => {
  const { page } = await openStub('https-portal', '&token=tok-456');
  const seen = [];
  // As a refused CORS preflight or a CSP looks to the page: the request fails below HTTP.
  await page.route('https://acme.example.com/**', (route) => {
    seen.push(route.request().method());
    return route.abort('failed');
  });
  const r = await deleteInTurn(page, [21, 22, 23]);
  for (const [i, x] of r.entries()) assert.ok(x.ms < 2000, `call ${i + 1}'s fallback waited ${x.ms} ms (no backoff expected)`);
  assert.equal(seen.length, 2, `two failed direct requests (calls 1 and 2), then none: ${JSON.stringify(seen)}`);
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.deepEqual(calls, [21, 22, 23].map((id) => `callMethod:crm.item.delete:{"entityTypeId":1268,"id":${id}}`));
});

test('a frame whose first direct request is lost (a network blip): that call goes through BX24.callMethod, later calls go direct again', async () => {
  const { page } = await openStub('https-portal', '&token=tok-789');
  const posts = [];
  await page.route('https://acme.example.com/**', (route) => {
    const req = route.request();
    if (req.method() === 'POST') {
      posts.push(JSON.parse(req.postData()).id);
      // The first request is lost on the way.
      if (posts.length === 1) return route.abort('failed');
    }
    return answerAsPortal(route);
  });
  await deleteInTurn(page, [31, 32, 33]);
  assert.deepEqual(posts, [31, 32, 33], 'every call tried the portal directly');
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.deepEqual(calls, ['callMethod:crm.item.delete:{"entityTypeId":1268,"id":31}'], 'only the lost request went through BX24');
});

test('a frame on an https portal (PROTOCOL 1): a direct JSON POST to https://DOMAIN/rest/crm.item.delete with the token', async () => {
  const { page } = await openStub('https-portal', '&token=tok-123');
  const seen = [];
  await page.route('https://acme.example.com/**', async (route) => {
    const req = route.request();
    seen.push({ method: req.method(), url: req.url(), body: req.postData(), contentType: req.headers()['content-type'] });
    return answerAsPortal(route);
  });
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, '12', { timeoutMs: 5000 })));
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual({ entityTypeId: r.value.entityTypeId, id: r.value.id }, { entityTypeId: SPA, id: 12 });
  const posts = seen.filter((q) => q.method === 'POST');
  assert.equal(posts.length, 1, JSON.stringify(seen));
  assert.equal(posts[0].url, 'https://acme.example.com/rest/crm.item.delete');
  assert.match(posts[0].contentType, /^application\/json/);
  assert.deepEqual(JSON.parse(posts[0].body), { entityTypeId: SPA, id: 12, auth: 'tok-123' });
  const calls = await page.evaluate(() => window.bx24Calls.filter((c) => c.startsWith('callMethod')));
  assert.deepEqual(calls, [], 'BX24.callMethod not used');
});

// ---- deleteItems in a frame ------------------------------------------------------------------

test('deleteItems in the frame: 120 ids through batch, all deleted, 3 batch requests', async () => {
  const ids = (await h.emu.control.items(SPA, 120)).ids;
  const { frame } = await openWidget({ options: { ID: String(ids[0]) } });
  const report = await frame.evaluate(async (ids) => {
    const lib = await import('/pkg/index.js');
    const r = await lib.deleteItems(1268, ids);
    return { deleted: r.deleted, notFound: r.notFound, failed: r.failed.map((f) => ({ id: f.id, code: f.error.code })) };
  }, ids);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.notFound, []);
  assert.deepEqual([...report.deleted].sort((a, b) => a - b), ids);
  const state = await h.emu.control.state();
  assert.equal(state.requests.byMethod.batch, 3);
  assert.equal(state.requests.byMethod['crm.item.delete'] ?? 0, 0);
  assert.equal(state.items[String(SPA)].length, 20, 'only the 120 new items went');
});

// ---- the same policy on both paths, in the frame host with the real (emulated) BX24.js ----------

/** The bench fixture in the frame host: the real BX24.js; window.useBx24('bx24') hides its token. */
async function openBench() {
  const { page, problems, rest } = await newPage();
  await page.goto(hostUrl('/frame-fixtures/bench.html', { options: { ID: '1' } }));
  const frame = await frameOf(page, '/frame-fixtures/bench.html');
  await frame.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  await frame.evaluate(() => window.lib.init());
  return { page, frame, problems, rest };
}

function frameDelete(frame, path, id, opts) {
  return frame.evaluate(([path, id, opts]) => {
    window.useBx24(path);
    return window.settle(new window.lib.Client({ frame: true, rateLimit: false }).deleteItem(1268, id, opts));
  }, [path, id, opts]);
}

test('frame, direct path: a 503 QUERY_LIMIT_EXCEEDED is retried after a backoff, like the fetch path', async () => {
  const { frame } = await openBench();
  const id = (await itemsOf(SPA))[10];
  await h.emu.control.faults({ method: 'crm.item.delete', count: 1, fault: { kind: 'error', status: 503, error: 'QUERY_LIMIT_EXCEEDED' } });
  const r = await frameDelete(frame, 'direct', id, { timeoutMs: 10000 });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.ok(r.ms >= 700, `took ${r.ms} ms: ~1 s of backoff`);
  assert.equal(await requestsOf('crm.item.delete'), 2);
  assert.equal((await itemsOf(SPA)).includes(id), false);
});

test('frame, BX24.callMethod path: a 503 (BX24.js never calls back) rejects TIMEOUT within the deadline; item kept', async () => {
  const { frame } = await openBench();
  const id = (await itemsOf(SPA))[11];
  await h.emu.control.faults({ method: 'crm.item.delete', count: 20, fault: { kind: 'error', status: 503, error: 'QUERY_LIMIT_EXCEEDED' } });
  const r = await frameDelete(frame, 'bx24', id, { timeoutMs: 2000 });
  await h.emu.control.clearFaults();
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'TIMEOUT');
  assert.ok(r.ms >= 1900 && r.ms <= 3000, `took ${r.ms} ms`);
  assert.ok(await requestsOf('crm.item.delete') >= 1);
  assert.equal((await itemsOf(SPA)).includes(id), true);
});

test('frame, BX24.callMethod path: a NOT_FOUND answer (400: 4xx reaches the callback) rejects NOT_FOUND at once', async () => {
  const { frame } = await openBench();
  const r = await frameDelete(frame, 'bx24', 99999, { timeoutMs: 5000 });
  assert.equal(r.ok, false, JSON.stringify(r));
  assert.equal(r.error.code, 'NOT_FOUND');
  assert.equal(r.error.status, 400);
  assert.equal(r.error.retryable, false);
  assert.ok(r.ms < 2000, `took ${r.ms} ms`);
  assert.equal(await requestsOf('crm.item.delete'), 1);
});

test('frame, BX24.callMethod path: deleteItems of 120 ids goes through BX24 batch calls, all deleted', async () => {
  const ids = (await h.emu.control.items(SPA, 120)).ids;
  const { frame, rest } = await openBench();
  const report = await frame.evaluate(async (ids) => {
    window.useBx24('bx24');
    try {
      const r = await new window.lib.Client({ frame: true }).deleteItems(1268, ids);
      return { deleted: r.deleted, notFound: r.notFound, failed: r.failed.map((f) => ({ id: f.id, code: f.error.code })) };
    } finally {
      window.useBx24('direct');
    }
  }, ids);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.notFound, []);
  assert.deepEqual([...report.deleted].sort((a, b) => a - b), ids);
  assert.equal(await requestsOf('batch'), 3);
  assert.equal(rest.filter((q) => q.url === `${h.emu.url}/rest/batch.json`).length, 3, 'BX24.js form POSTs');
  assert.equal((await itemsOf(SPA)).length, 20);
});

// ---- what a call costs through each path -------------------------------------------------------

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { median: at(0.5), p90: at(0.9), n: s.length };
}

test('measurement: ms per deleteItem in the frame, direct fetch vs BX24.callMethod vs a plain fetch', async () => {
  const [ROUNDS, PER_ROUND, WARMUP] = [10, 20, 5];
  const N = ROUNDS * PER_ROUND;
  const ids = (await h.emu.control.items(SPA, 3 * (N + WARMUP))).ids;
  const { page, rest } = await newPage();
  await page.goto(hostUrl('/frame-fixtures/bench.html', { options: { ID: '1' } }));
  const frame = await frameOf(page, '/frame-fixtures/bench.html');
  await frame.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  await frame.evaluate(() => window.lib.init());

  const { ms, failures } = await frame.evaluate(([ids, plan]) => window.bench(1268, ids, plan),
    [ids, { rounds: ROUNDS, perRound: PER_ROUND, warmup: WARMUP }]);
  assert.deepEqual(failures, [], 'every call succeeds');
  for (const path of ['direct', 'bx24', 'fetch']) assert.equal(ms[path].length, N, path);
  assert.equal((await itemsOf(SPA)).length, 20, 'all measured items deleted');
  // Each path went where it should: BX24.callMethod posts a form to /rest/crm.item.delete.json; the
  // library's direct path and the plain fetch post JSON to /rest/crm.item.delete.
  const sent = (suffix) => rest.filter((q) => q.url === `${h.emu.url}/rest/crm.item.delete${suffix}`).length;
  assert.equal(sent('.json'), N + WARMUP, 'BX24.callMethod requests');
  assert.equal(sent(''), 2 * (N + WARMUP), 'direct requests (library + plain fetch)');
  assert.equal((await h.emu.control.state()).requests.byMethod['crm.item.delete'], 3 * (N + WARMUP));

  const rows = [['library, direct fetch with BX24.getAuth()', ms.direct], ['library, BX24.callMethod fallback', ms.bx24],
    ['plain fetch, same endpoint and token', ms.fetch]];
  const f = (x) => x.toFixed(1).padStart(7);
  console.log(`\nms per crm.item.delete call, ${N} sequential calls per path (${ROUNDS} interleaved rounds of ${PER_ROUND}),`);
  console.log('headless Chromium, a page in the emulator\'s frame host, emulator on loopback:');
  console.log(`  ${'path'.padEnd(44)} ${'median'.padStart(7)} ${'p90'.padStart(7)}`);
  for (const [label, values] of rows) {
    const s = stats(values);
    console.log(`  ${label.padEnd(44)} ${f(s.median)} ${f(s.p90)}`);
  }
});
