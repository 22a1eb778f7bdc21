//! The operating budget: how much server time each REST method may still spend, when the next
//! batch may go and how many commands it may carry, and how long the job will take.
//!
//! The portal meters server time per method per app or webhook in 60 s baskets that expire
//! 600 s after they open; a call (or a batch's nested command) checked while the method's sum
//! is at the limit bans the method for 300 s (`bitrix24-rest.md` §3, "What the server code
//! does"). [`Budget`] mirrors those baskets from the answers' `time` objects, reconciles the
//! mirror with the portal's own `operating` figure after every charge, and paces so that no
//! command starts while its method is near the limit.
//!
//! Pure: every instant is a monotonic millisecond value given by the caller (portal Unix
//! instants are turned into it with [`monotonic_ms`]); no clock, no I/O. Durations the portal
//! reports are *portal* seconds; under an emulator's time scale they pass faster than real
//! ones, so the budget learns the real length of a portal second from the answers.

/// The portal's default operating limit (seconds per method per window).
pub const DEFAULT_LIMIT_S: f64 = 420.0;
/// At most this many commands in one batch.
pub const MAX_BATCH: usize = 50;
/// A batch is sized to run about this long (portal seconds), well under the 60 s request limit.
pub const BATCH_RUN_TARGET_S: f64 = 20.0;
/// The portal's request limit (portal seconds): a longer request is cut (HTML 504).
pub const REQUEST_LIMIT_S: f64 = 60.0;
/// A run this short costs nothing.
pub const FREE_RUN_S: f64 = 0.1;
/// Part of the limit left unused, for estimation error (costs vary, baskets are guessed).
pub const MARGIN: f64 = 0.05;

const WINDOW_S: f64 = 600.0;
const BASKET_S: f64 = 60.0;
const BAN_S: f64 = 300.0;
/// Expiries and bans are predicted this much late (a fraction of their length).
const LATE: f64 = 0.01;
/// Runs at least this long (portal seconds) tell the real length of a portal second.
const SCALE_MIN_RUN_S: f64 = 0.2;
/// Two `operating` figures closer than this agree.
const SAME_S: f64 = 0.01;

/// A metered method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `crm.item.delete`, called alone or nested in a batch.
    Delete,
    /// The outer `batch`, charged half its run time.
    Batch,
}

/// The facts of one `time` object (a call's, a batch's, or a nested command's `result_time`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// `start`, on the monotonic clock.
    pub start_ms: f64,
    /// `finish`, on the monotonic clock.
    pub finish_ms: f64,
    /// The run in portal seconds: the larger of `duration` and `processing`.
    pub run_s: f64,
    /// `operating`: the method's sum after this charge, as the portal counts it.
    pub operating_s: Option<f64>,
    /// `operating_reset_at` on the monotonic clock: when the oldest basket expires (or the ban
    /// ends).
    pub reset_ms: Option<f64>,
}

/// Turns a portal instant (Unix seconds) into the monotonic clock, anchored on the answer's
/// own `finish` and the instant the answer arrived: the two clocks are never compared, so
/// clock skew cannot move a wait earlier; it errs late by the answer's trip.
pub fn monotonic_ms(unix_s: f64, finish_unix_s: f64, arrived_ms: f64) -> f64 {
    arrived_ms - (finish_unix_s - unix_s) * 1000.0
}

/// What the next request may do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Send a batch of this many commands (at least one) now.
    Send(usize),
    /// Nothing fits before this instant (monotonic ms).
    Wait(f64),
}

/// One basket of the mirror: what it holds and when the portal drops it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Basket {
    opened_ms: f64,
    expires_ms: f64,
    seconds: f64,
}

/// One method's mirror of the portal's baskets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Meter {
    /// Oldest first; expiries never decrease.
    baskets: Vec<Basket>,
    banned_until_ms: f64,
}

impl Meter {
    fn operating(&self, at_ms: f64) -> f64 {
        self.live(at_ms).map(|b| b.seconds).sum()
    }

    fn live(&self, at_ms: f64) -> impl Iterator<Item = &Basket> {
        self.baskets.iter().filter(move |b| b.expires_ms > at_ms)
    }

    fn expire(&mut self, at_ms: f64) {
        self.baskets.retain(|b| b.expires_ms > at_ms);
    }

    /// Adds `seconds` at `at_ms` the portal's way: into the newest basket while it is younger
    /// than a basket's length, else into a new one.
    fn charge(&mut self, at_ms: f64, seconds: f64, scale: Scale) {
        self.expire(at_ms);
        if seconds <= 0.0 {
            return;
        }
        match self.baskets.last_mut() {
            Some(newest) if at_ms - newest.opened_ms <= scale.ms(BASKET_S) => {
                newest.seconds += seconds
            }
            newest => {
                let after = newest.map_or(0.0, |b| b.expires_ms);
                self.baskets.push(Basket {
                    opened_ms: at_ms,
                    expires_ms: (at_ms + scale.late_ms(WINDOW_S)).max(after),
                    seconds,
                });
            }
        }
    }

    /// Makes the mirror's sum at `at_ms` the portal's `operating`: time the mirror lacks was
    /// spent by someone else on the same key and stays the longest (the newest basket); time
    /// it has too much of already expired (the oldest baskets). When the two agree, the
    /// portal's reset bounds the oldest basket's expiry.
    fn reconcile(&mut self, at_ms: f64, operating_s: f64, reset_ms: Option<f64>, scale: Scale) {
        self.expire(at_ms);
        let mirror = self.operating(at_ms);
        if operating_s > mirror + SAME_S {
            self.charge(at_ms, operating_s - mirror, scale);
        } else if operating_s < mirror - SAME_S {
            let mut excess = mirror - operating_s;
            for basket in &mut self.baskets {
                let taken = basket.seconds.min(excess);
                basket.seconds -= taken;
                excess -= taken;
            }
            self.baskets.retain(|b| b.seconds > 0.0);
        } else if let (Some(reset), Some(oldest)) = (reset_ms, self.baskets.first_mut()) {
            oldest.expires_ms = oldest.expires_ms.min(reset.max(at_ms));
        }
    }

    /// The earliest instant from `now_ms` at which a command may start: not banned, and the
    /// sum under `room`.
    fn free_at(&self, now_ms: f64, room_s: f64) -> f64 {
        let from = now_ms.max(self.banned_until_ms);
        let mut operating = self.operating(from);
        if operating < room_s {
            return from;
        }
        for basket in self.live(from) {
            operating -= basket.seconds;
            if operating < room_s {
                return basket.expires_ms;
            }
        }
        from
    }
}

/// Real milliseconds per portal second: 1000 on a real portal, less on a time-scaled emulator.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale(f64);

impl Scale {
    fn ms(self, portal_s: f64) -> f64 {
        portal_s * self.0
    }

    /// A portal duration as real ms, predicted a little long.
    fn late_ms(self, portal_s: f64) -> f64 {
        self.ms(portal_s) * (1.0 + LATE)
    }
}

/// The cost of one command (portal seconds): a smoothed mean and mean deviation, as TCP
/// estimates a round trip, so that `high` rises at once on a costly command and falls back
/// over a few dozen cheap ones.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cost {
    mean_s: f64,
    deviation_s: f64,
    samples: u32,
}

impl Cost {
    fn add(&mut self, run_s: f64) {
        if self.samples == 0 {
            self.mean_s = run_s;
            self.deviation_s = run_s / 2.0;
        } else {
            let error = run_s - self.mean_s;
            self.mean_s += error / 8.0;
            self.deviation_s += (error.abs() - self.deviation_s) / 4.0;
        }
        self.samples += 1;
    }

    /// A cost the next commands will rarely exceed.
    fn high_s(&self) -> f64 {
        self.mean_s + 2.0 * self.deviation_s
    }
}

/// What a run of `run_s` portal seconds costs under `method`.
fn charge_s(method: Method, run_s: f64) -> f64 {
    match method {
        _ if run_s <= FREE_RUN_S => 0.0,
        Method::Delete => run_s,
        Method::Batch => run_s / 2.0,
    }
}

/// One client's budget state: both methods' meters, the measured cost and speed. Plain data
/// (instants on the caller's clock), so tabs sharing one webhook could share it, on a clock
/// they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// `operatingLimit`; `None`: no pacing by the budget (bans are still sat out).
    limit_s: Option<f64>,
    delete: Meter,
    batch: Meter,
    cost: Cost,
    /// Learned from the answers (`finish − start` against `duration`); `None` before any.
    scale: Option<Scale>,
    /// Real milliseconds per command, whole requests included (for the ETA).
    command_ms: Option<f64>,
}

impl Budget {
    /// A budget for `operatingLimit` (seconds; `None`: off).
    pub fn new(limit_s: Option<f64>) -> Budget {
        Budget {
            limit_s,
            delete: Meter::default(),
            batch: Meter::default(),
            cost: Cost::default(),
            scale: None,
            command_ms: None,
        }
    }

    fn scale(&self) -> Scale {
        self.scale.unwrap_or(Scale(1000.0))
    }

    fn meter(&mut self, method: Method) -> &mut Meter {
        match method {
            Method::Delete => &mut self.delete,
            Method::Batch => &mut self.batch,
        }
    }

    /// Takes in one successful `time`: a single delete's, each nested command's that ran
    /// (`Delete`, in their order; a refused one goes to [`Budget::refused`]) and then the
    /// batch's own (`Batch`). The real length of a portal second is learned from it too: the
    /// shortest `finish − start` per second of run seen (an emulator's overhead only lengthens
    /// it; a real portal's `duration` is `finish − start`).
    pub fn record(&mut self, method: Method, time: &Timing) {
        let real_ms = time.finish_ms - time.start_ms;
        if time.run_s >= SCALE_MIN_RUN_S && real_ms > 0.0 {
            let seen = real_ms / time.run_s;
            self.scale = Some(Scale(self.scale.map_or(seen, |s| s.0.min(seen))));
        }
        if method == Method::Delete {
            self.cost.add(time.run_s);
        }
        let scale = self.scale();
        let meter = self.meter(method);
        meter.charge(time.finish_ms, charge_s(method, time.run_s), scale);
        if let Some(operating) = time.operating_s {
            meter.reconcile(time.finish_ms, operating, time.reset_ms, scale);
        }
    }

    /// Takes in a whole request's real time (sent at `sent_ms`, answered at `now`) for the
    /// ETA.
    pub fn trip(&mut self, commands: usize, sent_ms: f64, now: f64) {
        let per = (now - sent_ms) / commands.max(1) as f64;
        self.command_ms = Some(self.command_ms.map_or(per, |ms| ms + (per - ms) / 4.0));
    }

    /// A request of `commands` commands got no answer (timeout, network, a 504 cut): the
    /// portal may have run them all, and for at least its request limit. Charged so, and each
    /// command is taken to cost at least its share of that limit, so the next batch is smaller.
    pub fn lost(&mut self, commands: usize, now: f64) {
        let n = commands.max(1) as f64;
        let known_s = if self.cost.samples > 0 {
            n * self.cost.high_s()
        } else {
            0.0
        };
        let run_s = known_s.max(REQUEST_LIMIT_S);
        self.cost.mean_s = self.cost.mean_s.max(REQUEST_LIMIT_S / n);
        self.cost.samples = self.cost.samples.max(1);
        let scale = self.scale();
        self.delete.charge(now, run_s, scale);
        self.batch
            .charge(now, charge_s(Method::Batch, run_s), scale);
    }

    /// A 429 (`OPERATION_TIME_LIMIT`) for `method`: the method is banned, and the ban cleared
    /// its baskets. `ends_ms` is the ban's end when the portal said it (a refused nested
    /// command's `result_time`); a 429 answer says nothing, but the ban began by now, so it
    /// ends within a ban's length. Returns when `method` may be called again.
    pub fn refused(&mut self, method: Method, ends_ms: Option<f64>, now: f64) -> f64 {
        let ends = ends_ms.unwrap_or(now + self.scale().late_ms(BAN_S));
        let meter = self.meter(method);
        meter.baskets.clear();
        meter.banned_until_ms = meter.banned_until_ms.max(ends);
        meter.banned_until_ms
    }

    /// The sum a command may start under (infinite without a limit).
    fn room_s(&self) -> f64 {
        self.limit_s
            .map_or(f64::INFINITY, |limit| limit * (1.0 - MARGIN))
    }

    /// The next batch of a job with `remaining` commands left: its size, or when to ask again.
    /// No command of it starts while `crm.item.delete` would be within the margin of the limit
    /// (at the measured cost), `batch` is under it too, its run stays near
    /// [`BATCH_RUN_TARGET_S`], and it is at most one more than twice the commands measured so
    /// far (a pilot of one first).
    pub fn next_batch(&self, now: f64, remaining: usize) -> Pace {
        let room = self.room_s();
        let start = self
            .delete
            .free_at(now, room)
            .max(self.batch.free_at(now, room));
        if start > now {
            return Pace::Wait(start);
        }
        let grown = 2 * self.cost.samples as usize + 1;
        let mut size = remaining.min(MAX_BATCH).min(grown);
        if self.cost.samples > 0 {
            let high_s = self.cost.high_s();
            size = size.min((BATCH_RUN_TARGET_S / high_s) as usize);
            let charge = charge_s(Method::Delete, high_s);
            if charge > 0.0 {
                // The commands that start under the room; `as` saturates an infinite room.
                let left = room - self.delete.operating(now);
                size = size.min(((left / charge) as usize).saturating_add(1));
            }
        }
        Pace::Send(size.max(1))
    }

    /// The longest a request can run before the portal cuts it, in real ms (the request
    /// limit in this portal's seconds): an attempt timeout is this plus the network's share.
    pub fn longest_request_ms(&self) -> f64 {
        self.scale().ms(REQUEST_LIMIT_S)
    }

    /// When a single `crm.item.delete` may be sent: `None` now, else the instant. A caller
    /// whose deadline comes first fails at once instead of meeting a ban.
    pub fn single_wait(&self, now: f64) -> Option<f64> {
        let start = self.delete.free_at(now, self.room_s());
        (start > now).then_some(start)
    }

    /// How long (ms) until `remaining` commands are done: this budget's own pacing played
    /// forward on a copy, at the measured mean cost and real speed, the baskets expiring as
    /// modelled. `None` until a command has been measured.
    pub fn eta(&self, now: f64, remaining: usize) -> Option<f64> {
        let command_ms = self.command_ms?;
        if self.cost.samples == 0 {
            return None;
        }
        let cost_s = self.cost.mean_s;
        let mut plan = self.clone();
        let scale = plan.scale();
        let (mut at, mut left) = (now, remaining);
        // A bound on the steps, should a figure be NaN or absurd.
        for _ in 0..1_000_000 {
            if left == 0 {
                return Some(at - now);
            }
            match plan.next_batch(at, left) {
                Pace::Wait(until) => at = until,
                Pace::Send(size) => {
                    at += size as f64 * command_ms;
                    let run_s = size as f64 * cost_s;
                    let spent_s = size as f64 * charge_s(Method::Delete, cost_s);
                    plan.delete.charge(at, spent_s, scale);
                    plan.batch.charge(at, charge_s(Method::Batch, run_s), scale);
                    plan.cost.samples += size as u32;
                    left -= size;
                }
            }
        }
        None
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A command's `time` as the portal reports it, on a clock where `at` is `finish`.
    fn timing(finish_ms: f64, run_s: f64, operating_s: f64) -> Timing {
        Timing {
            start_ms: finish_ms - run_s * 1000.0,
            finish_ms,
            run_s,
            operating_s: Some(operating_s),
            reset_ms: None,
        }
    }

    #[test]
    fn portal_instants_are_anchored_on_the_answer() {
        // The answer finished at portal 1000.5 s and arrived at monotonic 42 ms.
        assert_eq!(monotonic_ms(1000.5, 1000.5, 42.0), 42.0);
        assert_eq!(monotonic_ms(1010.0, 1000.5, 42.0), 9542.0);
    }

    #[test]
    fn a_pilot_of_one_then_growth_as_the_cost_is_measured() {
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        assert_eq!(budget.next_batch(0.0, 10_000), Pace::Send(1));
        assert_eq!(budget.eta(0.0, 10_000), None);
        budget.record(Method::Delete, &timing(600.0, 0.6, 0.6));
        // One sample: at most 3 commands; the first estimate is pessimistic (2 × 0.6 s).
        assert_eq!(budget.next_batch(600.0, 10_000), Pace::Send(3));
        let mut at = 600.0;
        for _ in 0..40 {
            at += 600.0;
            let operating = budget.delete.operating(at) + 0.6;
            budget.record(Method::Delete, &timing(at, 0.6, operating));
        }
        // Measured: 20 s / 0.6 s = 33 commands.
        assert_eq!(budget.next_batch(at, 10_000), Pace::Send(33));
        assert_eq!(budget.next_batch(at, 7), Pace::Send(7));
        // A costly command shrinks the next batch at once (to 20 s / 3.35 s: mean 1.15 s,
        // deviation 1.1 s).
        at += 5000.0;
        let operating = budget.delete.operating(at) + 5.0;
        budget.record(Method::Delete, &timing(at, 5.0, operating));
        assert_eq!(budget.next_batch(at, 10_000), Pace::Send(5));
    }

    #[test]
    fn charges_follow_the_server_rules() {
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        // ≤ 0.1 s is free; a batch costs half its run.
        budget.record(
            Method::Delete,
            &Timing {
                operating_s: None,
                ..timing(100.0, 0.1, 0.0)
            },
        );
        budget.record(
            Method::Batch,
            &Timing {
                operating_s: None,
                ..timing(200.0, 10.0, 0.0)
            },
        );
        assert_eq!(budget.delete.operating(200.0), 0.0);
        assert_eq!(budget.batch.operating(200.0), 5.0);
        // The portal's figure wins: more is someone else's (kept longest), less already expired.
        budget.record(Method::Delete, &timing(300.0, 1.0, 50.0));
        assert_eq!(budget.delete.operating(300.0), 50.0);
        budget.record(Method::Delete, &timing(400.0, 1.0, 20.0));
        assert_eq!(budget.delete.operating(400.0), 20.0);
    }

    #[test]
    fn baskets_open_every_minute_and_expire_after_ten() {
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        // A real portal (1 s of real time per second): 3 charges, two baskets.
        for (at, operating) in [(1_000.0, 10.0), (50_000.0, 20.0), (70_000.0, 30.0)] {
            budget.record(Method::Delete, &timing(at, 10.0, operating));
        }
        assert_eq!(budget.delete.baskets.len(), 2);
        let first_expiry = 1_000.0 + 606_000.0;
        assert_eq!(budget.delete.operating(first_expiry - 1.0), 30.0);
        assert_eq!(budget.delete.operating(first_expiry), 10.0);
        // The portal's reset pulls the oldest expiry in when the mirror agrees with it.
        let mut agreed = budget.clone();
        agreed.record(
            Method::Delete,
            &Timing {
                reset_ms: Some(601_500.0),
                ..timing(80_000.0, 0.05, 30.0)
            },
        );
        assert_eq!(agreed.delete.operating(601_500.0), 10.0);
    }

    #[test]
    fn the_next_batch_waits_until_a_command_fits() {
        let mut budget = Budget::new(Some(100.0));
        for i in 1..=40 {
            let at = f64::from(i) * 2_000.0;
            budget.record(Method::Delete, &timing(at, 2.0, 2.0 * f64::from(i)));
        }
        // 80 s spent in two baskets (opened at 2 s and at 64 s); room is 95 s: 8 more commands
        // may start (the 8th at 94 s).
        assert_eq!(budget.next_batch(80_000.0, 100), Pace::Send(8));
        for i in 41..=48 {
            let at = f64::from(i) * 2_000.0;
            budget.record(Method::Delete, &timing(at, 2.0, 2.0 * f64::from(i)));
        }
        // 96 s: nothing fits until the first basket (31 × 2 s) expires.
        let expiry = 2_000.0 + 606_000.0;
        assert_eq!(budget.next_batch(96_000.0, 100), Pace::Wait(expiry));
        assert_eq!(budget.single_wait(96_000.0), Some(expiry));
        // 34 s left: the run target bounds it (20 s at a hair over 2 s each).
        assert_eq!(budget.next_batch(expiry, 100), Pace::Send(9));
        assert_eq!(budget.single_wait(expiry), None);
        // Without a limit nothing waits.
        let mut off = budget.clone();
        off.limit_s = None;
        assert_eq!(off.next_batch(96_000.0, 100), Pace::Send(9));
        assert_eq!(off.single_wait(96_000.0), None);
    }

    #[test]
    fn a_429_waits_for_the_ban_in_the_portals_time() {
        // Never answered: the real portal's 300 s (predicted 1 % long).
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        assert_eq!(budget.refused(Method::Batch, None, 1_000.0), 304_000.0);
        assert_eq!(budget.next_batch(1_000.0, 5), Pace::Wait(304_000.0));
        assert_eq!(budget.single_wait(1_000.0), None, "only `batch` is banned");
        // Under a time scale of 60 (a 0.6 s command took 10 ms): 5 s and a little.
        let mut scaled = Budget::new(Some(DEFAULT_LIMIT_S));
        scaled.record(
            Method::Delete,
            &Timing {
                start_ms: 990.0,
                ..timing(1_000.0, 0.6, 0.6)
            },
        );
        let until = scaled.refused(Method::Delete, None, 1_000.0);
        assert!((until - 6_050.0).abs() < 1e-6, "{until}");
        assert_eq!(
            scaled.delete.operating(1_000.0),
            0.0,
            "a ban clears the baskets"
        );
        // A refused nested command's reset is the ban's end.
        assert_eq!(
            scaled.refused(Method::Delete, Some(9_000.0), 2_000.0),
            9_000.0
        );
        assert_eq!(scaled.single_wait(2_000.0), Some(9_000.0));
    }

    #[test]
    fn a_request_may_run_the_request_limit_in_real_time() {
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        assert_eq!(budget.longest_request_ms(), 60_000.0);
        // 2 s of run in 100 ms: a time scale of 20.
        budget.record(
            Method::Batch,
            &Timing {
                start_ms: 900.0,
                ..timing(1_000.0, 2.0, 1.0)
            },
        );
        assert!((budget.longest_request_ms() - 3_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_lost_request_is_charged_and_shrinks_the_next() {
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        budget.lost(1, 0.0);
        assert_eq!(budget.delete.operating(0.0), REQUEST_LIMIT_S);
        assert_eq!(budget.batch.operating(0.0), REQUEST_LIMIT_S / 2.0);
        assert_eq!(budget.next_batch(0.0, 100), Pace::Send(1));
    }

    // ---- A model of the portal's limiter (emulator-limiter-spec.md), driven with a fake clock.

    /// The portal's Unix time at the fake clock's 0.
    const EPOCH_S: f64 = 1_700_000_000.37;

    /// One key (method) of the limiter, in portal seconds.
    #[derive(Default)]
    struct Key {
        /// (opened at, seconds), oldest first.
        baskets: Vec<(f64, f64)>,
        ban_until: f64,
    }

    impl Key {
        fn expire(&mut self, p: f64) {
            self.baskets.retain(|b| b.0 + 600.0 > p);
        }

        fn operating(&self) -> f64 {
            self.baskets.iter().map(|b| b.1).sum()
        }

        /// The check before a call: `Err((ban end, whether this check banned))` when refused.
        fn check(&mut self, p: f64, limit: f64) -> Result<(), (f64, bool)> {
            self.expire(p);
            if p < self.ban_until {
                return Err((self.ban_until, false));
            }
            if self.operating() >= limit {
                self.ban_until = p + 300.0;
                self.baskets.clear();
                return Err((self.ban_until, true));
            }
            Ok(())
        }

        fn charge(&mut self, p: f64, run: f64, weight: f64) {
            if run <= 0.1 {
                return;
            }
            self.expire(p);
            match self.baskets.last_mut() {
                Some(newest) if p - newest.0 <= 60.0 => newest.1 += weight * run,
                _ => self.baskets.push((p, weight * run)),
            }
        }

        /// `operating_reset_at` (portal seconds; rounded up on the Unix clock by the caller).
        fn reset_at(&self, p: f64) -> Option<f64> {
            if p < self.ban_until {
                Some(self.ban_until)
            } else {
                self.baskets.first().map(|b| b.0 + 600.0)
            }
        }
    }

    /// A `time` object: Unix seconds for instants, portal seconds for the rest.
    struct Time {
        start: f64,
        finish: f64,
        run: f64,
        operating: f64,
        reset: Option<f64>,
    }

    enum Command {
        Ran(Time),
        /// Refused; the `result_time`'s reset (the ban's end).
        Refused(f64),
    }

    enum Reply {
        /// HTTP 429 for the batch itself, no `time`.
        TooMany,
        /// HTML 504: the run passed the request limit.
        Cut,
        Batch(Time, Vec<Command>),
    }

    /// The portal: one webhook's two keys, the items, and what it counted.
    struct Portal {
        /// The time scale: portal seconds per real second.
        scale: f64,
        limit: f64,
        delete: Key,
        batch: Key,
        /// Per item: its cost, and whether it still exists.
        items: Vec<(f64, bool)>,
        /// Another script on the same webhook: the portal instants of its deletes, and their cost.
        others: VecDeque<f64>,
        other_cost: f64,
        /// Our requests and commands refused, and bans our checks started.
        refused: u32,
        bans: u32,
        /// Bans the other script's checks started.
        other_bans: u32,
        cuts: u32,
        longest_run: f64,
    }

    impl Portal {
        fn new(scale: f64, costs: impl IntoIterator<Item = f64>) -> Portal {
            Portal {
                scale,
                limit: DEFAULT_LIMIT_S,
                delete: Key::default(),
                batch: Key::default(),
                items: costs.into_iter().map(|c| (c, true)).collect(),
                others: VecDeque::new(),
                other_cost: 0.0,
                refused: 0,
                bans: 0,
                other_bans: 0,
                cuts: 0,
                longest_run: 0.0,
            }
        }

        /// Our refusals, the bans our checks started, and the requests cut.
        fn counts(&self) -> (u32, u32, u32) {
            (self.refused, self.bans, self.cuts)
        }

        fn portal_s(&self, ms: f64) -> f64 {
            ms / 1000.0 * self.scale
        }

        fn real_ms(&self, portal_s: f64) -> f64 {
            portal_s * 1000.0 / self.scale
        }

        fn unix(&self, portal_s: f64) -> f64 {
            EPOCH_S + self.real_ms(portal_s) / 1000.0
        }

        /// The other script's deletes up to `p` (it ignores the limit).
        fn others_until(&mut self, p: f64) {
            while self.others.front().is_some_and(|&at| at <= p) {
                let at = self.others.pop_front().unwrap();
                match self.delete.check(at, self.limit) {
                    Ok(()) => self
                        .delete
                        .charge(at + self.other_cost, self.other_cost, 1.0),
                    Err((_, banned)) => self.other_bans += u32::from(banned),
                }
            }
        }

        fn time(&self, key: &Key, start: f64, finish: f64) -> Time {
            Time {
                start: self.unix(start),
                finish: self.unix(finish),
                run: finish - start,
                operating: key.operating(),
                reset: key.reset_at(finish).map(|r| self.unix(r).ceil()),
            }
        }

        /// One batch arriving at `ms` (real): the reply and when it leaves (real ms).
        fn batch(&mut self, ms: f64, ids: &[usize]) -> (Reply, f64) {
            let start = self.portal_s(ms);
            self.others_until(start);
            if let Err((_, banned)) = self.batch.check(start, self.limit) {
                self.refused += 1;
                self.bans += u32::from(banned);
                return (Reply::TooMany, ms);
            }
            let mut p = start;
            let mut commands = Vec::new();
            for &id in ids {
                self.others_until(p);
                match self.delete.check(p, self.limit) {
                    Err((ends, banned)) => {
                        self.refused += 1;
                        self.bans += u32::from(banned);
                        commands.push(Command::Refused(self.unix(ends).ceil()));
                    }
                    Ok(()) => {
                        // A missing item answers NOT_FOUND at once.
                        let (cost, exists) = self.items[id];
                        let run = if exists { cost } else { 0.01 };
                        self.items[id].1 = false;
                        let begun = p;
                        p += run;
                        self.delete.charge(p, run, 1.0);
                        commands.push(Command::Ran(self.time(&self.delete, begun, p)));
                        if p - start > REQUEST_LIMIT_S {
                            // Cut: what ran stays done; the batch is not charged.
                            self.cuts += 1;
                            return (Reply::Cut, self.real_ms(start + REQUEST_LIMIT_S));
                        }
                    }
                }
            }
            self.longest_run = self.longest_run.max(p - start);
            self.batch.charge(p, p - start, 0.5);
            let time = self.time(&self.batch, start, p);
            (Reply::Batch(time, commands), self.real_ms(p))
        }
    }

    /// A timing on the client's clock, anchored on the batch's `finish` and its arrival.
    fn client_timing(time: &Time, finish: f64, arrived_ms: f64) -> Timing {
        let mono = |unix_s| monotonic_ms(unix_s, finish, arrived_ms);
        Timing {
            start_ms: mono(time.start),
            finish_ms: mono(time.finish),
            run_s: time.run,
            operating_s: Some(time.operating),
            reset_ms: time.reset.map(mono),
        }
    }

    /// What a job did.
    struct Job {
        finish_ms: f64,
        sizes: Vec<usize>,
        /// After the fifth batch: (when, the ETA then).
        early_eta: Option<(f64, f64)>,
    }

    /// A bulk delete of every item, one batch in flight, as the bulk loop will run it: ask the
    /// budget, wait or send, record the answer. Refused and cut commands are sent again.
    fn run_job(portal: &mut Portal, budget: &mut Budget, trip_ms: f64) -> Job {
        let mut queue: VecDeque<usize> = (0..portal.items.len()).collect();
        let mut job = Job {
            finish_ms: 0.0,
            sizes: Vec::new(),
            early_eta: None,
        };
        let mut now = 0.0;
        while !queue.is_empty() {
            assert!(job.sizes.len() < 100_000, "the job does not end");
            if job.sizes.len() == 5 && job.early_eta.is_none() {
                job.early_eta = Some((now, budget.eta(now, queue.len()).unwrap()));
            }
            let size = match budget.next_batch(now, queue.len()) {
                Pace::Wait(until) => {
                    assert!(until > now, "a wait moves on");
                    now = until;
                    continue;
                }
                Pace::Send(size) => size,
            };
            job.sizes.push(size);
            let ids: Vec<usize> = queue.drain(..size).collect();
            let sent = now;
            let (reply, left) = portal.batch(now + trip_ms / 2.0, &ids);
            now = left + trip_ms / 2.0;
            match reply {
                Reply::TooMany => {
                    budget.refused(Method::Batch, None, now);
                    ids.iter().rev().for_each(|&id| queue.push_front(id));
                }
                Reply::Cut => {
                    budget.lost(ids.len(), now);
                    ids.iter().rev().for_each(|&id| queue.push_front(id));
                }
                Reply::Batch(time, commands) => {
                    let mut again = Vec::new();
                    for (&id, command) in ids.iter().zip(&commands) {
                        match command {
                            Command::Ran(t) => {
                                budget.record(Method::Delete, &client_timing(t, time.finish, now))
                            }
                            Command::Refused(reset) => {
                                let ends = monotonic_ms(*reset, time.finish, now);
                                budget.refused(Method::Delete, Some(ends), now);
                                again.push(id);
                            }
                        }
                    }
                    budget.record(Method::Batch, &client_timing(&time, time.finish, now));
                    budget.trip(ids.len(), sent, now);
                    again.iter().rev().for_each(|&id| queue.push_front(id));
                }
            }
        }
        assert!(
            portal.items.iter().all(|item| !item.1),
            "every item deleted"
        );
        job.finish_ms = now;
        job
    }

    /// The floor for `seconds` of deletes: 600 s for each full limit, then the rest.
    fn floor_s(seconds: f64, limit: f64) -> f64 {
        600.0 * (seconds / limit).floor() + seconds % limit
    }

    /// A job of `items` deletes of `cost` each, alone on the webhook, default limit.
    fn solo(items: usize, cost: f64, scale: f64, trip_ms: f64) -> (Portal, Job) {
        let mut portal = Portal::new(scale, std::iter::repeat_n(cost, items));
        let job = run_job(
            &mut portal,
            &mut Budget::new(Some(DEFAULT_LIMIT_S)),
            trip_ms,
        );
        (portal, job)
    }

    /// Runs `items` deletes of `cost` each alone on the webhook at a time `scale`, checks the
    /// targets, and returns (time / floor, the ETA's error after five batches).
    fn alone(items: usize, cost: f64, scale: f64, trip_ms: f64) -> (f64, f64) {
        let (portal, job) = solo(items, cost, scale, trip_ms);
        assert_eq!(portal.counts(), (0, 0, 0));
        assert!(
            portal.longest_run <= BATCH_RUN_TARGET_S + 1e-9,
            "{}",
            portal.longest_run
        );
        let floor = floor_s(items as f64 * cost, DEFAULT_LIMIT_S);
        let ratio = portal.portal_s(job.finish_ms) / floor;
        let (at, eta) = job.early_eta.unwrap();
        let error = (eta - (job.finish_ms - at)) / (job.finish_ms - at);
        eprintln!(
            "{items} × {cost} s at scale {scale}: {:.0} s, floor {floor:.0} s, ×{ratio:.3}, ETA error {:+.1} %, {} requests",
            portal.portal_s(job.finish_ms),
            error * 100.0,
            job.sizes.len()
        );
        (ratio, error)
    }

    #[test]
    fn ten_thousand_deletes_at_0_6_s_finish_at_the_floor_unrefused() {
        let (ratio, eta_error) = alone(10_000, 0.6, 1.0, 80.0);
        assert!(ratio <= 1.1, "{ratio}");
        assert!(eta_error.abs() <= 0.15, "{eta_error}");
    }

    #[test]
    fn a_thousand_deletes_at_2_s_finish_at_the_floor_unrefused() {
        let (ratio, eta_error) = alone(1_000, 2.0, 1.0, 80.0);
        assert!(ratio <= 1.1, "{ratio}");
        assert!(eta_error.abs() <= 0.15, "{eta_error}");
    }

    #[test]
    fn time_scaled_runs_learn_the_portals_second() {
        for (items, cost) in [(10_000, 0.6), (1_000, 2.0)] {
            let (ratio, eta_error) = alone(items, cost, 60.0, 2.0);
            assert!(ratio <= 1.1, "{items} × {cost}: {ratio}");
            assert!(eta_error.abs() <= 0.15, "{items} × {cost}: {eta_error}");
        }
    }

    #[test]
    fn another_script_on_the_webhook_costs_waits_not_ids() {
        // Ours: 2,000 × 0.6 s. Theirs, from 200 s to 2,000 s: a 1 s delete every 1.5 s, blind
        // to the limit, so the key is banned again and again.
        let mut portal = Portal::new(1.0, std::iter::repeat_n(0.6, 2_000));
        portal.others = (0..1_200).map(|i| 200.0 + 1.5 * f64::from(i)).collect();
        portal.other_cost = 1.0;
        let mut budget = Budget::new(Some(DEFAULT_LIMIT_S));
        let job = run_job(&mut portal, &mut budget, 80.0);
        // Every id was deleted (run_job checks). The bans are theirs: each answer shows their
        // spending (the `operating` of every command), and ours stops short of the limit. We
        // met their bans, and after each refusal sat it out: at most one batch per ban.
        assert_eq!(portal.bans, 0);
        let bans = portal.other_bans;
        assert!(portal.refused > 0 && bans > 0);
        assert!(
            portal.refused as usize <= bans as usize * MAX_BATCH,
            "{} {bans}",
            portal.refused
        );
        eprintln!(
            "shared webhook: {:.0} s, {} of ours refused, {} bans by us, {} by them",
            portal.portal_s(job.finish_ms),
            portal.refused,
            portal.bans,
            portal.other_bans
        );
    }

    /// Heavy commands go one per batch. A command longer than the request limit (a contact
    /// with a long history, ~100 s) cannot be answered: each request carrying it is cut (HTML
    /// 504), an unknown outcome. The budget charges the lost request a full request limit and
    /// keeps batches at one; the bulk loop sends it again, and — the portal having finished it
    /// — `NOT_FOUND` counts it deleted. (Where the portal drops a cut command instead, the
    /// repeats are cut too, and the id fails after the retries, with no ban on the way.)
    #[test]
    fn heavy_commands_go_one_by_one_and_are_never_banned() {
        for (items, cost, cuts) in [(30, 20.0, 0), (8, 100.0, 8)] {
            let (portal, job) = solo(items, cost, 1.0, 80.0);
            assert_eq!(portal.counts(), (0, 0, cuts), "{cost} s");
            assert!(
                job.sizes.iter().all(|&size| size == 1),
                "{cost} s: {:?}",
                job.sizes
            );
        }
        // 5 s each: a pilot of one, then batches of up to 4 (20 s).
        let (portal, job) = solo(200, 5.0, 1.0, 80.0);
        assert_eq!(portal.counts(), (0, 0, 0));
        assert_eq!(job.sizes[0], 1);
        assert!(
            portal.longest_run <= BATCH_RUN_TARGET_S,
            "{}",
            portal.longest_run
        );
    }

    proptest::proptest! {
        /// Alone on its webhook, whatever the cost (±30 % from item to item), the limit and the
        /// time scale: never refused, never banned, no request near the request limit.
        #[test]
        fn alone_it_is_never_refused(
            cost in 0.05f64..8.0,
            spread in proptest::collection::vec(0u8..=255, 20..300),
            limit in 60.0f64..600.0,
            scaled in proptest::bool::ANY,
        ) {
            let scale = if scaled { 60.0 } else { 1.0 };
            let costs = spread.iter().map(|&b| cost * (0.7 + 0.6 * f64::from(b) / 255.0));
            let mut portal = Portal::new(scale, costs);
            portal.limit = limit;
            run_job(&mut portal, &mut Budget::new(Some(limit)), 80.0 / scale);
            proptest::prop_assert_eq!(portal.counts(), (0, 0, 0));
            proptest::prop_assert!(portal.longest_run <= 2.0 * BATCH_RUN_TARGET_S);
        }
    }
}
