//! A local stand-in for a Bitrix24 portal's REST API, for tests, demos and offline widget
//! development. See `emulator/README.md` for the command line, the control API and what it emulates.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emu = emulator::Emulator::start(emulator::Config::default()).await?;
//! println!("{}", emu.webhook);
//! emu.stop().await;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod frame;
pub mod limits;
pub mod params;
pub mod portal;
pub mod rest;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use clock::{Clock, ManualClock, SystemClock};
pub use limits::Limiter;
pub use portal::{Portal, Settings};

/// Start-up configuration (the command line maps onto it).
#[derive(Clone)]
pub struct Config {
    /// 0 picks a free port. The emulator binds 127.0.0.1 only.
    pub port: u16,
    pub seed: u64,
    /// Items seeded for the smart process 1268 and for deals (2).
    pub items: u32,
    /// Enable `/_emulator/*` (loopback clients only).
    pub control: bool,
    pub settings: Settings,
    /// `(URL prefix, directory)` pairs for static files.
    pub statics: Vec<(String, PathBuf)>,
    /// Log one line per request to stderr (secrets masked).
    pub log: bool,
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            seed: 1,
            items: 20,
            control: false,
            settings: Settings::default(),
            statics: vec![],
            log: false,
            clock: Arc::new(SystemClock),
        }
    }
}

/// A running emulator.
pub struct Handle {
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The seeded admin webhook, `http://127.0.0.1:PORT/rest/1/SECRET/`.
    pub webhook: String,
    shared: Arc<server::Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Run `f` with the portal state locked (for in-process tests).
    pub fn with_portal<R>(&self, f: impl FnOnce(&mut Portal) -> R) -> R {
        f(&mut self.shared.portal.lock().unwrap())
    }

    /// Stop accepting and close open connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.shared.release.notify_waiters();
        let _ = self.task.await;
    }
}

/// The emulator.
pub struct Emulator;

impl Emulator {
    /// Bind 127.0.0.1:`config.port` and serve in the background on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<Handle> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let port = listener.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let portal = Portal::new(
            config.seed,
            config.items,
            config.settings.clone(),
            url.clone(),
            config.clock.now(),
        );
        let webhook = format!("{url}/rest/1/{}/", portal.webhooks[0].secret);
        let shared = Arc::new(server::Shared::new(
            portal,
            config.clock.clone(),
            config.control,
            config.statics.clone(),
            config.log,
        ));
        let (stop, stopped) = watch::channel(false);
        let sh = shared.clone();
        let mut stop_accepting = stopped.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    acc = listener.accept() => {
                        let Ok((stream, peer)) = acc else { continue };
                        let sh = sh.clone();
                        let mut stopped = stopped.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = server::serve_conn(sh, stream, peer) => {}
                                _ = stopped.wait_for(|s| *s) => {}
                            }
                        });
                    }
                    _ = stop_accepting.wait_for(|s| *s) => break,
                }
            }
        });
        Ok(Handle {
            port,
            url,
            webhook,
            shared,
            stop,
            task,
        })
    }
}
