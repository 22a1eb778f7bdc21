//! Start the portal emulator (`target/debug/emulator`) and read its URL and webhook.

use crate::util::{self, root, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn bin() -> PathBuf {
    root().join("target/debug/emulator")
}

/// `cargo build -p emulator` (native toolchain).
pub fn build() -> Result {
    util::run(
        Command::new("cargo")
            .args(["build", "--package", "emulator"])
            .current_dir(root()),
    )
}

pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `http://127.0.0.1:PORT/rest/1/SECRET/`
    pub webhook: String,
}

impl Emulator {
    /// Start with `--port PORT` plus `extra` flags; wait for the two announcement lines.
    /// `echo`: forward the emulator's later stdout, prefixed, to ours (else it is drained).
    pub fn start(port: u16, extra: &[String], echo: bool) -> Result<Emulator> {
        let exe = bin();
        if !exe.exists() {
            return Err(format!(
                "{} is missing: `cargo build -p emulator`",
                exe.display()
            ));
        }
        let mut cmd = Command::new(&exe);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(extra)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        println!("$ {}", util::show(&cmd));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut announced = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if announced < 2 {
                    if line.starts_with("listening on ") || line.starts_with("webhook: ") {
                        announced += 1;
                    }
                    let _ = tx.send(line);
                } else if echo {
                    println!("[emulator] {line}");
                }
            }
        });
        let mut url = None;
        let mut webhook = None;
        while url.is_none() || webhook.is_none() {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("listening on ") {
                        url = Some(u.trim().trim_end_matches('/').to_string());
                    } else if let Some(w) = line.strip_prefix("webhook: ") {
                        webhook = Some(w.trim().to_string());
                    } else {
                        println!("[emulator] {line}");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Err(format!(
                        "the emulator did not print `listening on ...` and `webhook: ...` \
                         (exit status: {status:?}); does it support {}?",
                        extra.join(" ")
                    ));
                }
            }
        }
        let (url, webhook) = (url.unwrap(), webhook.unwrap());
        println!("emulator: {url} (webhook {})", mask(&webhook));
        Ok(Emulator {
            child,
            url,
            webhook,
        })
    }

    pub fn port(&self) -> &str {
        self.url.rsplit(':').next().unwrap_or("")
    }

    /// Wait for the emulator to exit on its own (Ctrl-C reaches it too).
    pub fn wait(mut self) -> Result {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        println!("emulator exited ({status})");
        match status.code() {
            Some(c) if c != 0 => Err(format!("the emulator failed (exit code {c})")),
            _ => Ok(()), // success, or stopped by a signal (Ctrl-C)
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A webhook URL with its secret (the path segment after the user id) masked, for logs.
pub fn mask(webhook: &str) -> String {
    util::mask_secrets(webhook)
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_the_secret() {
        assert_eq!(
            super::mask("http://127.0.0.1:5/rest/1/abc123/"),
            "http://127.0.0.1:5/rest/1/***/"
        );
        assert_eq!(
            crate::util::mask_secrets("node x.mjs http://h/ 'http://h:1/rest/12/s3c/' /rest/x/y"),
            "node x.mjs http://h/ 'http://h:1/rest/12/***/' /rest/x/y"
        );
    }
}
