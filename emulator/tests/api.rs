//! End-to-end tests of the emulator over real HTTP (in-process server on a free port,
//! a tiny raw-TCP HTTP/1.1 client, a manual clock where time matters).

use std::sync::Arc;
use std::time::{Duration, Instant};

use emulator::{Clock, Config, Emulator, Handle, Limiter, ManualClock};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T0: f64 = 1_721_657_688.0;

struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Res> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = vec![];
    s.read_to_end(&mut buf).await?;
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no response",
        ));
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Res {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

async fn post_json(port: u16, path: &str, body: Value) -> Res {
    raw(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap()
}

/// `crm.item.delete` of smart-process item `id` through the webhook `hook`.
async fn delete(port: u16, hook: &str, id: u64) -> Res {
    post_json(
        port,
        &format!("{hook}crm.item.delete"),
        json!({"entityTypeId": 1268, "id": id}),
    )
    .await
}

/// The status of `crm.item.delete` of smart-process item `id` through the webhook `hook`.
async fn delete_status(port: u16, hook: &str, id: u64) -> u16 {
    delete(port, hook, id).await.status
}

async fn get(port: u16, path: &str) -> Res {
    raw(port, "GET", path, &[], b"").await.unwrap()
}

async fn start(f: impl FnOnce(&mut Config)) -> (Handle, ManualClock) {
    let clock = ManualClock::new(T0);
    let mut c = Config {
        control: true,
        clock: Arc::new(clock.clone()),
        ..Config::default()
    };
    f(&mut c);
    (Emulator::start(c).await.unwrap(), clock)
}

fn hook_path(emu: &Handle, role: &str) -> String {
    emu.with_portal(|p| {
        let w = p.webhooks.iter().find(|w| w.role.as_str() == role).unwrap();
        format!("/rest/{}/{}/", w.user, w.secret)
    })
}

fn admin(emu: &Handle) -> String {
    emu.webhook.trim_start_matches(&emu.url).to_string()
}

fn assert_err(r: &Res, status: u16, code: &str, desc: &str) {
    let v = r.json();
    assert_eq!(
        (r.status, v["error"].as_str().unwrap()),
        (status, code),
        "{v}"
    );
    if !desc.is_empty() {
        assert_eq!(v["error_description"], desc);
    }
    assert!(v["time"]["start"].is_f64(), "time object on errors: {v}");
}

async fn state(emu: &Handle) -> Value {
    get(emu.port, "/_emulator/state").await.json()
}

#[tokio::test]
async fn delete_success_shape() {
    let (emu, _) = start(|_| {}).await;
    let r = post_json(
        emu.port,
        &format!("{}crm.item.delete", admin(&emu)),
        json!({"entityTypeId":1268,"id":1}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["result"], json!([]));
    let t = &v["time"];
    for k in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
    ] {
        assert!(t.get(k).is_some(), "time.{k} missing: {t}");
    }
    assert_eq!(t["date_start"], "2024-07-22T14:14:48+00:00");
    assert!(t.get("operating_reset_at").is_none());
    let s = state(&emu).await;
    assert_eq!(s["deleted"], json!([{"entityTypeId":1268,"id":1}]));
    assert!(!s["items"]["1268"].as_array().unwrap().contains(&json!(1)));
    assert_eq!(s["requests"]["total"], 1);
    assert_eq!(s["requests"]["byMethod"]["crm.item.delete"], 1);
}

#[tokio::test]
async fn delete_errors() {
    let (emu, _) = start(|_| {}).await;
    let a = admin(&emu);
    let p = emu.port;
    let del = |hook: String, body: Value| async move {
        post_json(p, &format!("{hook}crm.item.delete"), body).await
    };
    assert_err(
        &del(a.clone(), json!({"entityTypeId":1268,"id":999})).await,
        400,
        "NOT_FOUND",
        "Item not found",
    );
    assert_err(
        &del(a.clone(), json!({"entityTypeId":1270,"id":1})).await,
        400,
        "NOT_FOUND",
        "SPA not found",
    );
    assert_err(
        &del(a.clone(), json!({"entityTypeId":5,"id":1})).await,
        400,
        "ENTITY_TYPE_NOT_SUPPORTED",
        "",
    );
    assert_err(
        &del(a.clone(), json!({"entityTypeId":1268})).await,
        400,
        "100",
        "Could not find value for parameter {id}",
    );
    assert_err(
        &del(a.clone(), json!({"entityTypeId":1268,"id":"x"})).await,
        400,
        "100",
        "",
    );
    assert_err(
        &del(
            hook_path(&emu, "no_delete"),
            json!({"entityTypeId":1268,"id":2}),
        )
        .await,
        403,
        "ACCESS_DENIED",
        "Access denied",
    );
    assert_eq!(
        del(
            hook_path(&emu, "no_delete"),
            json!({"entityTypeId":2,"id":2})
        )
        .await
        .status,
        200
    );
    assert_err(
        &del(
            hook_path(&emu, "extranet"),
            json!({"entityTypeId":1268,"id":2}),
        )
        .await,
        403,
        "allowed_only_intranet_user",
        "",
    );
    assert_err(
        &del(
            hook_path(&emu, "no_crm_scope"),
            json!({"entityTypeId":1268,"id":2}),
        )
        .await,
        403,
        "insufficient_scope",
        "",
    );
    assert_err(
        &del(
            "/rest/1/wrongsecret/".into(),
            json!({"entityTypeId":1268,"id":2}),
        )
        .await,
        401,
        "NO_AUTH_FOUND",
        "Wrong authorization data",
    );
    assert_err(
        &post_json(p, &format!("{a}crm.item.nope"), json!({})).await,
        404,
        "ERROR_METHOD_NOT_FOUND",
        "Method not found!",
    );
    // denied items answer 403 for everyone
    post_json(p, "/_emulator/deny", json!({"entityTypeId":1268,"ids":[3]})).await;
    assert_err(
        &del(a.clone(), json!({"entityTypeId":1268,"id":3})).await,
        403,
        "ACCESS_DENIED",
        "Access denied",
    );
    // nothing was deleted by the failures
    let s = state(&emu).await;
    assert_eq!(s["deleted"], json!([{"entityTypeId":2,"id":2}]));
    assert_eq!(s["rejected"]["NOT_FOUND"], 2);
}

#[tokio::test]
async fn bodies_and_url_forms() {
    let (emu, _) = start(|_| {}).await;
    let a = admin(&emu);
    let p = emu.port;
    // form body, string ids, .json suffix
    let r = raw(
        p,
        "POST",
        &format!("{a}crm.item.delete.json"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"entityTypeId=1268&id=4",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // GET with query string, mixed-case method name
    assert_eq!(
        get(p, &format!("{a}CRM.Item.Delete?entityTypeId=1268&id=5"))
            .await
            .status,
        200
    );
    // JSON with numeric strings
    assert_eq!(
        post_json(
            p,
            &format!("{a}crm.item.delete"),
            json!({"entityTypeId":"1268","id":"6"})
        )
        .await
        .status,
        200
    );
    // add / get / list
    let v = post_json(
        p,
        &format!("{a}crm.item.add"),
        json!({"entityTypeId":2,"fields":{"title":"New deal"}}),
    )
    .await
    .json();
    let id = v["result"]["item"]["id"].as_i64().unwrap();
    assert_eq!(id, 21);
    let v = get(p, &format!("{a}crm.item.get?entityTypeId=2&id={id}"))
        .await
        .json();
    assert_eq!(v["result"]["item"]["title"], "New deal");
    let r = raw(
        p,
        "POST",
        &format!("{a}crm.item.list"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"entityTypeId=2&filter[@id][]=1&filter[@id][]=2&filter[@id][]=77",
    )
    .await
    .unwrap();
    let v = r.json();
    assert_eq!(v["total"], 2);
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 2);
    let v = get(p, &format!("{a}crm.item.list?entityTypeId=2"))
        .await
        .json();
    assert_eq!(v["total"], 21);
    assert!(v.get("next").is_none());
    post_json(p, "/_emulator/items", json!({"entityTypeId":2,"count":60})).await;
    let v = get(p, &format!("{a}crm.item.list?entityTypeId=2"))
        .await
        .json();
    assert_eq!(
        (v["total"].clone(), v["next"].clone()),
        (json!(81), json!(50))
    );
    let v = get(p, &format!("{a}crm.item.list?entityTypeId=2&start=50"))
        .await
        .json();
    assert!(v.get("next").is_none());
    assert_eq!(v["result"]["items"].as_array().unwrap().len(), 31);
}

#[tokio::test]
async fn oauth_auth_everywhere_expiry_and_refresh() {
    let (emu, clock) = start(|_| {}).await;
    let p = emu.port;
    let tok = post_json(p, "/_emulator/oauth/token", json!({"lifetime": 60}))
        .await
        .json();
    let access = tok["access_token"].as_str().unwrap().to_string();
    assert_eq!(tok["client_endpoint"], format!("{}/rest/", emu.url));
    assert_eq!(tok["expires_in"], 60);
    // auth in JSON body, form body and query
    assert_eq!(
        post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":1,"auth":access})
        )
        .await
        .status,
        200
    );
    let form = format!("entityTypeId=1268&id=2&auth={access}");
    assert_eq!(
        raw(
            p,
            "POST",
            "/rest/crm.item.delete.json",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes()
        )
        .await
        .unwrap()
        .status,
        200
    );
    assert_eq!(
        get(
            p,
            &format!("/rest/crm.item.delete?entityTypeId=1268&id=3&auth={access}")
        )
        .await
        .status,
        200
    );
    assert_err(
        &post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":4,"auth":"nope"}),
        )
        .await,
        401,
        "NO_AUTH_FOUND",
        "",
    );
    assert_err(
        &post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":4}),
        )
        .await,
        401,
        "NO_AUTH_FOUND",
        "",
    );
    clock.advance(61.0);
    assert_err(
        &post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":4,"auth":access}),
        )
        .await,
        401,
        "expired_token",
        "The access token provided has expired",
    );
    let (cid, secret, rt) = (
        tok["client_id"].as_str().unwrap(),
        tok["client_secret"].as_str().unwrap(),
        tok["refresh_token"].as_str().unwrap(),
    );
    // GET refresh
    let r = get(p, &format!("/oauth/token/?grant_type=refresh_token&client_id={cid}&client_secret={secret}&refresh_token={rt}")).await;
    assert_eq!(r.status, 200);
    let fresh = r.json();
    for k in [
        "access_token",
        "refresh_token",
        "expires",
        "expires_in",
        "client_endpoint",
        "server_endpoint",
        "domain",
        "member_id",
        "scope",
        "status",
        "user_id",
    ] {
        assert!(fresh.get(k).is_some(), "{k} missing in {fresh}");
    }
    assert_ne!(fresh["refresh_token"], rt);
    // the old refresh token is now invalid
    let again = get(p, &format!("/oauth/token/?grant_type=refresh_token&client_id={cid}&client_secret={secret}&refresh_token={rt}")).await;
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    // POST form refresh with the new one works; a wrong secret is invalid_client
    let body = format!(
        "grant_type=refresh_token&client_id={cid}&client_secret={secret}&refresh_token={}",
        fresh["refresh_token"].as_str().unwrap()
    );
    let r = raw(
        p,
        "POST",
        "/oauth/token/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let newest = r.json();
    let bad = get(p, &format!("/oauth/token/?grant_type=refresh_token&client_id={cid}&client_secret=x&refresh_token={}", newest["refresh_token"].as_str().unwrap())).await;
    assert_eq!(bad.json()["error"], "invalid_client");
    let acc = newest["access_token"].as_str().unwrap();
    assert_eq!(
        post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":4,"auth":acc})
        )
        .await
        .status,
        200
    );
    // expire-tokens: every access token answers expired_token at once
    let v = post_json(p, "/_emulator/expire-tokens", json!({}))
        .await
        .json();
    assert!(v["expired"].as_u64().unwrap() >= 1);
    assert_err(
        &post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":5,"auth":acc}),
        )
        .await,
        401,
        "expired_token",
        "",
    );
    // token for a user without delete permission
    let t2 = post_json(p, "/_emulator/oauth/token", json!({"user": 2}))
        .await
        .json();
    assert_err(
        &post_json(
            p,
            "/rest/crm.item.delete",
            json!({"entityTypeId":1268,"id":5,"auth":t2["access_token"]}),
        )
        .await,
        403,
        "ACCESS_DENIED",
        "",
    );
}

#[tokio::test]
async fn batch_shapes_and_halt() {
    let (emu, _) = start(|_| {}).await;
    let a = admin(&emu);
    let p = emu.port;
    let b = |body: Value| {
        let path = format!("{a}batch");
        async move { post_json(p, &path, body).await }
    };
    // all ok: errors/total/next are []
    let r = b(json!({"halt":0,"cmd":{"k0":"crm.item.delete?entityTypeId=1268&id=1","k1":"crm.item.delete?entityTypeId=1268&id=2"}})).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["result"]["result"], json!({"k0":[],"k1":[]}));
    assert_eq!(v["result"]["result_error"], json!([]));
    assert_eq!(v["result"]["result_total"], json!([]));
    assert_eq!(v["result"]["result_next"], json!([]));
    assert!(v["result"]["result_time"]["k0"]["start"].is_f64());
    assert!(v["time"].is_object());
    // all failed: result is []
    let v = b(json!({"halt":0,"cmd":{"a":"crm.item.delete?entityTypeId=1268&id=1","b":"crm.item.delete?entityTypeId=9999&id=1"}})).await.json();
    assert_eq!(v["result"]["result"], json!([]));
    assert_eq!(
        v["result"]["result_error"]["a"],
        json!({"error":"NOT_FOUND","error_description":"Item not found"})
    );
    assert_eq!(
        v["result"]["result_error"]["b"]["error_description"],
        "SPA not found"
    );
    // halt=1 stops at the first error
    let v = b(json!({"halt":1,"cmd":{"a":"crm.item.delete?entityTypeId=1268&id=3","b":"crm.item.delete?entityTypeId=1268&id=999","c":"crm.item.delete?entityTypeId=1268&id=4"}})).await.json();
    assert_eq!(v["result"]["result"], json!({"a":[]}));
    assert_eq!(v["result"]["result_error"].as_object().unwrap().len(), 1);
    assert!(v["result"]["result_time"].get("c").is_none());
    let s = state(&emu).await;
    assert!(s["items"]["1268"].as_array().unwrap().contains(&json!(4)));
    // cmd as an array: containers are arrays
    let v =
        b(json!({"cmd":["crm.item.delete?entityTypeId=2&id=1","crm.item.list?entityTypeId=2"]}))
            .await
            .json();
    assert_eq!(v["result"]["result"][0], json!([]));
    assert_eq!(v["result"]["result_total"], json!({"1": 19}));
    // nested batch: per-command 405 error, the batch itself 200
    let r = b(json!({"cmd":{"x":"batch?cmd[y]=crm.item.delete%3FentityTypeId%3D2%26id%3D2","z":"crm.item.delete?entityTypeId=2&id=3"}})).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["result"]["result_error"]["x"]["error"],
        "ERROR_BATCH_METHOD_NOT_ALLOWED"
    );
    assert_eq!(v["result"]["result"]["z"], json!([]));
    // more than 50 commands
    let cmd: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("k{i}"), json!("user.current")))
        .collect();
    assert_err(
        &b(json!({"cmd": cmd})).await,
        400,
        "ERROR_BATCH_LENGTH_EXCEEDED",
        "Max batch length exceeded",
    );
    // form-encoded batch (cmd strings encoded twice, as BX24 sends them)
    let form = "halt=0&cmd[d]=crm.item.delete%3FentityTypeId%3D2%26id%3D5";
    let r = raw(
        p,
        "POST",
        &format!("{a}batch"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["result"]["result"]["d"], json!([]));
    // $result[key][field] references to earlier results
    let v = b(json!({"halt":0,"cmd":{
        "add":"crm.item.add?entityTypeId=2&fields[title]=ref",
        "get":"crm.item.get?entityTypeId=2&id=$result[add][item][id]",
        "del":"crm.item.delete?entityTypeId=2&id=$result[get][item][id]",
        "bad":"crm.item.get?entityTypeId=2&id=$result[nope][x]"
    }}))
    .await
    .json();
    assert_eq!(v["result"]["result"]["get"]["item"]["title"], "ref");
    assert_eq!(v["result"]["result"]["del"], json!([]));
    assert_eq!(v["result"]["result_error"]["bad"]["error"], "100");
    // per-command errors: scope of the caller applies
    let v = post_json(
        p,
        &format!("{}batch", hook_path(&emu, "no_crm_scope")),
        json!({"cmd":{"a":"crm.item.delete?entityTypeId=2&id=6","u":"user.current"}}),
    )
    .await
    .json();
    assert_eq!(
        v["result"]["result_error"]["a"]["error"],
        "insufficient_scope"
    );
    assert_eq!(v["result"]["result"]["u"]["ID"], "4");
    let s = state(&emu).await;
    assert_eq!(s["requests"]["byMethod"]["batch"], 9);
}

#[tokio::test]
async fn leaky_bucket_exact() {
    let (emu, clock) = start(|c| {
        c.settings.burst = 10;
        c.settings.drain = 2.0;
    })
    .await;
    let a = admin(&emu);
    let p = emu.port;
    let mut statuses = vec![];
    for id in 1..=15 {
        let r = post_json(
            p,
            &format!("{a}crm.item.delete"),
            json!({"entityTypeId":1268,"id":id}),
        )
        .await;
        if r.status == 503 {
            assert_err(&r, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 5);
    assert_eq!(&statuses[..10], &[200; 10]);
    // refused requests were not executed
    let s = state(&emu).await;
    assert_eq!(s["deleted"].as_array().unwrap().len(), 10);
    assert_eq!(s["rejected"]["QUERY_LIMIT_EXCEEDED"], 5);
    assert_eq!(s["requests"]["total"], 15);
    // 1.5 s drains 3 requests at 2/s; a batch of 50 counts as one
    clock.advance(1.5);
    let cmd: serde_json::Map<String, Value> = (20..70)
        .map(|i| {
            (
                format!("k{i}"),
                json!(format!("crm.item.list?entityTypeId=2&filter[id]={i}")),
            )
        })
        .collect();
    assert_eq!(
        post_json(p, &format!("{a}batch"), json!({"cmd": cmd}))
            .await
            .status,
        200
    );
    assert_eq!(delete_status(p, &a, 11).await, 200);
    assert_eq!(delete_status(p, &a, 12).await, 200);
    assert_eq!(delete_status(p, &a, 13).await, 503);
    // time scale 10: 0.1 s drains 2
    post_json(p, "/_emulator/config", json!({"timeScale": 10})).await;
    clock.advance(0.1);
    assert_eq!(delete_status(p, &a, 13).await, 200);
    assert_eq!(delete_status(p, &a, 14).await, 200);
    assert_eq!(delete_status(p, &a, 15).await, 503);
    // burst 0 = no limit
    post_json(p, "/_emulator/config", json!({"burst": 0})).await;
    for id in 15..=20 {
        assert_eq!(delete_status(p, &a, id).await, 200);
    }
}

/// `--limiter docs`: today's model, unchanged (every call charged, no ban, 429 with `time`).
#[tokio::test]
async fn operating_window_docs_model() {
    let (emu, clock) = start(|c| {
        c.settings.limiter = Limiter::Docs;
        c.settings.operating_limit = Some(10.0);
        c.settings.processing = 4.0;
    })
    .await;
    let a = admin(&emu);
    let p = emu.port;
    let del = |id: i64| {
        let path = format!("{a}crm.item.delete");
        async move { post_json(p, &path, json!({"entityTypeId":2,"id":id})).await }
    };
    let v = del(1).await.json();
    assert_eq!(v["time"]["operating"], 4);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 600);
    assert_eq!(v["time"]["processing"], 4.0, "charged and reported");
    assert_eq!(clock.now(), T0, "but not spent");
    clock.advance(30.0);
    assert_eq!(del(2).await.json()["time"]["operating"], 8);
    clock.advance(40.0); // a new one-minute basket
    let v = del(3).await.json(); // 8 < 10: runs and crosses the limit
    assert_eq!(v["time"]["operating"], 12);
    let r = del(4).await;
    assert_err(&r, 429, "OPERATION_TIME_LIMIT", "");
    let v = r.json();
    assert_eq!(v["time"]["operating"], 12);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 600);
    // other methods and other webhooks keep working
    assert_eq!(
        get(p, &format!("{a}crm.item.get?entityTypeId=2&id=5"))
            .await
            .status,
        200
    );
    assert_eq!(
        post_json(
            p,
            &format!("{}crm.item.delete", hook_path(&emu, "no_delete")),
            json!({"entityTypeId":2,"id":5})
        )
        .await
        .status,
        200
    );
    // inside a batch the nested call is refused with the same error; the batch is 200
    let v = post_json(
        p,
        &format!("{a}batch"),
        json!({"cmd":{"a":"crm.item.delete?entityTypeId=2&id=6"}}),
    )
    .await
    .json();
    assert_eq!(
        v["result"]["result_error"]["a"]["error"],
        "OPERATION_TIME_LIMIT"
    );
    assert_eq!(
        v["time"]["operating"], 0,
        "the docs model does not charge batch"
    );
    assert_eq!(state(&emu).await["bans"], 0);
    // the first basket (8 s) drops out at T0+600: 4 s left, so it runs again
    clock.set(T0 + 600.0);
    let v = del(6).await.json();
    assert_eq!(v["result"], json!([]));
    assert_eq!(v["time"]["operating"], 8);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 670);
}

// ---- the server limiter (the default): processing, floor, batch share, bans, request limit ----

/// `x` as f64, within a microsecond of `want` (Unix-time floats carry ~1e-7 s of rounding).
fn approx(v: &Value, want: f64) {
    let x = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((x - want).abs() < 1e-5, "{x} != {want}");
}

/// A 1268 `crm.item.delete` command for each id, keyed `d{id}`.
fn deletes(ids: std::ops::RangeInclusive<u64>) -> Value {
    let cmd: serde_json::Map<String, Value> = ids
        .map(|id| {
            (
                format!("d{id}"),
                json!(format!("crm.item.delete?entityTypeId=1268&id={id}")),
            )
        })
        .collect();
    json!({ "cmd": cmd })
}

fn deleted(s: &Value) -> Vec<u64> {
    s["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn server_processing_is_spent_reported_and_free_up_to_a_tenth() {
    let (emu, clock) = start(|c| c.settings.processing = 0.1).await;
    let a = admin(&emu);
    let p = emu.port;
    let del = |id| delete(p, &a, id);
    // 0.1 s: spent (the clock moved), reported, not charged
    let v = del(1).await.json();
    assert_eq!(v["result"], json!([]));
    approx(&v["time"]["processing"], 0.1);
    approx(&v["time"]["duration"], 0.1);
    approx(&v["time"]["finish"], T0 + 0.1);
    assert_eq!(v["time"]["operating"], 0);
    assert!(v["time"].get("operating_reset_at").is_none(), "{v}");
    approx(&json!(clock.now()), T0 + 0.1);
    // more than 0.1 s is charged in full
    post_json(p, "/_emulator/config", json!({"processing": 0.5})).await;
    let v = del(2).await.json();
    assert_eq!(v["time"]["operating"], 0.5);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 601); // ceil(T0 + 0.6 + 600)
                                                                  // every executed command takes it, whatever its method or outcome
    let v = del(2).await.json();
    assert_eq!(v["error"], "NOT_FOUND");
    assert_eq!(v["time"]["operating"], 1.0);
    let v = get(p, &format!("{a}crm.item.get?entityTypeId=1268&id=3"))
        .await
        .json();
    approx(&v["time"]["processing"], 0.5);
    assert_eq!(
        v["time"]["operating"], 0.5,
        "crm.item.get has its own meter"
    );
    // time scale 10: 5 portal seconds take 0.5 s of the clock, reported in portal seconds
    post_json(
        p,
        "/_emulator/config",
        json!({"processing": 5, "timeScale": 10}),
    )
    .await;
    let before = clock.now();
    let v = del(4).await.json();
    approx(&v["time"]["processing"], 5.0);
    approx(&v["time"]["duration"], 5.0);
    approx(&v["time"]["finish"], before + 0.5);
}

#[tokio::test]
async fn server_processing_does_not_block_other_requests() {
    let mut c = Config {
        control: true,
        ..Config::default()
    };
    c.settings.processing = 20.0;
    c.settings.time_scale = 10.0; // 2 real seconds
    let emu = Emulator::start(c).await.unwrap();
    let path = format!("{}crm.item.delete", admin(&emu));
    let p = emu.port;
    let t = Instant::now();
    let slow =
        tokio::spawn(async move { post_json(p, &path, json!({"entityTypeId":1268,"id":1})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = state(&emu).await;
    assert!(
        !slow.is_finished(),
        "the delete is still spending its server time"
    );
    assert_eq!(s["calls"]["byMethod"]["crm.item.delete"], 1);
    assert_eq!(
        deleted(&s),
        Vec::<u64>::new(),
        "applied when its time is spent"
    );
    let v = slow.await.unwrap().json();
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    approx(&v["time"]["processing"], 20.0);
    assert!(v["time"]["duration"].as_f64().unwrap() >= 20.0 - 1e-3);
    assert_eq!(v["time"]["operating"], 20);
    assert_eq!(deleted(&state(&emu).await), vec![1]);
}

#[tokio::test]
async fn server_batch_charges_half_its_run_and_each_command_under_its_method() {
    let (emu, _) = start(|c| c.settings.processing = 0.5).await;
    let p = emu.port;
    let v = post_json(p, &format!("{}batch", admin(&emu)), deletes(1..=4))
        .await
        .json();
    let times = &v["result"]["result_time"];
    for (i, k) in ["d1", "d2", "d3", "d4"].iter().enumerate() {
        approx(&times[k]["processing"], 0.5);
        approx(&times[k]["duration"], 0.5);
        approx(&times[k]["start"], T0 + 0.5 * i as f64);
        assert_eq!(times[k]["operating"], 0.5 * (i + 1) as f64, "{k}");
        assert_eq!(times[k]["operating_reset_at"], T0 as i64 + 601); // ceil(T0 + 0.5 + 600)
    }
    approx(&v["time"]["processing"], 2.0);
    approx(&v["time"]["duration"], 2.0);
    assert_eq!(v["time"]["operating"], 1, "batch: 0.5 x 2 s");
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 602);
    // OAuth: the app's meters, apart from the webhook's; nested commands under their method
    let tok = post_json(p, "/_emulator/oauth/token", json!({}))
        .await
        .json();
    let mut body = deletes(5..=6);
    body["auth"] = tok["access_token"].clone();
    let v = post_json(p, "/rest/batch", body).await.json();
    assert_eq!(v["result"]["result_time"]["d5"]["operating"], 0.5);
    assert_eq!(v["result"]["result_time"]["d6"]["operating"], 1);
    assert_eq!(v["time"]["operating"], 0.5);
    // a batch of one command of 0.1 s: both free
    post_json(p, "/_emulator/config", json!({"processing": 0.1})).await;
    let v = post_json(p, &format!("{}batch", admin(&emu)), deletes(7..=7))
        .await
        .json();
    assert_eq!(
        v["result"]["result_time"]["d7"]["operating"], 2,
        "unchanged"
    );
    assert_eq!(v["time"]["operating"], 1, "unchanged");
    let s = state(&emu).await;
    assert_eq!(deleted(&s), (1..=7).collect::<Vec<_>>());
    assert_eq!(s["calls"]["byMethod"]["crm.item.delete"], 7);
}

#[tokio::test]
async fn server_ban_for_300_s_clears_the_baskets_and_429s_carry_no_time() {
    let (emu, clock) = start(|c| {
        c.settings.operating_limit = Some(2.0);
        c.settings.processing = 1.0;
    })
    .await;
    let a = admin(&emu);
    let p = emu.port;
    assert_eq!(delete_status(p, &a, 1).await, 200); // operating 1
    assert_eq!(delete_status(p, &a, 2).await, 200); // 1 < 2: runs, operating 2
    let at_ban = clock.now();
    let r = delete(p, &a, 3).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit."}),
        "no time object"
    );
    approx(&json!(clock.now()), at_ban); // refused at once, no server time spent
    let ban_end = (at_ban + 300.0).ceil() as i64;
    // other methods and webhooks keep working; the banned one stays refused, no second ban
    assert_eq!(
        get(p, &format!("{a}crm.item.get?entityTypeId=1268&id=3"))
            .await
            .status,
        200
    );
    assert_eq!(
        delete_status(p, &hook_path(&emu, "no_delete"), 3).await,
        403
    );
    clock.advance(299.0 - (clock.now() - at_ban));
    assert_eq!(delete_status(p, &a, 3).await, 429);
    // inside a batch: refused per command, with the ban's end; the batch is 200
    let v = post_json(p, &format!("{a}batch"), deletes(3..=4)).await;
    assert_eq!(v.status, 200);
    let v = v.json();
    for k in ["d3", "d4"] {
        assert_eq!(
            v["result"]["result_error"][k]["error"],
            "OPERATION_TIME_LIMIT"
        );
        assert_eq!(
            v["result"]["result_time"][k]["operating"], 0,
            "baskets cleared"
        );
        assert_eq!(v["result"]["result_time"][k]["operating_reset_at"], ban_end);
        assert_eq!(v["result"]["result_time"][k]["processing"], 0.0);
    }
    let s = state(&emu).await;
    assert_eq!(s["bans"], 1);
    assert_eq!(
        s["rejected"]["OPERATION_TIME_LIMIT"], 4,
        "2 calls and 2 batch commands"
    );
    assert_eq!(deleted(&s), vec![1, 2]);
    // the ban is over after 300 s: a fresh window
    clock.set(at_ban + 300.0);
    let v = delete(p, &a, 3).await.json();
    assert_eq!(v["time"]["operating"], 1);
    assert_eq!(
        v["time"]["operating_reset_at"],
        (at_ban + 301.0 + 600.0).ceil() as i64
    );
}

#[tokio::test]
async fn server_batch_that_crosses_the_limit_gets_its_later_commands_refused() {
    let (emu, clock) = start(|c| {
        c.settings.operating_limit = Some(2.0);
        c.settings.processing = 1.0;
        c.settings.time_scale = 60.0;
    })
    .await;
    let a = admin(&emu);
    let v = post_json(emu.port, &format!("{a}batch"), deletes(1..=4))
        .await
        .json();
    let r = &v["result"];
    assert_eq!(r["result"], json!({"d1": [], "d2": []}));
    assert_eq!(r["result_error"]["d3"]["error"], "OPERATION_TIME_LIMIT");
    assert_eq!(r["result_error"]["d4"]["error"], "OPERATION_TIME_LIMIT");
    // time scale 60: two commands spent 2 / 60 s; the ban lasts 300 / 60 = 5 s
    let at_ban = T0 + 2.0 / 60.0;
    approx(&json!(clock.now()), at_ban);
    assert_eq!(
        r["result_time"]["d3"]["operating_reset_at"],
        (at_ban + 5.0).ceil() as i64
    );
    approx(&v["time"]["processing"], 2.0);
    assert_eq!(v["time"]["operating"], 1, "batch: half of the 2 s run");
    // the 600 s basket of `batch` expires 10 real seconds after it opened
    assert_eq!(
        v["time"]["operating_reset_at"],
        (at_ban + 10.0).ceil() as i64
    );
    assert_eq!(state(&emu).await["bans"], 1);
    clock.set(at_ban + 5.0);
    assert_eq!(delete_status(emu.port, &a, 3).await, 200);
}

#[tokio::test]
async fn server_baskets_expire_600_s_after_they_opened_not_rolling() {
    let (emu, clock) = start(|c| c.settings.processing = 1.0).await;
    let a = admin(&emu);
    let p = emu.port;
    let a = &a;
    let del = |id| async move { delete(p, a, id).await.json() };
    let v = del(1).await; // opens a basket at T0 + 1
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 601);
    clock.set(T0 + 50.0);
    let v = del(2).await; // the same basket (opened 49 s ago)
    assert_eq!(v["time"]["operating"], 2);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 601);
    clock.set(T0 + 100.0);
    let v = del(3).await; // a new basket at T0 + 101
    assert_eq!(v["time"]["operating"], 3);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 601);
    // at T0 + 601 the first basket goes, with the charge made 550 s earlier
    clock.set(T0 + 600.0);
    let v = del(4).await;
    assert_eq!(v["time"]["operating"], 2);
    assert_eq!(v["time"]["operating_reset_at"], T0 as i64 + 701);
}

#[tokio::test]
async fn request_limit_cuts_the_run_with_a_504_and_keeps_what_ran() {
    let (emu, clock) = start(|c| c.settings.processing = 25.0).await;
    let a = admin(&emu);
    let p = emu.port;
    // 25 + 25 s ran; the third command would end at 75 s: cut at 60 s
    let r = post_json(p, &format!("{a}batch"), deletes(1..=5)).await;
    assert_eq!(r.status, 504);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("504 Gateway Time-out"));
    approx(&json!(clock.now()), T0 + 60.0);
    let s = state(&emu).await;
    assert_eq!(
        deleted(&s),
        vec![1, 2],
        "the commands run so far stay applied"
    );
    assert_eq!(s["requests"]["byMethod"]["batch"], 1);
    // what ran stays charged; the cut batch is not
    let v = post_json(
        p,
        "/_emulator/config",
        json!({"processing": 0.5, "requestLimit": 60}),
    )
    .await
    .json();
    assert_eq!(v["requestLimit"], 60.0);
    let v = post_json(p, &format!("{a}batch"), deletes(3..=3))
        .await
        .json();
    assert_eq!(v["result"]["result_time"]["d3"]["operating"], 50.5);
    assert_eq!(v["time"]["operating"], 0.25);
    // a single call longer than the limit: cut, not applied
    post_json(p, "/_emulator/config", json!({"processing": 100})).await;
    let before = clock.now();
    assert_eq!(delete_status(p, &a, 4).await, 504);
    approx(&json!(clock.now()), before + 60.0);
    assert_eq!(deleted(&state(&emu).await), vec![1, 2, 3]);
    // requestLimit 0: no cut
    post_json(p, "/_emulator/config", json!({"requestLimit": 0})).await;
    assert_eq!(delete_status(p, &a, 4).await, 200);
}

#[tokio::test]
async fn limiter_config_round_trip() {
    let (emu, _) = start(|_| {}).await;
    let p = emu.port;
    let s = state(&emu).await;
    assert_eq!(s["bans"], 0);
    let c = &s["config"];
    assert_eq!(
        (
            &c["limiter"],
            &c["operatingLimit"],
            &c["processing"],
            &c["requestLimit"]
        ),
        (&json!("server"), &json!(420.0), &json!(0.0), &json!(60.0))
    );
    let v = post_json(
        p,
        "/_emulator/config",
        json!({"limiter": "docs", "operatingCost": 2, "requestLimit": 30}),
    )
    .await
    .json();
    assert_eq!(v["limiter"], "docs");
    assert_eq!(v["operatingLimit"], 480.0, "the docs' default");
    assert_eq!(v["processing"], 2.0, "operatingCost is processing");
    assert_eq!(v["requestLimit"], 30.0);
    let v = post_json(
        p,
        "/_emulator/config",
        json!({"operatingLimit": 100, "limiter": "server", "processing": 1.5}),
    )
    .await
    .json();
    assert_eq!(
        (&v["operatingLimit"], &v["processing"]),
        (&json!(100.0), &json!(1.5)),
        "a set limit stays"
    );
    let v = post_json(p, "/_emulator/config", json!({"operatingLimit": null}))
        .await
        .json();
    assert_eq!(v["operatingLimit"], 420.0);
    assert_eq!(get(p, "/_emulator/config").await.json(), v);
    for bad in [
        json!({"limiter": "fast"}),
        json!({"processing": -1}),
        json!({"requestLimit": "60"}),
    ] {
        assert_eq!(post_json(p, "/_emulator/config", bad).await.status, 400);
    }
    post_json(p, "/_emulator/reset", json!({})).await;
    assert_eq!(state(&emu).await["config"], s["config"]);
}

#[tokio::test]
async fn faults_each_kind() {
    let (emu, _) = start(|_| {}).await;
    let a = admin(&emu);
    let p = emu.port;
    let fault = |method: &str, count: u64, f: Value| {
        let body = json!({"method": method, "count": count, "fault": f});
        async move { assert_eq!(post_json(p, "/_emulator/faults", body).await.status, 200) }
    };
    let del = |id: i64| {
        let path = format!("{a}crm.item.delete");
        async move {
            raw(
                p,
                "POST",
                &path,
                &[("Content-Type", "application/json")],
                json!({"entityTypeId":1268,"id":id}).to_string().as_bytes(),
            )
            .await
        }
    };
    let e = &emu;
    let exists = |id: i64| async move {
        state(e).await["items"]["1268"]
            .as_array()
            .unwrap()
            .contains(&json!(id))
    };

    // error: 2 queued, then normal; not executed
    fault("crm.item.delete", 2, json!({"kind":"error","status":503,"error":"QUERY_LIMIT_EXCEEDED","description":"Too many requests"})).await;
    assert_err(
        &del(1).await.unwrap(),
        503,
        "QUERY_LIMIT_EXCEEDED",
        "Too many requests",
    );
    assert_eq!(del(1).await.unwrap().status, 503);
    assert!(exists(1).await);
    assert_eq!(del(1).await.unwrap().status, 200);
    // a fault for another method does not match
    fault("batch", 1, json!({"kind":"html","status":502})).await;
    assert_eq!(del(2).await.unwrap().status, 200);
    post_json(p, "/_emulator/faults", json!({})).await;
    raw(p, "DELETE", "/_emulator/faults", &[], b"")
        .await
        .unwrap();
    // html
    fault("*", 1, json!({"kind":"html","status":502})).await;
    let r = del(3).await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(exists(3).await);
    // empty
    fault("crm.item.delete", 1, json!({"kind":"empty","status":200})).await;
    let r = del(3).await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(exists(3).await);
    // truncated: applied, body cut
    fault(
        "crm.item.delete",
        1,
        json!({"kind":"truncated","status":200}),
    )
    .await;
    let r = del(3).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    assert!(r.body.starts_with(b"{\"result\":[]"));
    assert!(!exists(3).await);
    // delay
    fault("crm.item.delete", 1, json!({"kind":"delay","ms":300})).await;
    let t = Instant::now();
    assert_eq!(del(4).await.unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    // drop_after_apply: no answer, but the item is gone
    fault("crm.item.delete", 1, json!({"kind":"drop_after_apply"})).await;
    assert!(del(5).await.is_err());
    assert!(!exists(5).await);
    // hang: the client gives up; clearing faults releases it
    fault("crm.item.delete", 1, json!({"kind":"hang"})).await;
    let t = tokio::time::timeout(Duration::from_millis(400), del(6)).await;
    assert!(t.is_err(), "hang must not answer");
    assert!(exists(6).await);
    let pending = tokio::spawn(del(6));
    // a second hang is not queued: the spawned request above is normal
    assert_eq!(pending.await.unwrap().unwrap().status, 200);
    let s = state(&emu).await;
    assert_eq!(s["faults"]["served"], 8);
    // unknown kind is refused
    assert_eq!(
        post_json(p, "/_emulator/faults", json!({"fault":{"kind":"nope"}}))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn hang_released_by_clear() {
    let (emu, _) = start(|_| {}).await;
    let p = emu.port;
    let path = format!("{}crm.item.delete", admin(&emu));
    post_json(
        p,
        "/_emulator/faults",
        json!({"method":"*","count":1,"fault":{"kind":"hang"}}),
    )
    .await;
    let hung = tokio::spawn(async move { raw(p, "POST", &path, &[], b"{}").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hung.is_finished());
    raw(p, "DELETE", "/_emulator/faults", &[], b"")
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .unwrap()
        .unwrap();
    let r = r.expect("a released hang answers");
    assert_eq!(r.status, 504, "a released hang answers 504");
}

#[tokio::test]
async fn cors_and_preflight() {
    let (emu, _) = start(|_| {}).await;
    let path = format!("{}crm.item.delete", admin(&emu));
    let r = raw(
        emu.port,
        "OPTIONS",
        &path,
        &[
            ("Origin", "http://localhost:5173"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,accept"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type,accept")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    let r = raw(
        emu.port,
        "POST",
        &path,
        &[
            ("Origin", "http://x.test"),
            ("Content-Type", "application/json"),
        ],
        br#"{"entityTypeId":2,"id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://x.test")
    );
    let r = raw(emu.port, "OPTIONS", "/oauth/token/", &[], b"")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (204, Some("*"))
    );
    // preflights are not REST requests
    assert_eq!(state(&emu).await["requests"]["total"], 1);
}

#[tokio::test]
async fn portal_level_errors() {
    let (emu, _) = start(|_| {}).await;
    let p = emu.port;
    let path = format!("{}crm.item.delete", admin(&emu));
    post_json(p, "/_emulator/config", json!({"requireHttps": true})).await;
    assert_err(
        &post_json(p, &path, json!({"entityTypeId":2,"id":1})).await,
        400,
        "INVALID_REQUEST",
        "Https required",
    );
    let r = raw(
        p,
        "POST",
        &path,
        &[
            ("X-Forwarded-Proto", "https"),
            ("Content-Type", "application/json"),
        ],
        br#"{"entityTypeId":2,"id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    post_json(
        p,
        "/_emulator/config",
        json!({"requireHttps": false, "portalError": "OVERLOAD_LIMIT"}),
    )
    .await;
    assert_err(
        &post_json(p, &path, json!({})).await,
        503,
        "OVERLOAD_LIMIT",
        "REST API is blocked due to overload",
    );
    post_json(
        p,
        "/_emulator/config",
        json!({"portalError": "ACCESS_DENIED"}),
    )
    .await;
    assert_err(
        &post_json(p, &path, json!({})).await,
        403,
        "ACCESS_DENIED",
        "REST API is available only on commercial plans",
    );
    post_json(
        p,
        "/_emulator/config",
        json!({"portalError": "PORTAL_DELETED"}),
    )
    .await;
    assert_err(
        &post_json(p, &path, json!({})).await,
        500,
        "PORTAL_DELETED",
        "Portal was deleted",
    );
    assert_eq!(
        post_json(p, "/_emulator/config", json!({"portalError": "NOPE"}))
            .await
            .status,
        400
    );
    // reset restores start-up settings and data
    post_json(p, "/_emulator/reset", json!({})).await;
    assert_eq!(
        post_json(p, &path, json!({"entityTypeId":2,"id":1}))
            .await
            .status,
        200
    );
    let s = state(&emu).await;
    assert_eq!(s["config"]["portalError"], Value::Null);
    assert_eq!(s["requests"]["total"], 1);
}

#[tokio::test]
async fn control_items_reset_and_seed() {
    let (emu, _) = start(|_| {}).await;
    let p = emu.port;
    let t = Instant::now();
    let v = post_json(
        p,
        "/_emulator/items",
        json!({"entityTypeId":1268,"count":10000}),
    )
    .await
    .json();
    assert_eq!(v["ids"].as_array().unwrap().len(), 10000);
    assert_eq!(v["ids"][0], 21);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        state(&emu).await["items"]["1268"].as_array().unwrap().len(),
        10020
    );
    // a new smart process type becomes valid
    let v = post_json(
        p,
        "/_emulator/items",
        json!({"entityTypeId":1030,"count":2}),
    )
    .await
    .json();
    assert_eq!(v["ids"], json!([1, 2]));
    assert_eq!(
        post_json(
            p,
            &format!("{}crm.item.delete", admin(&emu)),
            json!({"entityTypeId":1030,"id":2})
        )
        .await
        .status,
        200
    );
    let before = state(&emu).await["webhooks"][0]["url"].clone();
    post_json(p, "/_emulator/reset", json!({"seed": 7})).await;
    let s = state(&emu).await;
    assert_ne!(s["webhooks"][0]["url"], before);
    assert_eq!(s["items"]["1268"].as_array().unwrap().len(), 20);
    assert!(s["items"].get("1030").is_none());
    assert_eq!(s["webhooks"].as_array().unwrap().len(), 4);
    assert_eq!(s["apps"][0]["client_id"].as_str().unwrap().len(), 29);
}

#[tokio::test]
async fn control_refuses_foreign_host_header() {
    let (emu, _) = start(|_| {}).await;
    let r = raw(
        emu.port,
        "GET",
        "/_emulator/state",
        &[("Host", "evil.test")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    for host in ["localhost:1", "127.0.0.1", "[::1]:8080"] {
        let r = raw(emu.port, "GET", "/_emulator/state", &[("Host", host)], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{host}");
    }
}

#[tokio::test]
async fn control_off_without_flag() {
    let (emu, _) = start(|c| c.control = false).await;
    assert_eq!(get(emu.port, "/_emulator/state").await.status, 404);
    assert_eq!(
        post_json(emu.port, "/_emulator/reset", json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn static_files_and_precedence() {
    let dir = std::env::temp_dir().join(format!("emu-static-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(dir.join("pkg/x.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.join("pkg/x.mjs"), "export{}").unwrap();
    let d2 = dir.clone();
    let (emu, _) = start(move |c| {
        c.statics = vec![("/".into(), d2.clone()), ("/pkg".into(), d2.join("pkg"))];
    })
    .await;
    let p = emu.port;
    let r = get(p, "/").await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("text/html; charset=utf-8"))
    );
    let r = get(p, "/pkg/x.wasm").await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/wasm"))
    );
    assert_eq!(
        get(p, "/pkg/x.mjs").await.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    // POST serves the file too (widget pages receive the portal's POST)
    let r = raw(
        p,
        "POST",
        "/index.html?DOMAIN=x",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"AUTH_ID=1",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    for bad in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/pkg/..%2f..%2fCargo.toml",
        "/nope.html",
    ] {
        assert_eq!(get(p, bad).await.status, 404, "{bad}");
    }
    // emulator routes win over a static mount at /
    assert_eq!(
        get(p, "/api/v1/").await.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(get(p, "/rest/crm.item.delete").await.status, 401);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn frame_host_page() {
    let (emu, _) = start(|_| {}).await;
    let r = get(emu.port, "/app/demo?url=/widget.html&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options=%7B%22ID%22%3A%227%22%7D").await;
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    let domain = format!("127.0.0.1:{}", emu.port);
    assert!(html.contains(&format!("name=\"{domain}|0|")), "{html}");
    for f in [
        "AUTH_ID",
        "AUTH_EXPIRES",
        "REFRESH_ID",
        "member_id",
        "PLACEMENT",
        "PLACEMENT_OPTIONS",
        "SERVER_ENDPOINT",
        "status",
    ] {
        assert!(html.contains(&format!("name=\"{f}\"")), "{f}");
    }
    assert!(html.contains("CRM_DYNAMIC_1268_DETAIL_TAB"));
    assert!(html.contains("DOMAIN=127.0.0.1%3A"));
    assert!(
        !html.contains("&quot;URI&quot;") && !html.contains(r#"\"URI\""#),
        "no injected URI option"
    );
    assert!(html.contains(r#""INSTALL":false"#) && html.contains(r#""FIRST_RUN":false"#));
    assert_eq!(get(emu.port, "/app/demo").await.status, 400);
    // the frame is named after the request's Host; PLACEMENT upper-case; INSTALL/FIRST_RUN settable
    let r = raw(
        emu.port,
        "GET",
        "/app/demo?url=/widget.html&placement=crm_dynamic_1268_detail_tab&install=1&first_run=true",
        &[("Host", &format!("localhost:{}", emu.port))],
        b"",
    )
    .await
    .unwrap();
    let html = String::from_utf8(r.body).unwrap();
    assert!(
        html.contains(&format!("name=\"localhost:{}|0|", emu.port)),
        "{html}"
    );
    assert!(html.contains("DOMAIN=localhost%3A"));
    assert!(html.contains("value=\"CRM_DYNAMIC_1268_DETAIL_TAB\""));
    assert!(html.contains(r#""INSTALL":true"#) && html.contains(r#""FIRST_RUN":true"#));
    // refreshAuth's server side mints a pair for the page's session: concurrent ones all succeed
    let sid = html.split("APP_SID=").nth(1).unwrap()[..32].to_string();
    let refresh = |sid: String| async move {
        raw(
            emu.port,
            "POST",
            "/app/_refresh",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("app_sid={sid}").as_bytes(),
        )
        .await
        .unwrap()
    };
    let (a, b) = tokio::join!(refresh(sid.clone()), refresh(sid.clone()));
    let (a, b) = (a.json(), b.json());
    assert_ne!(a["access_token"], b["access_token"]);
    for t in [&a, &b] {
        let path = format!(
            "/rest/user.current?auth={}",
            t["access_token"].as_str().unwrap()
        );
        assert_eq!(get(emu.port, &path).await.status, 200);
    }
    assert_eq!(refresh("0".repeat(32)).await.status, 400);
    post_json(emu.port, "/_emulator/reset", json!({})).await;
    assert_eq!(refresh(sid).await.status, 400, "a reset ends the sessions");
    let js = get(emu.port, "/api/v1/").await;
    assert!(String::from_utf8(js.body)
        .unwrap()
        .contains("Unable to initialize Bitrix24 JS library!"));
}

/// Read one HTTP/1.1 response with a Content-Length from a keep-alive stream.
async fn read_one(s: &mut TcpStream) -> String {
    let mut buf = vec![];
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return head.to_string();
            }
        }
    }
}

/// GET on a keep-alive connection; returns whether the answer says `Connection: close`.
async fn answer_closes(port: u16, path: &str) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_one(&mut s)
        .await
        .to_ascii_lowercase()
        .contains("connection: close")
}

#[tokio::test]
async fn drop_fault_closes_keepalive_connections_first() {
    let (emu, _) = start(|_| {}).await;
    let p = emu.port;
    let path = format!("{}user.current", admin(&emu));
    // an idle keep-alive connection, as a browser keeps one
    let mut idle = TcpStream::connect(("127.0.0.1", p)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n");
    idle.write_all(req.as_bytes()).await.unwrap();
    let head = read_one(&mut idle).await;
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // queuing a drop fault closes it, and answers carry Connection: close until the fault is used
    post_json(
        p,
        "/_emulator/faults",
        json!({"method":"crm.item.delete","fault":{"kind":"drop_after_apply"}}),
    )
    .await;
    let mut rest = vec![];
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(answer_closes(p, &path).await);
    let del = format!("{}crm.item.delete", admin(&emu));
    assert!(raw(p, "POST", &del, &[], br#"{"entityTypeId":2,"id":1}"#)
        .await
        .is_err());
    assert!(!answer_closes(p, &path).await);
    // fresh: false keeps keep-alive connections (a browser may then re-send the dropped request)
    post_json(
        p,
        "/_emulator/faults",
        json!({"method":"crm.item.delete","fault":{"kind":"drop_after_apply","fresh":false}}),
    )
    .await;
    assert!(!answer_closes(p, &path).await);
    assert!(raw(p, "POST", &del, &[], br#"{"entityTypeId":2,"id":2}"#)
        .await
        .is_err());
    let s = state(&emu).await;
    assert_eq!(
        s["deleted"],
        json!([{"entityTypeId":2,"id":1},{"entityTypeId":2,"id":2}])
    );
}
