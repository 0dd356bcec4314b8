//! Raw SQL: sqlx on the store's own statements, for SQLite, PostgreSQL and MySQL.

use std::sync::Arc;

use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::raw::RawH;
use crate::common::{Size, in_a_day};
use crate::driver::Subject;

/// The statements of a store, read from session-db's own SQL files.
pub(crate) struct SqlSet {
    create: Arc<str>,
    load: Arc<str>,
    save: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
}

impl SqlSet {
    fn new(templates: [&str; 5], table: &str) -> Self {
        let r = |t: &str| -> Arc<str> { t.trim().replace("{table}", table).into() };
        Self {
            create: r(templates[0]),
            load: r(templates[1]),
            save: r(templates[2]),
            touch: r(templates[3]),
            delete: r(templates[4]),
        }
    }
}

macro_rules! sql_files {
    ($db:literal) => {
        [
            include_str!(concat!("../../../session-db/src/sql/", $db, "/create.sql")),
            include_str!(concat!("../../../session-db/src/sql/", $db, "/lookup.sql")),
            include_str!(concat!("../../../session-db/src/sql/", $db, "/save.sql")),
            include_str!(concat!("../../../session-db/src/sql/", $db, "/touch.sql")),
            include_str!(concat!("../../../session-db/src/sql/", $db, "/delete.sql")),
        ]
    };
}

fn sqlite_time(at: OffsetDateTime) -> i64 {
    session_core::unix_millis(at)
}

fn pg_time(at: OffsetDateTime) -> OffsetDateTime {
    at
}

fn mysql_time(at: OffsetDateTime) -> PrimitiveDateTime {
    let utc = at.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

/// Raw sqlx: the store's own statements (prepared and cached by sqlx), the payload
/// already encoded.
macro_rules! raw_sql {
    ($name:ident, $pool:ty, $db:literal, $time:path, $time_ty:ty) => {
        pub(crate) struct $name {
            pool: $pool,
            sql: SqlSet,
            payload: Vec<u8>,
            expires_at: OffsetDateTime,
        }

        impl $name {
            pub(crate) fn new(pool: $pool, table: &str, size: Size) -> Self {
                let record = size.record();
                Self {
                    pool,
                    sql: SqlSet::new(sql_files!($db), table),
                    payload: record.encode_payload().expect("encode"),
                    expires_at: record.expires_at,
                }
            }
            pub(crate) async fn insert(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.create)))
                    .bind(hex::encode(h.id))
                    .bind(self.payload.as_slice())
                    .bind($time(self.expires_at))
                    .execute(&self.pool)
                    .await
                    .expect("insert")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            async fn select(&self, h: &RawH) {
                use sqlx::Row as _;
                let row = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.load)))
                    .bind(hex::encode(h.id))
                    .bind($time(OffsetDateTime::now_utc()))
                    .fetch_optional(&self.pool)
                    .await
                    .expect("select")
                    .expect("session missing");
                let payload: &[u8] = row.try_get(0).expect("payload");
                let _: $time_ty = row.try_get(1).expect("expires_at");
                let _: i64 = row.try_get(2).expect("version");
                assert!(!payload.is_empty());
            }
            pub(crate) async fn update(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.save)))
                    .bind(self.payload.as_slice())
                    .bind($time(self.expires_at))
                    .bind(hex::encode(h.id))
                    .bind(i64::try_from(h.version).expect("version"))
                    .bind($time(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .expect("update")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            pub(crate) async fn extend(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.touch)))
                    .bind($time(in_a_day()))
                    .bind(hex::encode(h.id))
                    .bind($time(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .expect("touch")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            pub(crate) async fn remove(&self, h: &RawH) {
                sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.delete)))
                    .bind(hex::encode(h.id))
                    .execute(&self.pool)
                    .await
                    .expect("delete");
            }
        }

        impl Subject for $name {
            type H = RawH;
            async fn create(&self) -> RawH {
                let h = RawH::fresh();
                self.insert(&h).await;
                h
            }
            async fn load(&self, h: &RawH) {
                self.select(h).await;
            }
            async fn save(&self, h: &mut RawH) {
                self.update(h).await;
                h.version += 1;
            }
            async fn touch(&self, h: &mut RawH) {
                self.extend(h).await;
            }
            async fn delete(&self, h: RawH) {
                self.remove(&h).await;
            }
        }
    };
}

raw_sql!(RawSqlite, sqlx::SqlitePool, "sqlite", sqlite_time, i64);
raw_sql!(RawPg, sqlx::PgPool, "postgres", pg_time, OffsetDateTime);
raw_sql!(
    RawMySql,
    sqlx::MySqlPool,
    "mysql",
    mysql_time,
    PrimitiveDateTime
);
