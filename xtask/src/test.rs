//! `cargo xtask test [--quick]`: every check, every step run, one summary at the end.
//!
//! A failing step does not stop the others (a fmt slip must not hide test results); the exit
//! status is non-zero if any step failed. The summary repeats each runner's counts and ends
//! with one `tests: N passed, N failed, N skipped` line over all runners.

use crate::emulator::{self, Emulator};
use crate::setup::find_tool;
use crate::toolchain;
use crate::util::{self, dur, root, Args, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }

    fn show(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// What a step returns: its result (Ok(Some(why)) = skipped), for test runners the counts, and
/// a note the summary repeats beside a step that passed.
struct Done {
    result: Result<Option<String>>,
    counts: Option<Counts>,
    note: Option<String>,
}

impl Default for Done {
    /// Passed, with no counts and no note.
    fn default() -> Self {
        Done {
            result: Ok(None),
            counts: None,
            note: None,
        }
    }
}

impl From<Result> for Done {
    fn from(r: Result) -> Self {
        Done {
            result: r.map(|_| None),
            ..Done::default()
        }
    }
}

fn skipped(why: &str) -> Done {
    Done {
        result: Ok(Some(why.to_string())),
        ..Done::default()
    }
}

enum Outcome {
    Ok(Option<String>),
    Skipped(String),
    Failed(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    counts: Option<Counts>,
    time: Duration,
}

#[derive(Default)]
struct Steps {
    done: Vec<Step>,
}

impl Steps {
    fn run(&mut self, name: &'static str, f: impl FnOnce() -> Done) -> bool {
        println!("\n==> {name}");
        let t = Instant::now();
        let d = f();
        let outcome = match d.result {
            Ok(None) => {
                if let Some(note) = &d.note {
                    println!("NOTE: {name}: {note}");
                }
                Outcome::Ok(d.note)
            }
            Ok(Some(why)) => {
                println!("SKIPPED: {name}: {why}");
                Outcome::Skipped(why)
            }
            Err(e) => {
                println!("FAILED: {name}: {e}");
                Outcome::Failed(e)
            }
        };
        let ok = !matches!(outcome, Outcome::Failed(_));
        self.done.push(Step {
            name,
            outcome,
            counts: d.counts,
            time: t.elapsed(),
        });
        ok
    }

    fn not_run(&mut self, name: &'static str, why: &str) {
        println!("\n==> {name}\nFAILED: {name}: not run: {why}");
        self.done.push(Step {
            name,
            outcome: Outcome::Failed(format!("not run: {why}")),
            counts: None,
            time: Duration::ZERO,
        });
    }
}

pub fn run(args: &[String]) -> Result {
    let mut a = Args::new(args);
    let quick = a.flag("--quick");
    a.finish()?;
    let started = Instant::now();
    let root = root();
    let mut s = Steps::default();

    if !s.run("setup", || crate::setup::ensure().into()) {
        // Without the tools nothing below can say anything useful.
        return summary(&s, started);
    }
    s.run("cargo fmt --check", || {
        cargo(&["fmt", "--all", "--check"]).into()
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
        .into()
    });
    s.run("clippy wasm32 -D warnings", clippy_wasm);
    s.run("native tests", native_tests);
    if quick {
        println!("\n--quick: skipping build, wasm, JS and demo steps");
        return summary(&s, started);
    }
    let built = s.run("build pkg/", || crate::build::build(false).into());
    if built {
        s.run("size budget", || size_budget(&root.join("pkg")));
    } else {
        s.not_run("size budget", "pkg/ did not build");
    }
    let emu_built = s.run("build emulator", || emulator::build().into());

    if emu_built {
        s.run("wasm tests (headless Chromium)", wasm_tests);
    } else {
        s.not_run(
            "wasm tests (headless Chromium)",
            "the emulator did not build",
        );
    }

    if built && emu_built {
        s.run("JS package tests", js_tests);
        s.run("package environments", package_environments);
        s.run("demo --check", || {
            let (r, lines) = crate::demo::check_page(0);
            Done {
                result: r.map(|_| None),
                counts: Some(demo_counts(&lines)),
                note: None,
            }
        });
    } else {
        s.not_run("JS package tests", "pkg/ or the emulator did not build");
        s.not_run("package environments", "pkg/ or the emulator did not build");
        s.not_run("demo --check", "pkg/ or the emulator did not build");
    }
    summary(&s, started)
}

/// The size budget: the gzip size of what the package's entry loads (the wasm and every JS file)
/// is at most [`crate::bench::BUDGET_GZIP`], measured on the toolchain the budget is set for
/// (Debian's rustc-web with build-std and immediate abort, binaryen at its pinned version: see
/// [`toolchain::Pins`], printed with the figure). The run fails above it. Built with anything
/// else the figure is not the budget's: under CI, where `cargo xtask setup` installs that
/// toolchain, the step fails; locally it says what is missing and skips.
fn size_budget(pkg: &Path) -> Done {
    let sizes = match crate::build::print_sizes(pkg) {
        Ok(sizes) => sizes,
        Err(e) => return Err(e).into(),
    };
    let release = match toolchain::detect_for_release() {
        Ok(release) => release,
        Err(e) => return Err(e).into(),
    };
    let ci = is_ci(std::env::var("CI").ok().as_deref());
    let (line, done) = size_verdict(sizes.total_gzip, &release, &toolchain::Pins::read(), ci);
    println!("{line}");
    done
}

/// The size step's printed line and outcome, from the figure and what it was measured on.
fn size_verdict(
    total: u64,
    release: &toolchain::Wasm,
    pins: &toolchain::Pins,
    ci: bool,
) -> (String, Done) {
    let budget = crate::bench::BUDGET_GZIP;
    let line = format!(
        "size: {total} bytes gzip, budget {budget} ({} to spare); on {}",
        budget as i64 - total as i64,
        pins.line()
    );
    if let Err(why) = &pins.binaryen {
        return (line, Err(why.clone()).into());
    }
    if *release != toolchain::Wasm::BuildStd {
        let why = format!(
            "the release wasm was built with {}, not the toolchain the budget is measured on \
             (Debian's rustc-web {} with build-std and immediate abort); `cargo xtask setup` \
             installs it where it runs as root",
            release.describe(),
            toolchain::RUSTC_WEB_VERSION
        );
        let done = if ci { Err(why).into() } else { skipped(&why) };
        return (line, done);
    }
    if total > budget {
        let over = format!(
            "the package is over its size budget: {total} > {budget} bytes gzip \
             (`cargo xtask bench size` and docs/size.md say where the bytes go)"
        );
        return (line, Err(over).into());
    }
    let done = Done {
        note: pins.drift(),
        ..Done::default()
    };
    (line, done)
}

/// Whether this runs under CI: `CI` set to anything but empty, `0` or `false` (CI services set
/// `CI=true`).
fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

fn cargo(args: &[&str]) -> Result {
    util::run(Command::new("cargo").args(args).current_dir(root()))
}

fn native_tests() -> Done {
    let (r, lines) = util::run_tee(
        Command::new("cargo")
            .args(["test", "--workspace"])
            .current_dir(root()),
        is_cargo_result,
    );
    Done {
        result: r.map(|_| None),
        counts: Some(cargo_counts(&lines)),
        note: None,
    }
}

/// Clippy on the wasm32 build too: the binding layer only exists there.
fn clippy_wasm() -> Done {
    let tc = match toolchain::detect_or_err() {
        Ok(tc) => tc,
        Err(e) => return Err(e).into(),
    };
    if tc == toolchain::Wasm::BuildStd && !Path::new("/usr/bin/cargo-clippy").exists() {
        return skipped("Debian's rustc-web has no clippy");
    }
    let mut cmd = tc.cargo("clippy", false);
    cmd.args([
        "--package",
        crate::build::CRATE,
        "--lib",
        "--tests",
        "--",
        "-D",
        "warnings",
    ]);
    util::run(&mut cmd).into()
}

fn wasm_tests() -> Done {
    let root = root();
    if !root.join("tests/wasm.rs").exists() {
        return skipped("tests/wasm.rs does not exist yet");
    }
    let tc = match toolchain::detect_or_err() {
        Ok(tc) => tc,
        Err(e) => return Err(e).into(),
    };
    let Some(runner) = find_tool("wasm-bindgen-test-runner") else {
        return Err("wasm-bindgen-test-runner not found: run `cargo xtask setup`".to_string())
            .into();
    };
    let emu = match Emulator::start(0, &["--control".to_string()], false) {
        Ok(e) => e,
        Err(e) => return Err(e).into(),
    };
    let mut cmd = tc.cargo("test", false);
    cmd.args(["--package", crate::build::CRATE, "--test", "wasm"])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner)
        .env("CHROMEDRIVER", chromedriver())
        .env("B24_EMULATOR_URL", &emu.url)
        .env("B24_EMULATOR_WEBHOOK", &emu.webhook);
    let (r, lines) = util::run_tee(&mut cmd, is_cargo_result);
    drop(emu);
    let counts = cargo_counts(&lines);
    let result = match r {
        Ok(()) if counts.passed == 0 => Err("the wasm test runner ran no test".to_string()),
        r => r.map(|_| None),
    };
    Done {
        result,
        counts: Some(counts),
        note: None,
    }
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

fn js_tests() -> Done {
    let root = root();
    let mut files = test_files(&root.join("tests/js"));
    files.extend(test_files(&root.join("emulator/tests/js")));
    if files.is_empty() {
        return skipped("no *.test.mjs in tests/js/ or emulator/tests/js/ yet");
    }
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-concurrency=1", "--test-reporter=tap"])
        .args(files.iter().map(|f| f.strip_prefix(&root).unwrap_or(f)))
        .current_dir(&root)
        .env("B24_EMULATOR_BIN", emulator::bin())
        .env("B24_PKG_DIR", root.join("pkg"))
        .env("B24_REPO", &root);
    let (r, lines) = util::run_tee(&mut cmd, |l| node_count(l).is_some());
    let mut c = Counts::default();
    for l in &lines {
        if let Some((key, n)) = node_count(l) {
            match key {
                "pass" => c.passed += n,
                "fail" => c.failed += n,
                _ => c.skipped += n, // skipped, todo, cancelled
            }
        }
    }
    Done {
        result: r.map(|_| None),
        counts: Some(c),
        note: None,
    }
}

/// `npm pack` of pkg/ installed into a plain page, Vite, webpack, Node and tsc projects
/// (tests/packaging/run.mjs); it ends with a `N passed, N failed` line.
fn package_environments() -> Done {
    let root = root();
    let mut cmd = Command::new("node");
    cmd.arg("tests/packaging/run.mjs")
        .current_dir(&root)
        .env("B24_EMULATOR_BIN", emulator::bin())
        .env("B24_PKG_DIR", root.join("pkg"));
    let (r, lines) = util::run_tee(&mut cmd, |l| plain_count(l).is_some());
    Done {
        result: r.map(|_| None),
        counts: lines.iter().rev().find_map(|l| plain_count(l)),
        note: None,
    }
}

/// A closing `N passed, N failed` line.
fn plain_count(l: &str) -> Option<Counts> {
    let (passed, failed) = l.trim().split_once(", ")?;
    Some(Counts {
        passed: passed.strip_suffix(" passed")?.parse().ok()?,
        failed: failed.strip_suffix(" failed")?.parse().ok()?,
        skipped: 0,
    })
}

fn is_cargo_result(l: &str) -> bool {
    l.trim_start().starts_with("test result:")
}

/// Sum `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
fn cargo_counts(lines: &[String]) -> Counts {
    let mut c = Counts::default();
    for l in lines {
        for part in l.split([';', '.']) {
            let mut w = part.split_whitespace();
            if let (Some(n), Some(what)) = (w.next(), w.next()) {
                if let Ok(n) = n.parse::<u64>() {
                    match what {
                        "passed" => c.passed += n,
                        "failed" => c.failed += n,
                        "ignored" => c.skipped += n,
                        _ => {}
                    }
                }
            }
        }
    }
    c
}

/// Node's TAP totals: `# pass 42`, `# fail 0`, `# skipped 1`, `# todo 2`, `# cancelled 0`.
fn node_count(l: &str) -> Option<(&str, u64)> {
    let rest = l.strip_prefix("# ")?;
    let (key, n) = rest.split_once(' ')?;
    if !["pass", "fail", "skipped", "todo", "cancelled"].contains(&key) {
        return None;
    }
    Some((key, n.trim().parse().ok()?))
}

/// demo-check.mjs prints `  ok   ...` / `  FAIL ...` per check.
fn demo_counts(lines: &[String]) -> Counts {
    let mut c = Counts::default();
    for l in lines {
        let t = l.trim_start();
        if t.starts_with("ok ") {
            c.passed += 1;
        } else if t.starts_with("FAIL ") {
            c.failed += 1;
        }
    }
    c
}

fn summary(s: &Steps, started: Instant) -> Result {
    println!("\n==> summary");
    let mut failed = 0;
    let mut total = Counts::default();
    for st in &s.done {
        let (word, extra) = match &st.outcome {
            Outcome::Ok(None) => ("ok", String::new()),
            Outcome::Ok(Some(note)) => ("ok", format!("  (NOTE: {})", first_line(note))),
            Outcome::Skipped(why) => ("skipped", format!("  ({why})")),
            Outcome::Failed(e) => {
                failed += 1;
                ("FAILED", format!("  ({})", first_line(e)))
            }
        };
        let counts = match st.counts {
            Some(c) => {
                total.add(c);
                format!("  [{}]", c.show())
            }
            None => String::new(),
        };
        println!(
            "  {word:<8} {:<32} {:>8}{counts}{extra}",
            st.name,
            dur(st.time)
        );
    }
    println!("  total time {}", dur(started.elapsed()));
    if failed > 0 {
        println!("{failed} step(s) FAILED");
    } else {
        println!("all steps passed");
    }
    println!("tests: {}", total.show());
    if failed > 0 {
        Err(format!("{failed} step(s) failed"))
    } else {
        Ok(())
    }
}

fn first_line(s: &str) -> &str {
    let l = s.lines().next().unwrap_or("");
    if l.len() > 100 {
        let mut end = 100;
        while !l.is_char_boundary(end) {
            end -= 1;
        }
        &l[..end]
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(rustc_web: &str, binaryen: std::result::Result<&str, &str>) -> toolchain::Pins {
        toolchain::Pins {
            rustc_web: Some(rustc_web.to_string()),
            rustc: Some("1.96.0".into()),
            lld: Some("1:19.1.7-3~deb12u1".into()),
            binaryen: binaryen.map(str::to_string).map_err(str::to_string),
            wasm_bindgen: Some("0.2.130".into()),
        }
    }

    /// `Ok(None)` passed, `Ok(Some(_))` skipped, `Err(_)` failed; and the note.
    fn verdict(
        total: u64,
        release: toolchain::Wasm,
        pins: &toolchain::Pins,
        ci: bool,
    ) -> (Result<Option<String>>, Option<String>) {
        let (line, done) = size_verdict(total, &release, pins, ci);
        assert!(
            line.contains(&total.to_string()) && line.contains(&pins.line()),
            "{line}"
        );
        (done.result, done.note)
    }

    #[test]
    fn the_size_step_passes_at_the_budget_on_the_pinned_toolchain() {
        let pinned = pins(toolchain::RUSTC_WEB_VERSION, Ok("132.0.0"));
        let budget = crate::bench::BUDGET_GZIP;
        assert_eq!(budget, 24_576);
        for ci in [false, true] {
            let (result, note) = verdict(budget, toolchain::Wasm::BuildStd, &pinned, ci);
            assert_eq!((result, note), (Ok(None), None));
            let (result, _) = verdict(budget + 1, toolchain::Wasm::BuildStd, &pinned, ci);
            assert!(result.unwrap_err().contains("over its size budget"));
        }
    }

    #[test]
    fn the_size_step_fails_under_ci_without_its_toolchain_and_skips_locally() {
        let pinned = pins(toolchain::RUSTC_WEB_VERSION, Ok("132.0.0"));
        let (result, _) = verdict(20_000, toolchain::Wasm::Rustup, &pinned, true);
        assert!(result.unwrap_err().contains("cargo xtask setup"));
        let (result, _) = verdict(20_000, toolchain::Wasm::Rustup, &pinned, false);
        assert!(result.unwrap().unwrap().contains("rustc-web"));
    }

    #[test]
    fn a_moved_compiler_is_noted_and_an_unpinned_binaryen_fails() {
        let drifted = pins("1.97.0+dfsg1-1~deb12u1", Ok("132.0.0"));
        let (result, note) = verdict(20_000, toolchain::Wasm::BuildStd, &drifted, true);
        assert_eq!(result, Ok(None));
        assert!(note.unwrap().contains("1.97.0+dfsg1-1~deb12u1"));
        let loose = pins(
            toolchain::RUSTC_WEB_VERSION,
            Err("asks for binaryen \"^132.0.0\""),
        );
        for ci in [false, true] {
            let (result, _) = verdict(20_000, toolchain::Wasm::BuildStd, &loose, ci);
            assert!(result.unwrap_err().contains("^132.0.0"));
        }
    }

    #[test]
    fn ci_is_any_value_but_an_empty_or_false_one() {
        for v in ["true", "1", "yes", "woodpecker"] {
            assert!(is_ci(Some(v)), "{v}");
        }
        for v in [None, Some(""), Some("0"), Some("false")] {
            assert!(!is_ci(v), "{v:?}");
        }
    }

    #[test]
    fn cargo_lines_are_summed() {
        let lines = vec![
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s".to_string(),
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s".to_string(),
        ];
        let c = cargo_counts(&lines);
        assert_eq!((c.passed, c.failed, c.skipped), (15, 2, 1));
    }

    #[test]
    fn plain_totals_are_read() {
        let c = plain_count("8 passed, 1 failed").unwrap();
        assert_eq!((c.passed, c.failed), (8, 1));
        assert!(plain_count("ok   node").is_none());
    }

    #[test]
    fn node_totals_are_read() {
        assert_eq!(node_count("# pass 42"), Some(("pass", 42)));
        assert_eq!(node_count("# todo 5"), Some(("todo", 5)));
        assert_eq!(node_count("# duration_ms 12.5"), None);
        assert_eq!(node_count("# Subtest: x"), None);
    }
}
