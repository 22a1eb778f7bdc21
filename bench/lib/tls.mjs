// A loopback HTTPS server with a self-signed certificate made at bench time (openssl).
// Either it proxies every request to the emulator (`target`), or it answers `crm.item.delete`
// itself like a portal would (`target` unset). Either way it counts CORS preflights, and the
// proxy counts the statuses it passed on (`stats.status`, e.g. the emulator's HTML 504 pages).
import https from 'node:https';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let cached;
export function selfSignedCert() {
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'b24-bench-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '1', '-keyout', key, '-out', cert],
  { stdio: 'ignore' });
  cached = { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
  fs.rmSync(dir, { recursive: true, force: true });
  return cached;
}

function cors(req) {
  return {
    'Access-Control-Allow-Origin': req.headers.origin || '*',
    'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
    'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] || 'Content-Type, Accept',
    'Access-Control-Max-Age': '86400',
    Vary: 'Origin',
  };
}

function timeBlock() {
  const now = Date.now() / 1000;
  const iso = new Date().toISOString().replace(/\.\d+Z$/, '+00:00');
  return { start: now, finish: now, duration: 0.0001, processing: 0, date_start: iso, date_finish: iso, operating: 0 };
}

/** Start on 127.0.0.1:0. Returns { url, port, stats: {options, posts, total, status}, resetStats(), close() }. */
export async function startTls({ target } = {}) {
  const stats = { options: 0, posts: 0, total: 0, status: {} };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const server = https.createServer(selfSignedCert(), (req, res) => {
    stats.total++;
    if (req.method === 'OPTIONS') stats.options++;
    if (req.method === 'POST') stats.posts++;
    if (target) {
      const up = http.request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host }, agent }, (ur) => {
        stats.status[ur.statusCode] = (stats.status[ur.statusCode] || 0) + 1;
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => { res.destroy(); });
      req.pipe(up);
      return;
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, cors(req));
      res.end();
      return;
    }
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ result: [], time: timeBlock() });
      res.writeHead(200, { ...cors(req), 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    stats,
    resetStats() { stats.options = 0; stats.posts = 0; stats.total = 0; stats.status = {}; },
    close() {
      agent.destroy();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
