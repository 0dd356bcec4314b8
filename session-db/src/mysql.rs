//! `MySqlStore`: sessions in a MySQL or MariaDB table.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{
    Capabilities, Error, Lookup, Record, Result, SessionKey, Store, create_with_fresh_keys,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySqlPool, Row};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::TableName;
use crate::common::{
    ClearStats, Found, Settings, Statements, Templates, backend, classify_row, missed_verdict, sql,
    version_param,
};

const STORE: &str = "mysql";

const TEMPLATES: Templates = Templates {
    create_table: include_str!("sql/mysql/create_table.sql"),
    create_index: None,
    create: include_str!("sql/mysql/create.sql"),
    lookup: include_str!("sql/mysql/lookup.sql"),
    save: include_str!("sql/mysql/save.sql"),
    exists: include_str!("sql/mysql/exists.sql"),
    touch: include_str!("sql/mysql/touch.sql"),
    end: include_str!("sql/mysql/end.sql"),
    delete: include_str!("sql/mysql/delete.sql"),
    delete_version: include_str!("sql/mysql/delete_version.sql"),
    clear_batch: include_str!("sql/mysql/clear_batch.sql"),
};

/// Sessions in a MySQL or MariaDB table, over a [`MySqlPool`].
///
/// `expires_at` is a `DATETIME(6)` holding UTC (microsecond precision, independent of the
/// connection's `time_zone`, no 2038 limit). Clones share the pool.
///
/// # Examples
///
/// ```no_run
/// use session_core::{Record, Store};
/// use session_db::{MySqlStore, TableName};
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MySqlStore::builder()
///     .with_table_name(TableName::new("web_sessions")?)
///     .connect("mysql://root@127.0.0.1:3306/test")
///     .await?;
/// store.migrate().await?;
///
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    table: TableName,
    settings: Settings,
    sql: Statements,
    lock_name: String,
}

/// Configures a [`MySqlStore`]: table name, `clear_expired` batch size, and,
/// for pools built from a URL, the acquire timeout.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MySqlStoreBuilder {
    table: TableName,
    settings: Settings,
}

impl MySqlStore {
    /// A store on `pool` with the default settings (table `sessions` in the connection's
    /// database).
    #[must_use]
    pub fn new(pool: MySqlPool) -> Self {
        Self::builder().build(pool)
    }

    /// A builder, to choose the table name and other settings.
    pub fn builder() -> MySqlStoreBuilder {
        MySqlStoreBuilder::default()
    }

    /// Connects to `url` with the default settings; see [`MySqlStoreBuilder::connect`].
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
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table the store uses.
    #[must_use]
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Creates the table, with its `expires_at` index, if it is missing.
    ///
    /// Idempotent, and safe when several processes run it at once: the statement runs
    /// while holding a named lock (`GET_LOCK`) derived from the table's name, waiting for
    /// it at most 30 seconds.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when a statement fails or the lock cannot be taken in time.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(backend(STORE))?;
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 30)")
            .bind(self.lock_name.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(backend(STORE))?;
        if locked != Some(1) {
            return Err(Error::backend(
                STORE,
                "timed out waiting for the migration lock",
            ));
        }
        let created = self.create_schema(&mut conn).await;
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(self.lock_name.as_str())
            .execute(&mut *conn)
            .await;
        if released.is_err() {
            // The lock belongs to the connection: never hand it back to the pool holding it.
            conn.close_on_drop();
        }
        created?;
        Ok(())
    }

    async fn create_schema(&self, conn: &mut sqlx::MySqlConnection) -> Result<()> {
        sqlx::query(sql(&self.sql.create_table))
            .execute(&mut *conn)
            .await
            .map_err(backend(STORE))?;
        if let Some(index) = &self.sql.create_index {
            sqlx::query(sql(index))
                .execute(&mut *conn)
                .await
                .map_err(backend(STORE))?;
        }
        Ok(())
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
        let now = utc_datetime(OffsetDateTime::now_utc());
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

impl fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStore")
            .field("table", &self.table)
            .field("clear_batch_size", &self.settings.clear_batch_size)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl MySqlStoreBuilder {
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
    pub fn build(self, pool: MySqlPool) -> MySqlStore {
        let quoted = format!("`{}`", self.table);
        let index = format!("`{}_expires_at_idx`", self.table);
        let lock_name = format!("session_db:{}", self.table);
        MySqlStore {
            sql: Statements::render(&TEMPLATES, &quoted, &index),
            pool,
            table: self.table,
            settings: self.settings,
            lock_name,
        }
    }

    /// Connects to `url` (`mysql://user@host:port/database`) and builds the store on
    /// a new pool, checking that one connection can be made.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or no connection can be made within
    /// the acquire timeout.
    pub async fn connect(self, url: &str) -> Result<MySqlStore> {
        let options = MySqlConnectOptions::from_str(url).map_err(backend(STORE))?;
        let pool = MySqlPoolOptions::new()
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
    pub fn connect_lazy(self, url: &str) -> Result<MySqlStore> {
        let options = MySqlConnectOptions::from_str(url).map_err(backend(STORE))?;
        let pool = MySqlPoolOptions::new()
            .acquire_timeout(self.settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(self.build(pool))
    }
}

/// The operations, unbounded in time; [`Store`] wraps each in the operation deadline.
impl MySqlStore {
    async fn run_create(&self, record: &Record) -> Result<SessionKey> {
        let payload = record.encode_payload()?;
        let expires_at = utc_datetime(record.expires_at);
        create_with_fresh_keys(STORE, |key| {
            let payload = payload.as_slice();
            async move {
                let mut id = [0u8; 64];
                let inserted = sqlx::query(sql(&self.sql.create))
                    .bind(key.storage_id().encode_hex(&mut id))
                    .bind(payload)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await;
                match inserted {
                    Ok(_) => Ok(true),
                    // A row already under the key, live, ended or expired, is left as it
                    // is and the key counts as taken. `INSERT IGNORE` would also swallow
                    // other errors: catch only this one.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                    Err(e) => Err(Error::backend(STORE, e)),
                }
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
            .bind(utc_datetime(OffsetDateTime::now_utc()))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend(STORE))?;
        let Some(row) = row else {
            return Ok(Lookup::Absent);
        };
        let payload: &[u8] = row.try_get(0).map_err(backend(STORE))?;
        let expires_at: PrimitiveDateTime = row.try_get(1).map_err(backend(STORE))?;
        let version: i64 = row.try_get(2).map_err(backend(STORE))?;
        match classify_row(
            STORE,
            &storage_id,
            payload,
            Some(expires_at.assume_utc()),
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
        let now = utc_datetime(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let updated = sqlx::query(sql(&self.sql.save))
            .bind(payload.as_slice())
            .bind(utc_datetime(record.expires_at))
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
        let now = utc_datetime(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let ended = sqlx::query(sql(&self.sql.end))
            .bind(utc_datetime(remember_until))
            .bind(id)
            .bind(version_param(version))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend(STORE))?
            .rows_affected();
        // Counted the same whether the server reports matched or changed rows: the
        // statement matches only a live row, and always changes it (its version, at least
        // 1, becomes 0).
        if ended == 1 {
            return Ok(());
        }
        Err(missed_verdict(self.is_live(id, now).await?))
    }

    /// Whether a live record (unexpired at `now`, not an ended marker) is stored under
    /// the hex storage id `id`.
    async fn is_live(&self, id: &str, now: PrimitiveDateTime) -> Result<bool> {
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
            .bind(utc_datetime(expires_at))
            .bind(key.storage_id().encode_hex(&mut id))
            .bind(utc_datetime(OffsetDateTime::now_utc()))
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

crate::common::store_with_deadline!(MySqlStore);

/// The UTC wall-clock time of `at`, as the `DATETIME(6)` column holds it.
fn utc_datetime(at: OffsetDateTime) -> PrimitiveDateTime {
    // Only an instant at the very edge of the supported years has no UTC form; keeping its
    // own wall-clock time there beats a panic.
    let utc = at.checked_to_offset(UtcOffset::UTC).unwrap_or(at);
    PrimitiveDateTime::new(utc.date(), utc.time())
}
