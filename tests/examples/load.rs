//! Load test: the demo app (LocalLibrary visit counter) served on a loopback port, under
//! concurrent clients that each keep their own cookie jar and request `/` in a loop.
//!
//! Checks: zero errors (transport errors, non-200 answers, pages without a counter) and,
//! for every client, that each page shows the number of that client's successful
//! requests so far (`You have visited this page N times`): a lost update, a session
//! mixed up with another client's or an unwanted new session would break the count.
//! Prints requests per second and latency percentiles per store; exits non-zero on any
//! error.
//!
//! ```text
//! SESSION_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379/ \
//! LOAD_SECONDS=60 cargo run --release -p session-tests --example load -- sqlite postgres redis
//! ```
//!
//! Environment: `LOAD_SECONDS` (default 60), `LOAD_CLIENTS` (default 64). Stores (the
//! arguments; default all three): `sqlite` (a file in a temporary directory), `postgres`
//! (`SESSION_TEST_POSTGRES_URL`, a table of its own, dropped afterwards), `redis`
//! (`SESSION_TEST_REDIS_URL`, a key prefix of its own, removed afterwards).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_tests::stores::{Namespace, Service, drop_postgres, postgres, remove_redis_keys};

/// What one client did.
#[derive(Debug, Default)]
struct ClientRun {
    ok: u64,
    errors: Vec<String>,
    latencies_us: Vec<u32>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// The visit count a home page shows.
fn visits(page: &str) -> Option<u64> {
    let rest = page.split("You have visited this page ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

async fn client(base: Arc<str>, until: Instant) -> ClientRun {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(1)
        .build()
        .expect("http client");
    let mut run = ClientRun::default();
    while Instant::now() < until {
        let started = Instant::now();
        let answer = http.get(&*base).send().await;
        let outcome = match answer {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(body) => match visits(&body) {
                    Some(n) if n == run.ok + 1 => Ok(()),
                    Some(n) => Err(format!(
                        "counter says {n} after {} successful requests",
                        run.ok
                    )),
                    None => Err("a page without a visit counter".to_owned()),
                },
                Err(e) => Err(format!("body: {e}")),
            },
            Ok(response) => Err(format!("status {}", response.status())),
            Err(e) => Err(format!("request: {e}")),
        };
        let took = started.elapsed();
        run.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        match outcome {
            Ok(()) => run.ok += 1,
            Err(e) => {
                run.errors.push(e);
                // The count can no longer be followed: stop this client.
                break;
            }
        }
    }
    run
}

/// The `p`th percentile (nearest rank) of `sorted` microseconds, in milliseconds.
fn percentile(sorted: &[u32], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100);
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Runs the load against `store_url`; true when there was no error.
async fn run(label: &str, store_url: &str, seconds: u64, clients: u64) -> bool {
    let config = demo::session_config(false).expect("config");
    let (router, _manager) = demo::build(store_url, config)
        .await
        .expect("build the demo");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let base: Arc<str> = format!("http://{addr}/").into();

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(Arc::clone(&base), until)))
        .collect();
    let mut ok = 0;
    let mut errors = Vec::new();
    let mut latencies = Vec::new();
    let mut min_ok = u64::MAX;
    for task in tasks {
        let run = task.await.expect("a client panicked");
        ok += run.ok;
        min_ok = min_ok.min(run.ok);
        errors.extend(run.errors);
        latencies.extend(run.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    latencies.sort_unstable();
    println!(
        "{label:<9} {clients} clients, {elapsed:.1} s: {ok} requests ({:.0} req/s), \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; fewest per client {min_ok}; errors {}",
        ok as f64 / elapsed,
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        percentile(&latencies, 100),
        errors.len()
    );
    for e in errors.iter().take(10) {
        println!("  error: {e}");
    }
    errors.is_empty() && ok > 0
}

#[tokio::main]
async fn main() {
    let seconds = env_u64("LOAD_SECONDS", 60);
    let clients = env_u64("LOAD_CLIENTS", 64);
    let mut stores: Vec<String> = std::env::args().skip(1).collect();
    if stores.is_empty() {
        stores = vec!["sqlite".into(), "postgres".into(), "redis".into()];
    }
    if !run_all(&stores, seconds, clients).await {
        std::process::exit(1);
    }
}

/// Runs the load against each named store (`sqlite`, `postgres`, `redis`) in turn; true
/// when every run had no error and every visit counter matched.
pub(crate) async fn run_all(stores: &[String], seconds: u64, clients: u64) -> bool {
    // One namespace for this run's table and key prefix.
    let ns = Namespace::fresh("load");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut all_ok = true;
    for store in stores {
        let ok = match store.as_str() {
            "sqlite" => {
                let path = tmp.path().join("sessions.sqlite3");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                run("sqlite", &url, seconds, clients).await
            }
            "postgres" => {
                let base = Service::Postgres.require();
                let url = ns.url_for(Service::Postgres, &base);
                let ok = run("postgres", &url, seconds, clients).await;
                drop_postgres(postgres(&base, &ns).await).await;
                ok
            }
            "redis" => {
                let base = Service::Redis.require();
                let url = ns.url_for(Service::Redis, &base);
                let ok = run("redis", &url, seconds, clients).await;
                remove_redis_keys(base, ns.redis_prefix()).await;
                ok
            }
            other => panic!("unknown store {other:?} (sqlite, postgres, redis)"),
        };
        all_ok &= ok;
    }
    all_ok
}
