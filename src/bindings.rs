//! The JS surface: the only module that touches wasm-bindgen.
//!
//! It converts JS values to the core's inputs (ids, config, options), runs the core's pipeline
//! with [`WebEnv`] (fetch, timers and the abort signal, through `pkg-template/runtime.js`), and
//! converts results and errors back: every rejection is a `B24Error` built in one place,
//! [`to_js_error`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use crate::bulk::{self, BulkOptions, BulkReport};
use crate::call::{self, CallError, CallOptions, Credentials, Env, RawResponse};
use crate::config::{self, Config, ConfigInput, Endpoint, RateLimitInput};
use crate::envelope::{self, HttpRequest};
use crate::error::Error;
use crate::executor::{self, Waits};
use crate::id::{self, RawId};
use crate::response::Deleted;
use crate::secret::Secret;

#[wasm_bindgen(module = "/pkg-template/runtime.js")]
extern "C" {
    #[wasm_bindgen(js_name = makeError)]
    #[allow(clippy::too_many_arguments)]
    fn make_error(
        code: &str,
        description: &str,
        status: u16,
        method: &str,
        kind: &str,
        retryable: bool,
        attempts: u32,
        cause: &JsValue,
    ) -> JsValue;

    fn sleep(ms: f64, signal: &JsValue) -> Promise;

    fn send(url: &str, body: &str, timeout_ms: f64, signal: &JsValue) -> Promise;

    #[wasm_bindgen(js_name = refreshToken)]
    fn refresh_token(callback: &Function, timeout_ms: f64, signal: &JsValue) -> Promise;

    #[wasm_bindgen(js_name = frameAuth)]
    fn frame_auth(first: bool, timeout_ms: f64, signal: &JsValue) -> Promise;

    #[wasm_bindgen(js_name = callBx24)]
    fn call_bx24(method: &str, body: &str, timeout_ms: f64, signal: &JsValue) -> Promise;

    /// Hands runtime.js the one callback through which settled promises come back: `wake(slot, value)`.
    fn install(wake: &JsValue);

    /// `promise.then((value) => wake(slot, value))`; runtime.js promises never reject.
    fn resume(promise: &Promise, slot: u32);

    /// A new promise that [`finish`] settles; `key` names it.
    fn task(key: u32) -> Promise;

    fn finish(key: u32, ok: bool, value: &JsValue);
}

thread_local! {
    static WAITS: Waits<JsValue> = const { Waits::new() };
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
    static NEXT_KEY: Cell<u32> = const { Cell::new(0) };
}

/// Awaits a runtime.js promise (one that never rejects) on our executor.
async fn settled(promise: Promise) -> JsValue {
    if !INSTALLED.replace(true) {
        let wake = Closure::<dyn Fn(u32, JsValue)>::new(|slot: u32, value: JsValue| {
            WAITS.with(|w| w.fill(slot as usize, value));
            executor::run();
        });
        install(&wake.into_js_value());
    }
    let wait = Waits::open(&WAITS);
    resume(&promise, wait.slot() as u32);
    wait.await
}

/// Runs `future` on our executor and returns a promise of its outcome.
fn spawn(future: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let key = NEXT_KEY.replace(NEXT_KEY.get().wrapping_add(1));
    let promise = task(key);
    executor::spawn(async move {
        match future.await {
            Ok(value) => finish(key, true, &value),
            Err(error) => finish(key, false, &error),
        }
    });
    promise
}

/// A Bitrix24 client: one configuration, one pacing bucket, one token.
#[wasm_bindgen]
pub struct Client {
    core: Rc<call::Client>,
    platform: Platform,
}

/// What each call's [`WebEnv`] is made from.
#[derive(Clone)]
struct Platform {
    on_token_expired: Option<Function>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    frame: bool,
}

impl Platform {
    fn env(self, signal: JsValue) -> WebEnv {
        WebEnv {
            signal,
            cause: RefCell::new(JsValue::UNDEFINED),
            on_token_expired: self.on_token_expired,
            frame: self.frame,
        }
    }
}

#[wasm_bindgen]
impl Client {
    /// Checks `config` and builds a client; throws a `B24Error` (`INVALID_ARGUMENT`) if it is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(config: &JsValue) -> Result<Client, JsValue> {
        let (input, on_token_expired) =
            read_config(config).map_err(|e| to_js_error(&e.into(), "", &JsValue::UNDEFINED))?;
        let config =
            Config::parse(input).map_err(|e| to_js_error(&e.into(), "", &JsValue::UNDEFINED))?;
        let frame = config.endpoint == Endpoint::Frame;
        Ok(Client {
            core: Rc::new(call::Client::new(config)),
            platform: Platform {
                on_token_expired,
                frame,
            },
        })
    }

    /// Deletes one CRM item. Resolves `{entityTypeId, id, time?}`; rejects with a `B24Error`.
    #[wasm_bindgen(js_name = deleteItem)]
    pub fn delete_item(&self, entity_type_id: JsValue, id: JsValue, options: JsValue) -> Promise {
        // Arguments are checked before anything async: a bad one rejects at once.
        let checked = (|| {
            let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
            let id = read_id(
                &id,
                "id must be a positive safe integer or its decimal string",
            )?;
            let (call_options, signal) = read_options(&options)?;
            Ok::<_, Error>((entity_type_id, id, call_options, signal))
        })();
        let (entity_type_id, id, call_options, signal) = match checked {
            Ok(checked) => checked,
            Err(error) => return rejected(error, envelope::DELETE),
        };
        let core = self.core.clone();
        let env = self.platform.clone().env(signal);
        spawn(async move {
            match core
                .delete_item(&env, entity_type_id, id, call_options)
                .await
            {
                Ok(deleted) => Ok(delete_result(entity_type_id, id, &deleted)),
                Err(error) => Err(env.error(&error, envelope::DELETE)),
            }
        })
    }

    /// Deletes many items of one type through `batch`. Resolves a report that accounts for
    /// every distinct id; rejects only for invalid arguments, before any request.
    #[wasm_bindgen(js_name = deleteItems)]
    pub fn delete_items(&self, entity_type_id: JsValue, ids: JsValue, options: JsValue) -> Promise {
        let checked = (|| {
            let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
            let ids = read_ids(&ids)?;
            let (call_options, signal) = read_options(&options)?;
            let halt_on_error = bool_option(
                &options,
                "haltOnError",
                Error::InvalidArgument("haltOnError must be a boolean"),
            )?
            .unwrap_or(false);
            let on_progress = function_option(
                &options,
                "onProgress",
                Error::InvalidArgument("onProgress must be a function"),
            )?;
            let options = BulkOptions {
                timeout_ms: call_options.timeout_ms,
                halt_on_error,
            };
            Ok::<_, Error>((entity_type_id, ids, options, signal, on_progress))
        })();
        let (entity_type_id, ids, options, signal, on_progress) = match checked {
            Ok(checked) => checked,
            Err(error) => return rejected(error, envelope::BATCH),
        };
        let core = self.core.clone();
        let env = self.platform.clone().env(signal);
        spawn(async move {
            let report = core
                .delete_items(&env, entity_type_id, &ids, options, |done, total| {
                    if let Some(callback) = &on_progress {
                        let progress = Object::new();
                        let _ = Reflect::set(
                            &progress,
                            &"done".into(),
                            &JsValue::from_f64(done as f64),
                        );
                        let _ = Reflect::set(
                            &progress,
                            &"total".into(),
                            &JsValue::from_f64(total as f64),
                        );
                        // A throwing onProgress must not break the run.
                        let _ = callback.call1(&JsValue::UNDEFINED, &progress);
                    }
                })
                .await;
            Ok(bulk_report(&report, &env))
        })
    }
}

const ENTITY_TYPE_ID: &str = "entityTypeId must be a positive safe integer or its decimal string";

/// A promise rejected with the `B24Error` for an argument error (nothing was sent).
fn rejected(error: Error, method: &str) -> Promise {
    Promise::reject(&to_js_error(&error.into(), method, &JsValue::UNDEFINED))
}

/// Reads an iterable of ids, without repeats.
fn read_ids(ids: &JsValue) -> Result<Vec<u64>, Error> {
    const WHY: &str = "ids must be an iterable of positive safe integers or their decimal strings";
    let iterator = if ids.is_string() {
        None
    } else {
        js_sys::try_iter(ids).ok().flatten()
    };
    let iterator = iterator.ok_or(Error::InvalidArgument(WHY))?;
    let mut parsed = Vec::new();
    for id in iterator {
        parsed.push(read_id(&id.map_err(|_| Error::InvalidArgument(WHY))?, WHY)?);
    }
    Ok(bulk::distinct(parsed))
}

fn number_array(ids: &[u64]) -> Array {
    ids.iter().map(|&id| JsValue::from_f64(id as f64)).collect()
}

fn bulk_report(report: &BulkReport, env: &WebEnv) -> JsValue {
    let failed: Array = report
        .failed
        .iter()
        .map(|f| {
            let entry = Object::new();
            let error = env.error(
                &CallError {
                    error: f.error.clone(),
                    attempts: f.attempts,
                },
                f.method,
            );
            let _ = Reflect::set(&entry, &"id".into(), &JsValue::from_f64(f.id as f64));
            let _ = Reflect::set(&entry, &"error".into(), &error);
            JsValue::from(entry)
        })
        .collect();
    let result = Object::new();
    let _ = Reflect::set(&result, &"deleted".into(), &number_array(&report.deleted));
    let _ = Reflect::set(
        &result,
        &"notFound".into(),
        &number_array(&report.not_found),
    );
    let _ = Reflect::set(&result, &"failed".into(), &failed);
    result.into()
}

/// The per-call platform: timers, fetch and the caller's abort signal.
struct WebEnv {
    signal: JsValue,
    /// The JS error behind the latest failure, for `B24Error.cause`.
    cause: RefCell<JsValue>,
    on_token_expired: Option<Function>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    frame: bool,
}

impl WebEnv {
    /// The `B24Error` for a failed call, with its cause: the abort reason, or the JS error
    /// behind a network failure or a failed token refresh.
    fn error(&self, error: &CallError, method: &str) -> JsValue {
        let cause = if matches!(
            error.error,
            Error::Aborted | Error::NotAttempted { timeout: false, .. }
        ) {
            Reflect::get(&self.signal, &"reason".into()).unwrap_or(JsValue::UNDEFINED)
        } else {
            self.cause.borrow().clone()
        };
        to_js_error(error, method, &cause)
    }
}

impl Env for WebEnv {
    fn now_ms(&self) -> f64 {
        js_sys::Date::now()
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }

    async fn sleep(&self, ms: f64) -> Result<(), Error> {
        if settled(sleep(ms, &self.signal)).await.is_truthy() {
            Ok(())
        } else {
            Err(Error::Aborted)
        }
    }

    async fn send(&self, request: &HttpRequest, timeout_ms: f64) -> Result<RawResponse, Error> {
        let (url, body) = (request.url.expose(), request.body.expose());
        let answer = settled(if request.bx24 {
            call_bx24(url, body, timeout_ms, &self.signal)
        } else {
            send(url, body, timeout_ms, &self.signal)
        })
        .await;
        let answer: Array = answer.unchecked_into();
        let status = answer.get(0).as_f64().unwrap_or(0.0) as u16;
        if status != 0 {
            return Ok(RawResponse {
                status,
                body: answer.get(1).as_string().unwrap_or_default(),
            });
        }
        *self.cause.borrow_mut() = answer.get(2);
        Err(match answer.get(1).as_f64() {
            Some(2.0) => Error::Timeout,
            Some(3.0) => Error::Aborted,
            _ => Error::Network,
        })
    }

    fn aborted(&self) -> bool {
        get(&self.signal, "aborted").is_truthy()
    }

    async fn refresh_token(&self, first: bool, timeout_ms: f64) -> Result<Credentials, Error> {
        if self.frame {
            // [0] no BX24, [1] BX24 did not answer in time, [2] use BX24.callMethod,
            // [3, restBase, token] call the portal directly, [4] aborted.
            let answer: Array = settled(frame_auth(first, timeout_ms, &self.signal))
                .await
                .unchecked_into();
            return match answer.get(0).as_f64() {
                Some(3.0) => {
                    let token = answer.get(2).as_string().unwrap_or_default();
                    // A portal that fails the https rule is reached through BX24 instead.
                    match config::parse_portal(&answer.get(1).as_string().unwrap_or_default()) {
                        Ok(rest_base) if !token.is_empty() => Ok(Credentials::Token {
                            token: Secret::new(token),
                            rest_base: Some(rest_base),
                        }),
                        _ => Ok(Credentials::Bx24),
                    }
                }
                Some(2.0) => Ok(Credentials::Bx24),
                Some(1.0) => Err(Error::Timeout),
                Some(4.0) => Err(Error::Aborted),
                _ => Err(Error::NotConfigured),
            };
        }
        let Some(callback) = &self.on_token_expired else {
            return Err(Error::NotConfigured);
        };
        let answer: Array = settled(refresh_token(callback, timeout_ms, &self.signal))
            .await
            .unchecked_into();
        if self.aborted() {
            return Err(Error::Aborted);
        }
        match answer.get(0).as_string() {
            Some(token) => Ok(Credentials::Token {
                token: Secret::new(token),
                rest_base: None,
            }),
            None => {
                *self.cause.borrow_mut() = answer.get(1);
                Err(Error::InvalidConfig("onTokenExpired failed"))
            }
        }
    }
}

/// The one place a core error becomes a JS `B24Error`.
fn to_js_error(error: &CallError, method: &str, cause: &JsValue) -> JsValue {
    let e = &error.error;
    make_error(
        e.code(),
        e.description(),
        e.status(),
        method,
        e.kind().as_str(),
        e.retryable(),
        error.attempts,
        cause,
    )
}

fn read_id(value: &JsValue, why: &'static str) -> Result<u64, Error> {
    let text;
    let raw = if let Some(n) = value.as_f64() {
        RawId::Number(n)
    } else if let Some(s) = value.as_string() {
        text = s;
        RawId::Text(&text)
    } else if value.is_bigint() {
        // A bigint is checked as its decimal text.
        text = js_sys::BigInt::from(value.clone())
            .to_string(10)
            .map(String::from)
            .unwrap_or_default();
        RawId::Text(&text)
    } else {
        RawId::Other
    };
    id::parse_id(raw).ok_or(Error::InvalidArgument(why))
}

/// `object[key]`, or `undefined` when `object` is not an object (never a thrown TypeError: an
/// exception per call would cost more than the rest of the call's JS work).
fn get(object: &JsValue, key: &str) -> JsValue {
    if !object.is_object() && !object.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `object[key]` read as `T`: `None` when `undefined`, `why` when of another type.
fn option<T>(
    object: &JsValue,
    key: &str,
    read: impl FnOnce(JsValue) -> Option<T>,
    why: Error,
) -> Result<Option<T>, Error> {
    let value = get(object, key);
    if value.is_undefined() {
        return Ok(None);
    }
    read(value).map(Some).ok_or(why)
}

fn string_option(object: &JsValue, key: &str, why: Error) -> Result<Option<String>, Error> {
    option(object, key, |v| v.as_string(), why)
}

fn number_option(object: &JsValue, key: &str, why: Error) -> Result<Option<f64>, Error> {
    option(object, key, |v| v.as_f64(), why)
}

fn bool_option(object: &JsValue, key: &str, why: Error) -> Result<Option<bool>, Error> {
    option(object, key, |v| v.as_bool(), why)
}

fn function_option(object: &JsValue, key: &str, why: Error) -> Result<Option<Function>, Error> {
    option(object, key, |v| v.dyn_into::<Function>().ok(), why)
}

fn read_config(config: &JsValue) -> Result<(ConfigInput, Option<Function>), Error> {
    if !config.is_object() {
        return Err(Error::InvalidConfig("the configuration must be an object"));
    }
    let on_token_expired = function_option(
        config,
        "onTokenExpired",
        Error::InvalidConfig("onTokenExpired must be a function"),
    )?;
    let rate_limit = get(config, "rateLimit");
    let input = ConfigInput {
        webhook_url: string_option(
            config,
            "webhookUrl",
            Error::InvalidConfig("webhookUrl must be a string"),
        )?,
        portal: string_option(
            config,
            "portal",
            Error::InvalidConfig("portal must be a string"),
        )?,
        access_token: string_option(
            config,
            "accessToken",
            Error::InvalidConfig("accessToken must be a string"),
        )?
        .map(Secret::new),
        has_token_callback: on_token_expired.is_some(),
        frame: bool_option(
            config,
            "frame",
            Error::InvalidConfig("frame must be a boolean"),
        )?,
        timeout_ms: number_option(
            config,
            "timeoutMs",
            Error::InvalidConfig("timeoutMs must be a number"),
        )?,
        max_retries: number_option(
            config,
            "maxRetries",
            Error::InvalidConfig("maxRetries must be a number"),
        )?,
        rate_limit: if rate_limit.is_undefined() {
            RateLimitInput::Default
        } else if rate_limit.as_bool() == Some(false) {
            RateLimitInput::Off
        } else if rate_limit.is_object() {
            let why = || Error::InvalidConfig("rateLimit must be false or { burst, perSecond }");
            RateLimitInput::Custom {
                burst: number_option(&rate_limit, "burst", why())?.ok_or_else(why)?,
                per_second: number_option(&rate_limit, "perSecond", why())?.ok_or_else(why)?,
            }
        } else {
            return Err(Error::InvalidConfig(
                "rateLimit must be false or { burst, perSecond }",
            ));
        },
    };
    Ok((input, on_token_expired))
}

/// Reads `{ signal, timeoutMs }`; the signal is returned as given (or `undefined`).
fn read_options(options: &JsValue) -> Result<(CallOptions, JsValue), Error> {
    if options.is_undefined() || options.is_null() {
        return Ok((CallOptions::default(), JsValue::UNDEFINED));
    }
    if !options.is_object() {
        return Err(Error::InvalidArgument("options must be an object"));
    }
    let signal = get(options, "signal");
    let is_signal = signal.is_object() && get(&signal, "addEventListener").is_function();
    if !(signal.is_undefined() || is_signal) {
        return Err(Error::InvalidArgument("signal must be an AbortSignal"));
    }
    let timeout = number_option(
        options,
        "timeoutMs",
        Error::InvalidArgument("timeoutMs must be a number"),
    )?;
    Ok((
        CallOptions {
            timeout_ms: config::parse_timeout(timeout)?,
        },
        signal,
    ))
}

fn delete_result(entity_type_id: u64, id: u64, deleted: &Deleted) -> JsValue {
    let result = Object::new();
    let set = |key: &str, value: JsValue| Reflect::set(&result, &key.into(), &value);
    let _ = set("entityTypeId", JsValue::from_f64(entity_type_id as f64));
    let _ = set("id", JsValue::from_f64(id as f64));
    if let Some(time) = deleted
        .time
        .as_ref()
        .and_then(|t| js_sys::JSON::parse(&t.raw).ok())
    {
        let _ = set("time", time);
    }
    result.into()
}
