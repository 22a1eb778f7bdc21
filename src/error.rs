//! The one error type of the library.
//!
//! Every failure is an [`Error`]; the binding layer maps it once to the JS `B24Error` class, whose
//! `code`, `kind`, `status`, `description` and `retryable` come from the methods below.

use core::fmt;

/// What family an error belongs to (`B24Error.kind` in JS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The portal answered with an error envelope.
    Api,
    /// The request failed below HTTP (offline, DNS, CORS, connection dropped).
    Network,
    /// The call's deadline passed.
    Timeout,
    /// The caller aborted the call.
    Aborted,
    /// An argument was invalid; nothing was sent.
    Argument,
    /// The portal's answer was not the documented JSON.
    Response,
    /// The client configuration is missing or invalid.
    Config,
}

impl Kind {
    /// The name used in JS.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Network => "network",
            Kind::Timeout => "timeout",
            Kind::Aborted => "aborted",
            Kind::Argument => "argument",
            Kind::Response => "response",
            Kind::Config => "config",
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The portal answered `{"error": code, "error_description": description}`.
    Api {
        /// The portal's `error`, verbatim (`NOT_FOUND`, `expired_token`, ...).
        code: String,
        /// The portal's `error_description` (may be empty).
        description: String,
        /// The HTTP status of the answer.
        status: u16,
    },
    /// An argument was invalid (`INVALID_ARGUMENT`, kind `argument`); nothing was sent.
    InvalidArgument(&'static str),
    /// The configuration was invalid (`INVALID_ARGUMENT`, kind `config`); nothing was sent.
    InvalidConfig(&'static str),
    /// No configuration, and not inside a Bitrix24 frame (`NOT_CONFIGURED`).
    NotConfigured,
    /// The request failed below HTTP (`NETWORK_ERROR`).
    Network,
    /// The deadline passed before an answer (`TIMEOUT`).
    Timeout,
    /// The caller aborted the call (`ABORTED`).
    Aborted,
    /// A bulk id that was never sent: the run halted (`ABORTED`), was aborted (`ABORTED`) or ran
    /// out of time (`TIMEOUT`).
    NotAttempted {
        /// `TIMEOUT` rather than `ABORTED`.
        timeout: bool,
        /// Why it was not sent.
        reason: &'static str,
    },
    /// The answer was not the documented JSON (`BAD_RESPONSE`).
    BadResponse {
        /// The HTTP status of the answer.
        status: u16,
        /// What was wrong with it.
        reason: &'static str,
    },
}

impl Error {
    /// Builds an API error from the portal's code and description.
    pub fn api(code: &str, description: &str, status: u16) -> Self {
        Error::Api {
            code: code.into(),
            description: description.into(),
            status,
        }
    }

    /// The stable `code`: the portal's `error`, or one of the library's own. Out of line.
    #[inline(never)]
    pub fn code(&self) -> &str {
        match self {
            Error::Api { code, .. } => code,
            Error::InvalidArgument(_) | Error::InvalidConfig(_) => "INVALID_ARGUMENT",
            Error::NotConfigured => "NOT_CONFIGURED",
            Error::Network => "NETWORK_ERROR",
            Error::Timeout => "TIMEOUT",
            Error::Aborted => "ABORTED",
            Error::NotAttempted { timeout: true, .. } => "TIMEOUT",
            Error::NotAttempted { timeout: false, .. } => "ABORTED",
            Error::BadResponse { .. } => "BAD_RESPONSE",
        }
    }

    /// Whether this is the portal's error `code`. One out-of-line test for every such check.
    #[inline(never)]
    pub fn is_api(&self, code: &str) -> bool {
        matches!(self, Error::Api { code: c, .. } if c == code)
    }

    /// The error's family.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Api { .. } => Kind::Api,
            Error::InvalidArgument(_) => Kind::Argument,
            Error::InvalidConfig(_) | Error::NotConfigured => Kind::Config,
            Error::Network => Kind::Network,
            Error::Timeout => Kind::Timeout,
            Error::Aborted | Error::NotAttempted { timeout: false, .. } => Kind::Aborted,
            Error::NotAttempted { timeout: true, .. } => Kind::Timeout,
            Error::BadResponse { .. } => Kind::Response,
        }
    }

    /// The HTTP status, or 0 where there was no answer.
    pub fn status(&self) -> u16 {
        match self {
            Error::Api { status, .. } | Error::BadResponse { status, .. } => *status,
            _ => 0,
        }
    }

    /// The portal's `error_description`, or the library's own explanation.
    pub fn description(&self) -> &str {
        match self {
            Error::Api { description, .. } if description.is_empty() => {
                "the portal gave no error_description"
            }
            Error::Api { description, .. } => description,
            Error::InvalidArgument(why) | Error::InvalidConfig(why) => why,
            Error::NotConfigured => {
                "no client is configured: call configure() with a webhookUrl or portal + accessToken, or run inside a Bitrix24 frame"
            }
            Error::Network => "the request did not reach the portal or its answer was lost (offline, DNS, CORS or a dropped connection)",
            Error::Timeout => "the call did not finish within its timeoutMs",
            Error::Aborted => "the call was aborted by its signal",
            Error::BadResponse { reason, .. } | Error::NotAttempted { reason, .. } => reason,
        }
    }

    /// Whether the same call may succeed later, unchanged.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Api { code, status, .. } => match code.as_str() {
                "QUERY_LIMIT_EXCEEDED"
                | "OPERATION_TIME_LIMIT"
                | "INTERNAL_SERVER_ERROR"
                | "ERROR_UNEXPECTED_ANSWER" => true,
                // Manual blocks and closed portals do not lift by themselves.
                "OVERLOAD_LIMIT" | "PORTAL_DELETED" => false,
                _ => *status >= 500,
            },
            // Passing failures: the same call may well succeed. (A lost or timed-out request
            // may have been executed: a repeat then reads its NOT_FOUND as "deleted".)
            Error::Network | Error::Timeout | Error::NotAttempted { .. } => true,
            // A 5xx page or a lost 2xx body: the portal may answer properly next time.
            Error::BadResponse { status, .. } => *status >= 500 || (200..300).contains(status),
            Error::InvalidArgument(_)
            | Error::InvalidConfig(_)
            | Error::NotConfigured
            | Error::Aborted => false,
        }
    }

    /// Whether the request may have been executed although no answer says so (the delete may
    /// have happened): a lost connection, a timeout, an unreadable answer, or a server error (a
    /// 5xx can come after the delete, from an event handler); not the limits that refuse a
    /// request before running it.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::Network | Error::Timeout | Error::BadResponse { .. } => true,
            Error::Api { code, status, .. } => {
                *status >= 500
                    && !matches!(code.as_str(), "QUERY_LIMIT_EXCEEDED" | "OVERLOAD_LIMIT")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())?;
        let description = self.description();
        if !description.is_empty() {
            f.write_str(": ")?;
            f.write_str(description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_contract() {
        for code in [
            "QUERY_LIMIT_EXCEEDED",
            "OPERATION_TIME_LIMIT",
            "INTERNAL_SERVER_ERROR",
        ] {
            assert!(Error::api(code, "", 503).retryable(), "{code}");
        }
        assert!(Error::api("SOMETHING_NEW", "", 502).retryable());
        for code in [
            "NOT_FOUND",
            "ACCESS_DENIED",
            "allowed_only_intranet_user",
            "INVALID_CREDENTIALS",
            "insufficient_scope",
            "NO_AUTH_FOUND",
            "expired_token",
        ] {
            assert!(!Error::api(code, "", 400).retryable(), "{code}");
        }
        assert!(!Error::api("OVERLOAD_LIMIT", "", 503).retryable());
        assert!(Error::Network.retryable());
        assert!(Error::Timeout.retryable());
        assert!(!Error::Aborted.retryable());
        assert!(!Error::InvalidArgument("x").retryable());
        assert!(Error::BadResponse {
            status: 502,
            reason: "html"
        }
        .retryable());
        assert!(!Error::BadResponse {
            status: 404,
            reason: "html"
        }
        .retryable());
    }

    #[test]
    fn codes_and_kinds() {
        let cases = [
            (
                Error::InvalidArgument("x"),
                "INVALID_ARGUMENT",
                Kind::Argument,
            ),
            (Error::InvalidConfig("x"), "INVALID_ARGUMENT", Kind::Config),
            (Error::NotConfigured, "NOT_CONFIGURED", Kind::Config),
            (Error::Network, "NETWORK_ERROR", Kind::Network),
            (Error::Timeout, "TIMEOUT", Kind::Timeout),
            (Error::Aborted, "ABORTED", Kind::Aborted),
            (
                Error::BadResponse {
                    status: 502,
                    reason: "x",
                },
                "BAD_RESPONSE",
                Kind::Response,
            ),
            (
                Error::api("NOT_FOUND", "Item not found", 400),
                "NOT_FOUND",
                Kind::Api,
            ),
        ];
        for (error, code, kind) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.kind(), kind);
            // Only the portal's own errors are its codes.
            assert_eq!(error.is_api(code), kind == Kind::Api, "{code}");
        }
        assert_eq!(
            Error::api("NOT_FOUND", "Item not found", 400).to_string(),
            "NOT_FOUND: Item not found"
        );
        assert_eq!(Error::api("NOT_FOUND", "Item not found", 400).status(), 400);
        assert_eq!(Error::Network.status(), 0);
        // No error_description: the library says so rather than leaving it empty.
        assert_eq!(
            Error::api("ACCESS_DENIED", "", 403).to_string(),
            "ACCESS_DENIED: the portal gave no error_description"
        );
    }
}
