// The built npm package (pkg/) in headless Chromium, imported exactly as a user would: a page served
// from the emulator at http://localhost:PORT/ does `import * as lib from '/pkg/index.js'` from a
// <script type="module">, no bundler. The API lives at http://127.0.0.1:PORT (another origin), so every
// call is a real cross-origin fetch with a CORS preflight. Issue 2, section 4 ("Package").
//
//   node --test --test-concurrency=1 tests/js/package.test.mjs
//
// Env (set by `cargo xtask test`; defaults for a manual run): B24_REPO, B24_PKG_DIR, B24_EMULATOR_BIN.

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pkgDir } from './support/browser.mjs';
import { useEmulatorAndBrowser } from './support/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pagesDir = path.join(here, 'pages');

const SPA = 1268;
const METHOD = 'crm.item.delete';

const h = useEmulatorAndBrowser(['--no-limits', '--static', `/pkg=${pkgDir}`, '--static', `/=${pagesDir}`]);
/** Seeded webhooks by role: admin, no_delete, extranet, no_crm_scope. */
let hooks;

beforeEach(async () => {
  const state = await h.emu.control.state();
  hooks = Object.fromEntries(state.webhooks.map((w) => [w.role, w.url]));
  assert.equal(hooks.admin, h.emu.webhook);
});

/** The secret part of a webhook URL `.../rest/USER/SECRET/`. */
function secretOf(webhook) {
  const m = webhook.match(/\/rest\/\d+\/([^/]+)\/?$/);
  assert.ok(m, `not a webhook URL: ${webhook}`);
  return m[1];
}


/** configure(config) + deleteItem(t, id, opts) in the page, settled into plain data. */
function configureAndDelete(page, config, t, id, opts) {
  return page.evaluate(async ([config, t, id, opts]) => {
    try {
      window.lib.configure(config);
    } catch (e) {
      return { ok: false, error: window.serializeError(e), threwFromConfigure: true };
    }
    return window.settle(window.lib.deleteItem(t, id, opts));
  }, [config, t, id, opts]);
}

/** new Client(config).deleteItem(t, id) in the page, settled into plain data. */
function clientDelete(page, config, t, id, opts) {
  return page.evaluate(async ([config, t, id, opts]) => {
    let client;
    try {
      client = new window.lib.Client(config);
    } catch (e) {
      return { ok: false, error: window.serializeError(e), threwFromConstructor: true };
    }
    return window.settle(client.deleteItem(t, id, opts));
  }, [config, t, id, opts]);
}

async function deleteCount() {
  const s = await h.emu.control.state();
  return s.requests.byMethod[METHOD] ?? 0;
}

async function itemsOf(t = SPA) {
  const s = await h.emu.control.state();
  return s.items[String(t)] ?? [];
}

function assertRejected(r, expected, label = '') {
  assert.equal(r.ok, false, `${label}: expected a rejection, got ${JSON.stringify(r.value)}`);
  const e = r.error;
  assert.equal(e.isB24, true, `${label}: instanceof B24Error`);
  assert.equal(e.isError, true, `${label}: instanceof Error`);
  assert.equal(e.name, 'B24Error', `${label}: name`);
  for (const [k, v] of Object.entries(expected)) {
    assert.deepEqual(e[k], v, `${label}: ${k} of ${JSON.stringify(e)}`);
  }
  assert.equal(typeof e.description, 'string', `${label}: description is a string`);
  assert.ok(e.description.length > 0, `${label}: description is not empty`);
  assert.equal(typeof e.status, 'number', `${label}: status is a number`);
  assert.equal(typeof e.retryable, 'boolean', `${label}: retryable is a boolean`);
  return e;
}

/** Every text an error can print, and the console, must not contain any of `secrets`. */
function assertNoSecret(r, secrets, consoleLines, label) {
  assert.equal(r.ok, false, `${label}: expected a rejection`);
  const e = r.error;
  const texts = {
    message: e.message, stack: e.stack, 'String(e)': e.str, 'JSON.stringify(e)': e.json,
    description: e.description, 'String(e.cause)': e.causeString, console: consoleLines.join('\n'),
  };
  for (const secret of secrets) {
    assert.ok(secret && secret.length >= 4, `${label}: a real secret to look for`);
    for (const [where, text] of Object.entries(texts)) {
      assert.equal(typeof text === 'string' ? text.includes(secret) : false, false,
        `${label}: the secret ${JSON.stringify(secret)} appears in ${where}: ${text}`);
    }
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on. */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

// ---------------------------------------------------------------------------------------------

test('webhook: configure + deleteItem resolves {entityTypeId, id, time}, the item is gone; again → NOT_FOUND', async () => {
  const { page, restRequests } = await h.openPage();
  const id = (await itemsOf())[0];
  assert.ok(id, 'a seeded item');
  const r = await configureAndDelete(page, { webhookUrl: h.emu.webhook }, SPA, id);
  assert.equal(r.ok, true, `delete failed: ${JSON.stringify(r.error)}`);
  assert.equal(r.value.entityTypeId, SPA);
  assert.equal(r.value.id, id);
  assert.deepEqual(Object.keys(r.value).sort(), ['entityTypeId', 'id', 'time']);
  assert.equal(typeof r.value.time, 'object');
  for (const k of ['start', 'finish', 'duration', 'processing', 'operating']) {
    assert.equal(typeof r.value.time[k], 'number', `time.${k}`);
  }
  assert.equal(typeof r.value.time.date_start, 'string');
  assert.equal(typeof r.value.time.date_finish, 'string');

  const state = await h.emu.control.state();
  assert.ok(!state.items[String(SPA)].includes(id), 'the item is gone');
  assert.deepEqual(state.deleted, [{ entityTypeId: SPA, id }]);
  assert.equal(state.requests.byMethod[METHOD], 1);
  assert.equal(restRequests.length, 1);

  const again = await page.evaluate(([t, id]) => window.settle(window.lib.deleteItem(t, id)), [SPA, id]);
  assertRejected(again, {
    code: 'NOT_FOUND', status: 400, kind: 'api', retryable: false, method: METHOD, description: 'Item not found',
  }, 'second delete');
  assert.equal(again.error.attempts, 1, 'NOT_FOUND is not retried');
  assert.equal(await deleteCount(), 2);
});

test('OAuth: configure({portal, accessToken}) deletes; body carries auth; new Client is independent of the default client', async () => {
  const { page, restRequests } = await h.openPage();
  const [a, b, c] = await itemsOf();
  const tok = await h.emu.control.token();
  const token = tok.access_token;
  assert.ok(token);

  const r1 = await configureAndDelete(page, { portal: h.emu.url, accessToken: token }, SPA, a);
  assert.equal(r1.ok, true, `OAuth delete failed: ${JSON.stringify(r1.error)}`);
  assert.equal(r1.value.entityTypeId, SPA);
  assert.equal(r1.value.id, a);
  assert.equal(typeof r1.value.time?.start, 'number');
  assert.equal(restRequests.length, 1);
  assert.equal(restRequests[0].url, `${h.emu.url}/rest/${METHOD}`);
  assert.deepEqual(JSON.parse(restRequests[0].body), { entityTypeId: SPA, id: a, auth: token });
  assert.equal(restRequests[0].body, `{"entityTypeId":${SPA},"id":${a},"auth":"${token}"}`);

  // A Client with the OAuth config works the same, while the default client has another (bad) config.
  const r2 = await page.evaluate(async ([portal, token, wrongHook, t, b, c]) => {
    window.lib.configure({ webhookUrl: wrongHook });
    const client = new window.lib.Client({ portal, accessToken: token });
    const viaClient = await window.settle(client.deleteItem(t, b));
    const viaDefault = await window.settle(window.lib.deleteItem(t, c));
    return { viaClient, viaDefault };
  }, [h.emu.url, token, `${h.emu.url}/rest/1/wrongsecret0000x/`, SPA, b, c]);
  assert.equal(r2.viaClient.ok, true, `Client delete failed: ${JSON.stringify(r2.viaClient.error)}`);
  assert.deepEqual({ entityTypeId: r2.viaClient.value.entityTypeId, id: r2.viaClient.value.id }, { entityTypeId: SPA, id: b });
  assertRejected(r2.viaDefault, { code: 'NO_AUTH_FOUND', status: 401, kind: 'api', retryable: false, method: METHOD }, 'default client');

  // And a Client does not configure the default client: a fresh page with only a Client.
  const fresh = await h.openPage();
  const r3 = await fresh.page.evaluate(async ([portal, token, t, c]) => {
    const client = new window.lib.Client({ portal, accessToken: token });
    const viaClient = await window.settle(client.deleteItem(t, c));
    const viaDefault = await window.settle(window.lib.deleteItem(t, c));
    return { viaClient, viaDefault };
  }, [h.emu.url, token, SPA, c]);
  assert.equal(r3.viaClient.ok, true, `Client delete failed: ${JSON.stringify(r3.viaClient.error)}`);
  assertRejected(r3.viaDefault, { code: 'NOT_CONFIGURED', kind: 'config' }, 'default client after a Client');

  const items = await itemsOf();
  for (const id of [a, b, c]) assert.ok(!items.includes(id), `item ${id} deleted`);
});

test('string ids go on the wire as JSON numbers; URL, method and headers are the documented ones', async () => {
  const { page, restRequests } = await h.openPage();
  const [a, b] = await itemsOf();
  const before = await deleteCount();
  const r = await page.evaluate(async ([hook, t, a, b]) => {
    window.lib.configure({ webhookUrl: hook });
    return [await window.settle(window.lib.deleteItem(t, a)), await window.settle(new window.lib.Client({ webhookUrl: hook }).deleteItem(t, b))];
  }, [h.emu.webhook, String(SPA), String(a), String(b)]);
  for (const [i, id] of [[0, a], [1, b]]) {
    assert.equal(r[i].ok, true, `delete with string ids failed: ${JSON.stringify(r[i].error)}`);
    assert.strictEqual(r[i].value.entityTypeId, SPA, 'entityTypeId comes back as a number');
    assert.strictEqual(r[i].value.id, id, 'id comes back as a number');
  }
  assert.equal(await deleteCount() - before, 2, 'the emulator saw exactly two deletes');
  assert.equal(restRequests.length, 2);
  for (const [i, id] of [[0, a], [1, b]]) {
    const req = restRequests[i];
    assert.equal(req.method, 'POST');
    assert.equal(req.url, `${h.emu.webhook}${METHOD}`);
    assert.equal(req.body, `{"entityTypeId":${SPA},"id":${id}}`);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers.accept, 'application/json');
  }
  const items = await itemsOf();
  assert.ok(!items.includes(a) && !items.includes(b), 'both deleted');
});

test('through a stubbed fetch: answer shapes, the largest ids, an answer without time, the default retries', async () => {
  const { page } = await h.openPage({ init: true }); // the wasm is loaded before fetch is replaced
  const r = await page.evaluate(async () => {
    // Each call's answers in turn (the last one repeats); every request body is recorded.
    let script = [];
    const bodies = [];
    window.fetch = async (url, init) => {
      bodies.push(init.body);
      const [status, text] = script.length > 1 ? script.shift() : script[0];
      return new Response(text, { status, headers: { 'Content-Type': 'application/json' } });
    };
    const client = new window.lib.Client({ webhookUrl: 'https://acme.bitrix24.com/rest/1/s3cr3t/', rateLimit: false });
    const once = new window.lib.Client({ webhookUrl: 'https://acme.bitrix24.com/rest/1/s3cr3t/', rateLimit: false, maxRetries: 0 });
    const call = async (answers, t = 2, id = 1, opts, by = client) => {
      script = answers;
      bodies.length = 0;
      const r = await window.settle(by.deleteItem(t, id, opts));
      return { ...r, sent: bodies.slice() };
    };
    const out = {};
    // Valid JSON of another shape: BAD_RESPONSE with the status kept (retryable: a 2xx).
    for (const body of ['{}', 'null', '[]', '{"result":null}', '{"result":1}', '"x"', '{"error":42}']) {
      out[body] = await call([[200, body]], 2, 1, undefined, once);
    }
    out.status404 = await call([[404, '{}']]);
    // The largest safe id, as a number, a string and a bigint: a JSON number on the wire.
    const max = Number.MAX_SAFE_INTEGER;
    out.max = [await call([[200, '{"result":[]}']], max, max), await call([[200, '{"result":[]}']], String(max), String(max)),
      await call([[200, '{"result":[]}']], BigInt(max), 5n)];
    // 503 every time with the default maxRetries: 4 requests.
    out.retries = await call([[503, '{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}']], 2, 1, { timeoutMs: 60000 });
    return out;
  });
  for (const body of ['{}', 'null', '[]', '{"result":null}', '{"result":1}', '"x"', '{"error":42}']) {
    assertRejected(r[body], { code: 'BAD_RESPONSE', kind: 'response', status: 200, retryable: true, method: METHOD, attempts: 1 }, body);
  }
  assertRejected(r.status404, { code: 'BAD_RESPONSE', status: 404, retryable: false, attempts: 1 }, '404 {}');
  for (const [i, m] of r.max.entries()) {
    assert.equal(m.ok, true, `max id #${i}: ${JSON.stringify(m.error)}`);
    assert.deepEqual(Object.keys(m.value), ['entityTypeId', 'id'], 'no time key when the answer has none');
  }
  assert.deepEqual(r.max[0].sent, ['{"entityTypeId":9007199254740991,"id":9007199254740991}']);
  assert.deepEqual(r.max[1].sent, r.max[0].sent);
  assert.deepEqual(r.max[2].sent, ['{"entityTypeId":9007199254740991,"id":5}']);
  assert.deepEqual([r.max[2].value.entityTypeId, r.max[2].value.id], [Number.MAX_SAFE_INTEGER, 5]);
  // 503 every time, default maxRetries (3): 4 requests.
  assertRejected(r.retries, { code: 'QUERY_LIMIT_EXCEEDED', status: 503, retryable: true, attempts: 4, description: 'Too many requests' }, '503 x4');
  assert.equal(r.retries.sent.length, 4);
});

// The contract's list, plus a few more non-canonical forms of a positive safe integer.
const BAD_IDS = [
  ['0', '0'], ['-0', '-0'], ['-1', '-1'], ['1.5', '1.5'], ['NaN', 'NaN'], ['Infinity', 'Infinity'],
  ['-Infinity', '-Infinity'], ['2**53', '2**53'], ['"01"', '"01"'], ['" 1"', '" 1"'], ['"1 "', '"1 "'],
  ['"1e3"', '"1e3"'], ['""', '""'], ['"0"', '"0"'], ['"-1"', '"-1"'], ['"+1"', '"+1"'], ['"1.0"', '"1.0"'],
  ['"0x10"', '"0x10"'], ['"9007199254740992"', '"9007199254740992"'], ['null', 'null'], ['undefined', 'undefined'],
  ['{}', '({})'], ['[]', '[]'], ['[1]', '[1]'], ['true', 'true'], ['false', 'false'],
  ['2n**53n', '2n**53n'], ['-1n', '-1n'], ['0n', '0n'], ['Symbol()', 'Symbol("x")'], ['() => 1', '(() => 1)'],
  ['new Number(1)', 'new Number(1)'],
];

test('bad arguments reject with INVALID_ARGUMENT before any request (default client and Client)', async () => {
  const { page, restRequests } = await h.openPage();
  const id = (await itemsOf())[0];
  const before = (await h.emu.control.state()).requests.total;
  const results = await page.evaluate(async ([hook, bad, t, id]) => {
    window.lib.configure({ webhookUrl: hook });
    const client = new window.lib.Client({ webhookUrl: hook });
    const out = [];
    for (const [label, expr] of bad) {
      const v = (0, eval)(`(${expr})`);
      out.push({ label, where: 'entityTypeId', r: await window.settle(window.lib.deleteItem(v, id)) });
      out.push({ label, where: 'id', r: await window.settle(window.lib.deleteItem(t, v)) });
      out.push({ label, where: 'Client entityTypeId', r: await window.settle(client.deleteItem(v, id)) });
      out.push({ label, where: 'Client id', r: await window.settle(client.deleteItem(t, v)) });
    }
    return out;
  }, [h.emu.webhook, BAD_IDS, SPA, id]);
  assert.equal(results.length, BAD_IDS.length * 4);
  for (const { label, where, r } of results) {
    assertRejected(r, { code: 'INVALID_ARGUMENT', kind: 'argument', retryable: false, status: 0, attempts: 0 }, `${where} = ${label}`);
  }
  const state = await h.emu.control.state();
  assert.equal(state.requests.total, before, 'the emulator saw no request');
  assert.equal(restRequests.length, 0, `the browser sent no request: ${JSON.stringify(restRequests.map((x) => x.url))}`);
  assert.ok(state.items[String(SPA)].includes(id), 'nothing deleted');
});

test('bad call options reject INVALID_ARGUMENT naming the option, before any request (deleteItem and deleteItems)', async () => {
  const { page, restRequests } = await h.openPage();
  const before = (await h.emu.control.state()).requests.total;
  const timeoutRule = 'timeoutMs must be a number of milliseconds from 1 to 2147483647';
  const cases = [
    ['5', 'options must be an object'],
    ['"x"', 'options must be an object'],
    ['({ signal: {} })', 'signal must be an AbortSignal'],
    ['({ signal: null })', 'signal must be an AbortSignal'],
    ['({ timeoutMs: "100" })', 'timeoutMs must be a number'],
    ['({ timeoutMs: 0 })', timeoutRule],
    ['({ timeoutMs: NaN })', timeoutRule],
    ['({ timeoutMs: 2 ** 31 })', timeoutRule],
    ['({ get timeoutMs() { throw new Error("getter"); } })', 'timeoutMs must be a number'],
  ];
  const bulkOnly = [['({ haltOnError: 1 })', 'haltOnError must be a boolean'], ['({ onProgress: "f" })', 'onProgress must be a function']];
  const results = await page.evaluate(async ([hook, cases, bulkOnly]) => {
    const client = new window.lib.Client({ webhookUrl: hook });
    const out = [];
    for (const [expr] of cases) {
      out.push(await window.settle(client.deleteItem(1268, 1, (0, eval)(expr))));
      out.push(await window.settle(client.deleteItems(1268, [1], (0, eval)(expr))));
    }
    for (const [expr] of bulkOnly) {
      out.push(await window.settle(client.deleteItems(1268, [1], (0, eval)(expr))));
      // deleteItem does not read them: the call goes ahead (and finds no item 999995).
      out.push(await window.settle(client.deleteItem(1268, 999995, (0, eval)(expr))));
    }
    return out;
  }, [h.emu.webhook, cases, bulkOnly]);
  cases.forEach(([expr, description], i) => {
    assertRejected(results[2 * i], { code: 'INVALID_ARGUMENT', kind: 'argument', description, method: METHOD, attempts: 0 }, `deleteItem ${expr}`);
    assertRejected(results[2 * i + 1], { code: 'INVALID_ARGUMENT', kind: 'argument', description, method: 'batch', attempts: 0 }, `deleteItems ${expr}`);
  });
  bulkOnly.forEach(([expr, description], i) => {
    assertRejected(results[2 * (cases.length + i)], { code: 'INVALID_ARGUMENT', kind: 'argument', description, method: 'batch' }, expr);
    assertRejected(results[2 * (cases.length + i) + 1], { code: 'NOT_FOUND' }, `deleteItem ignores ${expr}`);
  });
  assert.equal(restRequests.length, 2, 'only the two deleteItem calls with bulk-only options were sent');
  assert.equal((await h.emu.control.state()).requests.total, before + 2);
});

test('a missing argument rejects with INVALID_ARGUMENT before any request', async () => {
  const { page, restRequests } = await h.openPage();
  const before = (await h.emu.control.state()).requests.total;
  const results = await page.evaluate(async ([hook]) => {
    window.lib.configure({ webhookUrl: hook });
    return [await window.settle(window.lib.deleteItem()), await window.settle(window.lib.deleteItem(1268))];
  }, [h.emu.webhook]);
  for (const r of results) assertRejected(r, { code: 'INVALID_ARGUMENT', kind: 'argument', attempts: 0 }, 'missing argument');
  assert.equal((await h.emu.control.state()).requests.total, before);
  assert.equal(restRequests.length, 0);
});

test('a config field of the wrong type rejects INVALID_ARGUMENT (kind config) naming the field, before any request', async () => {
  const { page, restRequests } = await h.openPage();
  const before = (await h.emu.control.state()).requests.total;
  const hook = h.emu.webhook;
  const cases = [
    [{ webhookUrl: 42 }, 'webhookUrl must be a string'],
    [{ portal: ['https://a.b'], accessToken: 't' }, 'portal must be a string'],
    [{ portal: h.emu.url, accessToken: 7 }, 'accessToken must be a string'],
    [{ webhookUrl: hook, onTokenExpired: 'refresh' }, 'onTokenExpired must be a function'],
    [{ webhookUrl: hook, frame: 'yes' }, 'frame must be a boolean'],
    [{ webhookUrl: hook, timeoutMs: '5000' }, 'timeoutMs must be a number'],
    [{ webhookUrl: hook, maxRetries: null }, 'maxRetries must be a number'],
    [{ webhookUrl: hook, rateLimit: true }, 'rateLimit must be false or { burst, perSecond }'],
    [{ webhookUrl: hook, rateLimit: { burst: 5 } }, 'rateLimit must be false or { burst, perSecond }'],
    [{ webhookUrl: hook, rateLimit: { burst: '5', perSecond: 1 } }, 'rateLimit must be false or { burst, perSecond }'],
    [{ webhookUrl: hook, operatingLimit: true }, 'operatingLimit must be false or a number'],
    [{ webhookUrl: hook, operatingLimit: '420' }, 'operatingLimit must be false or a number'],
    // The first wrong field is the one named, in the documented order.
    [{ webhookUrl: 1, timeoutMs: 'x' }, 'webhookUrl must be a string'],
    [{ onTokenExpired: 1, webhookUrl: 1 }, 'onTokenExpired must be a function'],
    // Given types are fine, then the core checks the values.
    [{ webhookUrl: hook, rateLimit: { burst: 0, perSecond: 1 } },
      'rateLimit must be false or { burst: integer >= 1, perSecond: number > 0 }'],
    [{ webhookUrl: hook, operatingLimit: 0 }, 'operatingLimit must be false or a number of seconds above 0, at most 600'],
  ];
  const results = await page.evaluate(async ([cases, id]) => {
    const out = [];
    for (const [config] of cases) out.push(await window.settle(new window.lib.Client(config).deleteItem(1268, id)));
    return out;
  }, [cases, 999997]);
  // The same client's next call, deleteItems, gets its own error naming its own method; a config
  // whose getter throws is refused the same way, never with the getter's own error.
  const again = await page.evaluate(async (id) => {
    const client = new window.lib.Client({ webhookUrl: 42 });
    await window.settle(client.deleteItem(1268, id));
    const hostile = { get webhookUrl() { throw new Error('getter'); } };
    const fresh = new window.lib.Client({ webhookUrl: 42 });
    const both = await Promise.all([window.settle(fresh.deleteItems(1268, [id])), window.settle(fresh.deleteItem(1268, id))]);
    return [await window.settle(client.deleteItems(1268, [id])), await window.settle(new window.lib.Client(hostile).deleteItem(1268, id)),
      window.lib.B24Error.name, window.lib.Client.name, both.map((r) => r.error?.method)];
  }, 999997);
  assert.deepEqual(again[4], ['batch', METHOD], 'concurrent first calls each name their own method');
  assertRejected(again[0], { code: 'INVALID_ARGUMENT', kind: 'config', method: 'batch', description: 'webhookUrl must be a string' }, 'deleteItems');
  assertRejected(again[1], { code: 'INVALID_ARGUMENT', kind: 'config', method: METHOD, attempts: 0, description: 'webhookUrl must be a string' }, 'a throwing getter');
  assert.deepEqual(again.slice(2, 4), ['B24Error', 'Client'], 'the exported classes keep their names when minified');
  cases.forEach(([config, description], i) => {
    assertRejected(results[i], { code: 'INVALID_ARGUMENT', kind: 'config', description, attempts: 0, method: METHOD }, JSON.stringify(config));
  });
  assert.equal((await h.emu.control.state()).requests.total, before, 'the emulator saw no request');
  assert.equal(restRequests.length, 0);
});

test('the wasm is inside index.js: nothing else is fetched; init() twice and concurrently with calls compiles it once', async () => {
  const context = await h.newContext();
  // Counts the compiles before the page's scripts run (every way to compile goes through these).
  await context.addInitScript(() => {
    window.compiles = 0;
    for (const name of ['compile', 'instantiate', 'compileStreaming', 'instantiateStreaming']) {
      const original = WebAssembly[name];
      WebAssembly[name] = function (...args) { window.compiles++; return original.apply(this, args); };
    }
  });
  const page = await context.newPage();
  const fetched = [];
  page.on('request', (req) => {
    const { pathname } = new URL(req.url());
    if (!pathname.startsWith('/rest/')) fetched.push(pathname);
  });
  await page.goto(`http://localhost:${h.emu.port}/`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  assert.equal(await page.evaluate(() => window.compiles), 0, 'nothing is compiled before the first call');
  const [a, b] = await itemsOf();
  const r = await page.evaluate(async ([webhookUrl, t, a, b]) => {
    const { configure, deleteItem, Client, init } = window.lib;
    configure({ webhookUrl });
    const all = await Promise.all([init(), deleteItem(t, a).then((x) => x.id), init(), new Client({ webhookUrl }).deleteItem(t, b).then((x) => x.id)]);
    await init();
    return { all, compiles: window.compiles };
  }, [h.emu.webhook, SPA, a, b]);
  assert.deepEqual(r.all, [undefined, a, undefined, b]);
  assert.equal(r.compiles, 1, 'compiled once');
  const left = await itemsOf();
  assert.ok(!left.includes(a) && !left.includes(b), 'both items are gone');
  assert.deepEqual(fetched.filter((p) => p.startsWith('/pkg/')), ['/pkg/index.js'], 'the package is one file');
});

test('unconfigured: deleteItem rejects NOT_CONFIGURED (kind config) without a request', async () => {
  const { page, restRequests } = await h.openPage();
  const before = (await h.emu.control.state()).requests.total;
  const r = await page.evaluate(() => window.settle(window.lib.deleteItem(1268, 1)));
  assertRejected(r, { code: 'NOT_CONFIGURED', kind: 'config', retryable: false, status: 0, attempts: 0 }, 'unconfigured');
  // deleteItems rejects too (a config error found before any request), it does not resolve a report.
  const bulk = await page.evaluate(async () => [await window.settle(window.lib.deleteItems(1268, [1, 2])), await window.settle(window.lib.deleteItems(1268, []))]);
  for (const r of bulk) assertRejected(r, { code: 'NOT_CONFIGURED', kind: 'config', retryable: false, status: 0, attempts: 0, method: 'batch' }, 'unconfigured bulk');
  assert.equal((await h.emu.control.state()).requests.total, before);
  assert.equal(restRequests.length, 0);
  assert.ok((await itemsOf()).includes(1), 'nothing deleted');
});

test('every emulator error comes through the package typed', async () => {
  const { page } = await h.openPage();
  const items = await itemsOf();
  const cases = [
    { label: 'unknown type', hook: hooks.admin, t: 9999, id: items[0],
      want: { code: 'NOT_FOUND', status: 400, description: 'SPA not found', retryable: false } },
    { label: 'no delete permission (no_delete user)', hook: hooks.no_delete, t: SPA, id: items[1],
      want: { code: 'ACCESS_DENIED', status: 403, retryable: false } },
    { label: 'extranet user', hook: hooks.extranet, t: SPA, id: items[2],
      want: { code: 'allowed_only_intranet_user', status: 403, retryable: false } },
    { label: 'webhook without crm scope', hook: hooks.no_crm_scope, t: SPA, id: items[3],
      want: { code: 'insufficient_scope', status: 403, retryable: false } },
    { label: 'wrong webhook secret', hook: `${h.emu.url}/rest/1/notarealsecret42/`, t: SPA, id: items[4],
      want: { code: 'NO_AUTH_FOUND', status: 401, retryable: false } },
    { label: 'type 5 (invoice)', hook: hooks.admin, t: 5, id: items[5],
      want: { code: 'ENTITY_TYPE_NOT_SUPPORTED', status: 400, retryable: false } },
  ];
  for (const c of cases) {
    const before = await deleteCount();
    const r = await configureAndDelete(page, { webhookUrl: c.hook, rateLimit: false }, c.t, c.id);
    assertRejected(r, { ...c.want, kind: 'api', method: METHOD, attempts: 1 }, c.label);
    assert.equal(await deleteCount() - before, 1, `${c.label}: sent once, not retried`);
    assertNoSecret(r, [secretOf(c.hook)], [], c.label);
  }
  // ACCESS_DENIED for one item (control.deny) with the admin webhook.
  await h.emu.control.deny(SPA, [items[6]]);
  const denied = await configureAndDelete(page, { webhookUrl: hooks.admin }, SPA, items[6]);
  assertRejected(denied, { code: 'ACCESS_DENIED', status: 403, kind: 'api', retryable: false, method: METHOD }, 'denied item');
  const after = await itemsOf();
  for (const id of items.slice(0, 7)) assert.ok(after.includes(id), `item ${id} not deleted`);
  assert.deepEqual((await h.emu.control.state()).deleted, []);
});

test('OAuth: an extranet user is refused, an expired token without onTokenExpired rejects expired_token 401', async () => {
  const { page } = await h.openPage();
  const [a, b] = await itemsOf();
  const ext = await h.emu.control.token({ user: 3 });
  const r1 = await configureAndDelete(page, { portal: h.emu.url, accessToken: ext.access_token }, SPA, a);
  assertRejected(r1, { code: 'allowed_only_intranet_user', status: 403, kind: 'api', retryable: false, method: METHOD }, 'extranet token');
  assertNoSecret(r1, [ext.access_token], [], 'extranet token');

  const short = await h.emu.control.token({ lifetime: 1 });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const before = await deleteCount();
  const r2 = await configureAndDelete(page, { portal: h.emu.url, accessToken: short.access_token }, SPA, b);
  assertRejected(r2, { code: 'expired_token', status: 401, kind: 'api', method: METHOD, attempts: 1 }, 'expired token');
  assert.equal(await deleteCount() - before, 1, 'not retried');
  assertNoSecret(r2, [short.access_token], [], 'expired token');
  const items = await itemsOf();
  assert.ok(items.includes(a) && items.includes(b), 'nothing deleted');
});

test('the webhook secret appears in no error text and no console output, on every error path', async () => {
  const { page, consoleLines } = await h.openPage();
  const secret = secretOf(h.emu.webhook);
  const items = await itemsOf();
  const dead = await closedPort();
  const fast = { rateLimit: false, maxRetries: 0 };

  // NOT_FOUND
  const notFound = await configureAndDelete(page, { webhookUrl: h.emu.webhook, ...fast }, SPA, 999999);
  assertRejected(notFound, { code: 'NOT_FOUND', status: 400, kind: 'api' }, 'NOT_FOUND');
  assertNoSecret(notFound, [secret], consoleLines, 'NOT_FOUND');

  // NO_AUTH_FOUND: a wrong secret must not leak either.
  const wrong = 'wr0ngS3cretAbCdE';
  const noAuth = await configureAndDelete(page, { webhookUrl: `${h.emu.url}/rest/1/${wrong}/`, ...fast }, SPA, items[0]);
  assertRejected(noAuth, { code: 'NO_AUTH_FOUND', status: 401, kind: 'api' }, 'NO_AUTH_FOUND');
  assertNoSecret(noAuth, [wrong], consoleLines, 'NO_AUTH_FOUND');

  // NETWORK_ERROR: nothing listens on the port.
  const netHook = `http://127.0.0.1:${dead}/rest/1/${secret}/`;
  const network = await configureAndDelete(page, { webhookUrl: netHook, ...fast }, SPA, items[0]);
  assertRejected(network, { code: 'NETWORK_ERROR', status: 0, kind: 'network', retryable: true, method: METHOD, attempts: 1 }, 'NETWORK_ERROR');
  assertNoSecret(network, [secret], consoleLines, 'NETWORK_ERROR');

  // BAD_RESPONSE: an HTML 502 page, an empty body, truncated JSON.
  // (runtime.js classifies the body, the wasm words the reason.)
  for (const [fault, status, description] of [
    [{ kind: 'html', status: 502 }, 502, 'the answer is an HTML page, not JSON'],
    [{ kind: 'empty' }, 200, 'the answer is empty'],
    [{ kind: 'truncated' }, 200, 'the answer is not valid JSON'],
  ]) {
    await h.emu.control.faults({ method: METHOD, fault });
    const r = await configureAndDelete(page, { webhookUrl: h.emu.webhook, ...fast }, SPA, 999998);
    assertRejected(r, { code: 'BAD_RESPONSE', status, description, kind: 'response', method: METHOD, attempts: 1 }, `BAD_RESPONSE ${fault.kind}`);
    assertNoSecret(r, [secret], consoleLines, `BAD_RESPONSE ${fault.kind}`);
  }

  // An invalid config: http: to a non-loopback host.
  const badCfg = await configureAndDelete(page, { webhookUrl: `http://acme.example.com/rest/1/${secret}/` }, SPA, items[0]);
  assertRejected(badCfg, { code: 'INVALID_ARGUMENT', kind: 'config', attempts: 0 }, 'invalid config');
  assertNoSecret(badCfg, [secret], consoleLines, 'invalid config');
  const badCfg2 = await clientDelete(page, { webhookUrl: `http://acme.example.com/rest/1/${secret}/` }, SPA, items[0]);
  assertRejected(badCfg2, { code: 'INVALID_ARGUMENT', kind: 'config', attempts: 0 }, 'invalid config (Client)');
  assertNoSecret(badCfg2, [secret], consoleLines, 'invalid config (Client)');
  const malformed = await configureAndDelete(page, { webhookUrl: `https://acme.example.com/rest/${secret}` }, SPA, items[0]);
  assertRejected(malformed, { code: 'INVALID_ARGUMENT', kind: 'config' }, 'malformed webhook');
  assertNoSecret(malformed, [secret], consoleLines, 'malformed webhook');
  // Hosts that pass the shape checks but that the browser's URL parser refuses (fetch would
  // throw "Failed to parse URL from <the URL with its secret>"): refused as config, secret-free.
  for (const host of ['1.2.3.4.5', '999.1.1.1', '[:::]', '0x7g.1.1.1.1']) {
    for (const config of [{ webhookUrl: `https://${host}/rest/1/${secret}/` }, { portal: `https://${host}`, accessToken: secret }]) {
      const r = await clientDelete(page, config, SPA, items[0]);
      assertRejected(r, { code: 'INVALID_ARGUMENT', kind: 'config', method: METHOD, attempts: 0 }, `host ${host}`);
      assertNoSecret(r, [secret], consoleLines, `host ${host}`);
    }
  }

  // TIMEOUT: the emulator never answers.
  await h.emu.control.faults({ method: METHOD, fault: { kind: 'hang' } });
  const timeout = await configureAndDelete(page, { webhookUrl: h.emu.webhook, ...fast, timeoutMs: 500 }, SPA, items[0]);
  await h.emu.control.clearFaults();
  assertRejected(timeout, { code: 'TIMEOUT', status: 0, kind: 'timeout', retryable: true, method: METHOD, attempts: 1 }, 'TIMEOUT');
  assert.ok(timeout.ms < 2000, `TIMEOUT took ${timeout.ms} ms`);
  assertNoSecret(timeout, [secret], consoleLines, 'TIMEOUT');

  assert.ok((await itemsOf()).includes(items[0]), 'nothing deleted');
});

test('an OAuth access token appears in no error text and no console output, on every error path', async () => {
  const { page, consoleLines } = await h.openPage();
  const items = await itemsOf();
  const dead = await closedPort();
  const fast = { rateLimit: false, maxRetries: 0 };
  const { access_token: token } = await h.emu.control.token();

  const notFound = await configureAndDelete(page, { portal: h.emu.url, accessToken: token, ...fast }, SPA, 999999);
  assertRejected(notFound, { code: 'NOT_FOUND', status: 400, kind: 'api' }, 'NOT_FOUND');
  assertNoSecret(notFound, [token], consoleLines, 'NOT_FOUND');

  const unknownToken = 'f00dfeedcafebabe0123456789abcdef';
  const noAuth = await configureAndDelete(page, { portal: h.emu.url, accessToken: unknownToken, ...fast }, SPA, items[0]);
  assertRejected(noAuth, { code: 'NO_AUTH_FOUND', status: 401, kind: 'api' }, 'unknown token');
  assertNoSecret(noAuth, [unknownToken], consoleLines, 'unknown token');

  const network = await configureAndDelete(page, { portal: `http://127.0.0.1:${dead}`, accessToken: token, ...fast }, SPA, items[0]);
  assertRejected(network, { code: 'NETWORK_ERROR', kind: 'network' }, 'NETWORK_ERROR');
  assertNoSecret(network, [token], consoleLines, 'NETWORK_ERROR');

  for (const fault of [{ kind: 'html', status: 502 }, { kind: 'empty' }, { kind: 'truncated' }]) {
    await h.emu.control.faults({ method: METHOD, fault });
    const r = await configureAndDelete(page, { portal: h.emu.url, accessToken: token, ...fast }, SPA, 999998);
    assertRejected(r, { code: 'BAD_RESPONSE', kind: 'response' }, `BAD_RESPONSE ${fault.kind}`);
    assertNoSecret(r, [token], consoleLines, `BAD_RESPONSE ${fault.kind}`);
  }

  const badCfg = await configureAndDelete(page, { portal: 'http://acme.example.com', accessToken: token }, SPA, items[0]);
  assertRejected(badCfg, { code: 'INVALID_ARGUMENT', kind: 'config' }, 'invalid config');
  assertNoSecret(badCfg, [token], consoleLines, 'invalid config');
  const bothCfg = await configureAndDelete(page, { portal: h.emu.url, accessToken: token, webhookUrl: h.emu.webhook }, SPA, items[0]);
  assertRejected(bothCfg, { code: 'INVALID_ARGUMENT', kind: 'config' }, 'webhook and OAuth at once');
  assertNoSecret(bothCfg, [token, secretOf(h.emu.webhook)], consoleLines, 'webhook and OAuth at once');

  await h.emu.control.faults({ method: METHOD, fault: { kind: 'hang' } });
  const timeout = await configureAndDelete(page, { portal: h.emu.url, accessToken: token, ...fast, timeoutMs: 500 }, SPA, items[0]);
  await h.emu.control.clearFaults();
  assertRejected(timeout, { code: 'TIMEOUT', kind: 'timeout' }, 'TIMEOUT');
  assertNoSecret(timeout, [token], consoleLines, 'TIMEOUT');

  const short = await h.emu.control.token({ lifetime: 1 });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const expired = await configureAndDelete(page, { portal: h.emu.url, accessToken: short.access_token, ...fast }, SPA, items[0]);
  assertRejected(expired, { code: 'expired_token', status: 401 }, 'expired_token');
  assertNoSecret(expired, [short.access_token], consoleLines, 'expired_token');

  assert.ok((await itemsOf()).includes(items[0]), 'nothing deleted');
});

test('https rule: http: is accepted for loopback hosts only', async () => {
  const { page } = await h.openPage();
  const [a] = await itemsOf();
  const secret = secretOf(h.emu.webhook);
  const fast = { rateLimit: false, maxRetries: 0, timeoutMs: 3000 };

  // localhost: accepted, the portal answers (a wrong secret → NO_AUTH_FOUND from the emulator).
  const x = await configureAndDelete(page, { webhookUrl: `http://localhost:${h.emu.port}/rest/1/x/`, ...fast }, SPA, a);
  assertRejected(x, { code: 'NO_AUTH_FOUND', status: 401, kind: 'api' }, 'http://localhost with a wrong secret');
  // localhost with the real secret deletes (same origin as the page).
  const ok = await configureAndDelete(page, { webhookUrl: `http://localhost:${h.emu.port}/rest/1/${secret}`, ...fast }, SPA, a);
  assert.equal(ok.ok, true, `http://localhost webhook (no trailing slash): ${JSON.stringify(ok.error)}`);
  assert.ok(!(await itemsOf()).includes(a));

  // Other loopback forms are accepted too (nothing listens there: a network error, not a config error).
  const dead = await closedPort();
  for (const host of [`127.0.0.1:${dead}`, `127.1.2.3:${dead}`, `[::1]:${dead}`, `localhost:${dead}`]) {
    const r = await configureAndDelete(page, { webhookUrl: `http://${host}/rest/1/${secret}/`, ...fast }, SPA, 1);
    assertRejected(r, { code: 'NETWORK_ERROR', kind: 'network' }, `http://${host}`);
  }

  // Non-loopback http: refused before any request.
  const before = (await h.emu.control.state()).requests.total;
  for (const url of ['http://acme.bitrix24.com/rest/1/abc/', 'http://localhost.example.com/rest/1/abc/',
    'http://128.0.0.1/rest/1/abc/', 'http://10.0.0.1/rest/1/abc/', 'http://127.0.0.1.example.com/rest/1/abc/',
    'ftp://localhost/rest/1/abc/', 'not a url']) {
    const r = await configureAndDelete(page, { webhookUrl: url }, SPA, 1);
    assertRejected(r, { code: 'INVALID_ARGUMENT', kind: 'config', attempts: 0 }, url);
  }
  const r = await configureAndDelete(page, { portal: 'http://acme.bitrix24.com', accessToken: 'tokentokentoken' }, SPA, 1);
  assertRejected(r, { code: 'INVALID_ARGUMENT', kind: 'config' }, 'OAuth portal over http');
  assert.equal((await h.emu.control.state()).requests.total, before);
});
