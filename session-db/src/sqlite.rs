//! `SqliteStore`: sessions in an SQLite table.

use std::str::FromStr;
use std::time::Duration;

use session_core::{Result, from_unix_millis, unix_millis};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use crate::TableName;
use crate::common::{Templates, backend, sqlite_url_is_in_memory, templates};
use crate::store::{Body, Dialect, SqlStore, SqlStoreBuilder};

/// Sessions in an SQLite table, over an [`SqlitePool`](sqlx::SqlitePool).
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
pub type SqliteStore = SqlStore<SqliteDialect>;

/// Configures a [`SqliteStore`]: table name, `clear_expired` batch size, and, for pools
/// built from a URL, the acquire timeout (also SQLite's busy timeout).
///
/// [`connect`](SqlStoreBuilder::connect) takes `sqlite://path/to/file.db`,
/// `sqlite::memory:`, or any URL sqlx accepts:
///
/// - A file database is created if missing and opened in WAL mode with
///   `synchronous = NORMAL` (durable across application crashes, and readers never block
///   the writer), with a busy timeout equal to the acquire timeout. Opening it runs
///   `PRAGMA journal_mode = WAL`, which SQLite can refuse at once with `SQLITE_BUSY` while
///   another connection writes to the file: `connect` then tries again until the acquire
///   timeout.
/// - An in-memory database lives only as long as a connection to it is open, and each
///   connection of `sqlite::memory:` would otherwise see its own database: the pool keeps
///   exactly one connection, opened at once and never retired. Use a named shared
///   database (`sqlite:file:name?mode=memory&cache=shared`) for several stores on one
///   in-memory database.
pub type SqliteStoreBuilder = SqlStoreBuilder<SqliteDialect>;

/// SQLite's side of [`SqliteStore`]: Unix milliseconds, WAL files, one connection for an
/// in-memory database.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    type Instant = i64;
    type Options = ();
    type Lock = ();

    const STORE: &'static str = "sqlite";
    const NAMES: (&'static str, &'static str) = ("SqliteStore", "SqliteStoreBuilder");
    const TEMPLATES: Templates = templates!("sqlite");

    fn instant(at: OffsetDateTime) -> i64 {
        unix_millis(at)
    }

    fn from_instant(stored: i64) -> Option<OffsetDateTime> {
        from_unix_millis(stored)
    }

    fn names(table: &TableName, (): &()) -> (String, String, ()) {
        (
            format!("\"{table}\""),
            format!("\"{table}_expires_at_idx\""),
            (),
        )
    }

    fn pool_options(
        url: &str,
        acquire_timeout: Duration,
    ) -> Result<(SqlitePoolOptions, SqliteConnectOptions), sqlx::Error> {
        let mut options = SqliteConnectOptions::from_str(url)?.busy_timeout(acquire_timeout);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(acquire_timeout);
        if sqlite_url_is_in_memory(url) {
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

    /// SQLITE_BUSY in any of its extended forms (primary result code 5): the database did
    /// nothing.
    fn retry_connect(e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == 5),
            _ => false,
        }
    }
}

impl SqliteStore {
    /// Creates the table and its `expires_at` index if they are missing.
    ///
    /// Idempotent, and safe when several processes run it at once: SQLite serialises the
    /// schema changes behind its write lock, and both statements are `IF NOT EXISTS`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`](session_core::Error::Backend) when a statement fails.
    pub async fn migrate(&self) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(backend(SqliteDialect::STORE))?;
        SqliteDialect::create_schema(self, &mut tx).await?;
        tx.commit().await.map_err(backend(SqliteDialect::STORE))
    }
}
