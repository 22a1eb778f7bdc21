// Issue 6's browser tests for `deleteItems` (bulk delete over `batch`): the built package (pkg/) in
// headless Chromium against the emulator, with missing and forbidden items and injected batch faults.
// Every test checks the report against the emulator's final state: an exact partition of the
// distinct input ids, `deleted` = what the emulator deleted, nothing deleted reported as failed.
//
//   node --test --test-concurrency=1 tests/js/bulk.test.mjs
//
// Env (set by `cargo xtask test`; defaults for a manual run): B24_REPO, B24_PKG_DIR, B24_EMULATOR_BIN.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pkgDir } from './support/browser.mjs';
import { useEmulatorAndBrowser } from './support/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pagesDir = path.join(here, 'pages');

const SPA = 1268;
const DELETE = 'crm.item.delete';
const BATCH = 'batch';
const BATCH_SIZE = 50;
// A fast bucket, so 200 batches take seconds; the client paces with the same numbers.
const BURST = 50;
const DRAIN = 50;
const RATE = { burst: BURST, perSecond: DRAIN };
const STATIC = ['--static', `/pkg=${pkgDir}`, '--static', `/=${pagesDir}`];

/** No seeded items: each test seeds its own with control.items and uses the ids it gets back. */
const h = useEmulatorAndBrowser(['--burst', String(BURST), '--drain', String(DRAIN), '--items', '0', ...STATIC]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));


/**
 * `new Client(config).deleteItems(t, ids, options)` in the page, settled into plain data:
 * `{ok, report: {deleted, notFound, failed: [{id, error (serialized), causeIsReason}]}, progress, ms}`.
 * `run` may ask for: haltOnError, timeoutMs, an AbortController (`abort`: {atDone, delayMs}; the
 * reason is an Error made in the page), a throwing onProgress (`throwInProgress`), no onProgress
 * (`noProgress`), and the module-level `configure` + `deleteItems` instead of a Client (`viaDefault`).
 */
function bulkDelete(page, config, t, ids, run = {}) {
  return page.evaluate(async ([config, t, ids, run]) => {
    const reason = new Error('the user pressed stop');
    const ac = new AbortController();
    const progress = [];
    let abortedAt = null;
    const abort = () => {
      if (!ac.signal.aborted) {
        abortedAt = performance.now();
        ac.abort(reason);
      }
    };
    const options = {};
    if (!run.noProgress) {
      options.onProgress = (p) => {
        progress.push({ done: p.done, total: p.total, keys: Object.keys(p).sort() });
        if (run.abort && p.done >= run.abort.atDone) {
          if (run.abort.delayMs) setTimeout(abort, run.abort.delayMs); else abort();
        }
        if (run.throwInProgress) throw new Error('a broken progress bar');
      };
    }
    if (run.haltOnError !== undefined) options.haltOnError = run.haltOnError;
    if (run.timeoutMs !== undefined) options.timeoutMs = run.timeoutMs;
    if (run.abort) options.signal = ac.signal;
    let call;
    if (run.viaDefault) {
      window.lib.configure(config);
      call = () => window.lib.deleteItems(t, ids, options);
    } else {
      const client = new window.lib.Client(config);
      call = () => client.deleteItems(t, ids, options);
    }
    const t0 = performance.now();
    let out;
    try {
      const r = await call();
      const settledAt = performance.now();
      out = {
        ok: true,
        report: {
          deleted: r.deleted,
          notFound: r.notFound,
          failed: r.failed.map((f) => ({
            id: f.id,
            error: window.serializeError(f.error),
            causeIsReason: f.error.cause === reason,
          })),
        },
        keys: Object.keys(r).sort(),
        afterAbortMs: abortedAt === null ? null : settledAt - abortedAt,
      };
    } catch (e) {
      out = { ok: false, error: window.serializeError(e) };
    }
    out.ms = performance.now() - t0;
    out.progress = progress;
    return out;
  }, [config, t, ids, run]);
}

async function state() {
  return h.emu.control.state();
}

async function items() {
  return (await state()).items[String(SPA)] ?? [];
}

/** The ids of `SPA` the emulator deleted, in order. */
function deletedIds(s) {
  return s.deleted.filter((d) => d.entityTypeId === SPA).map((d) => d.id);
}

const sorted = (xs) => [...xs].sort((a, b) => a - b);

/** The report accounts for every distinct id exactly once, and for nothing else. */
function assertPartition(report, distinct, label) {
  const all = [...report.deleted, ...report.notFound, ...report.failed.map((f) => f.id)];
  for (const id of all) assert.equal(typeof id, 'number', `${label}: ids are numbers, got ${JSON.stringify(id)}`);
  const seen = new Set();
  const twice = all.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
  assert.deepEqual(twice.slice(0, 10), [], `${label}: ${twice.length} ids reported more than once`);
  const expected = new Set(distinct);
  const extra = all.filter((id) => !expected.has(id));
  assert.deepEqual(extra.slice(0, 10), [], `${label}: ${extra.length} ids reported that were not asked for`);
  const missing = distinct.filter((id) => !seen.has(id));
  assert.deepEqual(missing.slice(0, 10), [], `${label}: ${missing.length} ids missing from the report`);
  assert.equal(all.length, distinct.length, `${label}: report size`);
}

/** Each batch request's body, parsed, with its ids in key order (k0, k1, ...). */
function batchBodies(restRequests) {
  return restRequests
    .filter((r) => new URL(r.url).pathname.endsWith('/batch'))
    .map((r) => {
      const body = JSON.parse(r.body);
      const keys = Object.keys(body.cmd);
      const ids = keys.map((k, i) => {
        assert.equal(k, `k${i}`, 'commands are keyed k0..kN in order');
        const m = body.cmd[k].match(/^crm\.item\.delete\?entityTypeId=(\d+)&id=(\d+)$/);
        assert.ok(m, `command ${k}: ${body.cmd[k]}`);
        assert.equal(Number(m[1]), SPA);
        return Number(m[2]);
      });
      return { ...r, raw: r.body, body, ids };
    });
}

/** The failed entries as a map id -> serialized error. */
function failedById(report) {
  return new Map(report.failed.map((f) => [f.id, f]));
}

function progressChecks(progress, total, label) {
  assert.ok(progress.length >= 1, `${label}: onProgress was called`);
  let last = -1;
  for (const p of progress) {
    assert.deepEqual(p.keys, ['done', 'total'], `${label}: progress shape`);
    assert.equal(p.total, total, `${label}: progress total`);
    assert.ok(p.done >= last, `${label}: progress is monotonic (${last} then ${p.done})`);
    assert.ok(p.done <= total, `${label}: done <= total`);
    last = p.done;
  }
  assert.deepEqual(progress.at(-1), { done: total, total, keys: ['done', 'total'] }, `${label}: progress ends at total`);
}

// ---- 10,000 ids: missing, forbidden, duplicates, and batch faults ------------------------------

const FAULT_503 = { kind: 'error', status: 503, error: 'QUERY_LIMIT_EXCEEDED' };
/** A pass-through fault: lets a request through untouched, to place the real faults on given batches. */
const PASS = { kind: 'delay', ms: 0 };

test('10,000 ids with missing, forbidden and duplicate ids and 503 / drop / hang / truncated / HTML batch faults: the report matches the emulator exactly', async () => {
  const N_SEEDED = 9900;
  const N_MISSING = 100;
  const seeded = (await h.emu.control.items(SPA, N_SEEDED)).ids;
  assert.equal(seeded.length, N_SEEDED);
  const before = await state();
  const existing = new Set(before.items[String(SPA)]);
  const maxExisting = Math.max(...existing);
  const missing = Array.from({ length: N_MISSING }, (_, i) => maxExisting + 100_000 + i * 7);
  for (const id of missing) assert.ok(!existing.has(id));

  // The distinct ids in send order: batches 150..199 carry two missing ids each, so none of them
  // shares a batch with an unknown outcome (where a re-sent NOT_FOUND rightly counts as deleted).
  const distinct = [];
  {
    let s = 0;
    let m = 0;
    for (let b = 0; b < 200; b++) {
      for (let k = 0; k < BATCH_SIZE; k++) {
        if (b >= 150 && (k === 10 || k === 40)) distinct.push(missing[m++]); else distinct.push(seeded[s++]);
      }
    }
    assert.equal(s, N_SEEDED);
    assert.equal(m, N_MISSING);
  }
  const total = distinct.length;
  assert.equal(total, 10_000);
  // 300 forbidden items, spread over every batch (fault batches included).
  const denied = seeded.filter((_, i) => i % 33 === 16);
  assert.equal(denied.length, 300);
  await h.emu.control.deny(SPA, denied);

  // The input: some ids as strings, duplicates right after (in the other form) and far later.
  const input = [];
  let dups = 0;
  let strings = 0;
  distinct.forEach((id, i) => {
    const asString = i % 7 === 3;
    if (asString) strings++;
    input.push(asString ? String(id) : id);
    if (i % 97 === 5) { input.push(asString ? id : String(id)); dups++; }
    if (i % 501 === 250) { input.push(distinct[Math.floor(i / 2)]); dups++; }
  });
  input.push(...distinct.slice(0, 20).map(String));
  dups += 20;
  assert.equal(input.length, total + dups);

  // Faults per batch (by index), each followed by the request that goes through. The queue is
  // consumed by batch requests in order, so pass-through entries fill the batches in between.
  const plan = new Map([
    [3, [FAULT_503]],
    [10, [FAULT_503, FAULT_503]],
    [30, [{ kind: 'drop_after_apply' }]],
    [60, [{ kind: 'hang' }]],
    [90, [{ kind: 'truncated', status: 200 }]],
    [120, [{ kind: 'html', status: 502 }]],
    [170, [FAULT_503]], // a batch with missing ids: a 503 is a known "not executed", so NOT_FOUND stays notFound
  ]);
  const unknownOutcome = new Set([30, 60, 90, 120]);
  const queue = [];
  const lastPlanned = Math.max(...plan.keys());
  for (let b = 0; b <= lastPlanned; b++) {
    for (const fault of plan.get(b) ?? []) queue.push(fault);
    queue.push(PASS);
  }
  // Send the queue with runs of pass-throughs merged.
  for (let i = 0; i < queue.length;) {
    let j = i + 1;
    while (j < queue.length && queue[j] === queue[i] && queue[i] === PASS) j++;
    await h.emu.control.faults({ method: BATCH, count: j - i, fault: queue[i] });
    i = j;
  }
  const injected503 = queue.filter((f) => f === FAULT_503).length;
  const retries = queue.length - (lastPlanned + 1);

  const { page, restRequests } = await h.openPage({ init: true });
  // Each batch gets the client's 14 s: a hung attempt times out at max(14/2, min(14, 10)) = 10 s
  // and the retry has the remaining 4 s.
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 14000 }, SPA, input);
  await h.emu.control.clearFaults();
  assert.equal(r.ok, true, `deleteItems rejected: ${JSON.stringify(r.error)}`);
  const { report } = r;
  assert.deepEqual(r.keys, ['deleted', 'failed', 'notFound']);

  const after = await state();
  const batchRequests = after.requests.byMethod[BATCH] ?? 0;
  const all503 = after.rejected.QUERY_LIMIT_EXCEEDED ?? 0;
  const figures = `bulk: ${total} distinct ids (${input.length} given, ${strings} as strings), `
    + `${report.deleted.length} deleted, ${report.notFound.length} not found, ${report.failed.length} failed; `
    + `${(r.ms / 1000).toFixed(2)} s, ${batchRequests} batch requests (${Math.ceil(total / BATCH_SIZE)} batches), `
    + `${all503} x 503 (${injected503} injected)`;
  console.log(figures);

  // An exact partition of the distinct input ids.
  assertPartition(report, distinct, '10k');

  // deleted = exactly the input ids the emulator deleted, each once.
  const emuDeleted = deletedIds(after);
  assert.equal(new Set(emuDeleted).size, emuDeleted.length, 'the emulator deleted no item twice');
  assert.deepEqual(sorted(report.deleted), sorted(emuDeleted), 'deleted = the emulator\'s deletions');
  // notFound: only never-existing ids (here all of them: none shared a batch with an unknown outcome).
  const missingSet = new Set(missing);
  for (const id of report.notFound) assert.ok(missingSet.has(id), `notFound ${id} is a never-existing id`);
  assert.deepEqual(sorted(report.notFound), sorted(missing), 'every missing id is notFound');
  // failed: exactly the forbidden ids, each with the command's own ACCESS_DENIED.
  const failed = failedById(report);
  assert.deepEqual(sorted(failed.keys()), sorted(denied), 'failed = the denied ids');
  for (const id of denied) {
    const f = failed.get(id);
    assert.equal(f.error.isB24, true);
    assert.equal(f.error.code, 'ACCESS_DENIED', `id ${id}: ${JSON.stringify(f.error)}`);
    assert.equal(f.error.method, DELETE, `id ${id}: method`);
    // (A command inside a batch has no HTTP status of its own: the batch answered 200.)
    assert.equal(typeof f.error.status, 'number', `id ${id}: status`);
    assert.equal(f.error.kind, 'api');
    assert.equal(f.error.retryable, false);
  }
  const deletedSet = new Set(report.deleted);
  for (const id of failed.keys()) assert.ok(!deletedSet.has(id), `failed id ${id} is not deleted`);

  // The emulator's final items: nothing reported deleted is left; every forbidden item is.
  const left = after.items[String(SPA)];
  const leftSet = new Set(left);
  for (const id of report.deleted) assert.ok(!leftSet.has(id), `deleted id ${id} still present`);
  for (const id of denied) assert.ok(leftSet.has(id), `denied id ${id} was deleted`);
  assert.deepEqual(sorted(left), sorted(seeded.filter((id) => !deletedSet.has(id))), 'left = seeded - deleted');

  // Progress: after each batch, monotonic, ending at {done: total, total}.
  progressChecks(r.progress, total, '10k');
  assert.equal(r.progress.length, Math.ceil(total / BATCH_SIZE), 'one onProgress per batch');

  // The wire: batches of 50 in first-seen order; a batch is re-sent whole only after a failed
  // attempt, exactly as planned; no command with a known result is sent again.
  const bodies = batchBodies(restRequests);
  assert.equal(bodies.length, batchRequests, 'the page sent what the emulator counted');
  assert.equal(batchRequests, Math.ceil(total / BATCH_SIZE) + retries, 'batch requests: one per batch + one per planned fault');
  assert.equal(all503, injected503, 'no 503 from the bucket: the client paces at the portal\'s rate');
  const chunks = [];
  const sentIds = [];
  for (const b of bodies) {
    assert.equal(b.body.halt, 0, 'halt: 0');
    assert.ok(b.ids.length >= 1 && b.ids.length <= BATCH_SIZE);
    const prev = chunks.at(-1);
    if (prev && prev.ids.join() === b.ids.join()) prev.sends += 1; else chunks.push({ ids: b.ids, sends: 1 });
  }
  assert.equal(chunks.length, total / BATCH_SIZE);
  chunks.forEach((c, i) => {
    assert.deepEqual(c.ids, distinct.slice(i * BATCH_SIZE, (i + 1) * BATCH_SIZE), `batch ${i}: its ids`);
    assert.equal(c.sends, 1 + (plan.get(i)?.length ?? 0), `batch ${i}: sends`);
    sentIds.push(...c.ids);
  });
  assert.equal(new Set(sentIds).size, total, 'each id in exactly one batch');
  // Items of the unknown-outcome batches were deleted by the first attempt (drop, truncated) or
  // the retry (hang, HTML): either way reported deleted, none failed.
  for (const b of unknownOutcome) {
    for (const id of chunks[b].ids) {
      if (!denied.includes(id)) assert.ok(deletedSet.has(id), `batch ${b}: id ${id} deleted`);
    }
  }
  assert.ok(r.ms < 60000, `took ${r.ms} ms`);
});

// ---- haltOnError ------------------------------------------------------------------------------

test('haltOnError: a denied id in the 3rd batch stops the run: 3 requests with "halt":1, later ids ABORTED and kept', async () => {
  const ids = (await h.emu.control.items(SPA, 400)).ids;
  const culprit = ids[2 * BATCH_SIZE + 17];
  await h.emu.control.deny(SPA, [culprit]);
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE }, SPA, ids, { haltOnError: true });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  const { report } = r;
  assertPartition(report, ids, 'halt');
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 3, 'three batch requests');
  const bodies = batchBodies(restRequests);
  assert.equal(bodies.length, 3);
  for (const b of bodies) assert.match(b.raw, /"halt":1[,}]/, 'the wire body says "halt":1');

  const haltAt = ids.indexOf(culprit);
  const before = ids.slice(0, haltAt);
  const afterHalt = ids.slice(haltAt + 1);
  assert.deepEqual(sorted(report.deleted), sorted(before), 'everything before the denied id is deleted');
  assert.deepEqual(sorted(report.deleted), sorted(deletedIds(s)), 'deleted = the emulator\'s deletions');
  assert.deepEqual(report.notFound, []);
  const failed = failedById(report);
  assert.equal(failed.get(culprit).error.code, 'ACCESS_DENIED');
  assert.equal(failed.get(culprit).error.method, DELETE);
  const left = new Set(await items());
  for (const id of afterHalt) {
    const f = failed.get(id);
    assert.ok(f, `id ${id} after the halt is failed`);
    assert.equal(f.error.code, 'ABORTED', `id ${id}: ${JSON.stringify(f.error)}`);
    assert.equal(f.error.kind, 'aborted');
    assert.equal(f.error.isB24, true);
    assert.ok(left.has(id), `id ${id} after the halt is still in the emulator`);
  }
  assert.equal(failed.size, afterHalt.length + 1);
  for (const id of before) assert.ok(!left.has(id), `id ${id} is gone`);
  progressChecks(r.progress, ids.length, 'halt');
});

// ---- abort ------------------------------------------------------------------------------------

test('abort from onProgress after the 2nd batch: 2 requests, the rest ABORTED with cause === the reason, nothing sent after', async () => {
  const ids = (await h.emu.control.items(SPA, 300)).ids;
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE }, SPA, ids, { abort: { atDone: 2 * BATCH_SIZE } });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  const { report } = r;
  assertPartition(report, ids, 'abort');
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 2, 'batch requests');
  const done = ids.slice(0, 2 * BATCH_SIZE);
  const notSent = ids.slice(2 * BATCH_SIZE);
  assert.deepEqual(sorted(report.deleted), sorted(done));
  assert.deepEqual(sorted(report.deleted), sorted(deletedIds(s)), 'deleted = the emulator\'s deletions');
  const left = new Set(await items());
  for (const id of report.deleted) assert.ok(!left.has(id), `deleted id ${id} is gone`);
  const failed = failedById(report);
  assert.equal(failed.size, notSent.length);
  for (const id of notSent) {
    const f = failed.get(id);
    assert.ok(f, `id ${id} never sent is failed`);
    assert.equal(f.error.code, 'ABORTED', `id ${id}: ${JSON.stringify(f.error)}`);
    assert.equal(f.error.kind, 'aborted');
    assert.equal(f.error.hasCause, true);
    assert.equal(f.causeIsReason, true, `id ${id}: cause === the abort reason`);
    assert.ok(left.has(id), `id ${id} still present`);
  }
  progressChecks(r.progress, ids.length, 'abort');
  await sleep(1500);
  assert.equal((await state()).requests.byMethod[BATCH], 2, 'no request after the abort');
});

test('abort while the 3rd batch is in flight (held by a delay): settles at once; in-flight and unsent ids ABORTED, nothing sent after', async () => {
  const ids = (await h.emu.control.items(SPA, 300)).ids;
  await h.emu.control.faults({ method: BATCH, count: 2, fault: PASS });
  await h.emu.control.faults({ method: BATCH, fault: { kind: 'delay', ms: 3000 } });
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 20000 }, SPA, ids,
    { abort: { atDone: 2 * BATCH_SIZE, delayMs: 500 } });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  const { report } = r;
  assertPartition(report, ids, 'in-flight abort');
  assert.ok(r.afterAbortMs !== null && r.afterAbortMs <= 200, `settled ${r.afterAbortMs} ms after the abort`);
  assert.equal(restRequests.length, 3, 'three batch requests sent');
  const inFlight = ids.slice(2 * BATCH_SIZE, 3 * BATCH_SIZE);
  const notSent = ids.slice(3 * BATCH_SIZE);
  await sleep(3500); // past the delay: the emulator may or may not run the abandoned batch
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 3, 'no request after the abort');
  assert.deepEqual(sorted(report.deleted), sorted(ids.slice(0, 2 * BATCH_SIZE)));
  const left = new Set(s.items[String(SPA)]);
  for (const id of report.deleted) assert.ok(!left.has(id), `deleted id ${id} is gone`);
  const failed = failedById(report);
  for (const id of [...inFlight, ...notSent]) {
    const f = failed.get(id);
    assert.ok(f, `id ${id} is failed`);
    assert.equal(f.error.code, 'ABORTED', `id ${id}: ${JSON.stringify(f.error)}`);
    assert.equal(f.causeIsReason, true, `id ${id}: cause === the abort reason`);
  }
  // The abandoned batch's own error is the whole request's; the ids never sent are kept.
  for (const id of inFlight) assert.equal(failed.get(id).error.method, BATCH, `in-flight id ${id}: method`);
  for (const id of notSent) assert.ok(left.has(id), `never-sent id ${id} still present`);
  progressChecks(r.progress, ids.length, 'in-flight abort');
});

// ---- arguments --------------------------------------------------------------------------------

test('bad input rejects INVALID_ARGUMENT before any request; an empty list resolves an empty report with one progress call', async () => {
  const { page } = await h.openPage({ init: true });
  const r = await page.evaluate(async ([hook, t]) => {
    const client = new window.lib.Client({ webhookUrl: hook, rateLimit: false });
    const progress = [];
    const out = {
      badId: await window.settle(client.deleteItems(t, [1, 2, 'x'])),
      notIterable: await window.settle(client.deleteItems(t, 5)),
      badType: await window.settle(client.deleteItems(0, [1])),
      zeroId: await window.settle(client.deleteItems(t, [1, 0])),
      fraction: await window.settle(client.deleteItems(t, [1.5])),
      aString: await window.settle(client.deleteItems(t, '12')),
      badProgress: await window.settle(client.deleteItems(t, [1], { onProgress: 7 })),
      empty: await window.settle(client.deleteItems(t, [], { onProgress: (p) => progress.push({ ...p }) })),
      emptySet: await window.settle(client.deleteItems(t, new Set())),
    };
    out.progress = progress;
    return out;
  }, [h.emu.webhook, SPA]);
  for (const k of ['badId', 'notIterable', 'badType', 'zeroId', 'fraction', 'aString', 'badProgress']) {
    assert.equal(r[k].ok, false, `${k}: expected a rejection, got ${JSON.stringify(r[k].value)}`);
    assert.equal(r[k].error.isB24, true, `${k}: a B24Error`);
    assert.equal(r[k].error.code, 'INVALID_ARGUMENT', `${k}: ${JSON.stringify(r[k].error)}`);
    assert.equal(r[k].error.kind, 'argument', k);
  }
  assert.equal(r.empty.ok, true, JSON.stringify(r.empty.error));
  assert.deepEqual(r.empty.value, { deleted: [], notFound: [], failed: [] });
  assert.deepEqual(r.progress, [{ done: 0, total: 0 }]);
  assert.deepEqual(r.emptySet.value, { deleted: [], notFound: [], failed: [] });
  assert.equal((await state()).requests.total, 0, 'no request at all');
});

// ---- a throwing onProgress -------------------------------------------------------------------

test('a throwing onProgress does not break the run (module-level configure + deleteItems): all deleted', async () => {
  const ids = (await h.emu.control.items(SPA, 130)).ids;
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE }, SPA, ids, { throwInProgress: true, viaDefault: true });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'throwing onProgress');
  assert.deepEqual(sorted(r.report.deleted), sorted(ids));
  assert.deepEqual(r.report.failed, []);
  assert.equal(r.progress.length, 3, 'onProgress still called after each batch');
  progressChecks(r.progress, ids.length, 'throwing onProgress');
  const left = new Set(await items());
  for (const id of ids) assert.ok(!left.has(id), `id ${id} gone`);
  assert.equal((await state()).requests.byMethod[BATCH], 3);
});

// ---- OAuth ------------------------------------------------------------------------------------

test('OAuth: 120 ids in 3 batches to {portal}/rest/batch, each with "auth"', async () => {
  const ids = (await h.emu.control.items(SPA, 120)).ids;
  const token = (await h.emu.control.token()).access_token;
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { portal: h.emu.url, accessToken: token, rateLimit: RATE }, SPA, ids);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'oauth');
  assert.deepEqual(sorted(r.report.deleted), sorted(ids));
  const s = await state();
  assert.deepEqual(sorted(deletedIds(s)), sorted(ids));
  assert.equal(s.requests.byMethod[BATCH], 3);
  const bodies = batchBodies(restRequests);
  assert.deepEqual(bodies.map((b) => b.ids.length), [50, 50, 20]);
  for (const b of bodies) {
    assert.equal(b.url, `${h.emu.url}/rest/batch`);
    assert.equal(b.body.auth, token, 'the batch body carries the token');
  }
  assert.deepEqual(bodies.flatMap((b) => b.ids), ids);
});

// ---- a whole-request failure -----------------------------------------------------------------

test('a wrong webhook secret: every id failed NO_AUTH_FOUND with method "batch", one request', async () => {
  const ids = (await h.emu.control.items(SPA, 120)).ids;
  const wrong = h.emu.webhook.replace(/\/rest\/1\/[^/]+\//, '/rest/1/wrongsecret00000/');
  assert.notEqual(wrong, h.emu.webhook);
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: wrong, rateLimit: RATE }, SPA, ids);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'wrong secret');
  assert.deepEqual(r.report.deleted, []);
  assert.deepEqual(r.report.notFound, []);
  for (const f of r.report.failed) {
    assert.equal(f.error.code, 'NO_AUTH_FOUND', `id ${f.id}: ${JSON.stringify(f.error)}`);
    assert.equal(f.error.method, BATCH, `id ${f.id}: method`);
    assert.equal(f.error.retryable, false);
    assert.ok(!f.error.json.includes('wrongsecret00000') && !f.error.message.includes('wrongsecret00000'), 'no secret in the error');
  }
  const s = await state();
  assert.equal(s.requests.total, 1, 'one request');
  assert.equal((s.items[String(SPA)] ?? []).length, ids.length, 'nothing deleted');
  progressChecks(r.progress, ids.length, 'wrong secret');
});

// ---- a batch that fails after its retries, the run's deadline, the delete-safe rule ------------

test('a batch that keeps answering 503 past maxRetries: its ids failed QUERY_LIMIT_EXCEEDED (method "batch"), the run goes on', async () => {
  const ids = (await h.emu.control.items(SPA, 150)).ids;
  await h.emu.control.faults({ method: BATCH, fault: PASS });
  await h.emu.control.faults({ method: BATCH, count: 2, fault: FAULT_503 });
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, maxRetries: 1, timeoutMs: 10000 }, SPA, ids);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, '503 x2');
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 4, 'batch 1, batch 2 twice, batch 3');
  const second = ids.slice(BATCH_SIZE, 2 * BATCH_SIZE);
  const rest = [...ids.slice(0, BATCH_SIZE), ...ids.slice(2 * BATCH_SIZE)];
  assert.deepEqual(sorted(r.report.deleted), sorted(rest));
  assert.deepEqual(sorted(r.report.deleted), sorted(deletedIds(s)));
  const failed = failedById(r.report);
  assert.deepEqual(sorted(failed.keys()), sorted(second));
  const left = new Set(s.items[String(SPA)]);
  for (const id of second) {
    const { error } = failed.get(id);
    assert.equal(error.code, 'QUERY_LIMIT_EXCEEDED', `id ${id}: ${JSON.stringify(error)}`);
    assert.equal(error.method, BATCH);
    assert.equal(error.status, 503);
    assert.equal(error.retryable, true);
    assert.equal(error.attempts, 2, 'attempts = maxRetries + 1');
    assert.ok(left.has(id), `id ${id} kept`);
  }
  progressChecks(r.progress, ids.length, '503 x2');
});

test('commands the operating limit refuses inside a batch: waited for (operating_reset_at), then only they are sent again; all deleted', async () => {
  // Each delete costs 1 s of a 3 s budget per window; the 10-minute window is scaled to 2 s.
  await h.emu.control.config({ limiter: 'docs', operatingLimit: 3, operatingCost: 1, timeScale: 300 });
  const ids = (await h.emu.control.items(SPA, 6)).ids;
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 15000 }, SPA, ids);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'operating limit');
  assert.deepEqual(sorted(r.report.deleted), sorted(ids), `all deleted: ${JSON.stringify(r.report.failed)}`);
  const s = await state();
  assert.deepEqual(sorted(deletedIds(s)), sorted(ids));
  const bodies = batchBodies(restRequests);
  assert.equal(bodies.length, 2, 'the batch, then one more for the refused commands');
  assert.deepEqual(bodies[0].ids, ids);
  assert.deepEqual(bodies[1].ids, ids.slice(3), 'only the refused commands are sent again');
  assert.ok(bodies[1].at - bodies[0].at >= 1000, `sent again after the reset, ${bodies[1].at - bodies[0].at} ms later`);
  assert.ok(r.ms < 8000, `took ${r.ms} ms`);
  progressChecks(r.progress, ids.length, 'operating limit');
});

test('the run\'s timeoutMs: a hung 2nd batch times out at the deadline; its ids and the unsent ones fail TIMEOUT', async () => {
  const ids = (await h.emu.control.items(SPA, 200)).ids;
  await h.emu.control.faults({ method: BATCH, fault: PASS });
  await h.emu.control.faults({ method: BATCH, fault: { kind: 'hang' } });
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 30000 }, SPA, ids, { timeoutMs: 3000 });
  await h.emu.control.clearFaults();
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'deadline');
  assert.ok(r.ms >= 2900 && r.ms <= 4000, `settled after ${r.ms} ms, expected the 3000 ms deadline`);
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 2, 'batch requests');
  const first = ids.slice(0, BATCH_SIZE);
  const hung = ids.slice(BATCH_SIZE, 2 * BATCH_SIZE);
  const unsent = ids.slice(2 * BATCH_SIZE);
  assert.deepEqual(sorted(r.report.deleted), sorted(first));
  assert.deepEqual(sorted(r.report.deleted), sorted(deletedIds(s)));
  const failed = failedById(r.report);
  const left = new Set(s.items[String(SPA)]);
  for (const id of hung) {
    const { error } = failed.get(id);
    assert.equal(error.code, 'TIMEOUT', `hung id ${id}: ${JSON.stringify(error)}`);
    assert.equal(error.kind, 'timeout');
    assert.equal(error.method, BATCH);
  }
  for (const id of unsent) {
    const { error } = failed.get(id);
    assert.equal(error.code, 'TIMEOUT', `unsent id ${id}: ${JSON.stringify(error)}`);
    assert.equal(error.kind, 'timeout');
    assert.ok(left.has(id), `unsent id ${id} kept`);
  }
  progressChecks(r.progress, ids.length, 'deadline');
});

test('after a dropped connection the re-sent batch\'s NOT_FOUND counts as deleted (the delete-safe rule), denied stays failed', async () => {
  const ids = (await h.emu.control.items(SPA, 48)).ids;
  const ghost = Math.max(...(await items())) + 1000; // never existed
  const denied = ids[7];
  await h.emu.control.deny(SPA, [denied]);
  const input = [...ids.slice(0, 20), ghost, ...ids.slice(20)];
  await h.emu.control.faults({ method: BATCH, fault: { kind: 'drop_after_apply' } });
  const { page } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 10000 }, SPA, input);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, input, 'drop');
  const s = await state();
  assert.equal(s.requests.byMethod[BATCH], 2, 'the dropped batch and its repeat');
  const emuDeleted = deletedIds(s);
  assert.deepEqual(sorted(emuDeleted), sorted(ids.filter((id) => id !== denied)), 'the first attempt deleted them');
  // The repeat met NOT_FOUND for every applied delete, and for the ghost: all "deleted".
  assert.deepEqual(sorted(r.report.deleted), sorted([...emuDeleted, ghost]));
  assert.deepEqual(r.report.notFound, []);
  assert.equal(r.report.failed.length, 1);
  assert.equal(r.report.failed[0].id, denied);
  assert.equal(r.report.failed[0].error.code, 'ACCESS_DENIED');
  assert.equal(r.report.failed[0].error.method, DELETE);
  assert.ok((await items()).includes(denied));
});

// ---- an already aborted signal, a generator, an expired OAuth token ----------------------------

test('an already aborted signal: resolves with every id failed ABORTED (cause === the reason), no request', async () => {
  const ids = (await h.emu.control.items(SPA, 70)).ids;
  const { page } = await h.openPage({ init: true });
  const r = await page.evaluate(async ([hook, t, ids]) => {
    const reason = new Error('too late');
    const client = new window.lib.Client({ webhookUrl: hook, rateLimit: false });
    const progress = [];
    return client.deleteItems(t, ids, { signal: AbortSignal.abort(reason), onProgress: (p) => progress.push({ ...p }) }).then(
      (rep) => ({ ok: true, deleted: rep.deleted, notFound: rep.notFound, progress,
        failed: rep.failed.map((f) => ({ id: f.id, code: f.error.code, causeIsReason: f.error.cause === reason })) }),
      (e) => ({ ok: false, error: window.serializeError(e) }));
  }, [h.emu.webhook, SPA, ids]);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.deepEqual(r.deleted, []);
  assert.deepEqual(r.notFound, []);
  assert.deepEqual(sorted(r.failed.map((f) => f.id)), sorted(ids));
  for (const f of r.failed) {
    assert.equal(f.code, 'ABORTED', `id ${f.id}`);
    assert.equal(f.causeIsReason, true, `id ${f.id}: cause === the reason`);
  }
  assert.deepEqual(r.progress.at(-1), { done: ids.length, total: ids.length });
  assert.equal((await state()).requests.total, 0, 'no request');
});

test('ids from a generator (any iterable), mixed numbers and strings: deleted in batches, duplicates once', async () => {
  const ids = (await h.emu.control.items(SPA, 60)).ids;
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await page.evaluate(async ([hook, t, ids]) => {
    function* gen() {
      for (const id of ids) { yield id; yield String(id); }
    }
    const client = new window.lib.Client({ webhookUrl: hook, rateLimit: false });
    return window.settle(client.deleteItems(t, gen()));
  }, [h.emu.webhook, SPA, ids]);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assert.deepEqual(r.value.deleted, ids, 'deleted, in input order');
  assert.deepEqual(r.value.failed, []);
  assert.deepEqual(batchBodies(restRequests).map((b) => b.ids), [ids.slice(0, 50), ids.slice(50)]);
  assert.equal((await items()).length, 0);
});

test('OAuth with an expired token and onTokenExpired: one refresh, the batch repeated, all deleted', async () => {
  const ids = (await h.emu.control.items(SPA, 120)).ids;
  const expired = (await h.emu.control.token({ lifetime: 0 })).access_token;
  const { page, restRequests } = await h.openPage({ init: true });
  let refreshes = 0;
  await page.exposeFunction('freshToken', async () => {
    refreshes += 1;
    return (await h.emu.control.token()).access_token;
  });
  const r = await page.evaluate(async ([portal, token, t, ids]) => {
    const client = new window.lib.Client({ portal, accessToken: token, rateLimit: false, onTokenExpired: () => window.freshToken() });
    return window.settle(client.deleteItems(t, ids));
  }, [h.emu.url, expired, SPA, ids]);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.value, ids, 'oauth refresh');
  assert.deepEqual(sorted(r.value.deleted), sorted(ids));
  assert.equal(refreshes, 1, 'one refresh');
  const bodies = batchBodies(restRequests);
  assert.equal(bodies.length, 4, 'the expired batch, its repeat, two more');
  assert.equal(bodies[0].body.auth, expired);
  for (const b of bodies.slice(1)) assert.notEqual(b.body.auth, expired, 'later batches carry the new token');
  assert.equal((await items()).length, 0);
});

// ---- haltOnError after an unknown outcome ------------------------------------------------------

// A batch lost after it was applied (dropped connection) is repeated without halt, and its
// NOT_FOUNDs count as deletions — neither failures nor a reason to halt.
test('haltOnError with a dropped connection on the 1st batch: the repeat\'s NOT_FOUNDs are deletions, not a halt; nothing deleted is reported failed', async () => {
  const ids = (await h.emu.control.items(SPA, 100)).ids;
  await h.emu.control.faults({ method: BATCH, fault: { kind: 'drop_after_apply' } });
  const { page, restRequests } = await h.openPage({ init: true });
  const r = await bulkDelete(page, { webhookUrl: h.emu.webhook, rateLimit: RATE, timeoutMs: 10000 }, SPA, ids, { haltOnError: true });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  assertPartition(r.report, ids, 'halt + drop');
  const s = await state();
  const emuDeleted = deletedIds(s);
  const deleted = new Set(r.report.deleted);
  const wronglyFailed = r.report.failed.filter((f) => emuDeleted.includes(f.id));
  assert.deepEqual(wronglyFailed.slice(0, 3).map((f) => ({ id: f.id, code: f.error.code })), [],
    `${wronglyFailed.length} ids the emulator deleted are reported failed`);
  assert.deepEqual(sorted(r.report.deleted), sorted(emuDeleted), 'deleted = the emulator\'s deletions');
  assert.deepEqual(sorted(emuDeleted), sorted(ids), 'no error, so no halt: every item deleted');
  assert.equal(deleted.size, ids.length);
  assert.ok(batchBodies(restRequests).length >= 3, 'the dropped batch, its repeat, and the 2nd batch');
});
