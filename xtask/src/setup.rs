//! `cargo xtask setup`: install what is missing, say what is done, fast when nothing is.

use crate::toolchain::{self, RUSTC_WEB_PACKAGES, RUSTC_WEB_VERSION, TARGET};
use crate::util::{
    self, capture, cargo_home_bin, is_root, lock_version, root, which, Args, Result,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const APT_BROWSER: &[&str] = &["chromium", "chromium-driver"];
const APT_WASM: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-19"];

pub fn run(args: &[String]) -> Result {
    Args::new(args).finish()?;
    ensure()
}

/// The whole setup; each piece checks a marker first and only installs when it is missing.
pub fn ensure() -> Result {
    let mut not_root_missing: Vec<(String, String)> = Vec::new();
    let root_ok = is_root();

    check_node()?;

    // 1. A wasm32 standard library. Debian's rustc-web with build-std is preferred for the
    //    release package (immediate-abort: a much smaller wasm), so it is installed wherever
    //    apt can; a rustup wasm32 target is enough where it cannot (not root, not Debian).
    let mut apt_wanted: Vec<&str> = APT_BROWSER.to_vec();
    let apt_ok = root_ok && which("apt-get").is_some();
    if toolchain::debian_build_std_present() {
        println!("setup: wasm32 std: Debian rustc-web + rust-web-src (build-std) is installed");
        apt_wanted.extend(APT_WASM);
    } else if apt_ok {
        println!(
            "setup: wasm32 std: Debian rustc-web + rust-web-src (build-std) will be installed"
        );
        apt_wanted.extend(APT_WASM);
    } else if toolchain::rustup_has_wasm32() {
        println!(
            "setup: wasm32 std: rustup target {TARGET} is installed (the release wasm would be \
                  smaller with Debian's rustc-web: apt-get install -y {})",
            APT_WASM.join(" ")
        );
    } else if try_rustup_target_add() {
        println!("setup: wasm32 std: installed the rustup target {TARGET}");
    } else {
        println!("setup: wasm32 std: rustup cannot provide {TARGET}; Debian's rustc-web with build-std is needed");
        apt_wanted.extend(APT_WASM);
    }
    if toolchain::rustup_has_wasm32() {
        println!("setup: (rustup's wasm32 target is installed too: tests and clippy use it)");
    }

    // 2. Debian packages: Chromium + chromedriver (+ the build-std toolchain when needed, its
    //    rustc-web at the version the size figure is pinned to: see RUSTC_WEB_VERSION).
    let missing = apt_missing(&apt_wanted);
    let off_pin = if apt_wanted.contains(&RUSTC_WEB_PACKAGES[0]) {
        off_pin()
    } else {
        Vec::new()
    };
    if missing.is_empty() && off_pin.is_empty() {
        println!("setup: apt packages present: {}", apt_wanted.join(" "));
    } else if root_ok {
        util::run(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        let wants_rust = missing.iter().chain(&off_pin).any(|p| is_rustc_web(p));
        let pinnable = !wants_rust || toolchain::rustc_web_pin_available();
        if !pinnable {
            println!("setup: WARNING: {}", drift_warning());
        }
        let mut install = missing.clone();
        if pinnable {
            install.extend(off_pin);
        }
        if !install.is_empty() {
            let args = apt_install_args(&install, pinnable);
            println!("setup: installing apt packages: {}", args.join(" "));
            util::run(
                Command::new("apt-get")
                    .args(["install", "-y", "--allow-downgrades"])
                    .args(&args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
        let still = apt_missing(&apt_wanted);
        if !still.is_empty() {
            return Err(format!(
                "apt packages still missing after install: {}",
                still.join(" ")
            ));
        }
    } else {
        if !missing.is_empty() {
            not_root_missing.push((
                format!("Debian packages {}", missing.join(", ")),
                format!(
                    "sudo apt-get update && sudo apt-get install -y {}",
                    apt_install_args(&missing, true).join(" ")
                ),
            ));
        }
        if !off_pin.is_empty() {
            println!(
                "setup: WARNING: {}; the size figure is pinned to {RUSTC_WEB_VERSION}: \
                 sudo apt-get install -y --allow-downgrades {}",
                off_pin_what(),
                apt_install_args(&off_pin, true).join(" ")
            );
        }
    }
    if toolchain::detect().is_none() && not_root_missing.is_empty() {
        return Err("no wasm32 toolchain after setup (see the messages above)".into());
    }

    // 3. wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock.
    let want = lock_version("wasm-bindgen")?;
    let have = wasm_bindgen_versions();
    if have.iter().all(|v| v.as_deref() == Some(want.as_str())) {
        println!("setup: wasm-bindgen-cli {want} present");
    } else {
        println!(
            "setup: wasm-bindgen-cli {want} needed (found wasm-bindgen: {}, wasm-bindgen-test-runner: {}); installing",
            have[0].as_deref().unwrap_or("none"),
            have[1].as_deref().unwrap_or("none")
        );
        util::run(
            Command::new("cargo")
                .args(["install", "wasm-bindgen-cli", "--version", &want])
                .current_dir(std::env::temp_dir()),
        )?;
        let have = wasm_bindgen_versions();
        if !have.iter().all(|v| v.as_deref() == Some(want.as_str())) {
            return Err(format!(
                "wasm-bindgen {want} was installed to {} but another version comes first on PATH",
                cargo_home_bin().display()
            ));
        }
    }

    // 4. npm dev dependencies (playwright-core, binaryen's wasm-opt, esbuild, terser) of tests/ and www/.
    for dir in ["tests", "www"] {
        let dir = root().join(dir);
        if dir.join("package.json").exists() {
            npm_ci(&dir)?;
        }
    }

    if !not_root_missing.is_empty() {
        let mut msg = String::from("setup cannot install these without root:\n");
        for (what, how) in &not_root_missing {
            msg.push_str(&format!("  - {what}: {how}\n"));
        }
        msg.push_str("then run `cargo xtask setup` again");
        return Err(msg);
    }
    println!("setup: ok");
    Ok(())
}

fn check_node() -> Result {
    let v = capture(Command::new("node").arg("--version")).ok_or(
        "Node.js >= 20 is needed (node not found): install it, e.g. `apt-get install -y nodejs npm` \
         on a distribution that ships Node 20+, or from nodejs.org",
    )?;
    let major: u32 = v
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("Node.js >= 20 is needed, found {v}"));
    }
    if which("npm").is_none() {
        return Err("npm is needed (it comes with Node.js)".into());
    }
    println!("setup: node {v} present");
    Ok(())
}

/// `rustup target add wasm32-unknown-unknown`, bounded in time (it needs the network).
fn try_rustup_target_add() -> bool {
    if which("rustup").is_none() {
        return false;
    }
    println!("setup: trying `rustup target add {TARGET}`");
    let ok = Command::new("timeout")
        .args(["120", "rustup", "target", "add", TARGET])
        .current_dir(root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok && toolchain::rustup_has_wasm32()
}

fn is_rustc_web(package: &str) -> bool {
    RUSTC_WEB_PACKAGES.contains(&package)
}

/// rustc-web's packages installed at another version than [`RUSTC_WEB_VERSION`].
fn off_pin() -> Vec<String> {
    RUSTC_WEB_PACKAGES
        .iter()
        .filter(|p| toolchain::installed_version(p).is_some_and(|v| v != RUSTC_WEB_VERSION))
        .map(|p| p.to_string())
        .collect()
}

fn off_pin_what() -> String {
    let have = toolchain::installed_version(RUSTC_WEB_PACKAGES[0]);
    format!(
        "rustc-web {} is installed",
        have.as_deref().unwrap_or("(none)")
    )
}

/// What setup says when Debian's archive no longer has the pinned rustc-web.
fn drift_warning() -> String {
    format!(
        "Debian's archive no longer has rustc-web {RUSTC_WEB_VERSION}, the version the size \
         figure is pinned to; installing the archive's version instead, so the release wasm's \
         size may move (the size step says so beside its figure). To re-pin: `cargo xtask build` \
         on it, compare the size, set RUSTC_WEB_VERSION in xtask/src/toolchain.rs and add the \
         toolchain to docs/size.md"
    )
}

/// `apt-get install` arguments for `packages`: rustc-web's pinned to [`RUSTC_WEB_VERSION`] when
/// `pinned` (the archive has it), the others (and rustc-web's otherwise) as the archive has them.
fn apt_install_args(packages: &[String], pinned: bool) -> Vec<String> {
    packages
        .iter()
        .map(|p| {
            if pinned && is_rustc_web(p) {
                format!("{p}={RUSTC_WEB_VERSION}")
            } else {
                p.clone()
            }
        })
        .collect()
}

fn apt_missing(pkgs: &[&str]) -> Vec<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(pkgs)
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    pkgs.iter()
        .filter(|p| {
            !text
                .lines()
                .any(|l| l.starts_with(&format!("{p} ")) && l.ends_with("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

/// Versions reported by `wasm-bindgen --version` and `wasm-bindgen-test-runner --version`.
fn wasm_bindgen_versions() -> [Option<String>; 2] {
    ["wasm-bindgen", "wasm-bindgen-test-runner"].map(|tool| {
        let exe = find_tool(tool)?;
        let out = capture(Command::new(exe).arg("--version"))?;
        // "wasm-bindgen 0.2.130" (possibly followed by a commit hash)
        out.split_whitespace().nth(1).map(str::to_string)
    })
}

/// A cargo-installed tool: PATH first, then `~/.cargo/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    which(name).or_else(|| {
        let p = cargo_home_bin().join(name);
        util::is_executable(&p).then_some(p)
    })
}

/// Files the tools use from a node_modules (a partial install must not pass for a complete one).
fn needed_files(dir: &Path) -> Vec<PathBuf> {
    if dir.ends_with("tests") {
        vec![
            dir.join("node_modules/.bin/wasm-opt"),
            dir.join("node_modules/.bin/esbuild"),
            dir.join("node_modules/terser/bin/terser"),
            dir.join("node_modules/playwright-core/package.json"),
        ]
    } else {
        Vec::new()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    p.metadata().and_then(|m| m.modified()).ok()
}

/// `npm ci` unless node_modules is already at least as new as the lockfile.
fn npm_ci(dir: &Path) -> Result {
    let lock = dir.join("package-lock.json");
    let marker = dir.join("node_modules/.package-lock.json");
    let rel = dir
        .strip_prefix(root())
        .unwrap_or(dir)
        .display()
        .to_string();
    if !lock.exists() {
        return Err(format!(
            "{rel}/package-lock.json is missing (run `npm install` in {rel} and commit it)"
        ));
    }
    let fresh = match (
        mtime(&marker),
        mtime(&lock),
        mtime(&dir.join("package.json")),
    ) {
        (Some(m), Some(l), Some(p)) => m >= l && m >= p,
        _ => false,
    } && needed_files(dir).iter().all(|f| f.exists());
    if fresh {
        println!("setup: {rel}/node_modules up to date");
        return Ok(());
    }
    println!("setup: installing the npm dev dependencies of {rel}/");
    util::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            // Never let a package fetch a browser of its own: tests use Debian's Chromium.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustc_web_is_installed_at_its_pin_and_the_rest_as_the_archive_has_them() {
        let packages: Vec<String> = [
            "chromium",
            "rustc-web",
            "cargo-web",
            "rust-web-src",
            "lld-19",
        ]
        .map(String::from)
        .to_vec();
        let pinned = apt_install_args(&packages, true);
        assert_eq!(
            pinned,
            [
                "chromium".to_string(),
                format!("rustc-web={RUSTC_WEB_VERSION}"),
                format!("cargo-web={RUSTC_WEB_VERSION}"),
                format!("rust-web-src={RUSTC_WEB_VERSION}"),
                "lld-19".to_string(),
            ]
        );
        assert_eq!(apt_install_args(&packages, false), packages);
    }
}
