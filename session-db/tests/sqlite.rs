//! `SqliteStore`: the conformance suite on an in-memory and on a WAL file database, and
//! the store-specific behaviours.

mod common;

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::*;
use session_core::conformance::Factory;
use session_core::{Error, Store, async_trait, from_unix_millis, unix_millis};
use session_db::{SqliteStore, TableName};
use sqlx::{Column, Row};

/// A named in-memory database per namespace: two stores on one namespace share it, and
/// tests never contend for one database's schema lock (shared-cache table locks are not
/// covered by the busy timeout). It lives as long as a store on it is open.
fn memory_url(ns: &str) -> String {
    format!("sqlite:file:session_db_{ns}?mode=memory&cache=shared")
}

static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));

/// One WAL database file in a temporary directory; a namespace is a table in it.
fn file_url(_ns: &str) -> String {
    format!("sqlite://{}", DIR.path().join("sessions.db").display())
}

async fn open(url: &str, table: &str) -> SqliteStore {
    let store = SqliteStore::builder()
        .with_table_name(TableName::new(table).expect("a valid table name"))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    store.migrate().await.expect("migrate");
    store
}

struct SqliteFactory {
    url: fn(&str) -> String,
}

#[async_trait]
impl Factory for SqliteFactory {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(open(&(self.url)(ns), ns).await)
    }

    async fn cleanup(&self, ns: &str) {
        let store = open(&(self.url)(ns), ns).await;
        drop_table(&store).await;
    }
}

/// Drops the namespace's table. Every test of the process shares one in-memory database
/// (shared cache), where a DROP waits for the schema lock other tests hold for a moment
/// (SQLITE_LOCKED_SHAREDCACHE, which no busy timeout covers): retry while it says locked.
async fn drop_table(store: &SqliteStore) {
    let sql = format!("DROP TABLE IF EXISTS \"{}\"", store.table_name());
    for _ in 0..100 {
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(store.pool())
            .await
        {
            Ok(_) => return,
            Err(e) if e.to_string().contains("locked") => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("drop table: {e}"),
        }
    }
    panic!("drop table: the schema stayed locked for 2 s");
}

session_core::conformance_tests!(sqlite_memory, SqliteFactory { url: memory_url });

session_core::conformance_tests!(sqlite_file_wal, SqliteFactory { url: file_url });

async fn file_store() -> SqliteStore {
    open(&file_url(""), &fresh_table("t")).await
}

#[tokio::test]
async fn file_database_runs_in_wal_mode() {
    let store = file_store().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    drop_table(&store).await;
}

#[tokio::test]
async fn sqlite_memory_url_keeps_its_data_across_operations() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let key = store.create(&record("x")).await.expect("create");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.load(&key).await.expect("load").is_some());
}

/// Every column of every row, as bytes.
async fn scan(store: &SqliteStore) -> Vec<Vec<u8>> {
    let sql = format!("SELECT * FROM \"{}\"", store.table_name());
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
            } else {
                panic!("column {} could not be read", column.name());
            };
            cells.push(cell);
        }
    }
    cells
}

#[tokio::test]
async fn raw_key_appears_nowhere_in_the_table() {
    let store = file_store().await;
    let key = store.create(&record("first")).await.expect("create");
    assert_key_absent(&scan(&store).await, &key);
    let mut r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).insert("k".into(), key.as_str().into());
    store.save(&key, &r).await.expect("save");
    // The key was put into the data on purpose: it must then appear in the payload only.
    let cells = scan(&store).await;
    let needle = key.as_str().as_bytes();
    let hits = cells
        .iter()
        .filter(|c| c.windows(needle.len()).any(|w| w == needle))
        .count();
    assert_eq!(
        hits, 1,
        "the key must appear in the payload it was put in, nowhere else"
    );
    r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).remove("k");
    store.save(&key, &r).await.expect("save");
    assert_key_absent(&scan(&store).await, &key);
    drop_table(&store).await;
}

/// The row under the hex storage id `id`, read directly.
async fn read_row(store: &SqliteStore, id: String) -> Option<RawRow> {
    let sql = format!(
        "SELECT payload, expires_at, version FROM \"{}\" WHERE id = ?1",
        store.table_name()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .expect("read the row")?;
    Some(RawRow {
        payload: row.get(0),
        expires_at: from_unix_millis(row.get(1)).expect("a representable instant"),
        version: row.get(2),
    })
}

#[tokio::test]
async fn ended_marker_row_holds_no_data() {
    let store = file_store().await;
    check_ended_marker_holds_no_data(&store, |id| read_row(&store, id)).await;
    assert_no_cell_contains(&scan(&store).await, ENDED_SECRET);
    drop_table(&store).await;
}

#[tokio::test]
async fn garbage_payload_loads_as_none_and_is_removed() {
    let store = file_store().await;
    let good = store.create(&record("good")).await.expect("create");
    for garbage in [&b"\xff\xfe not json"[..], b"{}", b"[1,2]", b""] {
        let key = store.create(&record("soon garbage")).await.expect("create");
        let sql = format!(
            "UPDATE \"{}\" SET payload = ?1 WHERE id = ?2",
            store.table_name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(garbage)
            .bind(key.storage_id().to_hex())
            .execute(store.pool())
            .await
            .expect("corrupt the row");
        assert!(store.load(&key).await.expect("load").is_none());
        let sql = format!(
            "SELECT COUNT(*) FROM \"{}\" WHERE id = ?1",
            store.table_name()
        );
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
async fn migrate_twice_and_concurrently() {
    let table = fresh_table("m");
    let a = open(&file_url(""), &table).await;
    a.migrate().await.expect("second migrate");
    let key = a.create(&record("kept")).await.expect("create");
    a.migrate().await.expect("third migrate");
    assert!(
        a.load(&key).await.expect("load").is_some(),
        "migrate lost data"
    );

    let fresh = fresh_table("m");
    let b = SqliteStore::builder()
        .with_table_name(TableName::new(&fresh).expect("valid"))
        .connect(&file_url(""))
        .await
        .expect("open");
    let c = SqliteStore::builder()
        .with_table_name(TableName::new(&fresh).expect("valid"))
        .connect(&file_url(""))
        .await
        .expect("open");
    let (rb, rc) = tokio::join!(b.migrate(), c.migrate());
    rb.expect("concurrent migrate b");
    rc.expect("concurrent migrate c");
    let key = b.create(&record("x")).await.expect("create");
    assert!(c.load(&key).await.expect("load").is_some());
    drop_table(&a).await;
    drop_table(&b).await;
}

#[tokio::test]
async fn two_tables_do_not_see_each_other() {
    let a = file_store().await;
    let b = open(&file_url(""), &fresh_table("t")).await;
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
async fn clear_expired_removes_100k_expired_rows_in_batches() {
    let store = file_store().await;
    let live = create_live(&store, 5).await;
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
         INSERT INTO \"{}\" (id, payload, expires_at, version) \
         SELECT printf('%064x', i), x'7b7d', ?1, 1 FROM n",
        store.table_name()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(unix_millis(an_hour_ago()))
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
    let sql = format!("SELECT COUNT(*) FROM \"{}\"", store.table_name());
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(left, 5);
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
    drop_table(&store).await;
}

#[tokio::test]
async fn clear_batch_size_is_configurable() {
    let store = SqliteStore::builder()
        .with_table_name(TableName::new(&fresh_table("b")).expect("valid"))
        .with_clear_batch_size(NonZeroU32::new(3).expect("non-zero"))
        .connect(&file_url(""))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    for i in 0..7 {
        let mut r = record(&i.to_string());
        r.expires_at = an_hour_ago();
        store.create(&r).await.expect("create");
    }
    let stats = store.clear_expired_in_batches().await.expect("clear");
    assert_eq!((stats.removed, stats.statements), (7, 3));
    drop_table(&store).await;
}

#[tokio::test]
async fn unopenable_database_is_a_backend_error() {
    let url = format!("sqlite://{}/missing/dir/x.db", DIR.path().display());
    let got = SqliteStore::builder()
        .with_acquire_timeout(Duration::from_secs(1))
        .connect(&url)
        .await;
    assert!(matches!(got, Err(Error::Backend { .. })), "{got:?}");
}
