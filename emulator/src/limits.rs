//! The operating limit: server seconds per method per webhook or OAuth app, kept in one-minute
//! baskets, in two models (`--limiter`):
//!
//! - `server`, the default, as the portal's server code does it (`shared/reference/bitrix24-rest.md`
//!   §3 "What the server code does"): a run of 0.1 s or less is free, the outer `batch` is charged half
//!   its run time, a basket expires 600 s after it opened, and a call that finds the method at or over
//!   the limit bans it for 300 s and clears its baskets.
//! - `docs`, the documentation's looser description: every executed call is charged the processing
//!   seconds, `batch` is never charged, a call at or over the limit is refused (no ban).
//!
//! Durations here are portal seconds; the baskets, the window and the ban last `d / timeScale` real
//! seconds. Times (`now`, basket openings, reset and ban ends) are real Unix seconds.

use std::collections::{HashMap, VecDeque};

use crate::portal::Settings;

/// Which operating-limit model the emulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    Server,
    Docs,
}

impl Limiter {
    pub fn parse(s: &str) -> Option<Limiter> {
        match s {
            "server" => Some(Limiter::Server),
            "docs" => Some(Limiter::Docs),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Limiter::Server => "server",
            Limiter::Docs => "docs",
        }
    }
    /// The operating limit when none is set: the server code's 420 s, the docs' example 480 s.
    pub fn default_limit(self) -> f64 {
        match self {
            Limiter::Server => 420.0,
            Limiter::Docs => 480.0,
        }
    }
}

/// A basket takes the charges of this many portal seconds after it opened.
pub const BASKET: f64 = 60.0;
/// A basket expires this many portal seconds after it opened.
pub const WINDOW: f64 = 600.0;
/// A ban lasts this many portal seconds (server model).
pub const BAN: f64 = 300.0;
/// A run of this many portal seconds or less costs nothing (server model).
pub const FREE_RUN: f64 = 0.1;
/// The server model charges the outer `batch` this share of its run time.
pub const BATCH_SHARE: f64 = 0.5;

/// What a method's meter shows an answer: its `operating` and `operating_reset_at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Portal seconds in the live baskets.
    pub operating: f64,
    /// Real Unix time: the ban's end while banned, else when the oldest live basket expires.
    pub reset_at: Option<f64>,
}

impl Reading {
    /// An empty meter.
    pub const NONE: Reading = Reading {
        operating: 0.0,
        reset_at: None,
    };
}

/// The baskets of one (method, webhook/app): (opened at, portal seconds), and a ban's end.
#[derive(Debug, Default)]
struct Meter {
    baskets: VecDeque<(f64, f64)>,
    banned_until: Option<f64>,
}

/// Every method's meter, and how many bans they handed out.
#[derive(Debug, Default)]
pub struct Meters {
    meters: HashMap<(String, String), Meter>,
    pub bans: u64,
}

impl Meters {
    pub fn clear(&mut self) {
        self.meters.clear();
        self.bans = 0;
    }

    /// The meter of `(method, who)` with its expired baskets and an ended ban dropped.
    fn meter(&mut self, s: &Settings, method: &str, who: &str, now: f64) -> &mut Meter {
        let window = s.real(WINDOW);
        let m = self
            .meters
            .entry((method.to_string(), who.to_string()))
            .or_default();
        while m
            .baskets
            .front()
            .is_some_and(|(opened, _)| opened + window <= now)
        {
            m.baskets.pop_front();
        }
        if m.banned_until.is_some_and(|end| end <= now) {
            m.banned_until = None;
        }
        m
    }

    /// `operating` and `operating_reset_at` of a method for `who`.
    pub fn reading(&mut self, s: &Settings, method: &str, who: &str, now: f64) -> Reading {
        let window = s.real(WINDOW);
        let m = self.meter(s, method, who, now);
        Reading {
            operating: m.baskets.iter().map(|(_, secs)| secs).sum(),
            reset_at: m
                .banned_until
                .or(m.baskets.front().map(|(opened, _)| opened + window)),
        }
    }

    /// The check before a call (or a batch's nested command): `Err` with the meter's reading when
    /// the call is refused with 429 `OPERATION_TIME_LIMIT`. The call that crosses the limit completes;
    /// under the server model the next one bans the method.
    pub fn admit(
        &mut self,
        s: &Settings,
        method: &str,
        who: &str,
        now: f64,
    ) -> Result<(), Reading> {
        let limit = s.operating_limit();
        let ban = s.real(BAN);
        let before = self.reading(s, method, who, now);
        if limit <= 0.0 {
            return Ok(());
        }
        match s.limiter {
            Limiter::Docs if before.operating >= limit => Err(before),
            Limiter::Docs => Ok(()),
            Limiter::Server => {
                let m = self.meter(s, method, who, now);
                if m.banned_until.is_none() {
                    if before.operating < limit {
                        return Ok(());
                    }
                    m.banned_until = Some(now + ban);
                    m.baskets.clear();
                    self.bans += 1;
                }
                Err(self.reading(s, method, who, now))
            }
        }
    }

    /// Charge an executed call that ran `run` portal seconds to its method.
    pub fn charge_call(&mut self, s: &Settings, method: &str, who: &str, run: f64, now: f64) {
        let cost = match s.limiter {
            Limiter::Server if run <= FREE_RUN => 0.0,
            Limiter::Server => run,
            Limiter::Docs => s.processing,
        };
        self.add(s, method, who, cost, now);
    }

    /// Charge the outer `batch` once its commands ran `run` portal seconds in all.
    pub fn charge_batch(&mut self, s: &Settings, who: &str, run: f64, now: f64) {
        if s.limiter == Limiter::Server && run > FREE_RUN {
            self.add(s, "batch", who, BATCH_SHARE * run, now);
        }
    }

    fn add(&mut self, s: &Settings, method: &str, who: &str, cost: f64, now: f64) {
        if cost <= 0.0 {
            return;
        }
        let basket = s.real(BASKET);
        let m = self.meter(s, method, who, now);
        match m.baskets.back_mut() {
            Some((opened, secs)) if *opened + basket > now => *secs += cost,
            _ => m.baskets.push_back((now, cost)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(limiter: Limiter, limit: f64) -> Settings {
        Settings {
            limiter,
            operating_limit: Some(limit),
            processing: 100.0,
            ..Settings::default()
        }
    }

    #[test]
    fn baskets_expire_600_s_after_they_opened() {
        let s = settings(Limiter::Server, 1000.0);
        let mut m = Meters::default();
        m.charge_call(&s, "m", "w", 100.0, 1000.0);
        m.charge_call(&s, "m", "w", 100.0, 1030.0); // same basket
        m.charge_call(&s, "m", "w", 100.0, 1070.0); // a new basket
        let at = |m: &mut Meters, now| m.reading(&s, "m", "w", now);
        assert_eq!(
            at(&mut m, 1100.0),
            Reading {
                operating: 300.0,
                reset_at: Some(1600.0)
            }
        );
        assert_eq!(m.reading(&s, "m", "other", 1100.0).operating, 0.0);
        assert_eq!(
            at(&mut m, 1600.0),
            Reading {
                operating: 100.0,
                reset_at: Some(1670.0)
            }
        );
        assert_eq!(
            at(&mut m, 1670.0),
            Reading {
                operating: 0.0,
                reset_at: None
            }
        );
    }

    #[test]
    fn server_floor_batch_share_and_ban() {
        let s = settings(Limiter::Server, 10.0);
        let mut m = Meters::default();
        m.charge_call(&s, "m", "w", FREE_RUN, 0.0);
        assert_eq!(m.reading(&s, "m", "w", 0.0).operating, 0.0);
        m.charge_batch(&s, "w", 30.0, 0.0);
        assert_eq!(m.reading(&s, "batch", "w", 0.0).operating, 15.0);
        m.charge_call(&s, "m", "w", 12.0, 0.0);
        assert!(
            m.admit(&s, "batch", "w", 1.0).is_err(),
            "15 s of batch >= 10"
        );
        let refused = m.admit(&s, "m", "w", 1.0).unwrap_err();
        assert_eq!(
            refused,
            Reading {
                operating: 0.0,
                reset_at: Some(301.0)
            }
        );
        assert_eq!(m.bans, 2);
        // still banned: refused, not banned again
        assert_eq!(
            m.admit(&s, "m", "w", 300.0).unwrap_err().reset_at,
            Some(301.0)
        );
        assert_eq!(m.bans, 2);
        assert!(m.admit(&s, "m", "w", 301.0).is_ok());
    }

    #[test]
    fn docs_charges_every_call_and_refuses_without_ban() {
        let s = settings(Limiter::Docs, 10.0);
        let mut m = Meters::default();
        m.charge_call(&s, "m", "w", 0.0, 0.0); // the processing setting, whatever the run
        m.charge_batch(&s, "w", 30.0, 0.0);
        assert_eq!(m.reading(&s, "batch", "w", 0.0).operating, 0.0);
        let refused = m.admit(&s, "m", "w", 1.0).unwrap_err();
        assert_eq!(
            refused,
            Reading {
                operating: 100.0,
                reset_at: Some(600.0)
            }
        );
        assert_eq!(m.bans, 0);
        assert!(m.admit(&s, "m", "w", 600.0).is_ok());
    }
}
