// b24-crm-item: delete Bitrix24 CRM items. No init call is needed: the first call loads the
// WebAssembly module (found next to this file via import.meta.url) and later calls reuse it.
import { B24Error } from './runtime.js';
// The glue (plain JS, no side effects) loads with this module, in parallel with runtime.js; only the
// wasm waits for the first call.
import { initSync, newClient, dropClient, clientDeleteItem, clientDeleteItems, wake } from './b24_crm_item.js';
import { install } from './runtime.js';

export { B24Error };

let loading;

/** Loads and compiles the WebAssembly module; calls do this by themselves. */
export function init() {
  return load();
}

// A failed load rejects with a B24Error (NETWORK_ERROR) and is not kept: the next call tries again.
function load() {
  return (loading ??= (async () => {
    const url = new URL('./b24_crm_item_bg.wasm', import.meta.url);
    try {
      initSync(await compile(url));
      install(wake);
    } catch (cause) {
      loading = undefined;
      // Vite's dev server pre-bundles dependencies into .vite/deps/, away from the wasm file.
      const hint = url.pathname.includes('/.vite/deps/') ? "; with Vite, set optimizeDeps: { exclude: ['b24-crm-item'] }" : '';
      throw new B24Error('NETWORK_ERROR', `could not load the WebAssembly module ${url.href}: ${cause?.message ?? cause}${hint}`,
        { kind: 'network', retryable: true, cause });
    }
  })());
}

// Compiled here (streaming where the server says application/wasm) and instantiated by the glue's
// initSync: the glue's own loader, with its fallbacks and warnings, stays out of the bundle. initSync
// gets the WebAssembly.Module itself: the build strips its argument checks (xtask trim_glue).
async function compile(url) {
  if (url.protocol === 'file:') {
    // Node's fetch cannot read file: URLs; read the bytes instead.
    const fs = 'node:fs/promises';
    const { readFile } = await import(/* webpackIgnore: true */ /* @vite-ignore */ fs);
    return WebAssembly.compile(await readFile(url));
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  // Streaming compilation refuses a Content-Type with parameters (`; charset=utf-8`): stream only
  // for the plain `application/wasm`, compile the bytes otherwise.
  return response.headers.get('Content-Type') === 'application/wasm'
    ? WebAssembly.compileStreaming(response)
    : WebAssembly.compile(await response.arrayBuffer());
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
