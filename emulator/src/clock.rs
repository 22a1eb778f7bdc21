//! Time source. Everything time-dependent (limits, token expiry, the `time` object, the server
//! time a command spends) reads and waits on the emulator's clock, so tests can inject a manual one
//! and stay deterministic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wait on a clock.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of Unix time in seconds (with a fractional part), and waits measured on it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> f64;
    /// Wait `secs` seconds of this clock (without blocking the server's other requests).
    fn sleep(&self, secs: f64) -> Sleep;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
    fn sleep(&self, secs: f64) -> Sleep {
        Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))))
    }
}

/// A clock that only moves when told to (for unit tests); a wait on it moves it at once.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<f64>>);

impl ManualClock {
    /// A manual clock starting at `start` (Unix seconds).
    pub fn new(start: f64) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }
    /// Move the clock forward by `secs` seconds.
    pub fn advance(&self, secs: f64) {
        *self.0.lock().unwrap() += secs;
    }
    /// Set the clock to `t` (Unix seconds).
    pub fn set(&self, t: f64) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.0.lock().unwrap()
    }
    fn sleep(&self, secs: f64) -> Sleep {
        self.advance(secs.max(0.0));
        Box::pin(std::future::ready(()))
    }
}

/// `2024-07-22T16:14:48+00:00` for a Unix time (UTC, as the portal's ISO dates with offset).
pub fn iso8601(t: f64) -> String {
    let secs = t.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(
            super::iso8601(1_721_657_688.755),
            "2024-07-22T14:14:48+00:00"
        );
        assert_eq!(super::iso8601(0.0), "1970-01-01T00:00:00+00:00");
    }
}
