//! `SqliteStore`: the conformance suite on an in-memory and on a WAL file database, the
//! shared store tests on the file database, and what only SQLite does.

mod common;

use std::sync::LazyLock;
use std::time::Duration;

use common::*;
use session_core::{Error, Store, async_trait, from_unix_millis, unix_millis};
use session_db::SqliteStore;
use sqlx::Row;

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

/// SQLite on the database `url` names for a table.
struct Sqlite {
    url: fn(&str) -> String,
}

/// The WAL file database.
const FILE: Sqlite = Sqlite { url: file_url };

sql_store!(SqliteStore);

#[async_trait]
impl Harness for Sqlite {
    type Store = SqliteStore;

    fn url(&self, table: &str) -> String {
        (self.url)(table)
    }

    /// Every test of the process shares one in-memory database (shared cache), where a
    /// DROP waits for the schema lock other tests hold for a moment
    /// (SQLITE_LOCKED_SHAREDCACHE, which no busy timeout covers): retry while it says
    /// locked.
    async fn drop_table(&self, store: &SqliteStore) {
        let sql = format!("DROP TABLE IF EXISTS \"{}\"", store.table_name());
        for _ in 0..100 {
            match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(store.pool())
                .await
            {
                Ok(_) => return,
                Err(e) if e.to_string().contains("locked") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("drop table: {e}"),
            }
        }
        panic!("drop table: the schema stayed locked for 2 s");
    }

    async fn scan(&self, store: &SqliteStore) -> Vec<Vec<Vec<u8>>> {
        let sql = format!("SELECT * FROM \"{}\"", store.table_name());
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .expect("scan");
        cells(&rows, |_, _| None)
    }

    async fn read_row(&self, store: &SqliteStore, id: &str) -> Option<RawRow> {
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

    async fn set_payload(&self, store: &SqliteStore, id: &str, payload: &[u8]) {
        let sql = format!(
            "UPDATE \"{}\" SET payload = ?1 WHERE id = ?2",
            store.table_name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(payload)
            .bind(id)
            .execute(store.pool())
            .await
            .expect("set the payload");
    }

    async fn insert_expired(&self, store: &SqliteStore, rows: u32) {
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
             INSERT INTO \"{}\" (id, payload, expires_at, version) \
             SELECT printf('%064x', i), x'7b7d', ?1, 1 FROM n",
            store.table_name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(unix_millis(an_hour_ago()))
            .bind(rows)
            .execute(store.pool())
            .await
            .expect("bulk insert");
    }
}

session_core::conformance_tests!(sqlite_memory, Conformance(Sqlite { url: memory_url }));

session_core::conformance_tests!(sqlite_file_wal, Conformance(FILE));

store_tests!(FILE);

#[tokio::test]
async fn file_database_runs_in_wal_mode() {
    let store = FILE.open(&fresh_table("t")).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    FILE.drop_table(&store).await;
}

#[tokio::test]
async fn sqlite_memory_url_keeps_its_data_across_operations() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let key = store.create(&record("x")).await.expect("create");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.load(&key).await.expect("load").is_some());
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
