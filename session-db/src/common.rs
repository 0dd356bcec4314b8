//! Helpers of the store body: settings, SQL rendering, row decoding, deadlines and
//! retries, error mapping.

// Without any store feature only the public constants and `ClearStats` remain in use.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code, unused_macros, unused_imports, unreachable_pub)
)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, Lookup, Record, StorageId};
use time::OffsetDateTime;

/// Rows a `clear_expired` statement deletes at most, unless configured otherwise.
pub const DEFAULT_CLEAR_BATCH_SIZE: NonZeroU32 = NonZeroU32::new(1000).expect("1000 is not zero");

/// How long an operation waits for a pooled connection (including connecting) before it
/// fails with [`Error::Backend`], for pools the stores build from a URL.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one `clear_expired_in_batches()` run did, on any of the stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClearStats {
    /// Rows deleted: expired records, and ended markers past their instant.
    pub removed: u64,
    /// `DELETE` statements run (each removes at most the configured batch size).
    pub statements: u64,
}

/// Settings every store has.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) clear_batch_size: NonZeroU32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) operation_timeout: Option<Duration>,
}

impl Settings {
    /// The deadline of one operation: as configured, or twice the acquire timeout (a
    /// connection, then the statement).
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.operation_timeout
            .unwrap_or_else(|| self.acquire_timeout.saturating_mul(2))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            clear_batch_size: DEFAULT_CLEAR_BATCH_SIZE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            operation_timeout: None,
        }
    }
}

/// Fills a statement template: `{table}` and `{index}` become the quoted names.
///
/// Callers pass names built only from validated identifiers (`TableName`, `SchemaName`)
/// and fixed suffixes, which is what makes the result safe to hand to
/// `sqlx::AssertSqlSafe`.
pub(crate) fn render(template: &str, table: &str, index: &str) -> Arc<str> {
    template
        .trim()
        .replace("{table}", table)
        .replace("{index}", index)
        .into()
}

/// The version as the BIGINT column holds it. Stored versions are at least 1, so a
/// version beyond `i64::MAX` maps to -1, which matches no row.
pub(crate) fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(-1)
}

/// Decodes a row's payload; `None` (after a warning) when it is not a payload.
///
/// The codec error itself is not logged: its message may quote session data.
pub(crate) fn decode_row(
    store: &'static str,
    id: &StorageId,
    payload: &[u8],
    expires_at: OffsetDateTime,
    version: i64,
) -> Option<Record> {
    let Ok(version) = u64::try_from(version) else {
        tracing::warn!(session = %id.short(), store, version, "negative session version; removing the row");
        return None;
    };
    match Record::decode_payload(payload, expires_at, version) {
        Ok(record) => Some(record),
        Err(_) => {
            tracing::warn!(
                session = %id.short(),
                store,
                bytes = payload.len(),
                "undecodable session payload; removing the row"
            );
            None
        }
    }
}

/// What an unexpired row read by the `lookup` statement stands for.
pub(crate) enum Found {
    /// A session: what [`session_core::Store::lookup`] answers.
    Known(Lookup),
    /// Not a record (undecodable payload, negative version, unrepresentable instant): the
    /// caller removes the row at the version it read and answers [`Lookup::Absent`].
    Corrupt,
}

/// Classifies an unexpired row: version 0 is an ended marker (whatever else the row
/// holds), any other version a record decoded as [`decode_row`] does. `expires_at` is
/// `None` when the stored instant has no `OffsetDateTime` form.
pub(crate) fn classify_row(
    store: &'static str,
    id: &StorageId,
    payload: &[u8],
    expires_at: Option<OffsetDateTime>,
    version: i64,
) -> Found {
    if version == 0 {
        return Found::Known(Lookup::Ended);
    }
    match expires_at.and_then(|at| decode_row(store, id, payload, at, version)) {
        Some(record) => Found::Known(Lookup::Live(record)),
        None => Found::Corrupt,
    }
}

/// The verdict on a compare-and-set (`save`, `end`) that changed no row, from a probe
/// made after it: a live record under the key means its version differed
/// ([`Error::Conflict`]); none (missing, expired or ended) means [`Error::NotFound`].
pub(crate) fn missed_verdict(live: bool) -> Error {
    if live {
        Error::Conflict
    } else {
        Error::NotFound
    }
}

/// Runs `op` within `limit`, or fails with [`Error::Timeout`].
///
/// The pool's acquire timeout bounds only the wait for a connection; a statement already
/// sent to a server that stops answering would otherwise wait as long as the kernel keeps
/// the connection open. Dropping the future drops the connection with it.
pub(crate) async fn deadline<T>(
    store: &'static str,
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, op).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            store,
            after: limit,
        }),
    }
}

/// How many times an operation runs again after the database rolled one of its statements
/// back as a deadlock victim or a serialization failure, before the failure is returned.
pub(crate) const TRANSIENT_RETRIES: u32 = 8;

/// Runs `op` within `limit`, running it again (at most [`TRANSIENT_RETRIES`] times, all
/// within the same limit) when it failed because the database chose one of its statements
/// as a deadlock victim.
///
/// InnoDB can pick a single-statement transaction as the victim when row locks on the
/// primary key and on the `expires_at` index are taken in opposite orders (a `save` or
/// `end` racing a `DELETE` of the row, or a batched `clear_expired`); it rolls that statement back whole
/// and asks the client to run it again. Every operation of these stores is a sequence of
/// autocommit statements that is correct to run again from its start (a compare-and-set
/// `UPDATE` that was rolled back changed nothing), so this is never a lost or doubled
/// write; anything else fails at once.
pub(crate) async fn bounded<T, F, Fut>(
    store: &'static str,
    limit: Duration,
    mut op: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    deadline(store, limit, async {
        let mut retries = 0;
        loop {
            match op().await {
                Err(e) if retries < TRANSIENT_RETRIES && is_transient(&e) => {
                    retries += 1;
                    tracing::debug!(store, retries, "statement rolled back by the database as a deadlock victim; running it again");
                    // Gives the transaction that won the lock time to commit.
                    tokio::time::sleep(Duration::from_millis(u64::from(retries))).await;
                }
                result => return result,
            }
        }
    })
    .await
}

/// Whether `e` is a statement the database rolled back and asks to be run again:
/// SQLSTATE 40001 (MySQL/MariaDB deadlock, error 1213; serialization failure) or 40P01
/// (PostgreSQL deadlock).
fn is_transient(e: &Error) -> bool {
    let Error::Backend { source, .. } = e else {
        return false;
    };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// Runs `batch` (one `DELETE` of at most `clear_batch_size` expired rows) until a batch
/// removes fewer rows than that, each statement within the operation deadline (and run
/// again after a deadlock), so a large backlog never holds one long lock.
pub(crate) async fn clear_in_batches<F, R>(
    store: &'static str,
    settings: &Settings,
    mut batch: impl FnMut() -> F,
) -> Result<ClearStats, Error>
where
    F: std::future::Future<Output = Result<R, sqlx::Error>>,
    R: RowsAffected,
{
    let size = u64::from(settings.clear_batch_size.get());
    let mut stats = ClearStats::default();
    loop {
        let removed = bounded(store, settings.operation_timeout(), || {
            let statement = batch();
            async move { statement.await.map_err(backend(store)) }
        })
        .await?
        .rows_affected();
        stats.removed += removed;
        stats.statements += 1;
        if removed < size {
            break;
        }
    }
    tracing::debug!(
        store,
        removed = stats.removed,
        statements = stats.statements,
        "cleared expired sessions"
    );
    Ok(stats)
}

/// The driver-specific result of a statement, as far as [`clear_in_batches`] needs it.
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

#[cfg(feature = "sqlite")]
impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "postgres")]
impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "mysql")]
impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Maps a driver error to [`Error::Backend`], keeping it as the source.
pub(crate) fn backend(store: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::backend(store, e)
}

/// Whether `url` names an in-memory SQLite database (`sqlite::memory:`,
/// `sqlite://:memory:`, or `mode=memory`).
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_url_is_in_memory(url: &str) -> bool {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory")
}

/// A stable 64-bit key for an advisory lock named `name`: the first eight bytes of its
/// SHA-256, so every process (and every build) derives the same key from the same name.
#[cfg(feature = "postgres")]
pub(crate) fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = digest;
    i64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_beyond_i64_match_nothing() {
        assert_eq!(version_param(7), 7);
        assert_eq!(version_param(u64::MAX), -1);
    }

    #[test]
    fn only_deadlock_victims_are_run_again() {
        // A verdict about the session, an unreachable database or a time-out is final.
        for e in [
            Error::Conflict,
            Error::NotFound,
            Error::backend("mysql", sqlx::Error::PoolTimedOut),
            Error::backend("mysql", sqlx::Error::RowNotFound),
            Error::backend("mysql", "not a driver error"),
            Error::Timeout {
                store: "mysql",
                after: Duration::from_secs(1),
            },
        ] {
            assert!(!is_transient(&e), "{e} would be retried");
        }
    }

    #[test]
    fn version_zero_is_an_ended_marker_and_bad_rows_are_corrupt() {
        let id = session_core::SessionKey::generate().storage_id();
        let at = Some(OffsetDateTime::now_utc());
        // A marker is recognised by its version alone, payload or not.
        for payload in [&b""[..], b"{}", b"not json"] {
            assert!(matches!(
                classify_row("t", &id, payload, at, 0),
                Found::Known(Lookup::Ended)
            ));
        }
        assert!(matches!(
            classify_row("t", &id, br#"{"d":{"a":1}}"#, at, 3),
            Found::Known(Lookup::Live(r)) if r.version == 3 && r.data["a"] == 1
        ));
        for (payload, at, version) in [
            (&b"not json"[..], at, 1),
            (br#"{"d":{}}"#, at, -1),
            (br#"{"d":{}}"#, None, 1),
        ] {
            assert!(matches!(
                classify_row("t", &id, payload, at, version),
                Found::Corrupt
            ));
        }
    }

    #[test]
    fn a_missed_compare_and_set_is_conflict_only_over_a_live_row() {
        assert!(matches!(missed_verdict(true), Error::Conflict));
        assert!(matches!(missed_verdict(false), Error::NotFound));
    }

    #[test]
    fn render_fills_both_placeholders() {
        assert_eq!(
            &*render(" DROP {table} {index}\n", "\"t\"", "\"t_i\""),
            "DROP \"t\" \"t_i\""
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn lock_keys_are_the_head_of_the_names_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(
            lock_key("abc"),
            i64::from_be_bytes([0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea])
        );
        assert_ne!(
            lock_key("session-db migrate \"a\""),
            lock_key("session-db migrate \"b\"")
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn in_memory_urls_are_recognised() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:file:x?mode=memory&cache=shared",
            "sqlite://x?cache=shared&mode=memory",
        ] {
            assert!(sqlite_url_is_in_memory(url), "{url}");
        }
        for url in [
            "sqlite://data.db",
            "sqlite:data.db?mode=rwc",
            "sqlite:/tmp/memory.db",
        ] {
            assert!(!sqlite_url_is_in_memory(url), "{url}");
        }
    }
}

/// The statement templates of one database, from `src/sql/<database>/*.sql`; see
/// [`templates!`].
#[derive(Debug)]
pub struct Templates {
    /// `CREATE TABLE IF NOT EXISTS`.
    pub create_table: &'static str,
    /// `CREATE INDEX IF NOT EXISTS` on `expires_at`, for a database whose table
    /// statement cannot declare it.
    pub create_index: Option<&'static str>,
    /// The `INSERT` of a new record.
    pub create: &'static str,
    /// The `SELECT` of an unexpired row.
    pub lookup: &'static str,
    /// The compare-and-set `UPDATE` of a live record.
    pub save: &'static str,
    /// The `SELECT` of a live record.
    pub exists: &'static str,
    /// The `UPDATE` of a live record's `expires_at`.
    pub touch: &'static str,
    /// The compare-and-set `UPDATE` leaving an ended marker.
    pub end: &'static str,
    /// The `DELETE` under a key.
    pub delete: &'static str,
    /// The `DELETE` under a key at one version.
    pub delete_version: &'static str,
    /// The `DELETE` of one batch of expired rows.
    pub clear_batch: &'static str,
}

/// The [`Templates`] in `src/sql/<database>/`: `templates!("sqlite")`, or
/// `templates!("mysql", create_index: None)` for a database whose table statement
/// declares the index.
macro_rules! templates {
    ($db:literal) => {
        $crate::common::templates!(
            $db,
            create_index: Some(include_str!(concat!("sql/", $db, "/create_index.sql")))
        )
    };
    ($db:literal, create_index: $index:expr) => {
        $crate::common::Templates {
            create_table: include_str!(concat!("sql/", $db, "/create_table.sql")),
            create_index: $index,
            create: include_str!(concat!("sql/", $db, "/create.sql")),
            lookup: include_str!(concat!("sql/", $db, "/lookup.sql")),
            save: include_str!(concat!("sql/", $db, "/save.sql")),
            exists: include_str!(concat!("sql/", $db, "/exists.sql")),
            touch: include_str!(concat!("sql/", $db, "/touch.sql")),
            end: include_str!(concat!("sql/", $db, "/end.sql")),
            delete: include_str!(concat!("sql/", $db, "/delete.sql")),
            delete_version: include_str!(concat!("sql/", $db, "/delete_version.sql")),
            clear_batch: include_str!(concat!("sql/", $db, "/clear_batch.sql")),
        }
    };
}
pub(crate) use templates;

/// The statements of one store, rendered once for its table. Cloning an `Arc<str>` per
/// call is what lets sqlx find the prepared statement in its per-connection cache.
#[derive(Clone)]
pub(crate) struct Statements {
    pub(crate) create_table: Arc<str>,
    pub(crate) create_index: Option<Arc<str>>,
    pub(crate) create: Arc<str>,
    pub(crate) lookup: Arc<str>,
    pub(crate) save: Arc<str>,
    pub(crate) exists: Arc<str>,
    pub(crate) touch: Arc<str>,
    pub(crate) end: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) delete_version: Arc<str>,
    pub(crate) clear_batch: Arc<str>,
}

impl Statements {
    /// `table` and `index` must be quoted names built from validated identifiers only.
    pub(crate) fn render(t: &Templates, table: &str, index: &str) -> Self {
        let r = |s: &str| render(s, table, index);
        Self {
            create_table: r(t.create_table),
            create_index: t.create_index.map(r),
            create: r(t.create),
            lookup: r(t.lookup),
            save: r(t.save),
            exists: r(t.exists),
            touch: r(t.touch),
            end: r(t.end),
            delete: r(t.delete),
            delete_version: r(t.delete_version),
            clear_batch: r(t.clear_batch),
        }
    }
}

/// A rendered statement as sqlx takes it.
///
/// Sound because every [`Statements`] field is a template from this crate with only
/// validated identifiers spliced in; values always travel as bound parameters.
pub(crate) fn sql(statement: &Arc<str>) -> sqlx::AssertSqlSafe<Arc<str>> {
    sqlx::AssertSqlSafe(Arc::clone(statement))
}
