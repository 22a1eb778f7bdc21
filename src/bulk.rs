//! Bulk delete over `batch`: chunks of at most 50 commands, and an exact per-id account.
//!
//! Every distinct input id ends in exactly one of `deleted`, `not_found` or `failed`. A command
//! with a known result is never sent again; when a batch is repeated after an unknown outcome
//! (lost connection, timeout, unreadable answer, a 5xx other than a limit), a `NOT_FOUND` for one
//! of its commands means an earlier attempt deleted the item, so it counts as deleted. Commands
//! the operating limit refused (not run) are sent again after its reset.

use crate::call::{CallError, Client, Env, Job};
use crate::config::Endpoint;
use crate::envelope::{self, BATCH_LIMIT};
use crate::error::Error;
use crate::policy;
use crate::response::{self, BatchAnswer, CommandOutcome};

/// One id that was not deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedId {
    /// The item id.
    pub id: u64,
    /// Why.
    pub error: Error,
    /// `crm.item.delete` for a command's own error, `batch` when the whole request failed.
    pub method: &'static str,
    /// Requests sent for the batch that carried this id.
    pub attempts: u32,
}

/// The outcome of a bulk delete: a partition of the distinct input ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkReport {
    /// Ids the portal confirmed deleted (or that were gone after an unknown outcome).
    pub deleted: Vec<u64>,
    /// Ids the portal answered `NOT_FOUND` for on a first attempt.
    pub not_found: Vec<u64>,
    /// Every other outcome, including ids never sent after a halt, an abort or the deadline.
    pub failed: Vec<FailedId>,
}

/// Options of a bulk delete.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BulkOptions {
    /// A deadline for the whole run; without one, each batch gets the client's `timeoutMs`.
    pub timeout_ms: Option<u32>,
    /// Stop at the first id that fails (`halt: 1` on the wire).
    pub halt_on_error: bool,
}

/// Ids without repeats, in first-seen order, built one id at a time (the JS reader feeds it as
/// it validates, with no intermediate `Vec`).
pub struct Distinct {
    /// A small open-addressing set (ids are never 0, so 0 marks a free slot). Neither std's
    /// HashSet nor a sort: both cost kilobytes of wasm.
    slots: Vec<u64>,
    /// The ids, first-seen order.
    pub ids: Vec<u64>,
}

impl Distinct {
    /// An empty set for up to `count` ids.
    pub fn new(count: usize) -> Self {
        let capacity = (count * 2).next_power_of_two().max(16);
        Distinct {
            slots: vec![0; capacity],
            ids: Vec::new(),
        }
    }

    /// Adds `id` (not 0) unless already there. At most `count` ids (see [`Distinct::new`]).
    pub fn insert(&mut self, id: u64) {
        let mask = self.slots.len() - 1;
        let mut slot = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask;
        loop {
            match self.slots[slot] {
                0 => {
                    self.slots[slot] = id;
                    self.ids.push(id);
                    return;
                }
                seen if seen == id => return,
                _ => slot = (slot + 1) & mask,
            }
        }
    }
}

impl BulkReport {
    /// Accounts for one batch answer. Returns whether any id of it was not deleted. With
    /// `refused`, ids whose command the operating limit refused (not run) go there instead.
    fn record(
        &mut self,
        ids: &[u64],
        outcomes: &[CommandOutcome],
        earlier_outcome_unknown: bool,
        attempts: u32,
        mut refused: Option<&mut Vec<u64>>,
    ) -> bool {
        let mut any_error = false;
        for (&id, outcome) in ids.iter().zip(outcomes) {
            match (outcome, refused.as_deref_mut()) {
                (CommandOutcome::Failed(error), Some(refused))
                    if error.is_api("OPERATION_TIME_LIMIT") =>
                {
                    refused.push(id);
                    continue;
                }
                _ => {}
            }
            match outcome {
                CommandOutcome::Done => self.deleted.push(id),
                // After an unknown outcome, NOT_FOUND means an earlier attempt deleted it.
                CommandOutcome::Failed(error)
                    if error.is_api("NOT_FOUND") && earlier_outcome_unknown =>
                {
                    self.deleted.push(id)
                }
                CommandOutcome::Failed(error) if error.is_api("NOT_FOUND") => {
                    any_error = true;
                    self.not_found.push(id);
                }
                CommandOutcome::Failed(error) => {
                    any_error = true;
                    self.fail(id, error.clone(), envelope::DELETE, attempts);
                }
                CommandOutcome::NotRun => {
                    any_error = true;
                    self.fail(
                        id,
                        Error::NotAttempted {
                            timeout: false,
                            reason: HALTED,
                        },
                        envelope::DELETE,
                        0,
                    );
                }
            }
        }
        any_error
    }

    fn fail(&mut self, id: u64, error: Error, method: &'static str, attempts: u32) {
        self.failed.push(FailedId {
            id,
            error,
            method,
            attempts,
        });
    }

    fn fail_all(&mut self, ids: &[u64], error: &Error, method: &'static str, attempts: u32) {
        for &id in ids {
            self.fail(id, error.clone(), method, attempts);
        }
    }

    /// How many ids have an outcome.
    pub fn len(&self) -> usize {
        self.deleted.len() + self.not_found.len() + self.failed.len()
    }

    /// Whether no id has an outcome yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const HALTED: &str = "not attempted: the run halted at an earlier error (haltOnError)";
const ABORTED: &str = "not attempted: the call was aborted";
const OUT_OF_TIME: &str = "not attempted: the call ran out of time (timeoutMs)";

/// One bulk run between its batches: what is left to send, what has been accounted for, and
/// what the next batch waits for. [`Client::delete_items`] runs it step by step:
/// [`BulkRun::next_batch`], then [`BulkRun::job`] sent and [`BulkRun::record`]ed (or
/// [`BulkRun::failed`]), or [`BulkRun::skip`] once stopped.
struct BulkRun<'a> {
    entity_type_id: u64,
    /// Stop at the first id that fails (`halt: 1` on the wire).
    halt: bool,
    /// The whole run's deadline, when it has a `timeoutMs`.
    deadline: Option<f64>,
    /// The ids not yet sent, 50 at a time.
    chunks: std::slice::Chunks<'a, u64>,
    report: BulkReport,
    /// Once set, the remaining ids are not sent and fail with this error: `batch`'s own when
    /// the request failed for all, else not attempted (`crm.item.delete`).
    stop: Option<Error>,
    /// Ids whose commands the operating limit refused (not run): sent again after the wait,
    /// before the next chunk.
    again: Vec<u64>,
    /// Whether an earlier attempt of the batch that carried the ids in `again` may have run
    /// them (its outcome was unknown): their `NOT_FOUND` then still means "deleted".
    again_unknown: bool,
    /// Consecutive waits for the operating limit (at most maxRetries).
    limit_waits: u32,
    /// When the next batch may be sent (monotonic ms): the refused commands' reset.
    not_before: Option<f64>,
}

/// The ids of one batch: a chunk of the input, or the refused commands sent again.
struct Batch<'a> {
    ids: std::borrow::Cow<'a, [u64]>,
    /// The ids were refused by the operating limit in a batch whose outcome was unknown.
    resent_unknown: bool,
}

impl<'a> BulkRun<'a> {
    fn new(now: f64, entity_type_id: u64, ids: &'a [u64], options: BulkOptions) -> Self {
        BulkRun {
            entity_type_id,
            halt: options.halt_on_error,
            deadline: options.timeout_ms.map(|ms| now + f64::from(ms)),
            chunks: ids.chunks(BATCH_LIMIT),
            report: BulkReport::default(),
            stop: None,
            again: Vec::new(),
            again_unknown: false,
            limit_waits: 0,
            not_before: None,
        }
    }

    /// The next batch: the refused commands first, then the next chunk; `None` when done.
    fn next_batch(&mut self) -> Option<Batch<'a>> {
        let resent_unknown = std::mem::take(&mut self.again_unknown);
        if !self.again.is_empty() {
            let ids = std::mem::take(&mut self.again);
            return Some(Batch {
                ids: ids.into(),
                resent_unknown,
            });
        }
        self.chunks.next().map(|chunk| Batch {
            ids: chunk.into(),
            resent_unknown: false,
        })
    }

    /// Whether the run's deadline has passed at `now`.
    fn out_of_time(&self, now: f64) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Stops the run when its deadline has passed: the remaining ids are not sent.
    fn stop_if_out_of_time(&mut self, now: f64) {
        if self.stop.is_none() && self.out_of_time(now) {
            self.stop = Some(Error::NotAttempted {
                timeout: true,
                reason: OUT_OF_TIME,
            });
        }
    }

    /// Fails a batch that is not sent, with the stop's error.
    fn skip(&mut self, batch: &Batch) {
        let Some(error) = &self.stop else { return };
        let method = if matches!(error, Error::NotAttempted { .. }) {
            envelope::DELETE
        } else {
            envelope::BATCH
        };
        self.report.fail_all(&batch.ids, error, method, 0);
    }

    /// The deadline and the job of a batch about to be sent: the run's deadline, or the client's
    /// `timeoutMs` for this batch if sooner.
    fn job<'b>(&self, client: &Client, now: f64, batch: &'b Batch) -> (f64, Job<'b>) {
        let batch_deadline = now + f64::from(client.config().timeout_ms);
        let deadline = self
            .deadline
            .map_or(batch_deadline, |d| d.min(batch_deadline));
        let job = Job::Batch {
            entity_type_id: self.entity_type_id,
            ids: &batch.ids,
            halt: self.halt,
        };
        (deadline, job)
    }

    /// Accounts for a batch whose request failed as a whole: its ids fail with the error, and
    /// the run stops when every other id would fail the same way.
    fn failed(&mut self, batch: &Batch, CallError { error, attempts }: CallError, now: f64) {
        self.report
            .fail_all(&batch.ids, &error, envelope::BATCH, attempts);
        self.stop = match &error {
            Error::Aborted => Some(Error::NotAttempted {
                timeout: false,
                reason: ABORTED,
            }),
            Error::Timeout if self.out_of_time(now) => Some(Error::NotAttempted {
                timeout: true,
                reason: OUT_OF_TIME,
            }),
            // The same request would fail the same way for every other id.
            e if !e.retryable() => Some(error),
            _ if self.halt => Some(Error::NotAttempted {
                timeout: false,
                reason: HALTED,
            }),
            _ => None,
        };
    }

    /// Accounts for a batch's answer. Commands the operating limit refused (not run) are sent
    /// again after its reset, as a single call's 429 waits, if the next batch's budget allows,
    /// at most maxRetries times in a row; under haltOnError, or with no reset time, a refusal
    /// is an error like any other.
    fn record(
        &mut self,
        client: &Client,
        env: &impl Env,
        batch: &Batch,
        answer: BatchAnswer,
        earlier_unknown: bool,
    ) {
        let earlier_unknown = earlier_unknown || batch.resent_unknown;
        // Per-command errors carry the batch's last attempt.
        let attempts = 1;
        let now = env.now_ms();
        let budget = f64::from(client.config().timeout_ms);
        let remaining = self.deadline.map_or(budget, |d| (d - now).min(budget));
        let wait = answer
            .limit_reset
            .and_then(|time| time.until_reset_ms(|| env.wall_ms()))
            .map(|until| policy::until_reset_ms(now + until, now))
            // The wait must leave the batch time to run: min(10 s, half the budget).
            .filter(|&ms| {
                !self.halt
                    && ms + policy::MIN_ATTEMPT_MS.min(remaining / 2.0) < remaining
                    && self.limit_waits < client.config().max_retries
            });
        let collect = wait.is_some().then_some(&mut self.again);
        let any_error = self.report.record(
            &batch.ids,
            &answer.outcomes,
            earlier_unknown,
            attempts,
            collect,
        );
        if any_error && self.halt {
            self.stop = Some(Error::NotAttempted {
                timeout: false,
                reason: HALTED,
            });
        }
        match wait {
            // The next run waits (its pacing step) before it sends them.
            Some(ms) if !self.again.is_empty() => {
                self.limit_waits += 1;
                self.not_before = Some(now + ms);
                self.again_unknown = earlier_unknown;
            }
            _ => self.limit_waits = 0,
        }
    }
}

impl Client {
    /// Deletes `ids` (distinct) of one type in batches of 50, one batch in flight at a time,
    /// each paced and retried like a single call. Calls `on_progress(done, total)` after each
    /// batch. Every id is accounted for in the report; the run fails as a whole only for a
    /// configuration error found before any request (`NOT_CONFIGURED`: no endpoint, or a frame
    /// without BX24), which no id could escape.
    pub async fn delete_items(
        &self,
        env: &impl Env,
        entity_type_id: u64,
        ids: &[u64],
        options: BulkOptions,
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<BulkReport, CallError> {
        if matches!(self.config().endpoint, Endpoint::Auto) {
            // Found before any request, even with no ids to send.
            return Err(Error::NotConfigured.into());
        }
        let mut run = BulkRun::new(env.now_ms(), entity_type_id, ids, options);
        while let Some(batch) = run.next_batch() {
            run.stop_if_out_of_time(env.now_ms());
            if run.stop.is_some() {
                run.skip(&batch);
            } else {
                // Sent: paced and retried like a single call.
                let (deadline, job) = run.job(self, env.now_ms(), &batch);
                let (commands, halt) = (batch.ids.len(), run.halt);
                let mut answer = BatchAnswer::default();
                let mut read = |status, body, earlier_outcome_unknown: bool| {
                    // A batch repeated after an unknown outcome is sent without `halt` (see `Job`).
                    let halt = halt && !earlier_outcome_unknown;
                    answer = response::read_batch(status, body, commands, halt)?;
                    Ok(())
                };
                let not_before = run.not_before.take();
                match self.run(env, deadline, job, not_before, &mut read).await {
                    Ok(earlier_unknown) => run.record(self, env, &batch, answer, earlier_unknown),
                    // Found before any request: no id could escape it.
                    Err(failure)
                        if failure.attempts == 0
                            && matches!(failure.error, Error::NotConfigured) =>
                    {
                        return Err(failure)
                    }
                    Err(failure) => run.failed(&batch, failure, env.now_ms()),
                }
            }
            // Sent or not, the batch ends at one progress call.
            on_progress(run.report.len(), ids.len());
        }
        if ids.is_empty() {
            on_progress(0, 0);
        }
        Ok(run.report)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::config::RateLimitInput;
    use crate::testing::{answer, api_error, block_on, ok, webhook_client, FakeEnv};

    /// The ids without repeats, in first-seen order, through [`Distinct`] as the JS reader
    /// feeds it.
    fn distinct(ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut unique = Distinct::new(ids.len());
        for id in ids {
            unique.insert(id);
        }
        unique.ids
    }

    /// A run over `env` with a webhook client (no pacing).
    fn run_bulk(env: &FakeEnv, ids: &[u64], max_retries: f64, options: BulkOptions) -> BulkReport {
        let client = webhook_client(max_retries, RateLimitInput::Off);
        block_on(client.delete_items(env, 2, ids, options, |_, _| {})).unwrap()
    }

    fn batch_answer(ids: &[u64], deleted: impl Fn(u64) -> bool) -> String {
        let mut result = Vec::new();
        let mut errors = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            if deleted(id) {
                result.push(format!("\"k{i}\":[]"));
            } else {
                errors.push(format!(
                    "\"k{i}\":{{\"error\":\"NOT_FOUND\",\"error_description\":\"Item not found\"}}"
                ));
            }
        }
        let container = |v: Vec<String>| {
            if v.is_empty() {
                "[]".to_string()
            } else {
                format!("{{{}}}", v.join(","))
            }
        };
        format!(
            "{{\"result\":{{\"result\":{},\"result_error\":{},\"result_total\":[],\"result_next\":[],\"result_time\":[]}},\"time\":{{}}}}",
            container(result),
            container(errors)
        )
    }

    #[test]
    fn chunks_of_fifty_with_progress() {
        let ids: Vec<u64> = (1..=120).collect();
        let answers = ids
            .chunks(50)
            .map(|c| ok(&batch_answer(c, |id| id % 10 != 0)))
            .collect();
        let env = FakeEnv::new(answers);
        let client = webhook_client(3.0, RateLimitInput::Off);
        let mut progress = Vec::new();
        let report =
            block_on(
                client.delete_items(&env, 1268, &ids, BulkOptions::default(), |d, t| {
                    progress.push((d, t))
                }),
            )
            .unwrap();
        assert_eq!(progress, vec![(50, 120), (100, 120), (120, 120)]);
        assert_eq!(report.deleted.len(), 108);
        assert_eq!(
            report.not_found,
            vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
        );
        let sent = env.sent.borrow();
        assert_eq!(sent.len(), 3);
        assert!(sent[0].1.ends_with("/batch"));
        assert!(sent[2]
            .2
            .starts_with(r#"{"halt":0,"cmd":{"k0":"crm.item.delete?entityTypeId=1268&id=101""#));
    }

    #[test]
    fn not_found_after_a_lost_batch_counts_as_deleted() {
        let ids = [1, 2, 3];
        let env = FakeEnv::new(vec![
            Err(Error::Network),
            ok(&batch_answer(&ids, |id| id == 3)),
        ]);
        let report = run_bulk(&env, &ids, 3.0, BulkOptions::default());
        assert_eq!(report.deleted, vec![1, 2, 3]);
        assert!(report.not_found.is_empty() && report.failed.is_empty());
    }

    #[test]
    fn a_malformed_batch_answer_is_bad_response_never_aborted() {
        let ids = [1, 2, 3];
        // The answer forgets k1 (sent without halt): that id fails BAD_RESPONSE, once.
        let forgets = r#"{"result":{"result":{"k0":[]},"result_error":{"k2":{"error":"NOT_FOUND","error_description":"Item not found"}}},"time":{}}"#;
        // No per-command results at all: an unknown outcome, repeated, then BAD_RESPONSE for all.
        let empty = r#"{"result":{}}"#;
        for (answers, expected_sent) in [(vec![ok(forgets)], 1), (vec![ok(empty); 3], 3)] {
            let env = FakeEnv::new(answers);
            let report = run_bulk(&env, &ids, 2.0, BulkOptions::default());
            assert_eq!(env.sent.borrow().len(), expected_sent);
            assert_eq!(report.len(), 3);
            assert!(!report.failed.is_empty());
            for failed in &report.failed {
                assert_eq!(failed.error.code(), "BAD_RESPONSE", "{failed:?}");
                assert!(failed.error.retryable());
                assert!(failed.attempts >= 1);
            }
            if expected_sent == 1 {
                assert_eq!(report.deleted, vec![1]);
                assert_eq!(report.not_found, vec![3]);
                assert_eq!(report.failed[0].id, 2);
                assert_eq!(report.failed[0].method, envelope::DELETE);
            } else {
                assert_eq!(report.failed.len(), 3);
                assert_eq!(report.failed[0].method, envelope::BATCH);
                assert_eq!(report.failed[0].attempts, 3);
            }
        }
    }

    #[test]
    fn not_configured_rejects_the_whole_run_before_any_request() {
        use crate::config::{Config, ConfigInput};
        use crate::testing::frame_client;
        let auto = Client::new(Config::parse(ConfigInput::default()).unwrap());
        // A frame without BX24: found at the first batch, before anything is sent.
        let frame_env = FakeEnv::new(vec![ok(&batch_answer(&[1, 2], |_| true))]);
        *frame_env.new_token.borrow_mut() = Err(Error::NotConfigured);
        for (client, env) in [(auto, FakeEnv::new(vec![])), (frame_client(), frame_env)] {
            let mut progress = 0;
            let error =
                block_on(
                    client.delete_items(&env, 2, &[1, 2], BulkOptions::default(), |_, _| {
                        progress += 1
                    }),
                )
                .unwrap_err();
            assert_eq!((error.error, error.attempts), (Error::NotConfigured, 0));
            assert!(env.sent.borrow().is_empty());
            assert_eq!(progress, 0);
        }
        // No endpoint at all is found even with no ids to send.
        let auto = Client::new(Config::parse(ConfigInput::default()).unwrap());
        let empty = block_on(auto.delete_items(
            &FakeEnv::new(vec![]),
            2,
            &[],
            BulkOptions::default(),
            |_, _| {},
        ));
        assert_eq!(empty.unwrap_err().error, Error::NotConfigured);
        // A frame that times out waiting for BX24 is no config error: the ids fail TIMEOUT.
        let env = FakeEnv::new(vec![]);
        *env.new_token.borrow_mut() = Err(Error::Timeout);
        let report = block_on(frame_client().delete_items(
            &env,
            2,
            &[1, 2],
            BulkOptions::default(),
            |_, _| {},
        ))
        .unwrap();
        assert_eq!(report.failed.len(), 2);
        assert_eq!(report.failed[0].error, Error::Timeout);
    }

    #[test]
    fn commands_refused_by_the_operating_limit_are_sent_again_after_its_reset() {
        // k0 deleted; k1, k2 refused (not run), free again 2 s from now (the fake clock starts
        // at 1_700_000_000_000 ms).
        let refused = |reset_s: f64| {
            format!(
                r#"{{"result":{{"result":{{"k0":[]}},"result_error":{{"k1":{{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit."}},"k2":{{"error":"OPERATION_TIME_LIMIT","error_description":"x"}}}},"result_time":{{"k0":{{"operating":1}},"k1":{{"operating":1,"operating_reset_at":{reset_s}}},"k2":{{"operating":1,"operating_reset_at":{}}}}}}},"time":{{}}}}"#,
                reset_s - 1.0
            )
        };
        let ids = [1, 2, 3];
        // (id, code, method, attempts) of each failed id.
        let failures = |report: &BulkReport| -> Vec<(u64, String, &'static str, u32)> {
            let failed = report.failed.iter();
            failed
                .map(|f| (f.id, f.error.code().to_owned(), f.method, f.attempts))
                .collect()
        };
        let run = |answers, options: BulkOptions| {
            let env = FakeEnv::new(answers);
            let report = run_bulk(&env, &ids, 3.0, options);
            let sent: Vec<(f64, String)> = env
                .sent
                .borrow()
                .iter()
                .map(|(at, _, body)| (*at, body.clone()))
                .collect();
            (report, sent)
        };
        let start = 1_700_000_000_000.0;
        // A near reset: one wait (to the latest reset + 250 ms), then only k1, k2 go again.
        let (report, sent) = run(
            vec![
                ok(&refused(1_700_000_002.0)),
                ok(&batch_answer(&[2, 3], |_| true)),
            ],
            BulkOptions::default(),
        );
        assert_eq!(report.deleted, vec![1, 2, 3]);
        assert!(report.failed.is_empty());
        assert_eq!(sent.len(), 2);
        assert!(
            sent[1].0 >= start + 2_250.0,
            "re-sent at {}",
            sent[1].0 - start
        );
        assert!(sent[1]
            .1
            .contains(r#""k0":"crm.item.delete?entityTypeId=2&id=2""#));
        assert!(sent[1]
            .1
            .contains(r#""k1":"crm.item.delete?entityTypeId=2&id=3""#));
        assert!(!sent[1].1.contains("k2"));
        // A reset past the budget (or leaving the batch under 10 s of its 30 s): no wait, the
        // refused ids fail with the portal's error.
        let (report, sent) = run(vec![ok(&refused(1_700_000_021.0))], BulkOptions::default());
        assert_eq!(sent.len(), 1);
        assert_eq!(report.deleted, vec![1]);
        let refusals = vec![
            (2, "OPERATION_TIME_LIMIT".to_owned(), envelope::DELETE, 1),
            (3, "OPERATION_TIME_LIMIT".to_owned(), envelope::DELETE, 1),
        ];
        assert_eq!(failures(&report), refusals);
        // Refused again and again: at most maxRetries (3) waits in a row, then the portal's error.
        let all_refused = r#"{"result":{"result":[],"result_error":{"k0":{"error":"OPERATION_TIME_LIMIT","error_description":"x"},"k1":{"error":"OPERATION_TIME_LIMIT","error_description":"x"}},"result_time":{"k0":{"operating_reset_at":1700000002},"k1":{"operating_reset_at":1700000002}}},"time":{}}"#;
        let mut answers = vec![ok(&refused(1_700_000_002.0))];
        answers.extend((0..3).map(|_| ok(all_refused)));
        let (report, sent) = run(answers, BulkOptions::default());
        assert_eq!(sent.len(), 4);
        assert_eq!(failures(&report), refusals);
        // After a lost first attempt, the re-sent refused commands' NOT_FOUND still means deleted.
        let (report, sent) = run(
            vec![
                Err(Error::Timeout),
                ok(&refused(1_700_000_002.0)),
                ok(&batch_answer(&[2, 3], |_| false)),
            ],
            BulkOptions::default(),
        );
        assert_eq!(sent.len(), 3);
        assert_eq!(report.deleted, vec![1, 2, 3]);
        assert!(report.not_found.is_empty());
        // haltOnError: a refusal is an error like any other (no wait, the run halts).
        let (report, sent) = run(
            vec![ok(&refused(1_700_000_002.0))],
            BulkOptions {
                halt_on_error: true,
                ..BulkOptions::default()
            },
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(report.failed.len(), 2);
    }

    #[test]
    fn halt_stops_after_the_first_failing_batch() {
        let ids: Vec<u64> = (1..=100).collect();
        let halted = r#"{"result":{"result":{"k0":[]},"result_error":{"k1":{"error":"ACCESS_DENIED","error_description":"Access denied"}},"result_total":[],"result_next":[],"result_time":[]},"time":{}}"#;
        let env = FakeEnv::new(vec![ok(halted)]);
        let options = BulkOptions {
            halt_on_error: true,
            ..BulkOptions::default()
        };
        let report = run_bulk(&env, &ids, 3.0, options);
        assert_eq!(report.deleted, vec![1]);
        assert_eq!(report.failed.len(), 99);
        assert_eq!(report.failed[0].error.code(), "ACCESS_DENIED");
        assert_eq!(report.failed[1].error.code(), "ABORTED");
        assert_eq!(env.sent.borrow().len(), 1);
        assert!(env.sent.borrow()[0].2.starts_with(r#"{"halt":1,"#));
    }

    #[test]
    fn a_lost_halting_batch_is_repeated_without_halt_and_does_not_halt_the_run() {
        let ids: Vec<u64> = (1..=100).collect();
        // The first attempt deleted the first 50, then the connection dropped: every repeated
        // command answers NOT_FOUND.
        let gone = batch_answer(&ids[..50], |_| false);
        let second = batch_answer(&ids[50..], |_| true);
        let env = FakeEnv::new(vec![Err(Error::Network), ok(&gone), ok(&second)]);
        let options = BulkOptions {
            halt_on_error: true,
            ..BulkOptions::default()
        };
        let client = webhook_client(3.0, RateLimitInput::Off);
        let report = block_on(client.delete_items(&env, 2, &ids, options, |_, _| {})).unwrap();
        assert_eq!(report.deleted, ids);
        assert!(report.failed.is_empty() && report.not_found.is_empty());
        let sent = env.sent.borrow();
        assert_eq!(sent.len(), 3);
        assert!(sent[0].2.starts_with(r#"{"halt":1,"#));
        assert!(
            sent[1].2.starts_with(r#"{"halt":0,"#),
            "a repeat after an unknown outcome never halts"
        );
        assert!(sent[2].2.starts_with(r#"{"halt":1,"#));
    }

    #[test]
    fn a_fatal_request_error_fails_every_id_without_more_requests() {
        let ids: Vec<u64> = (1..=75).collect();
        let env = FakeEnv::new(vec![api_error(401, "NO_AUTH_FOUND")]);
        let report = run_bulk(&env, &ids, 3.0, BulkOptions::default());
        assert_eq!(report.failed.len(), 75);
        assert!(report
            .failed
            .iter()
            .all(|f| f.error.code() == "NO_AUTH_FOUND" && f.method == "batch"));
        assert_eq!(env.sent.borrow().len(), 1);
    }

    #[test]
    fn distinct_keeps_first_seen_order() {
        assert_eq!(distinct([3, 1, 3, 2, 1]), vec![3, 1, 2]);
        let many: Vec<u64> = (1..=5000)
            .chain((1..=5000).rev())
            .chain([1 << 52, 1 << 52])
            .collect();
        let unique = distinct(many);
        assert_eq!(unique.len(), 5001);
        assert_eq!(unique[..3], [1, 2, 3]);
    }

    proptest::proptest! {
        /// For random inputs and random per-command and per-request outcomes, the report is an
        /// exact partition of the distinct ids, and no id the portal confirmed deleted is
        /// reported otherwise.
        #[test]
        fn the_report_is_an_exact_partition(
            raw_ids in proptest::collection::vec(1u64..400, 0..260),
            script in proptest::collection::vec(0u8..8, 0..40),
            present in proptest::collection::vec(proptest::bool::ANY, 400),
            halt in proptest::bool::ANY,
        ) {
            let ids = distinct(raw_ids);
            // The portal: `present[id]` says whether the item exists; a delete removes it.
            let portal = std::cell::RefCell::new(present);
            let confirmed = std::cell::RefCell::new(std::collections::HashSet::new());
            struct Scripted<'a> {
                fake: FakeEnv,
                script: std::cell::RefCell<std::collections::VecDeque<u8>>,
                portal: &'a std::cell::RefCell<Vec<bool>>,
                confirmed: &'a std::cell::RefCell<std::collections::HashSet<u64>>,
            }
            impl Env for Scripted<'_> {
                type Json = crate::testing::Value;
                fn now_ms(&self) -> f64 { self.fake.now_ms() }
                fn wall_ms(&self) -> f64 { self.fake.wall_ms() }
                fn random(&self) -> f64 { 0.5 }
                async fn sleep(&self, ms: f64) -> Result<(), Error> { self.fake.sleep(ms).await }
                async fn refresh_token(&self, _wanted: crate::call::Wanted, _timeout_ms: f64) -> Result<crate::call::Credentials, Error> { Err(Error::NotConfigured) }
                fn aborted(&self) -> bool { false }
                async fn send(&self, request: &crate::envelope::HttpRequest, _timeout: f64) -> Result<crate::call::RawResponse<crate::testing::Value>, Error> {
                    self.fake.now.set(self.fake.now.get() + 10.0);
                    let body = request.body.expose();
                    let halt = body.starts_with(r#"{"halt":1"#);
                    let ids: Vec<u64> = body.split("&id=").skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect();
                    let step = self.script.borrow_mut().pop_front().unwrap_or(0);
                    match step {
                        1 => return api_error(503, "QUERY_LIMIT_EXCEEDED"),
                        2 => return answer(502, "<html>"),
                        3 => return api_error(403, "ACCESS_DENIED"),
                        _ => {}
                    }
                    // Execute (steps 0, 4..7), then maybe lose the answer.
                    let mut result = Vec::new();
                    let mut errors = Vec::new();
                    for (i, &id) in ids.iter().enumerate() {
                        let mut portal = self.portal.borrow_mut();
                        if portal[id as usize] && !(step == 7 && i % 3 == 0) {
                            portal[id as usize] = false;
                            result.push(format!("\"k{i}\":[]"));
                            if step != 4 && step != 5 { self.confirmed.borrow_mut().insert(id); }
                        } else {
                            let code = if portal[id as usize] { "ACCESS_DENIED" } else { "NOT_FOUND" };
                            errors.push(format!("\"k{i}\":{{\"error\":\"{code}\",\"error_description\":\"x\"}}"));
                            if halt { break; }
                        }
                    }
                    match step {
                        4 => Err(Error::Network),
                        5 => answer(200, "{\"result\":{\"res"),
                        _ => {
                            let c = |v: Vec<String>| if v.is_empty() { "[]".to_string() } else { format!("{{{}}}", v.join(",")) };
                            ok(&format!("{{\"result\":{{\"result\":{},\"result_error\":{}}}}}", c(result), c(errors)))
                        }
                    }
                }
            }
            let env = Scripted { fake: FakeEnv::new(vec![]), script: std::cell::RefCell::new(script.into()), portal: &portal, confirmed: &confirmed };
            let client = webhook_client(2.0, RateLimitInput::Off);
            let mut last = 0;
            let report = block_on(client.delete_items(&env, 2, &ids, BulkOptions { halt_on_error: halt, ..BulkOptions::default() }, |done, total| {
                assert!(done >= last && done <= total);
                last = done;
            })).unwrap();
            proptest::prop_assert_eq!(last, ids.len());
            let mut all: Vec<u64> = report.deleted.iter().chain(&report.not_found).copied().chain(report.failed.iter().map(|f| f.id)).collect();
            proptest::prop_assert_eq!(all.len(), ids.len());
            all.sort_unstable();
            let mut expected = ids.clone();
            expected.sort_unstable();
            proptest::prop_assert_eq!(all, expected);
            for id in confirmed.borrow().iter() {
                proptest::prop_assert!(report.deleted.contains(id), "{} was confirmed deleted", id);
            }
            // Whatever is reported deleted is gone from the portal.
            for id in &report.deleted {
                proptest::prop_assert!(!portal.borrow()[*id as usize]);
            }
        }
    }
}
