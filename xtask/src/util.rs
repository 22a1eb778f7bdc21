//! Small helpers: running commands, reading versions, parsing flags.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// A printable form of a command line, for logs.
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let k = k.to_string_lossy();
            // Only print the variables we set that a reader may want to copy.
            if k.starts_with("B24_")
                || k.starts_with("CARGO_TARGET_")
                || k == "RUSTFLAGS"
                || k == "CHROMEDRIVER"
            {
                s.push_str(&format!("{k}={} ", v.to_string_lossy()));
            }
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    mask_secrets(&s)
}

/// Mask webhook secrets (`/rest/<user id>/<secret>/` → `/rest/<user id>/***/`) in a log line.
pub fn mask_secrets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/rest/") {
        let (head, tail) = rest.split_at(i + "/rest/".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let after = &tail[digits..];
        match after.strip_prefix('/') {
            Some(secret_and_more) if digits > 0 => {
                let end = secret_and_more
                    .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
                    .unwrap_or(secret_and_more.len());
                out.push_str(&tail[..digits + 1]);
                if end > 0 {
                    out.push_str("***");
                }
                rest = &secret_and_more[end..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Run a command with inherited stdio; an error names the command and its exit status.
pub fn run(cmd: &mut Command) -> Result {
    println!("$ {}", show(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

/// Run a command, echoing its stdout line by line (stderr is inherited), and return the lines
/// for which `keep` is true (runners' summary lines) along with the outcome.
pub fn run_tee(cmd: &mut Command, keep: impl Fn(&str) -> bool) -> (Result, Vec<String>) {
    use std::io::{BufRead, BufReader, Write};
    println!("$ {}", show(cmd));
    let mut child = match cmd.stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                Err(format!("cannot start `{}`: {e}", show(cmd))),
                Vec::new(),
            )
        }
    };
    let mut kept = Vec::new();
    let out = child.stdout.take().expect("piped");
    let stdout = std::io::stdout();
    for line in BufReader::new(out).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).into_owned();
        {
            let mut o = stdout.lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
        if keep(&line) {
            kept.push(line);
        }
    }
    let r = match child.wait() {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(format!("`{}` failed ({st})", show(cmd))),
        Err(e) => Err(e.to_string()),
    };
    (r, kept)
}

/// Run a command quietly and return its stdout (trimmed); `None` if it can't start or fails.
pub fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Find an executable on PATH.
pub fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let name = name.as_ref();
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `~/.cargo/bin` (or `$CARGO_HOME/bin`).
pub fn cargo_home_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    home.join("bin")
}

/// The version of `package` recorded in Cargo.lock.
pub fn lock_version(package: &str) -> Result<String> {
    let path = root().join("Cargo.lock");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let want = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            for next in lines.by_ref() {
                if let Some(v) = next.trim().strip_prefix("version = ") {
                    return Ok(v.trim_matches('"').to_string());
                }
                if next.trim().is_empty() {
                    break;
                }
            }
        }
    }
    Err(format!(
        "{package} is not in Cargo.lock (run `cargo generate-lockfile`?)"
    ))
}

/// `version` of the `[package]` section of the root Cargo.toml.
pub fn crate_version() -> Result<String> {
    let path = root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut in_package = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[package]";
        } else if in_package {
            if let Some(rest) = t.strip_prefix("version") {
                if let Some(v) = rest.trim_start().strip_prefix('=') {
                    return Ok(v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    Err("no [package] version in Cargo.toml".into())
}

/// Size in bytes of `path` compressed with `gzip -9`.
pub fn gzip_size(path: &Path) -> Result<u64> {
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    let mut buf = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("gzip {} failed", path.display()));
    }
    Ok(buf.len() as u64)
}

pub fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

/// Very small flag parser: known boolean flags and `--name VALUE` / `--name=VALUE` options.
pub struct Args {
    rest: Vec<String>,
}

impl Args {
    pub fn new(args: &[String]) -> Self {
        Args {
            rest: args.to_vec(),
        }
    }

    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        before != self.rest.len()
    }

    pub fn value(&mut self, name: &str) -> Result<Option<String>> {
        let prefix = format!("{name}=");
        if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            let a = self.rest.remove(i);
            return Ok(Some(a[prefix.len()..].to_string()));
        }
        if let Some(i) = self.rest.iter().position(|a| a == name) {
            if i + 1 >= self.rest.len() {
                return Err(format!("{name} needs a value"));
            }
            let v = self.rest.remove(i + 1);
            self.rest.remove(i);
            return Ok(Some(v));
        }
        Ok(None)
    }

    /// Fail on anything not consumed.
    pub fn finish(self) -> Result {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unexpected argument(s): {} (see `cargo xtask help`)",
                self.rest.join(" ")
            ))
        }
    }
}

/// Milliseconds → "1m 02s" / "4.2s".
pub fn dur(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Are we root? (`id -u` == 0)
pub fn is_root() -> bool {
    capture(Command::new("id").arg("-u")).as_deref() == Some("0")
}
