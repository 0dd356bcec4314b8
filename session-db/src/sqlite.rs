//! `SqliteStore`: sessions in an SQLite table.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::{
    Capabilities, Error, Lookup, Record, Result, SessionKey, Store, create_with_fresh_keys,
    from_unix_millis, unix_millis,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use crate::TableName;
use crate::common::{
    self, ClearStats, Found, Settings, Statements, Templates, backend, classify_row,
    missed_verdict, sql, version_param,
};

const STORE: &str = "sqlite";

const TEMPLATES: Templates = Templates {
    create_table: include_str!("sql/sqlite/create_table.sql"),
    create_index: Some(include_str!("sql/sqlite/create_index.sql")),
    create: include_str!("sql/sqlite/create.sql"),
    lookup: include_str!("sql/sqlite/lookup.sql"),
    save: include_str!("sql/sqlite/save.sql"),
    exists: include_str!("sql/sqlite/exists.sql"),
    touch: include_str!("sql/sqlite/touch.sql"),
    end: include_str!("sql/sqlite/end.sql"),
    delete: include_str!("sql/sqlite/delete.sql"),
    delete_version: include_str!("sql/sqlite/delete_version.sql"),
    clear_batch: include_str!("sql/sqlite/clear_batch.sql"),
};

/// Sessions in an SQLite table, over an [`SqlitePool`].
///
/// `expires_at` is kept as Unix milliseconds in an `INTEGER` column (SQLite has no
/// timestamp type; integers compare and index fastest). Clones share the pool.
///
/// # Examples
///
/// ```
/// use session_core::{Record, Store};
/// use session_db::SqliteStore;
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
///
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: TableName,
    settings: Settings,
    sql: Statements,
}

/// Configures a [`SqliteStore`]: table name, `clear_expired` batch size, and, for pools
/// built from a URL, the acquire timeout.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SqliteStoreBuilder {
    table: TableName,
    settings: Settings,
}

impl SqliteStore {
    /// A store on `pool` with the default settings (table `sessions`).
    #[must_use]
    pub fn new(pool: SqlitePool) -> Self {
        Self::builder().build(pool)
    }

    /// A builder, to choose the table name and other settings.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// Opens a pool on `url` with the default settings; see [`SqliteStoreBuilder::connect`].
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The pool the store uses.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table the store uses.
    #[must_use]
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Creates the table and its `expires_at` index if they are missing.
    ///
    /// Idempotent, and safe when several processes run it at once: SQLite serialises the
    /// schema changes behind its write lock, and both statements are `IF NOT EXISTS`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(backend(STORE))?;
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
        let now = unix_millis(OffsetDateTime::now_utc());
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

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table)
            .field("clear_batch_size", &self.settings.clear_batch_size)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl SqliteStoreBuilder {
    /// The table to use (default `sessions`).
    pub fn with_table_name(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// How many expired rows one `clear_expired` statement deletes at most (default
    /// 1000), so a large backlog never holds the write lock for long.
    pub fn with_clear_batch_size(mut self, rows: NonZeroU32) -> Self {
        self.settings.clear_batch_size = rows;
        self
    }

    /// How long an operation waits for a connection from a pool built by
    /// [`connect`](Self::connect) (default 5 seconds); SQLite's own busy timeout is set to
    /// the same value.
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
    pub fn build(self, pool: SqlitePool) -> SqliteStore {
        let quoted = format!("\"{}\"", self.table);
        let index = format!("\"{}_expires_at_idx\"", self.table);
        SqliteStore {
            sql: Statements::render(&TEMPLATES, &quoted, &index),
            pool,
            table: self.table,
            settings: self.settings,
        }
    }

    /// Opens a pool on `url` (`sqlite://path/to/file.db`, `sqlite::memory:`, or any URL
    /// sqlx accepts) and builds the store on it.
    ///
    /// - A file database is created if missing and opened in WAL mode with
    ///   `synchronous = NORMAL` (durable across application crashes, and readers never
    ///   block the writer), with a busy timeout equal to the acquire timeout.
    /// - An in-memory database lives only as long as a connection to it is open, and each
    ///   connection of `sqlite::memory:` would otherwise see its own database: the pool
    ///   keeps exactly one connection, opened now and never retired. Use a named shared
    ///   database (`sqlite:file:name?mode=memory&cache=shared`) for several stores on one
    ///   in-memory database.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or the database cannot be opened.
    pub async fn connect(self, url: &str) -> Result<SqliteStore> {
        let (pool, options) = self.pool_options(url)?;
        // Opening runs `PRAGMA journal_mode = WAL`, which SQLite can refuse at once with
        // SQLITE_BUSY, without waiting in the busy handler, while another connection
        // writes to the file. The database did nothing: try again until the acquire
        // timeout.
        let give_up = Instant::now() + self.settings.acquire_timeout;
        loop {
            match pool.clone().connect_with(options.clone()).await {
                Ok(pool) => return Ok(self.build(pool)),
                Err(e) if is_busy(&e) && Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(Error::backend(STORE, e)),
            }
        }
    }

    /// Like [`connect`](Self::connect), but opens the database on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid.
    pub fn connect_lazy(self, url: &str) -> Result<SqliteStore> {
        let (pool, options) = self.pool_options(url)?;
        let pool = pool.connect_lazy_with(options);
        Ok(self.build(pool))
    }

    fn pool_options(&self, url: &str) -> Result<(SqlitePoolOptions, SqliteConnectOptions)> {
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(backend(STORE))?
            .busy_timeout(self.settings.acquire_timeout);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(self.settings.acquire_timeout);
        if common::sqlite_url_is_in_memory(url) {
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
        }
        Ok((pool, options))
    }
}

/// The operations, unbounded in time; [`Store`] wraps each in the operation deadline.
impl SqliteStore {
    async fn run_create(&self, record: &Record) -> Result<SessionKey> {
        let payload = record.encode_payload()?;
        let expires_at = unix_millis(record.expires_at);
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
            .bind(unix_millis(OffsetDateTime::now_utc()))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend(STORE))?;
        let Some(row) = row else {
            return Ok(Lookup::Absent);
        };
        let payload: &[u8] = row.try_get(0).map_err(backend(STORE))?;
        let expires_at: i64 = row.try_get(1).map_err(backend(STORE))?;
        let version: i64 = row.try_get(2).map_err(backend(STORE))?;
        match classify_row(
            STORE,
            &storage_id,
            payload,
            from_unix_millis(expires_at),
            version,
        ) {
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
        let now = unix_millis(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let updated = sqlx::query(sql(&self.sql.save))
            .bind(payload.as_slice())
            .bind(unix_millis(record.expires_at))
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
        let now = unix_millis(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let ended = sqlx::query(sql(&self.sql.end))
            .bind(unix_millis(remember_until))
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
    async fn is_live(&self, id: &str, now: i64) -> Result<bool> {
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
            .bind(unix_millis(expires_at))
            .bind(key.storage_id().encode_hex(&mut id))
            .bind(unix_millis(OffsetDateTime::now_utc()))
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

crate::common::store_with_deadline!(SqliteStore);

/// Whether `e` is SQLITE_BUSY in any of its extended forms (primary result code 5).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
}
