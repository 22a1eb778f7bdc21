//! HTTP: routing, CORS, REST transport (bodies, faults), OAuth token endpoint, control API,
//! frame host, the BX24 library and static files.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::frame;
use crate::limits::{Limiter, Reading};
use crate::params::{parse_query, parse_query_into, url_decode};
use crate::portal::{Fault, Portal, QueuedFault, Settings};
use crate::rest::{self, Answer, RestRequest};

/// State shared by all connections.
pub struct Shared {
    pub portal: Mutex<Portal>,
    pub clock: Arc<dyn Clock>,
    pub control: bool,
    pub statics: Vec<(String, PathBuf)>,
    /// Log one line per request to stderr (`--log`).
    pub log: bool,
    /// Wakes `hang` faults (on reset and on clearing faults).
    pub release: Notify,
    /// A `drop_after_apply` fault is queued: answers carry `Connection: close`.
    pub drop_pending: AtomicBool,
    /// Bumped to make every open connection close once idle.
    pub close_idle: watch::Sender<u64>,
}

impl Shared {
    pub fn new(
        portal: Portal,
        clock: Arc<dyn Clock>,
        control: bool,
        statics: Vec<(String, PathBuf)>,
        log: bool,
    ) -> Shared {
        Shared {
            portal: Mutex::new(portal),
            clock,
            control,
            statics,
            log,
            release: Notify::new(),
            drop_pending: AtomicBool::new(false),
            close_idle: watch::channel(0).0,
        }
    }
}

pub type Resp = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (fault injection)")
    }
}
impl std::error::Error for Dropped {}

const JSON: &str = "application/json; charset=utf-8";
const MAX_BODY: usize = 32 << 20;

fn response(status: u16, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_str(ctype).unwrap());
    r
}

fn json_response(status: u16, v: &Value) -> Resp {
    response(status, JSON, serde_json::to_vec(v).unwrap_or_default())
}

fn add_cors(r: &mut Resp, origin: Option<&HeaderValue>) {
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-origin",
        origin.cloned().unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert("vary", HeaderValue::from_static("Origin"));
}

fn preflight(req: &Request<Incoming>, methods: &'static str) -> Resp {
    let mut r = response(204, "text/plain", Bytes::new());
    add_cors(&mut r, req.headers().get("origin"));
    let h = r.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static(methods),
    );
    h.insert(
        "access-control-allow-headers",
        req.headers()
            .get("access-control-request-headers")
            .cloned()
            .unwrap_or(HeaderValue::from_static("Content-Type, Accept")),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("86400"));
    if req
        .headers()
        .contains_key("access-control-request-private-network")
    {
        h.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// The service: one request in, one response out (or a dropped connection).
pub async fn route(
    sh: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Resp, Dropped> {
    if !sh.log {
        return dispatch(sh.clone(), req, peer)
            .await
            .map(|r| close_if_drop_pending(&sh, r));
    }
    let started = std::time::Instant::now();
    let line = format!("{} {}", req.method(), masked_path(req.uri().path()));
    let r = dispatch(sh.clone(), req, peer)
        .await
        .map(|r| close_if_drop_pending(&sh, r));
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match &r {
        Ok(resp) => eprintln!("{line} -> {} ({ms:.1} ms)", resp.status().as_u16()),
        Err(_) => eprintln!("{line} -> connection closed without an answer ({ms:.1} ms)"),
    }
    r
}

/// While a `drop_after_apply` fault is queued, every answer closes its connection, so the dropped
/// request arrives on a fresh connection: browsers silently re-send a request whose *reused*
/// keep-alive connection closed before any answer byte, and would hide the dropped connection.
fn close_if_drop_pending(sh: &Shared, mut r: Resp) -> Resp {
    if sh.drop_pending.load(Ordering::Relaxed) {
        r.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    r
}

/// A path for the log, with a webhook secret replaced by `***`.
pub fn masked_path(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    // ["", "rest", USER, SECRET, METHOD]
    if segs.len() >= 5 && segs[1] == "rest" {
        let mut s = segs.clone();
        s[3] = "***";
        return s.join("/");
    }
    path.to_string()
}

/// Is the request's Host a loopback name (guards the control API against DNS rebinding)?
fn loopback_host(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get("host").and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn dispatch(
    sh: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Resp, Dropped> {
    let path = req.uri().path().to_string();
    if path == "/rest" || path.starts_with("/rest/") {
        return rest_http(sh, req).await;
    }
    if path == "/oauth/token" || path == "/oauth/token/" || path.starts_with("/oauth/") {
        return Ok(oauth_http(sh, req).await);
    }
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        if !sh.control || !peer.ip().is_loopback() || !loopback_host(&req) {
            return Ok(response(
                404,
                "text/plain",
                "Not found (control API is off; start with --control)",
            ));
        }
        return Ok(control_http(sh, req).await);
    }
    if path.starts_with("/app/") {
        return Ok(frame_http(sh, req).await);
    }
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        let mut r = response(200, "text/javascript; charset=utf-8", frame::BX24_JS);
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        add_cors(&mut r, None);
        return Ok(r);
    }
    Ok(static_http(&sh, &req, &path))
}

async fn read_body(req: Request<Incoming>) -> (hyper::http::request::Parts, Bytes) {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    (parts, bytes)
}

/// Query string + body (JSON or form) as one parameter object; body keys win.
fn request_params(parts: &hyper::http::request::Parts, body: &[u8]) -> Map<String, Value> {
    let mut params = parse_query(parts.uri.query().unwrap_or(""));
    if body.is_empty() {
        return params;
    }
    let ctype = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_json =
        ctype.contains("json") || (!ctype.contains("form") && matches!(body.first(), Some(b'{')));
    if looks_json {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            params.extend(m);
        }
    } else {
        parse_query_into(&String::from_utf8_lossy(body), &mut params);
    }
    params
}

async fn rest_http(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let origin = req.headers().get("origin").cloned();
    if req.method() == Method::OPTIONS {
        return Ok(preflight(&req, "GET, POST, OPTIONS"));
    }
    let path = req.uri().path().trim_start_matches("/rest").to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(url_decode)
        .collect();
    let (hook, raw_method) = match segs.len() {
        0 => (None, String::new()),
        1 | 2 => (None, segs.last().cloned().unwrap_or_default()),
        _ => (
            Some((segs[0].clone(), segs[1].clone())),
            segs[2..].join("/"),
        ),
    };
    let lower = raw_method.to_ascii_lowercase();
    let method = lower
        .strip_suffix(".json")
        .or_else(|| lower.strip_suffix(".xml"))
        .unwrap_or(&lower)
        .to_string();
    let fault = {
        let mut p = sh.portal.lock().unwrap();
        p.requests_total += 1;
        *p.by_method.entry(method.clone()).or_default() += 1;
        let f = p.take_fault(&method);
        sh.drop_pending.store(p.drop_pending(), Ordering::Relaxed);
        f
    };
    let with_cors = |mut r: Resp| {
        add_cors(&mut r, origin.as_ref());
        r
    };
    match &fault {
        Some(Fault::Error {
            status,
            error,
            description,
        }) => {
            let now = sh.clock.now();
            sh.portal.lock().unwrap().reject(error);
            let body = json!({"error": error, "error_description": description,
                "time": rest::time_object(now, now, 0.0, 0.0, Reading::NONE)});
            return Ok(with_cors(json_response(*status, &body)));
        }
        Some(Fault::Html { status }) => {
            let html = format!(
                "<!DOCTYPE html><html><head><title>{status} Bad Gateway</title></head><body><h1>{status} Bad Gateway</h1><hr><p>nginx (emulated fault)</p></body></html>"
            );
            return Ok(with_cors(response(
                *status,
                "text/html; charset=utf-8",
                html,
            )));
        }
        Some(Fault::Empty { status }) => {
            return Ok(with_cors(response(*status, JSON, Bytes::new())))
        }
        Some(Fault::Hang) => {
            let _ = tokio::time::timeout(Duration::from_secs(600), sh.release.notified()).await;
            // Released: answer as a proxy whose upstream timed out. Closing without an answer would
            // let a browser that has not yet processed the client's abort silently re-send the
            // request on a fresh connection, and that copy would run once the fault is gone.
            let mut r = with_cors(gateway_timeout("emulated hang"));
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
            return Ok(r);
        }
        Some(Fault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        _ => {}
    }
    let https = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let (parts, body) = read_body(req).await;
    let params = request_params(&parts, &body);
    let answer = rest::handle(
        &sh.portal,
        sh.clock.as_ref(),
        RestRequest {
            method,
            hook,
            params,
            https,
        },
    )
    .await;
    if matches!(fault, Some(Fault::DropAfterApply { .. })) {
        return Err(Dropped);
    }
    let (mut status, answer) = match answer {
        Answer::Json(status, answer) => (status, answer),
        Answer::Cut => return Ok(with_cors(gateway_timeout("request limit"))),
    };
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    if let Some(Fault::Truncated { status: s }) = fault {
        bytes.truncate(bytes.len() / 2);
        status = s;
    }
    Ok(with_cors(response(status, JSON, bytes)))
}

/// The HTML page a proxy answers when the portal's run took too long.
fn gateway_timeout(why: &str) -> Resp {
    response(
        504,
        "text/html; charset=utf-8",
        format!("<html><body><h1>504 Gateway Time-out</h1><p>nginx ({why})</p></body></html>"),
    )
}

async fn oauth_http(sh: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let origin = req.headers().get("origin").cloned();
    if req.method() == Method::OPTIONS {
        return preflight(&req, "GET, POST, OPTIONS");
    }
    let path = req.uri().path().to_string();
    let (parts, body) = read_body(req).await;
    let params = request_params(&parts, &body);
    let mut r = if path.trim_end_matches('/') != "/oauth/token" {
        json_response(
            404,
            &json!({"error": "not_found", "error_description": "Unknown OAuth endpoint"}),
        )
    } else {
        let mut p = sh.portal.lock().unwrap();
        let now = sh.clock.now();
        let (status, v) = oauth_token(&mut p, &params, now);
        json_response(status, &v)
    };
    add_cors(&mut r, origin.as_ref());
    r
}

/// `/oauth/token/` with `grant_type=refresh_token`.
pub fn oauth_token(p: &mut Portal, params: &Map<String, Value>, now: f64) -> (u16, Value) {
    let get = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let err = |status: u16, code: &str, desc: &str| {
        (status, json!({"error": code, "error_description": desc}))
    };
    let grant = get("grant_type");
    if grant.is_empty() {
        return err(400, "invalid_request", "grant_type is required");
    }
    if grant != "refresh_token" {
        return err(
            400,
            "unsupported_grant_type",
            "Only grant_type=refresh_token is supported by the emulator",
        );
    }
    if get("client_id") != p.app.client_id || get("client_secret") != p.app.client_secret {
        return err(401, "invalid_client", "Invalid client credentials");
    }
    let rt = get("refresh_token");
    if rt.is_empty() {
        return err(400, "invalid_request", "refresh_token is required");
    }
    let Some(user) = p.refresh.remove(&rt) else {
        return err(400, "invalid_grant", "Invalid refresh token");
    };
    let lifetime = p.settings.token_lifetime;
    (200, p.token_answer(user, lifetime, now))
}

fn bad(msg: &str) -> Resp {
    json_response(400, &json!({"error": msg}))
}

async fn control_http(sh: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let origin = req.headers().get("origin").cloned();
    if req.method() == Method::OPTIONS {
        return preflight(&req, "GET, POST, DELETE, OPTIONS");
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let (_, body) = read_body(req).await;
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad(&format!("invalid JSON body: {e}")),
        }
    };
    let now = sh.clock.now();
    let (mut r, close_idle) = {
        let mut p = sh.portal.lock().unwrap();
        let before = p.drop_pending();
        let r = control(&mut p, &sh, &method, &path, &body, now);
        let after = p.drop_pending();
        sh.drop_pending.store(after, Ordering::Relaxed);
        (r, after && !before)
    };
    if close_idle {
        // Close the connections browsers keep idle, then give them a moment to go.
        sh.close_idle.send_modify(|g| *g += 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    add_cors(&mut r, origin.as_ref());
    r
}

fn control(
    p: &mut Portal,
    sh: &Shared,
    method: &Method,
    path: &str,
    body: &Value,
    now: f64,
) -> Resp {
    let num = |k: &str| body.get(k).and_then(Value::as_f64);
    match (method.as_str(), path) {
        ("GET", "/_emulator/state") | ("GET", "/_emulator") => json_response(200, &p.state_json()),
        ("POST", "/_emulator/reset") => {
            let seed = body.get("seed").and_then(Value::as_u64).unwrap_or(p.seed);
            p.reset(seed, now);
            sh.release.notify_waiters();
            json_response(200, &json!({"ok": true, "seed": seed}))
        }
        ("POST", "/_emulator/items") => {
            let Some(t) = body.get("entityTypeId").and_then(Value::as_i64) else {
                return bad("entityTypeId (integer) is required");
            };
            if t <= 0 || t == 5 {
                return bad("entityTypeId must be a supported CRM type or a smart process id");
            }
            let count = body
                .get("count")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .min(1_000_000) as u32;
            let ids = p.seed_items(t, count, now);
            json_response(200, &json!({"ids": ids}))
        }
        ("POST", "/_emulator/deny") => {
            let Some(t) = body.get("entityTypeId").and_then(Value::as_i64) else {
                return bad("entityTypeId (integer) is required");
            };
            let ids: Vec<i64> = body
                .get("ids")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            for id in &ids {
                p.denied.insert((t, *id));
            }
            json_response(200, &json!({"ok": true, "denied": ids.len()}))
        }
        ("POST", "/_emulator/oauth/token") => {
            let lifetime = num("lifetime").unwrap_or(p.settings.token_lifetime);
            let user = body.get("user").and_then(Value::as_u64).unwrap_or(1);
            if p.user(user).is_none() {
                return bad("unknown user (seeded users are 1..4)");
            }
            let mut v = p.token_answer(user, lifetime, now);
            v["client_id"] = json!(p.app.client_id);
            v["client_secret"] = json!(p.app.client_secret);
            json_response(200, &v)
        }
        ("POST", "/_emulator/expire-tokens") => {
            // Every access token issued so far expires now (refresh tokens stay valid).
            let n = p.access.len();
            for t in p.access.values_mut() {
                t.expires_at = t.expires_at.min(now);
            }
            json_response(200, &json!({"ok": true, "expired": n}))
        }
        ("POST", "/_emulator/faults") => {
            let m = body
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_ascii_lowercase();
            let count = body.get("count").and_then(Value::as_u64).unwrap_or(1);
            let fault = match body.get("fault").map(Fault::from_json) {
                Some(Ok(f)) => f,
                Some(Err(e)) => return bad(&e),
                None => return bad("fault is required"),
            };
            for _ in 0..count {
                p.faults.push_back(QueuedFault {
                    method: m.clone(),
                    fault: fault.clone(),
                });
            }
            json_response(200, &json!({"ok": true, "queued": p.faults.len()}))
        }
        ("DELETE", "/_emulator/faults") => {
            p.faults.clear();
            sh.release.notify_waiters();
            json_response(200, &json!({"ok": true, "queued": 0}))
        }
        ("POST", "/_emulator/config") => match apply_config(&mut p.settings, body) {
            Ok(()) => json_response(200, &p.state_json()["config"]),
            Err(e) => bad(&e),
        },
        ("GET", "/_emulator/config") => json_response(200, &p.state_json()["config"]),
        _ => json_response(
            404,
            &json!({"error": format!("no control route {method} {path}")}),
        ),
    }
}

/// Apply a `/_emulator/config` body to the settings.
pub fn apply_config(s: &mut Settings, body: &Value) -> Result<(), String> {
    let Value::Object(m) = body else {
        return Err("config body must be an object".into());
    };
    for (k, v) in m {
        let f = || v.as_f64().ok_or(format!("{k} must be a number"));
        let secs = || match v.as_f64() {
            Some(x) if x >= 0.0 => Ok(x),
            _ => Err(format!("{k} must be a number of seconds >= 0")),
        };
        match k.as_str() {
            "burst" => s.burst = f()? as u32,
            "drain" => s.drain = f()?,
            "limiter" => {
                s.limiter = v
                    .as_str()
                    .and_then(Limiter::parse)
                    .ok_or("limiter must be \"server\" or \"docs\"")?
            }
            // null: the limiter's default
            "operatingLimit" if v.is_null() => s.operating_limit = None,
            "operatingLimit" => s.operating_limit = Some(secs()?),
            "processing" | "operatingCost" => s.processing = secs()?,
            "requestLimit" => s.request_limit = secs()?,
            "timeScale" => {
                let x = f()?;
                if x <= 0.0 {
                    return Err("timeScale must be > 0".into());
                }
                s.time_scale = x;
            }
            "requireHttps" => {
                s.require_https = v.as_bool().ok_or("requireHttps must be a boolean")?
            }
            "portalError" => {
                s.portal_error = match v {
                    Value::Null => None,
                    Value::String(c)
                        if ["OVERLOAD_LIMIT", "ACCESS_DENIED", "PORTAL_DELETED"]
                            .contains(&c.as_str()) =>
                    {
                        Some(c.clone())
                    }
                    _ => return Err(
                        "portalError must be OVERLOAD_LIMIT, ACCESS_DENIED, PORTAL_DELETED or null"
                            .into(),
                    ),
                }
            }
            "tokenLifetime" => s.token_lifetime = f()?,
            other => return Err(format!("unknown config key {other}")),
        }
    }
    Ok(())
}

async fn frame_http(sh: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let (parts, body) = read_body(req).await;
    let params = request_params(&parts, &body);
    let now = sh.clock.now();
    let mut p = sh.portal.lock().unwrap();
    if path == "/app/_refresh" {
        // The frame host's server side of `refreshAuth`: as the portal, it mints a new pair for
        // the page's user (its session, here its APP_SID) and consumes no refresh token, so
        // concurrent refreshes all succeed.
        let sid = params.get("app_sid").and_then(Value::as_str).unwrap_or("");
        let Some(user) = p.frame_sessions.get(sid).copied() else {
            return json_response(
                400,
                &json!({"error": "invalid_session", "error_description": "Unknown APP_SID"}),
            );
        };
        let lifetime = p.settings.token_lifetime;
        let v = p.token_answer(user, lifetime, now);
        return json_response(200, &v);
    }
    let name = path.trim_start_matches("/app/").to_string();
    let mut r = match frame::host_page(&mut p, &name, &params, host.as_deref(), now) {
        Ok(html) => response(200, "text/html; charset=utf-8", html),
        Err(e) => response(400, "text/plain; charset=utf-8", e),
    };
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// Content type by file extension.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Resolve a URL path against the `--static` mounts (longest prefix first), refusing escapes.
pub fn resolve_static(statics: &[(String, PathBuf)], path: &str) -> Option<PathBuf> {
    let mut best: Option<(&String, &PathBuf)> = None;
    for (prefix, dir) in statics {
        let p = prefix.trim_end_matches('/');
        let hit = p.is_empty() || path == p || path.starts_with(&format!("{p}/"));
        if hit && best.is_none_or(|(b, _)| b.trim_end_matches('/').len() < p.len()) {
            best = Some((prefix, dir));
        }
    }
    let (prefix, dir) = best?;
    let rest = &path[prefix.trim_end_matches('/').len()..];
    let mut out = dir.clone();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = url_decode(seg);
        let comp = Path::new(&seg);
        if seg.contains(['/', '\\', '\0'])
            || comp.components().count() != 1
            || !matches!(comp.components().next(), Some(Component::Normal(_)))
        {
            return None;
        }
        out.push(seg);
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn static_http(sh: &Shared, req: &Request<Incoming>, path: &str) -> Resp {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        if req.method() == Method::OPTIONS {
            return preflight(req, "GET, POST, OPTIONS");
        }
        return response(405, "text/plain", "Method not allowed");
    }
    let Some(file) = resolve_static(&sh.statics, path) else {
        return response(404, "text/plain", "Not found");
    };
    match std::fs::read(&file) {
        Ok(data) => {
            let mut r = response(200, content_type(&file), data);
            r.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-cache"));
            add_cors(&mut r, None);
            r
        }
        Err(_) => response(404, "text/plain", "Not found"),
    }
}

/// Serve one accepted connection.
pub async fn serve_conn(sh: Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut close_idle = sh.close_idle.subscribe();
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper::service::service_fn(move |req| {
        let sh = sh.clone();
        async move { route(sh, req, peer).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = close_idle.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
