//! The call pipeline: pace, build, send, read, decide, repeat — within one deadline.
//!
//! Everything platform-specific (the clock, timers, the HTTP transport, the token callback) sits
//! behind [`Env`], so the pipeline runs natively under `cargo test` with a fake clock and a
//! scripted transport, and in the browser with `fetch` or BX24.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Poll, Waker};

use crate::config::{Config, Endpoint};
use crate::envelope::{self, Auth, HttpRequest};
use crate::error::Error;
use crate::policy::{self, Attempt, Bucket, Decision};
use crate::response::{self, Body, Deleted, Failure, Json};
use crate::secret::Secret;

/// An HTTP answer as the transport got it: the status and the body, parsed (`J`) or classified.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse<J> {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Body<J>,
}

/// What a call needs from its platform. One `Env` serves one call (it carries the call's abort
/// signal), so every wait and request it runs ends at once with `Aborted` when that fires.
#[allow(async_fn_in_trait)]
pub trait Env {
    /// The transport's parsed JSON values.
    type Json: Json;
    /// Now, in milliseconds on a monotonic clock (`performance.now()`): every deadline, wait and
    /// pacing slot is on it, so a wall clock set back or forward changes none of them.
    fn now_ms(&self) -> f64;
    /// The wall clock, in Unix milliseconds: only to place a portal's Unix time on the monotonic
    /// clock when its answer does not say when it was made (see
    /// [`RequestTime::until_reset_ms`](crate::response::RequestTime::until_reset_ms)).
    fn wall_ms(&self) -> f64;
    /// A random number in `[0, 1)`.
    fn random(&self) -> f64;
    /// Waits `ms` milliseconds; `Err(Aborted)` if the call is aborted first.
    async fn sleep(&self, ms: f64) -> Result<(), Error>;
    /// Sends one request and reads the whole body; gives up after `timeout_ms` with `Timeout`.
    /// Fails with `Network` below HTTP and `Aborted` when the call is aborted.
    async fn send(
        &self,
        request: &HttpRequest,
        timeout_ms: f64,
    ) -> Result<RawResponse<Self::Json>, Error>;
    /// Whether the call's signal has fired.
    fn aborted(&self) -> bool;
    /// New credentials: the user's `onTokenExpired` for OAuth; in a frame, BX24's auth (the
    /// frame's current token, or a refreshed one: `wanted`). Gives up after `timeout_ms`.
    async fn refresh_token(&self, wanted: Wanted, timeout_ms: f64) -> Result<Credentials, Error>;
}

/// Which credentials [`Env::refresh_token`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// No refresh has run yet: a frame's first look takes the token BX24 has now
    /// (`onTokenExpired` is always asked for a new one).
    Current,
    /// The ones in use were refused (`expired_token`): new ones.
    Renewed,
}

/// What a token refresh, or a frame's first look at BX24, gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// An access token, and in a frame the portal's REST base (`https://host/rest/`).
    Token {
        /// The access token.
        token: Secret,
        /// The REST base, when it comes with the token.
        rest_base: Option<String>,
    },
    /// The frame's portal cannot be called directly: send through `BX24.callMethod`.
    Bx24,
}

/// What one REST request does.
#[derive(Debug, Clone, Copy)]
pub enum Job<'a> {
    /// `crm.item.delete` of one item.
    Delete {
        /// The type.
        entity_type_id: u64,
        /// The item.
        id: u64,
    },
    /// `batch` of `crm.item.delete` commands, `k{i}` deleting `ids[i]`.
    Batch {
        /// The type.
        entity_type_id: u64,
        /// At most 50 ids.
        ids: &'a [u64],
        /// `halt: 1`.
        halt: bool,
    },
}

impl Job<'_> {
    /// The REST method's index: 0 `crm.item.delete`, 1 `batch`.
    fn method(&self) -> usize {
        matches!(self, Job::Batch { .. }) as usize
    }

    /// The request for this job. A batch repeated after an unknown outcome never halts: its
    /// commands may have run already, and their `NOT_FOUND` must not stop the others.
    fn request(&self, auth: Auth<'_>, earlier_outcome_unknown: bool) -> HttpRequest {
        match *self {
            Job::Delete { entity_type_id, id } => envelope::delete_item(auth, entity_type_id, id),
            Job::Batch {
                entity_type_id,
                ids,
                halt,
            } => {
                envelope::delete_batch(auth, entity_type_id, ids, halt && !earlier_outcome_unknown)
            }
        }
    }
}

/// Why a call failed, after how many requests.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// The last error.
    pub error: Error,
    /// Requests sent (0 when the call failed before sending).
    pub attempts: u32,
}

impl From<Error> for CallError {
    fn from(error: Error) -> Self {
        CallError { error, attempts: 0 }
    }
}

/// How a frame client reaches its portal: directly (with the token BX24 gives), or through
/// `BX24.callMethod`, and the fallback from the one to the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Route {
    /// Direct requests, none answered or lost yet. (A CORS or CSP refusal loses every direct
    /// request; a network blip, one.)
    #[default]
    Untried,
    /// One direct request lost below HTTP, none answered.
    LostOnce,
    /// A direct request has had an HTTP answer: later network errors are passing ones, not a
    /// portal the page cannot reach.
    Direct,
    /// Through `BX24.callMethod`, for good: two direct requests lost before any answer, or BX24
    /// gave no token (a refresh).
    Bx24,
}

impl Route {
    /// A direct request had an HTTP answer.
    fn answered(self) -> Route {
        match self {
            Route::Untried | Route::LostOnce => Route::Direct,
            other => other,
        }
    }

    /// A direct request was lost below HTTP: the route after it, and whether the call repeats
    /// the request through BX24 at once (not once a direct request was answered: the loss is
    /// then a passing one, retried as any other). After a second such loss, BX24 for good.
    fn lost(self) -> (Route, bool) {
        match self {
            Route::Untried => (Route::LostOnce, true),
            Route::LostOnce | Route::Bx24 => (Route::Bx24, true),
            Route::Direct => (Route::Direct, false),
        }
    }
}

/// State shared by every call of one client: the pacing bucket, the OAuth token and the latest
/// operating-limit reset time per method.
#[derive(Debug)]
pub struct Client {
    config: Config,
    /// The pacing bucket, when there is a rate limit. It and the token's flags and counter below
    /// are `Cell`s, not in a `RefCell` (no borrow flag to check).
    bucket: Option<Cell<Bucket>>,
    token: RefCell<TokenState>,
    /// Bumped by every successful refresh; `None` until the first.
    generation: Cell<Option<NonZeroU32>>,
    /// A refresh is in flight.
    refreshing: Cell<bool>,
    /// In a frame: how requests reach the portal.
    route: Cell<Route>,
    /// Per method, `[crm.item.delete, batch]` (see [`Job::method`]): when its operating budget is
    /// next released, on the monotonic clock ([`Env::now_ms`]).
    operating_reset_at: [Cell<Option<f64>>; 2],
}

#[derive(Debug, Default)]
struct TokenState {
    token: Option<Secret>,
    /// In a frame: the portal's REST base, once known.
    rest_base: Option<String>,
    /// Why the latest refresh failed, for the calls that waited on it.
    failure: Option<Error>,
    /// The calls waiting for the refresh in flight.
    waiters: Vec<Waker>,
}

/// Per-call options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallOptions {
    /// Overrides the client's `timeoutMs` for this call.
    pub timeout_ms: Option<u32>,
}

impl Client {
    /// A client for a checked configuration. A frame client reads its auth from BX24 at its
    /// first call ([`Env::refresh_token`]); a configuration with no endpoint (`Endpoint::Auto`)
    /// fails every call with `NOT_CONFIGURED`.
    pub fn new(config: Config) -> Client {
        let token = match &config.endpoint {
            Endpoint::OAuth { token, .. } => Some(token.clone()),
            _ => None,
        };
        Client {
            bucket: config.rate_limit.map(|limit| Cell::new(Bucket::new(limit))),
            token: RefCell::new(TokenState {
                token,
                ..TokenState::default()
            }),
            generation: Cell::default(),
            refreshing: Cell::default(),
            route: Cell::default(),
            operating_reset_at: Default::default(),
            config,
        }
    }

    /// The checked configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Deletes one item: `crm.item.delete` with pacing, retries and token refresh.
    pub async fn delete_item(
        &self,
        env: &impl Env,
        entity_type_id: u64,
        id: u64,
        options: CallOptions,
    ) -> Result<Deleted, CallError> {
        let timeout_ms = options.timeout_ms.unwrap_or(self.config.timeout_ms);
        let deadline = env.now_ms() + f64::from(timeout_ms);
        let job = Job::Delete { entity_type_id, id };
        let mut deleted = Deleted::default();
        let mut read = |status, body, earlier_outcome_unknown: bool| {
            deleted = match response::read_delete(status, body) {
                // An earlier attempt deleted it; its answer was lost.
                Err(failure) if earlier_outcome_unknown && failure.error.is_api("NOT_FOUND") => {
                    Deleted::default()
                }
                other => other?,
            };
            Ok(())
        };
        self.run(env, deadline, job, None, &mut read).await?;
        Ok(deleted)
    }

    /// Runs one REST request to completion: the retry loop every call shares (one copy of it in
    /// the wasm, whatever the job). Each HTTP answer goes to `read` (status, body, and whether
    /// an earlier attempt's outcome was unknown: it may have been executed, so a `NOT_FOUND`
    /// now means "deleted"), which keeps what it read and says whether it was a success. Gives
    /// whether an earlier attempt's outcome was unknown.
    pub(crate) async fn run<E: Env>(
        &self,
        env: &E,
        deadline: f64,
        job: Job<'_>,
        not_before: Option<f64>,
        read: &mut dyn FnMut(u16, Body<E::Json>, bool) -> Result<(), Failure>,
    ) -> Result<bool, CallError> {
        match self.config.endpoint {
            Endpoint::Auto => return Err(Error::NotConfigured.into()),
            // A frame's first call reads its auth from BX24 (shared with concurrent calls).
            Endpoint::Frame if self.generation.get().is_none() => {
                self.refresh(env, None, deadline).await?;
            }
            _ => {}
        }
        let reset_at = &self.operating_reset_at[job.method()];
        let mut attempts = 0;
        let mut retries = 0;
        let mut refreshed = false;
        let mut outcome_unknown = false;
        // This call goes through BX24.callMethod (its direct request was lost).
        let mut via_bx24 = false;
        // A retry's backoff, waited at the top of the next turn: one `sleep` await in the loop
        // for pacing and backoff alike.
        let mut backoff = None;
        // Every failure breaks out with its error, made the call's error in one place.
        let error = loop {
            let retry = backoff.take();
            // The backoff takes no slot: the turn after it paces.
            let (wait, slot) = match retry {
                Some(ms) => (ms, None),
                None => match self.pace(env.now_ms(), deadline, not_before) {
                    Ok(paced) => paced,
                    Err(error) => break error,
                },
            };
            if wait > 0.0 || retry.is_some() {
                // An aborted wait gives its slot back.
                if let Err(error) = env.sleep(wait).await {
                    self.release(slot);
                    break error;
                }
            }
            if retry.is_some() {
                continue;
            }
            let (request, generation) = {
                let state = self.token.borrow();
                let auth = match self.auth(&state) {
                    _ if via_bx24 => Auth::Bx24,
                    Some(auth) => auth,
                    None => break Error::NotConfigured,
                };
                (job.request(auth, outcome_unknown), self.generation.get())
            };
            if env.aborted() {
                // Paced but not sent: the slot goes back.
                self.release(slot);
                break Error::Aborted;
            }
            attempts += 1;
            let remaining = deadline - env.now_ms();
            let answer = env
                .send(
                    &request,
                    policy::attempt_timeout_ms(remaining, self.config.max_retries - retries),
                )
                .await;
            let direct_frame = matches!(self.config.endpoint, Endpoint::Frame) && !request.bx24;
            let failure = match answer {
                Ok(raw) => {
                    if direct_frame {
                        self.route.set(self.route.get().answered());
                    }
                    match read(raw.status, raw.body, outcome_unknown) {
                        Ok(()) => return Ok(outcome_unknown),
                        Err(failure) => failure,
                    }
                }
                Err(error) => Failure::from(error),
            };
            // A frame whose direct requests have never reached the portal repeats the request
            // through BX24.callMethod at once (see `Route::lost`).
            if direct_frame && matches!(failure.error, Error::Network) {
                let (route, repeat_via_bx24) = self.route.get().lost();
                self.route.set(route);
                if repeat_via_bx24 {
                    via_bx24 = true;
                    outcome_unknown = true;
                    continue;
                }
            }
            if let Some(until) = failure
                .time
                .and_then(|time| time.until_reset_ms(|| env.wall_ms()))
            {
                reset_at.set(Some(env.now_ms() + until));
            }
            outcome_unknown |= failure.error.outcome_unknown();
            let remaining = deadline - env.now_ms();
            let decision = policy::decide(
                &failure.error,
                Attempt {
                    retries,
                    max_retries: self.config.max_retries,
                    remaining_ms: remaining,
                    now_ms: env.now_ms(),
                    operating_reset_at: reset_at.get(),
                    can_refresh: !refreshed && !via_bx24 && self.can_refresh(),
                    random: env.random(),
                },
            );
            match decision {
                // A timeout of the last attempt that used the whole budget is the call's timeout.
                Decision::Fail => break failure.error,
                Decision::RetryAfter(ms) => {
                    retries += 1;
                    backoff = Some(ms);
                }
                Decision::RefreshToken => {
                    refreshed = true;
                    if let Err(refresh_error) = self.refresh(env, generation, deadline).await {
                        // A failed refresh leaves the portal's answer (expired_token) standing;
                        // an aborted one is the call's abort.
                        break if refresh_error == Error::Aborted {
                            refresh_error
                        } else {
                            failure.error
                        };
                    }
                }
            }
        };
        Err(CallError { error, attempts })
    }

    /// The request auth for the configured endpoint; `None`: not configured. Kept out of
    /// line until binaryen (which inlines it back), so LLVM shapes the loop better.
    #[inline(never)]
    fn auth<'a>(&'a self, state: &'a TokenState) -> Option<Auth<'a>> {
        match (&self.config.endpoint, &state.token, &state.rest_base) {
            (Endpoint::Webhook { base }, ..) => Some(Auth::Webhook { base }),
            (Endpoint::OAuth { rest_base, .. }, Some(token), _) => {
                Some(Auth::OAuth { rest_base, token })
            }
            (Endpoint::Frame, ..) if self.route.get() == Route::Bx24 => Some(Auth::Bx24),
            (Endpoint::Frame, Some(token), Some(rest_base)) => {
                Some(Auth::OAuth { rest_base, token })
            }
            _ => None,
        }
    }

    /// Whether an `expired_token` can be answered with a new token: OAuth with
    /// `onTokenExpired`, or a frame calling the portal directly (BX24 refreshes its own).
    fn can_refresh(&self) -> bool {
        match self.config.endpoint {
            Endpoint::OAuth { refreshable, .. } => refreshable,
            Endpoint::Frame => self.route.get() != Route::Bx24,
            _ => false,
        }
    }

    /// Takes this request's slot in the client's bucket: the wait until it, and until
    /// `not_before` (monotonic ms), if any, and the slot, which an aborted wait gives back
    /// ([`Client::release`]). A slot past the deadline fails at once with `TIMEOUT`. Plain sync
    /// code: the caller awaits the wait (no nested state machine).
    fn pace(
        &self,
        now: f64,
        deadline: f64,
        not_before: Option<f64>,
    ) -> Result<(f64, Option<f64>), Error> {
        let not_before = not_before.unwrap_or(now);
        // The slot is taken when the request will leave, not now (a wait for `not_before` thus
        // also spends the bucket's burst: the same method is limited by the portal meanwhile).
        let slot = self.bucket.as_ref().map(|cell| {
            let mut bucket = cell.get();
            let slot = bucket.reserve(now.max(not_before));
            cell.set(bucket);
            slot
        });
        let send_at = slot.unwrap_or(now).max(not_before);
        if send_at >= deadline {
            self.release(slot);
            return Err(Error::Timeout);
        }
        Ok((send_at - now, slot))
    }

    /// Gives back a slot [`Client::pace`] took, unused.
    fn release(&self, slot: Option<f64>) {
        if let (Some(cell), Some(slot)) = (&self.bucket, slot) {
            let mut bucket = cell.get();
            bucket.release(slot);
            cell.set(bucket);
        }
    }

    /// Makes sure the credentials are newer than `used_generation` (`None`: none yet): joins a
    /// refresh in flight, or runs one. Concurrent calls share one refresh; a failed one fails
    /// every call that waited on it.
    async fn refresh(
        &self,
        env: &impl Env,
        used_generation: Option<NonZeroU32>,
        deadline: f64,
    ) -> Result<(), Error> {
        loop {
            if self.generation.get() != used_generation {
                return Ok(());
            }
            if !self.refreshing.get() {
                break;
            }
            // The refresh in flight, but not past this call's own deadline or abort: its end
            // (which wakes the waiters) raced against a sleep, in one `poll_fn`.
            let left = deadline - env.now_ms();
            let slept = {
                let mut sleep = pin!(env.sleep(left));
                poll_fn(|cx| {
                    if !self.refreshing.get() {
                        return Poll::Ready(None);
                    }
                    self.token.borrow_mut().waiters.push(cx.waker().clone());
                    sleep.as_mut().poll(cx).map(Some)
                })
                .await
            };
            // The sleep ended first: this call's deadline, or its abort.
            if let Some(slept) = slept {
                return Err(slept.err().unwrap_or(Error::Timeout));
            }
            let state = self.token.borrow();
            if let (true, Some(failure)) =
                (self.generation.get() == used_generation, &state.failure)
            {
                return Err(failure.clone());
            }
            // Refreshed, or the refresher was aborted: look again (and maybe refresh ourselves).
        }
        self.refreshing.set(true);
        let remaining = deadline - env.now_ms();
        let wanted = match used_generation {
            None => Wanted::Current,
            Some(_) => Wanted::Renewed,
        };
        let result = env.refresh_token(wanted, remaining).await;
        let mut state = self.token.borrow_mut();
        self.refreshing.set(false);
        let outcome = match result {
            Ok(credentials) => {
                match credentials {
                    Credentials::Token { token, rest_base } => {
                        state.token = Some(token);
                        if rest_base.is_some() {
                            state.rest_base = rest_base;
                        }
                    }
                    Credentials::Bx24 => self.route.set(Route::Bx24),
                }
                let next = self.generation.get().and_then(|g| g.checked_add(1));
                self.generation.set(Some(next.unwrap_or(NonZeroU32::MIN)));
                Ok(())
            }
            Err(error) => {
                // One call's abort, or its deadline (others may have more time), is not the
                // others' failure: they try again themselves.
                // (Set at the end of every failed refresh: waiters read it only then.)
                state.failure =
                    (!matches!(error, Error::Aborted | Error::Timeout)).then(|| error.clone());
                Err(error)
            }
        };
        // Woken by reference, then cleared.
        for waker in &state.waiters {
            waker.wake_by_ref();
        }
        state.waiters.clear();
        outcome
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ConfigInput, RateLimitInput};
    use crate::testing::{
        answer, api_error, block_on, frame_client, ok, token, webhook_client, FakeEnv, Value,
    };
    use std::rc::Rc;
    use std::task::Context;

    const SUCCESS: &str = r#"{"result":[],"time":{"operating":0}}"#;

    #[test]
    fn success_on_first_attempt() {
        let env = FakeEnv::new(vec![ok(SUCCESS)]);
        let client = webhook_client(3.0, RateLimitInput::Default);
        let deleted = block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap();
        assert_eq!(deleted.time, Some(response::RequestTime::default()));
        let sent = env.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, "https://a.b/rest/1/s3cr3t/crm.item.delete");
        assert_eq!(sent[0].2, r#"{"entityTypeId":1268,"id":1}"#);
    }

    #[test]
    fn non_retryable_errors_fail_after_one_request() {
        for code in [
            "NOT_FOUND",
            "ACCESS_DENIED",
            "insufficient_scope",
            "NO_AUTH_FOUND",
            "expired_token",
        ] {
            let env = FakeEnv::new(vec![api_error(400, code), ok(SUCCESS)]);
            let client = webhook_client(3.0, RateLimitInput::Off);
            let error =
                block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap_err();
            assert_eq!((error.error.code(), error.attempts), (code, 1));
        }
    }

    #[test]
    fn transient_failures_are_retried_with_backoff() {
        let env = FakeEnv::new(vec![
            api_error(503, "QUERY_LIMIT_EXCEEDED"),
            answer(502, "<html>Bad Gateway</html>"),
            api_error(500, "INTERNAL_SERVER_ERROR"),
            ok(SUCCESS),
        ]);
        let client = webhook_client(3.0, RateLimitInput::Off);
        assert!(block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).is_ok());
        let times: Vec<f64> = env
            .sent
            .borrow()
            .iter()
            .map(|s| s.0 - 1_700_000_000_000.0)
            .collect();
        // 10 ms latency, then 1 s, 2 s, 4 s backoff (jitter fixed at the middle).
        assert_eq!(times, vec![0.0, 1010.0, 3020.0, 7030.0]);
    }

    #[test]
    fn retries_run_out_with_the_last_error_and_count() {
        let env = FakeEnv::new(vec![api_error(503, "QUERY_LIMIT_EXCEEDED"); 5]);
        let client = webhook_client(2.0, RateLimitInput::Off);
        let error =
            block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap_err();
        assert_eq!(
            (error.error.code(), error.attempts),
            ("QUERY_LIMIT_EXCEEDED", 3)
        );
    }

    #[test]
    fn not_found_after_an_unknown_outcome_is_deleted() {
        for lost in [
            Err(Error::Network),
            Err(Error::Timeout),
            ok(r#"{"result":["#),
            answer(200, ""),
            api_error(500, "INTERNAL_SERVER_ERROR"),
            api_error(502, "SOMETHING_NEW"),
        ] {
            let env = FakeEnv::new(vec![lost.clone(), api_error(400, "NOT_FOUND")]);
            let client = webhook_client(3.0, RateLimitInput::Off);
            let result = block_on(client.delete_item(&env, 1268, 1, CallOptions::default()));
            assert_eq!(result, Ok(Deleted::default()), "{lost:?}");
        }
        // Without an unknown outcome before it (a limit refuses a request before running it),
        // NOT_FOUND is NOT_FOUND.
        for refused in ["QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"] {
            let env = FakeEnv::new(vec![api_error(503, refused), api_error(400, "NOT_FOUND")]);
            let client = webhook_client(3.0, RateLimitInput::Off);
            let result = block_on(client.delete_item(&env, 1268, 1, CallOptions::default()));
            match refused {
                // OVERLOAD_LIMIT is not retried at all.
                "OVERLOAD_LIMIT" => assert_eq!(result.unwrap_err().error.code(), refused),
                _ => assert_eq!(result.unwrap_err().error.code(), "NOT_FOUND"),
            }
        }
    }

    #[test]
    fn the_deadline_bounds_everything() {
        // Every attempt hangs: attempts get 15 s, 10 s, then the rest; the call ends at 30 s.
        let env = FakeEnv::new(vec![]);
        let client = webhook_client(3.0, RateLimitInput::Off);
        let start = env.now_ms();
        let error =
            block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap_err();
        assert_eq!(error.error, Error::Timeout);
        assert!(env.now_ms() - start <= 30_000.0, "{}", env.now_ms() - start);
        assert!(error.attempts >= 2);
    }

    #[test]
    fn operating_limit_uses_the_reset_time() {
        let near = r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating":500,"operating_reset_at":1700000003}}"#;
        let env = FakeEnv::new(vec![answer(429, near), ok(SUCCESS)]);
        let client = webhook_client(3.0, RateLimitInput::Off);
        assert!(block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).is_ok());
        let second = env.sent.borrow()[1].0;
        assert_eq!(second, 1_700_000_003_250.0);
        let far = r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating_reset_at":1700000600}}"#;
        let env = FakeEnv::new(vec![answer(429, far), ok(SUCCESS)]);
        let error =
            block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap_err();
        assert_eq!(
            (error.error.code(), error.attempts),
            ("OPERATION_TIME_LIMIT", 1)
        );
    }

    #[test]
    fn the_operating_reset_is_placed_by_the_portals_clock_not_the_wall_clock() {
        // The portal says: finished at 1700000000.5, reset at 1700000003 (2.5 s later). The
        // client's wall clock is 10 minutes behind: the wait is still 2.5 s (+ 250 ms).
        let near = r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"finish":1700000000.5,"operating_reset_at":1700000003}}"#;
        let env = FakeEnv::new(vec![answer(429, near), ok(SUCCESS)]);
        env.wall_skew_ms.set(-600_000.0);
        let client = webhook_client(3.0, RateLimitInput::Off);
        assert!(block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).is_ok());
        let (first, second) = (env.sent.borrow()[0].0, env.sent.borrow()[1].0);
        // Sent, answered after the fake latency, then the wait.
        assert_eq!(second - first, 10.0 + 2_750.0);
        // Without `finish`, the wall clock places it: 10 minutes behind, the reset is far off.
        let wall = r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating_reset_at":1700000003}}"#;
        let env = FakeEnv::new(vec![answer(429, wall), ok(SUCCESS)]);
        env.wall_skew_ms.set(-600_000.0);
        let error =
            block_on(client.delete_item(&env, 1268, 1, CallOptions::default())).unwrap_err();
        assert_eq!(error.error.code(), "OPERATION_TIME_LIMIT");
    }

    fn oauth_client(refreshable: bool) -> Client {
        Client::new(
            Config::parse(ConfigInput {
                portal: Some("https://a.b".into()),
                access_token: Some(Secret::new("old".into())),
                has_token_callback: refreshable,
                rate_limit: RateLimitInput::Off,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn expired_token_is_refreshed_once() {
        let env = FakeEnv::new(vec![api_error(401, "expired_token"), ok(SUCCESS)]);
        let client = oauth_client(true);
        assert!(block_on(client.delete_item(&env, 2, 5, CallOptions::default())).is_ok());
        assert_eq!(env.refreshes.get(), 1);
        let sent = env.sent.borrow();
        assert!(sent[0].2.ends_with(r#""auth":"old"}"#));
        assert!(sent[1].2.ends_with(r#""auth":"fresh"}"#));
        // No refresh loop: a second expiry fails.
        let env = FakeEnv::new(vec![
            api_error(401, "expired_token"),
            api_error(401, "expired_token"),
        ]);
        let error = block_on(client.delete_item(&env, 2, 5, CallOptions::default())).unwrap_err();
        assert_eq!(
            (error.error.code(), error.attempts, env.refreshes.get()),
            ("expired_token", 2, 1)
        );
    }

    #[test]
    fn failed_refresh_rejects_with_expired_token() {
        let env = FakeEnv::new(vec![api_error(401, "expired_token")]);
        *env.new_token.borrow_mut() = Err(Error::InvalidConfig("callback threw"));
        let error = block_on(oauth_client(true).delete_item(&env, 2, 5, CallOptions::default()))
            .unwrap_err();
        assert_eq!(error.error.code(), "expired_token");
        let env = FakeEnv::new(vec![api_error(401, "expired_token")]);
        let error = block_on(oauth_client(false).delete_item(&env, 2, 5, CallOptions::default()))
            .unwrap_err();
        assert_eq!(
            (error.error.code(), env.refreshes.get()),
            ("expired_token", 0)
        );
    }

    /// A scripted environment whose refresh pends until `gate` opens; then it gives the token
    /// "fresh" or fails with `fails_with` (`Aborted`: the call's signal fired).
    struct GatedRefresh {
        inner: FakeEnv,
        gate: Rc<Cell<bool>>,
        fails_with: Option<Error>,
    }

    impl GatedRefresh {
        /// Pends until the gate opens.
        async fn opened(&self) {
            std::future::poll_fn(|cx| {
                if self.gate.get() {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await
        }
    }

    impl Env for GatedRefresh {
        type Json = Value;
        fn now_ms(&self) -> f64 {
            self.inner.now_ms()
        }
        fn wall_ms(&self) -> f64 {
            self.inner.wall_ms()
        }
        fn random(&self) -> f64 {
            0.5
        }
        async fn sleep(&self, ms: f64) -> Result<(), Error> {
            // Time stands still until the gate opens (a waiter's deadline is far off).
            self.opened().await;
            self.inner.sleep(ms).await
        }
        async fn send(
            &self,
            request: &HttpRequest,
            timeout_ms: f64,
        ) -> Result<RawResponse<Value>, Error> {
            self.inner.send(request, timeout_ms).await
        }
        fn aborted(&self) -> bool {
            self.fails_with == Some(Error::Aborted) && self.gate.get()
        }
        async fn refresh_token(
            &self,
            _wanted: Wanted,
            _timeout_ms: f64,
        ) -> Result<Credentials, Error> {
            self.inner.refreshes.set(self.inner.refreshes.get() + 1);
            self.opened().await;
            match &self.fails_with {
                Some(error) => Err(error.clone()),
                None => Ok(token("fresh")),
            }
        }
    }

    #[test]
    fn concurrent_expiries_share_one_refresh() {
        let client = oauth_client(true);
        let gate = Rc::new(Cell::new(false));
        // All 20 first attempts are sent before the refresh ends; then the 20 repeats.
        let answers = [
            vec![api_error(401, "expired_token"); 20],
            vec![ok(SUCCESS); 20],
        ]
        .concat();
        let env = GatedRefresh {
            inner: FakeEnv::new(answers),
            gate: gate.clone(),
            fails_with: None,
        };
        let mut calls: Vec<_> = (1..=20)
            .map(|id| Box::pin(client.delete_item(&env, 2, id, CallOptions::default())))
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        let mut done = vec![None; calls.len()];
        for round in 0..10 {
            if round == 3 {
                gate.set(true);
            }
            for (i, call) in calls.iter_mut().enumerate() {
                if done[i].is_none() {
                    if let Poll::Ready(result) = call.as_mut().poll(&mut cx) {
                        done[i] = Some(result.is_ok());
                    }
                }
            }
        }
        assert_eq!(done, vec![Some(true); 20]);
        assert_eq!(env.inner.refreshes.get(), 1);
        // 20 expired attempts + 20 repeats with the new token.
        let sent = env.inner.sent.borrow();
        assert_eq!(sent.len(), 40);
        assert!(sent[..20].iter().all(|s| s.2.ends_with(r#""auth":"old"}"#)));
        assert!(sent[20..]
            .iter()
            .all(|s| s.2.ends_with(r#""auth":"fresh"}"#)));
    }

    #[test]
    fn one_calls_aborted_or_timed_out_refresh_does_not_fail_the_calls_waiting_on_it() {
        // A's refresh ends with A's abort, or A's (shorter) deadline: B, waiting on it, has
        // time left and refreshes itself.
        for error in [Error::Aborted, Error::Timeout] {
            let client = oauth_client(true);
            let gate = Rc::new(Cell::new(false));
            let failing_env = GatedRefresh {
                inner: FakeEnv::new(vec![api_error(401, "expired_token")]),
                gate: gate.clone(),
                fails_with: Some(error.clone()),
            };
            let other_env = GatedRefresh {
                inner: FakeEnv::new(vec![api_error(401, "expired_token"), ok(SUCCESS)]),
                gate: gate.clone(),
                fails_with: None,
            };
            let mut a = Box::pin(client.delete_item(&failing_env, 2, 1, CallOptions::default()));
            let mut b = Box::pin(client.delete_item(&other_env, 2, 2, CallOptions::default()));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(a.as_mut().poll(&mut cx).is_pending()); // A refreshes (pending)
            assert!(b.as_mut().poll(&mut cx).is_pending()); // B waits on A's refresh
            gate.set(true); // A's refresh fails
            let Poll::Ready(a_result) = a.as_mut().poll(&mut cx) else {
                panic!("A should settle")
            };
            // (A failed refresh leaves A's own answer standing; an aborted one is A's abort.)
            let a_error = a_result.unwrap_err().error;
            match error {
                Error::Aborted => assert_eq!(a_error, Error::Aborted),
                _ => assert_eq!(a_error.code(), "expired_token"),
            }
            let Poll::Ready(b_result) = b.as_mut().poll(&mut cx) else {
                panic!("B should settle")
            };
            assert!(
                b_result.is_ok(),
                "{error:?}: B refreshes itself: {b_result:?}"
            );
            assert_eq!(other_env.inner.refreshes.get(), 1);
        }
    }

    #[test]
    fn a_call_waiting_on_another_calls_refresh_gives_up_at_its_own_deadline() {
        let client = oauth_client(true);
        let gate = Rc::new(Cell::new(false));
        // A's refresh never ends (the gate stays shut); B's clock runs (its sleeps end at once).
        let slow = GatedRefresh {
            inner: FakeEnv::new(vec![api_error(401, "expired_token")]),
            gate,
            fails_with: None,
        };
        let hurried = FakeEnv::new(vec![api_error(401, "expired_token")]);
        let mut a = Box::pin(client.delete_item(&slow, 2, 1, CallOptions::default()));
        let short = CallOptions {
            timeout_ms: Some(1_000),
        };
        let mut b = Box::pin(client.delete_item(&hurried, 2, 2, short));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(a.as_mut().poll(&mut cx).is_pending()); // A refreshes (pending for good)
        let Poll::Ready(b_result) = b.as_mut().poll(&mut cx) else {
            panic!("B should give up at its deadline, not wait for A's refresh")
        };
        // B's own answer (expired_token) stands, as for a refresh that timed out.
        let b_error = b_result.unwrap_err();
        assert_eq!(
            (b_error.error.code(), b_error.attempts),
            ("expired_token", 1)
        );
        assert_eq!(hurried.refreshes.get(), 0, "B did not refresh");
        assert!(hurried.now.get() - 1_700_000_000_000.0 <= 1_000.0 + 10.0);
        assert!(a.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn pacing_spreads_a_burst() {
        let (client, env) = burst_of_five();
        let times = four_deletes(&client, &env);
        // Two at once (10 ms apart, the fake latency; 5 / 2 keeps one slot plus 1 s of drain in
        // reserve), then one per 500 ms.
        assert_eq!(times, vec![0.0, 10.0, 500.0, 1000.0]);
    }

    /// A client pacing at burst 5 / 2 per s, and a portal answering four deletes.
    fn burst_of_five() -> (Client, FakeEnv) {
        let rate_limit = RateLimitInput::Custom {
            burst: 5.0,
            per_second: 2.0,
        };
        (
            webhook_client(0.0, rate_limit),
            FakeEnv::new(vec![ok(SUCCESS); 4]),
        )
    }

    /// Four deletes in a row, each succeeding: when each was sent, from the fake clock's start.
    fn four_deletes(client: &Client, env: &FakeEnv) -> Vec<f64> {
        for id in 1..=4 {
            assert!(block_on(client.delete_item(env, 1268, id, CallOptions::default())).is_ok());
        }
        env.sent
            .borrow()
            .iter()
            .map(|s| s.0 - 1_700_000_000_000.0)
            .collect()
    }

    #[test]
    fn a_call_aborted_right_after_pacing_gives_its_slot_back() {
        let (client, env) = burst_of_five();
        // Paced with no wait (the burst has room), then found aborted before sending.
        env.aborted.set(true);
        let error =
            block_on(client.delete_item(&env, 1268, 9, CallOptions::default())).unwrap_err();
        assert_eq!((error.error, error.attempts), (Error::Aborted, 0));
        env.aborted.set(false);
        let times = four_deletes(&client, &env);
        // As if the aborted call had never come (see `pacing_spreads_a_burst`).
        assert_eq!(times, vec![0.0, 10.0, 500.0, 1000.0]);
    }

    #[test]
    fn a_slot_past_the_deadline_times_out_without_sending() {
        let client = webhook_client(
            0.0,
            RateLimitInput::Custom {
                burst: 1.0,
                per_second: 0.1,
            },
        );
        let env = FakeEnv::new(vec![ok(SUCCESS); 2]);
        assert!(block_on(client.delete_item(
            &env,
            1268,
            1,
            CallOptions {
                timeout_ms: Some(1000)
            }
        ))
        .is_ok());
        let error = block_on(client.delete_item(
            &env,
            1268,
            2,
            CallOptions {
                timeout_ms: Some(1000),
            },
        ))
        .unwrap_err();
        assert_eq!((error.error, error.attempts), (Error::Timeout, 0));
        assert_eq!(env.sent.borrow().len(), 1);
    }

    fn frame_token(value: &str) -> Credentials {
        Credentials::Token {
            token: Secret::new(value.into()),
            rest_base: Some("https://acme.bitrix24.com/rest/".into()),
        }
    }

    #[test]
    fn a_frame_reads_its_auth_once_then_calls_the_portal_directly() {
        let client = frame_client();
        let env = FakeEnv::new(vec![ok(SUCCESS), ok(SUCCESS)]);
        *env.new_token.borrow_mut() = Ok(frame_token("frame-token"));
        for id in [1, 2] {
            assert!(block_on(client.delete_item(&env, 1268, id, CallOptions::default())).is_ok());
        }
        assert_eq!(*env.firsts.borrow(), vec![true]);
        let sent = env.sent.borrow();
        assert_eq!(sent[0].1, "https://acme.bitrix24.com/rest/crm.item.delete");
        assert_eq!(
            sent[0].2,
            r#"{"entityTypeId":1268,"id":1,"auth":"frame-token"}"#
        );
    }

    #[test]
    fn a_frame_refreshes_through_bx24_on_expired_token() {
        let client = frame_client();
        let env = FakeEnv::new(vec![api_error(401, "expired_token"), ok(SUCCESS)]);
        *env.new_token.borrow_mut() = Ok(frame_token("first"));
        // The first look at BX24 (first = true), then a refresh after expired_token (first = false).
        assert!(block_on(client.delete_item(&env, 2, 9, CallOptions::default())).is_ok());
        assert_eq!(*env.firsts.borrow(), vec![true, false]);
        assert_eq!(env.sent.borrow().len(), 2);
    }

    #[test]
    fn a_frame_without_direct_access_goes_through_bx24() {
        let client = frame_client();
        let env = FakeEnv::new(vec![ok(SUCCESS)]);
        *env.new_token.borrow_mut() = Ok(Credentials::Bx24);
        assert!(block_on(client.delete_item(&env, 2, 9, CallOptions::default())).is_ok());
        assert_eq!(env.sent.borrow()[0].1, "crm.item.delete");
        assert_eq!(env.sent.borrow()[0].2, r#"{"entityTypeId":2,"id":9}"#);
    }

    /// Three deletes by a new frame client over a transport giving `answers`: the URLs sent
    /// (BX24's are the method name) and when.
    fn three_frame_deletes(
        answers: Vec<Result<RawResponse<Value>, Error>>,
    ) -> (Vec<String>, Vec<f64>) {
        let client = frame_client();
        let env = FakeEnv::new(answers);
        *env.new_token.borrow_mut() = Ok(frame_token("t"));
        for id in [9, 10, 11] {
            assert!(block_on(client.delete_item(&env, 2, id, CallOptions::default())).is_ok());
        }
        let sent = env.sent.borrow();
        sent.iter().map(|(at, url, _)| (url.clone(), *at)).unzip()
    }

    #[test]
    fn a_frame_whose_direct_requests_never_get_through_falls_back_to_bx24() {
        // Direct requests fail below HTTP (CORS, a CSP): each call repeats through BX24 at once;
        // after the second loss, the client's calls go through BX24 only.
        // (Its NOT_FOUND then means deleted: the lost direct request may have run.)
        let (urls, times) = three_frame_deletes(vec![
            Err(Error::Network),
            api_error(400, "NOT_FOUND"),
            Err(Error::Network),
            ok(SUCCESS),
            ok(SUCCESS),
        ]);
        let direct = "https://acme.bitrix24.com/rest/crm.item.delete";
        let bx24 = "crm.item.delete";
        assert_eq!(urls, [direct, bx24, direct, bx24, bx24]);
        // (The fake transport takes 10 ms per request.)
        assert!(
            times[1] - times[0] <= 10.0 && times[3] - times[2] <= 10.0,
            "no backoff before the fallback"
        );
        // One lost request (a blip): that call goes through BX24, the next goes direct again.
        let (urls, _) = three_frame_deletes(vec![
            Err(Error::Network),
            ok(SUCCESS),
            ok(SUCCESS),
            ok(SUCCESS),
        ]);
        assert_eq!(urls, [direct, bx24, direct, direct]);
        // Once a direct request has had an answer, a network error is a passing one: retried
        // directly, with backoff.
        let client = frame_client();
        let env = FakeEnv::new(vec![ok(SUCCESS), Err(Error::Network), ok(SUCCESS)]);
        *env.new_token.borrow_mut() = Ok(frame_token("t"));
        assert!(block_on(client.delete_item(&env, 2, 9, CallOptions::default())).is_ok());
        assert!(block_on(client.delete_item(&env, 2, 10, CallOptions::default())).is_ok());
        let sent = env.sent.borrow();
        assert!(sent.iter().all(|(_, url, _)| url.starts_with("https://")));
        assert!(sent[2].0 - sent[1].0 >= 500.0, "backoff before the repeat");
    }

    #[test]
    fn a_frame_route_falls_back_to_bx24_after_two_losses_before_any_answer() {
        assert_eq!(Route::Untried.lost(), (Route::LostOnce, true));
        assert_eq!(Route::LostOnce.lost(), (Route::Bx24, true));
        assert_eq!(Route::LostOnce.answered().lost(), (Route::Direct, false));
        assert_eq!(Route::Bx24.answered(), Route::Bx24);
    }

    #[test]
    fn a_frame_whose_bx24_never_answers_fails_without_sending() {
        let client = frame_client();
        let env = FakeEnv::new(vec![ok(SUCCESS)]);
        *env.new_token.borrow_mut() = Err(Error::Timeout);
        let error = block_on(client.delete_item(&env, 2, 9, CallOptions::default())).unwrap_err();
        assert_eq!((error.error, error.attempts), (Error::Timeout, 0));
        assert!(env.sent.borrow().is_empty());
        // Auto (nothing configured, not in a frame) never sends either.
        let auto = Client::new(Config::parse(ConfigInput::default()).unwrap());
        let error = block_on(auto.delete_item(&env, 2, 9, CallOptions::default())).unwrap_err();
        assert_eq!(error.error, Error::NotConfigured);
    }
}
