//! Retry, wait and pacing decisions. Pure functions of the error, the attempt count and the
//! clock; the call pipeline ([`crate::call`]) carries them out.

use crate::config::RateLimit;
use crate::error::Error;

/// First wait after `QUERY_LIMIT_EXCEEDED` or a 5xx/network failure; doubles each time.
pub const BACKOFF_BASE_MS: f64 = 1_000.0;
/// Longest single backoff wait.
pub const BACKOFF_CAP_MS: f64 = 15_000.0;
/// Wait on `OPERATION_TIME_LIMIT` when no `operating_reset_at` is known (the official SDK's figure).
pub const OPERATING_FALLBACK_MS: f64 = 10_000.0;
/// An attempt is given at least this long (or all that is left) while retries remain.
pub const MIN_ATTEMPT_MS: f64 = 10_000.0;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Give up with the error.
    Fail,
    /// Send again after waiting this many milliseconds.
    RetryAfter(f64),
    /// Ask `onTokenExpired` for a new token, then send again at once.
    RefreshToken,
}

/// The facts a decision needs beyond the error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// Retries already made (0 after the first attempt).
    pub retries: u32,
    /// The configured `maxRetries`.
    pub max_retries: u32,
    /// Milliseconds left before the call's deadline.
    pub remaining_ms: f64,
    /// Now, on the monotonic clock ([`crate::call::Env::now_ms`]).
    pub now_ms: f64,
    /// When the method's operating budget is next released, on the same clock (the portal's
    /// `operating_reset_at`, placed on it when its answer arrived).
    pub operating_reset_at: Option<f64>,
    /// Whether the client can refresh its token and has not yet done so for this call.
    pub can_refresh: bool,
    /// A random number in `[0, 1)` for jitter.
    pub random: f64,
}

/// Decides what follows a failed attempt. Inlined into its one caller by LLVM already, not
/// left to binaryen.
#[inline(always)]
pub fn decide(error: &Error, attempt: Attempt) -> Decision {
    if error.is_api("expired_token") || error.is_api("invalid_token") {
        return if attempt.can_refresh {
            Decision::RefreshToken
        } else {
            Decision::Fail
        };
    }
    if !error.retryable() || attempt.retries >= attempt.max_retries {
        return Decision::Fail;
    }
    let wait = if error.is_api("OPERATION_TIME_LIMIT") {
        match attempt.operating_reset_at {
            Some(reset_at) => until_reset_ms(reset_at, attempt.now_ms),
            None => OPERATING_FALLBACK_MS,
        }
    } else {
        backoff_ms(attempt.retries, attempt.random)
    };
    // A wait that cannot end before the deadline fails now, with the real reason.
    if wait >= attempt.remaining_ms {
        Decision::Fail
    } else {
        Decision::RetryAfter(wait)
    }
}

/// How long to wait from `now_ms` for a reset at `reset_at_ms` (both on the monotonic clock):
/// until the oldest basket drops out, plus a little for the portal's rounding.
pub fn until_reset_ms(reset_at_ms: f64, now_ms: f64) -> f64 {
    (reset_at_ms - now_ms).max(0.0) + 250.0
}

/// Exponential backoff with ±25 % jitter: about 1 s, 2 s, 4 s, ... capped at 15 s.
pub fn backoff_ms(retries: u32, random: f64) -> f64 {
    let base = (BACKOFF_BASE_MS * f64::from(1u32 << retries.min(10))).min(BACKOFF_CAP_MS);
    base * (0.75 + 0.5 * random.clamp(0.0, 1.0))
}

/// How long one attempt may take: everything left on the last try; otherwise half of what is
/// left, but at least [`MIN_ATTEMPT_MS`], so a hung request leaves time for another try.
pub fn attempt_timeout_ms(remaining_ms: f64, retries_left: u32) -> f64 {
    if retries_left == 0 {
        remaining_ms
    } else {
        (remaining_ms / 2.0).max(MIN_ATTEMPT_MS.min(remaining_ms))
    }
}

/// Slots of the burst the client leaves unused: one, plus what the portal drains in
/// [`ARRIVAL_SLACK_MS`] — at most all but one.
pub fn reserve_slots(limit: RateLimit) -> u32 {
    let drained = (limit.per_second * ARRIVAL_SLACK_MS / 1000.0).ceil() as u32;
    (1 + drained).min(limit.burst.saturating_sub(1))
}

/// How much later than planned a request may reach the portal without meeting its limit. A
/// browser holds requests back (six connections per host, a busy main thread): measured against
/// the emulator, 250 ms still let 1,000 concurrent calls at 50/s meet 503s on a loaded machine.
pub const ARRIVAL_SLACK_MS: f64 = 1000.0;

/// A client-side leaky bucket in the portal's terms: `burst` requests at once, draining
/// `per_second`. Implemented as a virtual schedule (GCRA): each reservation takes the next free
/// slot, so waiting calls go out first-come, first-served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    interval_ms: f64,
    tolerance_ms: f64,
    /// When the bucket would be empty if no one else came (the theoretical arrival time).
    empty_at_ms: f64,
}

impl Bucket {
    /// A bucket for `limit`, keeping [`reserve_slots`] of the burst unused: a request can reach
    /// the portal later than it left, and then the portal has drained less than the client
    /// counted, so a bucket exactly the portal's size would meet its edge.
    pub fn new(limit: RateLimit) -> Bucket {
        let interval_ms = 1000.0 / limit.per_second;
        let burst = limit.burst - reserve_slots(limit);
        Bucket {
            interval_ms,
            tolerance_ms: f64::from(burst.saturating_sub(1)) * interval_ms,
            empty_at_ms: 0.0,
        }
    }

    /// Reserves the next slot and returns when it is (`now_ms` or later).
    pub fn reserve(&mut self, now_ms: f64) -> f64 {
        let empty_at = self.empty_at_ms.max(now_ms);
        let send_at = (empty_at - self.tolerance_ms).max(now_ms);
        self.empty_at_ms = empty_at + self.interval_ms;
        send_at
    }

    /// Gives back a slot reserved at `send_at` that was never used (an aborted or timed-out
    /// wait), when it is still the latest one: the schedule then ends one interval after a
    /// point between `send_at` (a slot inside the burst, taken at once) and `send_at` plus the
    /// tolerance (a slot that had to wait).
    pub fn release(&mut self, send_at_ms: f64) {
        let reserved_at = self.empty_at_ms - self.interval_ms;
        if reserved_at >= send_at_ms - 1e-6 && reserved_at <= send_at_ms + self.tolerance_ms + 1e-6
        {
            self.empty_at_ms -= self.interval_ms;
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            retries: 0,
            max_retries: 3,
            remaining_ms: 30_000.0,
            now_ms: 1_700_000_000_000.0,
            operating_reset_at: None,
            can_refresh: false,
            random: 0.5,
        }
    }

    #[test]
    fn decision_table() {
        let retry = |code: &str, status| decide(&Error::api(code, "", status), attempt());
        assert_eq!(
            retry("QUERY_LIMIT_EXCEEDED", 503),
            Decision::RetryAfter(1000.0)
        );
        assert_eq!(
            retry("INTERNAL_SERVER_ERROR", 500),
            Decision::RetryAfter(1000.0)
        );
        assert_eq!(
            retry("ERROR_UNEXPECTED_ANSWER", 500),
            Decision::RetryAfter(1000.0)
        );
        assert_eq!(retry("SOMETHING", 502), Decision::RetryAfter(1000.0));
        for code in [
            "NOT_FOUND",
            "ACCESS_DENIED",
            "allowed_only_intranet_user",
            "INVALID_CREDENTIALS",
            "insufficient_scope",
            "NO_AUTH_FOUND",
            "user_access_error",
            "ENTITY_TYPE_NOT_SUPPORTED",
            "ERROR_METHOD_NOT_FOUND",
            "INVALID_REQUEST",
            "OVERLOAD_LIMIT",
            "PORTAL_DELETED",
        ] {
            assert_eq!(retry(code, 400), Decision::Fail, "{code}");
        }
        assert_eq!(retry("expired_token", 401), Decision::Fail);
        assert_eq!(
            decide(
                &Error::api("expired_token", "", 401),
                Attempt {
                    can_refresh: true,
                    ..attempt()
                }
            ),
            Decision::RefreshToken
        );
        for error in [
            Error::Network,
            Error::Timeout,
            Error::BadResponse {
                status: 502,
                reason: "",
            },
            Error::BadResponse {
                status: 200,
                reason: "",
            },
        ] {
            assert_eq!(
                decide(&error, attempt()),
                Decision::RetryAfter(1000.0),
                "{error:?}"
            );
        }
        for error in [
            Error::Aborted,
            Error::InvalidArgument(""),
            Error::NotConfigured,
            Error::BadResponse {
                status: 404,
                reason: "",
            },
        ] {
            assert_eq!(decide(&error, attempt()), Decision::Fail, "{error:?}");
        }
    }

    #[test]
    fn retries_run_out() {
        let error = Error::api("QUERY_LIMIT_EXCEEDED", "", 503);
        assert_eq!(
            decide(
                &error,
                Attempt {
                    retries: 2,
                    ..attempt()
                }
            ),
            Decision::RetryAfter(4000.0)
        );
        assert_eq!(
            decide(
                &error,
                Attempt {
                    retries: 3,
                    ..attempt()
                }
            ),
            Decision::Fail
        );
        assert_eq!(
            decide(
                &error,
                Attempt {
                    max_retries: 0,
                    ..attempt()
                }
            ),
            Decision::Fail
        );
    }

    #[test]
    fn operating_limit_waits_for_the_reset_when_it_fits() {
        let error = Error::api("OPERATION_TIME_LIMIT", "", 429);
        let near = Attempt {
            operating_reset_at: Some(1_700_000_005.0 * 1000.0),
            ..attempt()
        };
        assert_eq!(decide(&error, near), Decision::RetryAfter(5_250.0));
        let far = Attempt {
            operating_reset_at: Some(1_700_000_100.0 * 1000.0),
            ..attempt()
        };
        assert_eq!(decide(&error, far), Decision::Fail);
        let past = Attempt {
            operating_reset_at: Some(1_699_999_000.0 * 1000.0),
            ..attempt()
        };
        assert_eq!(decide(&error, past), Decision::RetryAfter(250.0));
        assert_eq!(
            decide(&error, attempt()),
            Decision::RetryAfter(OPERATING_FALLBACK_MS)
        );
    }

    #[test]
    fn waits_past_the_deadline_fail_now() {
        let error = Error::Network;
        assert_eq!(
            decide(
                &error,
                Attempt {
                    remaining_ms: 900.0,
                    ..attempt()
                }
            ),
            Decision::Fail
        );
    }

    #[test]
    fn backoff_grows_with_bounded_jitter() {
        assert_eq!(backoff_ms(0, 0.0), 750.0);
        assert_eq!(backoff_ms(0, 1.0), 1250.0);
        assert_eq!(backoff_ms(1, 0.5), 2000.0);
        assert_eq!(backoff_ms(2, 0.5), 4000.0);
        assert_eq!(backoff_ms(9, 0.5), 15_000.0);
        assert_eq!(backoff_ms(40, 0.5), 15_000.0);
    }

    #[test]
    fn attempt_timeouts_leave_room_for_a_retry() {
        assert_eq!(attempt_timeout_ms(30_000.0, 3), 15_000.0);
        assert_eq!(attempt_timeout_ms(15_000.0, 2), 10_000.0);
        assert_eq!(attempt_timeout_ms(4_000.0, 2), 4_000.0);
        assert_eq!(attempt_timeout_ms(30_000.0, 0), 30_000.0);
    }

    #[test]
    fn bucket_allows_a_burst_then_drains() {
        // 50 / 2: three slots kept in reserve (one, plus 1 s of drain).
        let limit = RateLimit {
            burst: 50,
            per_second: 2.0,
        };
        assert_eq!(reserve_slots(limit), 3);
        let mut bucket = Bucket::new(limit);
        for _ in 0..47 {
            assert_eq!(bucket.reserve(0.0), 0.0);
        }
        assert_eq!(bucket.reserve(0.0), 500.0);
        assert_eq!(bucket.reserve(0.0), 1000.0);
        // After a long pause it is full again.
        let mut later = bucket;
        for _ in 0..47 {
            assert_eq!(later.reserve(1_000_000.0), 1_000_000.0);
        }
        assert_eq!(later.reserve(1_000_000.0), 1_000_500.0);
        // A released last slot is reused.
        let slot = bucket.reserve(0.0);
        bucket.release(slot);
        assert_eq!(bucket.reserve(0.0), slot);
    }

    /// The portal's own bucket, as documented: a counter that drains `per_second` and refuses a
    /// request that would take it past `burst`.
    fn portal_accepts(times_ms: &[f64], limit: RateLimit) -> usize {
        let mut level = 0.0;
        let mut last = 0.0;
        let mut refused = 0;
        for &t in times_ms {
            level = f64::max(0.0, level - (t - last) / 1000.0 * limit.per_second);
            last = t;
            if level + 1.0 > f64::from(limit.burst) + 1e-9 {
                refused += 1;
            } else {
                level += 1.0;
            }
        }
        refused
    }

    proptest::proptest! {
        #[test]
        fn paced_requests_are_never_refused_by_a_portal_with_the_same_limits(
            burst in 1u32..60,
            per_second in 1u32..20,
            arrivals in proptest::collection::vec(0u32..20_000, 1..300),
        ) {
            let limit = RateLimit { burst, per_second: f64::from(per_second) };
            let mut arrivals: Vec<f64> = arrivals.into_iter().map(f64::from).collect();
            arrivals.sort_by(f64::total_cmp);
            let mut bucket = Bucket::new(limit);
            let sent: Vec<f64> = arrivals.iter().map(|&t| bucket.reserve(t)).collect();
            proptest::prop_assert!(sent.windows(2).all(|w| w[0] <= w[1]), "FIFO order");
            proptest::prop_assert_eq!(portal_accepts(&sent, limit), 0);
            // Still never refused when requests reach the portal up to the slack late (when the
            // burst is large enough to keep the whole reserve).
            let full_reserve = 1 + (f64::from(per_second) * ARRIVAL_SLACK_MS / 1000.0).ceil() as u32;
            let late: Vec<f64> = sent.iter().enumerate().map(|(i, &t)| t + if i % 2 == 0 { ARRIVAL_SLACK_MS } else { 0.0 }).collect();
            let mut late_sorted = late.clone();
            late_sorted.sort_by(f64::total_cmp);
            if reserve_slots(limit) == full_reserve {
                proptest::prop_assert_eq!(portal_accepts(&late_sorted, limit), 0);
            }
            // And no slower than needed: n requests at once take (n - usable burst) intervals.
            let n = arrivals.len() as f64;
            let usable = f64::from(burst - reserve_slots(limit));
            if arrivals.iter().all(|&t| t == arrivals[0]) && n > usable {
                let last = sent[sent.len() - 1] - arrivals[0];
                proptest::prop_assert!((last - (n - usable) * 1000.0 / f64::from(per_second)).abs() < 1e-6);
            }
        }
    }
}
