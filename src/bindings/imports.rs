//! What the wasm imports: `pkg-template/runtime.js`'s functions and the engine's two clocks.
//!
//! Numbers and flags cross as `i32` (an import that needs no conversion has no glue wrapper);
//! text goes to JS as UTF-8 bytes, made into strings by runtime.js's `text` (no string decoder in
//! the glue). The numbers in answers are named by [`crate::protocol`]'s tables.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/pkg-template/runtime.js")]
extern "C" {
    /// A `B24Error` (see [`super::to_js_error`]).
    #[wasm_bindgen(js_name = makeError)]
    #[allow(clippy::too_many_arguments)]
    pub fn make_error(
        code: &[u8],
        description: &[u8],
        status: u16,
        method: &[u8],
        kind: &[u8],
        retryable: bool,
        attempts: u32,
        cause: &JsValue,
    ) -> JsValue;

    // The platform: each returns a promise that never rejects.
    /// Resolves `true` after `ms`, or `false` as soon as `signal` aborts.
    pub fn sleep(ms: f64, signal: &JsValue) -> JsValue;

    /// Ends a `sleep` early (it resolves `false`), its timer and listener gone; no-op once ended.
    #[wasm_bindgen(js_name = cancelSleep)]
    pub fn cancel_sleep(sleep: &JsValue);

    /// POSTs `body` to `url`, or when `bx24` calls the BX24 method `url` with it. Resolves
    /// `[status, body, BodyClass]` or `[0, SendFailure, cause]`.
    pub fn send(bx24: i32, url: &[u8], body: &[u8], timeout_ms: f64, signal: &JsValue) -> JsValue;

    /// Calls `onTokenExpired`: `[Refresh, token or cause]`.
    #[wasm_bindgen(js_name = refreshToken)]
    pub fn refresh_token(callback: &JsValue, timeout_ms: f64, signal: &JsValue) -> JsValue;

    /// The frame's auth (`current`: BX24.getAuth first, else BX24.refreshAuth):
    /// `[FrameAuth, ...]`.
    #[wasm_bindgen(js_name = frameAuth)]
    pub fn frame_auth(current: i32, timeout_ms: f64, signal: &JsValue) -> JsValue;

    // Plain JS values (no js-sys: see docs/size.md).
    /// `signal.reason` or `signal.aborted` (a [`crate::protocol::SignalRead`]); `undefined` when
    /// `signal` is not an object; a symbol (truthy) when the getter throws.
    #[wasm_bindgen(js_name = signalGet)]
    pub fn signal_get(signal: &JsValue, read: i32) -> JsValue;

    /// `object[name]`; `undefined` for a non-object; a symbol (of no type the readers accept)
    /// when the getter throws.
    pub fn field(object: &JsValue, name: &[u8]) -> JsValue;

    /// `[...iterable]`, or `undefined` for a string or anything not iterable.
    pub fn items(iterable: &JsValue) -> JsValue;

    /// `array[index]`.
    pub fn at(array: &JsValue, index: i32) -> JsValue;

    /// `array.length`.
    pub fn length(array: &JsValue) -> u32;

    /// `value`, or its decimal text when it is a bigint.
    #[wasm_bindgen(js_name = idValue)]
    pub fn id_value(value: &JsValue) -> JsValue;

    /// Whether the platform's URL parser accepts `url` (`new URL(url)` does not throw).
    #[wasm_bindgen(js_name = urlParses)]
    pub fn url_parses(url: &[u8]) -> bool;

    /// `Promise.reject(error)`.
    pub fn reject(error: &JsValue) -> JsValue;

    /// `callback({ done, total })`; a throw is swallowed.
    pub fn progress(callback: &JsValue, done: f64, total: f64);

    /// `object["k" + index]`, or `undefined` (see [`crate::response::Json::command`]).
    pub fn command(object: &JsValue, index: i32) -> JsValue;

    /// `object[KEYS[key]]` (see [`crate::response::Key`]), or `undefined`.
    pub fn member(object: &JsValue, key: i32) -> JsValue;

    /// A JSON value's [`crate::response::Kind`].
    #[wasm_bindgen(js_name = jsonKind)]
    pub fn json_kind(value: &JsValue) -> u32;

    /// `{ entityTypeId, id }`, with the `time` of `answer` (`[status, body, class]`) when `has_time`.
    pub fn deleted(entity_type_id: f64, id: f64, has_time: i32, answer: &JsValue) -> JsValue;

    /// `{ deleted: [...deleted], notFound: [...notFound], failed: [] }`, the ids as numbers.
    pub fn report(deleted: &[u64], not_found: &[u64]) -> JsValue;

    /// `report.failed.push({ id, error })`.
    #[wasm_bindgen(js_name = addFailed)]
    pub fn add_failed(report: &JsValue, id: f64, error: &JsValue);

    /// `promise.then((value) => wake(slot, value))`; runtime.js promises never reject.
    pub fn resume(promise: &JsValue, slot: i32);

    /// A new promise that [`finish`] settles; `key` names it.
    pub fn task(key: i32) -> JsValue;

    /// Settles the promise [`task`] made for `key`: resolved with `value` when `ok`, else rejected.
    pub fn finish(key: i32, ok: i32, value: &JsValue);
}

#[wasm_bindgen]
extern "C" {
    /// The monotonic clock every relative time runs on.
    #[wasm_bindgen(js_namespace = performance)]
    pub fn now() -> f64;

    /// The wall clock (Unix ms): only for a portal's Unix time that comes without its `finish`.
    #[wasm_bindgen(js_namespace = Date, js_name = now)]
    pub fn wall_now() -> f64;

    #[wasm_bindgen(js_namespace = Math)]
    pub fn random() -> f64;
}
