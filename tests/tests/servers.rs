//! Fault injection against real servers: each test starts its own private server
//! (redis-server, PostgreSQL, MariaDB) on a spare loopback port, then kills it and
//! freezes it (SIGSTOP) in the middle of a run, and checks that
//!
//! - every store operation fails with `Error::Backend` or `Error::Timeout`, and within
//!   the store's configured time limit (plus a margin for scheduling);
//! - nothing panics;
//! - no session is ever reported absent (`Ok(None)`) while its store is unreachable,
//!   neither by the store nor through `SessionManager` (a load error, never an empty
//!   session);
//! - the same store value works again once the server is back on the same port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use session_cache::RedisStore;
use session_core::{Error, Record, SessionConfig, SessionKey, SessionManager, Store};
use session_db::{MySqlStore, PostgresStore};
use session_tests::Server;
use time::OffsetDateTime;

/// Scheduling slack allowed over a store's configured limit.
const MARGIN: Duration = Duration::from_millis(1500);

/// A store on a private server, and how long one of its operations may take when the
/// server is unreachable.
struct Fixture {
    server: Server,
    store: Arc<dyn Store>,
    limit: Duration,
    /// Whether sessions survive a restart (not for Redis without persistence).
    persistent: bool,
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

fn record(n: u64) -> Record {
    let mut data = session_core::Data::new();
    data.insert("n".into(), n.into());
    Record::new(data, in_an_hour())
}

fn is_unreachable(e: &Error) -> bool {
    matches!(e, Error::Backend { .. } | Error::Timeout { .. })
}

/// Runs `op`, failing the test if it takes longer than `limit` + [`MARGIN`].
async fn bounded<T>(
    what: &str,
    limit: Duration,
    op: impl Future<Output = session_core::Result<T>>,
) -> session_core::Result<T> {
    let started = Instant::now();
    match tokio::time::timeout(limit + MARGIN * 4, op).await {
        Ok(result) => {
            let took = started.elapsed();
            assert!(
                took <= limit + MARGIN,
                "{what} took {took:?}, the configured limit is {limit:?}"
            );
            result
        }
        Err(_) => panic!(
            "{what} still had no answer after {:?} (the configured limit is {limit:?})",
            limit + MARGIN * 4
        ),
    }
}

/// Every operation fails as unreachable, within the limit; `key` is a stored session.
async fn assert_every_op_fails(fx: &Fixture, key: &SessionKey, state: &str) {
    let (store, limit) = (&fx.store, fx.limit);
    let mut saved = record(7);
    saved.version = 1;
    let results: Vec<(&str, session_core::Result<()>)> = vec![
        (
            "create",
            bounded("create", limit, store.create(&record(1)))
                .await
                .map(drop),
        ),
        (
            "load",
            match bounded("load", limit, store.load(key)).await {
                Ok(None) => {
                    panic!("{state}: load answered Ok(None) while the store is unreachable")
                }
                other => other.map(drop),
            },
        ),
        (
            "save",
            bounded("save", limit, store.save(key, &saved))
                .await
                .map(drop),
        ),
        (
            "touch",
            bounded("touch", limit, store.touch(key, in_an_hour()))
                .await
                .map(drop),
        ),
        ("delete", bounded("delete", limit, store.delete(key)).await),
    ];
    let mut results = results;
    let cleared = bounded("clear_expired", limit, store.clear_expired()).await;
    if store.capabilities().expires_by_itself {
        // Nothing to do, no I/O (Redis expires sessions itself).
        assert_eq!(
            cleared.ok(),
            Some(0),
            "{state}: clear_expired of a self-expiring store"
        );
    } else {
        results.push(("clear_expired", cleared.map(drop)));
    }
    for (op, result) in results {
        match result {
            Err(e) if is_unreachable(&e) => {}
            other => panic!("{state}: {op} answered {other:?}, expected Backend or Timeout"),
        }
    }
    // Through the manager: a load error, never a fresh empty session.
    let manager = SessionManager::new(
        Arc::clone(store),
        SessionConfig::builder().build().expect("config"),
    );
    let lazy = manager.lazy(Some(key.as_str()));
    match bounded("manager load", limit, lazy.load()).await {
        Err(e) if is_unreachable(&e) => {}
        Err(e) => panic!("{state}: manager load failed with {e:?}, expected Backend or Timeout"),
        Ok(_) => panic!("{state}: the manager handed out a session while the store is unreachable"),
    }
}

/// `expected`: the `n` of `key`'s session, checked when the medium persists it.
/// Waits until the store answers again (the first operations after a restart may still
/// meet a connection that died with the old server), then checks every operation.
async fn assert_works_again(fx: &Fixture, key: &SessionKey, expected: Option<u64>) {
    let store = &fx.store;
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        match bounded("create after restart", fx.limit, store.create(&record(3))).await {
            Ok(created) => break created,
            Err(e) if is_unreachable(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not work again after the server came back: {e:?}"),
        }
    };
    let loaded = store
        .load(&created)
        .await
        .expect("load")
        .expect("just created");
    store.save(&created, &loaded).await.expect("save");
    store.touch(&created, in_an_hour()).await.expect("touch");
    store.clear_expired().await.expect("clear_expired");
    store.delete(&created).await.expect("delete");
    assert_eq!(store.load(&created).await.expect("load"), None);
    let old = store.load(key).await.expect("load of the older session");
    let n = old
        .as_ref()
        .and_then(|r| r.data.get("n"))
        .and_then(serde_json_u64);
    if fx.persistent
        && let Some(expected) = expected
    {
        assert_eq!(n, Some(expected), "the session stored before the fault");
    }
}

fn serde_json_u64(v: &session_core::serde_json::Value) -> Option<u64> {
    v.as_u64()
}

/// Stored key and its `n`, through a server kill, a restart, a freeze and a thaw.
async fn kill_and_pause(mut fx: Fixture) {
    let key = fx.store.create(&record(1)).await.expect("create");
    assert!(fx.store.load(&key).await.expect("load").is_some());

    fx.server.kill();
    assert_every_op_fails(&fx, &key, "killed").await;
    // Twice: a second round must not hang on state left by the first.
    assert_every_op_fails(&fx, &key, "killed, second round").await;

    fx.server.start().expect("restart");
    assert_works_again(&fx, &key, Some(1)).await;

    fx.server.pause();
    assert_every_op_fails(&fx, &key, "stopped (SIGSTOP)").await;
    fx.server.resume();
    assert_works_again(&fx, &key, Some(1)).await;
}

/// Eight tasks run load / save loops on their own sessions; the server is killed (or
/// frozen) in the middle. Every operation in flight or started afterwards ends within
/// the limit, with a result or an unreachable error, never `Ok(None)` for a session that
/// exists, and no task panics.
async fn fault_mid_run(mut fx: Fixture, freeze: bool) {
    let mut keys = Vec::new();
    for i in 0..8 {
        keys.push(fx.store.create(&record(i)).await.expect("create"));
    }
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for key in keys.clone() {
        let (store, limit) = (Arc::clone(&fx.store), fx.limit);
        let (down, stop) = (Arc::clone(&down), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u32;
            while !stop.load(Ordering::SeqCst) {
                match bounded("load", limit, store.load(&key)).await {
                    Ok(Some(mut rec)) => {
                        let n = rec.data.get("n").and_then(serde_json_u64).unwrap_or(0);
                        std::sync::Arc::make_mut(&mut rec.data).insert("n".into(), (n + 1).into());
                        match bounded("save", limit, store.save(&key, &rec)).await {
                            Ok(_) => {}
                            Err(e) if is_unreachable(&e) => failures += 1,
                            Err(e) => panic!("save answered {e:?}"),
                        }
                    }
                    Ok(None) => panic!(
                        "an existing session loaded as absent (server down: {})",
                        down.load(Ordering::SeqCst)
                    ),
                    Err(e) if is_unreachable(&e) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("load answered {e:?}"),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    down.store(true, Ordering::SeqCst);
    if freeze {
        fx.server.pause();
    } else {
        fx.server.kill();
    }
    // Long enough for every task to meet the fault at least once.
    tokio::time::sleep(fx.limit * 2 + MARGIN).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = 0;
    for task in tasks {
        failures += task.await.expect("a task panicked");
    }
    assert!(
        failures >= 8,
        "only {failures} operations failed while the server was down"
    );
    if freeze {
        fx.server.resume();
    } else {
        fx.server.start().expect("restart");
    }
    down.store(false, Ordering::SeqCst);
    // The same store works again; sessions are intact where the medium persists them.
    assert_works_again(&fx, &keys[0], None).await;
    if fx.persistent {
        for key in &keys {
            assert!(
                fx.store.load(key).await.expect("load").is_some(),
                "a session was lost by the fault"
            );
        }
    }
}

fn redis_fixture() -> Fixture {
    let server = Server::redis().expect("start redis-server");
    let (connect, response) = (Duration::from_millis(300), Duration::from_millis(300));
    let store = RedisStore::builder()
        .with_connect_timeout(connect)
        .with_response_timeout(response)
        .connect_lazy(&server.url())
        .expect("redis store");
    Fixture {
        server,
        store: Arc::new(store),
        limit: connect + response,
        persistent: false,
    }
}

async fn postgres_fixture() -> Fixture {
    let server = Server::postgres().expect("start postgres");
    let limit = Duration::from_secs(1);
    let store = PostgresStore::builder()
        .with_acquire_timeout(limit)
        .connect_lazy(&server.url())
        .expect("postgres store");
    store.migrate().await.expect("migrate");
    Fixture {
        server,
        store: Arc::new(store),
        limit,
        persistent: true,
    }
}

async fn mariadb_fixture() -> Fixture {
    let server = Server::mariadb().expect("start mariadbd");
    let limit = Duration::from_secs(1);
    let store = MySqlStore::builder()
        .with_acquire_timeout(limit)
        .connect_lazy(&server.url())
        .expect("mysql store");
    store.migrate().await.expect("migrate");
    Fixture {
        server,
        store: Arc::new(store),
        limit,
        persistent: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn redis_killed_and_frozen() {
    kill_and_pause(redis_fixture()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn redis_killed_mid_run() {
    fault_mid_run(redis_fixture(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn redis_frozen_mid_run() {
    fault_mid_run(redis_fixture(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn postgres_killed_and_frozen() {
    kill_and_pause(postgres_fixture().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn postgres_killed_mid_run() {
    fault_mid_run(postgres_fixture().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn postgres_frozen_mid_run() {
    fault_mid_run(postgres_fixture().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn mariadb_killed_and_frozen() {
    kill_and_pause(mariadb_fixture().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn mariadb_killed_mid_run() {
    fault_mid_run(mariadb_fixture().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts private servers (redis-server, initdb/postgres, mariadbd)"]
async fn mariadb_frozen_mid_run() {
    fault_mid_run(mariadb_fixture().await, true).await;
}
