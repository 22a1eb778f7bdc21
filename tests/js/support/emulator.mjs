// Start the Bitrix24 portal emulator (the `emulator/` crate) from JS tests. Node >= 20, no deps.
//
//   import { startEmulator } from './support/emulator.mjs';
//   const emu = await startEmulator(['--burst', '0']);
//   await fetch(emu.webhook + 'crm.item.delete', { method: 'POST', body: ... });
//   const state = await emu.control.state();
//   await emu.stop();
//
// The binary is $B24_EMULATOR_BIN when set, else `cargo run -q -p emulator --`.
// It always gets `--port 0 --control` plus `args`.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const running = new Set();

function killAll() {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { killAll(); process.exit(130); });
}

/**
 * Spawn the emulator and wait for its two start-up lines.
 * @param {string[]} args extra command-line flags
 * @param {{ timeoutMs?: number }} [opts]
 */
export async function startEmulator(args = [], opts = {}) {
  const timeoutMs = opts.timeoutMs ?? 600_000; // a cold `cargo run` may compile first
  const bin = process.env.B24_EMULATOR_BIN;
  const cmd = bin || 'cargo';
  const argv = [...(bin ? [] : ['run', '-q', '-p', 'emulator', '--']), '--port', '0', '--control', ...args];
  const child = spawn(cmd, argv, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); }));

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8000); });

  const { url, webhook } = await new Promise((resolve, reject) => {
    let buf = '';
    let url = null;
    const timer = setTimeout(() => fail(new Error(`emulator did not start within ${timeoutMs} ms`)), timeoutMs);
    function fail(err) {
      clearTimeout(timer);
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      err.message += stderr ? `\n--- emulator stderr ---\n${stderr}` : '';
      reject(err);
    }
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const l = line.match(/^listening on (http:\/\/\S+)$/);
        if (l) url = l[1];
        const w = line.match(/^webhook: (http:\/\/\S+)$/);
        if (w && url) {
          clearTimeout(timer);
          resolve({ url, webhook: w[1] });
        }
      }
    });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`emulator exited early (code ${code}, signal ${signal})`)));
  });
  child.stdout.resume(); // keep draining

  async function ctl(method, route, body) {
    const res = await fetch(url + '/_emulator/' + route, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`control ${method} ${route} -> ${res.status}: ${text}`);
    return data;
  }

  const control = {
    state: () => ctl('GET', 'state'),
    reset: (body = {}) => ctl('POST', 'reset', body),
    items: (entityTypeId, count) => ctl('POST', 'items', { entityTypeId, count }),
    deny: (entityTypeId, ids) => ctl('POST', 'deny', { entityTypeId, ids }),
    token: (body = {}) => ctl('POST', 'oauth/token', body),
    faults: (body) => ctl('POST', 'faults', body),
    clearFaults: () => ctl('DELETE', 'faults'),
    expireTokens: () => ctl('POST', 'expire-tokens', {}),
    config: (body) => ctl('POST', 'config', body),
  };

  let stopping = null;
  async function stop() {
    if (!stopping) {
      stopping = (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
        await exited;
        clearTimeout(t);
      })();
    }
    return stopping;
  }

  const port = Number(new URL(url).port);
  return { url, webhook, port, control, stop, process: child };
}
