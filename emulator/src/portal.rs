//! The emulated portal's state: users, webhooks, the OAuth app and its tokens, CRM items,
//! counters, limits and queued faults. Everything here is plain data behind one mutex.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{json, Map, Value};

use crate::clock::iso8601;
use crate::limits::{Limiter, Meters};

/// Live settings (`/_emulator/config` changes them; reset restores the start-up ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Leaky-bucket size; 0 turns the request-intensity limit off.
    pub burst: u32,
    /// Leaky-bucket drain, requests per (emulated) second.
    pub drain: f64,
    /// The operating-limit model (see `limits`).
    pub limiter: Limiter,
    /// Operating limit in portal seconds per method per webhook/app over ten minutes; 0 turns it
    /// off; `None` is the limiter's default ([`Settings::operating_limit`]).
    pub operating_limit: Option<f64>,
    /// Portal seconds of server time each executed command takes (`--processing`). The server
    /// model spends them (waits `processing / time_scale` real seconds) and charges the run; the docs
    /// model charges them without waiting.
    pub processing: f64,
    /// A request whose run passes this many portal seconds is cut (HTML 504); 0 turns it off.
    pub request_limit: f64,
    /// Emulated seconds per real second for the limits (2 = limits run twice as fast).
    pub time_scale: f64,
    /// Answer `INVALID_REQUEST` "Https required" to plain-http requests.
    pub require_https: bool,
    /// A portal-level error answered to every REST call: OVERLOAD_LIMIT, ACCESS_DENIED, PORTAL_DELETED.
    pub portal_error: Option<String>,
    /// OAuth access-token lifetime in seconds.
    pub token_lifetime: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            burst: 50,
            drain: 2.0,
            limiter: Limiter::Server,
            operating_limit: None,
            processing: 0.0,
            request_limit: 60.0,
            time_scale: 1.0,
            require_https: false,
            portal_error: None,
            token_lifetime: 3600.0,
        }
    }
}

impl Settings {
    /// The operating limit in force: the one set, else the limiter's default.
    pub fn operating_limit(&self) -> f64 {
        self.operating_limit.unwrap_or(self.limiter.default_limit())
    }
    /// `portal_secs` portal seconds in real seconds (the limits' clocks run `time_scale` times faster).
    pub fn real(&self, portal_secs: f64) -> f64 {
        portal_secs / self.time_scale.max(1e-9)
    }
}

/// What a seeded webhook is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    NoDelete,
    Extranet,
    NoCrmScope,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::NoDelete => "no_delete",
            Role::Extranet => "extranet",
            Role::NoCrmScope => "no_crm_scope",
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: &'static str,
    pub last_name: &'static str,
    pub admin: bool,
    pub intranet: bool,
    /// Entity types this user may not delete from.
    pub no_delete: &'static [i64],
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub user: u64,
    pub secret: String,
    pub scopes: Vec<String>,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub user: u64,
    pub expires_at: f64,
}

/// One CRM item.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub title: String,
    pub created: f64,
    pub fields: Map<String, Value>,
}

/// A fault to answer instead of (or around) the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer `status` with `{"error","error_description"}`; the call is not executed.
    Error {
        status: u16,
        error: String,
        description: String,
    },
    /// Answer an HTML error page with `status`; not executed.
    Html { status: u16 },
    /// Answer `status` with an empty body; not executed.
    Empty { status: u16 },
    /// Execute the call, then answer `status` with the first half of the JSON body.
    Truncated { status: u16 },
    /// Wait `ms`, then handle normally.
    Delay { ms: u64 },
    /// Execute the call, then close the connection without answering. With `fresh` (the default)
    /// every answer closes its connection while the fault is queued, so the dropped request comes
    /// on a new connection and a browser reports a network error instead of silently re-sending it.
    DropAfterApply { fresh: bool },
    /// Never answer (until the client gives up, or a reset / fault clear / 10 minutes).
    Hang,
}

impl Fault {
    /// Parse the control API's `{"kind": ..}` object.
    pub fn from_json(v: &Value) -> Result<Fault, String> {
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("fault.kind is required")?;
        let status = |d: u16| {
            v.get("status")
                .and_then(Value::as_u64)
                .map(|s| s as u16)
                .unwrap_or(d)
        };
        Ok(match kind {
            "error" => {
                let error = v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("QUERY_LIMIT_EXCEEDED")
                    .to_string();
                let description = v
                    .get("description")
                    .or_else(|| v.get("error_description"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| default_description(&error).to_string());
                Fault::Error {
                    status: status(503),
                    error,
                    description,
                }
            }
            "html" => Fault::Html {
                status: status(502),
            },
            "empty" => Fault::Empty {
                status: status(200),
            },
            "truncated" => Fault::Truncated {
                status: status(200),
            },
            "delay" => Fault::Delay {
                ms: v.get("ms").and_then(Value::as_u64).unwrap_or(1000),
            },
            "drop_after_apply" | "drop" => Fault::DropAfterApply {
                fresh: v.get("fresh").and_then(Value::as_bool).unwrap_or(true),
            },
            "hang" => Fault::Hang,
            other => return Err(format!("unknown fault kind {other:?}")),
        })
    }
}

/// The documented `error_description` of a code (for injected errors given without one).
pub fn default_description(code: &str) -> &'static str {
    match code {
        "QUERY_LIMIT_EXCEEDED" => "Too many requests",
        "INTERNAL_SERVER_ERROR" => "Internal server error",
        "ERROR_UNEXPECTED_ANSWER" => "Server returned an unexpected response",
        "OVERLOAD_LIMIT" => "REST API is blocked due to overload",
        "OPERATION_TIME_LIMIT" => "Method is blocked due to operation time limit.",
        "NO_AUTH_FOUND" => "Wrong authorization data",
        "expired_token" => "The access token provided has expired",
        "invalid_token" => "The access token provided is invalid",
        "insufficient_scope" => {
            "The request requires higher privileges than provided by the webhook token"
        }
        "INVALID_CREDENTIALS" => "Invalid request credentials",
        "user_access_error" => "The user does not have access to the application",
        "INVALID_REQUEST" => "Https required",
        "PORTAL_DELETED" => "Portal was deleted",
        "ERROR_METHOD_NOT_FOUND" => "Method not found!",
        "ERROR_BATCH_LENGTH_EXCEEDED" => "Max batch length exceeded",
        "ERROR_BATCH_METHOD_NOT_ALLOWED" => "Method is not allowed for batch usage",
        "NOT_FOUND" => "Not found",
        "ACCESS_DENIED" => "Access denied",
        "allowed_only_intranet_user" => "Action is allowed only to intranet users",
        "ENTITY_TYPE_NOT_SUPPORTED" => "Entity type is not supported",
        _ => "Injected error",
    }
}

#[derive(Debug, Clone)]
pub struct QueuedFault {
    /// A top-level method name (`crm.item.delete`, `batch`, ...) or `*`.
    pub method: String,
    pub fault: Fault,
}

/// The whole emulated portal.
pub struct Portal {
    pub seed: u64,
    pub items_per_type: u32,
    pub startup: Settings,
    pub settings: Settings,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub users: Vec<User>,
    pub webhooks: Vec<Webhook>,
    pub app: App,
    pub member_id: String,
    pub access: HashMap<String, AccessToken>,
    /// refresh token -> user
    pub refresh: HashMap<String, u64>,
    /// The frame host's sessions: APP_SID -> user (a `refreshAuth` mints that user a new pair).
    pub frame_sessions: HashMap<String, u64>,
    token_counter: u64,
    pub items: BTreeMap<i64, BTreeMap<i64, Item>>,
    next_id: HashMap<i64, i64>,
    pub denied: HashSet<(i64, i64)>,
    pub deleted: Vec<(i64, i64)>,
    pub requests_total: u64,
    pub by_method: BTreeMap<String, u64>,
    pub calls_by_method: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub faults_served: u64,
    bucket_level: f64,
    bucket_last: f64,
    /// The operating limit's baskets and bans.
    pub meters: Meters,
    pub faults: VecDeque<QueuedFault>,
}

/// Entity types `crm.item.*` accepts besides seeded smart processes.
pub const SYSTEM_TYPES: [i64; 6] = [1, 2, 3, 4, 7, 31];
/// The seeded smart process.
pub const SPA: i64 = 1268;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic string of `len` characters from `alphabet`, derived from (seed, salt).
pub fn derive(seed: u64, salt: &str, len: usize, alphabet: &[u8]) -> String {
    let mut st = seed ^ 0x5EED_0000_0000_0000;
    for b in salt.bytes() {
        st = st.rotate_left(7) ^ u64::from(b);
        splitmix(&mut st);
    }
    (0..len)
        .map(|_| alphabet[(splitmix(&mut st) % alphabet.len() as u64) as usize] as char)
        .collect()
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

impl Portal {
    pub fn new(
        seed: u64,
        items_per_type: u32,
        settings: Settings,
        origin: String,
        now: f64,
    ) -> Portal {
        let mut p = Portal {
            seed,
            items_per_type,
            startup: settings.clone(),
            settings,
            origin,
            users: vec![],
            webhooks: vec![],
            app: App {
                client_id: String::new(),
                client_secret: String::new(),
                scopes: vec![],
            },
            member_id: String::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            frame_sessions: HashMap::new(),
            token_counter: 0,
            items: BTreeMap::new(),
            next_id: HashMap::new(),
            denied: HashSet::new(),
            deleted: vec![],
            requests_total: 0,
            by_method: BTreeMap::new(),
            calls_by_method: BTreeMap::new(),
            rejected: BTreeMap::new(),
            faults_served: 0,
            bucket_level: 0.0,
            bucket_last: now,
            meters: Meters::default(),
            faults: VecDeque::new(),
        };
        p.reset(seed, now);
        p
    }

    /// Back to the seeded state: data, tokens, counters, limits, faults and start-up settings.
    pub fn reset(&mut self, seed: u64, now: f64) {
        let s = seed;
        self.seed = s;
        self.settings = self.startup.clone();
        self.users = vec![
            User {
                id: 1,
                name: "Admin",
                last_name: "Emulator",
                admin: true,
                intranet: true,
                no_delete: &[],
            },
            User {
                id: 2,
                name: "Restricted",
                last_name: "Manager",
                admin: false,
                intranet: true,
                no_delete: &[SPA],
            },
            User {
                id: 3,
                name: "External",
                last_name: "Partner",
                admin: false,
                intranet: false,
                no_delete: &[],
            },
            User {
                id: 4,
                name: "Scoped",
                last_name: "Integrator",
                admin: true,
                intranet: true,
                no_delete: &[],
            },
        ];
        let hook = |user: u64, role: Role, scopes: &[&str]| Webhook {
            user,
            secret: derive(s, role.as_str(), 16, ALNUM),
            scopes: scopes.iter().map(|x| x.to_string()).collect(),
            role,
        };
        self.webhooks = vec![
            hook(1, Role::Admin, &["crm", "user", "placement"]),
            hook(2, Role::NoDelete, &["crm", "user"]),
            hook(3, Role::Extranet, &["crm", "user"]),
            hook(4, Role::NoCrmScope, &["user", "task"]),
        ];
        self.app = App {
            client_id: format!(
                "local.{}.{}",
                derive(s, "client_id", 14, HEX),
                derive(s, "client_num", 8, b"0123456789")
            ),
            client_secret: derive(
                s,
                "client_secret",
                50,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            ),
            scopes: vec!["crm".into(), "user".into(), "placement".into()],
        };
        self.member_id = derive(s, "member_id", 32, HEX);
        self.access.clear();
        self.refresh.clear();
        self.frame_sessions.clear();
        self.token_counter = 0;
        self.items.clear();
        self.next_id.clear();
        for t in SYSTEM_TYPES.iter().chain([SPA].iter()) {
            self.items.insert(*t, BTreeMap::new());
            self.next_id.insert(*t, 1);
        }
        let n = self.items_per_type;
        self.seed_items(SPA, n, now);
        self.seed_items(2, n, now);
        self.denied.clear();
        self.deleted.clear();
        self.requests_total = 0;
        self.by_method.clear();
        self.calls_by_method.clear();
        self.rejected.clear();
        self.faults_served = 0;
        self.bucket_level = 0.0;
        self.bucket_last = now;
        self.meters.clear();
        self.faults.clear();
    }

    /// Add `count` items of a type (creating a smart process type if needed); returns their ids.
    pub fn seed_items(&mut self, entity_type_id: i64, count: u32, now: f64) -> Vec<i64> {
        (0..count)
            .map(|_| {
                let n = self.next_id.get(&entity_type_id).copied().unwrap_or(1);
                let title = match entity_type_id {
                    2 => format!("Deal #{n}"),
                    SPA => format!("Smart process item #{n}"),
                    _ => format!("Item #{n}"),
                };
                self.add_item(entity_type_id, title, Map::new(), now)
            })
            .collect()
    }

    pub fn type_exists(&self, entity_type_id: i64) -> bool {
        self.items.contains_key(&entity_type_id)
    }

    pub fn add_item(
        &mut self,
        entity_type_id: i64,
        title: String,
        fields: Map<String, Value>,
        now: f64,
    ) -> i64 {
        let next = self.next_id.entry(entity_type_id).or_insert(1);
        let id = *next;
        *next += 1;
        self.items.entry(entity_type_id).or_default().insert(
            id,
            Item {
                id,
                title,
                created: now,
                fields,
            },
        );
        id
    }

    /// An item as `crm.item.get` shows it.
    pub fn item_json(entity_type_id: i64, it: &Item) -> Value {
        let stage = match entity_type_id {
            2 => "NEW".to_string(),
            1 => "NEW".to_string(),
            t => format!("DT{t}_1:NEW"),
        };
        let date = iso8601(it.created);
        let mut m = Map::new();
        m.insert("id".into(), json!(it.id));
        m.insert("xmlId".into(), Value::Null);
        m.insert("title".into(), json!(it.title));
        m.insert("createdBy".into(), json!(1));
        m.insert("updatedBy".into(), json!(1));
        m.insert("assignedById".into(), json!(1));
        m.insert("createdTime".into(), json!(date));
        m.insert("updatedTime".into(), json!(date));
        m.insert("categoryId".into(), json!(0));
        m.insert("stageId".into(), json!(stage));
        m.insert("opportunity".into(), json!(0));
        m.insert("currencyId".into(), json!("USD"));
        m.insert("entityTypeId".into(), json!(entity_type_id));
        for (k, v) in &it.fields {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }

    // ---- tokens ----

    fn next_token(&mut self, kind: &str) -> String {
        self.token_counter += 1;
        derive(self.seed, &format!("{kind}{}", self.token_counter), 64, HEX)
    }

    /// Issue an access/refresh pair for `user` (the registered app), lifetime in seconds.
    pub fn issue_tokens(&mut self, user: u64, lifetime: f64, now: f64) -> (String, String, f64) {
        let access = self.next_token("access");
        let refresh = self.next_token("refresh");
        let expires_at = now + lifetime;
        self.access
            .insert(access.clone(), AccessToken { user, expires_at });
        self.refresh.insert(refresh.clone(), user);
        (access, refresh, expires_at)
    }

    /// The OAuth server's answer for a fresh pair.
    pub fn token_answer(&mut self, user: u64, lifetime: f64, now: f64) -> Value {
        let (access, refresh, expires_at) = self.issue_tokens(user, lifetime, now);
        json!({
            "access_token": access,
            "expires": expires_at.floor() as i64,
            "expires_in": lifetime.round() as i64,
            "scope": self.app.scopes.join(","),
            "domain": self.domain(),
            "server_endpoint": format!("{}/rest/", self.origin),
            "status": "L",
            "client_endpoint": format!("{}/rest/", self.origin),
            "member_id": self.member_id,
            "user_id": user,
            "refresh_token": refresh,
        })
    }

    /// `127.0.0.1:PORT`
    pub fn domain(&self) -> String {
        self.origin.trim_start_matches("http://").to_string()
    }

    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    // ---- limits ----

    /// Leaky bucket: admit one request (true) or refuse it (false; it is not counted).
    pub fn bucket_admit(&mut self, now: f64) -> bool {
        let burst = self.settings.burst;
        let drained =
            (now - self.bucket_last).max(0.0) * self.settings.drain * self.settings.time_scale;
        self.bucket_level = (self.bucket_level - drained).max(0.0);
        self.bucket_last = now;
        if burst == 0 {
            return true;
        }
        // tolerance: Unix-time floats carry ~1e-7 s of rounding
        if self.bucket_level + 1.0 > f64::from(burst) + 1e-4 {
            false
        } else {
            self.bucket_level += 1.0;
            true
        }
    }

    /// Take the next queued fault for a top-level method, if any.
    pub fn take_fault(&mut self, method: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == "*" || f.method.eq_ignore_ascii_case(method))?;
        self.faults_served += 1;
        self.faults.remove(i).map(|f| f.fault)
    }

    /// Is a `drop_after_apply` fault with `fresh` queued?
    pub fn drop_pending(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.fault == Fault::DropAfterApply { fresh: true })
    }

    pub fn reject(&mut self, code: &str) {
        *self.rejected.entry(code.to_string()).or_default() += 1;
    }

    /// `/_emulator/state`
    pub fn state_json(&self) -> Value {
        let items: Map<String, Value> = self
            .items
            .iter()
            .filter(|(t, m)| !m.is_empty() || **t == SPA || **t == 2)
            .map(|(t, m)| (t.to_string(), json!(m.keys().collect::<Vec<_>>())))
            .collect();
        let webhooks: Vec<Value> = self
            .webhooks
            .iter()
            .map(|w| {
                json!({
                    "url": format!("{}/rest/{}/{}/", self.origin, w.user, w.secret),
                    "user": w.user,
                    "scopes": w.scopes,
                    "role": w.role.as_str(),
                })
            })
            .collect();
        let s = &self.settings;
        json!({
            "items": items,
            "requests": {"total": self.requests_total, "byMethod": self.by_method},
            "calls": {"byMethod": self.calls_by_method},
            "rejected": self.rejected,
            "bans": self.meters.bans,
            "faults": {"served": self.faults_served, "queued": self.faults.len()},
            "deleted": self.deleted.iter().map(|(t, id)| json!({"entityTypeId": t, "id": id})).collect::<Vec<_>>(),
            "denied": self.denied.iter().map(|(t, id)| json!({"entityTypeId": t, "id": id})).collect::<Vec<_>>(),
            "webhooks": webhooks,
            "apps": [{
                "client_id": self.app.client_id,
                "client_secret": self.app.client_secret,
                "scopes": self.app.scopes,
            }],
            "member_id": self.member_id,
            "domain": self.domain(),
            "seed": self.seed,
            "config": {
                "burst": s.burst,
                "drain": s.drain,
                "limiter": s.limiter.as_str(),
                "operatingLimit": s.operating_limit(),
                "processing": s.processing,
                "requestLimit": s.request_limit,
                "timeScale": s.time_scale,
                "requireHttps": s.require_https,
                "portalError": s.portal_error,
                "tokenLifetime": s.token_lifetime,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal() -> Portal {
        Portal::new(
            1,
            20,
            Settings::default(),
            "http://127.0.0.1:1".into(),
            1000.0,
        )
    }

    #[test]
    fn deterministic_secrets() {
        let a = portal();
        let b = portal();
        assert_eq!(a.webhooks[0].secret, b.webhooks[0].secret);
        assert_ne!(a.webhooks[0].secret, a.webhooks[1].secret);
        let c = Portal::new(2, 20, Settings::default(), "x".into(), 0.0);
        assert_ne!(a.webhooks[0].secret, c.webhooks[0].secret);
        assert_eq!(a.items[&SPA].len(), 20);
        assert_eq!(*a.items[&2].keys().next().unwrap(), 1);
    }

    #[test]
    fn bucket_exact() {
        let mut p = portal();
        let ok = (0..60).filter(|_| p.bucket_admit(1000.0)).count();
        assert_eq!(ok, 50);
        // half a second drains one request at 2/s
        assert!(p.bucket_admit(1000.5));
        assert!(!p.bucket_admit(1000.5));
        p.settings.burst = 0;
        assert!((0..1000).all(|_| p.bucket_admit(1000.5)));
    }
}
