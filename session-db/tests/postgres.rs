//! `PostgresStore` against the server in `SESSION_TEST_POSTGRES_URL`: the conformance
//! suite, the shared store tests, and what only PostgreSQL has (schemas). Run with
//! `-- --include-ignored`.

mod common;

use std::time::Duration;

use common::*;
use session_core::{Store, async_trait};
use session_db::{PostgresStore, SchemaName, TableName};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::OffsetDateTime;

fn url() -> String {
    std::env::var("SESSION_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("SESSION_TEST_POSTGRES_URL must name a PostgreSQL database to run these tests")
    })
}

struct Postgres;

/// `store`'s table, qualified with its schema if it has one.
fn qualified(store: &PostgresStore) -> String {
    match store.schema() {
        Some(schema) => format!("\"{schema}\".\"{}\"", store.table_name()),
        None => format!("\"{}\"", store.table_name()),
    }
}

sql_store!(PostgresStore);

#[async_trait]
impl Harness for Postgres {
    type Store = PostgresStore;

    fn url(&self, _table: &str) -> String {
        url()
    }

    async fn drop_table(&self, store: &PostgresStore) {
        let sql = format!("DROP TABLE IF EXISTS {}", qualified(store));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("drop table");
    }

    async fn scan(&self, store: &PostgresStore) -> Vec<Vec<Vec<u8>>> {
        let sql = format!("SELECT * FROM {}", qualified(store));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .expect("scan");
        cells(&rows, |row, i| {
            row.try_get::<OffsetDateTime, _>(i)
                .ok()
                .map(|t| t.to_string())
        })
    }

    async fn read_row(&self, store: &PostgresStore, id: &str) -> Option<RawRow> {
        let sql = format!(
            "SELECT payload, expires_at, version FROM {} WHERE id = $1",
            qualified(store)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(store.pool())
            .await
            .expect("read the row")?;
        Some(RawRow {
            payload: row.get(0),
            expires_at: row.get(1),
            version: row.get(2),
        })
    }

    async fn set_payload(&self, store: &PostgresStore, id: &str, payload: &[u8]) {
        let sql = format!("UPDATE {} SET payload = $1 WHERE id = $2", qualified(store));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(payload)
            .bind(id)
            .execute(store.pool())
            .await
            .expect("set the payload");
    }

    async fn insert_expired(&self, store: &PostgresStore, rows: u32) {
        let sql = format!(
            "INSERT INTO {} (id, payload, expires_at, version) \
             SELECT lpad(to_hex(i), 64, '0'), '\\x7b7d'::bytea, $1, 1 \
             FROM generate_series(1, $2) AS i",
            qualified(store)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(an_hour_ago())
            .bind(i64::from(rows))
            .execute(store.pool())
            .await
            .expect("bulk insert");
    }
}

impl ServerHarness for Postgres {
    const CLOSED_PORT_URL: &'static str = "postgres://postgres@127.0.0.1:1/test";

    fn upstream(&self) -> String {
        let options: PgConnectOptions = url().parse().expect("a valid URL");
        format!("{}:{}", options.get_host(), options.get_port())
    }

    fn through(&self, port: u16, table: &str) -> PostgresStore {
        let options: PgConnectOptions = url().parse().expect("a valid URL");
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.host("127.0.0.1").port(port));
        PostgresStore::builder()
            .with_table_name(TableName::new(table).expect("a valid name"))
            .build(pool)
    }
}

session_core::conformance_tests!(
    postgres,
    Conformance(Postgres),
    ignore = "needs SESSION_TEST_POSTGRES_URL"
);

store_tests!(Postgres, ignore = "needs SESSION_TEST_POSTGRES_URL");

server_tests!(Postgres, ignore = "needs SESSION_TEST_POSTGRES_URL");

#[tokio::test]
#[ignore = "needs SESSION_TEST_POSTGRES_URL"]
async fn a_configured_schema_holds_the_table() {
    let plain = Postgres.open(&fresh_table("t")).await;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS session_db_tests")
        .execute(plain.pool())
        .await
        .ok();
    let table = fresh_table("s");
    let store = PostgresStore::builder()
        .with_schema(SchemaName::new("session_db_tests").expect("valid"))
        .with_table_name(TableName::new(&table).expect("valid"))
        .build(plain.pool().clone());
    store.migrate().await.expect("migrate");
    let key = store.create(&record("in schema")).await.expect("create");
    assert!(store.load(&key).await.expect("load").is_some());
    assert!(plain.load(&key).await.expect("load").is_none());
    let schema: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = $1",
    )
    .bind(&table)
    .fetch_one(plain.pool())
    .await
    .expect("catalog");
    assert_eq!(schema, "session_db_tests");
    Postgres.drop_table(&store).await;
    Postgres.drop_table(&plain).await;
}

#[test]
fn invalid_schema_names_are_refused() {
    for bad in INVALID_TABLE_NAMES {
        assert!(SchemaName::new(bad).is_err(), "{bad:?} was accepted");
    }
}
