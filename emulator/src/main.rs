//! `cargo run -p emulator -- [flags]`: see `--help` and emulator/README.md.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use emulator::{Config, Emulator, Limiter};

const HELP: &str = "\
Bitrix24 portal emulator: a local stand-in for a Bitrix24 portal's REST API.

USAGE: emulator [FLAGS]

  --port N               port on 127.0.0.1 (0 = pick a free one; default 0)
  --seed N               seed for webhook secrets, app credentials and tokens (default 1)
  --items N              items seeded for smart process 1268 and for deals (default 20)
  --control              enable the control API under /_emulator/ (loopback clients only)
  --burst N              leaky-bucket size, requests (default 50; 0 = no request-intensity limit)
  --drain F              leaky-bucket drain, requests per second (default 2)
  --limiter MODEL        operating-limit model: server (the portal's server code; default)
                         or docs (the documentation's model, as before)
  --operating-limit S    operating limit, seconds per method per webhook/app in 10 minutes
                         (default 420 with --limiter server, 480 with docs; 0 = off)
  --processing S         server seconds each executed command takes (default 0); the server
                         model spends them (waits S / time-scale) and charges the run, the docs
                         model charges them without waiting
  --operating-cost S     the same as --processing
  --request-limit S      cut a request whose run passes S server seconds with an HTML 504
                         (default 60; 0 = off)
  --time-scale F         run the limits' clocks and the server time F times faster (default 1)
  --no-limits            same as --burst 0 --operating-limit 0
  --token-lifetime S     OAuth access-token lifetime in seconds (default 3600)
  --require-https        answer INVALID_REQUEST \"Https required\" to plain-http REST calls
                         (a request with X-Forwarded-Proto: https counts as https)
  --portal-error CODE    answer every REST call with OVERLOAD_LIMIT, ACCESS_DENIED or PORTAL_DELETED
  --static PREFIX=DIR    serve DIR's files at URL PREFIX (repeatable), e.g. --static /=www
  --threads N            worker threads (default 2)
  --log                  log one line per request to stderr (webhook secrets masked)
  -h, --help             this help

On start it prints, each on its own line:
  listening on http://127.0.0.1:PORT
  webhook: http://127.0.0.1:PORT/rest/1/SECRET/
";

fn parse(args: &[String]) -> Result<(Config, usize), String> {
    let mut c = Config::default();
    let mut threads = 2usize;
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or(format!("{name} needs a value"))
    };
    fn num<T: std::str::FromStr>(s: String, name: &str) -> Result<T, String> {
        s.parse()
            .map_err(|_| format!("{name}: not a valid number: {s}"))
    }
    fn secs(s: String, name: &str) -> Result<f64, String> {
        match num::<f64>(s, name)? {
            x if x >= 0.0 => Ok(x),
            _ => Err(format!("{name} must be >= 0")),
        }
    }
    while i < args.len() {
        let a = args[i].clone();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") && f != "--static" => {
                (f.to_string(), Some(v.to_string()))
            }
            _ => (a.clone(), None),
        };
        let v = |i: &mut usize| match &inline {
            Some(x) => Ok(x.clone()),
            None => value(i, &flag),
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--port" => c.port = num(v(&mut i)?, &flag)?,
            "--seed" => c.seed = num(v(&mut i)?, &flag)?,
            "--items" => c.items = num(v(&mut i)?, &flag)?,
            "--control" => c.control = true,
            "--burst" => c.settings.burst = num(v(&mut i)?, &flag)?,
            "--drain" => c.settings.drain = num(v(&mut i)?, &flag)?,
            "--limiter" => {
                let model = v(&mut i)?;
                c.settings.limiter =
                    Limiter::parse(&model).ok_or("--limiter must be server or docs")?;
            }
            "--operating-limit" => c.settings.operating_limit = Some(secs(v(&mut i)?, &flag)?),
            "--processing" | "--operating-cost" => c.settings.processing = secs(v(&mut i)?, &flag)?,
            "--request-limit" => c.settings.request_limit = secs(v(&mut i)?, &flag)?,
            "--time-scale" => {
                c.settings.time_scale = num(v(&mut i)?, &flag)?;
                if c.settings.time_scale <= 0.0 {
                    return Err("--time-scale must be > 0".into());
                }
            }
            "--no-limits" => {
                c.settings.burst = 0;
                c.settings.operating_limit = Some(0.0);
            }
            "--token-lifetime" => c.settings.token_lifetime = num(v(&mut i)?, &flag)?,
            "--require-https" => c.settings.require_https = true,
            "--portal-error" => {
                let code = v(&mut i)?;
                if !["OVERLOAD_LIMIT", "ACCESS_DENIED", "PORTAL_DELETED"].contains(&code.as_str()) {
                    return Err(
                        "--portal-error must be OVERLOAD_LIMIT, ACCESS_DENIED or PORTAL_DELETED"
                            .into(),
                    );
                }
                c.settings.portal_error = Some(code);
            }
            "--static" => {
                let spec = value(&mut i, "--static")?;
                let (prefix, dir) = spec.split_once('=').ok_or("--static needs PREFIX=DIR")?;
                if !prefix.starts_with('/') {
                    return Err("--static PREFIX must start with /".into());
                }
                let dir = PathBuf::from(dir);
                if !dir.is_dir() {
                    return Err(format!("--static: {} is not a directory", dir.display()));
                }
                c.statics.push((prefix.to_string(), dir));
            }
            "--log" => c.log = true,
            "--threads" => threads = num::<usize>(v(&mut i)?, &flag)?.max(1),
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
        i += 1;
    }
    Ok((c, threads))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, threads) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let emu = match Emulator::start(config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("emulator: cannot listen: {e}");
                return ExitCode::from(1);
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", emu.url);
        let _ = writeln!(out, "webhook: {}", emu.webhook);
        let _ = out.flush();
        drop(out);
        std::future::pending::<()>().await;
        ExitCode::SUCCESS
    })
}
