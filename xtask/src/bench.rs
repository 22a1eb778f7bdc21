//! `cargo xtask bench [SECTION...]`: what the package costs a page, and how it compares with the
//! official SDK and a hand-written `fetch` call (issues 6 and 7).
//!
//! 1. Builds the package (release) and prints its gzip sizes against the 24 KB budget — a printed
//!    verdict, not a failing exit: a bench is not a test.
//! 2. Builds the release emulator (the debug one is ~5× slower), runs `npm ci` in `bench/` when
//!    its lockfile changed, snapshots `pkg/` into `target/bench/pkg` (another build may swap
//!    `pkg/` meanwhile), then runs `node bench/run.mjs`: bundle size, bulk delete at real-portal
//!    scale, bulk delete against the leaky bucket, per-call overhead, cold start, loopback HTTPS —
//!    printed as Markdown tables with a summary.
//! 3. For the bulk section, a Python venv in `target/bench/venv` with fast_bitrix24 (pinned in
//!    `bench/requirements.txt`, installed by pip from PyPI when that file changes); without
//!    python3 the section measures the other contenders and says why.
//!
//! SECTION: any of `size bulk bucket percall cold https` (default: all). Exits non-zero only when
//! a step could not run or a section could not be measured; targets not met are printed, not fatal.

use crate::build;
use crate::util::{self, kb, root, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// At most 24 KB gzip (24,576 B) for everything the entry loads, the wasm inside it: issue 16's
/// budget (issue 7 set 20 KB; the history is in docs/size.md).
pub const BUDGET_GZIP: u64 = 24 * 1024;

const SECTIONS: [&str; 6] = ["size", "bulk", "bucket", "percall", "cold", "https"];

pub fn run(args: &[String]) -> Result {
    let mut sections = Vec::new();
    for a in args {
        if SECTIONS.contains(&a.as_str()) {
            sections.push(a.clone());
        } else {
            return Err(format!(
                "unexpected argument `{a}`: bench takes sections, any of {} (default: all)",
                SECTIONS.join(" ")
            ));
        }
    }

    build::build(false)?;
    let pkg = root().join("pkg");
    budget(&pkg)?;

    let snapshot = root().join("target/bench/pkg");
    snapshot_pkg(&pkg, &snapshot)?;
    util::run(
        Command::new("cargo")
            .args(["build", "--package", "emulator", "--release"])
            .current_dir(root()),
    )?;
    npm_ci_if_needed()?;
    if !root()
        .join("tests/node_modules/playwright-core/package.json")
        .exists()
    {
        println!(
            "bench: tests/node_modules/playwright-core is missing (run `cargo xtask setup`); \
             the browser sections will say they could not run"
        );
    }

    let python = if sections.is_empty() || sections.iter().any(|s| s == "bulk") {
        python_venv()
    } else {
        None
    };

    let mut cmd = Command::new("node");
    if let Some(python) = python {
        cmd.env("B24_BENCH_PYTHON", python);
    }
    cmd.arg(root().join("bench/run.mjs"))
        .args(&sections)
        .env("B24_REPO", root())
        .env("B24_PKG_DIR", &snapshot)
        .env("B24_BUDGET_GZIP", BUDGET_GZIP.to_string())
        .env("B24_EMULATOR_BIN", root().join("target/release/emulator"))
        .current_dir(root());
    util::run(&mut cmd)
        .map_err(|e| format!("{e}: some benchmark could not be measured (see above)"))
}

/// The size of what the entry loads against the budget: printed, never an error.
fn budget(pkg: &Path) -> Result {
    let s = build::print_sizes(pkg)?;
    // The wasm as the build inlined it, gzipped on its own (for scale: inside index.js it costs
    // about as much).
    let wasm = util::gzip_size(&build::inlined_wasm_path()).unwrap_or(0);
    println!("\nsize budget (gzip -9 of what the entry loads):");
    println!("  | what | gzip |");
    println!("  |---|---|");
    println!("  | the wasm alone (inside index.js) | {} |", kb(wasm));
    println!(
        "  | total: {} | {} |",
        s.total_files.join(" + "),
        kb(s.total_gzip)
    );
    println!("  | budget | {} |", kb(BUDGET_GZIP));
    let pct = 100.0 * s.total_gzip as f64 / BUDGET_GZIP as f64;
    if s.total_gzip > BUDGET_GZIP {
        println!(
            "bench: OVER the size budget: {} bytes gzip > {BUDGET_GZIP} ({pct:.0}% of {}) — not met",
            s.total_gzip,
            kb(BUDGET_GZIP)
        );
    } else {
        println!(
            "bench: within the size budget ({pct:.0}% of {}) — met",
            kb(BUDGET_GZIP)
        );
    }
    Ok(())
}

/// Copy the package files (not subdirectories) into `to`, replacing what was there.
fn snapshot_pkg(from: &Path, to: &Path) -> Result {
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let p = entry.map_err(|e| e.to_string())?.path();
        if p.is_file() {
            fs::copy(&p, to.join(p.file_name().unwrap()))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    println!("bench: package snapshot in {}", to.display());
    Ok(())
}

/// The bulk section's Python contender: `target/bench/venv` with `bench/requirements.txt`
/// installed (pip, PyPI), redone when the requirements change; a copy of them is the stamp.
/// `None` (printed) when python3 or pip cannot do it: that contender is then not measured.
fn python_venv() -> Option<PathBuf> {
    let venv = root().join("target/bench/venv");
    let python = venv.join("bin/python");
    let requirements = root().join("bench/requirements.txt");
    let stamp = venv.join("bench-requirements.txt");
    let wanted = fs::read_to_string(&requirements).ok()?;
    if python.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        println!("bench: {} is up to date", venv.display());
        return Some(python);
    }
    let made = (|| -> Result {
        if !python.exists() {
            util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        util::run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--quiet",
                    "-r",
                ])
                .arg(&requirements),
        )?;
        fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))
    })();
    match made {
        Ok(()) => Some(python),
        Err(e) => {
            println!("bench: no Python venv for fast_bitrix24 ({e}); the bulk section skips it");
            None
        }
    }
}

/// `npm ci` in bench/ when node_modules is missing or older than the lockfile.
fn npm_ci_if_needed() -> Result {
    let dir = root().join("bench");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&lock), mtime(&installed)) {
        (Some(l), Some(i)) => i >= l,
        _ => false,
    };
    if fresh {
        println!("bench: bench/node_modules is up to date");
        return Ok(());
    }
    // --ignore-scripts: esbuild's postinstall only checks its platform package, which npm
    // installs as an optional dependency.
    util::run(
        Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python contender is pinned: every requirement is `name==version`, fast_bitrix24 among them.
    #[test]
    fn bench_requirements_are_pinned() {
        let text = fs::read_to_string(root().join("bench/requirements.txt")).unwrap();
        let pins: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        for p in &pins {
            let (name, version) = p
                .split_once("==")
                .unwrap_or_else(|| panic!("`{p}` is not pinned with =="));
            assert!(
                !name.is_empty() && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "`{p}`"
            );
        }
        assert!(
            pins.iter().any(|p| p.starts_with("fast_bitrix24==")),
            "{pins:?}"
        );
    }
}
