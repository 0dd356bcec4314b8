//! `demo`: serves the LocalLibrary visit counter, or clears expired sessions.
//!
//! ```text
//! demo [serve] [--addr 127.0.0.1:8000] [--clear-every SECONDS]
//! demo clear-expired
//! ```
//!
//! The store comes from `--store URL` or `SESSION_STORE` (default: a SQLite file in the
//! working directory); logs are filtered by `RUST_LOG` (default `info`). Exit status: 0 on success
//! (and for `--help`), 2 for a command line that does not parse, 1 when the store cannot
//! be opened or the command fails.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The LocalLibrary visit counter: sessions on axum, store chosen by `--store` or `SESSION_STORE`.
///
/// Without a command, serves the site (as `demo serve`).
#[derive(Debug, Parser)]
#[command(
    name = "demo",
    args_conflicts_with_subcommands = true,
    after_help = "Environment:\n  \
        SESSION_COOKIE_SECURE  `1` or `true`: mark the session cookie `Secure` (behind TLS)\n  \
        RUST_LOG               the log filter (default `info`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The options of `serve`, also accepted without the command name.
    #[command(flatten)]
    serve: ServeArgs,
    /// The session store URL (`sqlite://…`, `postgres://…`, `redis://…`, `file://…`, …).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "SESSION_STORE",
        // The URL may hold a password: `--help` must not print it.
        hide_env_values = true,
        default_value = demo::DEFAULT_STORE
    )]
    store: String,
}

/// What the demo does.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the site (the default command).
    Serve(ServeArgs),
    /// Remove the expired sessions of the store once (Django's `clearsessions`), then exit.
    ClearExpired,
}

/// The options of `serve`.
#[derive(Clone, Debug, Args)]
struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Also clear expired sessions every SECONDS (a positive number) while serving.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    clear_every: Option<u64>,
}

impl ServeArgs {
    fn clear_every(&self) -> Option<Duration> {
        self.clear_every.map(Duration::from_secs)
    }
}

impl Cli {
    /// The command to run: `serve` with the top-level options when none is named.
    fn into_command(self) -> (Command, String) {
        (
            self.command.unwrap_or(Command::Serve(self.serve)),
            self.store,
        )
    }
}

/// Why the demo stopped with a failure.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    /// The session configuration was refused.
    #[error(transparent)]
    Config(#[from] sessions::ConfigError),
    /// The store named by `SESSION_STORE` could not be opened.
    #[error(transparent)]
    Open(#[from] sessions::OpenError),
    /// Clearing expired sessions failed.
    #[error(transparent)]
    Store(#[from] sessions::Error),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error(transparent)]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let (command, store_url) = match Cli::try_parse() {
        Ok(cli) => cli.into_command(),
        Err(e) => {
            // Help goes to stdout with status 0, a usage error to stderr with status 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(command, &store_url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, store_url: &str) -> Result<(), DemoError> {
    let secure = std::env::var("SESSION_COOKIE_SECURE").is_ok_and(|v| v == "1" || v == "true");
    let config = demo::session_config(secure)?;
    let (app, manager) = demo::build(store_url, config).await?;
    let shown = sessions::redact_url(store_url);
    match command {
        Command::ClearExpired => {
            let removed = manager.clear_expired().await?;
            tracing::info!(store = %shown, removed, "cleared expired sessions");
            Ok(())
        }
        Command::Serve(serve) => {
            if let Some(every) = serve.clear_every() {
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
            let addr = serve.addr;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DemoError::Listen { addr, source })?;
            tracing::info!(store = %shown, "LocalLibrary demo on http://{addr}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(DemoError::Serve)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse(s: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("demo").chain(s.split_whitespace()))
            .map(|cli| cli.into_command().0)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_commands() {
        let Ok(Command::Serve(serve)) = parse("") else {
            panic!("no arguments serves");
        };
        assert_eq!(serve.addr, SocketAddr::from(([127, 0, 0, 1], 8000)));
        assert_eq!(serve.clear_every(), None);
        assert!(matches!(parse("clear-expired"), Ok(Command::ClearExpired)));
        for line in [
            "serve --addr 127.0.0.1:9000 --clear-every 60",
            "--addr 127.0.0.1:9000 --clear-every 60",
        ] {
            let Ok(Command::Serve(serve)) = parse(line) else {
                panic!("serve with options: {line}");
            };
            assert_eq!(serve.addr.port(), 9000);
            assert_eq!(serve.clear_every(), Some(Duration::from_secs(60)));
        }
    }

    #[test]
    fn refuses_bad_command_lines_with_status_2() {
        for bad in [
            "--addr",
            "--addr nowhere",
            "--clear-every 0",
            "--clear-every -1",
            "--clear-every soon",
            "--bogus",
            "clear-expired x",
            "clear-expired --addr 127.0.0.1:9000",
            "--addr 127.0.0.1:9000 clear-expired",
        ] {
            let err = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("accepted: {bad}"));
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn every_command_has_help() {
        for line in [
            "--help",
            "serve --help",
            "clear-expired --help",
            "help serve",
        ] {
            let err = parse(line)
                .err()
                .unwrap_or_else(|| panic!("no help: {line}"));
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{line}");
            assert_eq!(err.exit_code(), 0, "{line}");
        }
    }
}
