//! CachedStore with Redis as the cache and PostgreSQL as the database. Run with
//! `SESSION_TEST_REDIS_URL` and `SESSION_TEST_POSTGRES_URL` set and `-- --include-ignored`.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use serde_json::json;
use session_cache::{CachedStore, RedisStore, SessionCache};
use session_core::conformance::Factory;
use session_core::{Data, Record, Store, async_trait};
use session_db::sqlx;
use session_db::{PostgresStore, TableName};
use time::OffsetDateTime;

use common::{delete_prefix, prefix, redis_url};

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
        .prefix(prefix(ns))
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
