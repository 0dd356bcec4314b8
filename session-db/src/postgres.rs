//! `PostgresStore`: sessions in a PostgreSQL table.

use std::fmt;

use session_core::Result;
use time::OffsetDateTime;

use crate::common::{Templates, backend, lock_key, templates};
use crate::store::{Body, Dialect, SqlStore, SqlStoreBuilder};
use crate::{SchemaName, TableName};

/// Sessions in a PostgreSQL table, over a [`PgPool`](sqlx::PgPool).
///
/// `expires_at` is a `TIMESTAMPTZ` (microsecond precision, an absolute instant whatever
/// the session's `TimeZone`). Clones share the pool. [`new`](SqlStore::new) and
/// [`builder`](SqlStore::builder) use table `sessions` on the connection's `search_path`
/// unless a schema is configured ([`PostgresStoreBuilder::with_schema`]).
///
/// # Examples
///
/// ```no_run
/// use session_core::{Record, Store};
/// use session_db::{PostgresStore, TableName};
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::builder()
///     .with_table_name(TableName::new("web_sessions")?)
///     .connect("postgres://postgres@127.0.0.1:5432/test")
///     .await?;
/// store.migrate().await?;
///
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1));
/// # Ok(()) }
/// ```
pub type PostgresStore = SqlStore<PostgresDialect>;

/// Configures a [`PostgresStore`]: schema, table name, `clear_expired` batch size, and,
/// for pools built from a URL (`postgres://user@host:port/database`), the acquire
/// timeout.
pub type PostgresStoreBuilder = SqlStoreBuilder<PostgresDialect>;

/// PostgreSQL's side of [`PostgresStore`]: `TIMESTAMPTZ`, an optional schema, and an
/// advisory lock around `migrate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresDialect;

impl Dialect for PostgresDialect {
    type Db = sqlx::Postgres;
    type Instant = OffsetDateTime;
    type Options = Option<SchemaName>;
    /// The key of the advisory lock `migrate` holds.
    type Lock = i64;

    const STORE: &'static str = "postgres";
    const NAMES: (&'static str, &'static str) = ("PostgresStore", "PostgresStoreBuilder");
    const TEMPLATES: Templates = templates!("postgres");

    fn instant(at: OffsetDateTime) -> OffsetDateTime {
        at
    }

    fn from_instant(stored: OffsetDateTime) -> Option<OffsetDateTime> {
        Some(stored)
    }

    fn names(table: &TableName, schema: &Option<SchemaName>) -> (String, String, i64) {
        let qualified = match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        let index = format!("\"{table}_expires_at_idx\"");
        let lock = lock_key(&format!("session-db migrate {qualified}"));
        (qualified, index, lock)
    }

    fn debug_options(schema: &Option<SchemaName>, out: &mut fmt::DebugStruct<'_, '_>) {
        out.field("schema", schema);
    }
}

impl PostgresStore {
    /// The schema the table lives in, if one was configured (otherwise the
    /// `search_path` decides).
    #[must_use]
    pub fn schema(&self) -> Option<&SchemaName> {
        self.options.as_ref()
    }

    /// Creates the table and its `expires_at` index if they are missing. The schema, if
    /// one is configured, must exist.
    ///
    /// Idempotent, and safe when several processes run it at once: two concurrent
    /// `CREATE TABLE IF NOT EXISTS` can still collide in PostgreSQL's catalog, so the
    /// statements run in one transaction holding a transaction-level advisory lock
    /// derived from the table's name.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](session_core::Error::Backend) when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        let store = PostgresDialect::STORE;
        let mut tx = self.pool.begin().await.map_err(backend(store))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.lock)
            .execute(&mut *tx)
            .await
            .map_err(backend(store))?;
        PostgresDialect::create_schema(self, &mut tx).await?;
        tx.commit().await.map_err(backend(store))
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default: none, the connection's `search_path`
    /// decides). [`PostgresStore::migrate`] does not create it.
    pub fn with_schema(mut self, schema: SchemaName) -> Self {
        self.options = Some(schema);
        self
    }
}
