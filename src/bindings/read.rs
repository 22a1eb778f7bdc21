//! The argument and config readers: JS values into the core's inputs.
//!
//! Each member is read by its JS name and type here, in the order its errors are reported; the
//! rules for the values are the core's ([`Config::check`], [`config::parse_timeout`],
//! [`id::parse_id`]). runtime.js keeps no list of the members.

use wasm_bindgen::prelude::*;

use super::imports::{at, field, id_value, items, length, url_parses};
use crate::call::CallOptions;
use crate::config::{self, Config, ConfigInput, OperatingLimitInput, RateLimitInput};
use crate::id::{self, RawId};
use crate::secret::Secret;

/// A JS object's members, each read by name and checked for its JS type: `Ok(None)` when not
/// given, `Err(why)` when of another type (a getter that throws reads as another type).
struct Members<'a>(&'a JsValue);

impl Members<'_> {
    fn get(&self, name: &str) -> JsValue {
        field(self.0, name.as_bytes())
    }

    /// The member, unless `undefined`; `Err(why)` unless `accept` takes it.
    fn read<T>(
        &self,
        name: &str,
        why: &'static str,
        accept: impl FnOnce(&JsValue) -> Option<T>,
    ) -> Result<Option<T>, &'static str> {
        let value = self.get(name);
        if value.is_undefined() {
            return Ok(None);
        }
        accept(&value).map(Some).ok_or(why)
    }

    fn string(&self, name: &str, why: &'static str) -> Result<Option<String>, &'static str> {
        self.read(name, why, JsValue::as_string)
    }

    fn number(&self, name: &str, why: &'static str) -> Result<Option<f64>, &'static str> {
        self.read(name, why, JsValue::as_f64)
    }

    fn boolean(&self, name: &str, why: &'static str) -> Result<Option<bool>, &'static str> {
        self.read(name, why, JsValue::as_bool)
    }

    fn function(&self, name: &str, why: &'static str) -> Result<Option<JsValue>, &'static str> {
        self.read(name, why, |v| v.is_function().then(|| v.clone()))
    }
}

/// `members.TYPE("name", "name must be a TYPE")?`: one member read by its JS name and type.
macro_rules! member {
    ($members:expr, $name:literal: $type:ident) => {
        $members.$type($name, concat!($name, " must be a ", stringify!($type)))?
    };
}

/// The checked configuration and its `onTokenExpired`, or the message that refuses it.
pub fn read_config(config: &JsValue) -> Result<(Config, Option<JsValue>), &'static str> {
    if !config.is_object() {
        return Err("the configuration must be an object");
    }
    let config = Members(config);
    // Struct members are read in the order written: the first of a wrong type is reported.
    let on_token_expired = member!(config, "onTokenExpired": function);
    let input = ConfigInput {
        webhook_url: member!(config, "webhookUrl": string),
        portal: member!(config, "portal": string),
        access_token: member!(config, "accessToken": string).map(Secret::new),
        has_token_callback: on_token_expired.is_some(),
        frame: member!(config, "frame": boolean),
        timeout_ms: member!(config, "timeoutMs": number),
        max_retries: member!(config, "maxRetries": number),
        rate_limit: read_rate_limit(&config)?,
        operating_limit: read_operating_limit(&config)?,
    };
    let config = Config::check(&input)?;
    // The platform's URL parser has the last word (see `Endpoint::base_url`).
    if let Some((url, refused)) = config.endpoint.base_url() {
        if !url_parses(url.as_bytes()) {
            return Err(refused);
        }
    }
    Ok((config, on_token_expired))
}

/// `rateLimit`: `false` or `{ burst, perSecond }` with numbers (their ranges are the core's).
fn read_rate_limit(config: &Members) -> Result<RateLimitInput, &'static str> {
    const WHY: &str = "rateLimit must be false or { burst, perSecond }";
    let rate_limit = config.get("rateLimit");
    if rate_limit.is_undefined() {
        return Ok(RateLimitInput::Default);
    }
    if rate_limit.as_bool() == Some(false) {
        return Ok(RateLimitInput::Off);
    }
    let limit = Members(&rate_limit);
    match (
        rate_limit.is_object(),
        limit.get("burst").as_f64(),
        limit.get("perSecond").as_f64(),
    ) {
        (true, Some(burst), Some(per_second)) => Ok(RateLimitInput::Custom { burst, per_second }),
        _ => Err(WHY),
    }
}

/// `operatingLimit`: `false` or a number (its range is the core's).
fn read_operating_limit(config: &Members) -> Result<OperatingLimitInput, &'static str> {
    let limit = config.read(
        "operatingLimit",
        "operatingLimit must be false or a number",
        |v| match v.as_bool() {
            Some(false) => Some(OperatingLimitInput::Off),
            _ => v.as_f64().map(OperatingLimitInput::Seconds),
        },
    )?;
    Ok(limit.unwrap_or_default())
}

/// A call's options, checked.
pub struct Options {
    /// `timeoutMs`.
    pub call: CallOptions,
    /// `signal` as given, or `undefined`.
    pub signal: JsValue,
    /// `haltOnError` (bulk only).
    pub halt_on_error: bool,
    /// `onProgress` (bulk only), or `undefined`.
    pub on_progress: JsValue,
}

/// Reads `{ signal, timeoutMs }` and, when `bulk`, `{ haltOnError, onProgress }`: their types in
/// this order, then the rule for timeoutMs's value (the core's).
pub fn read_options(options: &JsValue, bulk: bool) -> Result<Options, &'static str> {
    let mut read = Options {
        call: CallOptions::default(),
        signal: JsValue::UNDEFINED,
        halt_on_error: false,
        on_progress: JsValue::UNDEFINED,
    };
    if options.is_undefined() || options.is_null() {
        return Ok(read);
    }
    // (`document.all` is refused too, as any other non-object.)
    if !options.is_object() {
        return Err("options must be an object");
    }
    let options = Members(options);
    read.signal = options.get("signal");
    // null is an object without addEventListener: refused too.
    if !read.signal.is_undefined()
        && !(read.signal.is_object() && field(&read.signal, b"addEventListener").is_function())
    {
        return Err("signal must be an AbortSignal");
    }
    let timeout_ms = member!(options, "timeoutMs": number);
    if bulk {
        read.halt_on_error = member!(options, "haltOnError": boolean).unwrap_or_default();
        read.on_progress = member!(options, "onProgress": function).unwrap_or(JsValue::UNDEFINED);
    }
    read.call.timeout_ms = config::parse_timeout(timeout_ms)?;
    Ok(read)
}

pub const ENTITY_TYPE_ID: &str =
    "entityTypeId must be a positive safe integer or its decimal string";

pub fn read_id(value: &JsValue, why: &'static str) -> Result<u64, &'static str> {
    // A bigint is checked as its decimal text, made in JS.
    let value = id_value(value);
    let text = value.as_string();
    let raw = if let Some(n) = value.as_f64() {
        RawId::Number(n)
    } else if let Some(s) = &text {
        RawId::Text(s)
    } else {
        RawId::Other
    };
    id::parse_id(raw).ok_or(why)
}

/// Reads an iterable of ids, without repeats, in first-seen order.
pub fn read_ids(ids: &JsValue) -> Result<Vec<u64>, &'static str> {
    const WHY: &str = "ids must be an iterable of positive safe integers or their decimal strings";
    let list = items(ids);
    if list.is_undefined() {
        return Err(WHY);
    }
    let count = length(&list);
    let mut unique = crate::bulk::Distinct::new(count as usize);
    for i in 0..count {
        unique.insert(read_id(&at(&list, i as i32), WHY)?);
    }
    Ok(unique.ids)
}
