//! Which Rust toolchain can build for wasm32-unknown-unknown on this machine.
//!
//! Detected, never assumed:
//! 1. rustup with the `wasm32-unknown-unknown` target installed: plain `cargo --target ...`;
//! 2. otherwise Debian's `rustc-web`/`cargo-web`/`rust-web-src` (in /usr/bin) with `-Zbuild-std`
//!    and LLVM 19's `wasm-ld`: std is compiled from source for the target.
//!
//! They build into `target/wasm` / `target/wasm-build-std`, never fighting with the native build.

use crate::util::{capture, lock_version, root, which};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-unknown-unknown";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
pub const WASM_LD: &str = "/usr/lib/llvm-19/bin/wasm-ld";

#[derive(Clone, Debug, PartialEq)]
pub enum Wasm {
    /// rustup's cargo, wasm32 std installed as a rustup target.
    Rustup,
    /// Debian's cargo/rustc (1.9x, from `rustc-web`) building std from source.
    BuildStd,
}

/// Whether rustup is here and has the wasm32 target installed for the active toolchain.
pub fn rustup_has_wasm32() -> bool {
    which("rustup").is_some()
        && capture(
            Command::new("rustup")
                .args(["target", "list", "--installed"])
                .current_dir(root()),
        )
        .map(|s| s.lines().any(|l| l.trim() == TARGET))
        .unwrap_or(false)
}

/// Whether Debian's build-std toolchain is complete.
pub fn debian_build_std_present() -> bool {
    Path::new(DEBIAN_CARGO).exists()
        && Path::new(DEBIAN_RUSTC).exists()
        && Path::new(DEBIAN_RUST_SRC).join("std").exists()
        && Path::new(WASM_LD).exists()
}

/// `B24_WASM_TOOLCHAIN=rustup|build-std` forces one (to test the other path).
pub fn detect() -> Option<Wasm> {
    match std::env::var("B24_WASM_TOOLCHAIN").as_deref() {
        Ok("rustup") => return rustup_has_wasm32().then_some(Wasm::Rustup),
        Ok("build-std") => return debian_build_std_present().then_some(Wasm::BuildStd),
        _ => {}
    }
    if rustup_has_wasm32() {
        Some(Wasm::Rustup)
    } else if debian_build_std_present() {
        Some(Wasm::BuildStd)
    } else {
        None
    }
}

/// The release wasm's compiler flags (Debian build-std only):
/// - `-Cpanic=immediate-abort`: aborts without formatting panic messages;
/// - `-Zlocation-detail=none`: no file/line locations kept for them;
/// - `-Zinline-mir=yes -Zinline-mir-threshold=100`: rustc's MIR inliner, which `opt-level = "z"`
///   leaves off; small functions are inlined before LLVM sees them and the async state machines
///   come out smaller.
///
/// What each is worth, and the thresholds and levels tried, is in docs/size.md.
const SIZE_RUSTFLAGS: &str = "-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none \
     -Zinline-mir=yes -Zinline-mir-threshold=100";

/// For the release package: Debian's build-std toolchain when it is installed, because
/// `-Cpanic=immediate-abort` with a size-optimised std makes a much smaller wasm (docs/size.md);
/// otherwise the same as [`detect`].
pub fn detect_for_release() -> Result<Wasm, String> {
    if std::env::var_os("B24_WASM_TOOLCHAIN").is_none() && debian_build_std_present() {
        return Ok(Wasm::BuildStd);
    }
    detect_or_err()
}

pub fn detect_or_err() -> Result<Wasm, String> {
    detect().ok_or_else(|| {
        format!(
            "no Rust toolchain can build for wasm32-unknown-unknown here: run `cargo xtask setup` \
             (it installs `rustup target add wasm32-unknown-unknown` where rustup can download \
             it, else Debian's `apt-get install -y {} {LLD_PACKAGE}`)",
            RUSTC_WEB_PACKAGES
                .map(|p| format!("{p}={RUSTC_WEB_VERSION}"))
                .join(" ")
        )
    })
}

impl Wasm {
    pub fn describe(&self) -> &'static str {
        match self {
            Wasm::Rustup => "rustup cargo with the wasm32-unknown-unknown target",
            Wasm::BuildStd => "Debian rustc-web (/usr/bin/cargo) with -Zbuild-std and wasm-ld 19",
        }
    }

    /// `cargo <sub> --target wasm32-unknown-unknown --target-dir target/wasm [...]` with the
    /// environment this toolchain needs. `size` turns on the release-only size flags.
    pub fn cargo(&self, sub: &str, size: bool) -> Command {
        let root = root();
        let mut cmd;
        match self {
            Wasm::Rustup => {
                cmd = Command::new("cargo");
                cmd.arg(sub);
            }
            Wasm::BuildStd => {
                cmd = Command::new(DEBIAN_CARGO);
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![PathBuf::from("/usr/bin")];
                dirs.extend(std::env::split_paths(&path));
                cmd.env("PATH", std::env::join_paths(dirs).expect("valid PATH"))
                    .env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTDOC", "/usr/bin/rustdoc")
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTC_WRAPPER")
                    .env_remove("RUSTC_WORKSPACE_WRAPPER")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", WASM_LD);
                cmd.arg(sub).arg("-Zbuild-std=std,panic_abort");
                if size {
                    cmd.env("RUSTFLAGS", SIZE_RUSTFLAGS);
                } else {
                    cmd.env_remove("RUSTFLAGS");
                }
            }
        }
        cmd.args(["--target", TARGET, "--target-dir"])
            .arg(self.target_dir())
            .current_dir(&root);
        cmd
    }

    /// `target/wasm` (rustup) or `target/wasm-build-std`: apart from the native `target/`, and
    /// apart from each other so switching (B24_WASM_TOOLCHAIN) never forces a full rebuild.
    pub fn target_dir(&self) -> PathBuf {
        root().join(match self {
            Wasm::Rustup => "target/wasm",
            Wasm::BuildStd => "target/wasm-build-std",
        })
    }
}

/// The Debian `rustc-web` version the size figure is measured on (`cargo-web` and `rust-web-src`
/// come from the same source package, at the same version). `cargo xtask setup` installs exactly
/// this one while Debian's archive has it.
///
/// Debian's archive keeps only the newest version of a package in each suite, so the day a newer
/// `rustc-web` is published this one can no longer be installed on a fresh machine. Setup then
/// installs the archive's version and says so loudly, and the size step prints the drift beside
/// its figure, in its output and in the summary; the budget still applies. CI keeps running on
/// the newer compiler rather than breaking until someone edits this line. To re-pin: build on
/// the new version, compare the figure, set the version here and add a line to docs/size.md.
pub const RUSTC_WEB_VERSION: &str = "1.96.0+dfsg1-1~deb12u2";
/// The packages of `rustc-web`'s source package, installed at [`RUSTC_WEB_VERSION`].
pub const RUSTC_WEB_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "rust-web-src"];
/// LLVM 19's `wasm-ld`.
pub const LLD_PACKAGE: &str = "lld-19";

/// The installed version of a Debian package, if it is installed.
pub fn installed_version(package: &str) -> Option<String> {
    let out = capture(Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", package]))?;
    let (status, version) = out.split_once('|')?;
    (status.ends_with("install ok installed") && !version.is_empty()).then(|| version.to_string())
}

/// Whether apt can install every package of `rustc-web` at [`RUSTC_WEB_VERSION`].
pub fn rustc_web_pin_available() -> bool {
    RUSTC_WEB_PACKAGES.iter().all(|p| {
        capture(Command::new("apt-cache").args(["madison", p]))
            .is_some_and(|out| madison_versions(&out, p).contains(&RUSTC_WEB_VERSION))
    })
}

/// The versions of `package` in `apt-cache madison` output (` pkg | version | source` lines).
fn madison_versions<'a>(out: &'a str, package: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|line| {
            let mut columns = line.split('|').map(str::trim);
            if columns.next()? == package {
                columns.next()
            } else {
                None
            }
        })
        .collect()
}

/// What the size figure was measured on, printed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pins {
    /// The installed `rustc-web` (Debian version), if any.
    pub rustc_web: Option<String>,
    /// `/usr/bin/rustc --version`'s version.
    pub rustc: Option<String>,
    /// The installed `lld-19` (Debian version), if any.
    pub lld: Option<String>,
    /// binaryen's exact version (see [`binaryen_version`]), or why it is not pinned.
    pub binaryen: Result<String, String>,
    /// The `wasm-bindgen` crate's version in Cargo.lock (the CLI is installed at it).
    pub wasm_bindgen: Option<String>,
}

impl Pins {
    pub fn read() -> Pins {
        Pins {
            rustc_web: installed_version(RUSTC_WEB_PACKAGES[0]),
            rustc: capture(Command::new(DEBIAN_RUSTC).arg("--version"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string)),
            lld: installed_version(LLD_PACKAGE),
            binaryen: binaryen_version(),
            wasm_bindgen: lock_version("wasm-bindgen").ok(),
        }
    }

    /// `rustc-web 1.96.0+dfsg1-1~deb12u2 (rustc 1.96.0), lld-19 …, binaryen 132.0.0, wasm-bindgen 0.2.130`
    pub fn line(&self) -> String {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "not installed".into());
        let rustc = self
            .rustc
            .as_ref()
            .map(|v| format!(" (rustc {v})"))
            .unwrap_or_default();
        format!(
            "rustc-web {}{rustc}, {LLD_PACKAGE} {}, binaryen {}, wasm-bindgen {}",
            or_none(&self.rustc_web),
            or_none(&self.lld),
            self.binaryen.as_deref().unwrap_or("not pinned"),
            or_none(&self.wasm_bindgen),
        )
    }

    /// Why the figure is not on the pinned compiler, when it is not.
    pub fn drift(&self) -> Option<String> {
        match self.rustc_web.as_deref() {
            Some(RUSTC_WEB_VERSION) => None,
            Some(v) => Some(format!(
                "measured on rustc-web {v}, not the pinned {RUSTC_WEB_VERSION} (Debian's archive \
                 moved on? re-pin RUSTC_WEB_VERSION in xtask/src/toolchain.rs: see DEVELOPERS.md)"
            )),
            None => Some(format!(
                "rustc-web is not installed (pinned: {RUSTC_WEB_VERSION})"
            )),
        }
    }
}

/// binaryen's version (its `wasm-opt` shapes the wasm), from the files that install it:
/// `tests/package.json` must ask for one exact version, `tests/package-lock.json` must lock that
/// one, and `tests/node_modules` must hold it.
pub fn binaryen_version() -> Result<String, String> {
    let dir = root().join("tests");
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| format!("tests/{file}: {e}"))
    };
    let wanted = json_string(&read("package.json")?, "\"devDependencies\"", "binaryen")
        .ok_or("tests/package.json has no binaryen in its devDependencies")?;
    if !is_exact_version(&wanted) {
        return Err(format!(
            "tests/package.json asks for binaryen \"{wanted}\": pin one exact version (such as \
             \"132.0.0\"), the wasm's size depends on it"
        ));
    }
    let locked = json_string(
        &read("package-lock.json")?,
        "\"node_modules/binaryen\":",
        "version",
    )
    .ok_or("tests/package-lock.json locks no node_modules/binaryen")?;
    if locked != wanted {
        return Err(format!(
            "tests/package-lock.json locks binaryen {locked} but tests/package.json asks for \
             {wanted}: run `npm install` in tests/ and commit the lockfile"
        ));
    }
    let installed = json_string(&read("node_modules/binaryen/package.json")?, "{", "version")
        .ok_or("tests/node_modules/binaryen/package.json has no version")?;
    if installed != locked {
        return Err(format!(
            "tests/node_modules holds binaryen {installed}, the lockfile {locked}: run \
             `cargo xtask setup`"
        ));
    }
    Ok(locked)
}

/// An npm version that names one release (`132.0.0`, `1.2.3-rc.1`), not a range (`^132.0.0`,
/// `~1.2`, `>=1`, `*`, `latest`, `132`).
pub fn is_exact_version(spec: &str) -> bool {
    let (release, pre) = match spec.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (spec, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
}

/// The string value of the first `"key"` after the first `anchor` in a JSON text (enough for
/// package.json and package-lock.json, which xtask reads without a JSON crate).
fn json_string(text: &str, anchor: &str, key: &str) -> Option<String> {
    let after = &text[text.find(anchor)? + anchor.len()..];
    let quoted = format!("\"{key}\"");
    let rest = after[after.find(&quoted)? + quoted.len()..].trim_start();
    let value = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(value[..value.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_lines_give_the_package_versions() {
        let out = " rustc-web | 1.96.0+dfsg1-1~deb12u2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n \
                   rustc-web | 1.85.0+dfsg3-1~deb12u3 | http://deb.debian.org/debian bookworm/main amd64 Packages\n \
                   cargo-web | 1.97.0 | http://deb.debian.org/debian bookworm/main amd64 Packages";
        assert_eq!(
            madison_versions(out, "rustc-web"),
            ["1.96.0+dfsg1-1~deb12u2", "1.85.0+dfsg3-1~deb12u3"]
        );
        assert_eq!(madison_versions(out, "rust-web-src"), Vec::<&str>::new());
    }

    #[test]
    fn only_one_release_is_an_exact_version() {
        for exact in ["132.0.0", "0.28.2", "1.2.3-rc.1"] {
            assert!(is_exact_version(exact), "{exact}");
        }
        for range in [
            "^132.0.0",
            "~132.0.0",
            ">=132.0.0",
            "132",
            "132.0",
            "132.x.0",
            "*",
            "latest",
            "",
            "132.0.0-",
            "1.2.3 || 1.2.4",
        ] {
            assert!(!is_exact_version(range), "{range}");
        }
    }

    #[test]
    fn json_strings_are_found_after_their_anchor() {
        let lock = r#"{"packages": {"": {"devDependencies": {"binaryen": "132.0.0"}},
            "node_modules/binaryen-extra": {"version": "1.0.0"},
            "node_modules/binaryen": {
              "version": "132.0.0", "integrity": "sha512-x"}}}"#;
        assert_eq!(
            json_string(lock, "\"node_modules/binaryen\":", "version").as_deref(),
            Some("132.0.0")
        );
        assert_eq!(
            json_string(lock, "\"devDependencies\"", "binaryen").as_deref(),
            Some("132.0.0")
        );
        assert_eq!(
            json_string(lock, "\"node_modules/terser\":", "version"),
            None
        );
        assert_eq!(json_string(r#"{"version": 3}"#, "{", "version"), None);
    }

    fn pins(rustc_web: Option<&str>) -> Pins {
        Pins {
            rustc_web: rustc_web.map(str::to_string),
            rustc: Some("1.96.0".into()),
            lld: Some("1:19.1.7-3~deb12u1".into()),
            binaryen: Ok("132.0.0".into()),
            wasm_bindgen: Some("0.2.130".into()),
        }
    }

    #[test]
    fn the_pins_line_names_every_version_and_the_drift_is_said() {
        let pinned = pins(Some(RUSTC_WEB_VERSION));
        assert_eq!(
            pinned.line(),
            format!(
                "rustc-web {RUSTC_WEB_VERSION} (rustc 1.96.0), lld-19 1:19.1.7-3~deb12u1, \
                 binaryen 132.0.0, wasm-bindgen 0.2.130"
            )
        );
        assert_eq!(pinned.drift(), None);
        let newer = pins(Some("1.97.0+dfsg1-1~deb12u1")).drift().unwrap();
        assert!(newer.contains("1.97.0+dfsg1-1~deb12u1") && newer.contains(RUSTC_WEB_VERSION));
        assert!(pins(None).drift().unwrap().contains("not installed"));
    }
}
