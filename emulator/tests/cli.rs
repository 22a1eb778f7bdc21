//! The fixed command line: the two start-up lines, flags, defaults, and the control API switch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Running {
    child: Child,
    url: String,
    webhook: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emulator"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    let webhook = second.strip_prefix("webhook: ").expect(&second).to_string();
    Running {
        child,
        url,
        webhook,
    }
}

fn get(url: &str, path: &str) -> (u16, String) {
    let hostport = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn prints_the_two_lines_and_binds_loopback() {
    let r = run(&["--port", "0", "--seed", "1"]);
    assert!(r.url.starts_with("http://127.0.0.1:"), "{}", r.url);
    let port: u16 = r.url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0);
    // deterministic secret for seed 1
    assert_eq!(r.webhook, format!("{}/rest/1/m7nnavfub4l2vlcl/", r.url));
    let (status, body) = get(
        &r.url,
        &format!("{}user.current", r.webhook.trim_start_matches(&r.url)),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ID\":\"1\""));
    // control API is off by default
    assert_eq!(get(&r.url, "/_emulator/state").0, 404);
}

#[test]
fn flags_reach_the_config() {
    let r = run(&[
        "--port",
        "0",
        "--control",
        "--seed",
        "7",
        "--burst",
        "3",
        "--drain",
        "0.5",
        "--token-lifetime",
        "60",
        "--time-scale",
        "10",
        "--operating-limit",
        "5",
        "--operating-cost",
        "1",
        "--limiter",
        "docs",
        "--request-limit",
        "30",
        "--items",
        "2",
    ]);
    assert!(!r.webhook.contains("m7nnavfub4l2vlcl"));
    let (status, body) = get(&r.url, "/_emulator/state");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["config"]["burst"], 3);
    assert_eq!(v["config"]["drain"], 0.5);
    assert_eq!(v["config"]["tokenLifetime"], 60.0);
    assert_eq!(v["config"]["timeScale"], 10.0);
    assert_eq!(v["config"]["operatingLimit"], 5.0);
    assert_eq!(
        v["config"]["processing"], 1.0,
        "--operating-cost is --processing"
    );
    assert_eq!(v["config"]["limiter"], "docs");
    assert_eq!(v["config"]["requestLimit"], 30.0);
    assert_eq!(v["items"]["1268"], serde_json::json!([1, 2]));
    assert_eq!(v["seed"], 7);
    assert_eq!(v["webhooks"][0]["url"], r.webhook);
}

#[test]
fn limit_defaults_follow_the_limiter() {
    let config = |args: &[&str]| {
        let r = run(&[&["--port", "0", "--control"][..], args].concat());
        let (_, body) = get(&r.url, "/_emulator/config");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let v = config(&[]);
    assert_eq!(v["limiter"], "server");
    assert_eq!(v["operatingLimit"], 420.0);
    assert_eq!(v["processing"], 0.0);
    assert_eq!(v["requestLimit"], 60.0);
    assert_eq!(config(&["--limiter", "docs"])["operatingLimit"], 480.0);
    assert_eq!(
        config(&["--limiter=docs", "--no-limits"])["operatingLimit"],
        0.0
    );
}

#[test]
fn help_and_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_emulator"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--burst",
        "--drain",
        "--control",
        "--seed",
        "--static",
        "--token-lifetime",
        "--time-scale",
        "--no-limits",
        "--limiter",
        "--processing",
        "--operating-cost",
        "--request-limit",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_emulator"))
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for bad in [
        &["--limiter", "fast"][..],
        &["--processing", "-1"],
        &["--request-limit", "x"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_emulator"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_emulator"))
        .args(["--static", "/x=/definitely/not/here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
