//! The platform [`Env`] of the browser and Node: runtime.js's timers, fetch and BX24 transports,
//! the token sources, and the call's abort signal; and [`JsJson`], the engine's parsed answers.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use wasm_bindgen::prelude::*;

use super::imports::{
    at, cancel_sleep, command, frame_auth, json_kind, member, now, random, refresh_token, resume,
    send, signal_get, sleep, url_parses, wall_now,
};
use crate::call::{Credentials, Env, RawResponse, Wanted};
use crate::config;
use crate::envelope::HttpRequest;
use crate::error::Error;
use crate::executor::{self, Waits};
use crate::protocol::{BodyClass, FrameAuth, Refresh, SendFailure, SignalRead};
use crate::response::{self, Body, Key, Kind};
use crate::secret::Secret;

thread_local! {
    static WAITS: Waits<JsValue> = const { Waits::new() };
}

/// Where runtime.js hands back what a promise given to `resume(promise, slot)` settled with.
pub fn wake(slot: u32, value: JsValue) {
    WAITS.with(|w| w.fill(slot as usize, value));
    executor::run();
}

/// Awaits a runtime.js promise (one that never rejects) on our executor. Callers bind the wait
/// first (`let wait = settled(&…);`) so that the promise, a temporary, is dropped before the
/// await.
fn settled(promise: &JsValue) -> executor::Wait<JsValue> {
    let wait = Waits::open(&WAITS);
    resume(promise, wait.slot() as i32);
    wait
}

/// Cancels a runtime.js `sleep` when dropped.
struct CancelOnDrop(JsValue);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        cancel_sleep(&self.0);
    }
}

/// A runtime.js `sleep`: `Err(Aborted)` when the call's signal ends it. Its timer starts when it
/// is made, not at its first poll (every caller awaits it at once).
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

/// A runtime.js promise's value, read by `read` once settled.
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
pub struct WebEnv {
    pub signal: JsValue,
    /// The JS error behind the latest failure, for `B24Error.cause`.
    pub cause: RefCell<JsValue>,
    /// The latest answer, `[status, body, class]`: a success's `time` is read from it in JS.
    pub answer: RefCell<JsValue>,
    pub on_token_expired: Option<JsValue>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    pub frame: bool,
}

/// `array[index]` as a number, if it is one.
fn number(array: &JsValue, index: i32) -> Option<f64> {
    at(array, index).as_f64()
}

/// `array[index]` as a string, if it is one.
fn string(array: &JsValue, index: i32) -> Option<String> {
    at(array, index).as_string()
}

impl WebEnv {
    /// The `B24Error` for a failed call, with its cause: the abort reason, or the JS error
    /// behind a network failure or a failed token refresh.
    pub fn error(&self, error: &Error, attempts: u32, method: &str) -> JsValue {
        let cause = if matches!(
            error,
            Error::Aborted | Error::NotAttempted { timeout: false, .. }
        ) {
            signal_get(&self.signal, SignalRead::Reason as i32)
        } else {
            self.cause.borrow().clone()
        };
        super::to_js_error(error, attempts, method, &cause)
    }

    /// What a runtime.js `send` (fetch or BX24) settled with, as the core reads it.
    fn answer(&self, answer: JsValue) -> Result<RawResponse<JsJson>, Error> {
        let status = number(&answer, 0).unwrap_or(0.0) as u16;
        if status != 0 {
            let class = number(&answer, 2).and_then(BodyClass::from_js);
            let body = match class.unwrap_or(BodyClass::Other) {
                BodyClass::Json => Body::Json(JsJson(at(&answer, 1))),
                BodyClass::Empty => Body::Empty,
                BodyClass::Html => Body::Html,
                BodyClass::Other => Body::Invalid,
            };
            *self.answer.borrow_mut() = answer;
            return Ok(RawResponse { status, body });
        }
        *self.cause.borrow_mut() = at(&answer, 2);
        Err(match number(&answer, 1).and_then(SendFailure::from_js) {
            Some(SendFailure::Timeout) => Error::Timeout,
            Some(SendFailure::Aborted) => Error::Aborted,
            Some(SendFailure::Network) | None => Error::Network,
        })
    }

    /// What a runtime.js `frameAuth` settled with.
    fn frame_credentials(&self, answer: &JsValue) -> Result<Credentials, Error> {
        match number(answer, 0).and_then(FrameAuth::from_js) {
            Some(FrameAuth::Direct) => {
                let token = string(answer, 2).unwrap_or_default();
                // A portal that fails the https rule or the URL parser is reached through BX24 instead.
                match config::parse_portal(&string(answer, 1).unwrap_or_default()) {
                    Ok(rest_base) if !token.is_empty() && url_parses(rest_base.as_bytes()) => {
                        Ok(Credentials::Token {
                            token: Secret::new(token),
                            rest_base: Some(rest_base),
                        })
                    }
                    _ => Ok(Credentials::Bx24),
                }
            }
            Some(FrameAuth::ViaBx24) => Ok(Credentials::Bx24),
            Some(FrameAuth::NoAnswer) => Err(Error::Timeout),
            Some(FrameAuth::Aborted) => Err(Error::Aborted),
            Some(FrameAuth::InitThrew) => {
                *self.cause.borrow_mut() = at(answer, 1);
                Err(Error::InvalidConfig(
                    "the frame's BX24.init threw (see cause)",
                ))
            }
            Some(FrameAuth::NoBx24) | None => Err(Error::NotConfigured),
        }
    }

    /// What a runtime.js `refreshToken` settled with.
    fn refreshed_credentials(&self, answer: &JsValue) -> Result<Credentials, Error> {
        if self.aborted() {
            return Err(Error::Aborted);
        }
        let refresh = number(answer, 0).and_then(Refresh::from_js);
        if let (Some(Refresh::Token), Some(token)) = (refresh, string(answer, 1)) {
            return Ok(Credentials::Token {
                token: Secret::new(token),
                rest_base: None,
            });
        }
        *self.cause.borrow_mut() = at(answer, 1);
        // Out of this call's time: not a failure the calls waiting on it share.
        if refresh == Some(Refresh::TimedOut) {
            Err(Error::Timeout)
        } else {
            Err(Error::InvalidConfig("onTokenExpired failed"))
        }
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
        !self.signal.is_undefined()
            && signal_get(&self.signal, SignalRead::Aborted as i32).is_truthy()
    }

    async fn refresh_token(&self, wanted: Wanted, timeout_ms: f64) -> Result<Credentials, Error> {
        // The frame's BX24 or the onTokenExpired callback.
        let wait = settled(&if self.frame {
            let current = matches!(wanted, Wanted::Current);
            frame_auth(current.into(), timeout_ms, &self.signal)
        } else if let Some(callback) = &self.on_token_expired {
            refresh_token(callback, timeout_ms, &self.signal)
        } else {
            return Err(Error::NotConfigured);
        });
        let answer = wait.await;
        if self.frame {
            self.frame_credentials(&answer)
        } else {
            self.refreshed_credentials(&answer)
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
        Kind::from_js(json_kind(&self.0))
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
