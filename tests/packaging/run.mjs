#!/usr/bin/env node
// The npm package as users meet it (issue 7, "Package" and "TypeScript"): `npm pack` of pkg/, then
// for each fixture under fixtures/<name>/ — a tiny project with a pinned package.json and a committed
// package-lock.json — a scratch copy in a temp dir, `npm ci`, `npm install --no-save <tarball>`
// (so the lockfiles never name the tarball and stay valid), its build, and a run against the
// portal emulator. Browsers: headless Chromium through playwright-core (from tests/node_modules).
//
//   cargo xtask build && cargo build -p emulator
//   node tests/packaging/run.mjs [--keep] [pack|types|node|plain|cdn|csp|vite|vite-dev|webpack|webpack-dev|nuxt-dev|nuxt ...]
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
// Long-lived servers (dev and preview servers), each in its own process group (`nuxt preview` and
// `nuxt dev` start servers of their own): the groups are killed on any exit.
const servers = new Set();
const killGroup = (child, signal) => { try { process.kill(-child.pid, signal); } catch {} };
process.once('exit', () => {
  for (const child of servers) killGroup(child, 'SIGKILL');
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

/** The scratch copy of fixtures/<name>, made once per run (environments of one fixture share it). */
const projects = new Map();
function project(name, log) {
  if (!projects.has(name)) projects.set(name, scratch(name, packed.tarball, log));
  return projects.get(name);
}

/** A scratch copy of fixtures/<name> (without node_modules/dist), `npm ci`, the tarball on top. */
async function scratch(name, tarball, log) {
  const dir = path.join(tmp, name);
  fs.cpSync(path.join(fixturesDir, name), dir, {
    recursive: true,
    filter: (src) => !/[\\/](node_modules|dist|dist-dev|\.nuxt|\.output)$/.test(src),
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
  const need = ['package.json', 'index.js', 'index.js.map', 'index.d.ts'];
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
  // Self-contained: the entry loads nothing beside itself that a bundler, dev server or CDN must find.
  need(JSON.stringify([...loaded]) === '["index.js"]', `the entry loads [${[...loaded]}], expected only itself`);
  const entrySource = fs.readFileSync(path.join(snap, 'index.js'), 'utf8');
  for (const [what, re] of [['import.meta', /\bimport\.meta\b/], ['a dynamic import()', /\bimport\s*\(/], ['fetch of a .wasm', /\.wasm\b/]]) {
    need(!re.test(entrySource), `index.js has ${what}: something beside it would have to be found`);
  }
  need(!files.some((f) => f.endsWith('.wasm')), `the tarball has a .wasm file: [${files}]`);
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

/**
 * Runs a server (a dev server, or a build's preview) `node <script> ...args` in `dir` while
 * `use(pageUrl)` runs: `args(port)` gives its arguments; it is ready when its page answers 200.
 */
async function serve(dir, script, args, log, use, { env } = {}) {
  const port = await freePort();
  const argv = [path.join(dir, script), ...args(port)];
  const server = spawn(process.execPath, argv, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  servers.add(server);
  // Done when its output ends: every process of the group has gone (or closed it).
  const ended = new Promise((r) => server.stdout.once('close', r));
  let out = '';
  server.stdout.on('data', (d) => { out += d; });
  server.stderr.on('data', (d) => { out += d; });
  const pageUrl = `http://localhost:${port}/`;
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      check(server.exitCode === null, `${script} exited ${server.exitCode}:\n${tail(out)}`);
      check(Date.now() < deadline, `${script} did not answer at ${pageUrl}:\n${tail(out)}`);
      const status = await fetch(pageUrl).then((r) => r.status, () => 0);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    return await use(pageUrl, () => out);
  } finally {
    killGroup(server, 'SIGTERM');
    const hard = setTimeout(() => killGroup(server, 'SIGKILL'), 10_000);
    await ended;
    clearTimeout(hard);
    servers.delete(server);
    fs.appendFileSync(log, `$ node ${argv.join(' ')}   (in ${dir}, a server)\n${out}\n`);
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
 * 127.0.0.1), or opens `pageUrl`, and drives window.lib (which each page sets from its imports).
 * `entry`: the URL path the page must load the package's index.js from (no bundler); `statics`:
 * more emulator mounts; `query`: given the emulator's port, the page's query string.
 */
async function browserEnv(root, { pageUrl, page: page_, entry, statics = [], query }) {
  const emu = await startEmulator(['--no-limits', ...(root ? ['--static', `/=${root}`] : []), ...statics.flatMap((m) => ['--static', m])]);
  const context = await (await getBrowser()).newContext();
  try {
    const page = await context.newPage();
    const consoleLines = [];
    const loaded = [];
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
      const url = new URL(res.url());
      if (url.pathname.startsWith('/rest/')) return;
      if (res.status() >= 400 && url.pathname !== '/favicon.ico') failed.push(`${res.url()}: HTTP ${res.status()}`);
      loaded.push(`${url.hostname}${url.pathname}`);
    });
    const url = pageUrl ?? `http://localhost:${emu.port}/${page_ ?? ''}${query ? `?${query(emu.port)}` : ''}`;
    await page.goto(url);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 60_000 }).catch(() => {
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

    // Self-contained: no wasm (or anything else of the package's) fetched beside the module.
    const wasm = loaded.filter((p) => p.endsWith('.wasm'));
    check(wasm.length === 0, `the page fetched ${wasm}`);
    if (entry) check(loaded.includes(entry), `the package's index.js was not loaded from ${entry}: [${loaded}]`);
    check(failed.length === 0, `failed requests: ${failed.join('; ')}`);
    check(consoleLines.length === 0, `console: ${consoleLines.join('; ')}`);
    return `deleteItem, NOT_FOUND instanceof B24Error, deleteItems${entry ? `; the package from ${entry}` : ''}; no wasm fetched`;
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

/** The version of `dep` installed in `dir`. */
function installedVersion(dir, dep) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', dep, 'package.json'), 'utf8')).version;
}

const NUXT = path.join('node_modules', 'nuxt', 'bin', 'nuxt.mjs');
const NUXT_ENV = { NUXT_TELEMETRY_DISABLED: '1', CI: '1' };

/** A Nuxt page: its server-rendered HTML says the server imported the package, then the browser deletes. */
async function nuxtPage(dir, pageUrl, what) {
  const html = await (await fetch(pageUrl)).text();
  check(html.includes('rendered by the server, inside Bitrix24: false'), `${what}: the page was not rendered by the server with the package:\n${html.slice(0, 500)}`);
  const visits = await untilStable(pageUrl);
  const s = await browserEnv(null, { pageUrl });
  return `nuxt ${installedVersion(dir, 'nuxt')} (${what}): the server render imported it; ${s}${visits > 1 ? ` (after ${visits - 1} visit(s) on which the dev server reloaded the page)` : ''}`;
}

/**
 * Visits `pageUrl` until a visit is not reloaded within 3 s of the page being ready: a Vite dev
 * server that finds a dependency on the first visit optimizes it and reloads the page once.
 * Resolves the number of visits.
 */
async function untilStable(pageUrl) {
  for (let visit = 1; visit <= 3; visit++) {
    const context = await (await getBrowser()).newContext();
    try {
      const page = await context.newPage();
      let documents = 0; // (a router's replaceState is a navigation too, but no new document)
      page.on('domcontentloaded', () => { documents++; });
      await page.goto(pageUrl);
      await page.waitForFunction(() => window.ready === true, null, { timeout: 60_000 });
      await new Promise((r) => setTimeout(r, 3000));
      if (documents === 1) return visit;
    } finally {
      await context.close().catch(() => {});
    }
  }
  throw new Failure(`${pageUrl} kept reloading`);
}

/**
 * A page of `dir` where the package loads but WebAssembly cannot be compiled: every call (the
 * module's functions, a Client's, init(), a second call) must reject WASM_UNAVAILABLE (config,
 * status 0, not retryable, no attempt) with a description matching `reason`, and nothing is sent.
 */
async function wasmUnavailable(dir, pageName, reason) {
  const emu = await startEmulator(['--no-limits', '--static', `/=${dir}`]);
  const context = await (await getBrowser()).newContext();
  try {
    const page = await context.newPage();
    const sent = [];
    page.on('request', (req) => { if (new URL(req.url()).pathname.startsWith('/rest/')) sent.push(req.url()); });
    await page.goto(`http://localhost:${emu.port}/${pageName}`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 15_000 });
    const before = (await emu.control.state()).requests.total;
    const [id] = (await emu.control.state()).items[SPA];
    const calls = await page.evaluate(async ([webhookUrl, t, id]) => {
      const { configure, deleteItem, deleteItems, Client, B24Error, init } = window.lib;
      const plain = (e) => ({ isB24Error: e instanceof B24Error, code: e.code, kind: e.kind, status: e.status, retryable: e.retryable,
        attempts: e.attempts, method: e.method, description: e.description, cause: String(e.cause) });
      configure({ webhookUrl });
      const settle = (p) => p.then(() => 'resolved', plain);
      return {
        deleteItem: await settle(deleteItem(t, id)),
        deleteItems: await settle(deleteItems(t, [id])),
        client: await settle(new Client({ webhookUrl }).deleteItem(t, id)),
        init: await settle(init()),
        again: await settle(deleteItem(t, id)),
      };
    }, [emu.webhook, SPA, id]);
    const methods = { deleteItem: 'crm.item.delete', deleteItems: 'batch', client: 'crm.item.delete', init: '', again: 'crm.item.delete' };
    for (const [call, e] of Object.entries(calls)) {
      check(e !== 'resolved', `${pageName}: ${call} resolved`);
      const { description, cause, ...rest } = e;
      same(rest, { isB24Error: true, code: 'WASM_UNAVAILABLE', kind: 'config', status: 0, retryable: false, attempts: 0, method: methods[call] }, `${pageName}: ${call}`);
      check(reason.test(description), `${pageName}: ${call}: the description ${JSON.stringify(description)} does not match ${reason}`);
    }
    same((await emu.control.state()).requests.total, before, `${pageName}: requests the emulator saw`);
    check(sent.length === 0, `${pageName}: requests sent: ${sent}`);
    check((await emu.control.state()).items[SPA].includes(id), `${pageName}: item ${id} was deleted`);
    const cause = calls.deleteItem.cause === 'undefined' ? '' : ` (the cause: a ${calls.deleteItem.cause.split(':')[0]})`;
    return `${Object.keys(calls).length} calls rejected WASM_UNAVAILABLE, nothing sent${cause}`;
  } finally {
    await context.close().catch(() => {});
    await emu.stop();
  }
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
    const dir = await project('types', log);
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
    const dir = await project('node', log);
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
    const dir = await project('plain', log);
    return browserEnv(dir, { entry: `localhost/node_modules/${NAME}/index.js` });
  },

  async cdn(log) {
    // The plain fixture's cdn.html: the package's files under /npm/NAME@VERSION/ on another origin
    // (127.0.0.1, the page being on localhost), imported by absolute URL, as from unpkg or jsDelivr.
    const dir = await project('plain', log);
    const at = `/npm/${NAME}@${packed.version}`;
    return browserEnv(dir, {
      page: 'cdn.html',
      statics: [`${at}=${path.join(dir, 'node_modules', NAME)}`],
      query: (port) => `from=${encodeURIComponent(`http://127.0.0.1:${port}${at}/index.js`)}`,
      entry: `127.0.0.1${at}/index.js`,
    });
  },

  async csp(log) {
    // Where WebAssembly cannot be compiled, every call rejects WASM_UNAVAILABLE before any request,
    // naming the cause and the fix: a meta CSP whose script-src lacks 'wasm-unsafe-eval', and an
    // engine without WebAssembly (deleted before the import). With the fix the page works.
    const dir = await project('plain', log);
    const policy = await wasmUnavailable(dir, 'csp.html', /the page's Content-Security-Policy .*add 'wasm-unsafe-eval' to its script-src/);
    const missing = await wasmUnavailable(dir, 'no-wasm.html', /has no WebAssembly/);
    // Any other failure is not taken for a policy: it says what the engine said.
    const other = await wasmUnavailable(dir, 'wasm-fails.html', /^could not compile or instantiate the WebAssembly module: Out of memory/);
    const fixed = await browserEnv(dir, { page: 'csp-allowed.html' });
    return `script-src 'self': ${policy}; no WebAssembly: ${missing}; instantiate rejects otherwise: ${other}; script-src 'self' 'wasm-unsafe-eval': ${fixed}`;
  },

  async vite(log) {
    const dir = await project('vite', log);
    const out = await must('npm', ['run', 'build'], { cwd: dir, log });
    const warnings = out.split('\n').filter((l) => /\(!\)|warn/i.test(l) && !/install-scripts/.test(l));
    check(warnings.length === 0, `vite build warns:\n${warnings.join('\n')}`);
    const version = out.match(/vite v(\S+)/)?.[1];
    const s = await browserEnv(path.join(dir, 'dist'), {});
    return `vite ${version} build, no config, no warnings, ${gzipOfDist(path.join(dir, 'dist'))}; ${s}`;
  },

  async 'vite-dev'(log) {
    // `vite` (the dev server), no config: it pre-bundles the package into node_modules/.vite/deps/.
    const dir = await project('vite', log);
    const bin = path.join('node_modules', 'vite', 'bin', 'vite.js');
    return serve(dir, bin, (port) => ['--host', '127.0.0.1', '--port', String(port), '--strictPort'], log,
      async (pageUrl, out) => {
        const s = await browserEnv(null, { pageUrl });
        return `vite ${out().match(/VITE v(\S+)/)?.[1]} dev server, no config: ${s}`;
      });
  },

  async webpack(log) {
    const dir = await project('webpack', log);
    const out = await must('npm', ['run', 'build'], { cwd: dir, log });
    check(/compiled successfully/.test(out), `webpack did not compile cleanly:\n${tail(out)}`);
    const version = out.match(/webpack (5\.\S+) compiled/)?.[1];
    const s = await browserEnv(path.join(dir, 'dist'), {});
    // The development build too (eval source maps, unminified, named chunks).
    const devOut = await must('npm', ['run', 'build:dev'], { cwd: dir, log });
    check(/compiled successfully/.test(devOut), `webpack --mode development did not compile cleanly:\n${tail(devOut)}`);
    await browserEnv(path.join(dir, 'dist-dev'), {});
    return `webpack ${version} production build, no warnings, ${gzipOfDist(path.join(dir, 'dist'))}; ${s}; the development build too`;
  },

  async 'webpack-dev'(log) {
    // `webpack serve` (webpack-dev-server), the page's index.html served from the project folder.
    const dir = await project('webpack', log);
    const bin = path.join('node_modules', 'webpack-cli', 'bin', 'cli.js');
    return serve(dir, bin, (port) => ['serve', '--mode', 'development', '--static', '.', '--host', 'localhost', '--port', String(port), '--no-open'], log,
      async (pageUrl, out) => {
        check(/compiled successfully/.test(out()), `webpack serve did not compile cleanly:\n${tail(out())}`);
        return `webpack-dev-server ${installedVersion(dir, 'webpack-dev-server')}: ${await browserEnv(null, { pageUrl })}`;
      });
  },

  async 'nuxt-dev'(log) {
    // `nuxt dev`: the server render imports the package in Node (vite-node), the browser calls it.
    const dir = await project('nuxt', log);
    return serve(dir, NUXT, (port) => ['dev', '--host', '127.0.0.1', '--port', String(port)], log,
      (pageUrl) => nuxtPage(dir, pageUrl, 'nuxt dev'), { env: NUXT_ENV });
  },

  async nuxt(log) {
    // `nuxt build`, then `nuxt preview` (node .output/server/index.mjs): the server render imports
    // the package from .output/server/node_modules, in Node.
    const dir = await project('nuxt', log);
    const out = await must(process.execPath, [NUXT, 'build'], { cwd: dir, log, env: NUXT_ENV });
    check(/Build complete/.test(out), `nuxt build:\n${tail(out)}`);
    check(fs.existsSync(path.join(dir, '.output', 'server', 'node_modules', NAME, 'index.js')), `the server build does not hold ${NAME}`);
    return serve(dir, NUXT, (port) => ['preview', '--port', String(port)], log,
      (pageUrl) => nuxtPage(dir, pageUrl, 'nuxt build + preview'), { env: { ...NUXT_ENV, HOST: '127.0.0.1' } });
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
