//! The one store body, [`SqlStore`], over a per-database [`Dialect`]: what the three
//! stores do alike (settings, building, connecting, every operation of
//! [`session_core::Store`]) lives here once; each driver module says only what its
//! database does its own way (how an instant is bound, the statements, `migrate`).

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::{
    Capabilities, Error, Lookup, Record, Result, SessionKey, Store, create_with_fresh_keys,
};
use sqlx::pool::PoolOptions;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type,
};
use time::OffsetDateTime;

use crate::TableName;
use crate::common::{
    ClearStats, Found, RowsAffected, Settings, Statements, Templates, backend, bounded,
    classify_row, clear_in_batches, missed_verdict, sql, version_param,
};

/// The connection options of a dialect's database.
pub(crate) type ConnectOptions<D> =
    <<<D as Dialect>::Db as Database>::Connection as Connection>::Options;

/// What one database does its own way. Implemented by the marker type of each driver
/// module; everything else of a store is [`SqlStore`]'s.
pub trait Dialect: Sized + Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// `expires_at` as the column binds and reads it.
    type Instant: Copy + Send + Sync + 'static;
    /// Builder settings only this database has (the PostgreSQL schema).
    type Options: Clone + fmt::Debug + Default + Send + Sync + 'static;
    /// What `migrate` locks, derived from the table's name when the store is built.
    type Lock: Clone + Send + Sync + 'static;

    /// The store's name in errors and logs.
    const STORE: &'static str;
    /// The public names of the store and of its builder, for their `Debug` output.
    const NAMES: (&'static str, &'static str);
    /// The statement templates, from `src/sql/<database>/`.
    const TEMPLATES: Templates;

    /// `at` as the `expires_at` column holds it.
    fn instant(at: OffsetDateTime) -> Self::Instant;

    /// The instant an `expires_at` value stands for; `None` when it has no
    /// `OffsetDateTime` form.
    fn from_instant(stored: Self::Instant) -> Option<OffsetDateTime>;

    /// The quoted (qualified) table name, the quoted index name and the migration lock,
    /// built only from validated identifiers and fixed text.
    fn names(table: &TableName, options: &Self::Options) -> (String, String, Self::Lock);

    /// The pool and connection options for `url`, waiting at most `acquire_timeout` for
    /// a connection. The default parses the URL and changes nothing else.
    ///
    /// # Errors
    ///
    /// The driver's error when the URL is invalid.
    fn pool_options(
        url: &str,
        acquire_timeout: Duration,
    ) -> Result<(PoolOptions<Self::Db>, ConnectOptions<Self>), sqlx::Error> {
        let options = url.parse()?;
        Ok((PoolOptions::new().acquire_timeout(acquire_timeout), options))
    }

    /// Whether opening the pool failed in a way that changed nothing and is worth trying
    /// again until the acquire timeout (the default: never).
    fn retry_connect(_error: &sqlx::Error) -> bool {
        false
    }

    /// What the `create` statement's outcome (the rows it inserted, or its error) says:
    /// stored (`true`), or the key was taken (`false`). The default reads a statement that
    /// inserts nothing over an existing row (`ON CONFLICT DO NOTHING`).
    ///
    /// # Errors
    ///
    /// Any error of the statement the dialect does not read as a taken key.
    fn created(inserted: Result<u64, sqlx::Error>) -> Result<bool, sqlx::Error> {
        inserted.map(|rows| rows == 1)
    }

    /// Adds the dialect's own settings to a `Debug` output, before the shared ones.
    fn debug_options(_options: &Self::Options, _out: &mut fmt::DebugStruct<'_, '_>) {}
}

/// Sessions in one SQL table, over an sqlx [`Pool`]; used as
/// [`SqliteStore`](crate::SqliteStore), [`PostgresStore`](crate::PostgresStore) or
/// [`MySqlStore`](crate::MySqlStore), whose pages say how each database keeps the rows.
/// Clones share the pool.
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D::Db>,
    pub(crate) table: TableName,
    pub(crate) options: D::Options,
    pub(crate) settings: Settings,
    pub(crate) sql: Statements,
    pub(crate) lock: D::Lock,
}

/// Configures a [`SqlStore`]: table name, `clear_expired` batch size, time limits, and
/// whatever else its database has (the PostgreSQL schema).
#[must_use]
pub struct SqlStoreBuilder<D: Dialect> {
    pub(crate) table: TableName,
    pub(crate) options: D::Options,
    pub(crate) settings: Settings,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            options: self.options.clone(),
            settings: self.settings.clone(),
            sql: self.sql.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<D: Dialect> Clone for SqlStoreBuilder<D> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            options: self.options.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<D: Dialect> Default for SqlStoreBuilder<D> {
    fn default() -> Self {
        Self {
            table: TableName::default(),
            options: D::Options::default(),
            settings: Settings::default(),
        }
    }
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct(D::NAMES.0);
        D::debug_options(&self.options, &mut out);
        out.field("table", &self.table)
            .field("clear_batch_size", &self.settings.clear_batch_size)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> fmt::Debug for SqlStoreBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct(D::NAMES.1);
        D::debug_options(&self.options, &mut out);
        out.field("table", &self.table)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// A store on `pool` with the default settings (table `sessions`, where the
    /// connection finds it).
    #[must_use]
    pub fn new(pool: Pool<D::Db>) -> Self {
        Self::builder().build(pool)
    }

    /// A builder, to choose the table name and other settings.
    pub fn builder() -> SqlStoreBuilder<D> {
        SqlStoreBuilder::default()
    }

    /// Opens a pool on `url` with the default settings; see [`SqlStoreBuilder::connect`].
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
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// The table the store uses.
    #[must_use]
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// Runs `op` within the operation deadline, again after a deadlock ([`bounded`]).
    async fn bounded<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        bounded(D::STORE, self.settings.operation_timeout(), op).await
    }
}

impl<D: Body> SqlStore<D> {
    /// Deletes every expired row (expired records, and ended markers past their instant)
    /// in batches of the configured size, and reports how many rows and statements that
    /// took. [`Store::clear_expired`] returns `removed`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when a statement fails; rows deleted by earlier batches stay
    /// deleted.
    pub async fn clear_expired_in_batches(&self) -> Result<ClearStats> {
        D::clear_batches(self).await
    }
}

impl<D: Dialect> SqlStoreBuilder<D> {
    /// The table to use (default `sessions`).
    pub fn with_table_name(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// How many expired rows one `clear_expired` statement deletes at most (default
    /// 1000), so a large backlog never holds the write lock, many row locks or a long
    /// transaction.
    pub fn with_clear_batch_size(mut self, rows: NonZeroU32) -> Self {
        self.settings.clear_batch_size = rows;
        self
    }

    /// How long an operation waits for a connection from a pool built by
    /// [`connect`](Self::connect) or [`connect_lazy`](Self::connect_lazy), connecting
    /// included (default 5 seconds). A server that is down fails operations with
    /// [`Error::Backend`] after this long. SQLite's own busy timeout is set to the same
    /// value.
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
    pub fn build(self, pool: Pool<D::Db>) -> SqlStore<D> {
        let (table, index, lock) = D::names(&self.table, &self.options);
        SqlStore {
            sql: Statements::render(&D::TEMPLATES, &table, &index),
            pool,
            table: self.table,
            options: self.options,
            settings: self.settings,
            lock,
        }
    }

    /// Opens a pool on `url` and builds the store on it, checking that one connection can
    /// be made. The store's own page says which URLs its database takes and how the pool
    /// is set up.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid or no connection can be made within
    /// the acquire timeout.
    pub async fn connect(self, url: &str) -> Result<SqlStore<D>> {
        let acquire_timeout = self.settings.acquire_timeout;
        let (pool, options) = D::pool_options(url, acquire_timeout).map_err(backend(D::STORE))?;
        let started = Instant::now();
        loop {
            match pool.clone().connect_with(options.clone()).await {
                Ok(pool) => return Ok(self.build(pool)),
                Err(e) if D::retry_connect(&e) && started.elapsed() < acquire_timeout => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(Error::backend(D::STORE, e)),
            }
        }
    }

    /// Builds the store on a new pool for `url` without connecting: the first operation
    /// connects. A server that is down makes operations fail with [`Error::Backend`] after
    /// the acquire timeout, and the same store works again once it is back.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid.
    pub fn connect_lazy(self, url: &str) -> Result<SqlStore<D>> {
        let (pool, options) =
            D::pool_options(url, self.settings.acquire_timeout).map_err(backend(D::STORE))?;
        Ok(self.build(pool.connect_lazy_with(options)))
    }
}

/// Each operation runs within the configured operation deadline, and again (within the
/// same deadline) when the database rolled it back as a deadlock victim; `load` is
/// `lookup` keeping only a live record.
#[async_trait]
impl<D: Body> Store for SqlStore<D> {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        self.bounded(|| D::create(self, record)).await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.lookup(key).await.map(Lookup::into_live)
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        self.bounded(|| D::lookup(self, key)).await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        self.bounded(|| D::save(self, key, record)).await
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        self.bounded(|| D::touch(self, key, expires_at)).await
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        key.require_generated_shape()?;
        self.bounded(|| D::end(self, key, version, remember_until))
            .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.bounded(|| D::delete(self, key)).await
    }

    async fn clear_expired(&self) -> Result<u64> {
        // Bounded statement by statement, inside.
        Ok(self.clear_expired_in_batches().await?.removed)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}

/// The statements of a store, unbounded in time, for every [`Dialect`] whose database
/// binds and reads the columns' types. Its one implementation carries those bounds, so
/// the rest of the crate asks only for `D: Body`.
pub trait Body: Dialect {
    /// Creates the table and its index if they are missing, on `conn`.
    fn create_schema(
        store: &SqlStore<Self>,
        conn: &mut <Self::Db as Database>::Connection,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes expired rows batch by batch, each batch within the operation deadline.
    fn clear_batches(store: &SqlStore<Self>) -> impl Future<Output = Result<ClearStats>> + Send;

    /// [`Store::create`].
    fn create(
        store: &SqlStore<Self>,
        record: &Record,
    ) -> impl Future<Output = Result<SessionKey>> + Send;

    /// [`Store::lookup`].
    fn lookup(
        store: &SqlStore<Self>,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Lookup>> + Send;

    /// [`Store::save`].
    fn save(
        store: &SqlStore<Self>,
        key: &SessionKey,
        record: &Record,
    ) -> impl Future<Output = Result<SessionKey>> + Send;

    /// [`Store::touch`].
    fn touch(
        store: &SqlStore<Self>,
        key: &SessionKey,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<SessionKey>> + Send;

    /// [`Store::end`], for a key of the generated shape.
    fn end(
        store: &SqlStore<Self>,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> impl Future<Output = Result<()>> + Send;

    /// [`Store::delete`].
    fn delete(store: &SqlStore<Self>, key: &SessionKey) -> impl Future<Output = Result<()>> + Send;

    /// Whether a live record (unexpired at `now`, not an ended marker) is stored under
    /// the hex storage id `id`.
    fn is_live(
        store: &SqlStore<Self>,
        id: &str,
        now: Self::Instant,
    ) -> impl Future<Output = Result<bool>> + Send;
}

impl<D: Dialect> Body for D
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    <D::Db as Database>::QueryResult: RowsAffected,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    i64: for<'q> Encode<'q, D::Db> + for<'q> Decode<'q, D::Db> + Type<D::Db>,
    D::Instant: for<'q> Encode<'q, D::Db> + for<'q> Decode<'q, D::Db> + Type<D::Db>,
{
    async fn create_schema(
        store: &SqlStore<Self>,
        conn: &mut <Self::Db as Database>::Connection,
    ) -> Result<()> {
        sqlx::query(sql(&store.sql.create_table))
            .execute(&mut *conn)
            .await
            .map_err(backend(D::STORE))?;
        if let Some(index) = &store.sql.create_index {
            sqlx::query(sql(index))
                .execute(&mut *conn)
                .await
                .map_err(backend(D::STORE))?;
        }
        Ok(())
    }

    async fn clear_batches(store: &SqlStore<Self>) -> Result<ClearStats> {
        let now = D::instant(OffsetDateTime::now_utc());
        let batch = store.settings.clear_batch_size.get();
        clear_in_batches(D::STORE, &store.settings, || {
            sqlx::query(sql(&store.sql.clear_batch))
                .bind(now)
                .bind(i64::from(batch))
                .execute(&store.pool)
        })
        .await
    }

    async fn create(store: &SqlStore<Self>, record: &Record) -> Result<SessionKey> {
        let payload = record.encode_payload()?;
        let expires_at = D::instant(record.expires_at);
        create_with_fresh_keys(D::STORE, |key| {
            let payload = payload.as_slice();
            async move {
                let mut id = [0u8; 64];
                // A row already under the key, live, ended or expired, is left as it is
                // and the key counts as taken.
                let inserted = sqlx::query(sql(&store.sql.create))
                    .bind(key.storage_id().encode_hex(&mut id))
                    .bind(payload)
                    .bind(expires_at)
                    .execute(&store.pool)
                    .await
                    .map(|done| done.rows_affected());
                D::created(inserted).map_err(backend(D::STORE))
            }
        })
        .await
    }

    async fn lookup(store: &SqlStore<Self>, key: &SessionKey) -> Result<Lookup> {
        if !key.is_generated_shape() {
            return Ok(Lookup::Absent);
        }
        let storage_id = key.storage_id();
        let mut id = [0u8; 64];
        let id = storage_id.encode_hex(&mut id);
        let row = sqlx::query(sql(&store.sql.lookup))
            .bind(id)
            .bind(D::instant(OffsetDateTime::now_utc()))
            .fetch_optional(&store.pool)
            .await
            .map_err(backend(D::STORE))?;
        let Some(row) = row else {
            return Ok(Lookup::Absent);
        };
        let payload: &[u8] = row.try_get(0).map_err(backend(D::STORE))?;
        let expires_at: D::Instant = row.try_get(1).map_err(backend(D::STORE))?;
        let version: i64 = row.try_get(2).map_err(backend(D::STORE))?;
        let expires_at = D::from_instant(expires_at);
        match classify_row(D::STORE, &storage_id, payload, expires_at, version) {
            Found::Known(found) => Ok(found),
            Found::Corrupt => {
                // Only the row as it was read: a concurrent save that repaired it survives.
                sqlx::query(sql(&store.sql.delete_version))
                    .bind(id)
                    .bind(version)
                    .execute(&store.pool)
                    .await
                    .map_err(backend(D::STORE))?;
                Ok(Lookup::Absent)
            }
        }
    }

    async fn save(store: &SqlStore<Self>, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let payload = record.encode_payload()?;
        let now = D::instant(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let updated = sqlx::query(sql(&store.sql.save))
            .bind(payload.as_slice())
            .bind(D::instant(record.expires_at))
            .bind(id)
            .bind(version_param(record.version))
            .bind(now)
            .execute(&store.pool)
            .await
            .map_err(backend(D::STORE))?
            .rows_affected();
        if updated == 1 {
            return Ok(key.clone());
        }
        Err(missed_verdict(D::is_live(store, id, now).await?))
    }

    async fn touch(
        store: &SqlStore<Self>,
        key: &SessionKey,
        expires_at: OffsetDateTime,
    ) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let mut id = [0u8; 64];
        let updated = sqlx::query(sql(&store.sql.touch))
            .bind(D::instant(expires_at))
            .bind(key.storage_id().encode_hex(&mut id))
            .bind(D::instant(OffsetDateTime::now_utc()))
            .execute(&store.pool)
            .await
            .map_err(backend(D::STORE))?
            .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound);
        }
        Ok(key.clone())
    }

    async fn end(
        store: &SqlStore<Self>,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let now = D::instant(OffsetDateTime::now_utc());
        let mut id = [0u8; 64];
        let id = key.storage_id().encode_hex(&mut id);
        let ended = sqlx::query(sql(&store.sql.end))
            .bind(D::instant(remember_until))
            .bind(id)
            .bind(version_param(version))
            .bind(now)
            .execute(&store.pool)
            .await
            .map_err(backend(D::STORE))?
            .rows_affected();
        // Counted the same whether the server reports matched or changed rows (MySQL
        // reports changed ones): the statement matches only a live row, and always
        // changes it (its version, at least 1, becomes 0).
        if ended == 1 {
            return Ok(());
        }
        Err(missed_verdict(D::is_live(store, id, now).await?))
    }

    async fn delete(store: &SqlStore<Self>, key: &SessionKey) -> Result<()> {
        if !key.is_generated_shape() {
            return Ok(());
        }
        let mut id = [0u8; 64];
        sqlx::query(sql(&store.sql.delete))
            .bind(key.storage_id().encode_hex(&mut id))
            .execute(&store.pool)
            .await
            .map_err(backend(D::STORE))?;
        Ok(())
    }

    async fn is_live(store: &SqlStore<Self>, id: &str, now: Self::Instant) -> Result<bool> {
        let live = sqlx::query(sql(&store.sql.exists))
            .bind(id)
            .bind(now)
            .fetch_optional(&store.pool)
            .await
            .map_err(backend(D::STORE))?;
        Ok(live.is_some())
    }
}

#[cfg(test)]
mod tests {
    /// The store and builder types print under their public names, with the settings
    /// only their database has first.
    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn debug_output_uses_the_public_names() {
        let schema = crate::SchemaName::new("auth").expect("valid");
        let builder = crate::PostgresStore::builder().with_schema(schema);
        let printed = format!("{builder:?}");
        assert!(
            printed.starts_with(
                "PostgresStoreBuilder { schema: Some(SchemaName(\"auth\")), \
                 table: TableName(\"sessions\"), settings: "
            ),
            "{printed}"
        );
        let store = builder
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .expect("a valid URL");
        assert_eq!(
            format!("{store:?}"),
            "PostgresStore { schema: Some(SchemaName(\"auth\")), table: TableName(\"sessions\"), \
             clear_batch_size: 1000, pool_size: 0, .. }"
        );
    }

    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn mysql_debug_output_has_no_schema() {
        let store = crate::MySqlStore::builder()
            .connect_lazy("mysql://root@127.0.0.1:1/test")
            .expect("a valid URL");
        assert_eq!(
            format!("{store:?}"),
            "MySqlStore { table: TableName(\"sessions\"), clear_batch_size: 1000, pool_size: 0, .. }"
        );
        let printed = format!("{:?}", crate::MySqlStoreBuilder::default());
        assert!(
            printed.starts_with("MySqlStoreBuilder { table: TableName(\"sessions\"), settings: "),
            "{printed}"
        );
    }
}
