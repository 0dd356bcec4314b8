//! `MySqlStore`: sessions in a MySQL or MariaDB table.

use session_core::{Error, Result};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::TableName;
use crate::common::{Templates, backend, templates};
use crate::store::{Body, Dialect, SqlStore, SqlStoreBuilder};

/// Sessions in a MySQL or MariaDB table, over a [`MySqlPool`](sqlx::MySqlPool).
///
/// `expires_at` is a `DATETIME(6)` holding UTC (microsecond precision, independent of the
/// connection's `time_zone`, no 2038 limit). Clones share the pool. [`new`](SqlStore::new)
/// and [`builder`](SqlStore::builder) use table `sessions` in the connection's database.
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
pub type MySqlStore = SqlStore<MySqlDialect>;

/// Configures a [`MySqlStore`]: table name, `clear_expired` batch size, and, for pools
/// built from a URL (`mysql://user@host:port/database`), the acquire timeout.
pub type MySqlStoreBuilder = SqlStoreBuilder<MySqlDialect>;

/// MySQL's side of [`MySqlStore`]: UTC `DATETIME(6)`, the duplicate-key error as a taken
/// key, and a named lock around `migrate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MySqlDialect;

impl Dialect for MySqlDialect {
    type Db = sqlx::MySql;
    type Instant = PrimitiveDateTime;
    type Options = ();
    /// The name of the `GET_LOCK` lock `migrate` holds.
    type Lock = String;

    const STORE: &'static str = "mysql";
    const NAMES: (&'static str, &'static str) = ("MySqlStore", "MySqlStoreBuilder");
    const TEMPLATES: Templates = templates!("mysql", create_index: None);

    /// The UTC wall-clock time of `at`, as the `DATETIME(6)` column holds it.
    fn instant(at: OffsetDateTime) -> PrimitiveDateTime {
        // Only an instant at the very edge of the supported years has no UTC form; keeping
        // its own wall-clock time there beats a panic.
        let utc = at.checked_to_offset(UtcOffset::UTC).unwrap_or(at);
        PrimitiveDateTime::new(utc.date(), utc.time())
    }

    fn from_instant(stored: PrimitiveDateTime) -> Option<OffsetDateTime> {
        Some(stored.assume_utc())
    }

    fn names(table: &TableName, (): &()) -> (String, String, String) {
        (
            format!("`{table}`"),
            format!("`{table}_expires_at_idx`"),
            format!("session_db:{table}"),
        )
    }

    /// A plain `INSERT`: a row already under the key fails it with the duplicate-key
    /// error. `INSERT IGNORE` would also swallow other errors: only this one is caught.
    fn created(inserted: Result<u64, sqlx::Error>) -> Result<bool, sqlx::Error> {
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl MySqlStore {
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
        let store = MySqlDialect::STORE;
        let mut conn = self.pool.acquire().await.map_err(backend(store))?;
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 30)")
            .bind(self.lock.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(backend(store))?;
        if locked != Some(1) {
            return Err(Error::backend(
                store,
                "timed out waiting for the migration lock",
            ));
        }
        let created = MySqlDialect::create_schema(self, &mut conn).await;
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(self.lock.as_str())
            .execute(&mut *conn)
            .await;
        if released.is_err() {
            // The lock belongs to the connection: never hand it back to the pool holding it.
            conn.close_on_drop();
        }
        created
    }
}
