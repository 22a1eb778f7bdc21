// Drive the demo page (www/, served by the emulator) in headless Chromium, as a user would:
//   node tests/js/demo-check.mjs http://localhost:PORT/ http://127.0.0.1:PORT/rest/1/SECRET/
// Run by `cargo xtask demo --check`. Exits 0 only if every check passed; screenshot in
// target/demo-check.png. Uses Debian's Chromium (CHROMIUM env to override); never downloads one.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const [pageUrl, webhook] = process.argv.slice(2);
if (!pageUrl || !webhook) {
  console.error('usage: node tests/js/demo-check.mjs PAGE_URL WEBHOOK_URL');
  process.exit(2);
}
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const shot = path.join(repo, 'target', 'demo-check.png');
const apiOrigin = new URL(webhook).origin;
const secret = new URL(webhook).pathname.split('/')[3];
const TYPE = 1268;

let failures = 0;
const ok = (msg) => console.log(`  ok   ${msg}`);
const fail = (msg) => {
  failures++;
  console.log(`  FAIL ${msg}`);
};
const check = (cond, msg, detail = '') => (cond ? ok(msg) : fail(detail ? `${msg}: ${detail}` : msg));

async function state() {
  const res = await fetch(`${apiOrigin}/_emulator/state`);
  if (!res.ok) throw new Error(`GET /_emulator/state: HTTP ${res.status}`);
  return res.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const consoleErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) consoleErrors.push(`console: ${m.text()}`);
  });

  console.log(`demo check: ${pageUrl} (API on ${apiOrigin}: cross-origin)`);
  await page.goto(pageUrl);
  try {
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
    ok('the page loaded the package from ./pkg/index.js');
  } catch {
    const status = await page.locator('#module-status').textContent().catch(() => '?');
    throw new Error(`the page did not start (module status: "${status}")`);
  }

  const before = await state();
  const ids = before.items[String(TYPE)] ?? [];
  if (!ids.length) throw new Error(`the emulator has no items of entityTypeId ${TYPE} to delete`);
  const target = ids[0];
  const missing = Math.max(...Object.values(before.items).flat(), 0) + 1000;

  // Connect with the webhook, as a user pasting it.
  await page.fill('#webhook', webhook);
  await page.click('#connect');
  await page.waitForFunction(() => document.querySelector('#connection-status')?.textContent.startsWith('connected'));
  ok('connected with the webhook typed into #webhook');

  async function deleteViaForm(entityTypeId, id) {
    await page.evaluate(() => {
      delete document.querySelector('#result').dataset.state;
    });
    await page.fill('#entity-type', String(entityTypeId));
    await page.fill('#item-id', String(id));
    await page.click('#delete');
    await page.waitForSelector('#result[data-state]', { timeout: 30_000 });
    return {
      state: await page.getAttribute('#result', 'data-state'),
      title: (await page.textContent('#result-title')).trim(),
      text: (await page.textContent('#result-text')).trim(),
      code: (await page.textContent('#error-code')).trim(),
    };
  }

  // 1. Delete an existing item.
  const r1 = await deleteViaForm(TYPE, target);
  console.log(`  deleteItem(${TYPE}, ${target}) → ${r1.title}: ${r1.text}`);
  check(r1.state === 'ok', `item ${target} reported deleted`, `${r1.code} ${r1.text}`);
  const after = await state();
  check(!(after.items[String(TYPE)] ?? []).includes(target), `item ${target} is gone from /_emulator/state`);
  check((after.items[String(TYPE)] ?? []).length === ids.length - 1, 'exactly one item was deleted');

  // 2. A missing item: a documented error, in plain words, with its code.
  const r2 = await deleteViaForm(TYPE, missing);
  console.log(`  deleteItem(${TYPE}, ${missing}) → ${r2.title}: [${r2.code}] ${r2.text}`);
  check(r2.state === 'error', `deleting missing item ${missing} is reported as an error`);
  check(r2.code === 'NOT_FOUND', 'the error code shown is NOT_FOUND', `got "${r2.code}"`);
  check(/no such item/i.test(r2.text), 'the error is explained in plain words', `got "${r2.text}"`);

  // 3. The items list follows the emulator.
  await page.click('#refresh-items');
  await page.waitForTimeout(300);
  const chips = await page.locator(`#items [data-entity-type-id="${TYPE}"] .chip`).count();
  check(chips === ids.length - 1, `the items list shows ${ids.length - 1} items of ${TYPE}`, `shows ${chips}`);

  // 4. The log shows the requests, with the secret masked; the secret is nowhere on the page.
  const logText = await page.textContent('#log');
  check(/crm\.item\.delete/.test(logText) && /\/rest\/1\/\*\*\*\//.test(logText), 'the log shows crm.item.delete requests with the secret masked');
  const visible = await page.evaluate(() => document.body.innerText);
  check(secret && !visible.includes(secret), 'the webhook secret is not visible anywhere on the page');

  check(consoleErrors.length === 0, 'no errors in the browser console', consoleErrors.join(' | '));

  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`  screenshot: ${path.relative(process.cwd(), shot)}`);
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}

console.log(failures ? `demo check FAILED (${failures} failure${failures === 1 ? '' : 's'})` : 'demo check passed');
process.exit(failures ? 1 : 0);
