//! The REST API proper: authentication, the request pipeline, the methods and `batch`.
//! Transport-free: it takes a parsed request and gives back a status and a JSON body (or `Cut`).
//!
//! A command (a call, or one of a batch's commands) is checked and counted with the portal locked,
//! spends its server time (`--processing`) with the portal unlocked, so other requests go on, then
//! runs and is charged with the portal locked again.

use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use crate::clock::{iso8601, Clock};
use crate::limits::{Limiter, Reading};
use crate::params::{int_param, parse_query, truthy, IntParam};
use crate::portal::{Portal, Settings};

/// An error answer: HTTP status, `error`, `error_description`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub desc: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, desc: &str) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            desc: desc.to_string(),
        }
    }
    fn body(&self) -> Value {
        json!({"error": self.code, "error_description": self.desc})
    }
}

fn no_auth() -> ApiError {
    ApiError::new(401, "NO_AUTH_FOUND", "Wrong authorization data")
}

fn operation_time_limit() -> ApiError {
    ApiError::new(
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    )
}

/// What the transport sends back for a REST request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// HTTP status and JSON body.
    Json(u16, Value),
    /// The request's run passed the request limit and was cut (the commands run so far stay
    /// applied): the transport answers an HTML 504 page.
    Cut,
}

/// The request's run would pass the request limit.
struct Cut;

/// A request's run: when it started (the clock's seconds) and the portal seconds its commands
/// spent so far. Each command waits until `started` + the run's real time, so waits do not add
/// up a timer's overshoot (a 50-command batch at 10 ms each stays ≈ 0.5 s on a loaded machine).
struct Run {
    started: f64,
    spent: f64,
}

impl Run {
    fn new(started: f64) -> Self {
        Run {
            started,
            spent: 0.0,
        }
    }
    /// Wait until the run has lasted `portal_secs` in all (real time = portal / time scale).
    async fn wait_until(&self, clock: &dyn Clock, s: &Settings, portal_secs: f64) {
        clock
            .sleep(self.started + s.real(portal_secs) - clock.now())
            .await;
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: u64,
    pub scopes: Vec<String>,
    /// Identity for the operating limit: `hook:USER:SECRET` or `app:CLIENT_ID`.
    pub who: String,
}

/// A REST request, already parsed from HTTP.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// Lower-cased method name without `.json`.
    pub method: String,
    /// `(user, secret)` from `/rest/USER/SECRET/METHOD`.
    pub hook: Option<(String, String)>,
    pub params: Map<String, Value>,
    pub https: bool,
}

/// What a method gives back on success.
#[derive(Debug, Clone)]
struct Done {
    result: Value,
    total: Option<u64>,
    next: Option<u64>,
}

impl Done {
    fn of(result: Value) -> Done {
        Done {
            result,
            total: None,
            next: None,
        }
    }
}

/// The scope a method needs: `None` if the method does not exist, `Some("")` for none.
pub fn method_scope(method: &str) -> Option<&'static str> {
    Some(match method {
        "crm.item.delete" | "crm.item.add" | "crm.item.get" | "crm.item.list" => "crm",
        "batch" | "user.current" | "profile" | "scope" | "server.time" | "methods" => "",
        _ => return None,
    })
}

/// Build the `time` object: `start`/`finish` real Unix seconds, `duration`/`processing` and the
/// reading in portal seconds (`operating_reset_at` rounded up, as the portal does).
pub fn time_object(
    start: f64,
    finish: f64,
    duration: f64,
    processing: f64,
    reading: Reading,
) -> Value {
    let mut t = Map::new();
    t.insert("start".into(), json!(start));
    t.insert("finish".into(), json!(finish));
    t.insert("duration".into(), json!(duration));
    t.insert("processing".into(), json!(processing));
    t.insert("date_start".into(), json!(iso8601(start)));
    t.insert("date_finish".into(), json!(iso8601(finish)));
    // whole numbers as integers, like the portal's `"operating": 0`
    let operating = reading.operating;
    if operating.fract() == 0.0 && operating.abs() < 1e15 {
        t.insert("operating".into(), json!(operating as i64));
    } else {
        t.insert("operating".into(), json!(operating));
    }
    if let Some(r) = reading.reset_at {
        t.insert("operating_reset_at".into(), json!(r.ceil() as i64));
    }
    Value::Object(t)
}

/// The answer's `duration` for the real seconds from `start` to `finish`: portal seconds under the
/// server model (scaled by `time_scale`), plain seconds under the docs model (as before).
fn duration(s: &Settings, start: f64, finish: f64) -> f64 {
    match s.limiter {
        Limiter::Server => (finish - start) * s.time_scale,
        Limiter::Docs => finish - start,
    }
}

fn lock(portal: &Mutex<Portal>) -> MutexGuard<'_, Portal> {
    portal.lock().unwrap()
}

/// A top-level answer: its error (if any) counts in `rejected`, and under the server model a 429
/// carries no `time`.
fn top_level(p: &mut Portal, status: u16, mut body: Value) -> Answer {
    if let Some(code) = body.get("error").and_then(Value::as_str) {
        p.reject(code);
    }
    if status == 429 && p.settings.limiter == Limiter::Server {
        if let Some(m) = body.as_object_mut() {
            m.remove("time");
        }
    }
    Answer::Json(status, body)
}

/// A top-level error answer to a request that started at `start`.
fn refuse(p: &mut Portal, clock: &dyn Clock, start: f64, e: ApiError) -> Answer {
    let now = clock.now();
    let d = duration(&p.settings, start, now);
    let mut body = e.body();
    body["time"] = time_object(start, now, d, d, Reading::NONE);
    top_level(p, e.status, body)
}

/// Handle one REST request against the portal.
pub async fn handle(portal: &Mutex<Portal>, clock: &dyn Clock, mut req: RestRequest) -> Answer {
    let start = clock.now();
    let caller = {
        let mut p = lock(portal);
        match admit_request(&mut p, &mut req, start) {
            Ok(c) => c,
            Err(e) => return refuse(&mut p, clock, start, e),
        }
    };
    if req.method == "batch" {
        return batch(portal, clock, &caller, &req.params, start)
            .await
            .unwrap_or(Answer::Cut);
    }
    let mut run = Run::new(start);
    match command(portal, clock, &caller, &req.method, &req.params, &mut run).await {
        Ok((status, body)) => top_level(&mut lock(portal), status, body),
        Err(Cut) => Answer::Cut,
    }
}

/// The checks every request passes before its method: https, portal error, leaky bucket,
/// authentication, the method exists.
fn admit_request(p: &mut Portal, req: &mut RestRequest, now: f64) -> Result<Caller, ApiError> {
    if p.settings.require_https && !req.https {
        return Err(ApiError::new(400, "INVALID_REQUEST", "Https required"));
    }
    if let Some(code) = p.settings.portal_error.clone() {
        return Err(match code.as_str() {
            "OVERLOAD_LIMIT" => {
                ApiError::new(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload")
            }
            "ACCESS_DENIED" => ApiError::new(
                403,
                "ACCESS_DENIED",
                "REST API is available only on commercial plans",
            ),
            "PORTAL_DELETED" => ApiError::new(500, "PORTAL_DELETED", "Portal was deleted"),
            other => ApiError::new(500, other, "Portal error"),
        });
    }
    if !p.bucket_admit(now) {
        return Err(ApiError::new(
            503,
            "QUERY_LIMIT_EXCEEDED",
            "Too many requests",
        ));
    }
    let auth = req.params.remove("auth");
    let caller = authenticate(p, req.hook.as_ref(), auth.as_ref(), now)?;
    if method_scope(&req.method).is_none() {
        return Err(ApiError::new(
            404,
            "ERROR_METHOD_NOT_FOUND",
            "Method not found!",
        ));
    }
    Ok(caller)
}

/// One call, at top level or inside a batch: the scope and operating-limit checks, the server
/// time it spends, the method and the charge. Gives (status, body with its `time`), or `Cut` when
/// it would take the request's `run` (portal seconds so far) past the request limit.
async fn command(
    portal: &Mutex<Portal>,
    clock: &dyn Clock,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
    run: &mut Run,
) -> Result<(u16, Value), Cut> {
    let arrived = clock.now();
    let (settings, admitted) = {
        let mut p = lock(portal);
        *p.calls_by_method.entry(method.to_string()).or_default() += 1;
        let admitted = check(&mut p, caller, method, arrived);
        (p.settings.clone(), admitted)
    };
    // The command's `start` is when the run's schedule has it begin: a command that starts late
    // waits less to keep the run on time, so its own arrival would understate its length.
    let start = match settings.limiter {
        Limiter::Server => arrived.min(run.started + settings.real(run.spent)),
        Limiter::Docs => arrived,
    };
    let spent = match admitted {
        Ok(()) => spend(clock, &settings, run).await?,
        Err(_) => 0.0,
    };
    let mut guard = lock(portal);
    let p = &mut *guard;
    let now = clock.now();
    let outcome = admitted.and_then(|()| {
        let r = run_method(p, caller, method, params, now);
        p.meters
            .charge_call(&p.settings, method, &caller.who, spent, now);
        r
    });
    let processing = match settings.limiter {
        Limiter::Server => spent,
        Limiter::Docs if settings.processing > 0.0 => settings.processing,
        Limiter::Docs => now - start,
    };
    let reading = p.meters.reading(&p.settings, method, &caller.who, now);
    let time = time_object(
        start,
        now,
        duration(&settings, start, now),
        processing,
        reading,
    );
    Ok(match outcome {
        Ok(done) => {
            let mut m = Map::new();
            m.insert("result".into(), done.result);
            if let Some(n) = done.next {
                m.insert("next".into(), json!(n));
            }
            if let Some(t) = done.total {
                m.insert("total".into(), json!(t));
            }
            m.insert("time".into(), time);
            (200, Value::Object(m))
        }
        Err(e) => {
            let mut body = e.body();
            body["time"] = time;
            (e.status, body)
        }
    })
}

/// Spend one command's server time: `processing` portal seconds under the server model (none
/// under the docs model). When that would take the request's run past the request limit, the
/// request is cut at the limit instead. Gives the seconds spent.
async fn spend(clock: &dyn Clock, s: &Settings, run: &mut Run) -> Result<f64, Cut> {
    if s.limiter == Limiter::Docs {
        return Ok(0.0);
    }
    let secs = s.processing;
    if s.request_limit > 0.0 && run.spent + secs > s.request_limit {
        run.wait_until(clock, s, s.request_limit).await;
        return Err(Cut);
    }
    if secs > 0.0 {
        run.wait_until(clock, s, run.spent + secs).await;
    }
    run.spent += secs;
    Ok(secs)
}

fn authenticate(
    p: &Portal,
    hook: Option<&(String, String)>,
    auth: Option<&Value>,
    now: f64,
) -> Result<Caller, ApiError> {
    if let Some((user, secret)) = hook {
        let w = p
            .webhooks
            .iter()
            .find(|w| w.user.to_string() == *user && w.secret == *secret)
            .ok_or_else(no_auth)?;
        return Ok(Caller {
            user: w.user,
            scopes: w.scopes.clone(),
            who: format!("hook:{}:{}", w.user, w.secret),
        });
    }
    let token = match auth {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(no_auth()),
    };
    let t = p.access.get(token).ok_or_else(no_auth)?;
    if t.expires_at <= now {
        return Err(ApiError::new(
            401,
            "expired_token",
            "The access token provided has expired",
        ));
    }
    Ok(Caller {
        user: t.user,
        scopes: p.app.scopes.clone(),
        who: format!("app:{}", p.app.client_id),
    })
}

/// The checks of a call before it runs: the caller's scope, then the operating limit.
fn check(p: &mut Portal, caller: &Caller, method: &str, now: f64) -> Result<(), ApiError> {
    let scope = method_scope(method)
        .ok_or_else(|| ApiError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"))?;
    if !scope.is_empty() && !caller.scopes.iter().any(|s| s == scope) {
        return Err(ApiError::new(
            403,
            "insufficient_scope",
            "The request requires higher privileges than provided by the webhook token",
        ));
    }
    p.meters
        .admit(&p.settings, method, &caller.who, now)
        .map_err(|_| operation_time_limit())
}

fn arg_missing(name: &str) -> ApiError {
    ApiError::new(
        400,
        "100",
        &format!("Could not find value for parameter {{{name}}}"),
    )
}

fn int_arg(params: &Map<String, Value>, name: &str) -> Result<i64, ApiError> {
    match int_param(params, name) {
        IntParam::Value(v) => Ok(v),
        IntParam::Missing => Err(arg_missing(name)),
        IntParam::Invalid(s) => Err(ApiError::new(
            400,
            "100",
            &format!("Invalid value {s} to match with parameter {{{name}}}. Should be value of type int."),
        )),
    }
}

/// Common checks of crm.item.*: intranet user, supported and existing type.
fn crm_type(p: &Portal, caller: &Caller, params: &Map<String, Value>) -> Result<i64, ApiError> {
    let user = p.user(caller.user).ok_or_else(no_auth)?;
    if !user.intranet {
        return Err(ApiError::new(
            403,
            "allowed_only_intranet_user",
            "Action is allowed only to intranet users",
        ));
    }
    let t = int_arg(params, "entityTypeId")?;
    if t == 5 {
        return Err(ApiError::new(
            400,
            "ENTITY_TYPE_NOT_SUPPORTED",
            "Entity type `INVOICE` is not supported",
        ));
    }
    if !p.type_exists(t) {
        return Err(ApiError::new(400, "NOT_FOUND", "SPA not found"));
    }
    Ok(t)
}

fn item_not_found() -> ApiError {
    ApiError::new(400, "NOT_FOUND", "Item not found")
}

fn run_method(
    p: &mut Portal,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
    now: f64,
) -> Result<Done, ApiError> {
    match method {
        "crm.item.delete" => {
            let t = crm_type(p, caller, params)?;
            let id = int_arg(params, "id")?;
            if !p.items.get(&t).is_some_and(|m| m.contains_key(&id)) {
                return Err(item_not_found());
            }
            let user = p.user(caller.user).ok_or_else(no_auth)?;
            if user.no_delete.contains(&t) || p.denied.contains(&(t, id)) {
                return Err(ApiError::new(403, "ACCESS_DENIED", "Access denied"));
            }
            p.items.get_mut(&t).map(|m| m.remove(&id));
            p.deleted.push((t, id));
            Ok(Done::of(json!([])))
        }
        "crm.item.get" => {
            let t = crm_type(p, caller, params)?;
            let id = int_arg(params, "id")?;
            let it = p
                .items
                .get(&t)
                .and_then(|m| m.get(&id))
                .ok_or_else(item_not_found)?;
            Ok(Done::of(json!({"item": Portal::item_json(t, it)})))
        }
        "crm.item.add" => {
            let t = crm_type(p, caller, params)?;
            let mut fields = match params.get("fields") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            let title = match fields.remove("title").or_else(|| fields.remove("TITLE")) {
                Some(Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let id = p.add_item(t, title, fields, now);
            let it = &p.items[&t][&id];
            Ok(Done::of(json!({"item": Portal::item_json(t, it)})))
        }
        "crm.item.list" => {
            let t = crm_type(p, caller, params)?;
            let start = match int_param(params, "start") {
                IntParam::Value(v) if v > 0 => v as usize,
                _ => 0,
            };
            let filter = match params.get("filter") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            let desc = params
                .get("order")
                .and_then(|o| o.get("id").or_else(|| o.get("ID")))
                .and_then(Value::as_str)
                .is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            let mut all: Vec<&crate::portal::Item> = p.items[&t]
                .values()
                .filter(|it| matches_filter(it, &filter))
                .collect();
            if desc {
                all.reverse();
            }
            let total = all.len();
            let page: Vec<Value> = all
                .iter()
                .skip(start)
                .take(50)
                .map(|it| Portal::item_json(t, it))
                .collect();
            let next = (start + 50 < total).then_some((start + 50) as u64);
            Ok(Done {
                result: json!({"items": page}),
                total: Some(total as u64),
                next,
            })
        }
        "user.current" | "profile" => {
            let u = p.user(caller.user).ok_or_else(no_auth)?;
            Ok(Done::of(json!({
                "ID": u.id.to_string(),
                "ADMIN": u.admin,
                "NAME": u.name,
                "LAST_NAME": u.last_name,
                "PERSONAL_GENDER": "",
                "TIME_ZONE": "",
                "TIME_ZONE_OFFSET": 0,
                "IS_EXTRANET": !u.intranet,
            })))
        }
        "scope" => Ok(Done::of(json!(caller.scopes))),
        "methods" => Ok(Done::of(json!([
            "batch",
            "crm.item.add",
            "crm.item.delete",
            "crm.item.get",
            "crm.item.list",
            "methods",
            "profile",
            "scope",
            "server.time",
            "user.current"
        ]))),
        "server.time" => Ok(Done::of(json!(iso8601(now)))),
        _ => Err(ApiError::new(
            404,
            "ERROR_METHOD_NOT_FOUND",
            "Method not found!",
        )),
    }
}

fn matches_filter(it: &crate::portal::Item, filter: &Map<String, Value>) -> bool {
    let id_list = |v: &Value| -> Vec<i64> {
        match v {
            Value::Array(a) => a.iter().filter_map(num).collect(),
            Value::Object(m) => m.values().filter_map(num).collect(),
            other => num(other).into_iter().collect(),
        }
    };
    filter.iter().all(|(k, v)| match k.as_str() {
        "id" | "=id" | "@id" | "ID" | "=ID" | "@ID" => id_list(v).contains(&it.id),
        ">id" | ">ID" => num(v).is_some_and(|x| it.id > x),
        ">=id" | ">=ID" => num(v).is_some_and(|x| it.id >= x),
        "<id" | "<ID" => num(v).is_some_and(|x| it.id < x),
        "<=id" | "<=ID" => num(v).is_some_and(|x| it.id <= x),
        "title" | "=title" => v.as_str() == Some(it.title.as_str()),
        "%title" => v.as_str().is_some_and(|s| it.title.contains(s)),
        _ => true,
    })
}

fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// JSON of a batch container: `[]` when empty, an array when keyed 0..n-1 from an array `cmd`,
/// else an object.
fn container(entries: Vec<(String, Value)>, list_like: bool) -> Value {
    if entries.is_empty() {
        return json!([]);
    }
    if list_like
        && entries
            .iter()
            .enumerate()
            .all(|(i, (k, _))| *k == i.to_string())
    {
        return Value::Array(entries.into_iter().map(|(_, v)| v).collect());
    }
    Value::Object(entries.into_iter().collect())
}

/// Replace `$result[key][field]...` in parameter values with earlier commands' results
/// (scalars only; an unresolved reference stays as written).
fn substitute_results(v: &mut Value, done: &[(String, Value)]) {
    match v {
        Value::String(s) if s.contains("$result[") => *s = substitute_str(s, done),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute_results(x, done)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute_results(x, done)),
        _ => {}
    }
}

fn substitute_str(s: &str, done: &[(String, Value)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("$result[") {
        out.push_str(&rest[..at]);
        let mut tail = &rest[at + "$result".len()..];
        let mut path = vec![];
        while let Some(inner) = tail.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            path.push(&inner[..close]);
            tail = &inner[close + 1..];
        }
        let value = path.split_first().and_then(|(key, fields)| {
            let mut v = &done.iter().find(|(k, _)| k == key)?.1;
            for f in fields {
                v = match v {
                    Value::Object(m) => m.get(*f)?,
                    Value::Array(a) => a.get(f.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            match v {
                Value::String(x) => Some(x.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(if *b { "1" } else { "" }.to_string()),
                _ => None,
            }
        });
        match value {
            Some(x) => out.push_str(&x),
            None => out.push_str(&rest[at..rest.len() - tail.len()]),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The commands of a `batch`: (key, command string) and whether `cmd` was list-like.
type Commands = (Vec<(String, Value)>, bool);

fn batch_commands(params: &Map<String, Value>) -> Result<Commands, ApiError> {
    let (cmds, list_like): Commands = match params.get("cmd") {
        Some(Value::Object(m)) => {
            let list_like = m.keys().enumerate().all(|(i, k)| *k == i.to_string());
            (
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                list_like,
            )
        }
        Some(Value::Array(a)) => (
            a.iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v.clone()))
                .collect(),
            true,
        ),
        None | Some(Value::Null) => (vec![], false),
        Some(Value::String(s)) if s.is_empty() => (vec![], false),
        Some(_) => {
            return Err(ApiError::new(
                400,
                "ERROR_BATCH_CMD",
                "Invalid cmd: an object or array of method?query strings",
            ))
        }
    };
    if cmds.len() > 50 {
        return Err(ApiError::new(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        ));
    }
    Ok((cmds, list_like))
}

/// `batch`: checked under the method `batch`, then its commands one after another, each checked
/// and charged under its own method; then the batch's own charge.
async fn batch(
    portal: &Mutex<Portal>,
    clock: &dyn Clock,
    caller: &Caller,
    params: &Map<String, Value>,
    start: f64,
) -> Result<Answer, Cut> {
    let halt = truthy(params.get("halt"));
    let (cmds, list_like) = {
        let mut p = lock(portal);
        match check(&mut p, caller, "batch", start).and_then(|()| batch_commands(params)) {
            Ok(c) => c,
            Err(e) => return Ok(refuse(&mut p, clock, start, e)),
        }
    };
    let mut run = Run::new(start);
    let (mut result, mut errors, mut totals, mut nexts, mut times) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (key, cmd) in cmds {
        let cmd_start = clock.now();
        let cmd = match cmd {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let (method, query) = match cmd.find('?') {
            Some(i) => (&cmd[..i], &cmd[i + 1..]),
            None => (cmd.as_str(), ""),
        };
        let method = method.trim().trim_start_matches('/').to_ascii_lowercase();
        let method = method.strip_suffix(".json").unwrap_or(&method).to_string();
        let mut sub = parse_query(query);
        sub.remove("auth");
        for v in sub.values_mut() {
            substitute_results(v, &result);
        }
        let refused = if method == "batch" {
            Some(ApiError::new(
                405,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            ))
        } else if method_scope(&method).is_none() {
            Some(ApiError::new(
                404,
                "ERROR_METHOD_NOT_FOUND",
                "Method not found!",
            ))
        } else {
            None
        };
        let (ok, mut body) = match refused {
            Some(e) => {
                let now = clock.now();
                let d = duration(&lock(portal).settings, cmd_start, now);
                let mut b = e.body();
                b["time"] = time_object(cmd_start, now, d, d, Reading::NONE);
                (false, b)
            }
            None => {
                let (status, body) =
                    command(portal, clock, caller, &method, &sub, &mut run).await?;
                if status == 429 {
                    lock(portal).reject("OPERATION_TIME_LIMIT");
                }
                (status < 300, body)
            }
        };
        let time = body
            .as_object_mut()
            .and_then(|m| m.remove("time"))
            .unwrap_or(Value::Null);
        times.push((key.clone(), time));
        if ok {
            if let Some(t) = body.get("total") {
                totals.push((key.clone(), t.clone()));
            }
            if let Some(n) = body.get("next") {
                nexts.push((key.clone(), n.clone()));
            }
            result.push((key, body.get("result").cloned().unwrap_or(Value::Null)));
        } else {
            errors.push((key, body));
            if halt {
                break;
            }
        }
    }
    let mut guard = lock(portal);
    let p = &mut *guard;
    let now = clock.now();
    p.meters
        .charge_batch(&p.settings, &caller.who, run.spent, now);
    let d = duration(&p.settings, start, now);
    let processing = match p.settings.limiter {
        Limiter::Server => run.spent,
        Limiter::Docs => now - start,
    };
    let reading = p.meters.reading(&p.settings, "batch", &caller.who, now);
    Ok(Answer::Json(
        200,
        json!({
            "result": {
                "result": container(result, list_like),
                "result_error": container(errors, list_like),
                "result_total": container(totals, list_like),
                "result_next": container(nexts, list_like),
                "result_time": container(times, list_like),
            },
            "time": time_object(start, now, d, processing, reading),
        }),
    ))
}
