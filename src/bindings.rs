//! The JS surface: the only module that touches wasm-bindgen.
//!
//! It converts JS values to the core's inputs (ids, config, options), runs the core's pipeline
//! with [`WebEnv`] (fetch, timers and the abort signal, through `pkg-template/runtime.js`), and
//! converts results and errors back: every rejection is a `B24Error` built in one place,
//! [`to_js_error`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use wasm_bindgen::prelude::*;

use crate::bulk::{self, BulkOptions, BulkReport};
use crate::call::{self, CallOptions, Credentials, Env, RawResponse};
use crate::config::{self, Config, ConfigInput, Endpoint, RateLimitInput};
use crate::envelope::{self, HttpRequest};
use crate::error::Error;
use crate::executor::{self, Waits};
use crate::id::{self, RawId};
use crate::response::{self, Body, Key, Kind};
use crate::secret::Secret;

#[wasm_bindgen(module = "/pkg-template/runtime.js")]
extern "C" {
    // Numbers and flags cross as `i32`: an import that needs no conversion (no `>>> 0` for a
    // `u32`, no `!== 0` for a `bool`) is handed to the wasm as it is, with no glue wrapper
    // (−33 B gzip).
    // Text goes to JS as UTF-8 bytes, made into strings by runtime.js's `text`: the glue then
    // carries no string decoder of its own, nor the wasm a cached JS string of the URL (−281 B
    // gzip).
    #[wasm_bindgen(js_name = makeError)]
    #[allow(clippy::too_many_arguments)]
    fn make_error(
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
    fn sleep(ms: f64, signal: &JsValue) -> JsValue;

    /// Ends a `sleep` early (it resolves `false`), its timer and listener gone; no-op once ended.
    #[wasm_bindgen(js_name = cancelSleep)]
    fn cancel_sleep(sleep: &JsValue);

    // The URL and the body go over as bytes too.
    /// POSTs `body` to `url`, or when `bx24` calls the BX24 method `url` with it: one import
    /// for both (−58 B gzip).
    fn send(bx24: i32, url: &[u8], body: &[u8], timeout_ms: f64, signal: &JsValue) -> JsValue;

    #[wasm_bindgen(js_name = refreshToken)]
    fn refresh_token(callback: &JsValue, timeout_ms: f64, signal: &JsValue) -> JsValue;

    #[wasm_bindgen(js_name = frameAuth)]
    fn frame_auth(first: i32, timeout_ms: f64, signal: &JsValue) -> JsValue;

    // Plain JS values (no js-sys: its closure shims alone were ~5 KB of the wasm).
    /// `signal.reason` (or `signal.aborted` when not `reason`); `undefined` when `signal` is not
    /// an object; a symbol (truthy) when the getter throws.
    #[wasm_bindgen(js_name = signalGet)]
    fn signal_get(signal: &JsValue, reason: i32) -> JsValue;

    /// The configuration's members, type-checked (see runtime.js), or the index in
    /// [`CONFIG_ERRORS`] of the first rule broken.
    #[wasm_bindgen(js_name = readConfig)]
    fn check_config(config: &JsValue) -> JsValue;

    /// `[signal, timeoutMs, haltOnError, onProgress]` of a call's options (the last two when
    /// `bulk`), checked; or the index in [`OPTION_ERRORS`] of the first rule broken.
    #[wasm_bindgen(js_name = readOptions)]
    fn check_options(options: &JsValue, bulk: i32) -> JsValue;

    /// `[...iterable]`, or `undefined` for a string or anything not iterable.
    fn items(iterable: &JsValue) -> JsValue;

    /// `array[index]`.
    fn at(array: &JsValue, index: i32) -> JsValue;

    /// `array.length`.
    fn length(array: &JsValue) -> u32;

    /// `value`, or its decimal text when it is a bigint.
    #[wasm_bindgen(js_name = idValue)]
    fn id_value(value: &JsValue) -> JsValue;

    /// Whether the platform's URL parser accepts `url` (`new URL(url)` does not throw).
    #[wasm_bindgen(js_name = urlParses)]
    fn url_parses(url: &[u8]) -> bool;

    /// `Promise.reject(error)`.
    fn reject(error: &JsValue) -> JsValue;

    /// `callback({ done, total })`; a throw is swallowed.
    fn progress(callback: &JsValue, done: f64, total: f64);

    /// `object["k" + index]`, or `undefined` (see [`response::Json::command`]).
    fn command(object: &JsValue, index: i32) -> JsValue;

    /// `object[KEYS[key]]` (see [`Key`]), or `undefined`.
    fn member(object: &JsValue, key: i32) -> JsValue;

    /// A JSON value's kind: 0 null, 1 true, 2 false, 3 number, 4 string, 5 array, 6 object.
    #[wasm_bindgen(js_name = jsonKind)]
    fn json_kind(value: &JsValue) -> u32;

    /// `{ entityTypeId, id }`, with the `time` of `answer` (`[status, body, class]`) when `has_time`.
    fn deleted(entity_type_id: f64, id: f64, has_time: i32, answer: &JsValue) -> JsValue;

    /// `{ deleted: [...deleted], notFound: [...notFound], failed: [] }`, the ids as numbers.
    fn report(deleted: &[u64], not_found: &[u64]) -> JsValue;

    /// `report.failed.push({ id, error })`.
    #[wasm_bindgen(js_name = addFailed)]
    fn add_failed(report: &JsValue, id: f64, error: &JsValue);

    /// `promise.then((value) => wake(slot, value))`; runtime.js promises never reject.
    fn resume(promise: &JsValue, slot: i32);

    /// A new promise that [`finish`] settles; `key` names it.
    fn task(key: i32) -> JsValue;

    fn finish(key: i32, ok: i32, value: &JsValue);
}

#[wasm_bindgen]
extern "C" {
    /// The monotonic clock every relative time runs on.
    #[wasm_bindgen(js_namespace = performance)]
    fn now() -> f64;

    /// The wall clock: only for a portal's Unix time that comes without its own `finish`.
    #[wasm_bindgen(js_namespace = Date, js_name = now)]
    fn wall_now() -> f64;

    #[wasm_bindgen(js_namespace = Math)]
    fn random() -> f64;
}

thread_local! {
    static WAITS: Waits<JsValue> = const { Waits::new() };
    static NEXT_KEY: Cell<u32> = const { Cell::new(0) };
    /// The clients index.js made, by handle (the index); a slot empties when index.js drops it.
    static CLIENTS: RefCell<Vec<Option<Client>>> = const { RefCell::new(Vec::new()) };
}

/// Cancels a runtime.js `sleep` when dropped.
struct CancelOnDrop(JsValue);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        cancel_sleep(&self.0);
    }
}

/// A runtime.js `sleep`: `Err(Aborted)` when the call's signal ends it. A future of its own,
/// not an `async fn` (−53 B gzip); its timer starts when it is made, not at its first poll
/// (every caller awaits it at once).
struct Sleep {
    wait: executor::Wait<JsValue>,
    /// A sleep dropped before its end (a race lost) takes its timer with it: a pending timer
    /// would keep Node's process alive until it fired.
    _cancel: CancelOnDrop,
}

impl Future for Sleep {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.wait).poll(cx).map(|ended| {
            if ended.is_truthy() {
                Ok(())
            } else {
                Err(Error::Aborted)
            }
        })
    }
}

/// Where runtime.js hands back what a promise given to `resume(promise, slot)` settled with. The
/// package entry passes this export to runtime.js's `install` once the wasm is loaded (a JS
/// closure made here would cost its shims and a wrapper call per settled promise).
#[wasm_bindgen]
pub fn wake(slot: u32, value: JsValue) {
    WAITS.with(|w| w.fill(slot as usize, value));
    executor::run();
}

/// Awaits a runtime.js promise (one that never rejects) on our executor. A plain function
/// returning the [`executor::Wait`], not an `async fn`: no state machine around it, and the
/// promise is not held across the wait (−21 B gzip). Callers bind the wait first
/// (`let wait = settled(&…);`) so that the promise, a temporary, is dropped before the await.
fn settled(promise: &JsValue) -> executor::Wait<JsValue> {
    let wait = Waits::open(&WAITS);
    resume(promise, wait.slot() as i32);
    wait
}

/// A new call's key and its promise, which `finish(key, …)` settles.
fn new_task() -> (i32, JsValue) {
    let key = NEXT_KEY.replace(NEXT_KEY.get().wrapping_add(1)) as i32;
    (key, task(key))
}

/// A Bitrix24 client: one configuration, one pacing bucket, one token. JS holds it by handle
/// (a plain number: no wasm-bindgen class, with its borrow checks and glue, for one internal
/// object).
struct Client {
    core: Rc<call::Client>,
    platform: Platform,
}

/// What each call's [`WebEnv`] is made from.
#[derive(Clone)]
struct Platform {
    on_token_expired: Option<JsValue>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    frame: bool,
}

impl Platform {
    fn env(self, signal: JsValue) -> WebEnv {
        WebEnv {
            signal,
            cause: RefCell::new(JsValue::UNDEFINED),
            answer: RefCell::new(JsValue::UNDEFINED),
            on_token_expired: self.on_token_expired,
            frame: self.frame,
        }
    }
}

/// Checks `config` and builds a client: its handle, or the `B24Error` (`INVALID_ARGUMENT`) when
/// the config is invalid (returned, not thrown: index.js throws it).
#[wasm_bindgen(js_name = newClient)]
pub fn new_client(config: &JsValue) -> JsValue {
    match Client::new(config) {
        Ok(client) => CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            // The first free slot, or a new one at the end: written once, no `None` pushed to
            // overwrite (−29 B gzip).
            let mut handle = 0;
            while let Some(slot) = clients.get_mut(handle) {
                if slot.is_none() {
                    *slot = Some(client);
                    return JsValue::from(handle as u32);
                }
                handle += 1;
            }
            clients.push(Some(client));
            JsValue::from(handle as u32)
        }),
        Err(error) => error,
    }
}

/// Frees a client's slot (index.js does so when its JS `Client` is garbage-collected). Calls in
/// flight keep what they use. The client is dropped in place, inside the borrow (its drop never
/// reaches `CLIENTS`), not taken out and dropped after it (−48 B gzip).
#[wasm_bindgen(js_name = dropClient)]
pub fn drop_client(handle: u32) {
    CLIENTS.with(|clients| clients.borrow_mut()[handle as usize] = None);
}

/// Deletes one CRM item. Resolves `{entityTypeId, id, time?}`; rejects with a `B24Error`.
#[wasm_bindgen(js_name = clientDeleteItem)]
pub fn client_delete_item(
    handle: u32,
    entity_type_id: JsValue,
    id: JsValue,
    options: JsValue,
) -> JsValue {
    // Arguments are checked before anything async: a bad one rejects at once.
    let checked = (|| {
        let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
        let id = read_id(
            &id,
            "id must be a positive safe integer or its decimal string",
        )?;
        let (call_options, signal, _) = read_options(&options, false)?;
        Ok::<_, &str>((entity_type_id, id, call_options, signal))
    })();
    let (entity_type_id, id, call_options, signal) = match checked {
        Ok(checked) => checked,
        Err(why) => return rejected(why, envelope::DELETE),
    };
    let (core, env) = Client::call(handle, signal);
    // The task settles its promise itself: no generic `spawn` wrapper, one state machine less
    // (−106 B gzip).
    let (key, promise) = new_task();
    executor::spawn(async move {
        // `Client::delete_item`, its steps awaited here (one state machine less: −159 B gzip).
        let (deadline, job) = core.delete_job(env.now_ms(), entity_type_id, id, call_options);
        let (ok, value) = match core.run(&env, deadline, job, None).await {
            Ok((answer, _)) => (
                true,
                deleted(
                    entity_type_id as f64,
                    id as f64,
                    answer.deleted().time.is_some().into(),
                    &env.answer.borrow(),
                ),
            ),
            Err(e) => (false, env.error(&e.error, e.attempts, envelope::DELETE)),
        };
        finish(key, ok.into(), &value);
    });
    promise
}

/// Deletes many items of one type through `batch`. Resolves a report that accounts for every
/// distinct id; rejects only for invalid arguments or `NOT_CONFIGURED`, before any request.
#[wasm_bindgen(js_name = clientDeleteItems)]
pub fn client_delete_items(
    handle: u32,
    entity_type_id: JsValue,
    ids: JsValue,
    options: JsValue,
) -> JsValue {
    let checked = (|| {
        let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
        let ids = read_ids(&ids)?;
        let (call_options, signal, read) = read_options(&options, true)?;
        let halt_on_error = at(&read, 2).is_truthy();
        // `undefined` when not given: a plain `JsValue`, no `Option` to move and drop (−42 B gzip).
        let on_progress = at(&read, 3);
        let options = BulkOptions {
            timeout_ms: call_options.timeout_ms,
            halt_on_error,
        };
        Ok::<_, &str>((entity_type_id, ids, options, signal, on_progress))
    })();
    let (entity_type_id, ids, options, signal, on_progress) = match checked {
        Ok(checked) => checked,
        Err(why) => return rejected(why, envelope::BATCH),
    };
    let (core, env) = Client::call(handle, signal);
    // One async block that settles the promise itself: through a generic `spawn`, its future was
    // moved into a second one (a copy of its whole state; −130 B gzip).
    let (key, promise) = new_task();
    executor::spawn(async move {
        let report = core
            .delete_items(&env, entity_type_id, &ids, options, |done, total| {
                if !on_progress.is_undefined() {
                    // A throwing onProgress must not break the run: progress() swallows it.
                    progress(&on_progress, done as f64, total as f64);
                }
            })
            .await;
        let (ok, value) = match report {
            Ok(report) => (true, bulk_report(&report, &env)),
            Err(e) => (false, env.error(&e.error, e.attempts, envelope::BATCH)),
        };
        finish(key, ok.into(), &value);
    });
    promise
}

impl Client {
    fn new(config: &JsValue) -> Result<Client, JsValue> {
        // Every refusal is a config message: one `B24Error` built for them all (−53 B gzip).
        let (config, on_token_expired) = read_config(config)
            .map_err(|why| to_js_error(&Error::InvalidConfig(why), 0, "", &JsValue::UNDEFINED))?;
        let frame = config.endpoint == Endpoint::Frame;
        Ok(Client {
            core: Rc::new(call::Client::new(config)),
            platform: Platform {
                on_token_expired,
                frame,
            },
        })
    }

    /// What one call of the client `handle` runs with: its core and a fresh environment.
    fn call(handle: u32, signal: JsValue) -> (Rc<call::Client>, WebEnv) {
        CLIENTS.with(|clients| {
            let clients = clients.borrow();
            let client = clients[handle as usize]
                .as_ref()
                .expect("index.js calls only the clients it holds");
            (client.core.clone(), client.platform.clone().env(signal))
        })
    }
}

const ENTITY_TYPE_ID: &str = "entityTypeId must be a positive safe integer or its decimal string";

/// A promise rejected with the `B24Error` for an argument error (nothing was sent). The argument
/// readers give only the broken rule's message: the `Error` is built here once, not carried
/// through each reader's `Result` (−127 B gzip).
fn rejected(why: &'static str, method: &str) -> JsValue {
    reject(&to_js_error(
        &Error::InvalidArgument(why),
        0,
        method,
        &JsValue::UNDEFINED,
    ))
}

/// Reads an iterable of ids, without repeats.
fn read_ids(ids: &JsValue) -> Result<Vec<u64>, &'static str> {
    const WHY: &str = "ids must be an iterable of positive safe integers or their decimal strings";
    let list = items(ids);
    if list.is_undefined() {
        return Err(WHY);
    }
    let count = length(&list);
    // Each id goes into the set as it is read: no `Vec` of all ids and no `collect` of
    // results, whose iterator adapters and growth paths cost ~550 B gzip.
    let mut unique = bulk::Distinct::new(count as usize);
    for i in 0..count {
        unique.insert(read_id(&at(&list, i as i32), WHY)?);
    }
    Ok(unique.ids)
}

fn bulk_report(report: &BulkReport, env: &WebEnv) -> JsValue {
    let result = self::report(&report.deleted, &report.not_found);
    for f in &report.failed {
        let error = env.error(&f.error, f.attempts, f.method);
        add_failed(&result, f.id as f64, &error);
    }
    result
}

/// A runtime.js promise's value, read by `read` once settled: a future of its own, not an
/// `async fn` (one state machine less: −50 B gzip).
struct Settled<F> {
    wait: executor::Wait<JsValue>,
    read: F,
}

impl<T, F: FnMut(JsValue) -> T + Unpin> Future for Settled<F> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        Pin::new(&mut this.wait).poll(cx).map(&mut this.read)
    }
}

/// The per-call platform: timers, fetch and the caller's abort signal.
struct WebEnv {
    signal: JsValue,
    /// The JS error behind the latest failure, for `B24Error.cause`.
    cause: RefCell<JsValue>,
    /// The latest answer, `[status, body, class]`: a success's `time` is read from it in JS.
    answer: RefCell<JsValue>,
    on_token_expired: Option<JsValue>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    frame: bool,
}

impl WebEnv {
    /// The `B24Error` for a failed call, with its cause: the abort reason, or the JS error
    /// behind a network failure or a failed token refresh.
    fn error(&self, error: &Error, attempts: u32, method: &str) -> JsValue {
        let cause = if matches!(
            error,
            Error::Aborted | Error::NotAttempted { timeout: false, .. }
        ) {
            signal_get(&self.signal, 1)
        } else {
            self.cause.borrow().clone()
        };
        to_js_error(error, attempts, method, &cause)
    }

    /// What a runtime.js `send` (fetch or BX24) settled with, as the core reads it.
    fn answer(&self, answer: JsValue) -> Result<RawResponse<JsJson>, Error> {
        let status = number(&answer, 0).unwrap_or(0.0) as u16;
        if status != 0 {
            let body = match number(&answer, 2).unwrap_or(3.0) as u32 {
                0 => Body::Json(JsJson(at(&answer, 1))),
                1 => Body::Empty,
                2 => Body::Html,
                _ => Body::Invalid,
            };
            *self.answer.borrow_mut() = answer;
            return Ok(RawResponse { status, body });
        }
        *self.cause.borrow_mut() = at(&answer, 2);
        Err(match number(&answer, 1).unwrap_or(0.0) as u32 {
            2 => Error::Timeout,
            3 => Error::Aborted,
            _ => Error::Network,
        })
    }
}

impl Env for WebEnv {
    type Json = JsJson;

    fn now_ms(&self) -> f64 {
        now()
    }

    fn wall_ms(&self) -> f64 {
        wall_now()
    }

    fn random(&self) -> f64 {
        random()
    }

    fn sleep(&self, ms: f64) -> impl Future<Output = Result<(), Error>> {
        let timer = sleep(ms, &self.signal);
        Sleep {
            wait: settled(&timer),
            _cancel: CancelOnDrop(timer),
        }
    }

    fn send(
        &self,
        request: &HttpRequest,
        timeout_ms: f64,
    ) -> impl Future<Output = Result<RawResponse<JsJson>, Error>> {
        let (url, body) = (request.url.expose(), request.body.expose().as_bytes());
        // `[status, body parsed by JSON.parse, class]` or `[0, failure, cause]` (runtime.js).
        Settled {
            wait: settled(&send(
                request.bx24.into(),
                url.as_bytes(),
                body,
                timeout_ms,
                &self.signal,
            )),
            read: |answer| self.answer(answer),
        }
    }

    fn aborted(&self) -> bool {
        // Most calls have no signal: no trip to JS for them.
        !self.signal.is_undefined() && signal_get(&self.signal, 0).is_truthy()
    }

    async fn refresh_token(&self, first: bool, timeout_ms: f64) -> Result<Credentials, Error> {
        // The frame's BX24 or the onTokenExpired callback, behind one await (−33 B gzip).
        let wait = settled(&if self.frame {
            frame_auth(first.into(), timeout_ms, &self.signal)
        } else if let Some(callback) = &self.on_token_expired {
            refresh_token(callback, timeout_ms, &self.signal)
        } else {
            return Err(Error::NotConfigured);
        });
        let answer = wait.await;
        if self.frame {
            // [0] no BX24, [1] BX24 did not answer in time, [2] use BX24.callMethod,
            // [3, restBase, token] call the portal directly, [4] aborted, [5, error] BX24.init threw.
            return match number(&answer, 0).unwrap_or(0.0) as u32 {
                3 => {
                    let token = string(&answer, 2).unwrap_or_default();
                    // A portal that fails the https rule or the URL parser is reached through BX24 instead.
                    match config::parse_portal(&string(&answer, 1).unwrap_or_default()) {
                        Ok(rest_base) if !token.is_empty() && url_parses(rest_base.as_bytes()) => {
                            Ok(Credentials::Token {
                                token: Secret::new(token),
                                rest_base: Some(rest_base),
                            })
                        }
                        _ => Ok(Credentials::Bx24),
                    }
                }
                2 => Ok(Credentials::Bx24),
                1 => Err(Error::Timeout),
                4 => Err(Error::Aborted),
                5 => {
                    *self.cause.borrow_mut() = at(&answer, 1);
                    Err(Error::InvalidConfig(
                        "the frame's BX24.init threw (see cause)",
                    ))
                }
                _ => Err(Error::NotConfigured),
            };
        }
        if self.aborted() {
            return Err(Error::Aborted);
        }
        match string(&answer, 0) {
            Some(token) => Ok(Credentials::Token {
                token: Secret::new(token),
                rest_base: None,
            }),
            None => {
                *self.cause.borrow_mut() = at(&answer, 1);
                // Out of this call's time: not a failure the calls waiting on it share.
                if at(&answer, 2).is_truthy() {
                    Err(Error::Timeout)
                } else {
                    Err(Error::InvalidConfig("onTokenExpired failed"))
                }
            }
        }
    }
}

/// A value from `JSON.parse` (runtime.js parses every answer): the wasm carries no JSON parser.
pub struct JsJson(JsValue);

impl response::Json for JsJson {
    fn get(&self, key: Key) -> Option<Self> {
        // JSON has no `undefined`: it means "no such member" (or not an object).
        Some(member(&self.0, key as i32))
            .filter(|v| !v.is_undefined())
            .map(JsJson)
    }

    fn kind(&self) -> Kind {
        // One trip to JS instead of a typeof check per kind.
        match json_kind(&self.0) {
            0 => Kind::Null,
            1 => Kind::True,
            2 => Kind::False,
            3 => Kind::Number,
            4 => Kind::Str,
            5 => Kind::Array,
            _ => Kind::Object,
        }
    }

    fn as_str(&self) -> Option<String> {
        self.0.as_string()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn command(&self, index: usize) -> Option<Self> {
        Some(command(&self.0, index as i32))
            .filter(|v| !v.is_undefined())
            .map(JsJson)
    }
}

/// The one place a core error becomes a JS `B24Error`. (The error and its attempts apart, not a
/// `CallError`: argument and config errors are not moved into one first, −29 B gzip.)
fn to_js_error(e: &Error, attempts: u32, method: &str, cause: &JsValue) -> JsValue {
    make_error(
        e.code().as_bytes(),
        e.description().as_bytes(),
        e.status(),
        method.as_bytes(),
        e.kind().as_str().as_bytes(),
        e.retryable(),
        attempts,
        cause,
    )
}

fn read_id(value: &JsValue, why: &'static str) -> Result<u64, &'static str> {
    // A bigint is checked as its decimal text, made in JS: no bigint test and no string return
    // in the glue (−35 B gzip).
    let value = id_value(value);
    // The text read up front (`None` for a number), not only when the value is no number
    // (−46 B gzip).
    let text = value.as_string();
    let raw = if let Some(n) = value.as_f64() {
        RawId::Number(n)
    } else if let Some(s) = &text {
        RawId::Text(s)
    } else {
        RawId::Other
    };
    id::parse_id(raw).ok_or(why)
}

/// What [`check_config`]'s numbers stand for: the configuration is not an object, a member
/// (in runtime.js's `CONFIG` order) is of another type, `rateLimit` is not `false` or
/// `{ burst, perSecond }` with numbers (their ranges are the core's to check).
const CONFIG_ERRORS: [&str; 9] = [
    "the configuration must be an object",
    "onTokenExpired must be a function",
    "webhookUrl must be a string",
    "portal must be a string",
    "accessToken must be a string",
    "frame must be a boolean",
    "timeoutMs must be a number",
    "maxRetries must be a number",
    "rateLimit must be false or { burst, perSecond }",
];

/// The checked configuration and its `onTokenExpired`, or the message that refuses it.
fn read_config(config: &JsValue) -> Result<(Config, Option<JsValue>), &'static str> {
    let read = check_config(config);
    if let Some(why) = broken_rule(&read, &CONFIG_ERRORS) {
        return Err(why);
    }
    // Every member has its type now: reading them cannot fail.
    let field = |i| at(&read, i);
    let on_token_expired = Some(field(0)).filter(JsValue::is_function);
    let rate_limit = match number(&read, 7) {
        Some(burst) => RateLimitInput::Custom {
            burst,
            per_second: number(&read, 8).unwrap_or_default(),
        },
        None if field(7).is_undefined() => RateLimitInput::Default,
        None => RateLimitInput::Off,
    };
    // A boolean or `undefined`: read without `as_bool`, a glue shim of its own (−33 B gzip).
    let frame = field(4);
    let input = ConfigInput {
        webhook_url: string(&read, 1),
        portal: string(&read, 2),
        access_token: string(&read, 3).map(Secret::new),
        has_token_callback: on_token_expired.is_some(),
        frame: (!frame.is_undefined()).then(|| frame.is_truthy()),
        timeout_ms: number(&read, 5),
        max_retries: number(&read, 6),
        rate_limit,
    };
    let config = Config::check(&input)?;
    // The platform's URL parser has the last word (see `Endpoint::base_url`).
    if let Some((url, refused)) = config.endpoint.base_url() {
        if !url_parses(url.as_bytes()) {
            return Err(refused);
        }
    }
    Ok((config, on_token_expired))
}

/// `array[index]` as a number, if it is one. (Readers of their own, not `at` and a conversion
/// inlined at every member: −49 B gzip with [`string`].)
#[inline(never)]
fn number(array: &JsValue, index: i32) -> Option<f64> {
    at(array, index).as_f64()
}

/// `array[index]` as a string, if it is one.
#[inline(never)]
fn string(array: &JsValue, index: i32) -> Option<String> {
    at(array, index).as_string()
}

/// The message of the rule a runtime.js checker reports broken (it answers a rule's number
/// instead of the values).
fn broken_rule(read: &JsValue, messages: &[&'static str]) -> Option<&'static str> {
    let rule = read.as_f64()?;
    Some(messages.get(rule as usize).copied().unwrap_or_default())
}

/// What [`check_options`]' numbers stand for.
const OPTION_ERRORS: [&str; 5] = [
    "options must be an object",
    "signal must be an AbortSignal",
    "timeoutMs must be a number",
    "haltOnError must be a boolean",
    "onProgress must be a function",
];

/// Reads `{ signal, timeoutMs }` (checked in runtime.js); the signal is returned as given (or
/// `undefined`), and the checked options for their other members.
fn read_options(
    options: &JsValue,
    bulk: bool,
) -> Result<(CallOptions, JsValue, JsValue), &'static str> {
    let read = check_options(options, bulk.into());
    if let Some(why) = broken_rule(&read, &OPTION_ERRORS) {
        return Err(why);
    }
    let call_options = CallOptions {
        // runtime.js checked the types; the rule for the value is the core's.
        timeout_ms: config::parse_timeout(number(&read, 1))?,
    };
    Ok((call_options, at(&read, 0), read))
}
