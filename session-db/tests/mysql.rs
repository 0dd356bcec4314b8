//! `MySqlStore` against the server in `SESSION_TEST_MYSQL_URL`: the conformance
//! suite and the store-specific behaviours. Run with `-- --include-ignored`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use session_core::conformance::Factory;
use session_core::{Error, Store, async_trait};
use session_db::{MySqlStore, TableName};
use sqlx::{Column, Row};
use time::PrimitiveDateTime;

fn url() -> String {
    std::env::var("SESSION_TEST_MYSQL_URL").unwrap_or_else(|_| {
        panic!("SESSION_TEST_MYSQL_URL must name a MySQL or MariaDB database to run these tests")
    })
}

async fn open(table: &str) -> MySqlStore {
    let store = MySqlStore::builder()
        .with_table_name(TableName::new(table).expect("a valid table name"))
        .connect(&url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to MySQL: {e}"));
    store.migrate().await.expect("migrate");
    store
}

async fn drop_table(store: &MySqlStore) {
    let name = format!("`{}`", store.table_name());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
        .execute(store.pool())
        .await
        .expect("drop table");
}

struct MySqlFactory;

#[async_trait]
impl Factory for MySqlFactory {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(open(ns).await)
    }

    async fn cleanup(&self, ns: &str) {
        drop_table(&open(ns).await).await;
    }
}

session_core::conformance_tests!(mysql, MySqlFactory, ignore = "needs SESSION_TEST_MYSQL_URL");

async fn scan(store: &MySqlStore) -> Vec<Vec<u8>> {
    let sql = format!("SELECT * FROM `{}`", store.table_name());
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(store.pool())
        .await
        .expect("scan");
    let mut cells = Vec::new();
    for row in &rows {
        for column in row.columns() {
            let i = column.ordinal();
            let cell = if let Ok(s) = row.try_get::<String, _>(i) {
                s.into_bytes()
            } else if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
                b
            } else if let Ok(n) = row.try_get::<i64, _>(i) {
                n.to_string().into_bytes()
            } else if let Ok(t) = row.try_get::<PrimitiveDateTime, _>(i) {
                t.to_string().into_bytes()
            } else {
                panic!("column {} could not be read", column.name());
            };
            cells.push(cell);
        }
    }
    cells
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn raw_key_appears_nowhere_in_the_table() {
    let store = open(&fresh_table("t")).await;
    let key = store.create(&record("first")).await.expect("create");
    assert_key_absent(&scan(&store).await, &key);
    let mut r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).insert("more".into(), "data".into());
    store.save(&key, &r).await.expect("save");
    assert_key_absent(&scan(&store).await, &key);
    drop_table(&store).await;
}

/// The row under the hex storage id `id`, read directly.
async fn read_row(store: &MySqlStore, id: String) -> Option<RawRow> {
    let sql = format!(
        "SELECT payload, expires_at, version FROM `{}` WHERE id = ?",
        store.table_name()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .expect("read the row")?;
    Some(RawRow {
        payload: row.get(0),
        expires_at: row.get::<PrimitiveDateTime, _>(1).assume_utc(),
        version: row.get(2),
    })
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn ended_marker_row_holds_no_data() {
    let store = open(&fresh_table("e")).await;
    check_ended_marker_holds_no_data(&store, |id| read_row(&store, id)).await;
    assert_no_cell_contains(&scan(&store).await, ENDED_SECRET);
    drop_table(&store).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn garbage_payload_loads_as_none_and_is_removed() {
    let store = open(&fresh_table("t")).await;
    let good = store.create(&record("good")).await.expect("create");
    for garbage in [&b"\xff\xfe not json"[..], b"{}", b"[1,2]", b""] {
        let key = store.create(&record("soon garbage")).await.expect("create");
        let sql = format!(
            "UPDATE `{}` SET payload = ? WHERE id = ?",
            store.table_name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(garbage)
            .bind(key.storage_id().to_hex())
            .execute(store.pool())
            .await
            .expect("corrupt the row");
        assert!(store.load(&key).await.expect("load").is_none());
        let sql = format!("SELECT COUNT(*) FROM `{}` WHERE id = ?", store.table_name());
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(key.storage_id().to_hex())
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(left, 0, "the garbage row was not removed");
    }
    assert!(store.load(&good).await.expect("load").is_some());
    drop_table(&store).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn migrate_twice_and_concurrently() {
    let a = open(&fresh_table("m")).await;
    let key = a.create(&record("kept")).await.expect("create");
    a.migrate().await.expect("second migrate");
    assert!(
        a.load(&key).await.expect("load").is_some(),
        "migrate lost data"
    );
    drop_table(&a).await;

    // Several rounds: an unguarded concurrent CREATE TABLE IF NOT EXISTS fails now and then.
    for _ in 0..5 {
        let table = TableName::new(&fresh_table("m")).expect("valid");
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(
                MySqlStore::builder()
                    .with_table_name(table.clone())
                    .connect(&url())
                    .await
                    .expect("connect"),
            );
        }
        let tasks: Vec<_> = stores
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move { s.migrate().await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("concurrent migrate");
        }
        let key = stores[0].create(&record("x")).await.expect("create");
        assert!(stores[3].load(&key).await.expect("load").is_some());
        drop_table(&stores[0]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn saves_racing_a_delete_never_fail() {
    let store = open(&fresh_table("d")).await;
    check_saves_racing_a_delete_never_fail(Arc::new(store.clone())).await;
    drop_table(&store).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn two_tables_do_not_see_each_other() {
    let a = open(&fresh_table("t")).await;
    let b = open(&fresh_table("t")).await;
    check_tables_are_isolated(Arc::new(a.clone()), Arc::new(b.clone())).await;
    drop_table(&a).await;
    drop_table(&b).await;
}

#[test]
fn invalid_table_names_are_refused() {
    for bad in INVALID_TABLE_NAMES {
        assert!(TableName::new(bad).is_err(), "{bad:?} was accepted");
    }
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn clear_expired_removes_100k_expired_rows_in_batches() {
    let store = open(&fresh_table("c")).await;
    let live = create_live(&store, 5).await;
    let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
         UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
         UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let sql = format!(
        "INSERT INTO `{}` (id, payload, expires_at, version) \
         SELECT LOWER(LPAD(HEX(1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d), 64, '0')), \
                '{{}}', ?, 1 \
         FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f",
        store.table_name()
    );
    let an_hour_ago = an_hour_ago();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(PrimitiveDateTime::new(
            an_hour_ago.date(),
            an_hour_ago.time(),
        ))
        .execute(store.pool())
        .await
        .expect("bulk insert");
    let stats = store.clear_expired_in_batches().await.expect("clear");
    assert_eq!(stats.removed, 100_000);
    assert_eq!(
        stats.statements, 101,
        "1000-row batches, then one that found none"
    );
    for key in &live {
        assert!(
            store.load(key).await.expect("load").is_some(),
            "a live row went"
        );
    }
    let sql = format!("SELECT COUNT(*) FROM `{}`", store.table_name());
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(left, 5);
    drop_table(&store).await;
}

#[tokio::test]
async fn closed_port_is_a_backend_error_within_the_acquire_timeout() {
    let timeout = Duration::from_millis(500);
    let store = MySqlStore::builder()
        .with_acquire_timeout(timeout)
        .connect_lazy("mysql://root@127.0.0.1:1/test")
        .expect("a valid URL");
    let started = Instant::now();
    let got = store.load(&session_core::SessionKey::generate()).await;
    assert!(matches!(got, Err(Error::Backend { .. })), "{got:?}");
    assert!(
        started.elapsed() < timeout * 10,
        "took {:?}",
        started.elapsed()
    );
    let got = MySqlStore::builder()
        .with_acquire_timeout(timeout)
        .connect("mysql://root@127.0.0.1:1/test")
        .await;
    assert!(matches!(got, Err(Error::Backend { .. })), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn the_store_works_again_when_the_database_comes_back() {
    let direct = open(&fresh_table("r")).await;
    let options: sqlx::mysql::MySqlConnectOptions = url().parse().expect("a valid URL");
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = Proxy::start(None, &upstream).await;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(options.host("127.0.0.1").port(proxy.port()));
    let store = MySqlStore::builder()
        .with_table_name(direct.table_name().clone())
        .build(pool);
    let key = store
        .create(&record("x"))
        .await
        .expect("create through the proxy");

    let port = proxy.port();
    proxy.stop();
    let started = Instant::now();
    let got = store.load(&key).await;
    assert!(
        matches!(got, Err(Error::Backend { .. })),
        "database down: {got:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let proxy = Proxy::start(Some(port), &upstream).await;
    let got = store.load(&key).await;
    assert!(matches!(got, Ok(Some(_))), "database back: {got:?}");
    proxy.stop();
    drop_table(&direct).await;
}

/// MySQL reports changed rows unless the client asks for matched rows; a touch that sets
/// the instant already stored must still count as found.
#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn touch_and_save_with_unchanged_values_succeed() {
    let store = open(&fresh_table("u")).await;
    let r = record("same");
    let key = store.create(&r).await.expect("create");
    let at = store
        .load(&key)
        .await
        .expect("load")
        .expect("stored")
        .expires_at;
    store
        .touch(&key, at)
        .await
        .expect("touch to the stored instant");
    store.touch(&key, at).await.expect("again");
    let loaded = store.load(&key).await.expect("load").expect("stored");
    store
        .save(&key, &loaded)
        .await
        .expect("save of unchanged data");
    drop_table(&store).await;
}
