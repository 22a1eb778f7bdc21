//! `cargo xtask test [--quick]`: every check, every step run, one summary at the end.

use crate::emulator::{self, Emulator};
use crate::setup::find_tool;
use crate::toolchain;
use crate::util::{self, dur, root, Args, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

enum Outcome {
    Ok,
    Skipped(String),
    Failed(String),
}

struct Steps {
    done: Vec<(&'static str, Outcome, std::time::Duration)>,
}

impl Steps {
    fn run(&mut self, name: &'static str, f: impl FnOnce() -> Result<Option<String>>) -> bool {
        println!("\n==> {name}");
        let t = Instant::now();
        let outcome = match f() {
            Ok(None) => Outcome::Ok,
            Ok(Some(why)) => {
                println!("SKIPPED: {why}");
                Outcome::Skipped(why)
            }
            Err(e) => {
                eprintln!("FAILED: {name}: {e}");
                Outcome::Failed(e)
            }
        };
        let ok = !matches!(outcome, Outcome::Failed(_));
        self.done.push((name, outcome, t.elapsed()));
        ok
    }

    fn fail(&mut self, name: &'static str, why: &str) {
        println!("\n==> {name}\nFAILED: not run: {why}");
        self.done.push((
            name,
            Outcome::Failed(format!("not run: {why}")),
            Default::default(),
        ));
    }
}

pub fn run(args: &[String]) -> Result {
    let mut a = Args::new(args);
    let quick = a.flag("--quick");
    a.finish()?;
    let started = Instant::now();
    let root = root();
    let mut s = Steps { done: Vec::new() };

    if !s.run("setup", || crate::setup::ensure().map(|_| None)) {
        // Without the tools nothing below can say anything useful.
        return summary(&s, started);
    }
    s.run("cargo fmt --check", || {
        cargo(&["fmt", "--all", "--check"]).map(|_| None)
    });
    s.run("clippy -D warnings", || {
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .map(|_| None)
    });
    s.run("native tests", || {
        cargo(&["test", "--workspace"]).map(|_| None)
    });
    if quick {
        println!("\n--quick: skipping build, wasm, JS and demo steps");
        return summary(&s, started);
    }
    let built = s.run("build pkg/", || crate::build::build(false).map(|_| None));
    if built {
        let _ = crate::build::print_sizes(&root.join("pkg"));
    }
    let emu_built = s.run("build emulator", || emulator::build().map(|_| None));

    if emu_built {
        s.run("wasm tests (headless Chromium)", wasm_tests);
    } else {
        s.fail(
            "wasm tests (headless Chromium)",
            "the emulator did not build",
        );
    }

    if built && emu_built {
        s.run("JS package tests", js_tests);
        s.run("demo --check", || crate::demo::check_page(0).map(|_| None));
    } else {
        s.fail("JS package tests", "pkg/ or the emulator did not build");
        s.fail("demo --check", "pkg/ or the emulator did not build");
    }
    summary(&s, started)
}

fn cargo(args: &[&str]) -> Result {
    util::run(Command::new("cargo").args(args).current_dir(root()))
}

fn wasm_tests() -> Result<Option<String>> {
    let root = root();
    if !root.join("tests/wasm.rs").exists() {
        return Ok(Some("tests/wasm.rs does not exist yet".into()));
    }
    let tc = toolchain::detect_or_err()?;
    let runner = find_tool("wasm-bindgen-test-runner")
        .ok_or("wasm-bindgen-test-runner not found: run `cargo xtask setup`")?;
    let emu = Emulator::start(0, &["--control".to_string()], false)?;
    let mut cmd = tc.cargo("test", false);
    cmd.args(["--package", crate::build::CRATE, "--test", "wasm"])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("CHROMEDRIVER", chromedriver())
        .env("B24_EMULATOR_URL", &emu.url)
        .env("B24_EMULATOR_WEBHOOK", &emu.webhook);
    let r = util::run(&mut cmd);
    drop(emu);
    r.map(|_| None)
}

fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| util::which("chromedriver"))
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// `*.test.mjs` directly in `dir`, sorted.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().ends_with(".test.mjs"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn js_tests() -> Result<Option<String>> {
    let root = root();
    let mut files = test_files(&root.join("tests/js"));
    files.extend(test_files(&root.join("emulator/tests/js")));
    if files.is_empty() {
        return Ok(Some(
            "no *.test.mjs in tests/js/ or emulator/tests/js/ yet".into(),
        ));
    }
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-concurrency=1"])
        .args(files.iter().map(|f| f.strip_prefix(&root).unwrap_or(f)))
        .current_dir(&root)
        .env("B24_EMULATOR_BIN", emulator::bin())
        .env("B24_PKG_DIR", root.join("pkg"))
        .env("B24_REPO", &root);
    util::run(&mut cmd).map(|_| None)
}

fn summary(s: &Steps, started: Instant) -> Result {
    println!("\n==> summary");
    let (mut failed, mut passed, mut skipped) = (0, 0, 0);
    for (name, outcome, d) in &s.done {
        let (word, extra) = match outcome {
            Outcome::Ok => {
                passed += 1;
                ("ok", String::new())
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                ("skipped", format!("  ({why})"))
            }
            Outcome::Failed(e) => {
                failed += 1;
                ("FAILED", format!("  ({})", first_line(e)))
            }
        };
        println!("  {word:<8} {name:<32} {:>8}{extra}", dur(*d));
    }
    println!("  total {}", dur(started.elapsed()));
    println!("steps: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        Err(format!("{failed} step(s) failed"))
    } else {
        println!("all steps passed");
        Ok(())
    }
}

fn first_line(s: &str) -> &str {
    let l = s.lines().next().unwrap_or("");
    if l.len() > 120 {
        let mut end = 120;
        while !l.is_char_boundary(end) {
            end -= 1;
        }
        &l[..end]
    } else {
        l
    }
}
