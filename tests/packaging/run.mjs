#!/usr/bin/env node
// The npm package as users meet it (issue 7, "Package" and "TypeScript"): `npm pack` of pkg/, then
// for each fixture under fixtures/<name>/ — a tiny project with a pinned package.json and a committed
// package-lock.json — a scratch copy in a temp dir, `npm ci`, `npm install --no-save <tarball>`
// (so the lockfiles never name the tarball and stay valid), its build, and a run against the
// portal emulator. Browsers: headless Chromium through playwright-core (from tests/node_modules).
//
//   cargo xtask build && cargo build -p emulator
//   node tests/packaging/run.mjs [--keep] [pack|types|node|plain|cdn|vite|vite-dev|webpack ...]
//
// Prints one line per environment, then `N passed, N failed` alone on the last line; exits 1 on
// any failure. Env: B24_PKG_DIR (default pkg/), B24_EMULATOR_BIN (default target/debug/emulator
// when built, else `cargo run -p emulator`), B24_CHROMIUM (default /usr/bin/chromium).
// --keep leaves the temp dir (scratch projects, tarball, logs) in place and prints its path.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startEmulator } from '../js/support/emulator.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const fixturesDir = path.join(here, 'fixtures');
const builtPkgDir = process.env.B24_PKG_DIR || path.join(repo, 'pkg');
if (!process.env.B24_EMULATOR_BIN) {
  const bin = path.join(repo, 'target', 'debug', 'emulator');
  if (fs.existsSync(bin)) process.env.B24_EMULATOR_BIN = bin;
}
const CHROMIUM = process.env.B24_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const SPA = 1268;
const NAME = 'b24-crm-item';

const argv = process.argv.slice(2);
const keep = argv.includes('--keep');
const only = argv.filter((a) => !a.startsWith('--'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'b24-packaging-'));
const servers = new Set(); // long-lived children (vite dev servers), killed on any exit
process.once('exit', () => {
  for (const child of servers) child.kill('SIGKILL');
  if (!keep) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Small helpers

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}
function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: expected ${e}, got ${a}`);
}

/** Runs a command; resolves {code, out} (stdout+stderr interleaved); never rejects on exit code. */
function run(cmd, args, { cwd, env, timeoutMs = 300_000, log } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => {
      out += `\n[run.mjs: killed after ${timeoutMs} ms]`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (log) fs.appendFileSync(log, `$ ${cmd} ${args.join(' ')}   (in ${cwd})\n${out}\n[exit ${code ?? signal}]\n\n`);
      resolve({ code: code ?? 1, out });
    });
  });
}

/** Runs a command that must succeed. */
async function must(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Failure(`\`${cmd} ${args.join(' ')}\` exited ${r.code}:\n${tail(r.out)}`);
  return r.out;
}

function tail(text, lines = 25) {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

const NPM_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=warn'];

/** A scratch copy of fixtures/<name> (without node_modules/dist), `npm ci`, the tarball on top. */
async function scratch(name, tarball, log, as = name) {
  const dir = path.join(tmp, as);
  fs.cpSync(path.join(fixturesDir, name), dir, {
    recursive: true,
    filter: (src) => !/[\\/](node_modules|dist|dist-dev)$/.test(src),
  });
  const lock = fs.readFileSync(path.join(dir, 'package-lock.json'), 'utf8');
  await must('npm', ['ci', ...NPM_FLAGS], { cwd: dir, log });
  await must('npm', ['install', '--no-save', ...NPM_FLAGS, tarball], { cwd: dir, log });
  check(fs.readFileSync(path.join(dir, 'package-lock.json'), 'utf8') === lock, 'installing the tarball changed package-lock.json');
  const changed = packed.files.filter((f) => !fs.readFileSync(path.join(dir, 'node_modules', NAME, f)).equals(fs.readFileSync(path.join(packed.snap, f))));
  check(changed.length === 0, `node_modules/${NAME} is not the packed package: ${changed} differ`);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The tarball

let packed; // { tarball, version, files, manifest }

async function waitForPkg() {
  // A concurrent `cargo xtask build` swaps pkg/ in; give it a moment to be complete.
  const need = ['package.json', 'index.js', 'index.js.map', 'b24_crm_item_bg.wasm', 'index.d.ts'];
  for (let i = 0; i < 120 && !need.every((f) => fs.existsSync(path.join(builtPkgDir, f))); i++) {
    await new Promise((r) => setTimeout(r, 1000));
  }
  check(need.every((f) => fs.existsSync(path.join(builtPkgDir, f))), `no complete package at ${builtPkgDir}: run \`cargo xtask build\``);
}

/** Relative files a module loads: static/dynamic imports and new URL('…', import.meta.url). */
function loadsOf(source) {
  const found = new Set();
  source = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[\s;{}])\/\/.*$/gm, '$1');
  const patterns = [
    /\bimport\s*(?:[\w*{}\s,$]+\sfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/g,
    /\bexport\s*[\w*{}\s,$]*\sfrom\s*['"](\.{1,2}\/[^'"]+)['"]/g,
    /\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g,
    /\bnew URL\(\s*['"]([^'":]+)['"]\s*,\s*import\.meta\.url\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.add(path.posix.normalize(m[1].replace(/^\.\//, '')));
  return found;
}

async function packTarball(log) {
  await waitForPkg();
  // Pack a snapshot, so a rebuild while this runs cannot mix two builds.
  // (pkg/ is swapped in whole by the build: copy until two reads agree.)
  const snap = path.join(tmp, 'pkg-snapshot');
  const digest = (dir) => fs.readdirSync(dir, { recursive: true }).map(String).sort()
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .map((f) => `${f}:${fs.readFileSync(path.join(dir, f)).toString('base64')}`).join('|');
  for (let i = 0; ; i++) {
    try {
      fs.rmSync(snap, { recursive: true, force: true });
      fs.cpSync(builtPkgDir, snap, { recursive: true });
      if (digest(snap) === digest(builtPkgDir)) break;
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    check(i < 20, `${builtPkgDir} keeps changing`);
    await new Promise((r) => setTimeout(r, 2000));
  }
  const out = await must('npm', ['pack', '--json', '--pack-destination', tmp, snap], { cwd: tmp, log });
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  const manifest = JSON.parse(fs.readFileSync(path.join(snap, 'package.json'), 'utf8'));
  packed = {
    tarball: path.join(tmp, info.filename),
    version: info.version,
    size: info.size,
    files: info.files.map((f) => f.path).sort(),
    manifest,
    snap,
  };
  return packed;
}

/** npm pack contents and package.json, as issue 7 asks. */
async function checkPack(log) {
  const { files, manifest: m, snap, size } = await packTarball(log);
  const problems = [];
  const need = (cond, msg) => { if (!cond) problems.push(msg); };

  // Every file the entry loads, transitively, plus the types, the README and package.json.
  const entry = m.exports?.['.']?.default ?? m.exports?.['.']?.import;
  need(typeof entry === 'string', 'exports["."] has no default/import target');
  const loaded = new Set();
  const queue = [path.posix.normalize(String(entry).replace(/^\.\//, ''))];
  while (queue.length) {
    const f = queue.shift();
    if (loaded.has(f)) continue;
    loaded.add(f);
    const full = path.join(snap, f);
    if (!fs.existsSync(full)) { problems.push(`the entry loads ${f}, which pkg/ does not have`); continue; }
    if (/\.m?js$/.test(f)) for (const dep of loadsOf(fs.readFileSync(full, 'utf8'))) queue.push(path.posix.join(path.posix.dirname(f), dep));
  }
  // (npm adds a LICENSE file by itself, listed or not.)
  const license = files.filter((f) => /^(licen[cs]e|copying)(\.\w+)?$/i.test(f));
  const expected = [...new Set([...loaded, 'index.js.map', 'index.d.ts', 'README.md', 'package.json', ...license])].sort();
  need(JSON.stringify(files) === JSON.stringify(expected), `npm pack has [${files}], expected exactly [${expected}]`);
  for (const f of ['index.js', 'b24_crm_item_bg.wasm']) need(loaded.has(f), `the entry does not load ${f}`);
  const listed = [...(m.files ?? [])].filter((f) => !license.includes(f)).sort();
  const wanted = expected.filter((f) => f !== 'package.json' && !license.includes(f));
  need(Array.isArray(m.files), '`files` allow-list missing');
  need(JSON.stringify(listed) === JSON.stringify(wanted), `\`files\` is [${listed}], expected [${wanted}]`);

  // package.json fields.
  need(m.name === NAME, `name is ${m.name}`);
  need(m.type === 'module', '`type` is not "module"');
  const dot = m.exports?.['.'];
  need(dot && typeof dot === 'object', 'exports["."] is not a conditions object');
  const conditions = dot ? Object.keys(dot) : [];
  need(conditions[0] === 'types', `exports["."] does not list \`types\` first: [${conditions}]`);
  need(conditions.at(-1) === 'default', `exports["."] does not end with \`default\`: [${conditions}]`);
  for (const [cond, target] of Object.entries(dot ?? {})) {
    const t = typeof target === 'string' ? target : null;
    need(t && files.includes(t.replace(/^\.\//, '')), `exports["."].${cond} → ${JSON.stringify(target)} is not in the tarball`);
  }
  need(m.exports?.['./package.json'] === './package.json', 'exports has no "./package.json"');
  for (const k of ['main', 'module', 'types']) need(!m[k] || files.includes(m[k].replace(/^\.\//, '')), `${k} → ${m[k]} is not in the tarball`);
  need(m.types === dot?.types, '`types` and exports["."].types differ');
  need(m.sideEffects === false, '`sideEffects` is not false');
  need(/^>=\s*20(\.|$)/.test(m.engines?.node ?? ''), `engines.node is ${m.engines?.node}, not >=20`);
  need(typeof m.license === 'string' && m.license.length > 0, 'no `license`');
  need(typeof m.repository?.url === 'string' || typeof m.repository === 'string', 'no `repository`');
  need(Array.isArray(m.keywords) && m.keywords.length >= 3, 'too few `keywords`');
  need(typeof m.description === 'string' && m.description.length > 0, 'no `description`');
  const lifecycle = ['preinstall', 'install', 'postinstall', 'prepare', 'preprepare', 'postprepare', 'prepublish'];
  const scripts = Object.keys(m.scripts ?? {}).filter((s) => lifecycle.includes(s));
  need(scripts.length === 0, `install scripts: ${scripts}`);
  need(!m.gypfile && !files.includes('binding.gyp'), 'a gyp build would run at install');
  for (const k of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies', 'bin']) {
    need(!m[k] || Object.keys(m[k]).length === 0, `unexpected \`${k}\``);
  }

  // The bundle opens with V8's compile hint, and its source map still points into the sources
  // past that line: the fetch call maps to runtime.js's send().
  const js = fs.readFileSync(path.join(snap, 'index.js'), 'utf8');
  need(js.startsWith('//# allFunctionsCalledOnLoad\n'), 'index.js does not open with `//# allFunctionsCalledOnLoad`');
  const map = JSON.parse(fs.readFileSync(path.join(snap, 'index.js.map'), 'utf8'));
  const fetchCall = originalOf(map, js, 'fetch(');
  need(fetchCall && /runtime\.js$/.test(fetchCall.source) && /\bfetch\(url, \{ method: 'POST'/.test(fetchCall.text ?? ''),
    `the source map puts index.js's fetch call at ${JSON.stringify(fetchCall)}, not at runtime.js's fetch(url, …)`);
  check(problems.length === 0, problems.join('; '));
  return `${files.length} files, ${(size / 1024).toFixed(1)} KiB packed; exports [${conditions}]; no install scripts${license.length ? '' : '; (no LICENSE file)'}; source map ok`;
}

/** Where the first `needle` of the generated `js` comes from, by the source map's mappings (source
 * path, 1-based line and that line's text), or null. A plain VLQ decoder: no dependency. */
function originalOf(map, js, needle) {
  const lines = js.split('\n');
  const line = lines.findIndex((l) => l.includes(needle));
  if (line < 0) return null;
  const column = lines[line].indexOf(needle);
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  // Source, original line and column run on across lines; the generated column restarts on each.
  let source = 0, oLine = 0, oColumn = 0, found = null;
  const groups = map.mappings.split(';');
  for (let g = 0; g <= line && g < groups.length; g++) {
    let gColumn = 0;
    for (const segment of groups[g].split(',')) {
      if (!segment) continue;
      const fields = [];
      let value = 0, shift = 0;
      for (const ch of segment) {
        const digit = B64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) { shift += 5; continue; }
        fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
      gColumn += fields[0];
      if (fields.length < 4) continue;
      source += fields[1];
      oLine += fields[2];
      oColumn += fields[3];
      if (g === line && gColumn <= column) {
        found = { source: map.sources[source], line: oLine + 1, text: map.sourcesContent?.[source]?.split('\n')[oLine] };
      }
    }
  }
  return found;
}

/** Runs `vite` (the dev server) in `dir` with `args` while `use(pageUrl)` runs. */
async function viteDev(dir, args, log, use) {
  const port = await freePort();
  const server = spawn(process.execPath, [path.join(dir, 'node_modules', 'vite', 'bin', 'vite.js'), ...args,
    '--host', '127.0.0.1', '--port', String(port), '--strictPort'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  servers.add(server);
  server.once('exit', () => servers.delete(server));
  let out = '';
  server.stdout.on('data', (d) => { out += d; });
  server.stderr.on('data', (d) => { out += d; });
  try {
    const deadline = Date.now() + 30_000;
    while (!/ready in/.test(out)) {
      check(server.exitCode === null, `vite exited ${server.exitCode}:\n${tail(out)}`);
      check(Date.now() < deadline, `vite did not start:\n${tail(out)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return await use(`http://localhost:${port}/`);
  } finally {
    server.kill('SIGTERM');
    fs.appendFileSync(log, `$ vite ${args.join(' ')} (dev server)\n${out}\n`);
  }
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Browsers

let browser;
async function getBrowser() {
  return (browser ??= await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }));
}

/**
 * Serves `root` at http://localhost:PORT/ from a fresh emulator (the API is then cross-origin, at
 * 127.0.0.1), opens the page, and drives window.lib (which each page sets from its imports).
 */
async function browserEnv(root, { wasmFrom, pageUrl, page: page_ }) {
  const emu = await startEmulator(['--no-limits', ...(root ? ['--static', `/=${root}`] : [])]);
  const context = await (await getBrowser()).newContext();
  try {
    const page = await context.newPage();
    const consoleLines = [];
    const wasm = [];
    const failed = [];
    page.on('console', (msg) => {
      // (HTTP errors are checked below from the responses: a NOT_FOUND answer is a 400.)
      if (['error', 'warning'].includes(msg.type()) && !msg.text().startsWith('Failed to load resource')) {
        consoleLines.push(`${msg.type()}: ${msg.text()}`);
      }
    });
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
    page.on('requestfailed', (req) => failed.push(`${req.url()}: ${req.failure()?.errorText}`));
    page.on('response', (res) => {
      const { pathname } = new URL(res.url());
      if (res.status() >= 400 && !pathname.startsWith('/rest/') && pathname !== '/favicon.ico') failed.push(`${res.url()}: HTTP ${res.status()}`);
      if (pathname.endsWith('.wasm')) {
        wasm.push({ path: pathname, host: new URL(res.url()).hostname, status: res.status(), type: res.headers()['content-type'] });
      }
    });
    await page.goto(pageUrl ?? `http://localhost:${emu.port}/${page_ ?? ''}`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 15_000 }).catch(() => {
      throw new Failure(`the page did not load the package: ${[...consoleLines, ...failed].join('; ') || 'no error shown'}`);
    });
    const [a, b, c] = (await emu.control.state()).items[SPA];
    const r = await page.evaluate(async ([webhookUrl, t, a, b, c]) => {
      const { configure, deleteItem, deleteItems, B24Error, isInsideBitrix24 } = window.lib;
      const plain = (e) => ({
        isB24Error: e instanceof B24Error, isError: e instanceof Error, name: e.name, code: e.code,
        status: e.status, kind: e.kind, retryable: e.retryable, method: e.method,
      });
      const out = { inside: isInsideBitrix24() };
      out.unconfigured = await deleteItem(t, a).then(() => 'resolved', plain);
      configure({ webhookUrl });
      const one = await deleteItem(t, a);
      out.deleted = { entityTypeId: one.entityTypeId, id: one.id };
      out.notFound = await deleteItem(t, a).then(() => 'resolved', plain);
      out.invalid = await deleteItem(t, '1e3').then(() => 'resolved', plain);
      const report = await deleteItems(t, [b, String(c)]);
      out.bulk = { deleted: [...report.deleted].sort((x, y) => x - y), notFound: report.notFound, failed: report.failed.length };
      return out;
    }, [emu.webhook, SPA, a, b, c]);

    same(r.inside, false, 'isInsideBitrix24()');
    same(r.unconfigured.code, 'NOT_CONFIGURED', 'unconfigured deleteItem');
    same(r.deleted, { entityTypeId: SPA, id: a }, 'deleteItem result');
    same(r.notFound, { isB24Error: true, isError: true, name: 'B24Error', code: 'NOT_FOUND', status: 400, kind: 'api', retryable: false, method: 'crm.item.delete' }, 'second delete');
    same([r.invalid.isB24Error, r.invalid.code], [true, 'INVALID_ARGUMENT'], 'deleteItem(t, "1e3")');
    same(r.bulk, { deleted: [b, c], notFound: [], failed: 0 }, 'deleteItems report');
    const left = (await emu.control.state()).items[SPA];
    check(![a, b, c].some((id) => left.includes(id)), `the portal still has some of ${[a, b, c]}`);

    check(wasm.length === 1, `expected one wasm fetch, saw ${JSON.stringify(wasm)}`);
    const [w] = wasm;
    check(w.status === 200 && w.type === 'application/wasm', `wasm ${w.path}: HTTP ${w.status}, ${w.type}`);
    wasmFrom(w.path, w.host);
    check(failed.length === 0, `failed requests: ${failed.join('; ')}`);
    check(consoleLines.length === 0, `console: ${consoleLines.join('; ')}`);
    return `deleteItem, NOT_FOUND instanceof B24Error, deleteItems; wasm ${w.host === 'localhost' ? '' : `//${w.host}`}${w.path}`;
  } finally {
    await context.close().catch(() => {});
    await emu.stop();
  }
}

/** gzip size of everything a bundler emitted but the HTML: what the package adds to a page, plus a few lines. */
function gzipOfDist(dist) {
  const files = fs.readdirSync(dist, { recursive: true }).map(String).filter((f) => /\.(m?js|wasm)$/.test(f));
  const bytes = files.reduce((n, f) => n + zlib.gzipSync(fs.readFileSync(path.join(dist, f)), { level: 9 }).length, 0);
  return `${(bytes / 1024).toFixed(1)} KiB gzip in ${files.length} files`;
}

/** The wasm a bundler emitted into dist/ (exactly one). */
function emittedWasm(dist) {
  const all = fs.readdirSync(dist, { recursive: true }).map(String).filter((f) => f.endsWith('.wasm'));
  check(all.length === 1, `dist/ should hold one .wasm, has [${all}]`);
  return '/' + all[0].split(path.sep).join('/');
}

// ---------------------------------------------------------------------------------------------
// Environments

const environments = {
  async pack(log) {
    return checkPack(log);
  },

  async types(log) {
    // The same checks with every TypeScript the fixture pins: typescript (5.x, JS) and
    // typescript7 (npm:typescript@7, the native compiler), under `tsc --strict`.
    const dir = await scratch('types', packed.tarball, log);
    // ok.ts must use every export of index.d.ts (so a new export gets a consumer here too).
    const dts = fs.readFileSync(path.join(dir, 'node_modules', NAME, 'index.d.ts'), 'utf8');
    const exported = [...new Set([...dts.matchAll(/^export\s+(?:declare\s+)?(?:function|class|interface|type|const|let|enum)\s+(\w+)/gm)].map((m) => m[1]))];
    const ok = fs.readFileSync(path.join(dir, 'ok.ts'), 'utf8');
    const unused = exported.filter((n) => !new RegExp(`\\b${n}\\b`).test(ok));
    check(exported.length > 0 && unused.length === 0, `ok.ts does not use ${unused.join(', ')}`);
    // All misuse files go through one tsc run (each is its own module, so its errors are its own):
    // every file must fail, on its `// @expect-error` line and nowhere else.
    const misuse = fs.readdirSync(path.join(dir, 'misuse')).filter((f) => f.endsWith('.ts')).sort().map((f) => `misuse/${f}`);
    check(misuse.length > 0, 'no misuse/*.ts');
    fs.writeFileSync(path.join(dir, 'tsconfig.misuse.json'), JSON.stringify({ extends: './tsconfig.json', files: misuse }));
    const want = Object.fromEntries(misuse.map((rel) => {
      const lines = fs.readFileSync(path.join(dir, rel), 'utf8').split('\n');
      const marked = lines.flatMap((l, i) => (l.includes('@expect-error') ? [i + 1] : []));
      check(marked.length === 1, `${rel}: mark exactly one line with // @expect-error`);
      return [rel, marked[0]];
    }));

    const compilers = Object.keys(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).devDependencies)
      .filter((d) => /^typescript\d*$/.test(d));
    const summaries = [];
    let codes;
    for (const pkgName of compilers) {
      const tsc = path.join(dir, 'node_modules', pkgName, 'bin', 'tsc');
      const version = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', pkgName, 'package.json'), 'utf8')).version;
      const ts = `typescript ${version}`;
      const modes = [];
      for (const config of ['tsconfig.json', 'tsconfig.node16.json']) {
        const r = await run(process.execPath, [tsc, '-p', config, '--traceResolution'], { cwd: dir, log });
        const errors = r.out.split('\n').filter((l) => /error TS\d+/.test(l));
        check(r.code === 0 && errors.length === 0, `${ts}: ok.ts does not type-check with ${config}:\n${errors.join('\n') || tail(r.out)}`);
        // The package's own exports → types condition must be what resolved it.
        const start = r.out.indexOf(`======== Resolving module '${NAME}'`);
        const end = r.out.indexOf(`======== Module name '${NAME}'`, start);
        const block = start < 0 ? '' : r.out.slice(start, end < 0 ? undefined : end + 400);
        check(/Matched 'exports' condition 'types'/.test(block) && /Resolved under condition 'types'/.test(block)
          && block.includes(`node_modules/${NAME}/index.d.ts`), `${ts}, ${config}: ${NAME} did not resolve through exports → types:\n${tail(block, 15)}`);
        modes.push(JSON.parse(fs.readFileSync(path.join(dir, config), 'utf8')).compilerOptions.moduleResolution);
      }
      const r = await run(process.execPath, [tsc, '-p', 'tsconfig.misuse.json'], { cwd: dir, log });
      check(r.code !== 0, `${ts}: tsc exited 0 on ${misuse.join(', ')}`);
      const errors = [...r.out.matchAll(/^(\S+?)\((\d+),\d+\): error (TS\d+)/gm)].map((m) => ({ file: m[1], line: +m[2], code: m[3] }));
      check(errors.length > 0 && errors.every((e) => misuse.includes(e.file)), `${ts}: unexpected tsc output:\n${tail(r.out)}`);
      codes = misuse.map((rel) => {
        const mine = errors.filter((e) => e.file === rel);
        check(mine.length > 0, `${ts}: ${rel} type-checks, but must not`);
        check(mine.every((e) => e.line === want[rel]), `${ts}: ${rel}: expected errors on line ${want[rel]} only, got:\n${r.out.split('\n').filter((l) => l.startsWith(rel)).join('\n')}`);
        return `${path.basename(rel, '.ts')} ${mine.map((e) => e.code).join('+')}`;
      });
      summaries.push(`${version} (${modes.join(', ')})`);
    }
    check(compilers.length > 0, 'the fixture pins no typescript');
    return `tsc --strict ${summaries.join(', ')}: ok.ts (all ${exported.length} exports) passes; ${misuse.length} misuse files fail (${codes.join(', ')})`;
  },

  async node(log) {
    const dir = await scratch('node', packed.tarball, log);
    const emu = await startEmulator(['--no-limits']);
    try {
      const ids = (await emu.control.state()).items[SPA].slice(0, 6);
      const { access_token: token } = await emu.control.token();
      const r = await run(process.execPath, ['check.mjs'], {
        cwd: dir, log, timeoutMs: 60_000,
        env: { B24_WEBHOOK: emu.webhook, B24_PORTAL: emu.url, B24_TOKEN: token, B24_IDS: ids.join(',') },
      });
      check(r.code === 0, `check.mjs exited ${r.code}:\n${tail(r.out)}`);
      const last = JSON.parse(r.out.trim().split('\n').at(-1));
      check(last.ok === true, `check.mjs: ${r.out}`);
      const left = (await emu.control.state()).items[SPA];
      check(!ids.some((id) => left.includes(id)), `the portal still has some of ${ids}`);
      // require() from CommonJS, where Node has require(esm) (20.19+).
      const [major, minor] = process.versions.node.split('.').map(Number);
      let cjs = '';
      if (major > 20 || (major === 20 && minor >= 19)) {
        const c = await run(process.execPath, ['require.cjs'], { cwd: dir, log, timeoutMs: 30_000 });
        check(c.code === 0 && c.out.trim() === 'ok', `require('${NAME}') from CommonJS: exit ${c.code}\n${tail(c.out)}`);
        cjs = ', require() from CommonJS';
      }
      return `node ${last.node}: ${last.checks.join(', ')}${cjs}`;
    } finally {
      await emu.stop();
    }
  },

  async plain(log) {
    const dir = await scratch('plain', packed.tarball, log);
    return browserEnv(dir, {
      wasmFrom: (p) => same(p, `/node_modules/${NAME}/b24_crm_item_bg.wasm`, 'wasm URL'),
    });
  },

  async cdn(log) {
    // The plain fixture's cdn.html: the package from another origin, as from unpkg or jsDelivr.
    const dir = await scratch('plain', packed.tarball, log, 'cdn');
    return browserEnv(dir, {
      page: 'cdn.html',
      wasmFrom: (p, host) => same([host, p], ['127.0.0.1', `/node_modules/${NAME}/b24_crm_item_bg.wasm`], 'wasm host and path'),
    });
  },

  async vite(log) {
    const dir = await scratch('vite', packed.tarball, log);
    const out = await must('npm', ['run', 'build'], { cwd: dir, log });
    const warnings = out.split('\n').filter((l) => /\(!\)|warn/i.test(l) && !/install-scripts/.test(l));
    check(warnings.length === 0, `vite build warns:\n${warnings.join('\n')}`);
    const wasm = emittedWasm(path.join(dir, 'dist'));
    const version = out.match(/vite v(\S+)/)?.[1];
    const s = await browserEnv(path.join(dir, 'dist'), { wasmFrom: (p) => same(p, wasm, 'wasm URL') });
    return `vite ${version} build, no warnings, ${gzipOfDist(path.join(dir, 'dist'))}; ${s}`;
  },

  async 'vite-dev'(log) {
    // `vite` (the dev server). Out of the box it pre-bundles the package into .vite/deps/, away from
    // its wasm: the call must then reject with a B24Error that says what to do. With the one line of
    // config that says (fixtures/vite/vite.config.dev.js), everything must work.
    const dir = await scratch('vite', packed.tarball, log, 'vite-dev');
    const bare = await viteDev(dir, [], log, async (pageUrl) => {
      const emu = await startEmulator(['--no-limits']);
      const context = await (await getBrowser()).newContext();
      try {
        const page = await context.newPage();
        await page.goto(pageUrl);
        await page.waitForFunction(() => window.ready === true, null, { timeout: 15_000 });
        const e = await page.evaluate(async (webhookUrl) => {
          window.lib.configure({ webhookUrl });
          return window.lib.deleteItem(1268, 1).then(() => null, (e) => ({
            isB24Error: e instanceof window.lib.B24Error, code: e.code, kind: e.kind, method: e.method, description: e.description,
          }));
        }, emu.webhook);
        check(e, 'deleteItem resolved through the pre-bundled package');
        check(e.isB24Error && e.code === 'NETWORK_ERROR' && e.kind === 'network' && e.method === 'crm.item.delete',
          `a wasm that cannot load must reject with a B24Error NETWORK_ERROR, got ${JSON.stringify(e)}`);
        check(e.description.includes('optimizeDeps'), `the error does not say how to fix it: ${e.description}`);
        return 'pre-bundled: B24Error NETWORK_ERROR naming optimizeDeps.exclude';
      } finally {
        await context.close().catch(() => {});
        await emu.stop();
      }
    });
    const fixed = await viteDev(dir, ['--config', 'vite.config.dev.js'], log, (pageUrl) => browserEnv(null, {
      pageUrl,
      wasmFrom: (p) => same(p, `/node_modules/${NAME}/b24_crm_item_bg.wasm`, 'wasm URL'),
    }));
    return `${bare}; with optimizeDeps.exclude: ${fixed}`;
  },

  async webpack(log) {
    const dir = await scratch('webpack', packed.tarball, log);
    const out = await must('npm', ['run', 'build'], { cwd: dir, log });
    check(/compiled successfully/.test(out), `webpack did not compile cleanly:\n${tail(out)}`);
    const wasm = emittedWasm(path.join(dir, 'dist'));
    const version = out.match(/webpack (5\.\S+) compiled/)?.[1];
    const s = await browserEnv(path.join(dir, 'dist'), { wasmFrom: (p) => same(p, wasm, 'wasm URL') });
    // The development build too (eval source maps, unminified, named chunks).
    const devOut = await must('npm', ['run', 'build:dev'], { cwd: dir, log });
    check(/compiled successfully/.test(devOut), `webpack --mode development did not compile cleanly:\n${tail(devOut)}`);
    const devWasm = emittedWasm(path.join(dir, 'dist-dev'));
    await browserEnv(path.join(dir, 'dist-dev'), { wasmFrom: (p) => same(p, devWasm, 'wasm URL (development build)') });
    return `webpack ${version} production build, no warnings, ${gzipOfDist(path.join(dir, 'dist'))}; ${s}; the development build too`;
  },
};

// ---------------------------------------------------------------------------------------------

const names = only.length ? only : Object.keys(environments);
for (const n of names) {
  if (!environments[n]) {
    console.error(`unknown environment ${n}; known: ${Object.keys(environments).join(', ')}`);
    process.exit(2);
  }
}
let passed = 0;
let failed = 0;
const width = Math.max(...names.map((n) => n.length));
try {
  if (!names.includes('pack')) await packTarball(path.join(tmp, 'pack.log'));
  for (const name of names) {
    const log = path.join(tmp, `${name}.log`);
    const t0 = Date.now();
    let line;
    try {
      const summary = await environments[name](log);
      passed++;
      line = `ok    ${name.padEnd(width)}  ${summary}`;
    } catch (e) {
      failed++;
      const msg = e instanceof Failure ? e.message : e.stack || String(e);
      line = `FAIL  ${name.padEnd(width)}  ${msg.split('\n').join('\n        ')}`;
      if (keep) line += `\n        (log: ${log})`;
    }
    console.log(`${line}  [${((Date.now() - t0) / 1000).toFixed(1)} s]`);
  }
} catch (e) {
  failed++;
  console.log(`FAIL  setup  ${e instanceof Failure ? e.message : e.stack || e}`);
} finally {
  await browser?.close().catch(() => {});
}
if (keep) console.log(`(kept ${tmp})`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
