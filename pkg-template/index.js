// b24-crm-item: delete Bitrix24 CRM items. No init call is needed: the first call compiles the
// WebAssembly module, which is inside this file (nothing to fetch), and later calls reuse it.
// The module's bytes, one character per byte (`cargo xtask build` writes them in; first in the
// bundle, where they gzip best).
import { wasmText } from './wasm.js';
import { B24Error } from './runtime.js';
// The glue (plain JS, no side effects): the wasm's imports object, and what it does with an instance.
import { imports, finalize, newClient, dropClient, clientDeleteItem, clientDeleteItems, wake } from './b24_crm_item.js';
import { install } from './runtime.js';

export { B24Error };

let loading;

/** Compiles the WebAssembly module ahead of the first call; calls do this by themselves. */
export function init() {
  return load();
}

// Compiled and instantiated asynchronously (some WebViews refuse a synchronous compile of more than
// 4 KB). A failure rejects with WASM_UNAVAILABLE and is not kept: the next call tries again.
function load() {
  return (loading ??= (async () => {
    if (typeof WebAssembly !== 'object') {
      throw unavailable("this JavaScript engine has no WebAssembly (turned off, as by Safari's Lockdown Mode or Node's --jitless): run the library where WebAssembly is on");
    }
    try {
      const { instance, module } = await WebAssembly.instantiate(bytes(wasmText), imports());
      finalize(instance, module);
      install(wake);
    } catch (cause) {
      throw unavailable(refusedByPolicy(cause)
        ? "the page's Content-Security-Policy does not allow WebAssembly: add 'wasm-unsafe-eval' to its script-src"
        : `could not compile or instantiate the WebAssembly module: ${cause?.message ?? cause}`, cause);
    }
  })().catch((error) => {
    loading = undefined;
    throw error;
  }));
}

const unavailable = (description, cause) =>
  new B24Error('WASM_UNAVAILABLE', description, { kind: 'config', retryable: false, ...(cause && { cause }) });

// A script-src without 'wasm-unsafe-eval': Chromium and Firefox reject with a CompileError naming
// the policy, Safari with an EvalError.
const refusedByPolicy = (e) => e?.name === 'EvalError' || /wasm-unsafe-eval|Content.Security.Policy|\bCSP\b/i.test(e?.message);

// Text → bytes: natively where Uint8Array.fromBase64 exists (btoa takes each character as a byte),
// else one character at a time (Node 20, browsers before 2025).
function bytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(btoa(text));
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

// A Client that is garbage-collected frees its wasm side.
const collected = new FinalizationRegistry(dropClient);

/** A Bitrix24 client with its own configuration, pacing bucket and token. */
export class Client {
  #config;
  #loading;
  /** The wasm client's handle once built: later calls go to it without waiting on a promise. */
  #handle;

  /** @param {import('./index').ClientConfig} config */
  constructor(config) {
    this.#config = copy(config);
  }

  /** The wasm client's handle, once the wasm is loaded; a load or config error is not kept (the next call tries again). */
  #client() {
    return (this.#loading ??= load().then(() => {
      const handle = newClient(withFrame(this.#config));
      if (typeof handle !== 'number') throw handle;
      collected.register(this, handle);
      return (this.#handle = handle);
    }).catch((error) => {
      this.#loading = undefined;
      throw error;
    }));
  }

  /** Deletes one CRM item (`crm.item.delete`). */
  deleteItem(entityTypeId, id, options) {
    if (this.#handle !== undefined) return clientDeleteItem(this.#handle, entityTypeId, id, options);
    return this.#client().then((handle) => clientDeleteItem(handle, entityTypeId, id, options), named('crm.item.delete'));
  }

  /** Deletes many items of one type through `batch`, 50 per request, with a per-id report. */
  deleteItems(entityTypeId, ids, options) {
    if (this.#handle !== undefined) return clientDeleteItems(this.#handle, entityTypeId, ids, options);
    return this.#client().then((handle) => clientDeleteItems(handle, entityTypeId, ids, options), named('batch'));
  }
}

// A load or config error is shared by the calls that waited on it: each gets its own copy, naming
// its own method.
const named = (method) => (error) => {
  if (!(error instanceof B24Error)) throw error;
  const { code, description, ...details } = error;
  if ('cause' in error) details.cause = error.cause;
  throw new B24Error(code, description, { ...details, method });
};

// B24Error and Client keep their names through minification (stack traces, Node's console).
Object.defineProperty(Client, 'name', { value: 'Client' });

/** A snapshot of the config object, so later changes to it do not reach the client. A getter
 * that throws leaves the original, which the wasm reads field by field (a throwing field reads as
 * missing, and the config is refused with INVALID_ARGUMENT). */
function copy(config) {
  try {
    return config && typeof config === 'object' ? { ...config } : config;
  } catch {
    return config;
  }
}

let defaultClient;

/** Sets up the client that the module-level functions use. */
export function configure(config) {
  defaultClient = new Client(config);
}

/** Deletes one CRM item with the default client (or the enclosing Bitrix24 frame). */
export function deleteItem(entityTypeId, id, options) {
  return currentClient().deleteItem(entityTypeId, id, options);
}

/** Deletes many items of one type with the default client; resolves a per-id report. */
export function deleteItems(entityTypeId, ids, options) {
  return currentClient().deleteItems(entityTypeId, ids, options);
}

/** `true` when this page runs inside a Bitrix24 frame (`window.name` is `DOMAIN|PROTOCOL|APP_SID` and BX24 is loaded). */
export function isInsideBitrix24() {
  const g = globalThis;
  return typeof g.name === 'string' && /^[^|]+\|[01]\|[^|]+$/.test(g.name) && typeof g.BX24 === 'object' && g.BX24 !== null;
}

// Unconfigured calls go through a client with no endpoint: inside a Bitrix24 frame it uses the
// frame; elsewhere it validates the arguments, then rejects with NOT_CONFIGURED.
let frameClient;
let unconfiguredClient;
function currentClient() {
  if (defaultClient) return defaultClient;
  return isInsideBitrix24() ? (frameClient ??= new Client({ frame: true })) : (unconfiguredClient ??= new Client({}));
}

// `frame` left out and no other way to reach the portal: auto-detect the frame at the first call.
function withFrame(config) {
  try {
    const unset = config && typeof config === 'object' && config.frame === undefined
      && config.webhookUrl === undefined && config.portal === undefined && config.accessToken === undefined;
    return unset && isInsideBitrix24() ? { ...config, frame: true } : config;
  } catch {
    return config;
  }
}
