// `cargo xtask bench`: b24-crm-item against the official SDK (@bitrix24/b24jssdk) and a
// hand-written fetch call, side by side in one run, contenders alternated; medians and ratios,
// printed as Markdown tables. Not a test: a section that cannot run says why and the rest goes on.
//
//   B24_REPO=. B24_PKG_DIR=pkg B24_EMULATOR_BIN=target/release/emulator node bench/run.mjs [section...]
//
// Sections: size, bulk, bucket, percall, cold, https (default: all, in that order).
// Knobs (env): BENCH_BULK_SCENARIOS ("10000x0.6,1000x2": items x server seconds per delete),
// BENCH_BULK_CONTENDERS ("ours,sdk,fast"), BENCH_BULK_SCALE (60), BENCH_BULK_BOUND (3, × the floor),
// B24_BENCH_PYTHON (the venv's python with fast_bitrix24; xtask sets it),
// BENCH_BUCKET_ITEMS (10000), BENCH_BUCKET_RUNS (3 per contender), BENCH_PERCALL_BATCHES (50),
// BENCH_PERCALL_SIZE (20), BENCH_PERCALL_WARMUP (200), BENCH_COLD_RUNS (15), BENCH_HTTPS_CALLS (1000).

import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startTls, selfSignedCert } from './lib/tls.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(process.env.B24_REPO || path.join(here, '..'));
const pkgDir = path.resolve(process.env.B24_PKG_DIR || path.join(repo, 'pkg'));
if (!process.env.B24_EMULATOR_BIN) process.env.B24_EMULATOR_BIN = path.join(repo, 'target/release/emulator');
const env = (k, d) => Number(process.env[k] || d);
const N_BUCKET = env('BENCH_BUCKET_ITEMS', 10000);
const BUCKET_RUNS = env('BENCH_BUCKET_RUNS', 3);
// 50 short batches of 20, alternated, so the three contenders see the same machine (GC, other
// processes); 10 batches of 100 moved the ratio by ±0.3 between runs.
const PC_BATCHES = env('BENCH_PERCALL_BATCHES', 50);
const PC_SIZE = env('BENCH_PERCALL_SIZE', 20);
const PC_WARMUP = env('BENCH_PERCALL_WARMUP', 200);
const COLD_RUNS = env('BENCH_COLD_RUNS', 15);
// 1,000, not 500: a p99 of 500 calls is their 5th-slowest, and it moved the p99 ratio from 0.90× to
// 1.25× between runs of the same build.
const HTTPS_CALLS = env('BENCH_HTTPS_CALLS', 1000);
// The size budget in bytes gzip: `cargo xtask bench` passes xtask's BUDGET_GZIP.
const BUDGET = env('B24_BUDGET_GZIP', 24 * 1024);
const ENTITY = 1268;
const BURST = 50, DRAIN = 20;

const { startEmulator } = await import(pathToFileURL(path.join(repo, 'tests/js/support/emulator.mjs')).href);
const esbuild = await import('esbuild');
const requireTests = createRequire(path.join(repo, 'tests/package.json'));

const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const NAMES = { ours: 'b24-crm-item', sdk: '@bitrix24/b24jssdk ' + sdkVersion(), hand: 'hand-written fetch',
  'ours-loop': 'b24-crm-item, no `Uint8Array.fromBase64`' };
const summary = [];   // [what, ours, sdk, hand, ratio, target, verdict]
const notes = [];

// ---------- helpers ----------
function sdkVersion() {
  try {
    return JSON.parse(fs.readFileSync(path.join(here, 'node_modules/@bitrix24/b24jssdk/package.json'), 'utf8')).version;
  } catch { return '?'; }
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1)]; };
const kb = (b) => `${(b / 1024).toFixed(1)} KB`;
const ms = (x) => `${x.toFixed(x < 10 ? 2 : 1)} ms`;
const us = (x) => `${x.toFixed(1)} µs`;
const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
const gzip9 = (buf) => execFileSync('gzip', ['-9', '-n', '-c'], { input: buf, maxBuffer: 1 << 28 }).length;
function table(head, rows) {
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
  console.log(out.join('\n'));
}
function section(title) { console.log(`\n## ${title}\n`); }
function verdict(ok) { return ok ? 'met' : '**not met**'; }
/** ours, sdk, hand; rotated each round so none always goes first. */
function order(round, c = ['ours', 'sdk', 'hand']) { const k = round % c.length; return c.slice(k).concat(c.slice(0, k)); }

// ---------- the site the browser loads (served by the emulator at /bench/, the package at /pkg/) ----------
const site = path.join(repo, 'target/bench/site');
async function buildSite() {
  fs.rmSync(site, { recursive: true, force: true });
  fs.mkdirSync(site, { recursive: true });
  const common = { bundle: true, format: 'esm', platform: 'browser', minify: true, target: 'es2022', logLevel: 'error',
    define: { 'process.env.NODE_ENV': '"production"' } };
  await esbuild.build({ ...common, entryPoints: [path.join(here, 'contenders/sdk.mjs')], outfile: path.join(site, 'sdk.js') });
  await esbuild.build({ ...common, entryPoints: [path.join(here, 'contenders/hand.mjs')], outfile: path.join(site, 'hand.js') });
  fs.copyFileSync(path.join(here, 'contenders/ours.mjs'), path.join(site, 'ours.js'));
  const stub = fs.readFileSync(path.join(here, 'lib/stub.js'), 'utf8');
  fs.writeFileSync(path.join(site, 'harness.html'), '<!doctype html><meta charset="utf-8"><title>bench</title><p>bench</p>\n');
  fs.writeFileSync(path.join(site, 'stub.html'), `<!doctype html><meta charset="utf-8"><title>bench stub</title><script>${stub}</script><p>stub</p>\n`);
  // Cold start: one inline mark, the stub, then one module script importing the contender.
  const webhook = 'https://127.0.0.1:9/rest/1/m7nnavfub4l2vlcl/';
  const start = { ours: `import { configure, deleteItem } from '/pkg/index.js';\nconfigure({ webhookUrl: '${webhook}', rateLimit: false });\nconst call = () => deleteItem(${ENTITY}, 1);`,
    sdk: `import { make } from './sdk.js';\nconst api = make('${webhook}');\nconst call = () => api.deleteItem(${ENTITY}, 1);`,
    hand: `import { make } from './hand.js';\nconst api = make('${webhook}');\nconst call = () => api.deleteItem(${ENTITY}, 1);` };
  // Ours again where the engine has no Uint8Array.fromBase64 (Node 20, browsers before 2025): the
  // wasm's text becomes bytes in a JS loop.
  start['ours-loop'] = start.ours;
  for (const [c, body] of Object.entries(start)) {
    const before = c === 'ours-loop' ? '<script>delete Uint8Array.fromBase64;</script>\n' : '';
    fs.writeFileSync(path.join(site, `cold-${c}.html`), `<!doctype html><meta charset="utf-8"><title>cold ${c}</title>
${before}<script>window.__t0 = performance.now();</script>
<script>${stub}</script>
<script type="module">
${body}
call().then(() => { window.__done = performance.now(); }, (e) => { window.__err = String(e && e.stack || e); });
</script>
`);
  }
}

let browser;
async function chromium() {
  if (browser) return browser;
  const { chromium: pw } = requireTests('playwright-core');
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`${executablePath} is missing (cargo xtask setup installs it)`);
  browser = await pw.launch({ executablePath, args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'] });
  return browser;
}
const staticArgs = () => ['--static', `/bench=${site}`, '--static', `/pkg=${pkgDir}`];

// ---------- 2. bundle size ----------
async function size() {
  section('Bundle size (gzip -9 of everything the page loads for one webhook call)');
  // The published entry is one minified module (index.js) with the wasm inside it.
  const files = ['index.js'];
  let oursRaw = 0, oursGz = 0;
  for (const f of files) {
    const buf = fs.readFileSync(path.join(pkgDir, f));
    oursRaw += buf.length; oursGz += gzip9(buf);
  }
  const bundle = async (entry) => {
    const r = await esbuild.build({ entryPoints: [path.join(here, 'contenders', entry)], bundle: true, format: 'esm', platform: 'browser',
      minify: true, target: 'es2022', write: false, logLevel: 'error', define: { 'process.env.NODE_ENV': '"production"' } });
    const code = Buffer.from(r.outputFiles[0].contents);
    return { raw: code.length, gz: gzip9(code) };
  };
  const sdk = await bundle('sdk-one.mjs');
  const hand = await bundle('hand-one.mjs');
  table(['contender', 'what the page loads', 'bytes', 'gzip -9', 'vs hand-written'], [
    [NAMES.ours, 'index.js (bundled, minified, the wasm inside), as published', String(oursRaw), `**${kb(oursGz)}**`, ratio(oursGz, hand.gz)],
    [NAMES.sdk, '`B24Hook` + one `actions.v2.call.make`, esbuild bundle, minified ESM', String(sdk.raw), `**${kb(sdk.gz)}**`, ratio(sdk.gz, hand.gz)],
    [NAMES.hand, 'one `fetch` call, minified', String(hand.raw), kb(hand.gz), '1.00×'],
  ]);
  console.log(`\nbudget: ${kb(BUDGET)} gzip; ours ${kb(oursGz)} (${(100 * oursGz / BUDGET).toFixed(0)}%) — ${oursGz <= BUDGET ? 'within' : 'over'} budget`);
  summary.push(['bundle (gzip)', kb(oursGz), kb(sdk.gz), kb(hand.gz), ratio(oursGz, hand.gz), `≤ ${kb(BUDGET)}`, verdict(oursGz <= BUDGET)]);
}

// ---------- 1. bulk delete at real-portal scale (issue 17) ----------
// The emulator in server mode, time-scaled; each contender in its own process on a fresh emulator,
// stopped at BOUND × the floor. The floor F: one batch in flight, every command costs `cost` server
// seconds, and the method may spend LIMIT of them per 10 minutes: ⌊S/L⌋ full windows, then the rest.
const BULK_SCALE = env('BENCH_BULK_SCALE', 60);
const BULK_LIMIT = 420;         // --operating-limit: server seconds per method per 10 minutes
const BULK_REQUEST_LIMIT = 60;  // --request-limit: a request running longer is cut (HTML 504)
const BULK_BOUND = env('BENCH_BULK_BOUND', 3);
const BULK_SCENARIOS = (process.env.BENCH_BULK_SCENARIOS || '10000x0.6,1000x2').split(',')
  .map((s) => { const [items, cost] = s.split('x').map(Number); return { items, cost }; });
const BULK_CONTENDERS = (process.env.BENCH_BULK_CONTENDERS || 'ours,sdk,fast').split(',');
const FAST_VERSION = (fs.readFileSync(path.join(here, 'requirements.txt'), 'utf8').match(/^fast_bitrix24==(\S+)/m) || [])[1] || '?';
const BULK_NAMES = { ours: NAMES.ours, sdk: NAMES.sdk, fast: `fast_bitrix24 ${FAST_VERSION} (Python)` };

/** A message fit for a table cell. */
const clip = (t, n) => (t.length > n ? `${t.slice(0, n)}…` : t).replace(/\|/g, '/').replace(/\s+/g, ' ');

/** F = 600·⌊S/L⌋ + (S mod L) portal seconds, S = items × cost. */
function bulkFloor(items, cost) {
  const S = Math.round(items * cost * 1e6) / 1e6;
  const windows = Math.floor(S / BULK_LIMIT + 1e-9);
  return { S, F: 600 * windows + Math.max(0, S - windows * BULK_LIMIT) };
}

function bulkCommand(c) {
  if (c === 'ours') return [process.execPath, [path.join(here, 'contenders/bulk-ours.mjs')]];
  if (c === 'sdk') return [process.execPath, [path.join(here, 'contenders/bulk-sdk.mjs')]];
  if (c === 'fast') {
    const py = path.resolve(repo, process.env.B24_BENCH_PYTHON || 'target/bench/venv/bin/python');
    if (!fs.existsSync(py)) throw new Error(`${py} is missing (cargo xtask bench bulk makes the venv with fast_bitrix24)`);
    return [py, [path.join(here, 'contenders/bulk_fast.py')]];
  }
  throw new Error(`unknown bulk contender ${c}; known: ours, sdk, fast`);
}

/** Run one contender's process until it exits or `boundMs` passes (then SIGKILL). */
function runBulkChild(cmd, args, childEnv, boundMs) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: here, env: { ...process.env, ...childEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '', stopped = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
    const timer = setTimeout(() => { stopped = true; child.kill('SIGKILL'); }, boundMs);
    child.on('error', (e) => { err += String(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('REPORT '));
      let report = null;
      try { report = line ? JSON.parse(line.slice('REPORT '.length)) : null; } catch { /* no report */ }
      resolve({ ms: performance.now() - t0, code, signal, stopped, report, stderr: err.trim() });
    });
  });
}

/** Does the report say what the emulator's items say? By id when the report has ids, else by count. */
function reportVsState(report, ids, left) {
  if (!report) return 'no report';
  const leftSet = new Set(left);
  const gone = ids.filter((id) => !leftSet.has(id));
  if (!report.deleted) {
    const claimed = report.deletedCount + report.notFoundCount;
    return claimed === gone.length ? 'yes (by count: its answer has no ids)' : `**no**: says ${claimed} deleted, ${gone.length} gone (by count)`;
  }
  const claimed = new Set([...report.deleted, ...report.notFound]);
  const claimedButLeft = [...claimed].filter((id) => leftSet.has(id)).length;
  const goneUnclaimed = gone.filter((id) => !claimed.has(id)).length;
  return claimedButLeft || goneUnclaimed
    ? `**no**: ${goneUnclaimed} gone but not reported deleted, ${claimedButLeft} reported deleted but left`
    : 'yes';
}

async function bulk() {
  section(`Bulk delete at real-portal scale: server-mode emulator, --time-scale ${BULK_SCALE}, operating limit ${BULK_LIMIT} s, request limit ${BULK_REQUEST_LIMIT} s`);
  console.log(`Each run: a fresh emulator (\`--limiter server --time-scale ${BULK_SCALE} --operating-limit ${BULK_LIMIT} --request-limit ${BULK_REQUEST_LIMIT}`);
  console.log(`--processing COST\`, its default bucket 50 / 2 per s, which the time scale makes 2 × ${BULK_SCALE} per real s), the items`);
  console.log(`of type ${ENTITY} seeded through the control API, the contender in its own process (Node or Python) against the`);
  console.log(`webhook through a loopback HTTPS proxy, stopped at ${BULK_BOUND}× the floor. Times are portal seconds (real × ${BULK_SCALE}). The floor`);
  console.log(`F = 600·⌊S/L⌋ + (S mod L), S = items × cost, L = ${BULK_LIMIT}: one batch in flight, each full budget followed by the rest of its window.`);
  console.log(`429s and bans as the emulator counts them (\`rejected.OPERATION_TIME_LIMIT\`, nested commands included; \`bans\`);`);
  console.log(`503s likewise; 504s (requests cut at the request limit) as the proxy passed them on. "failed" is what the contender`);
  console.log(`reports; "report = state": the ids it says deleted or not found are exactly the ids gone from the emulator.`);
  console.log(`ours: the package's defaults (a webhook, \`deleteItems(${ENTITY}, ids)\` without options). ${BULK_NAMES.sdk}: batchByChunk, limiter on`);
  console.log(`(defaults, operating limit told ${BULK_LIMIT} s, its exposed time knobs ÷ ${BULK_SCALE}; hard-coded waits unscaled). ${BULK_NAMES.fast}:`);
  console.log(`\`b.call('crm.item.delete', [...])\` (defaults, operating_time_limit ${BULK_LIMIT}, its time knobs ÷ ${BULK_SCALE}). bench/README.md has the details.`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'b24-bench-bulk-'));
  try {
    for (const [k, { items, cost }] of BULK_SCENARIOS.entries()) {
      const { S, F } = bulkFloor(items, cost);
      const boundMs = BULK_BOUND * F / BULK_SCALE * 1000;
      const label = `${items.toLocaleString('en')} × ${cost} s`;
      console.log(`\n### ${label}: S = ${S} s, F = ${F} portal s (${(F / BULK_SCALE).toFixed(1)} s real), stopped at ${BULK_BOUND}× F\n`);
      const rows = [];
      const turn = BULK_CONTENDERS.slice(k % BULK_CONTENDERS.length).concat(BULK_CONTENDERS.slice(0, k % BULK_CONTENDERS.length));
      for (const c of turn) {
        let row;
        try {
          row = await bulkRun(c, { items, cost, F, boundMs, tmp });
        } catch (e) {
          row = { c, error: String(e && e.message || e).split('\n')[0] };
        }
        rows.push(row);
        console.log(row.error ? `  ${c}: not measured: ${row.error}` : `  ${c}: ${row.line}`);
      }
      console.log('');
      table(['contender', 'time (portal s)', 'vs F', '429s', 'bans', '503s', '504s', 'ids failed (its report)', 'deleted (emulator)', 'report = state', 'ended'],
        [...rows.map((r) => (r.error ? [BULK_NAMES[r.c], '—', '—', '—', '—', '—', '—', '—', '—', '—', `not measured: ${r.error}`]
          : [BULK_NAMES[r.c], r.stopped ? `> ${Math.round(r.portal)}` : r.report ? `**${Math.round(r.portal)}**` : '—', r.stopped ? `> ${BULK_BOUND}×` : !r.report ? '—' : r.deleted < items ? `${ratio(r.portal, F)} (gave up)` : ratio(r.portal, F),
            String(r.r429), String(r.bans), String(r.r503), String(r.r504), r.failed, `${r.deleted} / ${items}`, r.match, r.ended])),
        ['floor F', String(F), '1.00×', '0', '0', '0', '0', '0', `${items} / ${items}`, '—', '—']]);
      const ours = rows.find((r) => r.c === 'ours' && !r.error);
      if (ours) {
        const checks = [
          [`≤ 1.1× F`, !ours.stopped && ours.portal <= 1.1 * F],
          ['zero 429s', ours.r429 === 0],
          ['zero failed', ours.report && ours.report.failedCount === 0],
          ['report = state', ours.match === 'yes'],
        ];
        console.log(`\nours against the targets (${label}): ${checks.map(([t, ok]) => `${t} ${verdict(ok)}`).join('; ')}`);
        const sdk = rows.find((r) => r.c === 'sdk' && !r.error);
        const cell = (r) => (!r ? '—' : r.stopped ? `stopped at ${BULK_BOUND}× F, ${r.r429} × 429`
          : `${ratio(r.portal, F)}, ${r.r429} × 429, ${r.failed} failed`);
        summary.push([`bulk ${label} (vs F, 429s, failed)`, cell(ours), cell(sdk), '—', ours.stopped ? `> ${BULK_BOUND}× F` : `${ratio(ours.portal, F)} F`,
          '≤ 1.1× F, 0 × 429, 0 failed, report = state', verdict(checks.every(([, ok]) => ok))]);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function bulkRun(c, { items, cost, F, boundMs, tmp }) {
  const [cmd, args] = bulkCommand(c);
  const emu = await startEmulator(['--limiter', 'server', '--time-scale', String(BULK_SCALE), '--operating-limit', String(BULK_LIMIT),
    '--request-limit', String(BULK_REQUEST_LIMIT), '--processing', String(cost), '--items', '0']);
  const tls = await startTls({ target: emu.url });
  try {
    const { ids } = await emu.control.items(ENTITY, items);
    const idsFile = path.join(tmp, `ids-${c}.json`);
    fs.writeFileSync(idsFile, JSON.stringify(ids));
    const run = await runBulkChild(cmd, args, {
      B24_BULK_WEBHOOK: emu.webhook.replace(emu.url, tls.url), B24_BULK_ENTITY: String(ENTITY), B24_BULK_IDS: idsFile,
      B24_BULK_SCALE: String(BULK_SCALE), B24_BULK_LIMIT: String(BULK_LIMIT), B24_PKG_DIR: pkgDir,
      NODE_TLS_REJECT_UNAUTHORIZED: '0', NODE_NO_WARNINGS: '1',
    }, boundMs);
    const st = await emu.control.state();
    const left = st.items[ENTITY] || [];
    const report = run.report;
    // The contender's own time around its call when it reports one (no interpreter start-up).
    const realMs = run.stopped ? boundMs : (report && report.ms) || run.ms;
    const portal = realMs / 1000 * BULK_SCALE;
    const codes = report ? Object.entries(report.failedCodes || {}).map(([k, n]) => `${n} ${k}`).join(', ') : '';
    const failed = run.stopped ? 'stopped' : !report ? 'no report' : `${report.failedCount}${codes ? ` (${codes})` : ''}`;
    const ended = run.stopped ? `stopped at ${BULK_BOUND}× F`
      : !report ? `exited ${run.code ?? run.signal} without a report${run.stderr ? `: ${clip(run.stderr.split('\n').pop(), 160)}` : ''}`
      : report.threw ? `threw: ${clip(report.threw, 110)}`
      : report.errorSample && report.errorSample.length ? `returned, ${report.errors} error(s), e.g. ${clip(report.errorSample[0], 110)}`
      : 'returned';
    const row = { c, portal, stopped: run.stopped, report, failed, ended,
      r429: (st.rejected || {}).OPERATION_TIME_LIMIT || 0, bans: st.bans || 0, r503: (st.rejected || {}).QUERY_LIMIT_EXCEEDED || 0,
      r504: tls.stats.status[504] || 0, requests: st.requests.total, deleted: items - left.length,
      match: run.stopped ? 'n/a (stopped)' : reportVsState(report, ids, left) };
    row.line = `${Math.round(portal)} portal s (${(realMs / 1000).toFixed(1)} s real, ${ratio(portal, F)} F), ${row.requests} requests, `
      + `${row.r429} × 429, ${row.bans} bans, ${row.r503} × 503, ${row.r504} × 504, ${row.deleted} deleted, failed ${failed}; ${ended}`;
    return row;
  } finally {
    await tls.close();
    await emu.stop();
  }
}

// ---------- 1b. bulk delete against the leaky bucket only (no server time) ----------
async function bucket() {
  section(`Bulk delete against the leaky bucket: ${N_BUCKET.toLocaleString('en')} items of type ${ENTITY}, emulator bucket burst ${BURST} / drain ${DRAIN} per s, no server time`);
  const requests = Math.ceil(N_BUCKET / 50);
  const minimum = Math.max(0, (requests - BURST) / DRAIN);
  console.log(`headless Chromium; page http://127.0.0.1:EMU/bench/harness.html (served by the emulator), API through a loopback`);
  console.log(`HTTPS proxy to the emulator on another port (cross-origin; the SDK accepts only https webhooks), ${BUCKET_RUNS} run(s) each, alternated,`);
  console.log(`a fresh emulator per run. ours: Client.deleteItems with rateLimit {burst: ${BURST}, perSecond: ${DRAIN}}; SDK:`);
  console.log(`actions.v2.batchByChunk.make (50 per batch, isHaltOnError false) with its RestrictionManager at`);
  console.log(`rateLimit {burstLimit: ${BURST}, drainRate: ${DRAIN}} (other restriction params: its defaults, adaptive on, maxRetries 3).\n`);
  const b = await chromium();
  const runs = { ours: [], sdk: [] };
  for (let r = 0; r < BUCKET_RUNS; r++) {
    for (const c of r % 2 ? ['sdk', 'ours'] : ['ours', 'sdk']) {
      const emu = await startEmulator(['--burst', String(BURST), '--drain', String(DRAIN), '--items', '0', ...staticArgs()]);
      const tls = await startTls({ target: emu.url });
      const context = await b.newContext({ ignoreHTTPSErrors: true });
      try {
        const { ids } = await emu.control.items(ENTITY, N_BUCKET);
        const webhook = emu.webhook.replace(emu.url, tls.url);
        const page = await context.newPage();
        await page.goto(`${emu.url}/bench/harness.html`);
        const out = await page.evaluate(async ({ c, webhook, ids, ENTITY, BURST, DRAIN }) => {
          const mod = await import(`./${c}.js`);
          const api = mod.make(webhook, c === 'ours' ? { rateLimit: { burst: BURST, perSecond: DRAIN } } : { mode: 'bulk', burst: BURST, perSecond: DRAIN });
          if (mod.init) await mod.init();
          const t0 = performance.now();
          let report;
          try {
            report = await api.deleteItems(ENTITY, ids);
          } catch (e) {
            report = { threw: String(e && e.message || e) };
          }
          const t = performance.now() - t0;
          if (report && report.deleted) report = { deleted: report.deleted.length, notFound: report.notFound.length, failed: report.failed.length };
          return { ms: t, report };
        }, { c, webhook, ids, ENTITY, BURST, DRAIN });
        const st = await emu.control.state();
        const deleted = st.deleted.filter((d) => d.entityTypeId === ENTITY).length;
        const row = { ms: out.ms, requests: st.requests.total, r503: st.rejected.QUERY_LIMIT_EXCEEDED || 0, deleted, left: (st.items[ENTITY] || []).length, report: out.report };
        runs[c].push(row);
        console.log(`  run ${r + 1} ${c}: ${(row.ms / 1000).toFixed(2)} s, ${row.requests} requests, ${row.r503} × 503, ${row.deleted} deleted, ${row.left} left; client says ${JSON.stringify(out.report)}`);
      } finally {
        await context.close();
        await tls.close();
        await emu.stop();
      }
    }
  }
  const med = (c, k) => median(runs[c].map((x) => x[k]));
  console.log('');
  table(['contender', 'time (median)', 'vs bucket minimum', 'requests', '503s seen', 'items deleted'], [
    ...['ours', 'sdk'].map((c) => [NAMES[c], `**${(med(c, 'ms') / 1000).toFixed(2)} s**`, ratio(med(c, 'ms') / 1000, minimum),
      String(med(c, 'requests')), String(med(c, 'r503')), `${med(c, 'deleted')} / ${N_BUCKET}`]),
    [`bucket minimum (${requests} requests)`, `${minimum.toFixed(2)} s`, '1.00×', String(requests), '0', `${N_BUCKET} / ${N_BUCKET}`],
  ]);
  // README, Pacing (src/policy.rs reserve_slots): one slot plus 1 s of drain kept back, at most all but one.
  const reserve = Math.min(1 + Math.ceil(1.0 * DRAIN), BURST - 1);
  const oursFloor = Math.max(0, (requests - (BURST - reserve)) / DRAIN);
  console.log(`\nours keeps a reserve of one slot + 1 s of drain (${reserve} of ${BURST} here, README "Pacing"), so its own floor is`);
  console.log(`(${requests} − ${BURST - reserve}) / ${DRAIN} = ${oursFloor.toFixed(2)} s; the SDK paces at the bucket's exact rate (no reserve).`);
  summary.push(['bucket 10k (time)', `${(med('ours', 'ms') / 1000).toFixed(2)} s`, `${(med('sdk', 'ms') / 1000).toFixed(2)} s`, '—',
    `${ratio(med('ours', 'ms') / 1000, minimum)} of the ${minimum} s minimum`, 'none set (issue 6: report it)', '—']);
  summary.push(['bucket 10k (503s, deleted)', `${med('ours', 'r503')}, ${med('ours', 'deleted')}`, `${med('sdk', 'r503')}, ${med('sdk', 'deleted')}`, '—',
    '—', `0 × 503, all ${N_BUCKET} deleted`, verdict(med('ours', 'r503') === 0 && med('ours', 'deleted') === N_BUCKET)]);
}

// A static-only emulator for the page and the package (limits off: nothing here reaches its REST API).
async function staticEmulator() {
  return startEmulator(['--no-limits', ...staticArgs()]);
}

// ---------- 3. per-call overhead ----------
async function percall() {
  section(`Per-call overhead: ${PC_BATCHES * PC_SIZE} sequential deleteItem calls, in-page stub transport (one macrotask)`);
  console.log(`headless Chromium, one page with all three contenders; fetch (and, for the SDK's axios, XMLHttpRequest)`);
  console.log(`replaced by a stub answering {"result":[],"time":{...}} after one MessageChannel macrotask; ${PC_WARMUP} warm-up calls each,`);
  console.log(`then ${PC_BATCHES} batches of ${PC_SIZE} per contender, alternated; the median of the batch means.`);
  console.log(`ours: rateLimit false (default retries: none happen). SDK: rateLimit burstLimit/drainRate 1e9 and adaptive off,`);
  console.log(`adaptiveConfig off, maxRetries 1 (one attempt), retryOnNetworkError false, client-side warning off.\n`);
  const emu = await staticEmulator();
  const b = await chromium();
  const context = await b.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${emu.url}/bench/stub.html`);
    await page.evaluate(async ({ size }) => {
      const webhook = 'https://127.0.0.1:9/rest/1/m7nnavfub4l2vlcl/';
      window.__api = {};
      for (const c of ['ours', 'sdk', 'hand']) {
        const mod = await import(`./${c}.js`);
        window.__api[c] = mod.make(webhook, c === 'ours' ? { rateLimit: false } : {});
        for (let i = 0; i < size; i++) await window.__api[c].deleteItem(1268, 1 + (i % 1000));
      }
    }, { size: PC_WARMUP });
    const batches = { ours: [], sdk: [], hand: [] };
    for (let r = 0; r < PC_BATCHES; r++) {
      for (const c of order(r)) {
        const perCall = await page.evaluate(async ({ c, size }) => {
          const api = window.__api[c];
          const t0 = performance.now();
          for (let i = 0; i < size; i++) await api.deleteItem(1268, 1 + i);
          return (performance.now() - t0) / size * 1000;
        }, { c, size: PC_SIZE });
        batches[c].push(perCall);
      }
    }
    const m = Object.fromEntries(Object.entries(batches).map(([c, xs]) => [c, median(xs)]));
    const stubCount = await page.evaluate(() => window.__b24stub.count);
    table(['contender', 'per call (median of batches)', 'min batch', 'max batch', 'vs hand-written'],
      ['ours', 'sdk', 'hand'].map((c) => [NAMES[c], `**${us(m[c])}**`, us(Math.min(...batches[c])), us(Math.max(...batches[c])), ratio(m[c], m.hand)]));
    console.log(`\n(stubbed requests answered: ${stubCount}; expected ${3 * (PC_WARMUP + PC_SIZE * PC_BATCHES)})`);
    summary.push(['per call, stub transport', us(m.ours), us(m.sdk), us(m.hand), ratio(m.ours, m.hand), '≤ 1.5×', verdict(m.ours / m.hand <= 1.5)]);
  } finally {
    await context.close();
    await emu.stop();
  }
}

// ---------- 4. cold start ----------
async function cold() {
  section(`Cold start: start of module evaluation → first request leaving (fresh browser context each run, ${COLD_RUNS} runs each)`);
  console.log(`headless Chromium; each page marks performance.now() in an inline script, installs the stub transport, then one`);
  console.log(`module script imports the contender and makes one call; the stub records when the REST request is made`);
  console.log(`(ours: after decoding, compiling and instantiating the wasm inside its module). Modules come from the emulator over`);
  console.log(`loopback http, no cache. The last row is ours on a page that deletes Uint8Array.fromBase64 first (the fallback).\n`);
  const emu = await staticEmulator();
  const b = await chromium();
  const contenders = ['ours', 'sdk', 'hand', 'ours-loop'];
  // Each run, in ms from the mark: the entry module's last byte (Resource Timing) and the first
  // request (the stub's record); any .wasm the page fetched (there should be none).
  const phases = Object.fromEntries(contenders.map((c) => [c, []]));
  const fetchedWasm = new Set();
  try {
    for (let r = 0; r < COLD_RUNS; r++) {
      for (const c of order(r, contenders)) {
        const context = await b.newContext();
        try {
          const page = await context.newPage();
          await page.goto(`${emu.url}/bench/cold-${c}.html`);
          await page.waitForFunction(() => window.__done || window.__err, null, { timeout: 30000 });
          const v = await page.evaluate(() => ({ t0: window.__t0, first: window.__b24stub.first, err: window.__err,
            resources: performance.getEntriesByType('resource').map((e) => [e.name, e.startTime, e.responseEnd]) }));
          if (v.err) throw new Error(`cold ${c}: ${v.err}`);
          const find = (suffix) => v.resources.find(([name]) => new URL(name).pathname.endsWith(suffix));
          const entry = find(c.startsWith('ours') ? '/pkg/index.js' : `/bench/${c}.js`);
          for (const [name] of v.resources) if (new URL(name).pathname.endsWith('.wasm')) fetchedWasm.add(name);
          phases[c].push({ entry: entry ? entry[2] - v.t0 : NaN, first: v.first - v.t0 });
        } finally {
          await context.close();
        }
      }
    }
  } finally {
    await emu.stop();
  }
  const times = (c) => phases[c].map((p) => p.first);
  const m = Object.fromEntries(contenders.map((c) => [c, median(times(c))]));
  table(['contender', 'cold start (median)', 'min', 'max', 'vs hand-written'],
    contenders.map((c) => [NAMES[c], `**${ms(m[c])}**`, ms(Math.min(...times(c))), ms(Math.max(...times(c))), ratio(m[c], m.hand)]));
  summary.push(['cold start', ms(m.ours), ms(m.sdk), ms(m.hand), ratio(m.ours, m.hand), '≤ 1.3×', verdict(m.ours / m.hand <= 1.3)]);
  if (fetchedWasm.size) notes.push(`cold: the pages fetched ${[...fetchedWasm].join(', ')}: the package is not self-contained`);

  // The breakdown: medians of each phase over the runs (so the columns need not add up exactly).
  const med = (c, f) => median(phases[c].map(f).filter((x) => Number.isFinite(x)));
  console.log(`\nWhere it goes (medians over the runs): the entry module's last byte (the page's Resource Timing), then the`);
  console.log(`first request; for ours the time between is evaluating the bundle, then at the first call turning the wasm's text`);
  console.log(`into bytes, compiling and instantiating them, reading the config and the call itself.\n`);
  table(['contender', 'entry module arrived', 'first request', 'entry → first request'],
    contenders.map((c) => [NAMES[c], ms(med(c, (p) => p.entry)), ms(med(c, (p) => p.first)), ms(med(c, (p) => p.first - p.entry))]));
}

// ---------- 5. loopback HTTPS ----------
async function httpsLatency() {
  section(`Loopback HTTPS, cross-origin: ${HTTPS_CALLS} sequential calls each`);
  try { selfSignedCert(); } catch (e) { throw new Error(`cannot make a self-signed certificate with openssl: ${e.message}`); }
  const per = 10; // small blocks: machine noise spreads over all three contenders, not one block
  const rounds = Math.max(1, Math.round(HTTPS_CALLS / per));
  console.log(`headless Chromium (--ignore-certificate-errors); page http://127.0.0.1:EMU/bench/harness.html, API`);
  console.log(`https://127.0.0.1:PORT2 (Node https, self-signed cert made by openssl at bench time) answering crm.item.delete`);
  console.log(`itself with {"result":[],"time":{...}}. A fresh browser context per contender (own preflight cache); 20 warm-up calls each`);
  console.log(`(preflights counted from the first call), then ${rounds} rounds of ${per} per contender, alternated. Contenders configured`);
  console.log(`as in the per-call section (ours rateLimit false; the SDK's limiter off as far as it goes).\n`);
  const emu = await staticEmulator();
  const tls = await startTls();
  const b = await chromium();
  // One fresh context per contender: each has its own (empty) preflight cache, so one contender's
  // cached preflight cannot serve another's request to the same URL.
  const contexts = {};
  const pages = {};
  const lat = { ours: [], sdk: [], hand: [] };
  const pre = { ours: 0, sdk: 0, hand: 0 };
  const posts = { ours: 0, sdk: 0, hand: 0 };
  try {
    const webhook = `${tls.url}/rest/1/m7nnavfub4l2vlcl/`;
    for (const c of ['ours', 'sdk', 'hand']) {
      contexts[c] = await b.newContext({ ignoreHTTPSErrors: true });
      pages[c] = await contexts[c].newPage();
      await pages[c].goto(`${emu.url}/bench/harness.html`);
      await pages[c].evaluate(async ({ c, webhook }) => {
        const mod = await import(`./${c}.js`);
        window.__api = mod.make(webhook, c === 'ours' ? { rateLimit: false } : {});
        if (mod.init) await mod.init();
      }, { c, webhook });
    }
    const run = async (c, n, keep) => {
      tls.resetStats();
      const xs = await pages[c].evaluate(async ({ n }) => {
        const api = window.__api;
        const out = [];
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await api.deleteItem(1268, 1 + i);
          out.push(performance.now() - t0);
        }
        return out;
      }, { n });
      pre[c] += tls.stats.options;
      posts[c] += tls.stats.posts;
      if (keep) lat[c].push(...xs);
    };
    for (const c of ['ours', 'sdk', 'hand']) await run(c, 20, false);
    for (let r = 0; r < rounds; r++) for (const c of order(r)) await run(c, per, true);
  } finally {
    for (const ctx of Object.values(contexts)) await ctx.close();
    await tls.close();
    await emu.stop();
  }
  const m = Object.fromEntries(Object.entries(lat).map(([c, xs]) => [c, median(xs)]));
  const p99 = Object.fromEntries(Object.entries(lat).map(([c, xs]) => [c, pct(xs, 99)]));
  table(['contender', 'median', 'p99', 'median vs hand', 'p99 vs hand', 'CORS preflights', 'POSTs'],
    ['ours', 'sdk', 'hand'].map((c) => [NAMES[c], `**${ms(m[c])}**`, ms(p99[c]), ratio(m[c], m.hand), ratio(p99[c], p99.hand), String(pre[c]), String(posts[c])]));
  summary.push(['loopback HTTPS median', ms(m.ours), ms(m.sdk), ms(m.hand), ratio(m.ours, m.hand), '≤ 1.1×', verdict(m.ours / m.hand <= 1.1)]);
  summary.push(['loopback HTTPS p99', ms(p99.ours), ms(p99.sdk), ms(p99.hand), ratio(p99.ours, p99.hand), '≤ 1.2×', verdict(p99.ours / p99.hand <= 1.2)]);
  summary.push(['CORS preflights', String(pre.ours), String(pre.sdk), String(pre.hand), '—', '≤ hand-written', verdict(pre.ours <= pre.hand)]);
}

// ---------- main ----------
const SECTIONS = { size, bulk, bucket, percall, cold, https: httpsLatency };
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(SECTIONS);
for (const w of wanted) if (!SECTIONS[w]) { console.error(`unknown section ${w}; known: ${Object.keys(SECTIONS).join(', ')}`); process.exit(2); }

// Everything printed is also kept in target/bench/results.md, ready to paste.
const printed = [];
const log = console.log.bind(console);
console.log = (...a) => { printed.push(a.join(' ')); log(...a); };

const started = Date.now();
console.log(`# b24-crm-item benchmarks\n`);
console.log(`${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model?.trim()}, load average ${os.loadavg()[0].toFixed(1)}, Node ${process.version}, package ${pkgDir}`);
await buildSite();
let failed = 0;
try {
  for (const w of wanted) {
    try {
      await SECTIONS[w]();
    } catch (e) {
      failed++;
      console.log(`\n**${w}: not measured**: ${e && e.stack || e}`);
      notes.push(`${w}: not measured (${String(e && e.message || e).split('\n')[0]})`);
    }
  }
  if (browser) console.log(`\nChromium ${browser.version()}`);
} finally {
  if (browser) await browser.close();
}

section('Summary (ratios to the hand-written fetch call in the same run)');
table(['what', NAMES.ours, NAMES.sdk, NAMES.hand, 'ours / hand', 'target', 'verdict'], summary);
for (const n of notes) console.log(`- ${n}`);
console.log(`\nbench took ${((Date.now() - started) / 1000).toFixed(0)} s; load average at the end ${os.loadavg()[0].toFixed(1)}`);
const results = path.join(repo, 'target/bench/results.md');
fs.writeFileSync(results, printed.join('\n') + '\n');
log(`(also written to ${results})`);
process.exit(failed ? 1 : 0);
