//! Reading the portal's answers.
//!
//! Success is HTTP 2xx with `{"result": ..., "time": {...}}`; an error is `{"error": CODE,
//! "error_description": TEXT}` with any status. Anything else (an HTML 502 page, an empty or cut
//! body, JSON of another shape) is `BAD_RESPONSE` with the status kept — never a success.
//!
//! The readers work on any [`Json`] value: in the browser a value from the engine's own
//! `JSON.parse` (no JSON parser in the wasm: see `src/bindings/env.rs`), under `cargo test` a
//! `serde_json` value (`src/testing.rs`).

use crate::error::Error;

/// What the readers need of a parsed JSON value.
pub trait Json: Sized {
    /// The member `key` of an object; `None` for a missing member or a non-object.
    fn get(&self, key: Key) -> Option<Self>;
    /// What kind of value this is.
    fn kind(&self) -> Kind;
    /// The string, if this is one.
    fn as_str(&self) -> Option<String>;
    /// The number, if this is one.
    fn as_f64(&self) -> Option<f64>;
    /// The member `k{index}` of an object: a batch command's outcome (see
    /// [`crate::envelope::delete_batch`]); `None` when missing or not an object.
    fn command(&self, index: usize) -> Option<Self>;
}

/// The members the readers look up. In the browser a key crosses to JS as its number (runtime.js's
/// `KEYS` lists the names in this order; a test in [`crate::protocol`] compares the two), not as
/// a string to decode on every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `result`
    Result,
    /// `time`
    Time,
    /// `error`
    Error,
    /// `error_description`
    ErrorDescription,
    /// `operating_reset_at`
    OperatingResetAt,
    /// `result_error`
    ResultError,
    /// `result_time`
    ResultTime,
    /// `finish`
    Finish,
}

impl Key {
    /// Every key, in the order of runtime.js's `KEYS`.
    pub const ALL: [Key; 8] = [
        Key::Result,
        Key::Time,
        Key::Error,
        Key::ErrorDescription,
        Key::OperatingResetAt,
        Key::ResultError,
        Key::ResultTime,
        Key::Finish,
    ];

    /// The member's name in the portal's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Key::Result => "result",
            Key::Time => "time",
            Key::Error => "error",
            Key::ErrorDescription => "error_description",
            Key::OperatingResetAt => "operating_reset_at",
            Key::ResultError => "result_error",
            Key::ResultTime => "result_time",
            Key::Finish => "finish",
        }
    }
}

/// The kinds of JSON value. In the browser a kind crosses from JS as its number (runtime.js's
/// `JSON_KIND` names them; a test in [`crate::protocol`] compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null = 0,
    /// `true`
    True = 1,
    /// `false`
    False = 2,
    /// A number.
    Number = 3,
    /// A string.
    Str = 4,
    /// An array.
    Array = 5,
    /// An object.
    Object = 6,
}

impl Kind {
    /// Every kind with its name in runtime.js's `JSON_KIND`.
    pub const ALL: [(Kind, &'static str); 7] = [
        (Kind::Null, "NULL"),
        (Kind::True, "TRUE"),
        (Kind::False, "FALSE"),
        (Kind::Number, "NUMBER"),
        (Kind::Str, "STRING"),
        (Kind::Array, "ARRAY"),
        (Kind::Object, "OBJECT"),
    ];

    /// The kind runtime.js's `jsonKind` answered (an object for any other number).
    pub fn from_js(number: u32) -> Kind {
        match number {
            0 => Kind::Null,
            1 => Kind::True,
            2 => Kind::False,
            3 => Kind::Number,
            4 => Kind::Str,
            5 => Kind::Array,
            _ => Kind::Object,
        }
    }
}

/// An answer's body as the transport classified it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<J> {
    /// The body parsed as JSON.
    Json(J),
    /// Empty, or only whitespace.
    Empty,
    /// Not JSON, and starting with `<`: an HTML page (a proxy's 502, a login page).
    Html,
    /// Not JSON.
    Invalid,
}

/// What the library uses of an answer's `time` object: the operating-limit reset and the
/// portal's clock at the answer (JS hands the whole object to the caller).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestTime {
    /// `operating_reset_at`: Unix time (s) when part of the method's budget is released.
    pub operating_reset_at: Option<f64>,
    /// `finish`: Unix time (s, the portal's clock) when the portal finished the request; read
    /// only with an `operating_reset_at`, to place it.
    pub finish: Option<f64>,
}

impl RequestTime {
    fn read(value: impl Json) -> Option<RequestTime> {
        if value.kind() != Kind::Object {
            return None;
        }
        let operating_reset_at = value.get(Key::OperatingResetAt).and_then(|v| v.as_f64());
        Some(RequestTime {
            operating_reset_at,
            // Only a reset needs placing.
            finish: operating_reset_at
                .and_then(|_| value.get(Key::Finish))
                .and_then(|v| v.as_f64()),
        })
    }

    /// How long after this answer's arrival its `operating_reset_at` falls, in ms. Measured on
    /// the portal's own clock (against its `finish`), so a client clock set wrong does not
    /// matter; only an answer without `finish` is placed against `wall_ms` (the client's Unix
    /// time in ms, asked for only then).
    pub fn until_reset_ms(&self, wall_ms: impl FnOnce() -> f64) -> Option<f64> {
        let reset_at = self.operating_reset_at?;
        Some(match self.finish {
            Some(finish) => (reset_at - finish) * 1000.0,
            None => reset_at * 1000.0 - wall_ms(),
        })
    }
}

/// A successful `crm.item.delete` answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deleted {
    /// The answer's `time`, when it had one.
    pub time: Option<RequestTime>,
}

/// An error answer: the error and the `time` object that came with it (the operating-limit wait
/// needs its `operating_reset_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// The answer's `time`, when it had one.
    pub time: Option<RequestTime>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, time: None }
    }
}

/// Reads an answer to `crm.item.delete`.
pub fn read_delete(status: u16, body: Body<impl Json>) -> Result<Deleted, Failure> {
    delete_answer(status, parse_envelope(status, body)?)
}

/// [`read_delete`] past [`parse_envelope`].
pub(crate) fn delete_answer(
    status: u16,
    (envelope, time): (impl Json, Option<RequestTime>),
) -> Result<Deleted, Failure> {
    match envelope.get(Key::Result).map(|r| r.kind()) {
        // The docs give `[]`; accept an object or `true` too, should the portal change.
        Some(Kind::Array | Kind::Object | Kind::True) => Ok(Deleted { time }),
        _ => Err(bad(status, "the answer has no result")),
    }
}

/// One command's outcome inside a `batch` answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// The command succeeded.
    Done,
    /// The command failed with this error (the batch gives no per-command status: 0).
    Failed(Error),
    /// The answer says nothing of this command (not run after a halt).
    NotRun,
}

/// A successful `batch` answer: one outcome per command key `k0..k{n-1}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchAnswer {
    /// Outcomes by command index.
    pub outcomes: Vec<CommandOutcome>,
    /// The `result_time` with the latest `operating_reset_at` of the commands refused with
    /// `OPERATION_TIME_LIMIT` (its `finish`, when missing, the batch's own): when they can be
    /// sent again.
    pub limit_reset: Option<RequestTime>,
}

/// Reads an answer to a `batch` of `commands` commands keyed `k0..`, sent with `halt: 1` when
/// `halt`.
pub fn read_batch<J: Json>(
    status: u16,
    body: Body<J>,
    commands: usize,
    halt: bool,
) -> Result<BatchAnswer, Failure> {
    batch_answer(status, parse_envelope(status, body)?, commands, halt)
}

/// [`read_batch`] past [`parse_envelope`].
pub(crate) fn batch_answer<J: Json>(
    status: u16,
    (envelope, time): (J, Option<RequestTime>),
    commands: usize,
    halt: bool,
) -> Result<BatchAnswer, Failure> {
    let Some(result) = envelope
        .get(Key::Result)
        .filter(|r| r.kind() == Kind::Object)
    else {
        return Err(bad(status, "the batch answer has no result object"));
    };
    // Containers are objects keyed by command (`k0`, `k1`, ...), or `[]` when empty.
    let results = result.get(Key::Result);
    if !matches!(
        results.as_ref().map(|r| r.kind()),
        Some(Kind::Object | Kind::Array)
    ) {
        return Err(bad(status, "the batch answer has no per-command results"));
    }
    let errors = result.get(Key::ResultError);
    let times = result.get(Key::ResultTime);
    let command = |container: &Option<J>, i: usize| container.as_ref().and_then(|c| c.command(i));
    // Pushed one by one: `vec![NotRun; n]` would fill by cloning, which drags in the outcome's
    // (and the error's) `Clone` there.
    let mut outcomes = Vec::with_capacity(commands);
    let mut limit_reset: Option<RequestTime> = None;
    // Whether a command failed: only a halted batch leaves commands out, and only after one of
    // them failed.
    let mut any_failed = false;
    for i in 0..commands {
        let outcome = if let Some(value) = command(&errors, i) {
            let error = match error_code(&value) {
                Some(code) => api_error(&value, code, 0),
                None => Error::BadResponse {
                    status,
                    reason: "a batch command failed without an error code",
                },
            };
            if error.is_api("OPERATION_TIME_LIMIT") {
                if let Some(mut reset) = command(&times, i)
                    .and_then(RequestTime::read)
                    .filter(|t| t.operating_reset_at.is_some())
                {
                    // The latest (`None` is below any `Some`).
                    let latest = limit_reset.as_ref().and_then(|t| t.operating_reset_at);
                    if latest < reset.operating_reset_at {
                        reset.finish = reset.finish.or(time.as_ref().and_then(|t| t.finish));
                        limit_reset = Some(reset);
                    }
                }
            }
            any_failed = true;
            CommandOutcome::Failed(error)
        } else if command(&results, i)
            .is_some_and(|v| !matches!(v.kind(), Kind::False | Kind::Null))
        {
            CommandOutcome::Done
        } else {
            CommandOutcome::NotRun
        };
        outcomes.push(outcome);
    }
    // Any other silence is a malformed answer (the command may or may not have run).
    if !(halt && any_failed) {
        for outcome in &mut outcomes {
            if matches!(outcome, CommandOutcome::NotRun) {
                *outcome = CommandOutcome::Failed(Error::BadResponse {
                    status,
                    reason: "the batch answer says nothing of this command",
                });
            }
        }
    }
    Ok(BatchAnswer {
        outcomes,
        limit_reset,
    })
}

/// The JSON object of an answer and its `time` (read once, for success and failure alike);
/// error envelopes and non-2xx answers become failures.
pub(crate) fn parse_envelope<J: Json>(
    status: u16,
    body: Body<J>,
) -> Result<(J, Option<RequestTime>), Failure> {
    let envelope = match body {
        Body::Json(value) if value.kind() == Kind::Object => value,
        Body::Empty => return Err(bad(status, "the answer is empty")),
        Body::Html => return Err(bad(status, "the answer is an HTML page, not JSON")),
        Body::Json(_) | Body::Invalid => return Err(bad(status, "the answer is not valid JSON")),
    };
    let time = envelope.get(Key::Time).and_then(RequestTime::read);
    if let Some(code) = error_code(&envelope).filter(|c| !c.is_empty()) {
        return Err(Failure {
            error: api_error(&envelope, code, status),
            time,
        });
    }
    if !(200..300).contains(&status) {
        return Err(Failure {
            error: Error::BadResponse {
                status,
                reason: "the answer is an HTTP error without an error code",
            },
            time,
        });
    }
    Ok((envelope, time))
}

/// The `error` member of an error envelope (a whole answer's, or a batch command's), if a string.
fn error_code(value: &impl Json) -> Option<String> {
    value.get(Key::Error).and_then(|v| v.as_str())
}

/// The portal's error `code` with the envelope's `error_description` (empty when missing).
/// Both strings move into the error, not copied by `Error::api`.
fn api_error(value: &impl Json, code: String, status: u16) -> Error {
    let description = value.get(Key::ErrorDescription).and_then(|v| v.as_str());
    Error::Api {
        code,
        description: description.unwrap_or_default(),
        status,
    }
}

/// A `BAD_RESPONSE` failure. One copy for its six callers.
#[inline(never)]
fn bad(status: u16, reason: &'static str) -> Failure {
    Failure {
        error: Error::BadResponse { status, reason },
        time: None,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// The readers on a body's text, through the crate's own JSON reader.
    fn delete(status: u16, text: &str) -> Result<Deleted, Failure> {
        read_delete(status, crate::testing::body(text))
    }

    fn batch(status: u16, text: &str, commands: usize) -> Result<BatchAnswer, Failure> {
        read_batch(status, crate::testing::body(text), commands, true)
    }

    const SUCCESS: &str = r#"{"result": [], "time": {"start":1721657688.755373,"finish":1721657689.65017,"duration":0.8947970867156982,"processing":0.6092040538787842,"date_start":"2024-07-22T16:14:48+02:00","date_finish":"2024-07-22T16:14:49+02:00","operating":0}}"#;

    #[test]
    fn documented_success() {
        let deleted = delete(200, SUCCESS).unwrap();
        let time = deleted.time.unwrap();
        assert_eq!(time, RequestTime::default());
    }

    #[test]
    fn other_success_shapes() {
        for body in [
            r#"{"result":{}}"#,
            r#"{"result":true}"#,
            r#"{"result":[],"time":{"operating":1.5,"operating_reset_at":1721658288}}"#,
        ] {
            assert!(delete(200, body).is_ok(), "{body}");
        }
        let time = delete(
            200,
            r#"{"result":[],"time":{"operating":1.5,"operating_reset_at":1721658288}}"#,
        )
        .unwrap()
        .time
        .unwrap();
        assert_eq!(time.operating_reset_at, Some(1721658288.0));
        assert_eq!(delete(200, r#"{"result":[],"time":5}"#).unwrap().time, None);
    }

    #[test]
    fn documented_errors_keep_code_description_and_status() {
        let failure = delete(
            400,
            r#"{"error":"NOT_FOUND","error_description":"Item not found"}"#,
        )
        .unwrap_err();
        assert_eq!(
            failure.error,
            Error::api("NOT_FOUND", "Item not found", 400)
        );
        let failure = delete(429, r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating":481,"operating_reset_at":1700000600}}"#).unwrap_err();
        assert_eq!(failure.error.code(), "OPERATION_TIME_LIMIT");
        assert_eq!(failure.time.unwrap().operating_reset_at, Some(1700000600.0));
        // An error envelope with a 200 status is still an error.
        assert_eq!(
            delete(200, r#"{"error":"expired_token"}"#)
                .unwrap_err()
                .error,
            Error::api("expired_token", "", 200)
        );
    }

    #[test]
    fn bad_responses_keep_the_status() {
        for (status, body) in [
            (502, "<html><body>502 Bad Gateway</body></html>"),
            (200, ""),
            (200, "   "),
            (200, r#"{"result":["#),
            (200, r#"{"result":[]"#),
            (200, "[]"),
            (200, r#"{"time":{}}"#),
            (200, r#"{"result":false}"#),
            (200, r#"{"result":null}"#),
            (500, r#"{"result":[]}"#),
            (503, "Service Unavailable"),
            (200, r#"{"error":""}"#),
        ] {
            let failure = delete(status, body).unwrap_err();
            assert_eq!(failure.error.code(), "BAD_RESPONSE", "{status} {body}");
            assert_eq!(failure.error.status(), status);
        }
    }

    #[test]
    fn batch_answers() {
        let body = r#"{"result":{"result":{"k0":[],"k2":true},"result_error":{"k1":{"error":"NOT_FOUND","error_description":"Item not found"}},"result_total":[],"result_next":[],"result_time":{}},"time":{"operating":0}}"#;
        let answer = batch(200, body, 4).unwrap();
        assert_eq!(
            answer.outcomes,
            vec![
                CommandOutcome::Done,
                CommandOutcome::Failed(Error::api("NOT_FOUND", "Item not found", 0)),
                CommandOutcome::Done,
                CommandOutcome::NotRun,
            ]
        );
        // Sent without halt, a command the answer leaves out is a malformed answer, not "not run".
        let unhalted = read_batch(200, crate::testing::body(body), 4, false).unwrap();
        let silent = Error::BadResponse {
            status: 200,
            reason: "the batch answer says nothing of this command",
        };
        assert_eq!(unhalted.outcomes[3], CommandOutcome::Failed(silent.clone()));
        assert_eq!(unhalted.outcomes[..3], answer.outcomes[..3]);
        // Empty containers come as `[]`; with halt but no failed command, silence is malformed too.
        let empty = r#"{"result":{"result":[],"result_error":[],"result_total":[],"result_next":[],"result_time":[]},"time":{}}"#;
        assert_eq!(
            batch(200, empty, 2).unwrap().outcomes,
            vec![CommandOutcome::Failed(silent.clone()); 2]
        );
        // Only `k<index>` exactly names a command.
        let odd_keys = r#"{"result":{"result":{"k01":[],"K1":[]," k0":[],"k1 ":[]},"result_error":{"k1.0":{"error":"X"}}}}"#;
        assert_eq!(
            batch(200, odd_keys, 2).unwrap().outcomes,
            vec![CommandOutcome::Failed(silent.clone()); 2]
        );
        // No per-command results at all: the whole answer is malformed (and its outcome unknown).
        for body in [
            r#"{"result":{}}"#,
            r#"{"result":{"result_error":[]}}"#,
            r#"{"result":{"result":null}}"#,
        ] {
            let failure = batch(200, body, 2).unwrap_err();
            assert_eq!(failure.error.code(), "BAD_RESPONSE", "{body}");
            assert_eq!(
                failure.error.description(),
                "the batch answer has no per-command results"
            );
        }
        // Whole-request errors.
        assert_eq!(batch(400, r#"{"error":"ERROR_BATCH_LENGTH_EXCEEDED","error_description":"Max batch length exceeded"}"#, 51).unwrap_err().error.code(), "ERROR_BATCH_LENGTH_EXCEEDED");
        assert_eq!(
            batch(200, r#"{"result":[]}"#, 1).unwrap_err().error.code(),
            "BAD_RESPONSE"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(status in 0u16..600, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let body = String::from_utf8_lossy(&bytes);
            let _ = delete(status, &body);
            let _ = batch(status, &body, 3);
        }

        #[test]
        fn cut_answers_are_never_success(cut in 0usize..200) {
            let cut = cut.min(SUCCESS.len() - 1);
            if let Some(prefix) = SUCCESS.get(..cut) {
                proptest::prop_assert!(delete(200, prefix).is_err());
            }
        }

        #[test]
        fn html_pages_are_never_success(status in 200u16..600, title in "[a-zA-Z0-9 ]{0,20}") {
            let page = format!("<!DOCTYPE html><html><head><title>{title}</title></head></html>");
            let failure = delete(status, &page).unwrap_err();
            proptest::prop_assert_eq!(failure.error.code(), "BAD_RESPONSE");
        }
    }
}
