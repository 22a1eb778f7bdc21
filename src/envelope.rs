//! Request envelopes: the URL and JSON body of each REST call, as the docs show them.
//!
//! Webhook: `POST https://host/rest/USER/SECRET/crm.item.delete` with `{"entityTypeId":1268,"id":1}`.
//! OAuth: `POST https://host/rest/crm.item.delete` with `{"entityTypeId":1268,"id":1,"auth":"TOKEN"}`.
//! Batch: `POST {base}batch` with `{"halt":0,"cmd":{"k0":"crm.item.delete?entityTypeId=1268&id=1"}}`.
//! The headers (`Content-Type: application/json`, `Accept: application/json`) are runtime.js's
//! `send`'s. The method URL is constant per method, so a browser caches one CORS preflight.

use crate::secret::Secret;

/// `crm.item.delete`
pub const DELETE: &str = "crm.item.delete";
/// `batch`
pub const BATCH: &str = "batch";
/// Most commands one `batch` request may carry.
pub const BATCH_LIMIT: usize = 50;

/// Where and how a request is authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// A webhook base URL (`https://host/rest/USER/SECRET/`).
    Webhook {
        /// The base URL, secret included.
        base: &'a Secret,
    },
    /// Through the frame's `BX24.callMethod`, which adds the auth itself.
    Bx24,
    /// An OAuth REST base (`https://host/rest/`) and the current access token.
    OAuth {
        /// `https://host/rest/`
        rest_base: &'a str,
        /// The access token.
        token: &'a Secret,
    },
}

/// A ready `POST` request. URL and body may hold a secret, so both are [`Secret`]s: printing a
/// request shows neither.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The full URL (through BX24: the REST method alone).
    pub url: Secret,
    /// The JSON body.
    pub body: Secret,
    /// Send through `BX24.callMethod(method, body)` instead of `fetch(url)`.
    pub bx24: bool,
}

/// The `crm.item.delete` request for one item.
pub fn delete_item(auth: Auth<'_>, entity_type_id: u64, id: u64) -> HttpRequest {
    let mut params = String::with_capacity(48);
    params.push_str("{\"entityTypeId\":");
    push_u64(&mut params, entity_type_id);
    params.push_str(",\"id\":");
    push_u64(&mut params, id);
    build(auth, DELETE, params)
}

/// The `batch` request deleting `ids` (at most [`BATCH_LIMIT`]); command `k{i}` deletes `ids[i]`.
/// Inlined into its one caller by LLVM already, not left to binaryen.
#[inline(always)]
pub fn delete_batch(auth: Auth<'_>, entity_type_id: u64, ids: &[u64], halt: bool) -> HttpRequest {
    debug_assert!(ids.len() <= BATCH_LIMIT);
    let mut params = String::with_capacity(32 + ids.len() * 56);
    params.push_str(if halt {
        "{\"halt\":1,\"cmd\":{"
    } else {
        "{\"halt\":0,\"cmd\":{"
    });
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            params.push(',');
        }
        params.push_str("\"k");
        push_u64(&mut params, i as u64);
        params.push_str("\":\"crm.item.delete?entityTypeId=");
        push_u64(&mut params, entity_type_id);
        params.push_str("&id=");
        push_u64(&mut params, id);
        params.push('"');
    }
    params.push('}');
    build(auth, BATCH, params)
}

/// Completes `params` (an open JSON object) with the auth and builds the request.
fn build(auth: Auth<'_>, method: &'static str, mut params: String) -> HttpRequest {
    // What comes before the method in the URL: one URL built and one `}` pushed for all three.
    let (base, bx24) = match auth {
        Auth::Webhook { base } => (base.expose(), false),
        Auth::OAuth { rest_base, token } => {
            params.push_str(",\"auth\":");
            push_json_string(&mut params, token.expose());
            (rest_base, false)
        }
        // BX24.callMethod takes the method alone.
        Auth::Bx24 => ("", true),
    };
    params.push('}');
    HttpRequest {
        url: Secret::new(base.to_owned() + method),
        body: Secret::new(params),
        bx24,
    }
}

/// Appends a decimal number (no `format!`: it costs wasm bytes).
pub fn push_u64(out: &mut String, n: u64) {
    // Recursion: at most 20 deep.
    if n >= 10 {
        push_u64(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[(c as usize) >> 4]));
                out.push(char::from(b"0123456789abcdef"[(c as usize) & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn hook() -> Secret {
        Secret::new("https://acme.bitrix24.com/rest/1/s3cr3t/".into())
    }

    #[test]
    fn webhook_delete() {
        let base = hook();
        let request = delete_item(Auth::Webhook { base: &base }, 1268, 1);
        assert_eq!(
            request.url.expose(),
            "https://acme.bitrix24.com/rest/1/s3cr3t/crm.item.delete"
        );
        assert_eq!(request.body.expose(), r#"{"entityTypeId":1268,"id":1}"#);
        assert!(!format!("{request:?}").contains("s3cr3t"));
    }

    #[test]
    fn oauth_delete() {
        let token = Secret::new("tok\"en".into());
        let request = delete_item(
            Auth::OAuth {
                rest_base: "https://acme.bitrix24.com/rest/",
                token: &token,
            },
            2,
            9007199254740991,
        );
        assert_eq!(
            request.url.expose(),
            "https://acme.bitrix24.com/rest/crm.item.delete"
        );
        assert_eq!(
            request.body.expose(),
            r#"{"entityTypeId":2,"id":9007199254740991,"auth":"tok\"en"}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(request.body.expose()).is_ok());
        assert!(!format!("{request:?}").contains("tok"));
    }

    #[test]
    fn batch() {
        let base = hook();
        let request = delete_batch(Auth::Webhook { base: &base }, 1268, &[5, 7], false);
        assert_eq!(
            request.url.expose(),
            "https://acme.bitrix24.com/rest/1/s3cr3t/batch"
        );
        assert_eq!(
            request.body.expose(),
            r#"{"halt":0,"cmd":{"k0":"crm.item.delete?entityTypeId=1268&id=5","k1":"crm.item.delete?entityTypeId=1268&id=7"}}"#
        );
        let token = Secret::new("t".into());
        let request = delete_batch(
            Auth::OAuth {
                rest_base: "https://a.b/rest/",
                token: &token,
            },
            2,
            &[1],
            true,
        );
        assert_eq!(
            request.body.expose(),
            r#"{"halt":1,"cmd":{"k0":"crm.item.delete?entityTypeId=2&id=1"},"auth":"t"}"#
        );
    }

    #[test]
    fn through_bx24() {
        let request = delete_item(Auth::Bx24, 1268, 3);
        assert!(request.bx24);
        assert_eq!(request.url.expose(), "crm.item.delete");
        assert_eq!(request.body.expose(), r#"{"entityTypeId":1268,"id":3}"#);
    }

    #[test]
    fn numbers() {
        for n in [0, 1, 9, 10, 1268, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
