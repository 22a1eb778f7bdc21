/**
 * b24-crm-item: delete Bitrix24 CRM items (`crm.item.delete`) from a web front end, a Bitrix24
 * placement widget or Node >= 20. No init call is needed.
 */

/** A positive safe integer, or its canonical decimal string (`"8061"`). */
export type Id = number | string;

/** How a client reaches the portal, and its limits. Give exactly one way to reach the portal. */
export interface ClientConfig {
  /** A webhook URL: `"https://acme.bitrix24.com/rest/1/s3cr3t/"` (trailing slash optional). `https:` only, except loopback hosts. */
  webhookUrl?: string;
  /** OAuth: the portal, `"https://acme.bitrix24.com"` (with `accessToken`). */
  portal?: string;
  /** OAuth: the access token (with `portal`). */
  accessToken?: string;
  /** OAuth: returns a fresh access token when the portal answers `expired_token`. */
  onTokenExpired?: () => string | Promise<string>;
  /** Use the enclosing Bitrix24 frame (BX24). Default: auto-detect. */
  frame?: boolean;
  /** Whole-call deadline in ms, retries and waits included. Default 30000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 3. */
  maxRetries?: number;
  /** Client-side pacing as a leaky bucket (default 50 / 2 per second), or `false` for none. */
  rateLimit?: { burst: number; perSecond: number } | false;
  /**
   * The client's share of the portal's operating limit: seconds of execution time per method
   * per 10 minutes (above 0, at most 600; the portal allows 480), or `false` for none.
   * Default 420. (Checked, not yet acted on.)
   */
  operatingLimit?: number | false;
}

/** Options of one call. */
export interface CallOptions {
  /** Aborts the call at once (rejects with `ABORTED`, the signal's reason as `cause`). */
  signal?: AbortSignal;
  /** This call's deadline in ms, overriding the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** Options of a bulk delete. */
export interface BulkOptions extends CallOptions {
  /** Called after each batch with the ids accounted for so far. */
  onProgress?: (p: { done: number; total: number }) => void;
  /** Stop at the first failed id. Default false. */
  haltOnError?: boolean;
}

/** The portal's `time` object of an answer. Its composition may vary. */
export interface RequestTime {
  start?: number;
  finish?: number;
  duration?: number;
  processing?: number;
  date_start?: string;
  date_finish?: string;
  operating?: number;
  operating_reset_at?: number;
  [key: string]: unknown;
}

/** A confirmed delete. */
export interface DeleteResult {
  entityTypeId: number;
  id: number;
  /** The portal's `time` object, when the transport gives one. */
  time?: RequestTime;
}

/** The outcome of `deleteItems`: every distinct input id appears exactly once. */
export interface BulkReport {
  /** Ids the portal confirmed deleted (or already gone after a retry). */
  deleted: number[];
  /** Ids the portal answered NOT_FOUND for on a first attempt. */
  notFound: number[];
  /** Every other outcome, including ids not attempted after a halt, an abort or the deadline. */
  failed: { id: number; error: B24Error }[];
}

/** The library's own error codes; any other code is the portal's `error`, verbatim. */
export type LibraryErrorCode = 'INVALID_ARGUMENT' | 'NOT_CONFIGURED' | 'NETWORK_ERROR' | 'TIMEOUT' | 'ABORTED' | 'BAD_RESPONSE' | 'WASM_UNAVAILABLE';

/** Every rejection of this library. */
export class B24Error extends Error {
  readonly name: 'B24Error';
  /** The portal's `error` verbatim (`"NOT_FOUND"`, `"expired_token"`, ...) or a library code. */
  readonly code: LibraryErrorCode | (string & {});
  /** The portal's `error_description`, or the library's own explanation. */
  readonly description: string;
  /** The HTTP status, or 0 where there was none. */
  readonly status: number;
  /** The REST method, e.g. `"crm.item.delete"`. */
  readonly method: string;
  readonly kind: 'api' | 'network' | 'timeout' | 'aborted' | 'argument' | 'response' | 'config';
  /** Whether the same call may succeed later, unchanged. */
  readonly retryable: boolean;
  /** Requests sent for this call (0 when it failed before sending). */
  readonly attempts: number;
  /** The underlying error or abort reason, where there is one. */
  readonly cause?: unknown;
  /** The library builds its own; this is for tests and mocks that stand in for it. */
  constructor(code: string, description?: string, details?: {
    status?: number; method?: string; kind?: B24Error['kind']; retryable?: boolean; attempts?: number; cause?: unknown;
  });
}

/** Sets up the default client used by `deleteItem` and `deleteItems`. A bad config makes its calls reject with `INVALID_ARGUMENT`. */
export function configure(config: ClientConfig): void;

/** Deletes one CRM item with the default client (or, unconfigured, the enclosing Bitrix24 frame). */
export function deleteItem(entityTypeId: Id, id: Id, options?: CallOptions): Promise<DeleteResult>;

/**
 * Deletes many items of one type through `batch` (50 commands per request, paced and retried),
 * with the default client. Resolves a report in which every distinct id appears exactly once;
 * rejects only for invalid arguments or config and `NOT_CONFIGURED`, before any request. Without `timeoutMs`, each batch gets
 * the client's `timeoutMs`; with it, it bounds the whole run.
 */
export function deleteItems(entityTypeId: Id, ids: Iterable<Id>, options?: BulkOptions): Promise<BulkReport>;

/** `true` inside a Bitrix24 frame: `window.name` is `DOMAIN|PROTOCOL|APP_SID` and `BX24` is loaded. */
export function isInsideBitrix24(): boolean;

/**
 * Compiles the WebAssembly module (inside this package) ahead of the first call (optional; calling
 * it again, or while calls run, is harmless). Rejects with a `B24Error` `WASM_UNAVAILABLE` where
 * WebAssembly cannot run (a Content-Security-Policy whose `script-src` lacks `'wasm-unsafe-eval'`,
 * an engine without WebAssembly); a later call tries again.
 */
export function init(): Promise<void>;

/** A client with its own configuration, pacing bucket and token. */
export class Client {
  /** A bad config makes every call of this client reject with `INVALID_ARGUMENT`. */
  constructor(config: ClientConfig);
  /** Deletes one CRM item (`crm.item.delete`). */
  deleteItem(entityTypeId: Id, id: Id, options?: CallOptions): Promise<DeleteResult>;
  /** Deletes many items of one type through `batch`; see the module-level `deleteItems`. */
  deleteItems(entityTypeId: Id, ids: Iterable<Id>, options?: BulkOptions): Promise<BulkReport>;
}
