//! `cargo xtask demo [--check] [--port N]`: the demo page served by the emulator.

use crate::emulator::{self, Emulator};
use crate::util::{self, root, Args, Result};
use std::process::Command;

pub fn run(args: &[String]) -> Result {
    let mut a = Args::new(args);
    let check = a.flag("--check");
    let port: u16 = match a.value("--port")? {
        Some(p) => p
            .parse()
            .map_err(|_| format!("--port: not a port number: {p}"))?,
        None => 0,
    };
    a.finish()?;
    crate::build::build(false)?;
    emulator::build()?;
    if check {
        check_page(port).0
    } else {
        serve(port)
    }
}

fn static_flags() -> Vec<String> {
    let root = root();
    vec![
        "--control".into(),
        "--static".into(),
        format!("/={}", root.join("www").display()),
        "--static".into(),
        format!("/pkg={}", root.join("pkg").display()),
    ]
}

/// The page is opened on `localhost` while the API answers on `127.0.0.1`: a cross-origin
/// page→portal setup, as in real life.
fn page_url(emu: &Emulator) -> String {
    format!("http://localhost:{}/", emu.port())
}

/// The placement widget (`www/widget/`) inside the emulator's frame host, opened for the
/// smart-process item 1. On 127.0.0.1: BX24 calls the portal at the frame's DOMAIN, which the
/// host sets to 127.0.0.1:PORT.
fn widget_url(emu: &Emulator) -> String {
    format!(
        "http://127.0.0.1:{}/app/widget?url=/widget/index.html&placement=CRM_DYNAMIC_1268_DETAIL_TAB&options={}",
        emu.port(),
        encode(r#"{"ID":"1"}"#)
    )
}

fn serve(port: u16) -> Result {
    let emu = Emulator::start(port, &static_flags(), true)?;
    let url = page_url(&emu);
    println!();
    println!("  demo page:  {url}");
    println!("  webhook:    {}", emu.webhook);
    println!("  prefilled:  {url}?webhook={}", encode(&emu.webhook));
    println!("  widget:     {}", widget_url(&emu));
    println!();
    println!(
        "The emulator is seeded with items of a smart process (entityTypeId 1268) and deals (2)."
    );
    println!("Press Ctrl-C to stop.");
    emu.wait()
}

/// Drive the page in headless Chromium (tests/js/demo-check.mjs); its exit status decides.
/// Also returns the check lines it printed (`ok ...` / `FAIL ...`).
pub fn check_page(port: u16) -> (Result, Vec<String>) {
    let emu = match Emulator::start(port, &static_flags(), false) {
        Ok(e) => e,
        Err(e) => return (Err(e), Vec::new()),
    };
    let url = page_url(&emu);
    let script = root().join("tests/js/demo-check.mjs");
    let (r, lines) = util::run_tee(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&emu.webhook)
            .current_dir(root()),
        |l| {
            let t = l.trim_start();
            t.starts_with("ok ") || t.starts_with("FAIL ")
        },
    );
    drop(emu);
    match r {
        Ok(()) => {
            println!("demo --check: ok");
            (Ok(()), lines)
        }
        Err(e) => (Err(format!("demo check failed: {e}")), lines),
    }
}

/// Percent-encode a URL for use as a query parameter value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
