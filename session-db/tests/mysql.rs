//! `MySqlStore` against the server in `SESSION_TEST_MYSQL_URL`: the conformance suite,
//! the shared store tests, and what only MySQL does (count changed rows). Run with
//! `-- --include-ignored`.

mod common;

use std::time::Duration;

use common::*;
use session_core::{Store, async_trait};
use session_db::{MySqlStore, TableName};
use sqlx::Row;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use time::PrimitiveDateTime;

fn url() -> String {
    std::env::var("SESSION_TEST_MYSQL_URL").unwrap_or_else(|_| {
        panic!("SESSION_TEST_MYSQL_URL must name a MySQL or MariaDB database to run these tests")
    })
}

struct MySql;

/// `store`'s table, quoted.
fn quoted(store: &MySqlStore) -> String {
    format!("`{}`", store.table_name())
}

sql_store!(MySqlStore);

#[async_trait]
impl Harness for MySql {
    type Store = MySqlStore;

    fn url(&self, _table: &str) -> String {
        url()
    }

    async fn drop_table(&self, store: &MySqlStore) {
        let sql = format!("DROP TABLE IF EXISTS {}", quoted(store));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("drop table");
    }

    async fn scan(&self, store: &MySqlStore) -> Vec<Vec<Vec<u8>>> {
        let sql = format!("SELECT * FROM {}", quoted(store));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .expect("scan");
        cells(&rows, |row, i| {
            row.try_get::<PrimitiveDateTime, _>(i)
                .ok()
                .map(|t| t.to_string())
        })
    }

    async fn read_row(&self, store: &MySqlStore, id: &str) -> Option<RawRow> {
        let sql = format!(
            "SELECT payload, expires_at, version FROM {} WHERE id = ?",
            quoted(store)
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

    async fn set_payload(&self, store: &MySqlStore, id: &str, payload: &[u8]) {
        let sql = format!("UPDATE {} SET payload = ? WHERE id = ?", quoted(store));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(payload)
            .bind(id)
            .execute(store.pool())
            .await
            .expect("set the payload");
    }

    async fn insert_expired(&self, store: &MySqlStore, rows: u32) {
        let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
             UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
             UNION ALL SELECT 8 UNION ALL SELECT 9)";
        let sql = format!(
            "INSERT INTO {} (id, payload, expires_at, version) \
             SELECT LOWER(LPAD(HEX(n), 64, '0')), '{{}}', ?, 1 FROM ( \
                 SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS n \
                 FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f \
             ) AS numbers WHERE n <= ?",
            quoted(store)
        );
        let an_hour_ago = an_hour_ago();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(PrimitiveDateTime::new(
                an_hour_ago.date(),
                an_hour_ago.time(),
            ))
            .bind(rows)
            .execute(store.pool())
            .await
            .expect("bulk insert");
    }
}

impl ServerHarness for MySql {
    const CLOSED_PORT_URL: &'static str = "mysql://root@127.0.0.1:1/test";

    fn upstream(&self) -> String {
        let options: MySqlConnectOptions = url().parse().expect("a valid URL");
        format!("{}:{}", options.get_host(), options.get_port())
    }

    fn through(&self, port: u16, table: &str) -> MySqlStore {
        let options: MySqlConnectOptions = url().parse().expect("a valid URL");
        let pool = MySqlPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.host("127.0.0.1").port(port));
        MySqlStore::builder()
            .with_table_name(TableName::new(table).expect("a valid name"))
            .build(pool)
    }
}

session_core::conformance_tests!(
    mysql,
    Conformance(MySql),
    ignore = "needs SESSION_TEST_MYSQL_URL"
);

store_tests!(MySql, ignore = "needs SESSION_TEST_MYSQL_URL");

server_tests!(MySql, ignore = "needs SESSION_TEST_MYSQL_URL");

/// MySQL reports changed rows unless the client asks for matched rows; a touch that sets
/// the instant already stored must still count as found.
#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn touch_and_save_with_unchanged_values_succeed() {
    let store = MySql.open(&fresh_table("u")).await;
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
    MySql.drop_table(&store).await;
}
