//! The load test of `examples/load.rs` in short mode: the demo under 64 concurrent
//! clients, each with its own cookie jar, against SQLite, PostgreSQL and Redis; no error,
//! and every client's visit counter equals its successful requests. `LOAD_SECONDS` sets
//! the duration per store (default 5 here; the example defaults to 60).

// The example's `main` is not used here, only its load generator.
#[allow(dead_code)]
#[path = "../examples/load.rs"]
mod load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SESSION_TEST_POSTGRES_URL and SESSION_TEST_REDIS_URL"]
async fn the_demo_under_64_clients_loses_no_visit() {
    let seconds = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let stores = ["sqlite", "postgres", "redis"].map(String::from);
    assert!(
        load::run_all(&stores, seconds, 64).await,
        "the load run had errors"
    );
}
