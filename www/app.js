// The demo page of b24-crm-item. Plain ES modules, no bundler: the package is imported exactly
// as a user of the npm package would (served at ./pkg/ by `cargo xtask demo`).
import { configure, deleteItem, Client, B24Error } from './pkg/index.js';
import * as b24 from './pkg/index.js';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Errors in plain words

const PLAIN = {
  NOT_FOUND: 'There is no such item: it may have been deleted already, or the portal has no such entity type.',
  ACCESS_DENIED: 'The user behind this webhook or token is not allowed to delete this item. Check their CRM permissions.',
  allowed_only_intranet_user: 'Only an employee (intranet) user can do this; this webhook or token belongs to an external user.',
  NO_AUTH_FOUND: 'The portal does not recognise this webhook: the user id or secret is wrong, or the webhook was deleted.',
  INVALID_CREDENTIALS: 'The portal refused these credentials.',
  insufficient_scope: 'This webhook or app lacks the "crm" scope. Add it in the webhook or app settings.',
  expired_token: 'The access token has expired. Get a new one (or pass onTokenExpired so the library refreshes it).',
  invalid_token: 'The portal does not recognise this access token.',
  QUERY_LIMIT_EXCEEDED: 'Too many requests: the portal\'s rate limit was hit. Wait a moment and try again.',
  OPERATION_TIME_LIMIT: 'The portal\'s time budget for this method is used up for now; it resets within minutes.',
  ENTITY_TYPE_NOT_SUPPORTED: 'This entity type cannot be deleted with crm.item.delete.',
  ERROR_METHOD_NOT_FOUND: 'The portal does not know the method crm.item.delete.',
  INTERNAL_SERVER_ERROR: 'The portal failed while handling the request. Trying again later may work.',
  INVALID_ARGUMENT: 'Nothing was sent: check the values. entityTypeId and id must be positive whole numbers, and the connection a valid https webhook URL or portal (http only for localhost).',
  NOT_CONFIGURED: 'Connect first: no webhook or OAuth token is set.',
  NETWORK_ERROR: 'The portal could not be reached: the address is wrong, the network is down, or the portal does not allow this page (CORS).',
  TIMEOUT: 'The portal did not answer in time.',
  ABORTED: 'The call was cancelled.',
  BAD_RESPONSE: 'The portal answered with something that is not a Bitrix24 REST answer (an error page from a proxy, or a broken reply).',
};

function plainWords(err) {
  if (err instanceof B24Error) {
    return PLAIN[err.code] ?? err.description ?? err.message;
  }
  return String(err?.message ?? err);
}

// ---------------------------------------------------------------------------------------------
// Secrets never reach the page: mask them in everything we print

function maskUrl(url) {
  return String(url)
    .replace(/(\/rest\/\d+\/)[^/?#]+/, '$1***')
    .replace(/([?&]auth=)[^&#]*/g, '$1***');
}

function maskBody(body) {
  if (typeof body !== 'string') return body == null ? '' : '[binary body]';
  return body
    .replace(/("auth"\s*:\s*")[^"]*"/g, '$1***"')
    .replace(/(\bauth=)[^&"]*/g, '$1***')
    .replace(/(\/rest\/\d+\/)[^/?#"]+/g, '$1***');
}

function maskToken(token) {
  return token ? '***' : '';
}

// ---------------------------------------------------------------------------------------------
// The live log

const logEl = $('log');

function log(kind, title, detail) {
  const li = document.createElement('li');
  li.className = `log-${kind}`;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  const head = document.createElement('span');
  head.className = 'log-title';
  head.textContent = title;
  li.append(time, head);
  if (detail) addDetail(li, detail);
  logEl.prepend(li);
  while (logEl.children.length > 200) logEl.lastChild.remove();
  return li;
}

function addDetail(li, detail) {
  const pre = document.createElement('code');
  pre.className = 'log-detail';
  pre.textContent = detail;
  li.append(pre);
}

// Show the envelopes the library sends: wrap the global fetch it calls, masking secrets.
const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async function loggingFetch(input, init = {}) {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (!/\/rest\//.test(url)) return realFetch(input, init);
  const method = init.method ?? (typeof input === 'object' && input.method) ?? 'GET';
  const t0 = performance.now();
  log('request', `→ ${method} ${maskUrl(url)}`, maskBody(init.body));
  try {
    const res = await realFetch(input, init);
    const ms = Math.round(performance.now() - t0);
    const li = log(res.ok ? 'response' : 'response-error', `← ${res.status} ${res.statusText} in ${ms} ms`);
    res.clone().text().then((text) => addDetail(li, maskBody(text.slice(0, 600))), () => {});
    return res;
  } catch (e) {
    log('response-error', `← no answer (${e?.name ?? 'error'}) after ${Math.round(performance.now() - t0)} ms`);
    throw e;
  }
};

// ---------------------------------------------------------------------------------------------
// Connection

let mode = 'webhook';
let connected = null; // { config, origin, label }

for (const tab of document.querySelectorAll('[role=tab]')) {
  tab.addEventListener('click', () => setMode(tab.dataset.mode));
}

function setMode(m) {
  mode = m;
  for (const tab of document.querySelectorAll('[role=tab]')) {
    tab.setAttribute('aria-selected', String(tab.dataset.mode === m));
  }
  for (const panel of document.querySelectorAll('[data-panel]')) {
    panel.hidden = panel.dataset.panel !== m;
  }
}

function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

function connect() {
  let config;
  let label;
  if (mode === 'webhook') {
    const webhookUrl = $('webhook').value.trim();
    config = { webhookUrl };
    label = `webhook ${maskUrl(webhookUrl)}`;
  } else {
    const portal = $('portal').value.trim();
    const accessToken = $('access-token').value.trim();
    config = { portal, accessToken };
    label = `OAuth ${portal} (token ${maskToken(accessToken)})`;
  }
  try {
    configure(config);
  } catch (e) {
    setConnection(null);
    showOutcome(false, 'Not connected', e);
    log('error', `configure failed: ${e?.code ?? ''} ${plainWords(e)}`);
    return;
  }
  setConnection({ config, origin: originOf(config.webhookUrl ?? config.portal), label });
  log('info', `configure({ ${mode === 'webhook' ? 'webhookUrl' : 'portal, accessToken'} }): ${label}`);
  refreshItems();
}

function setConnection(c) {
  connected = c;
  const pill = $('connection-status');
  pill.textContent = c ? `connected: ${c.label}` : 'not connected';
  pill.className = c ? 'pill ok' : 'pill muted';
  $('connect-note').textContent = c ? 'Settings applied. They are checked on the first call.' : '';
}

$('connect-form').addEventListener('submit', (e) => {
  e.preventDefault();
  connect();
});

$('emulator-token').addEventListener('click', async () => {
  const origin = originOf($('portal').value.trim()) ?? originOf($('webhook').value.trim()) ?? location.origin;
  try {
    const res = await realFetch(`${origin}/_emulator/oauth/token`, { method: 'POST', body: '{}' });
    const answer = await res.json();
    $('portal').value = origin;
    $('access-token').value = answer.access_token;
    log('info', `got a test access token from the emulator at ${origin} (expires in ${answer.expires_in ?? '?'} s)`);
  } catch (e) {
    log('error', `could not get a token from ${origin}/_emulator/oauth/token: ${e?.message ?? e}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Deleting

function showOutcome(ok, title, errOrText, meta = '') {
  const box = $('result');
  box.hidden = false;
  box.dataset.state = ok ? 'ok' : 'error';
  box.className = `result ${ok ? 'ok' : 'error'}`;
  $('result-title').textContent = title;
  if (ok) {
    $('result-text').textContent = errOrText;
    $('error-code').textContent = '';
    $('result-meta').textContent = meta;
  } else {
    const e = errOrText;
    $('result-text').textContent = plainWords(e);
    $('error-code').textContent = e instanceof B24Error ? e.code : (e?.name ?? 'Error');
    const bits = [];
    if (e instanceof B24Error) {
      if (e.status) bits.push(`HTTP ${e.status}`);
      bits.push(`kind: ${e.kind}`);
      bits.push(e.retryable ? 'may succeed if retried' : 'retrying will not help');
      if (e.description && e.description !== PLAIN[e.code]) bits.push(`${e.kind === 'api' ? 'portal says' : 'details'}: “${e.description}”`);
    }
    $('result-meta').textContent = bits.join(' · ');
  }
}

async function doDelete(entityTypeId, id) {
  const t0 = performance.now();
  log('info', `deleteItem(${JSON.stringify(entityTypeId)}, ${JSON.stringify(id)})`);
  try {
    const r = await deleteItem(entityTypeId, id);
    const ms = Math.round(performance.now() - t0);
    const type = r?.entityTypeId ?? entityTypeId;
    const itemId = r?.id ?? id;
    showOutcome(true, 'Deleted', `Item ${itemId} of entity type ${type} (${typeName(type)}) was deleted.`,
      `${ms} ms in all${r?.time?.duration != null ? ` · ${portalTime(r.time.duration)} on the portal` : ''}`);
    log('ok', `deleted ${type}/${itemId} in ${ms} ms`);
  } catch (e) {
    showOutcome(false, 'Not deleted', e);
    log('error', `${e instanceof B24Error ? e.code : 'Error'}: ${plainWords(e)}`);
  }
  refreshItems();
}

function portalTime(seconds) {
  const ms = seconds * 1000;
  return ms < 1 ? 'under 1 ms' : `${Math.round(ms)} ms`;
}

$('delete-form').addEventListener('submit', (e) => {
  e.preventDefault();
  doDelete(idValue($('entity-type').value), idValue($('item-id').value));
});

// Numbers stay numbers; anything else is passed as typed so the library's validation speaks.
function idValue(s) {
  const t = s.trim();
  return /^[1-9]\d{0,15}$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : t;
}

// ---------------------------------------------------------------------------------------------
// The emulator's items (only when the portal is the local emulator with --control)

const TYPE_NAMES = { 1: 'Leads', 2: 'Deals', 3: 'Contacts', 4: 'Companies', 7: 'Quotes', 31: 'Invoices', 1268: 'Smart process' };

function typeName(t) {
  return TYPE_NAMES[t] ?? (t >= 128 ? 'Smart process' : 'CRM entity');
}

function isLoopback(origin) {
  try {
    const h = new URL(origin).hostname;
    return h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
  } catch {
    return false;
  }
}

async function fetchState() {
  // Only loopback origins can be the local emulator; never probe a real portal.
  const origins = [...new Set([connected?.origin, location.origin].filter((o) => o && isLoopback(o)))];
  for (const origin of origins) {
    try {
      const res = await realFetch(`${origin}/_emulator/state`, { cache: 'no-store' });
      if (!res.ok) continue;
      const state = await res.json();
      if (state && typeof state.items === 'object') return state;
    } catch {
      // not the emulator, or not reachable from this page
    }
  }
  return null;
}

let refreshing = null;
function refreshItems() {
  return (refreshing ??= (async () => {
    try {
      const state = await fetchState();
      renderItems(state);
    } finally {
      refreshing = null;
    }
  })());
}

function renderItems(state) {
  const box = $('items');
  box.textContent = '';
  if (!state) {
    $('items-note').textContent = 'No emulator control API here (a real portal, or the emulator runs without --control).';
    return;
  }
  $('emulator-token').hidden = false;
  const types = Object.keys(state.items).sort((a, b) => Number(b) - Number(a));
  const total = types.reduce((n, t) => n + state.items[t].length, 0);
  $('items-note').textContent = `${total} item${total === 1 ? '' : 's'} on the emulator. Click one to delete it.`;
  for (const t of types) {
    const group = document.createElement('div');
    group.className = 'group';
    const h = document.createElement('h3');
    h.textContent = `${typeName(Number(t))} · entityTypeId ${t}`;
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = String(state.items[t].length);
    h.append(count);
    const list = document.createElement('div');
    list.className = 'chips';
    list.dataset.entityTypeId = t;
    for (const id of state.items[t]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.dataset.id = String(id);
      b.title = `deleteItem(${t}, ${id})`;
      b.innerHTML = `<span>#${id}</span><span class="x" aria-hidden="true">×</span>`;
      b.setAttribute('aria-label', `Delete item ${id} of entity type ${t}`);
      b.addEventListener('click', () => {
        $('entity-type').value = t;
        $('item-id').value = String(id);
        doDelete(Number(t), id);
      });
      list.append(b);
    }
    if (!state.items[t].length) {
      list.textContent = 'none left';
    }
    group.append(h, list);
    box.append(group);
  }
}

$('refresh-items').addEventListener('click', () => refreshItems());
$('clear-log').addEventListener('click', () => {
  logEl.textContent = '';
});

// ---------------------------------------------------------------------------------------------
// Bulk delete: only when this version of the package has deleteItems

const hasBulk = typeof b24.deleteItems === 'function';
$('bulk-unavailable').hidden = hasBulk;
$('bulk-form').hidden = !hasBulk;

function parseIds(s) {
  const out = [];
  for (const part of s.split(/[\s,;]+/).filter(Boolean)) {
    const m = /^(\d+)\s*-\s*(\d+)$/.exec(part);
    if (m) {
      const [a, b] = [Number(m[1]), Number(m[2])];
      if (b - a > 10000) throw new Error(`range ${part} is too long (10000 ids at most)`);
      for (let i = a; i <= b; i++) out.push(i);
    } else {
      out.push(idValue(part));
    }
  }
  return out;
}

$('bulk-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!connected) {
    showOutcome(false, 'Not connected', new B24Error('NOT_CONFIGURED', 'connect first'));
    return;
  }
  let ids;
  try {
    ids = parseIds($('bulk-ids').value);
  } catch (err) {
    log('error', err.message);
    return;
  }
  const entityTypeId = idValue($('bulk-entity-type').value);
  const progress = $('bulk-progress');
  const report = $('bulk-report');
  progress.hidden = false;
  progress.max = Math.max(ids.length, 1);
  progress.value = 0;
  report.hidden = true;
  $('bulk-count').textContent = `0 / ${ids.length}`;
  log('info', `deleteItems(${entityTypeId}, [${ids.length} ids])`);
  const t0 = performance.now();
  try {
    const client = new Client(connected.config);
    const r = await client.deleteItems(entityTypeId, ids, {
      onProgress: ({ done, total }) => {
        progress.max = Math.max(total, 1);
        progress.value = done;
        $('bulk-count').textContent = `${done} / ${total}`;
      },
    });
    const ms = Math.round(performance.now() - t0);
    report.hidden = false;
    report.className = `result ${r.failed.length ? 'error' : 'ok'}`;
    const failed = r.failed.map((f) => `#${f.id}: ${f.error.code}`).join(', ');
    report.textContent = `Deleted ${r.deleted.length}, not found ${r.notFound.length}, failed ${r.failed.length}` +
      `${failed ? ` (${failed})` : ''} in ${ms} ms.`;
    log(r.failed.length ? 'error' : 'ok', report.textContent);
  } catch (err) {
    report.hidden = false;
    report.className = 'result error';
    report.textContent = `${err?.code ?? 'Error'}: ${plainWords(err)}`;
    log('error', report.textContent);
  }
  refreshItems();
});

// ---------------------------------------------------------------------------------------------
// Start

const params = new URLSearchParams(location.search);
const status = $('module-status');
status.textContent = 'package loaded';
status.className = 'pill ok';
if (typeof b24.init === 'function') {
  const t0 = performance.now();
  b24.init().then(
    () => {
      status.textContent = `wasm ready in ${Math.round(performance.now() - t0)} ms`;
    },
    (e) => {
      status.textContent = `wasm failed to load: ${e?.message ?? e}`;
      status.className = 'pill bad';
    },
  );
}
if (params.get('webhook')) {
  $('webhook').value = params.get('webhook');
  connect();
} else {
  refreshItems();
}
document.body.dataset.ready = 'true';
