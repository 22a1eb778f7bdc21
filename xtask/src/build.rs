//! `cargo xtask build`: wasm → wasm-bindgen → snippet flattening → wasm-opt → pkg/ → one
//! bundled, minified ES module (esbuild, terser) with the wasm inside it.

use crate::setup::find_tool;
use crate::toolchain::{self, TARGET};
use crate::util::{self, crate_version, gzip_size, kb, lock_version, root, Args, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const CRATE: &str = "b24-crm-item";
pub const LIB: &str = "b24_crm_item";

pub fn run(args: &[String]) -> Result {
    let mut a = Args::new(args);
    let dev = a.flag("--dev");
    a.finish()?;
    build(dev)?;
    print_sizes(&root().join("pkg"))?;
    Ok(())
}

pub fn wasm_opt_path() -> PathBuf {
    root().join("tests/node_modules/.bin/wasm-opt")
}

/// Build `pkg/`. `dev`: debug profile and no wasm-opt.
pub fn build(dev: bool) -> Result {
    let root = root();
    let tc = if dev {
        toolchain::detect_or_err()?
    } else {
        toolchain::detect_for_release()?
    };
    println!("build: wasm toolchain: {}", tc.describe());

    // 1. The wasm.
    let mut cmd = tc.cargo("build", !dev);
    cmd.args(["--package", CRATE, "--lib"]);
    if !dev {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let profile = if dev { "debug" } else { "release" };
    let wasm = tc
        .target_dir()
        .join(format!("{TARGET}/{profile}/{LIB}.wasm"));
    if !wasm.exists() {
        return Err(format!("{} was not produced", wasm.display()));
    }

    // 2. wasm-bindgen, at exactly the crate's version.
    let want = lock_version("wasm-bindgen")?;
    let bindgen =
        find_tool("wasm-bindgen").ok_or("wasm-bindgen not found: run `cargo xtask setup`")?;
    let have = util::capture(Command::new(&bindgen).arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(want.as_str()) {
        return Err(format!(
            "`{}` says `{have}` but Cargo.lock has wasm-bindgen {want}: run `cargo xtask setup`",
            bindgen.display()
        ));
    }
    // Assembled in a staging folder and swapped in at the end, so a concurrent build or a test
    // serving pkg/ never sees a half-written package.
    let staging = root.join(format!("target/pkg-staging-{}", std::process::id()));
    let r =
        assemble(&bindgen, &wasm, &staging, dev).and_then(|_| swap_in(&staging, &root.join("pkg")));
    if r.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    r?;
    println!("build: package ready in {}", root.join("pkg").display());
    Ok(())
}

fn assemble(bindgen: &Path, wasm: &Path, pkg: &Path, dev: bool) -> Result {
    if pkg.exists() {
        fs::remove_dir_all(pkg).map_err(|e| format!("cannot clear {}: {e}", pkg.display()))?;
    }
    let mut cmd = Command::new(bindgen);
    cmd.args(["--target", "web", "--out-dir"])
        .arg(pkg)
        .args(["--out-name", LIB, "--no-typescript"])
        // Every engine we support (Node 20, browsers since 2021) has TextEncoder.encodeInto.
        .args(["--encode-into", "always"])
        .arg(wasm);
    if dev {
        cmd.arg("--debug");
    }
    util::run(&mut cmd)?;

    // 3. Snippets: `#[wasm_bindgen(module = "/pkg-template/X")]` → `./X` (pkg-template is copied in).
    flatten_snippets(pkg)?;
    // 3b. The glue's loaders give way to what index.js needs, and code that cannot run here goes.
    trim_glue(&pkg.join(format!("{LIB}.js")))?;

    // 4. wasm-opt -Oz, import and export names minified (the glue is told the new names).
    let bg = pkg.join(format!("{LIB}_bg.wasm"));
    if dev {
        println!("build: --dev: skipping wasm-opt");
    } else {
        let names = wasm_opt(&bg)?;
        let glue_path = pkg.join(format!("{LIB}.js"));
        let glue = fs::read_to_string(&glue_path).map_err(|e| e.to_string())?;
        fs::write(&glue_path, rename_in_glue(&glue, &names)?).map_err(|e| e.to_string())?;
        println!(
            "build: {} imports and {} exports renamed in the wasm and the glue",
            names.imports.len(),
            names.exports.len()
        );
    }

    // 5. The package files; the wasm leaves pkg/ (it goes inside index.js).
    copy_template(&root().join("pkg-template"), pkg)?;
    let wasm_bytes = fs::read(&bg).map_err(|e| format!("{}: {e}", bg.display()))?;
    keep_wasm_copy(&bg)?;
    fs::remove_file(&bg).map_err(|e| e.to_string())?;

    // 6. index.js, runtime.js and the glue become one module: one request and one gzip
    //    stream, and minified (unless --dev); then the wasm's bytes go in.
    bundle(pkg, dev, &wasm_bytes)?;
    check_files_allow_list(pkg)
}

/// The wasm as it was inlined, for tools that read a module (twiggy): not part of the package.
pub fn inlined_wasm_path() -> PathBuf {
    root().join(format!("target/pkg-wasm/{LIB}_bg.wasm"))
}

fn keep_wasm_copy(bg: &Path) -> Result {
    let to = inlined_wasm_path();
    fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
    fs::copy(bg, &to).map_err(|e| format!("copy {} to {}: {e}", bg.display(), to.display()))?;
    Ok(())
}

/// The module that index.js imports the wasm's text from: esbuild and terser leave the import as
/// it is (external), and [`inline_wasm`] replaces it with the text itself. So the minifiers never
/// see the bytes (nor fold anything about them), and the source map's sources do not hold them.
const WASM_MODULE: &str = "./wasm.js";

pub fn esbuild_path() -> PathBuf {
    root().join("tests/node_modules/.bin/esbuild")
}

/// Bundles `pkg/index.js` and what it imports into `pkg/index.js` (+ `index.js.map`), and
/// removes the inputs; then puts the wasm's bytes in ([`inline_wasm`]).
fn bundle(pkg: &Path, dev: bool, wasm: &[u8]) -> Result {
    let exe = esbuild_path();
    if !exe.exists() {
        return Err(format!(
            "{} not found (npm `esbuild`): run `cargo xtask setup`",
            exe.display()
        ));
    }
    let inputs = entry_files(pkg);
    let out_dir = pkg.join(".bundle");
    let mut cmd = Command::new(&exe);
    cmd.arg(pkg.join("index.js"))
        .args([
            "--bundle",
            "--format=esm",
            "--sourcemap",
            "--legal-comments=none",
            "--log-level=warning",
            // wasm-bindgen's imports object names the snippet module twice (same module, same
            // value): harmless, and not ours to fix.
            "--log-override:duplicate-object-key=silent",
        ])
        .arg(format!("--external:{WASM_MODULE}"))
        .arg(format!("--outfile={}", out_dir.join("index.js").display()));
    if !dev {
        cmd.arg("--minify");
    }
    util::run(&mut cmd)?;
    if !dev {
        terser(&out_dir)?;
    }
    let js = fs::read_to_string(out_dir.join("index.js")).map_err(|e| e.to_string())?;
    let map = fs::read_to_string(out_dir.join("index.js.map")).map_err(|e| e.to_string())?;
    // What the inlining costs: gzip of the bundle before and after, against the wasm's own.
    fs::write(out_dir.join("index.js"), &js).map_err(|e| e.to_string())?;
    let js_alone = gzip_size(&out_dir.join("index.js"))?;
    let (js, map) = inline_wasm(&js, &map, wasm)?;
    for f in &inputs {
        fs::remove_file(f).map_err(|e| format!("remove {}: {e}", f.display()))?;
    }
    fs::write(pkg.join("index.js"), js).map_err(|e| e.to_string())?;
    let (whole, wasm_alone) = (
        gzip_size(&pkg.join("index.js"))?,
        gzip_size(&inlined_wasm_path())?,
    );
    println!(
        "build: the wasm inlined: index.js {whole} B gzip = its JS alone {js_alone} B + the wasm \
         alone {wasm_alone} B {:+} B",
        whole as i64 - (js_alone + wasm_alone) as i64
    );
    fs::write(pkg.join("index.js.map"), map).map_err(|e| e.to_string())?;
    fs::remove_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let names: Vec<_> = inputs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    println!(
        "build: bundled {} into index.js{}",
        names.join(" + "),
        if dev { "" } else { " (minified)" }
    );
    Ok(())
}

/// V8's compile hint for the whole file, as its first line: every function of the bundle is
/// compiled when the module loads, not at its first call. The first call compiles about 30 of
/// them, after the wasm has arrived: with the hint, the wasm's last byte to the first request
/// took 3–8 ms less in five A/B runs of 30–60 cold starts (the wasm's request left 0–4 ms later:
/// ~3.5 ms less in all). Other engines ignore the comment.
const COMPILE_HINT: &str = "//# allFunctionsCalledOnLoad";

/// Minifies esbuild's bundle once more with terser, which compresses and names better: −0.2 KB
/// gzip. The source map is carried through, with the original sources inside it; terser puts
/// [`COMPILE_HINT`] first and shifts the map by its line.
fn terser(dir: &Path) -> Result {
    let exe = terser_path();
    if !exe.exists() {
        return Err(format!(
            "{} not found (npm `terser`): run `cargo xtask setup`",
            exe.display()
        ));
    }
    let (js, map) = (dir.join("index.js"), dir.join("index.js.map"));
    let out = dir.join("terser.js");
    let mut cmd = Command::new("node");
    cmd.arg(&exe)
        .arg(&js)
        .args([
            "--module",
            "--compress",
            "passes=3",
            "--mangle",
            "--format",
            &format!("preamble='{COMPILE_HINT}'"),
            "--source-map",
        ])
        .arg(format!(
            "content='{}',url='index.js.map',includeSources",
            map.display()
        ))
        .arg("-o")
        .arg(&out);
    util::run(&mut cmd)?;
    let minified = fs::read_to_string(&out).map_err(|e| e.to_string())?;
    if !minified.starts_with(&format!("{COMPILE_HINT}\n")) {
        return Err(format!(
            "terser's output does not start with `{COMPILE_HINT}`"
        ));
    }
    fs::rename(&out, &js).map_err(|e| e.to_string())?;
    fs::rename(dir.join("terser.js.map"), &map).map_err(|e| e.to_string())
}

pub fn terser_path() -> PathBuf {
    root().join("tests/node_modules/terser/bin/terser")
}

/// The wasm as a JS string literal, one character per byte: bytes 0x80–0xFF become U+0080–U+00FF
/// (two bytes of UTF-8), the rest stay themselves but for the escaped quote, backslash and line
/// breaks. Of the encodings measured (docs/size.md), the one that gzips closest to
/// the wasm itself; `Uint8Array.fromBase64(btoa(text))` decodes it natively.
fn wasm_literal(wasm: &[u8]) -> String {
    let mut out = String::with_capacity(wasm.len() * 2);
    out.push('\'');
    for &b in wasm {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ => out.push(char::from(b)),
        }
    }
    out.push('\'');
    out
}

/// Replaces the bundle's `import { wasmText as NAME } from "./wasm.js"` (exactly one) with
/// `const NAME = '<the wasm>';` and moves the source map's later columns on that line by the
/// difference. esbuild puts the import first, where the bytes gzip best (docs/size.md has the
/// measurements).
fn inline_wasm(js: &str, map: &str, wasm: &[u8]) -> Result<(String, String)> {
    let bad =
        || format!("the bundle does not import wasmText from {WASM_MODULE} once, as expected");
    let from: Vec<_> = [
        format!("from\"{WASM_MODULE}\""),
        format!("from \"{WASM_MODULE}\""),
    ]
    .iter()
    .flat_map(|f| {
        js.match_indices(f.as_str())
            .map(|(at, f)| at + f.len())
            .collect::<Vec<_>>()
    })
    .collect();
    let [end] = from[..] else { return Err(bad()) };
    let end = end + usize::from(js[end..].starts_with(';'));
    let at = js[..end].rfind("import").ok_or_else(bad)?;
    let names = js[at..end].split(['{', '}']).nth(1).ok_or_else(bad)?;
    let name = match names.split_whitespace().collect::<Vec<_>>()[..] {
        ["wasmText"] => "wasmText",
        ["wasmText", "as", name] => name,
        _ => return Err(bad()),
    };
    let statement = format!("const {name}={};", wasm_literal(wasm));
    let line = js[..at].matches('\n').count();
    let line_start = js[..at].rfind('\n').map_or(0, |i| i + 1);
    // Source map columns count UTF-16 units.
    let column = js[line_start..at].encode_utf16().count() as i64;
    let delta = statement.encode_utf16().count() as i64 - js[at..end].encode_utf16().count() as i64;
    let key = "\"mappings\":\"";
    let start = map.find(key).ok_or("the source map has no mappings")? + key.len();
    let stop = start
        + map[start..]
            .find('"')
            .ok_or("the source map's mappings do not end")?;
    let mappings = shift_columns(&map[start..stop], line, column, delta)?;
    let js = format!("{}{statement}{}", &js[..at], &js[end..]);
    Ok((js, format!("{}{mappings}{}", &map[..start], &map[stop..])))
}

/// Source map `mappings` with every segment of generated line `line` that starts after `column`
/// moved right by `delta`. Columns are relative within a line, so only the first such segment
/// changes.
fn shift_columns(mappings: &str, line: usize, column: i64, delta: i64) -> Result<String> {
    let mut lines: Vec<String> = mappings.split(';').map(str::to_string).collect();
    let Some(text) = lines.get_mut(line) else {
        return Ok(mappings.to_string());
    };
    let mut segments: Vec<String> = text.split(',').map(str::to_string).collect();
    let mut col = 0;
    for segment in segments.iter_mut().filter(|s| !s.is_empty()) {
        let (first, used) = vlq_decode(segment).ok_or("a malformed source map segment")?;
        col += first;
        if col > column {
            *segment = format!("{}{}", vlq_encode(first + delta), &segment[used..]);
            break;
        }
    }
    *text = segments.join(",");
    Ok(lines.join(";"))
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The first base64 VLQ number of `s`, and how many characters it took.
fn vlq_decode(s: &str) -> Option<(i64, usize)> {
    let (mut value, mut shift) = (0i64, 0);
    for (i, c) in s.bytes().enumerate() {
        let digit = BASE64.iter().position(|&d| d == c)? as i64;
        value += (digit & 31) << shift;
        if digit & 32 == 0 {
            let n = if value & 1 == 1 {
                -(value >> 1)
            } else {
                value >> 1
            };
            return Some((n, i + 1));
        }
        shift += 5;
    }
    None
}

fn vlq_encode(n: i64) -> String {
    let mut v = if n < 0 { (-n << 1) | 1 } else { n << 1 };
    let mut out = String::new();
    loop {
        let digit = v & 31;
        v >>= 5;
        out.push(char::from(
            BASE64[(digit | if v > 0 { 32 } else { 0 }) as usize],
        ));
        if v == 0 {
            return out;
        }
    }
}

/// Parts of the glue that this package does without, cut by `trim_glue`: (what, exact text, its
/// replacement). Each text must be in the glue exactly once, or the build fails.
const GLUE_TRIMS: &[(&str, &str, &str)] = &[
    // index.js instantiates the inlined bytes itself (asynchronously) with the glue's imports
    // object, then hands the instance to the glue: the glue's loaders (`initSync`, and the default
    // export that fetches a URL) are not exported, and the bundler leaves them out.
    (
        "the glue's exports of its loaders",
        "export { initSync, __wbg_init as default };",
        "export { __wbg_get_imports as imports, __wbg_finalize_init as finalize };",
    ),
    // Memory views made at each use instead of cached ones (the caches' checks for a grown
    // memory go with them): the glue reads each view at once (−0.19 KB gzip, with the next two).
    (
        "getArrayU64FromWasm0's cached view",
        "
    ptr = ptr >>> 0;
    return getBigUint64ArrayMemory0().subarray(ptr / 8, ptr / 8 + len);
",
        "\n    return new BigUint64Array(wasm.memory.buffer, ptr >>> 0, len);\n",
    ),
    (
        "getArrayU8FromWasm0's cached view",
        "
    ptr = ptr >>> 0;
    return getUint8ArrayMemory0().subarray(ptr / 1, ptr / 1 + len);
",
        "\n    return new Uint8Array(wasm.memory.buffer, ptr >>> 0, len);\n",
    ),
    (
        "getDataViewMemory0's cache",
        "let cachedDataViewMemory0 = null;
function getDataViewMemory0() {
    if (cachedDataViewMemory0 === null || cachedDataViewMemory0.buffer.detached === true || (cachedDataViewMemory0.buffer.detached === undefined && cachedDataViewMemory0.buffer !== wasm.memory.buffer)) {
        cachedDataViewMemory0 = new DataView(wasm.memory.buffer);
    }
    return cachedDataViewMemory0;
}
",
        "function getDataViewMemory0() {\n    return new DataView(wasm.memory.buffer);\n}\n",
    ),
    (
        "the DataView cache's reset",
        "\n    cachedDataViewMemory0 = null;\n",
        "\n",
    ),
    // passStringToWasm0 always takes its path for a wasm without `__wbindgen_realloc` (one
    // `encode`, then a copy): the loop and `encodeInto` after it become unreachable, and the
    // minifiers drop them.
    (
        "passStringToWasm0's path without realloc",
        "
    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
",
        "
    {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        new Uint8Array(wasm.memory.buffer).set(buf, ptr);
",
    ),
];

/// Applies GLUE_TRIMS to the glue.
fn trim_glue(glue_path: &Path) -> Result {
    let mut glue =
        fs::read_to_string(glue_path).map_err(|e| format!("{}: {e}", glue_path.display()))?;
    for (what, text, replacement) in GLUE_TRIMS {
        if glue.matches(text).count() != 1 {
            return Err(format!(
                "{}: {what} not found as expected; wasm-bindgen's glue changed?",
                glue_path.display()
            ));
        }
        glue = glue.replace(text, replacement);
    }
    fs::write(glue_path, glue).map_err(|e| e.to_string())
}

/// Replace `pkg` by `staging` with two renames (the window without a pkg/ is a few microseconds).
fn swap_in(staging: &Path, pkg: &Path) -> Result {
    let old = staging.with_extension("old");
    if pkg.exists() {
        fs::rename(pkg, &old).map_err(|e| format!("cannot move the old pkg/ aside: {e}"))?;
    }
    fs::rename(staging, pkg).map_err(|e| format!("cannot move the new package to pkg/: {e}"))?;
    if old.exists() {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Rewrite the glue's imports of `./snippets/<crate>-<hash>/pkg-template/X` to `./X` and
/// delete `pkg/snippets/`. Any other snippet (inline_js, modules outside pkg-template/) is an
/// error: the package would need files we don't ship.
pub fn flatten_snippets(pkg: &Path) -> Result {
    let snippets = pkg.join("snippets");
    if !snippets.exists() {
        println!("build: no JS snippets");
        return Ok(());
    }
    let mut files = Vec::new();
    walk(&snippets, &mut files)?;
    let glue_path = pkg.join(format!("{LIB}.js"));
    let mut glue =
        fs::read_to_string(&glue_path).map_err(|e| format!("{}: {e}", glue_path.display()))?;
    let mut rewritten = BTreeSet::new();
    for f in &files {
        let rel = f
            .strip_prefix(pkg)
            .expect("under pkg")
            .to_string_lossy()
            .replace('\\', "/");
        // rel = "snippets/<crate>-<hash>/<path inside the crate>"
        let inner = rel
            .splitn(3, '/')
            .nth(2)
            .ok_or_else(|| format!("unexpected snippet layout: pkg/{rel}"))?;
        let Some(name) = inner.strip_prefix("pkg-template/") else {
            return Err(format!(
                "pkg/{rel}: a JS snippet that is not under pkg-template/ (inline_js or another \
                 module path); the package only ships pkg-template/ files. Move the module to \
                 pkg-template/ and import it with #[wasm_bindgen(module = \"/pkg-template/...\")]"
            ));
        };
        if !root().join("pkg-template").join(name).exists() {
            return Err(format!("pkg/{rel}: pkg-template/{name} does not exist"));
        }
        let from = format!("./{rel}");
        if !glue.contains(&from) {
            return Err(format!(
                "the glue does not import {from}; wasm-bindgen's layout changed?"
            ));
        }
        // Only the module specifiers of `import` statements: the imports object keeps the
        // snippet path as its key, because the wasm binary names its import module so.
        for quote in ['\'', '"'] {
            glue = glue.replace(
                &format!("from {quote}{from}{quote}"),
                &format!("from {quote}./{name}{quote}"),
            );
        }
        rewritten.insert(name.to_string());
    }
    if glue.contains("from './snippets/") || glue.contains("from \"./snippets/") {
        return Err(format!(
            "{} still refers to snippets/ after rewriting",
            glue_path.display()
        ));
    }
    fs::write(&glue_path, glue).map_err(|e| e.to_string())?;
    fs::remove_dir_all(&snippets).map_err(|e| e.to_string())?;
    for n in &rewritten {
        println!("build: snippet pkg-template/{n} → ./{n}");
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result {
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}

/// The wasm features rustc's default wasm32 CPU may emit (Rust ≥ 1.82 / LLVM ≥ 19); telling
/// wasm-opt about them lets it read the input, and allows nothing the input couldn't already use.
const WASM_FEATURES: &[&str] = &[
    "--enable-mutable-globals",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// What wasm-opt's `--low-memory-unused` assumes the program leaves alone: addresses below this.
const LOW_MEMORY: u64 = 1024;

/// The lowest address that an active data segment starts at or that a mutable i32 global (the
/// stack pointer among them) starts with: the module's static layout, read from its binary.
fn lowest_static_address(wasm: &[u8]) -> Result<u64> {
    let bad = || "cannot read the wasm's global and data sections".to_string();
    let mut r = Reader { bytes: wasm, at: 8 };
    let mut lowest = u64::MAX;
    while r.at < wasm.len() {
        let id = r.byte().ok_or_else(bad)?;
        let size = r.uleb().ok_or_else(bad)? as usize;
        let end =
            r.at.checked_add(size)
                .filter(|&e| e <= wasm.len())
                .ok_or_else(bad)?;
        let mut s = Reader {
            bytes: &wasm[..end],
            at: r.at,
        };
        match id {
            // Globals: type, mutability, init expression.
            6 => {
                for _ in 0..s.uleb().ok_or_else(bad)? {
                    let (ty, mutable) = (s.byte().ok_or_else(bad)?, s.byte().ok_or_else(bad)?);
                    let init = s.const_expr().ok_or_else(bad)?;
                    if ty == 0x7f && mutable == 1 {
                        lowest = lowest.min(init.ok_or_else(bad)?);
                    }
                }
            }
            // Data: active segments (flags 0, or 2 with a memory index) start at a constant.
            11 => {
                for _ in 0..s.uleb().ok_or_else(bad)? {
                    let flags = s.uleb().ok_or_else(bad)?;
                    if flags == 2 {
                        s.uleb().ok_or_else(bad)?;
                    }
                    if flags != 1 {
                        lowest = lowest.min(s.const_expr().ok_or_else(bad)?.ok_or_else(bad)?);
                    }
                    let len = s.uleb().ok_or_else(bad)? as usize;
                    s.at =
                        s.at.checked_add(len)
                            .filter(|&e| e <= end)
                            .ok_or_else(bad)?;
                }
            }
            _ => {}
        }
        r.at = end;
    }
    Ok(lowest)
}

/// A cursor over a wasm binary: bytes, LEB128 numbers and constant expressions.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn uleb(&mut self) -> Option<u64> {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
        }
    }

    /// A constant expression of one instruction and `end`: `i32.const N` gives `Some(Some(N))`
    /// (N read as unsigned), the other constants give `Some(None)`, anything else `None`.
    fn const_expr(&mut self) -> Option<Option<u64>> {
        let value = match self.byte()? {
            0x41 => Some(u64::from(self.sleb()? as u32)),
            0x42 => self.sleb().map(|_| None)?,
            0x43 => self.skip(4).map(|_| None)?,
            0x44 => self.skip(8).map(|_| None)?,
            0x23 | 0xd2 => self.uleb().map(|_| None)?,
            0xd0 => self.byte().map(|_| None)?,
            _ => return None,
        };
        (self.byte()? == 0x0b).then_some(value)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.at = self.at.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        Some(())
    }

    fn sleb(&mut self) -> Option<i64> {
        let (mut value, mut shift) = (0i64, 0);
        loop {
            let b = self.byte()?;
            value |= i64::from(b & 0x7f).checked_shl(shift)?;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1 << shift;
                }
                return Some(value);
            }
        }
    }
}

/// What `--minify-imports-and-exports-and-modules` renamed: every import moves to module `a`.
#[derive(Debug, Default, PartialEq)]
struct MinifiedNames {
    /// (module, name, new name)
    imports: Vec<(String, String, String)>,
    /// (name, new name)
    exports: Vec<(String, String)>,
}

/// Reads wasm-opt's mapping: `{"imports": [["module", "name", "new"], ...], "exports": [["name",
/// "new"], ...]}`, one entry per line.
fn parse_minified_names(text: &str) -> Result<MinifiedNames> {
    let mut names = MinifiedNames::default();
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with("\"imports\"") {
            section = "imports";
        } else if line.starts_with("\"exports\"") {
            section = "exports";
        } else if let Some(entry) = line
            .strip_prefix('[')
            .and_then(|l| l.trim_end_matches(',').strip_suffix(']'))
        {
            let parts: Vec<String> = entry
                .split(',')
                .map(|p| p.trim().trim_matches('"').to_string())
                .collect();
            match (section, parts.as_slice()) {
                ("imports", [m, n, new]) => names.imports.push((m.clone(), n.clone(), new.clone())),
                ("exports", [n, new]) => names.exports.push((n.clone(), new.clone())),
                _ => return Err(format!("unexpected wasm-opt name mapping line: {line}")),
            }
        }
    }
    if names.imports.is_empty() || names.exports.is_empty() {
        return Err("wasm-opt printed no name mapping".into());
    }
    Ok(names)
}

/// Tells the wasm-bindgen glue the minified names: the glue's own import shims (module
/// `./LIB_bg.js`) are renamed where defined, runtime.js's functions are added to the same object
/// under their new names, the imports object becomes `{ a: ... }`, and `wasm.NAME` accesses use
/// the new export names. Every name must be found exactly where expected, or the build fails.
fn rename_in_glue(glue: &str, names: &MinifiedNames) -> Result<String> {
    let mut glue = glue.to_string();
    let own_module = format!("./{LIB}_bg.js");
    let mut from_runtime = String::new();
    for (module, name, new) in &names.imports {
        if *module == own_module {
            let key = format!("\n        {name}: function(");
            if glue.matches(&key).count() != 1 {
                return Err(format!("the glue does not define import {name} once"));
            }
            glue = glue.replace(&key, &format!("\n        {new}: function("));
        } else if module.ends_with("/runtime.js") {
            from_runtime.push_str(&format!("        {new}: import1.{name},\n"));
        } else {
            return Err(format!("an import from an unknown module: {module} {name}"));
        }
    }
    // The imports object: one module, `a`, holding the glue's shims and runtime.js's functions.
    let start = glue
        .find("    return {\n        __proto__: null,\n        \"./")
        .ok_or("the glue's imports object was not found")?;
    let end = start
        + glue[start..]
            .find("\n    };\n")
            .ok_or("the imports object has no end")?;
    glue.replace_range(
        start..end + "\n    };\n".len(),
        "    return { __proto__: null, a: import0 };\n",
    );
    let open = "    const import0 = {\n        __proto__: null,\n";
    if glue.matches(open).count() != 1
        || !glue.contains("import * as import1 from \"./runtime.js\"")
    {
        return Err("the glue's import0 / import1 are not where expected".into());
    }
    glue = glue.replace(open, &format!("{open}{from_runtime}"));
    for (name, new) in &names.exports {
        glue = replace_member(&glue, "wasm.", name, new);
    }
    Ok(glue)
}

/// `{object}{name}` → `{object}{new}` where `name` is the whole property name.
fn replace_member(text: &str, object: &str, name: &str, new: &str) -> String {
    let needle = format!("{object}{name}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        out.push_str(&rest[..at]);
        out.push_str(object);
        out.push_str(if whole { new } else { name });
        rest = after;
    }
    out.push_str(rest);
    out
}

fn wasm_opt(wasm: &Path) -> Result<MinifiedNames> {
    let exe = wasm_opt_path();
    if !exe.exists() {
        return Err(format!(
            "{} not found (npm `binaryen`): run `cargo xtask setup`",
            exe.display()
        ));
    }
    let before = fs::metadata(wasm).map_err(|e| e.to_string())?.len();
    let out = wasm.with_extension("opt.wasm");
    let bytes = fs::read(wasm).map_err(|e| e.to_string())?;
    let lowest = lowest_static_address(&bytes)?;
    if lowest < LOW_MEMORY {
        return Err(format!(
            "the wasm places data or its stack pointer at {lowest}, below {LOW_MEMORY}: \
             wasm-opt's --low-memory-unused would be wrong for it"
        ));
    }
    let mut cmd = Command::new(&exe);
    cmd.arg("-Oz")
        .args(WASM_FEATURES)
        // Drop the producers and target-features sections (tool metadata, ~250 bytes); one-
        // or two-letter import/export names. (`--converge` would re-run the renaming too.)
        .args(["--strip-producers", "--strip-target-features"])
        .arg("--minify-imports-and-exports-and-modules")
        // rustc lays the stack first (it grows down from 1 MiB) and the data after it, so the
        // low 1 KiB is never used (checked above): constant offsets fold into loads and
        // stores. A second -Oz cleans up after the first. Together −0.2 KB gzip.
        .arg("--low-memory-unused")
        .arg("-Oz")
        .arg(wasm)
        .arg("-o")
        .arg(&out);
    println!("$ {}", util::show(&cmd));
    let output = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start wasm-opt: {e}"))?;
    if !output.status.success() {
        return Err(format!("wasm-opt failed ({})", output.status));
    }
    let names = parse_minified_names(&String::from_utf8_lossy(&output.stdout))?;
    let after = fs::metadata(&out).map_err(|e| e.to_string())?.len();
    if after == 0 {
        return Err("wasm-opt wrote an empty file".into());
    }
    // The output is kept even if larger: its import names are the ones the glue is told.
    fs::rename(&out, wasm).map_err(|e| e.to_string())?;
    println!(
        "build: wasm-opt -Oz: {before} → {after} bytes ({:.1}% smaller)",
        100.0 * (before as f64 - after as f64) / before as f64
    );
    Ok(names)
}

/// Copy every file of pkg-template/ into pkg/; package.json gets the crate's version.
fn copy_template(template: &Path, pkg: &Path) -> Result {
    if !template.exists() {
        return Err("pkg-template/ is missing".into());
    }
    let version = crate_version()?;
    let mut files = Vec::new();
    walk(template, &mut files)?;
    for f in files {
        let rel = f.strip_prefix(template).expect("under template");
        let dest = pkg.join(rel);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        if rel == Path::new("package.json") {
            let text = fs::read_to_string(&f).map_err(|e| e.to_string())?;
            fs::write(&dest, set_json_version(&text, &version)?).map_err(|e| e.to_string())?;
        } else {
            fs::copy(&f, &dest).map_err(|e| format!("copy {}: {e}", f.display()))?;
        }
    }
    println!("build: copied pkg-template/ into pkg/ (version {version})");
    Ok(())
}

/// `files` in package.json must name exactly the files pkg/ has (package.json aside): a file
/// left out would be missing from the published package, a stale name hides a rename.
fn check_files_allow_list(pkg: &Path) -> Result {
    let text = fs::read_to_string(pkg.join("package.json")).map_err(|e| e.to_string())?;
    let listed = json_string_array(&text, "files").ok_or("package.json has no \"files\" array")?;
    let mut present = Vec::new();
    walk(pkg, &mut present)?;
    let present: BTreeSet<String> = present
        .iter()
        .map(|p| {
            p.strip_prefix(pkg)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .filter(|p| p != "package.json")
        .collect();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    let unlisted: Vec<_> = present.difference(&listed).cloned().collect();
    let absent: Vec<_> = listed.difference(&present).cloned().collect();
    if unlisted.is_empty() && absent.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("pkg-template/package.json `files` does not match pkg/:");
    if !unlisted.is_empty() {
        msg.push_str(&format!(
            " not listed (would not be published): {};",
            unlisted.join(", ")
        ));
    }
    if !absent.is_empty() {
        msg.push_str(&format!(" listed but not built: {};", absent.join(", ")));
    }
    Err(msg)
}

/// The strings of a top-level `"key": [ "a", "b" ]` array, without a JSON library.
fn json_string_array(text: &str, key: &str) -> Option<Vec<String>> {
    let at = text.find(&format!("\"{key}\""))?;
    let open = at + text[at..].find('[')?;
    let close = open + text[open..].find(']')?;
    Some(
        text[open + 1..close]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Replace the top-level `"version": "..."` of a package.json (the first one, by convention
/// placed right after `"name"`), without a JSON library.
fn set_json_version(text: &str, version: &str) -> Result<String> {
    let key = "\"version\"";
    let start = text
        .find(key)
        .ok_or("pkg-template/package.json has no \"version\"")?;
    let after_key = start + key.len();
    let colon = after_key + text[after_key..].find(':').ok_or("malformed \"version\"")?;
    let q1 = colon + text[colon..].find('"').ok_or("malformed \"version\"")?;
    let q2 = q1 + 1 + text[q1 + 1..].find('"').ok_or("malformed \"version\"")?;
    Ok(format!("{}\"{version}\"{}", &text[..q1], &text[q2 + 1..]))
}

/// The JS files the entry loads: `index.js` and every relative module it imports, statically or
/// with `import()`, transitively. Falls back to the wasm-bindgen glue when there is no index.js.
pub fn entry_files(pkg: &Path) -> Vec<PathBuf> {
    let start = if pkg.join("index.js").exists() {
        "index.js".to_string()
    } else {
        format!("{LIB}.js")
    };
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Ok(text) = fs::read_to_string(pkg.join(&f)) else {
            continue;
        };
        let base = Path::new(&f)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for spec in relative_imports(&text) {
            let joined = normalize(&base.join(spec));
            if pkg.join(&joined).exists() {
                todo.push(joined);
            }
        }
    }
    seen.into_iter()
        .map(|f| pkg.join(f))
        .filter(|p| p.exists())
        .collect()
}

fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop();
            }
            c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// `./x.js` / `../x.js` specifiers right after `from`, `import` or `import(` (comments and
/// other strings are ignored because only a keyword directly before the quote counts).
fn relative_imports(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["from", "import"] {
        let mut i = 0;
        while let Some(off) = src[i..].find(kw) {
            let at = i + off;
            i = at + kw.len();
            let word_start = at == 0 || {
                let c = src.as_bytes()[at - 1];
                !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.')
            };
            if !word_start {
                continue;
            }
            let rest = src[i..].trim_start();
            let rest = rest.strip_prefix('(').map(str::trim_start).unwrap_or(rest);
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let Some(len) = rest[1..].find(quote) else {
                continue;
            };
            let lit = &rest[1..1 + len];
            if (lit.starts_with("./") || lit.starts_with("../")) && lit.ends_with(".js") {
                out.push(lit.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub struct Sizes {
    pub rows: Vec<(String, u64, u64)>, // name, raw, gzip
    pub total_gzip: u64,
    pub total_files: Vec<String>,
}

pub fn measure(pkg: &Path) -> Result<Sizes> {
    if !pkg.join("index.js").exists() {
        return Err(format!(
            "{} missing: run `cargo xtask build`",
            pkg.join("index.js").display()
        ));
    }
    let mut rows = Vec::new();
    let mut js: Vec<PathBuf> = fs::read_dir(pkg)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    js.sort();
    for p in &js {
        let raw = fs::metadata(p).map_err(|e| e.to_string())?.len();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        rows.push((name, raw, gzip_size(p)?));
    }
    let mut total_gzip = 0;
    let mut total_files = Vec::new();
    for p in &entry_files(pkg) {
        total_gzip += gzip_size(p)?;
        total_files.push(p.file_name().unwrap().to_string_lossy().into_owned());
    }
    Ok(Sizes {
        rows,
        total_gzip,
        total_files,
    })
}

pub fn print_sizes(pkg: &Path) -> Result<Sizes> {
    let s = measure(pkg)?;
    println!("\nsizes (gzip -9):");
    for (name, raw, gz) in &s.rows {
        println!("  {name:<28} {:>10} raw  {:>10} gzip", kb(*raw), kb(*gz));
    }
    println!(
        "  {:<28} {:>10} gzip  ({} bytes: {})",
        "total the entry loads",
        kb(s.total_gzip),
        s.total_gzip,
        s.total_files.join(" + ")
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleb(mut v: i64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
            out.push(if done { b } else { b | 0x80 });
            if done {
                return;
            }
        }
    }

    /// A module with a mutable i32 global (a stack pointer), an immutable one, an f64 global
    /// whose bytes hold `end` opcodes, a passive and an active data segment.
    fn module(stack: i32, constant: i32, data_at: i32) -> Vec<u8> {
        let mut globals = vec![3, 0x7f, 1, 0x41];
        sleb(stack.into(), &mut globals);
        globals.extend([0x0b, 0x7f, 0, 0x41]);
        sleb(constant.into(), &mut globals);
        globals.extend([0x0b, 0x7c, 1, 0x44]);
        globals.extend([0x0b; 8]);
        globals.push(0x0b);
        let mut data = vec![2, 1, 3, b'a', b'b', b'c', 0, 0x41];
        sleb(data_at.into(), &mut data);
        data.extend([0x0b, 2, b'h', b'i']);
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        for (id, body) in [(6u8, globals), (11, data)] {
            wasm.push(id);
            wasm.push(body.len() as u8);
            wasm.extend(body);
        }
        wasm
    }

    #[test]
    fn low_memory_check_reads_the_stack_pointer_and_data_segments() {
        // rustc's layout: stack first, data after it.
        assert_eq!(
            lowest_static_address(&module(1 << 20, 5, (1 << 20) + 16)),
            Ok(1 << 20)
        );
        // Data in the low KiB, or a stack pointer there; an immutable global does not count.
        assert_eq!(lowest_static_address(&module(1 << 20, 5, 16)), Ok(16));
        assert_eq!(lowest_static_address(&module(512, 5, 4096)), Ok(512));
        // A truncated module is an error, not a pass.
        let whole = module(1 << 20, 5, 4096);
        assert!(lowest_static_address(&whole[..whole.len() - 3]).is_err());
    }

    #[test]
    fn minified_names_reach_the_glue() {
        let map = r#"{
 "imports": [
  ["./b24_crm_item_bg.js", "__wbg_now_5c5f", "a"],
  ["./snippets/x-1/pkg-template/runtime.js", "addFailed", "b"],
 ],
"exports": [
  ["client_deleteItem", "C"],
  ["client_deleteItems", "D"],
  ["memory", "E"]
 ]
}"#;
        let names = parse_minified_names(map).unwrap();
        assert_eq!(names.imports.len(), 2);
        assert_eq!(names.exports[2], ("memory".into(), "E".into()));
        let glue = "import * as import1 from \"./runtime.js\"\nfunction __wbg_get_imports() {\n    const import0 = {\n        __proto__: null,\n        __wbg_now_5c5f: function() {\n        },\n    };\n    return {\n        __proto__: null,\n        \"./b24_crm_item_bg.js\": import0,\n        \"./snippets/x-1/pkg-template/runtime.js\": import1,\n    };\n}\nwasm.client_deleteItem(1); wasm.client_deleteItems(2); wasm.memory.buffer;";
        let out = rename_in_glue(glue, &names).unwrap();
        assert!(out.contains("        a: function("), "{out}");
        assert!(out.contains("        b: import1.addFailed,"), "{out}");
        assert!(
            out.contains("return { __proto__: null, a: import0 };"),
            "{out}"
        );
        assert!(
            out.contains("wasm.C(1); wasm.D(2); wasm.E.buffer;"),
            "{out}"
        );
        assert!(!out.contains("__wbg_now_5c5f"));
        assert!(rename_in_glue("no glue here", &names).is_err());
    }

    /// The absolute generated columns of each line's segments.
    fn columns(mappings: &str) -> Vec<Vec<i64>> {
        mappings
            .split(';')
            .map(|line| {
                let mut col = 0;
                line.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        col += vlq_decode(s).unwrap().0;
                        col
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_wasm_goes_in_and_the_source_map_follows() {
        let js = "//# hint\nimport{wasmText as t}from\"./wasm.js\";let a=t;fetch(a)\n//# end";
        let line = js.lines().nth(1).unwrap();
        let (a, fetch) = (
            line.find("let").unwrap() as i64,
            line.find("fetch").unwrap() as i64,
        );
        // Line 1: segments at the import, `let` and `fetch` (with source fields after the column).
        let mappings = format!(";AAAA,{}AACA,{}AACA", vlq_encode(a), vlq_encode(fetch - a));
        let map = format!("{{\"version\":3,\"mappings\":\"{mappings}\",\"names\":[]}}");
        let wasm = b"\0asm\x01'\\\n\r\xff";
        let (out, out_map) = inline_wasm(js, &map, wasm).unwrap();
        let line = out.lines().nth(1).unwrap();
        assert!(
            line.starts_with("const t='\0asm\x01\\'\\\\\\n\\r\u{ff}';let a=t;"),
            "{line}"
        );
        let new_fetch = line.encode_utf16().count() as i64 - "fetch(a)".len() as i64;
        let start = out_map.find("\"mappings\":\"").unwrap() + 12;
        let end = start + out_map[start..].find('"').unwrap();
        let cols = columns(&out_map[start..end]);
        let new_a = new_fetch - (fetch - a);
        assert_eq!(cols[1], [0, new_a, new_fetch]);
        assert!(
            out_map[start..end].ends_with("AACA"),
            "the other fields are kept"
        );
        // No import, or two, is an error.
        assert!(inline_wasm("let a=1", &map, wasm).is_err());
        let twice = format!("{js};import{{wasmText}}from\"./wasm.js\"");
        assert!(inline_wasm(&twice, &map, wasm).is_err());
    }

    #[test]
    fn every_byte_survives_the_literal() {
        let bytes: Vec<u8> = (0..=255).collect();
        let literal = wasm_literal(&bytes);
        let inner = &literal[1..literal.len() - 1];
        let (mut back, mut chars) = (Vec::new(), inner.chars());
        while let Some(c) = chars.next() {
            let c = match c {
                '\\' => match chars.next().unwrap() {
                    'n' => '\n',
                    'r' => '\r',
                    other => other,
                },
                '\n' | '\r' | '\'' => panic!("unescaped {c:?}"),
                c => c,
            };
            back.push(u8::try_from(u32::from(c)).unwrap());
        }
        assert_eq!(back, bytes);
        for n in [-1000, -1, 0, 1, 15, 16, 31, 32, 1 << 20] {
            assert_eq!(vlq_decode(&vlq_encode(n)).map(|(v, _)| v), Some(n));
        }
    }

    #[test]
    fn version_is_replaced() {
        let t = "{\n  \"name\": \"x\",\n  \"version\": \"0.0.0\",\n  \"dependencies\": {\"version\": \"1\"}\n}";
        let r = set_json_version(t, "1.2.3").unwrap();
        assert!(r.contains("\"version\": \"1.2.3\""));
        assert!(r.contains("{\"version\": \"1\"}"));
    }

    #[test]
    fn imports_are_found() {
        let src = r#"import { a } from './a.js';
import init from "./b24_crm_item.js";
export * from './c.js';
const m = await import('./lazy.js');
import './side.js';
import x from 'playwright-core';
const s = "./not-an-import.js";"#;
        assert_eq!(
            relative_imports(src),
            [
                "./a.js",
                "./b24_crm_item.js",
                "./c.js",
                "./lazy.js",
                "./side.js"
            ]
        );
    }
}
