//! Reading the portal's answers.
//!
//! Success is HTTP 2xx with `{"result": ..., "time": {...}}`; an error is `{"error": CODE,
//! "error_description": TEXT}` with any status. Anything else (an HTML 502 page, an empty or cut
//! body, JSON of another shape) is `BAD_RESPONSE` with the status kept — never a success.

use crate::error::Error;
use crate::json::{self, Value};

/// What the library uses of an answer's `time` object (JS reads the whole object from the
/// answer itself).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestTime {
    /// `operating`: seconds this method has used in the current window.
    pub operating: Option<f64>,
    /// `operating_reset_at`: Unix time (s) when part of the method's budget is released.
    pub operating_reset_at: Option<f64>,
}

impl RequestTime {
    fn read(value: &Value<'_>) -> Option<RequestTime> {
        if !matches!(value, Value::Object(_)) {
            return None;
        }
        Some(RequestTime {
            operating: value.get("operating").and_then(Value::as_f64),
            operating_reset_at: value.get("operating_reset_at").and_then(Value::as_f64),
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
pub fn read_delete(status: u16, body: &str) -> Result<Deleted, Failure> {
    let envelope = parse_envelope(status, body)?;
    match envelope.get("result") {
        // The docs give `[]`; accept an object or `true` too, should the portal change.
        Some(Value::Array(_) | Value::Object(..) | Value::Bool(true)) => Ok(Deleted {
            time: envelope.get("time").and_then(RequestTime::read),
        }),
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
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAnswer {
    /// Outcomes by command index.
    pub outcomes: Vec<CommandOutcome>,
    /// The batch's own `time`.
    pub time: Option<RequestTime>,
}

/// Reads an answer to a `batch` of `commands` commands keyed `k0..`.
pub fn read_batch(status: u16, body: &str, commands: usize) -> Result<BatchAnswer, Failure> {
    let envelope = parse_envelope(status, body)?;
    let Some(result @ Value::Object(..)) = envelope.get("result") else {
        return Err(bad(status, "the batch answer has no result object"));
    };
    let mut outcomes = vec![CommandOutcome::NotRun; commands];
    // Containers may be `[]` when empty, or objects keyed by command.
    for (key, value) in result.get("result").map(Value::entries).unwrap_or_default() {
        if let Some(i) = crate::envelope::batch_key_index(&key).filter(|&i| i < commands) {
            if !matches!(value, Value::Bool(false) | Value::Null) {
                outcomes[i] = CommandOutcome::Done;
            }
        }
    }
    for (key, value) in result
        .get("result_error")
        .map(Value::entries)
        .unwrap_or_default()
    {
        if let Some(i) = crate::envelope::batch_key_index(&key).filter(|&i| i < commands) {
            outcomes[i] =
                CommandOutcome::Failed(match value.get("error").and_then(Value::as_str) {
                    Some(code) => {
                        let description = value
                            .get("error_description")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        Error::api(&code, &description, 0)
                    }
                    None => Error::BadResponse {
                        status,
                        reason: "a batch command failed without an error code",
                    },
                });
        }
    }
    Ok(BatchAnswer {
        outcomes,
        time: envelope.get("time").and_then(RequestTime::read),
    })
}

/// Parses the JSON object of an answer; turns error envelopes and non-2xx answers into failures.
fn parse_envelope(status: u16, body: &str) -> Result<Value<'_>, Failure> {
    if body.trim_ascii().is_empty() {
        return Err(bad(status, "the answer is empty"));
    }
    let Some(envelope @ Value::Object(..)) = json::parse(body) else {
        return Err(bad(
            status,
            if body.trim_ascii_start().starts_with('<') {
                "the answer is an HTML page, not JSON"
            } else {
                "the answer is not valid JSON"
            },
        ));
    };
    let time = envelope.get("time").and_then(RequestTime::read);
    if let Some(code) = envelope
        .get("error")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let description = envelope
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(Failure {
            error: Error::api(&code, &description, status),
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
    Ok(envelope)
}

fn bad(status: u16, reason: &'static str) -> Failure {
    Failure {
        error: Error::BadResponse { status, reason },
        time: None,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"result": [], "time": {"start":1721657688.755373,"finish":1721657689.65017,"duration":0.8947970867156982,"processing":0.6092040538787842,"date_start":"2024-07-22T16:14:48+02:00","date_finish":"2024-07-22T16:14:49+02:00","operating":0}}"#;

    #[test]
    fn documented_success() {
        let deleted = read_delete(200, SUCCESS).unwrap();
        let time = deleted.time.unwrap();
        assert_eq!(time.operating, Some(0.0));
        assert_eq!(time.operating_reset_at, None);
    }

    #[test]
    fn other_success_shapes() {
        for body in [
            r#"{"result":{}}"#,
            r#"{"result":true}"#,
            r#"{"result":[],"time":{"operating":1.5,"operating_reset_at":1721658288}}"#,
        ] {
            assert!(read_delete(200, body).is_ok(), "{body}");
        }
        let time = read_delete(
            200,
            r#"{"result":[],"time":{"operating":1.5,"operating_reset_at":1721658288}}"#,
        )
        .unwrap()
        .time
        .unwrap();
        assert_eq!(
            (time.operating, time.operating_reset_at),
            (Some(1.5), Some(1721658288.0))
        );
        assert_eq!(
            read_delete(200, r#"{"result":[],"time":5}"#).unwrap().time,
            None
        );
    }

    #[test]
    fn documented_errors_keep_code_description_and_status() {
        let failure = read_delete(
            400,
            r#"{"error":"NOT_FOUND","error_description":"Item not found"}"#,
        )
        .unwrap_err();
        assert_eq!(
            failure.error,
            Error::api("NOT_FOUND", "Item not found", 400)
        );
        let failure = read_delete(429, r#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","time":{"operating":481,"operating_reset_at":1700000600}}"#).unwrap_err();
        assert_eq!(failure.error.code(), "OPERATION_TIME_LIMIT");
        assert_eq!(failure.time.unwrap().operating_reset_at, Some(1700000600.0));
        // An error envelope with a 200 status is still an error.
        assert_eq!(
            read_delete(200, r#"{"error":"expired_token"}"#)
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
            let failure = read_delete(status, body).unwrap_err();
            assert_eq!(failure.error.code(), "BAD_RESPONSE", "{status} {body}");
            assert_eq!(failure.error.status(), status);
        }
    }

    #[test]
    fn batch_answers() {
        let body = r#"{"result":{"result":{"k0":[],"k2":true},"result_error":{"k1":{"error":"NOT_FOUND","error_description":"Item not found"}},"result_total":[],"result_next":[],"result_time":{}},"time":{"operating":0}}"#;
        let answer = read_batch(200, body, 4).unwrap();
        assert_eq!(
            answer.outcomes,
            vec![
                CommandOutcome::Done,
                CommandOutcome::Failed(Error::api("NOT_FOUND", "Item not found", 0)),
                CommandOutcome::Done,
                CommandOutcome::NotRun,
            ]
        );
        // Empty containers come as `[]`.
        let empty = r#"{"result":{"result":[],"result_error":[],"result_total":[],"result_next":[],"result_time":[]},"time":{}}"#;
        assert_eq!(
            read_batch(200, empty, 2).unwrap().outcomes,
            vec![CommandOutcome::NotRun; 2]
        );
        // Whole-request errors.
        assert_eq!(read_batch(400, r#"{"error":"ERROR_BATCH_LENGTH_EXCEEDED","error_description":"Max batch length exceeded"}"#, 51).unwrap_err().error.code(), "ERROR_BATCH_LENGTH_EXCEEDED");
        assert_eq!(
            read_batch(200, r#"{"result":[]}"#, 1)
                .unwrap_err()
                .error
                .code(),
            "BAD_RESPONSE"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(status in 0u16..600, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let body = String::from_utf8_lossy(&bytes);
            let _ = read_delete(status, &body);
            let _ = read_batch(status, &body, 3);
        }

        #[test]
        fn cut_answers_are_never_success(cut in 0usize..200) {
            let cut = cut.min(SUCCESS.len() - 1);
            if let Some(prefix) = SUCCESS.get(..cut) {
                proptest::prop_assert!(read_delete(200, prefix).is_err());
            }
        }

        #[test]
        fn html_pages_are_never_success(status in 200u16..600, title in "[a-zA-Z0-9 ]{0,20}") {
            let page = format!("<!DOCTYPE html><html><head><title>{title}</title></head></html>");
            let failure = read_delete(status, &page).unwrap_err();
            proptest::prop_assert_eq!(failure.error.code(), "BAD_RESPONSE");
        }
    }
}
