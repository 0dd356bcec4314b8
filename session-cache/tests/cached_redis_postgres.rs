//! CachedStore with Redis as the cache and PostgreSQL as the database. Run with
//! `SESSION_TEST_REDIS_URL` and `SESSION_TEST_POSTGRES_URL` set and `-- --include-ignored`.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use session_cache::{CachedStore, RedisStore, SessionCache};
use session_core::conformance::Factory;
use session_core::{CookieAction, Data, Lookup, Record, SessionKey, Store, async_trait};
use session_db::sqlx;
use session_db::{PostgresStore, TableName};
use time::OffsetDateTime;

use common::browse::{login, logout, manager, user};
use common::{delete_prefix, node, prefix, redis_prefix, redis_url};

fn postgres_url() -> String {
    std::env::var("SESSION_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "SESSION_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
        )
    })
}

async fn postgres(ns: &str) -> PostgresStore {
    let store = PostgresStore::builder()
        .with_table_name(TableName::new(ns).expect("a valid table name"))
        .connect(&postgres_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", postgres_url()));
    store.migrate().await.expect("migrate");
    store
}

async fn redis(ns: &str) -> RedisStore {
    RedisStore::builder()
        .with_prefix(redis_prefix(ns))
        .connect(&redis_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redis_url()))
}

async fn store(ns: &str) -> CachedStore<RedisStore, PostgresStore> {
    CachedStore::new(redis(ns).await, postgres(ns).await)
}

async fn cleanup(ns: &str) {
    let db = postgres(ns).await;
    let sql = format!("DROP TABLE IF EXISTS \"{}\"", db.table_name());
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(db.pool())
        .await
        .expect("drop table");
    delete_prefix(&[redis_url()], &prefix(ns)).await;
}

struct RedisOverPostgres;

#[async_trait]
impl Factory for RedisOverPostgres {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(store(ns).await)
    }
    async fn cleanup(&self, ns: &str) {
        cleanup(ns).await;
    }
}

session_core::conformance_tests!(
    cached_redis_postgres,
    RedisOverPostgres,
    ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL"
);

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL"]
async fn serves_correct_data_when_redis_is_flushed_behind_its_back() {
    let ns = session_core::conformance::fresh_namespace();
    let store = store(&ns).await;
    let mut data = Data::new();
    data.insert("v".into(), json!(1));
    let key = store
        .create(&Record::new(
            data,
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
        .await
        .unwrap();
    for v in 2..=4 {
        let mut r = store.load(&key).await.unwrap().unwrap();
        Arc::make_mut(&mut r.data).insert("v".into(), json!(v));
        store.save(&key, &r).await.unwrap();
        assert!(
            store
                .cache()
                .get(&key.storage_id())
                .await
                .unwrap()
                .is_some()
        );
        delete_prefix(&[redis_url()], &prefix(&ns)).await;
        let back = store.load(&key).await.unwrap().unwrap();
        assert_eq!((back.version, back.data["v"].clone()), (v, json!(v)));
    }
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    cleanup(&ns).await;
}

/// The scenario on a Redis cache: a logout ends the session in PostgreSQL and
/// tombstones the Redis copy, then a Redis failover or snapshot restore brings the old
/// copy back (with its TTL, which Redis keeps as an absolute instant). Requests through
/// the manager are served that revived copy only until the staleness bound since it was
/// filled, then get the database's answer: ended. The same holds for a session ended in
/// the database directly, behind the cache's back.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL"]
async fn a_revived_redis_copy_of_a_logged_out_session_lives_at_most_max_staleness() {
    let ns = session_core::conformance::fresh_namespace();
    let bound = Duration::from_secs(3);
    let store = store(&ns).await.with_max_staleness(bound);
    let m = manager(store.clone());
    let mut con = node(&redis_url()).await;

    let filled = Instant::now();
    let cookie = login(&m, "ada").await;
    let behind = login(&m, "bob").await;
    let key = SessionKey::parse(&cookie).unwrap();
    let redis_key = store.cache().redis_key(&key);
    let copy: Vec<u8> = redis::AsyncCommands::get(&mut con, &redis_key)
        .await
        .unwrap();
    let dies_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&redis_key)
        .query_async(&mut con)
        .await
        .unwrap();
    let pttl: i64 = redis::AsyncCommands::pttl(&mut con, &redis_key)
        .await
        .unwrap();
    assert!(
        (1..=3_000).contains(&pttl),
        "the cached copy lives {pttl} ms, not the staleness bound"
    );

    let commit = logout(&m, &cookie).await.unwrap();
    assert!(matches!(commit.cookie, CookieAction::Remove(_)));
    assert_eq!(user(&m, &cookie).await, None);
    // The failover: the copy from before the logout is back, expiring when it did.
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&copy)
        .arg("PXAT")
        .arg(dies_at)
        .query_async(&mut con)
        .await
        .unwrap();
    // Ended in the database directly, behind the cache's back.
    let bob = SessionKey::parse(&behind).unwrap();
    let remember = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    store.db().end(&bob, 1, remember).await.unwrap();
    assert_eq!(
        user(&m, &cookie).await.as_deref(),
        Some("ada"),
        "the revived copy is expected to be served within the bound"
    );
    assert_eq!(user(&m, &behind).await.as_deref(), Some("bob"));
    assert!(
        filled.elapsed() < bound,
        "too slow to observe the revived copy"
    );

    tokio::time::sleep(bound.saturating_sub(filled.elapsed()) + Duration::from_millis(200)).await;
    assert_eq!(
        user(&m, &cookie).await,
        None,
        "a revived copy of a logged-out session was served past max_staleness"
    );
    assert_eq!(user(&m, &behind).await, None);
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
    cleanup(&ns).await;
}
