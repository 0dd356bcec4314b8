//! No write is lost and no logout is undone, through `SessionManager`, on every
//! server-side store.
//!
//! - 50 tasks each make 20 read-modify-write requests on ONE session with
//!   `Session::update` (re-applied on the freshest data at commit): every request adds one
//!   to its task's own counter and to a counter shared by all tasks. Every one of the
//!   1,000 requests succeeds the first time, with no conflict and no retry by the client,
//!   and the counters end at 20 and 1,000.
//! - The same race written with plain `get` and `insert`, 10 tasks x 20 requests: a commit
//!   whose read value changed meanwhile fails with `Error::Conflict` and stores nothing, so
//!   the request is made again, as a client would; afterwards every task's counter holds
//!   20 and the shared counter 200. (Fewer tasks than above: every request that loses the
//!   race is made again, so the work grows with the square of the tasks.)
//! - A logout (`flush`) racing with saves: once the logout has committed, the old key never
//!   loads again, whatever the concurrent requests commit.
//!
//! Embedded stores run in the default `cargo test`; the service-backed ones need
//! `SESSION_TEST_{POSTGRES,MYSQL,REDIS}_URL` and `-- --include-ignored`.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use session_core::{CookieAction, Error, SessionConfig, SessionKey, SessionManager};

use session_tests::{Kind, open};

const TASKS: u64 = 50;
const INCREMENTS: u64 = 20;
/// Tasks of the plain get/insert race.
const PLAIN_TASKS: u64 = 10;

fn manager(store: Arc<dyn session_core::Store>) -> SessionManager {
    let config = SessionConfig::builder()
        .with_conflict_retries(100)
        .build()
        .unwrap();
    SessionManager::new(store, config)
}

/// The cookie value a `Set-Cookie` header gives.
fn cookie_value(action: &CookieAction) -> String {
    let CookieAction::Set(c) = action else {
        panic!("expected a Set-Cookie, got {action:?}");
    };
    let pair = c.as_str().split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

/// Starts a session holding `seed` and returns its cookie value.
async fn new_session(manager: &SessionManager, seed: u64) -> String {
    let lazy = manager.lazy(None);
    lazy.load().await.unwrap().insert("seed", seed).unwrap();
    cookie_value(&manager.commit(&lazy, 200).await.unwrap().cookie)
}

/// One request that adds one to `own` and to `shared`; returns how many times it had to be
/// made again because its commit ran out of conflict retries.
async fn increment(manager: &SessionManager, cookie: &str, own: &str) -> u64 {
    let mut redone = 0;
    loop {
        let lazy = manager.lazy(Some(cookie));
        let session = lazy.load().await.unwrap();
        assert!(session.key().is_some(), "the session vanished");
        for field in [own, "shared"] {
            let n: u64 = session.get(field).unwrap().unwrap_or(0);
            session.insert(field, n + 1).unwrap();
        }
        match manager.commit(&lazy, 200).await {
            Ok(commit) => {
                match &commit.cookie {
                    CookieAction::Keep => {}
                    set @ CookieAction::Set(_) => assert_eq!(cookie_value(set), cookie),
                    other => panic!("the session was dropped: {other:?}"),
                }
                return redone;
            }
            Err(Error::Conflict) => redone += 1,
            Err(e) => panic!("commit failed: {e}"),
        }
    }
}

/// One request that adds one to `own` and to `shared` with `Session::update`; it must
/// succeed the first time.
async fn update_once(manager: &SessionManager, cookie: &str, own: &str) {
    let lazy = manager.lazy(Some(cookie));
    let session = lazy.load().await.unwrap();
    assert!(session.key().is_some(), "the session vanished");
    for field in [own, "shared"] {
        session
            .update(field, |n: Option<u64>| n.unwrap_or(0) + 1)
            .unwrap();
    }
    let commit = manager
        .commit(&lazy, 200)
        .await
        .unwrap_or_else(|e| panic!("a request failed: {e}"));
    assert!(commit.written && !commit.writes_dropped, "{commit:?}");
    match &commit.cookie {
        CookieAction::Keep => {}
        set @ CookieAction::Set(_) => assert_eq!(cookie_value(set), cookie),
        other => panic!("the session was dropped: {other:?}"),
    }
}

async fn updates_never_fail(kind: Kind) {
    let opened = open(kind).await;
    let manager = manager(opened.store.clone());
    let cookie = new_session(&manager, 0).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (manager, cookie) = (manager.clone(), cookie.clone());
            tokio::spawn(async move {
                let own = format!("task{t}");
                for _ in 0..INCREMENTS {
                    update_once(&manager, &cookie, &own).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let session = manager.lazy(Some(&cookie)).load().await.unwrap();
    for t in 0..TASKS {
        assert_eq!(
            session.get::<u64>(&format!("task{t}")).unwrap(),
            Some(INCREMENTS),
            "{kind:?}: task{t}"
        );
    }
    assert_eq!(
        session.get::<u64>("shared").unwrap(),
        Some(TASKS * INCREMENTS),
        "{kind:?}: lost increments"
    );
    opened
        .store
        .delete(&SessionKey::parse(&cookie).unwrap())
        .await
        .unwrap();
    opened.finish().await;
}

async fn no_lost_update(kind: Kind) {
    let opened = open(kind).await;
    let manager = manager(opened.store.clone());
    let cookie = new_session(&manager, 0).await;
    let redone = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..PLAIN_TASKS)
        .map(|t| {
            let (manager, cookie, redone) = (manager.clone(), cookie.clone(), redone.clone());
            tokio::spawn(async move {
                let own = format!("task{t}");
                for _ in 0..INCREMENTS {
                    let r = increment(&manager, &cookie, &own).await;
                    redone.fetch_add(r, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let session = manager.lazy(Some(&cookie)).load().await.unwrap();
    let mut wrong = Vec::new();
    for t in 0..PLAIN_TASKS {
        let n: Option<u64> = session.get(&format!("task{t}")).unwrap();
        if n != Some(INCREMENTS) {
            wrong.push(format!("task{t}={n:?}"));
        }
    }
    let shared: Option<u64> = session.get("shared").unwrap();
    assert!(
        wrong.is_empty() && shared == Some(PLAIN_TASKS * INCREMENTS),
        "{kind:?}: lost updates: shared counter = {shared:?} (want {}), per-task counters off: {wrong:?}; \
         {} requests were made again after running out of conflict retries",
        PLAIN_TASKS * INCREMENTS,
        redone.load(Ordering::Relaxed),
    );
    opened
        .store
        .delete(&SessionKey::parse(&cookie).unwrap())
        .await
        .unwrap();
    opened.finish().await;
}

/// Writers keep saving while one request logs out; after the logout's commit the old key
/// must never load again.
async fn logout_is_final(kind: Kind) {
    const ROUNDS: u64 = 10;
    const WRITERS: u64 = 8;
    let opened = open(kind).await;
    let store = opened.store.clone();
    let manager = manager(store.clone());
    let resurrected = Arc::new(AtomicU64::new(0));
    let dropped_by_logout = Arc::new(AtomicU64::new(0));
    for round in 0..ROUNDS {
        let cookie = new_session(&manager, round).await;
        let old = SessionKey::parse(&cookie).unwrap();
        let logged_out = Arc::new(AtomicBool::new(false));
        let writers_done = Arc::new(AtomicU64::new(0));

        let mut tasks = Vec::new();
        {
            // One request certain to race: loaded before the logout, committed after it.
            // Its save must be dropped, never bring the session back.
            let lazy = manager.lazy(Some(&cookie));
            lazy.load().await.unwrap().insert("late", 1).unwrap();
            let (manager, flag, dropped) = (
                manager.clone(),
                logged_out.clone(),
                dropped_by_logout.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !flag.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                let commit = manager.commit(&lazy, 200).await.unwrap();
                // Dropped, and without a Set-Cookie that would undo the logout's removal.
                assert!(
                    commit.writes_dropped && commit.cookie == CookieAction::Keep,
                    "a save that met the logout must be dropped: {commit:?}"
                );
                dropped.fetch_add(1, Ordering::Relaxed);
            }));
        }
        for w in 0..WRITERS {
            let (manager, cookie, old) = (manager.clone(), cookie.clone(), old.clone());
            let (done, dropped) = (writers_done.clone(), dropped_by_logout.clone());
            tasks.push(tokio::spawn(async move {
                let field = format!("w{w}");
                for _ in 0..50 {
                    let lazy = manager.lazy(Some(&cookie));
                    let session = lazy.load().await.unwrap();
                    let had_old_key = session.key().is_some();
                    let n: u64 = session.get(&field).unwrap().unwrap_or(0);
                    session.insert(&field, n + 1).unwrap();
                    match manager.commit(&lazy, 200).await {
                        Ok(commit) => match &commit.cookie {
                            set @ CookieAction::Set(_) => {
                                let key = cookie_value(set);
                                if had_old_key {
                                    assert_eq!(key, cookie, "a save moved the session");
                                } else {
                                    // Loaded after the logout: a fresh session, never the old key.
                                    assert_ne!(SessionKey::parse(&key).unwrap(), old);
                                    break;
                                }
                            }
                            CookieAction::Keep if commit.writes_dropped => {
                                // Ended meanwhile (or loaded just after the logout): the
                                // save was dropped, not resurrected, and no cookie is set.
                                dropped.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            // Saved under the key the browser holds: no new cookie needed.
                            CookieAction::Keep if commit.written && had_old_key => {}
                            other => panic!("unexpected cookie action {other:?}"),
                        },
                        Err(Error::Conflict) => {}
                        Err(e) => panic!("commit failed: {e}"),
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        {
            let (manager, cookie, flag) = (manager.clone(), cookie.clone(), logged_out.clone());
            tasks.push(tokio::spawn(async move {
                // Let the writers get going first.
                for _ in 0..(round % 4) * 8 {
                    tokio::task::yield_now().await;
                }
                let lazy = manager.lazy(Some(&cookie));
                lazy.load().await.unwrap().flush();
                let commit = manager.commit(&lazy, 200).await.unwrap();
                assert!(
                    matches!(commit.cookie, CookieAction::Remove(_)),
                    "logout must remove the cookie: {:?}",
                    commit.cookie
                );
                flag.store(true, Ordering::SeqCst);
            }));
        }
        {
            // Watches the old key from the moment the logout committed.
            let (store, old, flag, done) = (
                store.clone(),
                old.clone(),
                logged_out.clone(),
                writers_done.clone(),
            );
            let resurrected = resurrected.clone();
            tasks.push(tokio::spawn(async move {
                while !flag.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                while done.load(Ordering::SeqCst) < WRITERS {
                    if store.load(&old).await.unwrap().is_some() {
                        resurrected.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            store.load(&old).await.unwrap().is_none(),
            "{kind:?}: round {round}: the logged-out session loads again"
        );
        let after = manager.lazy(Some(&cookie)).load().await.unwrap();
        assert!(after.key().is_none() && after.is_empty());
    }
    assert_eq!(
        resurrected.load(Ordering::Relaxed),
        0,
        "{kind:?}: the old key loaded again after the logout committed"
    );
    // The race is real: saves met the logout and were dropped (at least the one planted
    // each round).
    assert!(
        dropped_by_logout.load(Ordering::Relaxed) > 0,
        "{kind:?}: no save ever raced the logout"
    );
    opened.finish().await;
}

/// The smallest lost update: two requests of one browser read the same counter, both add
/// one, and commit one after the other. The second commit must either report the conflict
/// (nothing stored; the client makes the request again) or store 2; a silent 1 loses a write.
#[tokio::test]
async fn two_overlapping_increments_of_one_key_both_count() {
    let manager = manager(Arc::new(session_core::MemoryStore::new()));
    let cookie = new_session(&manager, 0).await;
    let (a, b) = (manager.lazy(Some(&cookie)), manager.lazy(Some(&cookie)));
    for lazy in [&a, &b] {
        let session = lazy.load().await.unwrap();
        let n: u64 = session.get("n").unwrap().unwrap_or(0);
        session.insert("n", n + 1).unwrap();
    }
    manager.commit(&a, 200).await.unwrap();
    let second = manager.commit(&b, 200).await;
    let session = manager.lazy(Some(&cookie)).load().await.unwrap();
    let n: u64 = session.get("n").unwrap().unwrap();
    assert!(
        matches!(second, Err(Error::Conflict)) || n == 2,
        "the second commit answered {second:?} and the counter holds {n}: \
         its re-applied change was computed from a value another request had replaced"
    );
}

/// Two requests that change different keys both keep their writes (the re-apply the
/// manager does on `Conflict`).
#[tokio::test]
async fn overlapping_writes_to_different_keys_both_land() {
    let manager = manager(Arc::new(session_core::MemoryStore::new()));
    let cookie = new_session(&manager, 0).await;
    let (a, b) = (manager.lazy(Some(&cookie)), manager.lazy(Some(&cookie)));
    a.load().await.unwrap().insert("a", 1).unwrap();
    b.load().await.unwrap().insert("b", 2).unwrap();
    manager.commit(&a, 200).await.unwrap();
    manager.commit(&b, 200).await.unwrap();
    let session = manager.lazy(Some(&cookie)).load().await.unwrap();
    assert_eq!(session.get::<u64>("a").unwrap(), Some(1));
    assert_eq!(session.get::<u64>("b").unwrap(), Some(2));
}

macro_rules! stores {
    ($($name:ident: $kind:expr $(, ignore = $why:literal)?;)*) => {
        mod lost_update {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                $(#[ignore = $why])?
                async fn $name() {
                    no_lost_update($kind).await;
                }
            )*
        }
        mod update_race {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                $(#[ignore = $why])?
                async fn $name() {
                    updates_never_fail($kind).await;
                }
            )*
        }
        mod logout_race {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                $(#[ignore = $why])?
                async fn $name() {
                    logout_is_final($kind).await;
                }
            )*
        }
    };
}

stores! {
    memory: Kind::Memory;
    moka: Kind::Moka;
    sqlite_memory: Kind::SqliteMemory;
    sqlite_file: Kind::SqliteFile;
    file: Kind::File;
    cached_moka_sqlite: Kind::CachedMokaSqlite;
    postgres: Kind::Postgres, ignore = "needs SESSION_TEST_POSTGRES_URL";
    mysql: Kind::MySql, ignore = "needs SESSION_TEST_MYSQL_URL";
    redis: Kind::Redis, ignore = "needs SESSION_TEST_REDIS_URL";
    redis_cluster: Kind::RedisCluster, ignore = "needs SESSION_TEST_REDIS_CLUSTER_URLS";
    cached_redis_postgres: Kind::CachedRedisPostgres,
        ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL";
}
