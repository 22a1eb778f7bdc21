//! Which Rust toolchain can build for wasm32-unknown-unknown on this machine.
//!
//! Detected, never assumed:
//! 1. rustup with the `wasm32-unknown-unknown` target installed: plain `cargo --target ...`;
//! 2. otherwise Debian's `rustc-web`/`cargo-web`/`rust-web-src` (in /usr/bin) with `-Zbuild-std`
//!    and LLVM 19's `wasm-ld`: std is compiled from source for the target.
//!
//! They build into `target/wasm` / `target/wasm-build-std`, never fighting with the native build.

use crate::util::{capture, root, which};
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
/// - `-Cpanic=immediate-abort`: aborts without formatting panic messages (a large size win);
/// - `-Zlocation-detail=none`: no file/line locations kept for them;
/// - `-Zinline-mir=yes -Zinline-mir-threshold=100`: rustc's MIR inliner, which every release
///   build at `opt-level = 3` runs but `opt-level = "z"` leaves off, inlines small functions
///   before LLVM sees them, and the async state machines come out smaller (measured: −0.73 KB
///   gzip of wasm). The default threshold (50) saves 0.48 KB; 70–1000 were measured, 100–125
///   are the smallest. The other MIR passes stay at their default level (`-Zmir-opt-level=3`
///   or 4 adds nothing here).
const SIZE_RUSTFLAGS: &str = "-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none \
     -Zinline-mir=yes -Zinline-mir-threshold=100";

/// For the release package: Debian's build-std toolchain when it is installed, because
/// `-Cpanic=immediate-abort` with a size-optimised std makes a much smaller wasm (measured:
/// 32.8 vs 40.8 KB gzip at the same commit); otherwise the same as [`detect`].
pub fn detect_for_release() -> Result<Wasm, String> {
    if std::env::var_os("B24_WASM_TOOLCHAIN").is_none() && debian_build_std_present() {
        return Ok(Wasm::BuildStd);
    }
    detect_or_err()
}

pub fn detect_or_err() -> Result<Wasm, String> {
    detect().ok_or_else(|| {
        "no Rust toolchain can build for wasm32-unknown-unknown here: run `cargo xtask setup` \
         (it installs `rustup target add wasm32-unknown-unknown` where rustup can download it, \
         else Debian's `apt-get install -y rustc-web cargo-web rust-web-src lld-19`)"
            .to_string()
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
