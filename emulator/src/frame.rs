//! Frame host: `/app/{name}` embeds a widget the way a Bitrix24 portal does, and the
//! BX24-compatible library served at `/api/v1/`.

use serde_json::{json, Map, Value};

use crate::portal::{derive, Portal};

/// The BX24-compatible library.
pub const BX24_JS: &str = include_str!("../assets/bx24.js");
const HOST_JS: &str = include_str!("../assets/frame-host.js");

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// The portal's DOMAIN as a frame sees it: the request's `Host` (a port kept unless it is 80 or
/// 443), as the real portal names the frame; `None` for a missing or odd one.
pub fn frame_domain(host: Option<&str>) -> Option<String> {
    let host = host?.trim();
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if host.is_empty() || !host.chars().all(ok) {
        return None;
    }
    let bare = host
        .strip_suffix(":80")
        .or_else(|| host.strip_suffix(":443"))
        .unwrap_or(host);
    Some(bare.to_string())
}

/// The parent page for `/app/{name}?url=WIDGET&placement=CODE&options=JSON&user=N&lang=xx
/// &lifetime=S&install=1&first_run=1`; `host` is the request's `Host`.
pub fn host_page(
    p: &mut Portal,
    name: &str,
    params: &Map<String, Value>,
    host: Option<&str>,
    now: f64,
) -> Result<String, String> {
    let get = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_string);
    let url = get("url").ok_or("missing ?url=WIDGET_URL (absolute, or a path on the emulator)")?;
    let url = if url.starts_with('/') {
        format!("{}{}", p.origin, url)
    } else {
        url
    };
    let frame_origin = origin_of(&url).ok_or("url must be an http(s) URL or a path")?;
    let placement = get("placement")
        .unwrap_or_else(|| "DEFAULT".to_string())
        .to_ascii_uppercase();
    let options = match get("options") {
        Some(s) if !s.is_empty() => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => return Err("options must be a JSON object".into()),
        },
        _ => Map::new(),
    };
    let user_id = params
        .get("user")
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
        .unwrap_or(1);
    let user = p
        .user(user_id)
        .ok_or("unknown user (seeded users are 1..4)")?
        .clone();
    let lang = get("lang").unwrap_or_else(|| "en".to_string());
    let lifetime = params
        .get("lifetime")
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_f64()))
        .unwrap_or(p.settings.token_lifetime);
    let flag = |k: &str| crate::params::truthy(params.get(k));
    let (access, refresh, _) = p.issue_tokens(user_id, lifetime, now);
    let app_sid = derive(p.seed, &format!("app_sid{access}"), 32, b"0123456789abcdef");
    p.frame_sessions.insert(app_sid.clone(), user_id);
    let domain = frame_domain(host).unwrap_or_else(|| p.domain());
    let options_json = Value::Object(options.clone()).to_string();
    let frame_name = format!("{domain}|0|{app_sid}");
    let sep = if url.contains('?') { '&' } else { '?' };
    let action = format!(
        "{url}{sep}DOMAIN={}&PROTOCOL=0&LANG={}&APP_SID={}",
        crate::params::url_encode(&domain),
        crate::params::url_encode(&lang),
        app_sid
    );
    let fields = [
        ("AUTH_ID", access.clone()),
        ("AUTH_EXPIRES", format!("{}", lifetime.round() as i64)),
        ("REFRESH_ID", refresh.clone()),
        ("SERVER_ENDPOINT", format!("{}/rest/", p.origin)),
        (
            "APPLICATION_TOKEN",
            derive(p.seed, "application_token", 32, b"0123456789abcdef"),
        ),
        ("APPLICATION_SCOPE", p.app.scopes.join(",")),
        ("member_id", p.member_id.clone()),
        ("status", "L".to_string()),
        ("PLACEMENT", placement.clone()),
        ("PLACEMENT_OPTIONS", options_json.clone()),
    ];
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                esc(k),
                esc(v)
            )
        })
        .collect();
    let cfg = json!({
        "DOMAIN": domain,
        "PROTOCOL": 0,
        "LANG": lang,
        "APP_SID": app_sid,
        "AUTH_ID": access,
        "REFRESH_ID": refresh,
        "AUTH_EXPIRES": lifetime.round() as i64,
        "MEMBER_ID": p.member_id,
        "IS_ADMIN": user.admin,
        "USER_ID": user_id,
        "PLACEMENT": placement,
        "PLACEMENT_OPTIONS": options_json,
        "PLACEMENT_OPTIONS_OBJECT": Value::Object(options),
        "INSTALL": flag("install"),
        "FIRST_RUN": flag("first_run"),
        "frameOrigin": frame_origin,
        "frameName": frame_name,
        "url": url,
    });
    let cfg_js = cfg.to_string().replace("</", "<\\/");
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Bitrix24 emulator: {title}</title>
<style>body{{margin:0;font:14px system-ui,sans-serif;background:#eef2f4}}header{{padding:6px 12px;background:#2fc6f6;color:#fff}}
iframe{{display:block;border:0;width:100%;height:calc(100vh - 31px);background:#fff}}</style></head>
<body><header>Bitrix24 emulator &middot; app <b>{title}</b> &middot; {placement_e} &middot; user {user_id}</header>
<form id="b24-app-form" method="post" target="{frame_name_e}" action="{action_e}" style="display:none">
{inputs}</form>
<iframe id="b24-app-frame" name="{frame_name_e}" src="about:blank" allow="clipboard-write"></iframe>
<script>window.__B24_FRAME_CFG = {cfg_js};</script>
<script>{HOST_JS}</script>
</body></html>
"#,
        title = esc(name),
        placement_e = esc(&placement),
        frame_name_e = esc(&frame_name),
        action_e = esc(&action),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        assert_eq!(
            super::origin_of("http://a:1/x?y").as_deref(),
            Some("http://a:1")
        );
        assert_eq!(super::origin_of("javascript:alert(1)"), None);
    }

    #[test]
    fn frame_domain_is_the_host() {
        use super::frame_domain;
        assert_eq!(
            frame_domain(Some("localhost:8080")).as_deref(),
            Some("localhost:8080")
        );
        assert_eq!(
            frame_domain(Some("portal.test:443")).as_deref(),
            Some("portal.test")
        );
        assert_eq!(
            frame_domain(Some("127.0.0.1:80")).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            frame_domain(Some("[::1]:9000")).as_deref(),
            Some("[::1]:9000")
        );
        assert_eq!(frame_domain(Some("a\"b")), None);
        assert_eq!(frame_domain(Some("")), None);
        assert_eq!(frame_domain(None), None);
    }
}
