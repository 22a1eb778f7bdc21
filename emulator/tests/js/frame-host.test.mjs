// The emulator's frame host and BX24 library in headless Chromium.
//   node --test emulator/tests/js/
// Needs /usr/bin/chromium and playwright-core in tests/node_modules (cargo xtask setup installs both).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startEmulator } from '../../../tests/js/support/emulator.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, '..', 'fixtures');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const require = createRequire(path.resolve(here, '..', '..', '..', 'tests', 'package.json'));

let chromium = null;
try { ({ chromium } = require('playwright-core')); } catch { /* reported below */ }
const skip = !chromium ? 'playwright-core is not installed in tests/node_modules'
  : !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

let emu;
let browser;

before(async () => {
  if (skip) return;
  emu = await startEmulator(['--static', `/fixtures=${fixtures}`]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  await emu?.stop();
});

async function openWidget(query, base = emu.url) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e.message ?? e)));
  const posts = [];
  page.on('request', (r) => { if (r.url().includes('widget.html')) posts.push({ method: r.method(), url: r.url(), body: r.postData() }); });
  await page.goto(`${base}/app/test?${query}`);
  const frame = await waitForFrame(page);
  await frame.waitForFunction(() => window.__done === true, null, { timeout: 10_000 });
  return { page, frame, errors, posts };
}

async function waitForFrame(page) {
  for (let i = 0; i < 100; i++) {
    const f = page.frames().find((fr) => fr !== page.mainFrame() && fr.url().includes('widget.html'));
    if (f) return f;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('widget frame did not load');
}

test('frame handshake: POST fields, window.name, init, placement.info, callMethod deletes', { skip }, async () => {
  await emu.control.reset();
  const options = encodeURIComponent(JSON.stringify({ ID: '7' }));
  const { page, frame, posts, errors } = await openWidget(`url=/fixtures/widget.html&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=${options}`);
  try {
    // the portal POSTs the auth fields to the widget URL, with DOMAIN/PROTOCOL/LANG/APP_SID in the query
    const post = posts.find((p) => p.method === 'POST');
    assert.ok(post, 'widget page was requested with POST');
    const body = new URLSearchParams(post.body);
    for (const k of ['AUTH_ID', 'AUTH_EXPIRES', 'REFRESH_ID', 'member_id', 'PLACEMENT', 'PLACEMENT_OPTIONS', 'SERVER_ENDPOINT', 'status']) {
      assert.ok(body.get(k), `POST field ${k}`);
    }
    assert.equal(body.get('PLACEMENT'), 'CRM_DYNAMIC_1268_DETAIL_TAB');
    assert.deepEqual(JSON.parse(body.get('PLACEMENT_OPTIONS')).ID, '7');
    const q = new URL(post.url).searchParams;
    assert.equal(q.get('DOMAIN'), `127.0.0.1:${emu.port}`);
    assert.equal(q.get('PROTOCOL'), '0');
    assert.ok(q.get('APP_SID'));
    // window.name = DOMAIN|PROTOCOL|APP_SID
    const name = await frame.evaluate(() => window.name);
    assert.equal(name, `127.0.0.1:${emu.port}|0|${q.get('APP_SID')}`);
    // BX24.init / placement.info / getAuth / isAdmin
    const info = await frame.evaluate(() => window.__info);
    assert.deepEqual(info.placement, 'CRM_DYNAMIC_1268_DETAIL_TAB');
    assert.equal(info.options.ID, '7');
    const auth = await frame.evaluate(() => window.__auth);
    assert.equal(auth.access_token, body.get('AUTH_ID'));
    assert.equal(auth.domain, `127.0.0.1:${emu.port}`);
    assert.ok(auth.expires_in > Date.now() + 3_000_000, 'expires_in is an absolute ms time');
    assert.equal(await frame.evaluate(() => window.__admin), true);
    // the delete went through and the item is gone
    const res = await frame.evaluate(() => window.__deleteResult);
    assert.deepEqual(res.data, []);
    assert.equal(res.status, 200);
    assert.equal(res.error, null);
    const state = await emu.control.state();
    assert.ok(!state.items['1268'].includes(7));
    assert.deepEqual(state.deleted, [{ entityTypeId: 1268, id: 7 }]);
    assert.equal(state.requests.byMethod['crm.item.delete'], 1);
    // a 4xx reaches the callback as an error ajaxResult
    const missing = await frame.evaluate(() => window.call('crm.item.delete', { entityTypeId: 1268, id: 7 }));
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.error, { error: 'NOT_FOUND', error_description: 'Item not found' });
    assert.equal(missing.text, 'NOT_FOUND: Item not found (400)');
    // list: more()/total()
    const list = await frame.evaluate(() => window.call('crm.item.list', { entityTypeId: 2 }));
    assert.equal(list.total, 20);
    assert.equal(list.more, false);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('refreshAuth through the parent, callBatch, and auto-refresh of an expired token', { skip }, async () => {
  await emu.control.reset();
  const { page, frame } = await openWidget('url=/fixtures/widget.html&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=%7B%22ID%22%3A%221%22%7D');
  try {
    const before = await frame.evaluate(() => BX24.getAuth());
    const after = await frame.evaluate(() => new Promise((r) => BX24.refreshAuth(r)));
    assert.ok(after.access_token && after.access_token !== before.access_token);
    assert.notEqual(after.refresh_token, before.refresh_token);
    assert.deepEqual(await frame.evaluate(() => BX24.getAuth()), after);
    const ok = await frame.evaluate(() => window.call('crm.item.delete', { entityTypeId: 1268, id: 2 }));
    assert.equal(ok.status, 200);
    // callBatch: per-key ajaxResults
    const batch = await frame.evaluate(() => new Promise((resolve) => {
      BX24.callBatch({
        a: ['crm.item.delete', { entityTypeId: 1268, id: 3 }],
        b: { method: 'crm.item.delete', params: { entityTypeId: 1268, id: 999 } },
      }, (res) => {
        const b = res.b.error().ex; // the answer itself, as in BX24.js
        resolve({ a: res.a.data(), aErr: res.a.error() ?? null, b: { error: b.error, error_description: b.error_description }, cycle: b.ex === res.b.error() });
      });
    }));
    assert.deepEqual(batch, { a: [], aErr: null, b: { error: 'NOT_FOUND', error_description: 'Item not found' }, cycle: true });
    const state = await emu.control.state();
    assert.equal(state.requests.byMethod.batch, 1);
    assert.ok(!state.items['1268'].includes(3));

    // a token the portal says has expired: the library refreshes on expired_token and repeats the call
    await emu.control.expireTokens();
    const viaError = await frame.evaluate(() => window.call('crm.item.delete', { entityTypeId: 1268, id: 6 }));
    assert.equal(viaError.status, 200, JSON.stringify(viaError));
    assert.notEqual((await frame.evaluate(() => BX24.getAuth())).access_token, after.access_token);
    assert.equal((await emu.control.state()).rejected.expired_token, 1);
    await page.close();

    // a short-lived token: the library refreshes before calling once AUTH_EXPIRES has passed
    const w = await openWidget('url=/fixtures/widget.html&lifetime=1&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=%7B%22ID%22%3A%224%22%7D');
    await new Promise((r) => setTimeout(r, 1200));
    const again = await w.frame.evaluate(() => window.call('crm.item.delete', { entityTypeId: 1268, id: 5 }));
    assert.equal(again.status, 200, JSON.stringify(again));
    await w.page.close();
  } finally {
    await emu.control.reset();
  }
});

test('no callback on a 5xx or a network error; commands with a wrong APP_SID are refused', { skip }, async () => {
  await emu.control.reset();
  const { page, frame, errors } = await openWidget('url=/fixtures/widget.html&placement=DEFAULT&options=%7B%22ID%22%3A%221%22%7D');
  try {
    await emu.control.faults({ method: 'crm.item.delete', count: 1, fault: { kind: 'error', status: 503, error: 'QUERY_LIMIT_EXCEEDED', description: 'Too many requests' } });
    await frame.evaluate(() => window.fire('crm.item.delete', { entityTypeId: 1268, id: 2 }));
    // the 503 arrives: BX24 throws 'Query error!' in the XHR handler ...
    for (let i = 0; i < 200 && !errors.some((e) => e.includes('Query error!')); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(errors.some((e) => e.includes('Query error!')), `uncaught 'Query error!': ${JSON.stringify(errors)}`);
    // ... and never calls back
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await frame.evaluate(() => window.callbacks), 0, 'BX24 never calls back on 5xx');
    assert.equal((await emu.control.state()).rejected.QUERY_LIMIT_EXCEEDED, 1);
    // the next call (no fault) calls back
    await frame.evaluate(() => window.fire('crm.item.delete', { entityTypeId: 1268, id: 2 }));
    await frame.waitForFunction(() => window.callbacks === 1);
    // a network error (connection dropped after the delete was applied): no callback either
    await emu.control.faults({ method: 'crm.item.delete', count: 1, fault: { kind: 'drop_after_apply' } });
    await frame.evaluate(() => window.fire('crm.item.delete', { entityTypeId: 1268, id: 3 }));
    const queryErrors = () => errors.filter((e) => e.includes('Query error!')).length;
    for (let i = 0; i < 200 && queryErrors() < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(queryErrors(), 2, JSON.stringify(errors));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await frame.evaluate(() => window.callbacks), 1, 'no callback on a network error');
    assert.ok(!(await emu.control.state()).items['1268'].includes(3), 'the dropped call was applied');
    // the parent refuses a command that carries another APP_SID
    await frame.evaluate(() => window.parent.postMessage('getInitData::x1:WRONGSID', '*'));
    await page.waitForFunction(() => window.__b24host.log.some((e) => e.reason === 'app_sid'));
    const log = await page.evaluate(() => window.__b24host.log);
    assert.ok(log.filter((e) => e.accepted).every((e) => e.origin === emu.url));
  } finally {
    await page.close();
  }
});

test('a widget on another origin works through the same handshake', { skip }, async () => {
  await emu.control.reset();
  // localhost and 127.0.0.1 are different origins; the portal stays 127.0.0.1
  const widget = encodeURIComponent(`http://localhost:${emu.port}/fixtures/widget.html`);
  const { page, frame } = await openWidget(`url=${widget}&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=%7B%22ID%22%3A%229%22%7D`);
  try {
    assert.equal(await frame.evaluate(() => location.origin), `http://localhost:${emu.port}`);
    assert.deepEqual((await frame.evaluate(() => window.__deleteResult)).data, []);
    assert.ok(!(await emu.control.state()).items['1268'].includes(9));
  } finally {
    await page.close();
  }
});

/** Post a raw command from the frame to its parent; the reply's data, or `null` if none comes in `waitMs`. */
function ask(frame, cmd, params, waitMs = 600) {
  return frame.evaluate(({ cmd, params, waitMs }) => new Promise((resolve) => {
    const sid = window.name.split('|')[2];
    const origin = 'http://' + window.name.split('|')[0];
    const cb = 'ask' + Math.random().toString(36).slice(2);
    const timer = setTimeout(() => { window.removeEventListener('message', on); resolve(null); }, waitMs);
    function on(e) {
      if (typeof e.data !== 'string' || !e.data.startsWith(cb + ':')) return;
      clearTimeout(timer);
      window.removeEventListener('message', on);
      const json = e.data.slice(cb.length + 1);
      resolve({ data: json ? JSON.parse(json) : undefined });
    }
    window.addEventListener('message', on);
    window.parent.postMessage(cmd + ':' + (params === null ? '' : JSON.stringify(params)) + ':' + cb + ':' + sid, origin);
  }), { cmd, params, waitMs });
}

test('a host opened on localhost names the frame after it; PLACEMENT upper-case, no URI, INSTALL settable', { skip }, async () => {
  await emu.control.reset();
  // the widget stays on 127.0.0.1 (another origin than the parent on localhost)
  const { page, frame } = await openWidget('url=/fixtures/widget.html&placement=crm_dynamic_1268_detail_tab&install=1&options=%7B%22ID%22%3A%228%22%7D',
    `http://localhost:${emu.port}`);
  try {
    const name = await frame.evaluate(() => window.name);
    assert.match(name, new RegExp(`^localhost:${emu.port}\\|0\\|[0-9a-f]{32}$`));
    assert.equal(await frame.evaluate(() => window.__domain), `localhost:${emu.port}`);
    const info = await frame.evaluate(() => window.__info);
    assert.equal(info.placement, 'CRM_DYNAMIC_1268_DETAIL_TAB');
    assert.deepEqual(info.options, { ID: '8' }, 'no injected URI');
    assert.deepEqual((await frame.evaluate(() => window.__deleteResult)).data, [], 'BX24 calls DOMAIN = localhost');
    const init = (await ask(frame, 'getInitData', null)).data;
    assert.equal(init.INSTALL, true);
    assert.equal(init.FIRST_RUN, false);
    assert.equal(init.PLACEMENT, 'CRM_DYNAMIC_1268_DETAIL_TAB');
  } finally {
    await page.close();
  }
});

test('the host answers like the portal: concurrent refreshes all succeed, no reply to unknown, denied or failed commands', { skip }, async () => {
  await emu.control.reset();
  const { page, frame } = await openWidget('url=/fixtures/widget.html&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=%7B%22ID%22%3A%221%22%7D');
  try {
    // three refreshes at once: three new tokens, each one works
    const fresh = await frame.evaluate(() => Promise.all([1, 2, 3].map(() => new Promise((r) => BX24.refreshAuth(r)))));
    const tokens = fresh.map((a) => a && a.access_token);
    assert.equal(new Set(tokens).size, 3, JSON.stringify(fresh));
    for (const t of tokens) {
      const r = await fetch(`${emu.url}/rest/user.current?auth=${t}`);
      assert.equal(r.status, 200);
    }
    const reply = (await ask(frame, 'refreshAuth', {})).data;
    assert.deepEqual(Object.keys(reply).sort(), ['AUTH_EXPIRES', 'AUTH_ID', 'REFRESH_ID']);
    // resizeWindow answers the size; setTitle/setScroll are DEFAULT-only (no reply here)
    const size = (await ask(frame, 'resizeWindow', { width: '100%', height: 321 })).data;
    assert.equal(size.height, 321);
    assert.ok(size.width > 0, JSON.stringify(size));
    assert.equal(await ask(frame, 'setTitle', { title: 'x' }), null);
    assert.equal(await ask(frame, 'setScroll', { scroll: 10 }), null);
    // unknown commands and events: nothing
    assert.equal(await ask(frame, 'noSuchCommand', {}), null);
    assert.equal(await ask(frame, 'placement.bindEvent', { event: 'x' }), null);
    // a failed refresh (the session is gone after a reset): no reply at all
    await emu.control.reset();
    assert.equal(await ask(frame, 'refreshAuth', {}, 800), null);
    const log = await page.evaluate(() => window.__b24host.log);
    assert.ok(log.some((e) => e.cmd === 'refreshAuth' && e.reason === 'refresh_failed'), JSON.stringify(log));
    assert.ok(log.some((e) => e.cmd === 'setTitle' && e.reason === 'denied'), JSON.stringify(log));
  } finally {
    await page.close();
  }
});

test('in the DEFAULT placement setTitle and setScroll echo', { skip }, async () => {
  await emu.control.reset();
  const { page, frame } = await openWidget('url=/fixtures/widget.html&options=%7B%22ID%22%3A%221%22%7D');
  try {
    assert.deepEqual((await ask(frame, 'setTitle', { title: 'My app' })).data, { title: 'My app' });
    assert.equal(await page.title(), 'My app');
    assert.deepEqual((await ask(frame, 'setScroll', { scroll: 0 })).data, { scroll: 0 });
  } finally {
    await page.close();
  }
});
