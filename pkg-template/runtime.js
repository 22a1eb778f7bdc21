// Platform primitives the WebAssembly core calls, and the B24Error class.
// The policy (what to send, when to retry, how long to wait) is decided in Rust;
// these functions only carry it out, and never throw.

/** The error every rejection of b24-crm-item carries. See the README's error table. */
export class B24Error extends Error {
  constructor(code, description = '', details = {}) {
    super(description ? `${code}: ${description}` : code, 'cause' in details ? { cause: details.cause } : undefined);
    /** The portal's `error` verbatim, or one of the library's own codes. */
    this.code = code;
    /** The portal's `error_description`, or the library's own explanation. */
    this.description = description;
    /** The HTTP status, or 0 where there was none. */
    this.status = details.status ?? 0;
    /** The REST method, e.g. "crm.item.delete". */
    this.method = details.method ?? '';
    /** "api" | "network" | "timeout" | "aborted" | "argument" | "response" | "config" */
    this.kind = details.kind ?? 'api';
    /** Whether the same call may succeed later, unchanged. */
    this.retryable = details.retryable ?? false;
    /** Requests sent for this call (0 when it failed before sending). */
    this.attempts = details.attempts ?? 0;
  }

  toJSON() {
    const { name, code, description, status, method, kind, retryable, attempts } = this;
    return { name, code, description, status, method, kind, retryable, attempts };
  }
}
Object.defineProperty(B24Error.prototype, 'name', { value: 'B24Error', writable: true, configurable: true });
Object.defineProperty(B24Error, 'name', { value: 'B24Error' });

// (The texts come as UTF-8 bytes, views of wasm memory: see text().)
export function makeError(code, description, status, method, kind, retryable, attempts, cause) {
  const details = { status, method: text(method), kind: text(kind), retryable, attempts };
  if (cause !== undefined && cause !== null) details.cause = cause;
  return new B24Error(text(code), text(description), details);
}

// The executor's side (src/executor.rs): the wasm awaits a promise by handing it to `resume`
// with a slot number, and gets the value back through its exported `wake`, which the package
// entry installs here once the wasm is loaded; `task` / `finish` are the promises the wasm's calls
// return.
let wake;
const tasks = new Map();

export function install(callback) {
  wake = callback;
}

export function resume(promise, slot) {
  // The promises of this file never reject; `[]` reads as a failure everywhere, just in case.
  promise.then((value) => wake(slot, value), () => wake(slot, []));
}

export function task(key) {
  return new Promise((resolve, reject) => tasks.set(key, [resolve, reject]));
}

export function finish(key, ok, value) {
  const settle = tasks.get(key);
  tasks.delete(key);
  settle[ok ? 0 : 1](value);
}

// Deadlines share one timer: a call adds its deadline to a set and removes it when done, and
// only a deadline earlier than the armed one re-arms the timer (a setTimeout + clearTimeout pair
// per call cost more than the rest of a call's JS work). An armed timer with no deadline left
// fires into an empty set; in Node it is unref'd meanwhile, so it never keeps a process alive.
const deadlines = new Set();
let timer;
let armedAt = Infinity;

/** Calls `fire(arg)` after `ms` unless the returned function is called first. */
function after(ms, fire, arg) {
  const entry = { at: performance.now() + ms, fire, arg };
  if (!deadlines.size) timer?.ref?.();
  deadlines.add(entry);
  if (entry.at < armedAt) arm(entry.at);
  return () => {
    if (deadlines.delete(entry) && !deadlines.size) timer?.unref?.();
  };
}

function arm(at) {
  clearTimeout(timer);
  armedAt = at;
  timer = setTimeout(expire, Math.max(0, at - performance.now()));
}

function expire() {
  armedAt = Infinity;
  const now = performance.now();
  let next = Infinity;
  for (const entry of deadlines) {
    if (entry.at <= now) {
      deadlines.delete(entry);
      entry.fire(entry.arg);
    } else if (entry.at < next) {
      next = entry.at;
    }
  }
  if (next < armedAt && next !== Infinity) arm(next);
}

// Plain JS values for the wasm (it does not link js-sys).
const THREW = Symbol('the getter threw');

/** `object[key]`; `undefined` for a non-object; a symbol (of no type the wasm accepts: a config
 * or options field then reads as wrong-typed) when the getter throws. */
export function get(object, key) {
  if (object === null || (typeof object !== 'object' && typeof object !== 'function')) return undefined;
  try {
    return object[key];
  } catch {
    return THREW;
  }
}

// The configuration's members and their types, in the order they are checked (CONFIG_ERRORS in
// src/bindings.rs gives each its message).
const CONFIG = ['onTokenExpired', 'function', 'webhookUrl', 'string', 'portal', 'string', 'accessToken', 'string',
  'frame', 'boolean', 'timeoutMs', 'number', 'maxRetries', 'number'];

/**
 * The configuration's members, type-checked: CONFIG's values (each `undefined` when not given),
 * then rateLimit as `undefined`, `false`, or `burst, perSecond`; or the number of the first rule
 * broken (CONFIG_ERRORS in src/bindings.rs).
 */
export function readConfig(config) {
  if (typeof config != 'object' || config === null) return 0;
  const values = [];
  for (let i = 0; i < CONFIG.length; i += 2) {
    const value = get(config, CONFIG[i]);
    if (value !== undefined && typeof value != CONFIG[i + 1]) return i / 2 + 1;
    values.push(value);
  }
  const rateLimit = get(config, 'rateLimit');
  if (rateLimit === undefined || rateLimit === false) return [...values, rateLimit];
  const burst = get(rateLimit, 'burst'), perSecond = get(rateLimit, 'perSecond');
  return typeof burst != 'number' || typeof perSecond != 'number' || typeof rateLimit != 'object' ? 8
    : [...values, burst, perSecond];
}

/**
 * A call's options, type-checked in the order the errors are reported: `[signal, timeoutMs]`
 * (and `haltOnError, onProgress` when `bulk`), each `undefined` when not given; or the number of
 * the first rule broken (OPTION_ERRORS in src/bindings.rs). The rule for timeoutMs's value is the
 * core's (config::parse_timeout), checked after every type here.
 */
export function readOptions(options, bulk) {
  // (Not `options == null`: document.all is refused, as any other non-object.)
  if (typeof options != 'object') return options === undefined ? [] : 0;
  if (options === null) return [];
  const signal = get(options, 'signal');
  // null is an object without addEventListener: refused too.
  if (signal !== undefined && (typeof signal != 'object' || typeof get(signal, 'addEventListener') != 'function')) return 1;
  const timeoutMs = get(options, 'timeoutMs');
  if (timeoutMs !== undefined && typeof timeoutMs != 'number') return 2;
  if (!bulk) return [signal, timeoutMs];
  const halt = get(options, 'haltOnError');
  if (halt !== undefined && typeof halt != 'boolean') return 3;
  const onProgress = get(options, 'onProgress');
  return onProgress !== undefined && typeof onProgress != 'function' ? 4 : [signal, timeoutMs, halt, onProgress];
}

export function items(iterable) {
  if (typeof iterable === 'string') return undefined;
  try {
    return [...iterable];
  } catch {
    return undefined;
  }
}

export function urlParses(url) {
  try {
    return !!new URL(text(url));
  } catch {
    return false;
  }
}

export const at = (array, index) => array?.[index];
export const length = (array) => array.length;
export const idValue = (value) => (typeof value == 'bigint' ? String(value) : value);
export const reject = (error) => Promise.reject(error);

export function progress(callback, done, total) {
  try {
    callback({ done, total });
  } catch {
    // A throwing onProgress does not break the run.
  }
}

export function deleted(entityTypeId, id, hasTime, reply) {
  const result = { entityTypeId, id };
  // The wasm has read the answer and found a `time` object in it: hand over the portal's own.
  if (hasTime) result.time = reply[1].time;
  return result;
}

// The members the wasm reads from answers, by number (response::Key in src/response.rs, same
// order; a native test compares the two lists).
const KEYS = ['result', 'time', 'error', 'error_description', 'operating_reset_at', 'result_error', 'result_time', 'finish'];

/** `object[KEYS[key]]`, or `undefined` (see get()). */
export const member = (object, key) => get(object, KEYS[key]);

/** A JSON value's kind as response::Kind: 0 null, 1 true, 2 false, 3 number, 4 string, 5 array, 6 object. */
export const jsonKind = (v) => (v === null ? 0 : v === true ? 1 : v === false ? 2 : typeof v === 'number' ? 3
  : typeof v === 'string' ? 4 : Array.isArray(v) ? 5 : 6);

/** A batch command's member `k<index>` of `object`, or `undefined` (see get()). */
export const command = (object, index) => get(object, `k${index}`);

/** `signal.reason`, or `signal.aborted` (see get()). */
export const signalGet = (signal, reason) => get(signal, reason ? 'reason' : 'aborted');

let decoder;
/** The text of UTF-8 `bytes` (a view of wasm memory): ASCII, as most texts are, without a TextDecoder call. A leading BOM is kept. */
function text(bytes) {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 127) return (decoder ??= new TextDecoder('utf-8', { ignoreBOM: true })).decode(bytes);
  }
  return String.fromCharCode.apply(null, bytes);
}

/**
 * An HTTP answer for the wasm: [status, value, 0] when the body is JSON (parsed by the engine's
 * JSON.parse: the wasm carries no parser), else [status, undefined, class]: 1 empty, 2 an HTML
 * page, 3 anything else.
 */
function answer(status, text) {
  try {
    return [status, JSON.parse(text), 0];
  } catch {
    return [status, undefined, /^[\t\n\f\r ]*$/.test(text) ? 1 : /^[\t\n\f\r ]*</.test(text) ? 2 : 3];
  }
}

// The ids come as BigUint64Arrays (views of wasm memory): safe integers, read as numbers.
export const report = (deleted, notFound) => ({ deleted: Array.from(deleted, Number), notFound: Array.from(notFound, Number), failed: [] });

export function addFailed(report, id, error) {
  report.failed.push({ id, error });
}

const HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json' };
const NETWORK = 1, TIMEOUT = 2, ABORTED = 3;

/**
 * Runs `start(done)` and resolves what `done` is given, or `expired` after `timeoutMs`, or
 * `aborted()` as soon as `signal` aborts. Leaves no timer or listener behind. `start` must not
 * throw: it reports its own failures through `done`.
 */
function bounded(start, timeoutMs, signal, expired, aborted) {
  let end;
  const promise = new Promise((resolve) => {
    if (signal?.aborted) return resolve(aborted());
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      cancel();
      signal?.removeEventListener('abort', onAbort);
      resolve(value);
    };
    const onAbort = () => finish(aborted());
    const cancel = after(timeoutMs, finish, expired);
    signal?.addEventListener('abort', onAbort);
    end = finish;
    start(finish);
  });
  /** Settles it now with `aborted()`; nothing left behind. */
  promise.end = () => end?.(aborted());
  return promise;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. Leaves no timer behind. */
export function sleep(ms, signal) {
  return bounded(() => {}, ms, signal, true, () => false);
}

/** Ends a sleep now (it resolves false). */
export const cancelSleep = (sleep) => sleep.end();

/**
 * POSTs `body` to `url` and reads the whole answer within `timeoutMs`; or, when `bx24`, calls
 * BX24.callMethod(url, body) within `timeoutMs` (BX24 never calls back on a 5xx or a network
 * error). Resolves [status, body, class] (see answer()) for any answer, or
 * [0, NETWORK|TIMEOUT|ABORTED, cause]. One bounded() for both: −60 B gzip.
 */
export function send(bx24, url, bytes, timeoutMs, signal) {
  url = text(url);
  const body = text(bytes);
  const controller = new AbortController();
  const request = (done) => {
    const failed = (cause) => done([0, NETWORK, cause]);
    const post = () => fetch(url, { method: 'POST', headers: HEADERS, body, signal: controller.signal, credentials: 'omit' })
      .then(async (response) => answer(response.status, await response.text()))
      .then(done, failed);
    const call = () => globalThis.BX24.callMethod(url, JSON.parse(body), (result) => attempt(() => {
      const error = result.error();
      const status = Number(result.status ?? (error && error.status)) || (error ? 400 : 200);
      // BX24.js: error() is an ajaxError { status, ex }, `ex` the answer itself, whose own
      // `ex` is that ajaxError again (a cycle): its members are read, it is never serialized.
      const ex = error && typeof error.ex === 'object' && error.ex ? error.ex : error;
      const reply = error
        ? { error: String(ex.error ?? error), error_description: String(ex.error_description ?? ''), time: ex.time }
        : (result.answer ?? { result: result.data(), time: result.time?.() });
      // Through JSON text and back: the wasm then sees plain JSON values only (jsonKind's
      // premise), never BX24's live objects.
      done(answer(status, JSON.stringify(reply)));
    }, failed));
    // (A fetch that throws, as a mock may, fails like one that rejects.)
    attempt(bx24 ? call : post, failed);
  };
  const sent = bounded(request, timeoutMs, signal, [0, TIMEOUT], () => [0, ABORTED, signal.reason]);
  // Out of time or aborted (no status), a fetch stops; after an answer there is nothing to stop.
  sent.then((answer) => answer[0] || controller.abort());
  return sent;
}

/**
 * Calls the user's onTokenExpired within `timeoutMs`, or until `signal` aborts.
 * Resolves [token] or [undefined, cause] (it threw, returned no string, or the call was aborted:
 * then the cause is the abort reason), or [undefined, cause, true] when it took too long.
 */
export function refreshToken(callback, timeoutMs, signal) {
  const run = (done) => {
    Promise.resolve()
      .then(callback)
      .then(
        (token) => done(typeof token === 'string' && token ? [token] : [undefined, new TypeError('onTokenExpired returned no token')]),
        (cause) => done([undefined, cause]),
      );
  };
  // (The third member: it ran out of time.)
  const expired = [undefined, new Error('onTokenExpired did not settle in time'), true];
  return bounded(run, timeoutMs, signal, expired, () => [undefined, signal.reason]);
}

/**
 * The frame's auth, for calling the portal directly: [3, restBase, token]; or [2] to go through
 * BX24.callMethod (no token to be had), [1] when BX24 did not answer within `timeoutMs`, [4] when
 * `signal` aborted, [5, error] when BX24.init threw, [0] when there is no BX24. `first`: the
 * current token (BX24.getAuth); else a refreshed one (BX24.refreshAuth). Both waits end at once
 * when `signal` aborts.
 */
export async function frameAuth(first, timeoutMs, signal) {
  const bx24 = globalThis.BX24;
  if (!bx24 || typeof bx24.callMethod !== 'function') return [0];
  // Both waits share the one deadline.
  const end = performance.now() + timeoutMs;
  const aborted = () => undefined;
  // (A BX24 without init, as a minimal mock: nothing to wait for.)
  let threw;
  const init = (done) => {
    if (typeof bx24.init !== 'function') return done(true);
    attempt(() => bx24.init(() => done(true)), (error) => {
      threw = [5, error];
      done(false);
    });
  };
  const ready = await bounded(init, timeoutMs, signal, null, aborted);
  if (ready === undefined) return [4];
  if (ready === null) return [1];
  if (!ready) return threw;
  let auth = false;
  if (first && typeof bx24.getAuth === 'function') attempt(() => (auth = bx24.getAuth()), () => {});
  if (!auth && typeof bx24.refreshAuth === 'function') {
    const refresh = (done) => attempt(() => bx24.refreshAuth((fresh) => done(fresh || false)), () => done(false));
    auth = await bounded(refresh, Math.max(0, end - performance.now()), signal, null, aborted);
    if (auth === undefined) return [4];
    if (auth === null) return [1];
  }
  if (!auth || typeof auth.access_token !== 'string' || !auth.access_token) return [2];
  // window.name is "DOMAIN|PROTOCOL|APP_SID"; PROTOCOL 1 is https.
  const [domain, protocol] = String(globalThis.name).split('|');
  return [3, `${protocol === '1' ? 'https' : 'http'}://${auth.domain || domain}/rest/`, auth.access_token];
}

/** Runs `f`; if it throws, hands the error to `failed`. */
function attempt(f, failed) {
  try {
    f();
  } catch (error) {
    failed(error);
  }
}
