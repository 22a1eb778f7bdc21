//! Client configuration: which portal to reach and how, checked before any request.
//!
//! Exactly one way to reach the portal: a webhook URL, a portal URL with an OAuth access token, or
//! the enclosing Bitrix24 frame (auto-detected when nothing else is given). URLs must be `https:`,
//! except for loopback hosts, so a local emulator works. No message here ever echoes the input:
//! a malformed webhook URL may still contain its secret.

use crate::error::Error;
use crate::id::decimal;
use crate::secret::Secret;

/// Default whole-call deadline.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The portal's default request-intensity limit (Enterprise: 250 / 5).
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    burst: 50,
    per_second: 2.0,
};
/// `setTimeout` cannot wait longer than this.
const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;

/// The configuration as given by the caller (the binding layer has checked the JS types).
#[derive(Debug, Default, Clone)]
pub struct ConfigInput {
    /// `webhookUrl`
    pub webhook_url: Option<String>,
    /// `portal`
    pub portal: Option<String>,
    /// `accessToken`
    pub access_token: Option<Secret>,
    /// Whether `onTokenExpired` was given.
    pub has_token_callback: bool,
    /// `frame`
    pub frame: Option<bool>,
    /// `timeoutMs`
    pub timeout_ms: Option<f64>,
    /// `maxRetries`
    pub max_retries: Option<f64>,
    /// `rateLimit`
    pub rate_limit: RateLimitInput,
    /// `operatingLimit`
    pub operating_limit: OperatingLimitInput,
}

/// `operatingLimit` as given.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub enum OperatingLimitInput {
    /// Not given: [`DEFAULT_OPERATING_LIMIT_S`].
    #[default]
    Default,
    /// `false`: no client-side operating budget.
    Off,
    /// Seconds of the portal's operating time per method per 10 minutes.
    Seconds(f64),
}

/// The default `operatingLimit`: seconds per method per 10 minutes, below the portal's 480.
pub const DEFAULT_OPERATING_LIMIT_S: f64 = 420.0;

/// `rateLimit` as given.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub enum RateLimitInput {
    /// Not given: the portal's default.
    #[default]
    Default,
    /// `false`: no client-side pacing.
    Off,
    /// `{ burst, perSecond }`
    Custom {
        /// Requests allowed at once.
        burst: f64,
        /// Requests drained per second.
        per_second: f64,
    },
}

/// A leaky bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests drained per second.
    pub per_second: f64,
}

/// How requests reach the portal.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `POST {base}METHOD`, where `base` is `https://host/rest/USER/SECRET/`.
    Webhook {
        /// The full base URL, secret included.
        base: Secret,
    },
    /// `POST {rest_base}METHOD` with `auth` in the body; `rest_base` is `https://host/rest/`.
    OAuth {
        /// `https://host/rest/`
        rest_base: String,
        /// The access token given in the configuration.
        token: Secret,
        /// Whether `onTokenExpired` can supply a new token.
        refreshable: bool,
    },
    /// Through the enclosing Bitrix24 frame.
    Frame,
    /// Nothing given: the frame if the page is inside one, else `NOT_CONFIGURED`.
    Auto,
}

impl Endpoint {
    /// The URL every request starts with, and the config message for a platform that cannot
    /// parse it: the browser's URL parser has the last word on hosts (`1.2.3.4.5`, `999.1.1.1`
    /// and bad punycode pass the checks here but make `fetch` throw, quoting the URL and its
    /// secret). (A message, not an `Error`: the caller builds one only when it refuses the URL,
    /// not one to drop for every URL that parses.)
    pub fn base_url(&self) -> Option<(&str, &'static str)> {
        match self {
            Endpoint::Webhook { base } => Some((base.expose(), WEBHOOK_SHAPE)),
            Endpoint::OAuth { rest_base, .. } => Some((rest_base, PORTAL_SHAPE)),
            Endpoint::Frame | Endpoint::Auto => None,
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How requests reach the portal.
    pub endpoint: Endpoint,
    /// Whole-call deadline in milliseconds.
    pub timeout_ms: u32,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Client-side pacing, if any.
    pub rate_limit: Option<RateLimit>,
    /// The client-side operating budget, seconds per method per 10 minutes, if any.
    pub operating_limit_s: Option<f64>,
}

impl Config {
    /// Checks a configuration.
    pub fn parse(input: ConfigInput) -> Result<Config, Error> {
        // Read by reference: the input is dropped here once, not on every error exit. Every
        // refusal is a config error: the checks give its message, made an `Error` here once.
        Config::check(&input).map_err(Error::InvalidConfig)
    }

    /// Checks a configuration: every refusal is `INVALID_ARGUMENT` of kind `config`, so this gives
    /// only its message.
    pub fn check(input: &ConfigInput) -> Result<Config, &'static str> {
        let oauth = input.portal.is_some() || input.access_token.is_some();
        let ways = usize::from(input.webhook_url.is_some())
            + usize::from(oauth)
            + usize::from(input.frame == Some(true));
        if ways > 1 {
            return Err("give exactly one of: webhookUrl, portal + accessToken, or frame: true");
        }
        let endpoint = if let Some(url) = &input.webhook_url {
            parse_webhook(url)?
        } else if oauth {
            let (Some(portal), Some(token)) = (&input.portal, &input.access_token) else {
                return Err("OAuth needs both portal and accessToken");
            };
            // On bytes: C0 controls, space and DEL, or U+0080..U+009F (`C2 80`..`C2 9F`).
            let mut prev = 0;
            if token.expose().is_empty()
                || token.expose().as_bytes().iter().any(|&b| {
                    let bad = b <= b' ' || b == 0x7f || (prev == 0xc2 && b <= 0x9f);
                    prev = b;
                    bad
                })
            {
                return Err("accessToken must be a non-empty token without spaces");
            }
            Endpoint::OAuth {
                rest_base: parse_portal(portal)?,
                token: token.clone(),
                refreshable: input.has_token_callback,
            }
        } else {
            match input.frame {
                Some(true) => Endpoint::Frame,
                Some(false) => {
                    return Err("frame: false needs a webhookUrl or portal + accessToken")
                }
                None => Endpoint::Auto,
            }
        };
        if input.has_token_callback && !matches!(endpoint, Endpoint::OAuth { .. }) {
            return Err("onTokenExpired is for OAuth (portal + accessToken) only");
        }
        Ok(Config {
            endpoint,
            // The same rule as a call's timeoutMs, reported as a config error.
            timeout_ms: match input.timeout_ms {
                None => DEFAULT_TIMEOUT_MS,
                Some(ms) if timeout_ok(ms) => ms as u32,
                Some(_) => return Err(TIMEOUT_RULE),
            },
            // Closed ranges with finite ends refuse NaN and the infinities: no `is_finite` before
            // them.
            max_retries: match input.max_retries {
                None => DEFAULT_MAX_RETRIES,
                Some(n) if within(n, 0.0, 100.0) && n.fract() == 0.0 => n as u32,
                Some(_) => return Err("maxRetries must be an integer from 0 to 100"),
            },
            rate_limit: match input.rate_limit {
                RateLimitInput::Default => Some(DEFAULT_RATE_LIMIT),
                RateLimitInput::Off => None,
                RateLimitInput::Custom { burst, per_second } => {
                    let burst_ok = within(burst, 1.0, 100_000.0) && burst.fract() == 0.0;
                    let rate_ok = per_second > 0.0 && per_second <= 100_000.0;
                    if !(burst_ok && rate_ok) {
                        return Err("rateLimit must be false or { burst: integer >= 1, perSecond: number > 0 }");
                    }
                    Some(RateLimit {
                        burst: burst as u32,
                        per_second,
                    })
                }
            },
            operating_limit_s: match input.operating_limit {
                OperatingLimitInput::Default => Some(DEFAULT_OPERATING_LIMIT_S),
                OperatingLimitInput::Off => None,
                OperatingLimitInput::Seconds(s) if s > 0.0 && s <= 600.0 => Some(s),
                OperatingLimitInput::Seconds(_) => {
                    return Err(
                        "operatingLimit must be false or a number of seconds above 0, at most 600",
                    )
                }
            },
        })
    }
}

/// The rule for `timeoutMs`, client or call.
const TIMEOUT_RULE: &str = "timeoutMs must be a number of milliseconds from 1 to 2147483647";

/// Checks a per-call `timeoutMs`: a positive number of milliseconds, or the message of the rule
/// (an argument error's).
pub fn parse_timeout(timeout_ms: Option<f64>) -> Result<Option<u32>, &'static str> {
    match timeout_ms {
        None => Ok(None),
        Some(ms) if timeout_ok(ms) => Ok(Some(ms as u32)),
        Some(_) => Err(TIMEOUT_RULE),
    }
}

/// The `timeoutMs` rule, shared: the config's check is a plain match on it, not a `map_err` of
/// `parse_timeout`'s error.
fn timeout_ok(ms: f64) -> bool {
    within(ms, 1.0, MAX_TIMEOUT_MS)
}

const WEBHOOK_SHAPE: &str = "webhookUrl must look like https://PORTAL/rest/USER_ID/SECRET/";

fn parse_webhook(url: &str) -> Result<Endpoint, &'static str> {
    let origin = split_origin(url, WEBHOOK_SHAPE)?;
    if !is_webhook_path(&url.as_bytes()[origin..]) {
        return Err(WEBHOOK_SHAPE);
    }
    // The path is `/rest/USER/SECRET` with or without its final slash: the base is the URL with
    // its origin lower-cased and that slash ensured, made in place.
    let mut base = String::from(url);
    base[..origin].make_ascii_lowercase();
    // A slice pattern, not `str::ends_with` and its char encoding.
    if !matches!(base.as_bytes(), [.., b'/']) {
        base.push('/');
    }
    Ok(Endpoint::Webhook {
        base: Secret::new(base),
    })
}

/// `/rest/USER_ID/SECRET`, with or without a final slash. (A `bool`, with the one error built by
/// the caller: an `ok_or` per step built and dropped an `Error` on success.)
fn is_webhook_path(path: &[u8]) -> bool {
    // Bytes and slice patterns, like split_origin: no `str` prefix and suffix searches.
    let [b'/', b'r', b'e', b's', b't', b'/', rest @ ..] = path else {
        return false;
    };
    let rest = match rest {
        [rest @ .., b'/'] => rest,
        _ => rest,
    };
    let Some(slash) = first(rest, b'/') else {
        return false;
    };
    let (user, secret) = (&rest[..slash], &rest[slash + 1..]);
    // 1 to 16 digits: the crate's decimal reader says so.
    let user_ok = decimal(user, 16).is_some();
    let secret_ok = !secret.is_empty()
        && secret.len() <= 128
        && secret
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    user_ok && secret_ok
}

const PORTAL_SHAPE: &str = "portal must look like https://PORTAL (or https://PORTAL/rest/)";

/// Checks a portal URL (`https:`, or `http:` for loopback) and gives its REST base `…/rest/`,
/// or the config message that refuses it.
pub fn parse_portal(url: &str) -> Result<String, &'static str> {
    let origin = split_origin(url, PORTAL_SHAPE)?;
    let (origin, path) = url.split_at(origin);
    if !matches!(path, "" | "/" | "/rest" | "/rest/") {
        return Err(PORTAL_SHAPE);
    }
    let mut base = String::from(origin);
    base.make_ascii_lowercase();
    base.push_str("/rest/");
    Ok(base)
}

/// The length of `scheme://host[:port]`, the path following it. Refuses user info, queries,
/// fragments, spaces, and `http:` for anything but a loopback host: with the caller's `shape`
/// message, or the https rule's own (not an `Option` each caller maps: with the webhook path
/// read as bytes). (A length, not a lower-cased `String`: the callers build their URL
/// once, lower-casing the origin in it; with `is_webhook_path`.)
fn split_origin(url: &str, shape: &'static str) -> Result<usize, &'static str> {
    // The URL is read as bytes throughout (slices, their iterators and slice patterns): no
    // `str::bytes` and no char-boundary checks on slicing.
    let url = url.as_bytes();
    if url
        .iter()
        .any(|&b| b <= b' ' || matches!(b, 0x7f | b'\\' | b'?' | b'#'))
    {
        return Err(shape);
    }
    let (https, rest) = if url.len() > 8 && url[..8].eq_ignore_ascii_case(b"https://") {
        (true, &url[8..])
    } else if url.len() > 7 && url[..7].eq_ignore_ascii_case(b"http://") {
        (false, &url[7..])
    } else {
        return Err(shape);
    };
    let end = first(rest, b'/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // `[v6]:port` or `host:port`: the port follows the last colon, if no bracket follows it.
    // (One search from the end: a second colon after the host fails the host or the
    // port check.)
    // The port, when there is one, is checked where it is found (1 to 5 digits, at most 65535),
    // and the host's brackets matched by a slice pattern, not `strip_prefix`.
    let (host, port_ok) = match authority.iter().rposition(|&b| b == b':' || b == b']') {
        Some(i) if authority[i] == b':' => (
            &authority[..i],
            decimal(&authority[i + 1..], 5).is_some_and(|n| n <= 65_535),
        ),
        _ => (authority, true),
    };
    let host_ok = match host {
        [b'[', v6 @ .., b']'] => {
            !v6.is_empty()
                && v6
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        name => {
            !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
    };
    if !host_ok || !port_ok {
        return Err(shape);
    }
    if !https && !is_loopback(host) {
        return Err("the portal URL must be https: (http: is allowed only for localhost, 127.0.0.0/8 and [::1])");
    }
    Ok(url.len() - path.len())
}

/// `localhost` (in any case), `127.0.0.0/8` or `[::1]`.
fn is_loopback(host: &[u8]) -> bool {
    if host.eq_ignore_ascii_case(b"localhost") || host == b"[::1]" {
        return true;
    }
    let [b'1', b'2', b'7', b'.', rest @ ..] = host else {
        return false;
    };
    // Three more octets of 1 to 3 digits, each at most 255, separated by dots.
    // Counted in the same pass that checks them, not in a pass of its own.
    let mut octets = 0;
    rest.split(|&b| b == b'.').all(|o| {
        octets += 1;
        decimal(o, 3).is_some_and(|n| n <= 255)
    }) && octets == 3
}

/// `min <= x <= max` (false for NaN). Two comparisons, not `(min..=max).contains(&x)`, whose
/// `f64` instance is a function of its own in the wasm.
#[allow(clippy::manual_range_contains)]
fn within(x: f64, min: f64, max: f64) -> bool {
    x >= min && x <= max
}

/// Where byte `b` first occurs in `s`. (A `char` pattern would bring a generic searcher and
/// memchr into the wasm.)
fn first(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn webhook(url: &str) -> Result<Config, Error> {
        Config::parse(ConfigInput {
            webhook_url: Some(url.into()),
            ..Default::default()
        })
    }

    fn oauth(portal: &str) -> Result<Config, Error> {
        Config::parse(ConfigInput {
            portal: Some(portal.into()),
            access_token: Some(Secret::new("tok".into())),
            ..Default::default()
        })
    }

    fn base(config: Config) -> String {
        match config.endpoint {
            Endpoint::Webhook { base, .. } => base.expose().to_owned(),
            Endpoint::OAuth { rest_base, .. } => rest_base,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn webhook_urls() {
        for (url, expected) in [
            (
                "https://acme.bitrix24.com/rest/1/s3cr3t/",
                "https://acme.bitrix24.com/rest/1/s3cr3t/",
            ),
            (
                "https://acme.bitrix24.com/rest/1/s3cr3t",
                "https://acme.bitrix24.com/rest/1/s3cr3t/",
            ),
            (
                "HTTPS://ACME.Bitrix24.com:8443/rest/12/abc_DEF-9/",
                "https://acme.bitrix24.com:8443/rest/12/abc_DEF-9/",
            ),
            (
                "http://127.0.0.1:8080/rest/1/x/",
                "http://127.0.0.1:8080/rest/1/x/",
            ),
            ("http://localhost/rest/1/x/", "http://localhost/rest/1/x/"),
            (
                "HTTP://LocalHost:80/rest/1/x",
                "http://localhost:80/rest/1/x/",
            ),
            ("http://[::1]:9/rest/1/x/", "http://[::1]:9/rest/1/x/"),
        ] {
            assert_eq!(base(webhook(url).unwrap()), expected, "{url}");
        }
    }

    #[test]
    fn loopback_hosts_are_exactly_localhost_127_0_0_0_8_and_v6_one() {
        for host in [
            "localhost",
            "LocalHost",
            "[::1]",
            "127.0.0.1",
            "127.255.255.255",
            "127.001.0.1",
        ] {
            assert!(is_loopback(host.as_bytes()), "{host}");
        }
        for host in [
            "127.0.0",
            "127.0.0.1.2",
            "127..0.1",
            "127.0.0.",
            "127.256.0.1",
            "127.0.0.1000",
            "127.0.0.a",
            "128.0.0.1",
            "127",
            "localhost.evil.com",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn bad_webhook_urls_are_refused_without_echoing_the_secret() {
        for url in [
            "http://acme.bitrix24.com/rest/1/s3cr3t/",
            "http://127.0.0.1.evil.com/rest/1/s3cr3t/",
            "http://128.0.0.1/rest/1/s3cr3t/",
            "https://acme.bitrix24.com/rest/s3cr3t/",
            "https://acme.bitrix24.com/rest/1/s3cr3t/crm.item.delete",
            "https://acme.bitrix24.com/rest/1/s3cr3t/?x=1",
            "https://acme.bitrix24.com/rest/1/s3cr3t/#x",
            "https://user:s3cr3t@acme.bitrix24.com/rest/1/s3cr3t/",
            "https://acme bitrix24.com/rest/1/s3cr3t/",
            "ftp://acme.bitrix24.com/rest/1/s3cr3t/",
            "acme.bitrix24.com/rest/1/s3cr3t/",
            "https:///rest/1/s3cr3t/",
            "https://acme.bitrix24.com:99999/rest/1/s3cr3t/",
            "https://acme.bitrix24.com/rest/1/s3cr3t!/",
            "",
        ] {
            let error = webhook(url).unwrap_err();
            assert_eq!(error.code(), "INVALID_ARGUMENT", "{url}");
            assert!(
                !format!("{error} {error:?}").contains("s3cr3t"),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn oauth_portals() {
        assert_eq!(
            base(oauth("https://acme.bitrix24.com").unwrap()),
            "https://acme.bitrix24.com/rest/"
        );
        assert_eq!(
            base(oauth("https://acme.bitrix24.com/").unwrap()),
            "https://acme.bitrix24.com/rest/"
        );
        assert_eq!(
            base(oauth("https://acme.bitrix24.com/rest/").unwrap()),
            "https://acme.bitrix24.com/rest/"
        );
        assert_eq!(
            base(oauth("http://127.0.0.1:5000").unwrap()),
            "http://127.0.0.1:5000/rest/"
        );
        assert!(oauth("http://acme.bitrix24.com").is_err());
        // Where the port starts: after the last colon that no bracket follows.
        for (url, ok) in [
            ("https://[::1]", true),
            ("https://[::1]:8443", true),
            ("https://[2001:db8::1]:443/rest/", true),
            ("https://[::1]:", false),
            ("https://[::1]:80:90", false),
            ("https://a.b:80:90", false),
            ("https://a]b:80", false),
            ("https://[::1:80", false),
            ("https://::1]", false),
        ] {
            assert_eq!(oauth(url).is_ok(), ok, "{url}");
        }
        assert!(oauth("https://acme.bitrix24.com/crm/").is_err());
        // Ports: 1 to 5 digits, at most 65535.
        for (port, ok) in [
            ("1", true),
            ("443", true),
            ("65535", true),
            ("00080", true),
            ("65536", false),
            ("99999", false),
            ("123456", false),
            ("", false),
            ("8a", false),
            ("-1", false),
        ] {
            let url = ["https://acme.bitrix24.com:", port].concat();
            assert_eq!(oauth(&url).is_ok(), ok, "{url}");
        }
        let no_token = Config::parse(ConfigInput {
            portal: Some("https://a.b".into()),
            ..Default::default()
        });
        assert_eq!(no_token.unwrap_err().code(), "INVALID_ARGUMENT");
        let empty_token = Config::parse(ConfigInput {
            portal: Some("https://a.b".into()),
            access_token: Some(Secret::new(String::new())),
            ..Default::default()
        });
        assert!(empty_token.is_err());
        // Controls (C0, DEL, C1) and spaces are refused; other characters are kept.
        for (token, ok) in [
            ("a\tb", false),
            ("a b", false),
            ("a\u{7f}", false),
            ("a\u{80}", false),
            ("\u{85}a", false),
            ("a\u{9f}b", false),
            ("a\u{a0}b", true),
            ("\u{c2}\u{bf}é\u{1f600}", true),
            ("tok", true),
        ] {
            let config = Config::parse(ConfigInput {
                portal: Some("https://a.b".into()),
                access_token: Some(Secret::new(token.into())),
                ..Default::default()
            });
            assert_eq!(config.is_ok(), ok, "{token:?}");
        }
    }

    #[test]
    fn exactly_one_way() {
        let both = ConfigInput {
            webhook_url: Some("https://a.b/rest/1/x/".into()),
            portal: Some("https://a.b".into()),
            access_token: Some(Secret::new("t".into())),
            ..Default::default()
        };
        assert!(Config::parse(both).is_err());
        let hook_and_frame = ConfigInput {
            webhook_url: Some("https://a.b/rest/1/x/".into()),
            frame: Some(true),
            ..Default::default()
        };
        assert!(Config::parse(hook_and_frame).is_err());
        assert_eq!(
            Config::parse(ConfigInput::default()).unwrap().endpoint,
            Endpoint::Auto
        );
        assert_eq!(
            Config::parse(ConfigInput {
                frame: Some(true),
                ..Default::default()
            })
            .unwrap()
            .endpoint,
            Endpoint::Frame
        );
        assert!(Config::parse(ConfigInput {
            frame: Some(false),
            ..Default::default()
        })
        .is_err());
        let callback_without_oauth = ConfigInput {
            webhook_url: Some("https://a.b/rest/1/x/".into()),
            has_token_callback: true,
            ..Default::default()
        };
        assert!(Config::parse(callback_without_oauth).is_err());
    }

    #[test]
    fn operating_limit_is_false_or_seconds_up_to_600_and_420_by_default() {
        let with = |limit| {
            Config::parse(ConfigInput {
                webhook_url: Some("https://a.b/rest/1/x/".into()),
                operating_limit: limit,
                ..Default::default()
            })
            .map(|config| config.operating_limit_s)
        };
        assert_eq!(with(OperatingLimitInput::Default), Ok(Some(420.0)));
        assert_eq!(with(OperatingLimitInput::Off), Ok(None));
        assert_eq!(with(OperatingLimitInput::Seconds(600.0)), Ok(Some(600.0)));
        assert_eq!(with(OperatingLimitInput::Seconds(0.5)), Ok(Some(0.5)));
        for bad in [0.0, -1.0, 600.5, f64::NAN, f64::INFINITY] {
            let error = with(OperatingLimitInput::Seconds(bad)).unwrap_err();
            assert_eq!(error.kind(), crate::error::Kind::Config, "{bad}");
        }
    }

    #[test]
    fn numbers_and_defaults() {
        let config = webhook("https://a.b/rest/1/x/").unwrap();
        assert_eq!(
            (config.timeout_ms, config.max_retries, config.rate_limit),
            (30_000, 3, Some(DEFAULT_RATE_LIMIT))
        );
        let with = |f: fn(&mut ConfigInput)| {
            let mut input = ConfigInput {
                webhook_url: Some("https://a.b/rest/1/x/".into()),
                ..Default::default()
            };
            f(&mut input);
            Config::parse(input)
        };
        assert_eq!(
            with(|i| i.timeout_ms = Some(1500.0)).unwrap().timeout_ms,
            1500
        );
        assert_eq!(
            with(|i| i.timeout_ms = Some(0.0)).unwrap_err().kind(),
            crate::error::Kind::Config
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let input = || ConfigInput {
                webhook_url: Some("https://a.b/rest/1/x/".into()),
                ..Default::default()
            };
            let burst = RateLimitInput::Custom {
                burst: bad,
                per_second: 5.0,
            };
            for bad in [
                ConfigInput {
                    timeout_ms: Some(bad),
                    ..input()
                },
                ConfigInput {
                    max_retries: Some(bad),
                    ..input()
                },
                ConfigInput {
                    rate_limit: burst,
                    ..input()
                },
            ] {
                assert!(Config::parse(bad).is_err());
            }
        }
        assert_eq!(with(|i| i.max_retries = Some(0.0)).unwrap().max_retries, 0);
        assert!(with(|i| i.max_retries = Some(1.5)).is_err());
        assert!(with(|i| i.max_retries = Some(-1.0)).is_err());
        assert_eq!(
            with(|i| i.rate_limit = RateLimitInput::Off)
                .unwrap()
                .rate_limit,
            None
        );
        let custom = with(|i| {
            i.rate_limit = RateLimitInput::Custom {
                burst: 250.0,
                per_second: 5.0,
            }
        })
        .unwrap();
        assert_eq!(
            custom.rate_limit,
            Some(RateLimit {
                burst: 250,
                per_second: 5.0
            })
        );
        assert!(with(|i| i.rate_limit = RateLimitInput::Custom {
            burst: 0.0,
            per_second: 5.0
        })
        .is_err());
        assert!(with(|i| i.rate_limit = RateLimitInput::Custom {
            burst: 5.0,
            per_second: 0.0
        })
        .is_err());
    }
}
