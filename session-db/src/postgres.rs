//! `PostgresStore`: sessions in a PostgreSQL table.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{
    Capabilities, Error, Lookup, Record, Result, SessionKey, Store, create_with_fresh_keys,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::common::{
    ClearStats, Found, Settings, Statements, Templates, backend, classify_row, fnv1a,
    missed_verdict, sql, version_param,
};
use crate::{SchemaName, TableName};

const STORE: &str = "postgres";

const TEMPLATES: Templates = Templates {
    create_table: include_str!("sql/postgres/create_table.sql"),
    create_index: Some(include_str!("sql/postgres/create_index.sql")),
    create: include_str!("sql/postgres/create.sql"),
    lookup: include_str!("sql/postgres/lookup.sql"),
    save: include_str!("sql/postgres/save.sql"),
    exists: include_str!("sql/postgres/exists.sql"),
    touch: include_str!("sql/postgres/touch.sql"),
    end: include_str!("sql/postgres/end.sql"),
    delete: include_str!("sql/postgres/delete.sql"),
    delete_version: include_str!("sql/postgres/delete_version.sql"),
    clear_batch: include_str!("sql/postgres/clear_batch.sql"),
};

/// Sessions in a PostgreSQL table, over a [`PgPool`].
///
/// `expires_at` is a `TIMESTAMPTZ` (microsecond precision, an absolute instant whatever
/// the session's `TimeZone`). Clones share the pool.
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
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<SchemaName>,
    table: TableName,
    settings: Settings,
    sql: Statements,
    lock_key: i64,
}

/// Configures a [`PostgresStore`]: schema, table name, `clear_expired` batch size, and,
/// for pools built from a URL, the acquire timeout.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct PostgresStoreBuilder {
    schema: Option<SchemaName>,
    table: TableName,
    settings: Settings,
}

impl PostgresStore {
    /// A store on `pool` with the default settings (table `sessions` on the
    /// `search_path`).
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self::builder().build(pool)
    }

    /// A builder, to choose the schema, table name and other settings.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// Connects to `url` with the default settings; see [`PostgresStoreBuilder::connect`].
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or no connection can be made within
    /// the acquire timeout.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The pool the store uses.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table the store uses.
    #[must_use]
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// The schema the table lives in, if one was configured (otherwise the
    /// `search_path` decides).
    #[must_use]
    pub fn schema(&self) -> Option<&SchemaName> {
        self.schema.as_ref()
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
    /// [`Error::Backend`] when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(backend(STORE))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.lock_key)
            .execute(&mut *tx)
            .await
            .map_err(backend(STORE))?;
        sqlx::query(sql(&self.sql.create_table))
            .execute(&mut *tx)
            .await
            .map_err(backend(STORE))?;
        if let Some(index) = &self.sql.create_index {
            sqlx::query(sql(index))
                .execute(&mut *tx)
                .await
                .map_err(backend(STORE))?;
        }
        tx.commit().await.map_err(backend(STORE))
    }

    /// Deletes every expired row (expired records, and ended markers past their instant)
    /// in batches of the configured size, and reports how many rows and statements that
    /// took. [`Store::clear_expired`] returns `removed`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when a statement fails; rows deleted by earlier batches stay
    /// deleted.
    pub async fn clear_expired_in_batches(&self) -> Result<ClearStats> {
        let now = OffsetDateTime::now_utc();
        let batch = self.settings.clear_batch_size.get();
        crate::common::clear_in_batches(STORE, &self.settings, || {
            sqlx::query(sql(&self.sql.clear_batch))
                .bind(now)
                .bind(i64::from(batch))
                .execute(&self.pool)
        })
        .await
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("clear_batch_size", &self.settings.clear_batch_size)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default: none, the connection's `search_path`
    /// decides). [`PostgresStore::migrate`] does not create it.
    pub fn with_schema(mut self, schema: SchemaName) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The table to use (default `sessions`).
    pub fn with_table_name(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// How many expired rows one `clear_expired` statement deletes at most (default
    /// 1000), so a large backlog never holds many row locks or a long transaction.
    pub fn with_clear_batch_size(mut self, rows: NonZeroU32) -> Self {
        self.settings.clear_batch_size = rows;
        self
    }

    /// How long an operation waits for a connection from a pool built by
    /// [`connect`](Self::connect) or [`connect_lazy`](Self::connect_lazy), connecting
    /// included (default 5 seconds). A server that is down fails operations with
    /// [`Error::Backend`] after this long.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.settings.acquire_timeout = timeout;
        self
    }

    /// The time limit of one operation, waiting for a connection included (default: twice
    /// the acquire timeout). A server that stops answering mid-statement (frozen, cut off
    /// without a reset) then fails the operation with [`Error::Timeout`] instead of hanging;
    /// `clear_expired` applies it to each of its batch statements.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.operation_timeout = Some(timeout);
        self
    }

    /// A store on an existing pool; the pool's own settings apply.
    #[must_use]
    pub fn build(self, pool: PgPool) -> PostgresStore {
        let qualified = match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        };
        let index = format!("\"{}_expires_at_idx\"", self.table);
        let lock_key = fnv1a(format!("session-db migrate {qualified}").as_bytes());
        PostgresStore {
            sql: Statements::render(&TEMPLATES, &qualified, &index),
            pool,
            schema: self.schema,
            table: self.table,
            settings: self.settings,
            lock_key,
        }
    }

    /// Connects to `url` (`postgres://user@host:port/database`) and builds the store on
    /// a new pool, checking that one connection can be made.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or no connection can be made within
    /// the acquire timeout.
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url).map_err(backend(STORE))?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(self.settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(backend(STORE))?;
        Ok(self.build(pool))
    }

    /// Builds the store on a new pool for `url` without connecting: the first operation
    /// connects. A server that is down makes operations fail with [`Error::Backend`] after
    /// the acquire timeout, and the same store works again once it is back.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid.
    pub fn connect_lazy(self, url: &str) -> Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url).map_err(backend(STORE))?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(self.settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(self.build(pool))
    }
}

/// The operations, unbounded in time; [`Store`] wraps each in the operation deadline.
impl PostgresStore {
    async fn run_create(&self, record: &Record) -> Result<SessionKey> {
        let payload = record.encode_payload()?;
        let expires_at = record.expires_at;
        create_with_fresh_keys(STORE, |key| {
            let payload = payload.as_slice();
            async move {
                let mut id = [0u8; 64];
                // `ON CONFLICT DO NOTHING`: a row already under the key, live, ended or
                // expired, is left as it is and the key counts as taken.
                let inserted = sqlx::query(sql(&self.sql.create))
                    .bind(key.storage_id().encode_hex(&mut id))
                    .bind(payload)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err(backend(STORE))?
                    .rows_affected();
                Ok(inserted == 1)
            }
        })
        .await
    }

    async fn run_lookup(&self, key: &SessionKey) -> Result<Lookup> {
        if !key.is_generated_shape() {
            return Ok(Lookup::Absent);
        }
        let storage_id = key.storage_id();
        let mut id = [0u8; 64];
        let id = storage_id.encode_hex(&mut id);
        let row = sqlx::query(sql(&self.sql.lookup))
            .bind(id)
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend(STORE))?;
        let Some(row) = row else {
            return Ok(Lookup::Absent);
        };
        let payload: &[u8] = row.try_get(0).map_err(backend(STORE))?;
        let expires_at: OffsetDateTime = row.try_get(1).map_err(backend(STORE))?;
        let version: i64 = row.try_get(2).map_err(backend(STORE))?;
        match classify_row(STORE, &storage_id, payload, Some(expires_at), version) {
            Found::Known(found) => Ok(found),
            Found::Corrupt => {
                // Only the row as it was read: a concurrent save that repaired it survives.
                sqlx::query(sql(&self.sql.delete_version))
                    .bind(id)
                    .bind(version)
                    .execute(&self.pool)
                    .await
                    .map_err(backend(STORE))?;
                Ok(Lookup::Absent)
            }
        }
    }

    async fn run_save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let payload = record.encode_payload()?;
        let now = OffsetDateTime::now_utc();
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let updated = sqlx::query(sql(&self.sql.save))
            .bind(payload.as_slice())
            .bind(record.expires_at)
            .bind(id)
            .bind(version_param(record.version))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend(STORE))?
            .rows_affected();
        if updated == 1 {
            return Ok(key.clone());
        }
        Err(missed_verdict(self.is_live(id, now).await?))
    }

    async fn run_end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let ended = sqlx::query(sql(&self.sql.end))
            .bind(remember_until)
            .bind(id)
            .bind(version_param(version))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend(STORE))?
            .rows_affected();
        if ended == 1 {
            return Ok(());
        }
        Err(missed_verdict(self.is_live(id, now).await?))
    }

    /// Whether a live record (unexpired at `now`, not an ended marker) is stored under
    /// the hex storage id `id`.
    async fn is_live(&self, id: &str, now: OffsetDateTime) -> Result<bool> {
        let live = sqlx::query(sql(&self.sql.exists))
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend(STORE))?;
        Ok(live.is_some())
    }

    async fn run_touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let mut id = [0u8; 64];
        let updated = sqlx::query(sql(&self.sql.touch))
            .bind(expires_at)
            .bind(key.storage_id().encode_hex(&mut id))
            .bind(OffsetDateTime::now_utc())
            .execute(&self.pool)
            .await
            .map_err(backend(STORE))?
            .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound);
        }
        Ok(key.clone())
    }

    async fn run_delete(&self, key: &SessionKey) -> Result<()> {
        if !key.is_generated_shape() {
            return Ok(());
        }
        let mut id = [0u8; 64];
        sqlx::query(sql(&self.sql.delete))
            .bind(key.storage_id().encode_hex(&mut id))
            .execute(&self.pool)
            .await
            .map_err(backend(STORE))?;
        Ok(())
    }

    async fn run_clear_expired(&self) -> Result<u64> {
        Ok(self.clear_expired_in_batches().await?.removed)
    }
}

crate::common::store_with_deadline!(PostgresStore);
