//! Developer tasks for b24-crm-item, run as `cargo xtask <command>`.
//!
//! Std only on purpose: this crate compiles in a couple of seconds and shells
//! out to the real tools (cargo, wasm-bindgen, wasm-opt, node, apt-get, npm).

mod bench;
mod build;
mod demo;
mod emulator;
mod setup;
mod test;
mod toolchain;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  setup              Install what the build and the tests need (idempotent; a fast
                     no-op when everything is present): a wasm32 standard library
                     (Debian rustc-web + rust-web-src + lld-19 for build-std where apt
                     works, else the rustup target), Chromium + chromedriver,
                     wasm-bindgen-cli at the exact version in Cargo.lock, and the npm
                     dev dependencies of tests/ (and www/). Not root: says what to run.
  build [--dev]      Release wasm build (size profile; Debian build-std with
                     immediate-abort when installed, else rustup's target),
                     wasm-bindgen, wasm-opt -Oz, and the npm package assembled in pkg/
                     from pkg-template/. --dev: debug wasm, no wasm-opt.
                     Prints the gzip -9 sizes.
                     B24_WASM_TOOLCHAIN=rustup|build-std forces a toolchain.
  test [--quick]     setup (if needed), fmt --check, clippy -D warnings, native
                     tests, build, wasm tests in headless Chromium against the
                     emulator, JS package tests, demo --check. Runs every step,
                     prints a summary, exits non-zero if any step failed.
                     --quick: skip the wasm, JS and demo steps (inner loop only).
  demo [--check] [--port N]
                     Build, serve www/ and pkg/ from the emulator and print the
                     demo URL and webhook; runs until Ctrl-C.
                     --check: drive the page in headless Chromium instead
                     (tests/js/demo-check.mjs), screenshot to target/demo-check.png.
  bench [SECTION...] Package gzip size vs the 24 KB budget (printed verdict), then
                     bench/run.mjs against @bitrix24/b24jssdk and a hand-written fetch
                     (bulk: also fast_bitrix24, in a venv under target/bench/):
                     size, bulk, bucket, percall, cold, https (default: all); Markdown
                     tables, also in target/bench/results.md. Non-zero only if a
                     section could not run.
  help               This text.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "setup" => setup::run(rest),
        "build" => build::run(rest),
        "test" => test::run(rest),
        "demo" => demo::run(rest),
        "bench" => bench::run(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
