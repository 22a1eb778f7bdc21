// Platform primitives the WebAssembly core calls, and the B24Error class.
// The policy (what to send, when to retry, how long to wait) is decided in Rust;
// these functions only carry it out, and never throw.

// The numbers that cross to the wasm, by name. Each table is an enum of src/protocol.rs (or
// src/response.rs) of the same name; a native test per table compares the two.
/** send's answer classes: [status, body, BODY.*] (protocol::BodyClass). */
const BODY = { JSON: 0, EMPTY: 1, HTML: 2, OTHER: 3 };
/** Why send got no answer: [0, FAILURE.*, cause] (protocol::SendFailure). */
const FAILURE = { NETWORK: 1, TIMEOUT: 2, ABORTED: 3 };
/** What frameAuth found: [FRAME_AUTH.*, ...] (protocol::FrameAuth). */
const FRAME_AUTH = { NO_BX24: 0, NO_ANSWER: 1, VIA_BX24: 2, DIRECT: 3, ABORTED: 4, INIT_THREW: 5 };
/** What refreshToken got: [REFRESH.*, token or cause] (protocol::Refresh). */
const REFRESH = { TOKEN: 0, FAILED: 1, TIMED_OUT: 2 };
/** signalGet's member (protocol::SignalRead). */
const SIGNAL = { ABORTED: 0, REASON: 1 };
/** jsonKind's answers (response::Kind). */
const JSON_KIND = { NULL: 0, TRUE: 1, FALSE: 2, NUMBER: 3, STRING: 4, ARRAY: 5, OBJECT: 6 };
/** The members the wasm reads from answers, by number (response::Key, same order). */
const KEYS = ['result', 'time', 'error', 'error_description', 'operating_reset_at', 'result_error', 'result_time', 'finish'];

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
  // The promises of this file never reject. Were one to, the wasm would read `[]` as whatever
  // its first member's absence means where it waits: a failed send, refresh or frame auth.
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

/** `object[KEYS[key]]`, or `undefined` (see get()). */
export const member = (object, key) => get(object, KEYS[key]);

/** A JSON value's kind (JSON_KIND). */
export const jsonKind = (v) => (v === null ? JSON_KIND.NULL : v === true ? JSON_KIND.TRUE : v === false ? JSON_KIND.FALSE
  : typeof v === 'number' ? JSON_KIND.NUMBER : typeof v === 'string' ? JSON_KIND.STRING
    : Array.isArray(v) ? JSON_KIND.ARRAY : JSON_KIND.OBJECT);

/** A batch command's member `k<index>` of `object`, or `undefined` (see get()). */
export const command = (object, index) => get(object, `k${index}`);

/** `signal.reason` or `signal.aborted` (SIGNAL; see get()). */
export const signalGet = (signal, read) => get(signal, read === SIGNAL.REASON ? 'reason' : 'aborted');

/** `object[name]` (UTF-8 bytes; see get()): the config and option readers ask for each member by name. */
export const field = (object, name) => get(object, text(name));

let decoder;
/** The text of UTF-8 `bytes` (a view of wasm memory): ASCII, as most texts are, without a TextDecoder call. A leading BOM is kept. */
function text(bytes) {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 127) return (decoder ??= new TextDecoder('utf-8', { ignoreBOM: true })).decode(bytes);
  }
  return String.fromCharCode.apply(null, bytes);
}

/**
 * An HTTP answer for the wasm: [status, value, BODY.JSON] when the body is JSON (parsed by the
 * engine's JSON.parse: the wasm carries no parser), else [status, undefined, BODY.EMPTY | HTML | OTHER].
 */
function answer(status, text) {
  try {
    return [status, JSON.parse(text), BODY.JSON];
  } catch {
    return [status, undefined, /^[\t\n\f\r ]*$/.test(text) ? BODY.EMPTY : /^[\t\n\f\r ]*</.test(text) ? BODY.HTML : BODY.OTHER];
  }
}

// The ids come as BigUint64Arrays (views of wasm memory): safe integers, read as numbers.
export const report = (deleted, notFound) => ({ deleted: Array.from(deleted, Number), notFound: Array.from(notFound, Number), failed: [] });

export function addFailed(report, id, error) {
  report.failed.push({ id, error });
}

const HEADERS = { 'Content-Type': 'application/json', Accept: 'application/json' };

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
 * [0, FAILURE.*, cause].
 */
export function send(bx24, url, bytes, timeoutMs, signal) {
  url = text(url);
  const body = text(bytes);
  const controller = new AbortController();
  const request = (done) => {
    const failed = (cause) => done([0, FAILURE.NETWORK, cause]);
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
  const sent = bounded(request, timeoutMs, signal, [0, FAILURE.TIMEOUT], () => [0, FAILURE.ABORTED, signal.reason]);
  // Out of time or aborted (no status), a fetch stops; after an answer there is nothing to stop.
  sent.then((answer) => answer[0] || controller.abort());
  return sent;
}

/**
 * Calls the user's onTokenExpired within `timeoutMs`, or until `signal` aborts.
 * Resolves [REFRESH.TOKEN, token] or [REFRESH.FAILED, cause] (it threw, returned no string, or
 * the call was aborted: then the cause is the abort reason), or [REFRESH.TIMED_OUT, cause].
 */
export function refreshToken(callback, timeoutMs, signal) {
  const run = (done) => {
    Promise.resolve()
      .then(callback)
      .then(
        (token) => done(typeof token === 'string' && token ? [REFRESH.TOKEN, token]
          : [REFRESH.FAILED, new TypeError('onTokenExpired returned no token')]),
        (cause) => done([REFRESH.FAILED, cause]),
      );
  };
  const expired = [REFRESH.TIMED_OUT, new Error('onTokenExpired did not settle in time')];
  return bounded(run, timeoutMs, signal, expired, () => [REFRESH.FAILED, signal.reason]);
}

/**
 * The frame's auth, for calling the portal directly: [FRAME_AUTH.DIRECT, restBase, token]; or
 * [VIA_BX24] to go through BX24.callMethod (no token to be had), [NO_ANSWER] when BX24 did not
 * answer within `timeoutMs`, [ABORTED] when `signal` aborted, [INIT_THREW, error] when BX24.init
 * threw, [NO_BX24] when there is no BX24. `first`: the
 * current token (BX24.getAuth); else a refreshed one (BX24.refreshAuth). Both waits end at once
 * when `signal` aborts.
 */
export async function frameAuth(first, timeoutMs, signal) {
  const bx24 = globalThis.BX24;
  if (!bx24 || typeof bx24.callMethod !== 'function') return [FRAME_AUTH.NO_BX24];
  // Both waits share the one deadline.
  const end = performance.now() + timeoutMs;
  const aborted = () => undefined;
  // (A BX24 without init, as a minimal mock: nothing to wait for.)
  let threw;
  const init = (done) => {
    if (typeof bx24.init !== 'function') return done(true);
    attempt(() => bx24.init(() => done(true)), (error) => {
      threw = [FRAME_AUTH.INIT_THREW, error];
      done(false);
    });
  };
  const ready = await bounded(init, timeoutMs, signal, null, aborted);
  if (ready === undefined) return [FRAME_AUTH.ABORTED];
  if (ready === null) return [FRAME_AUTH.NO_ANSWER];
  if (!ready) return threw;
  let auth = false;
  if (first && typeof bx24.getAuth === 'function') attempt(() => (auth = bx24.getAuth()), () => {});
  if (!auth && typeof bx24.refreshAuth === 'function') {
    const refresh = (done) => attempt(() => bx24.refreshAuth((fresh) => done(fresh || false)), () => done(false));
    auth = await bounded(refresh, Math.max(0, end - performance.now()), signal, null, aborted);
    if (auth === undefined) return [FRAME_AUTH.ABORTED];
    if (auth === null) return [FRAME_AUTH.NO_ANSWER];
  }
  if (!auth || typeof auth.access_token !== 'string' || !auth.access_token) return [FRAME_AUTH.VIA_BX24];
  // window.name is "DOMAIN|PROTOCOL|APP_SID"; PROTOCOL 1 is https.
  const [domain, protocol] = String(globalThis.name).split('|');
  return [FRAME_AUTH.DIRECT, `${protocol === '1' ? 'https' : 'http'}://${auth.domain || domain}/rest/`, auth.access_token];
}

/** Runs `f`; if it throws, hands the error to `failed`. */
function attempt(f, failed) {
  try {
    f();
  } catch (error) {
    failed(error);
  }
}
