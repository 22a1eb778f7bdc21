//! What the native tests share: a scripted portal with a fake clock ([`FakeEnv`]), answers
//! read as the wasm reads them, and clients of each kind.
//!
//! Answers are parsed by `serde_json` and read through the same [`Json`] trait as the engine's
//! `JSON.parse` values in the wasm: the reading rules (`response`) are one implementation, tested
//! here as they ship.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::call::{Client, Credentials, Env, RawResponse, Wanted};
use crate::config::{Config, ConfigInput, RateLimitInput};
use crate::envelope::HttpRequest;
use crate::error::Error;
use crate::response::{Body, Json, Key, Kind};
use crate::secret::Secret;

/// A parsed JSON value, as the tests' transport gives it.
pub type Value = serde_json::Value;

impl Json for Value {
    fn get(&self, key: Key) -> Option<Self> {
        self.as_object()?.get(key.name()).cloned()
    }

    fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(true) => Kind::True,
            Value::Bool(false) => Kind::False,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::Str,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    fn as_str(&self) -> Option<String> {
        Value::as_str(self).map(str::to_owned)
    }

    fn as_f64(&self) -> Option<f64> {
        Value::as_f64(self)
    }

    fn command(&self, index: usize) -> Option<Self> {
        self.as_object()?.get(&format!("k{index}")).cloned()
    }
}

/// A body's text classified as runtime.js's `answer` does: JSON (parsed), empty, an HTML page,
/// or anything else.
pub fn body(text: &str) -> Body<Value> {
    match serde_json::from_str(text) {
        Ok(value) => Body::Json(value),
        Err(_) if text.trim_ascii().is_empty() => Body::Empty,
        Err(_) if text.trim_ascii_start().starts_with('<') => Body::Html,
        Err(_) => Body::Invalid,
    }
}

/// A scripted portal and a fake clock: sleeping advances time at once.
pub struct FakeEnv {
    pub now: Cell<f64>,
    pub answers: RefCell<VecDeque<Result<RawResponse<Value>, Error>>>,
    pub sent: RefCell<Vec<(f64, String, String)>>,
    pub refreshes: Cell<u32>,
    pub firsts: RefCell<Vec<bool>>,
    pub new_token: RefCell<Result<Credentials, Error>>,
    /// How long each request takes, in fake milliseconds.
    pub latency_ms: f64,
    /// How far the wall clock is off the monotonic one (which starts at a Unix time).
    pub wall_skew_ms: Cell<f64>,
    /// The call's signal has fired.
    pub aborted: Cell<bool>,
}

impl FakeEnv {
    pub fn new(answers: Vec<Result<RawResponse<Value>, Error>>) -> FakeEnv {
        FakeEnv {
            now: Cell::new(1_700_000_000_000.0),
            answers: RefCell::new(answers.into()),
            sent: RefCell::new(Vec::new()),
            refreshes: Cell::new(0),
            firsts: RefCell::new(Vec::new()),
            new_token: RefCell::new(Ok(token("fresh"))),
            latency_ms: 10.0,
            wall_skew_ms: Cell::new(0.0),
            aborted: Cell::new(false),
        }
    }
}

pub fn token(value: &str) -> Credentials {
    Credentials::Token {
        token: Secret::new(value.into()),
        rest_base: None,
    }
}

pub fn ok(body: &str) -> Result<RawResponse<Value>, Error> {
    answer(200, body)
}

/// An answer with `status` and the body `text`, classified as runtime.js does ([`body`]).
pub fn answer(status: u16, text: &str) -> Result<RawResponse<Value>, Error> {
    Ok(RawResponse {
        status,
        body: body(text),
    })
}

pub fn api_error(status: u16, code: &str) -> Result<RawResponse<Value>, Error> {
    answer(
        status,
        &["{\"error\":\"", code, "\",\"error_description\":\"x\"}"].concat(),
    )
}

impl Env for FakeEnv {
    type Json = Value;
    fn now_ms(&self) -> f64 {
        self.now.get()
    }
    fn wall_ms(&self) -> f64 {
        self.now.get() + self.wall_skew_ms.get()
    }
    fn random(&self) -> f64 {
        0.5
    }
    async fn sleep(&self, ms: f64) -> Result<(), Error> {
        self.now.set(self.now.get() + ms);
        Ok(())
    }
    async fn send(
        &self,
        request: &HttpRequest,
        timeout_ms: f64,
    ) -> Result<RawResponse<Value>, Error> {
        self.sent.borrow_mut().push((
            self.now.get(),
            request.url.expose().to_owned(),
            request.body.expose().to_owned(),
        ));
        let answer = self
            .answers
            .borrow_mut()
            .pop_front()
            .unwrap_or(Err(Error::Timeout));
        let took = if matches!(answer, Err(Error::Timeout)) {
            timeout_ms
        } else {
            self.latency_ms.min(timeout_ms)
        };
        self.now.set(self.now.get() + took);
        answer
    }
    async fn refresh_token(&self, wanted: Wanted, _timeout_ms: f64) -> Result<Credentials, Error> {
        self.refreshes.set(self.refreshes.get() + 1);
        // Whether the frame's current token was asked for (its first look).
        self.firsts.borrow_mut().push(wanted == Wanted::Current);
        self.new_token.borrow().clone()
    }
    fn aborted(&self) -> bool {
        self.aborted.get()
    }
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the fake environment never pends"),
    }
}

pub fn webhook_client(max_retries: f64, rate_limit: RateLimitInput) -> Client {
    Client::new(
        Config::parse(ConfigInput {
            webhook_url: Some("https://a.b/rest/1/s3cr3t/".into()),
            max_retries: Some(max_retries),
            rate_limit,
            ..Default::default()
        })
        .unwrap(),
    )
}

pub fn frame_client() -> Client {
    Client::new(
        Config::parse(ConfigInput {
            frame: Some(true),
            rate_limit: RateLimitInput::Off,
            ..Default::default()
        })
        .unwrap(),
    )
}
