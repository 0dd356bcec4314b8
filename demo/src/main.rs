//! `demo`: serves the LocalLibrary visit counter, or clears expired sessions.
//!
//! ```text
//! demo [serve] [--addr 127.0.0.1:8000] [--clear-every SECONDS]
//! demo clear-expired
//! ```
//!
//! The store comes from `SESSION_STORE` (default: a SQLite file in the working
//! directory); logs are filtered by `RUST_LOG` (default `info`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

#[derive(Debug)]
enum Command {
    Serve {
        addr: SocketAddr,
        clear_every: Option<Duration>,
    },
    ClearExpired,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter().map(String::as_str).peekable();
    match args.peek() {
        Some(&"clear-expired") => {
            args.next();
            return match args.next() {
                None => Ok(Command::ClearExpired),
                Some(other) => Err(format!("clear-expired takes no argument `{other}`")),
            };
        }
        Some(&"serve") => {
            args.next();
        }
        _ => {}
    }
    let mut addr: SocketAddr = ([127, 0, 0, 1], 8000).into();
    let mut clear_every = None;
    while let Some(arg) = args.next() {
        match arg {
            "--addr" => {
                let v = args.next().ok_or("--addr needs HOST:PORT")?;
                addr = v
                    .parse()
                    .map_err(|_| format!("--addr: `{v}` is not HOST:PORT"))?;
            }
            "--clear-every" => {
                let v = args.next().ok_or("--clear-every needs SECONDS")?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--clear-every: `{v}` is not a positive number"))?;
                clear_every = Some(Duration::from_secs(secs));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Command::Serve { addr, clear_every })
}

const USAGE: &str = "usage: demo [serve] [--addr HOST:PORT] [--clear-every SECONDS]\n       demo clear-expired\n\
    The store comes from SESSION_STORE (default sqlite://demo-sessions.sqlite3).";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let store_url = std::env::var("SESSION_STORE").unwrap_or_else(|_| demo::DEFAULT_STORE.into());
    let secure = std::env::var("SESSION_COOKIE_SECURE").is_ok_and(|v| v == "1" || v == "true");
    let config = demo::session_config(secure).map_err(|e| e.to_string())?;
    let (app, manager) = demo::build(&store_url, config)
        .await
        .map_err(|e| e.to_string())?;
    let shown = sessions::redact_url(&store_url);
    match command {
        Command::ClearExpired => {
            let removed = manager.clear_expired().await.map_err(|e| e.to_string())?;
            tracing::info!(store = %shown, removed, "cleared expired sessions");
            Ok(())
        }
        Command::Serve { addr, clear_every } => {
            if let Some(every) = clear_every {
                let manager = manager.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        match manager.clear_expired().await {
                            Ok(removed) => tracing::info!(removed, "cleared expired sessions"),
                            Err(error) => {
                                tracing::warn!(%error, "clearing expired sessions failed")
                            }
                        }
                    }
                });
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!(store = %shown, "LocalLibrary demo on http://{addr}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_commands() {
        assert!(matches!(
            parse(&args("")),
            Ok(Command::Serve {
                clear_every: None,
                ..
            })
        ));
        assert!(matches!(
            parse(&args("clear-expired")),
            Ok(Command::ClearExpired)
        ));
        let Ok(Command::Serve { addr, clear_every }) =
            parse(&args("serve --addr 127.0.0.1:9000 --clear-every 60"))
        else {
            panic!("serve with options");
        };
        assert_eq!(addr.port(), 9000);
        assert_eq!(clear_every, Some(Duration::from_secs(60)));
        for bad in [
            "--addr",
            "--addr nowhere",
            "--clear-every 0",
            "--bogus",
            "clear-expired x",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
