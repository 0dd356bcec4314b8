//! The tests every SQL store runs, over a [`Harness`] each test binary implements for
//! its database, and the macros that declare them there. Each test binary uses a subset.
#![allow(dead_code, unused_macros, unused_imports)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use session_core::conformance::Factory;
use session_core::serde_json::json;
use session_core::{Data, Error, Record, SessionKey, Store, async_trait};
use session_db::{ClearStats, TableName};
use sqlx::{Column, Row};
use time::{Duration, OffsetDateTime};

/// What every SQL store type has besides [`Store`], for the generic tests; [`sql_store!`]
/// implements it for one store type with the store's own methods.
pub(crate) trait SqlStoreApi: Store + Clone + Sized + 'static {
    /// `builder()`, with `table` and, if given, `batch` as the `clear_expired` batch size,
    /// `connect(url)`: a pool of its own.
    fn connect_to(
        url: &str,
        table: &str,
        batch: Option<NonZeroU32>,
    ) -> impl Future<Output = session_core::Result<Self>> + Send;

    /// `builder()` with `acquire_timeout`, then `connect_lazy(url)` if `lazy`, else
    /// `connect(url)`.
    fn from_url(
        url: &str,
        acquire_timeout: StdDuration,
        lazy: bool,
    ) -> impl Future<Output = session_core::Result<Self>> + Send;

    /// `migrate()`.
    fn migrate(&self) -> impl Future<Output = session_core::Result<()>> + Send;

    /// `clear_expired_in_batches()`.
    fn clear_expired_in_batches(
        &self,
    ) -> impl Future<Output = session_core::Result<ClearStats>> + Send;
}

/// Implements [`SqlStoreApi`] for the store type `$store`.
macro_rules! sql_store {
    ($store:ty) => {
        impl $crate::common::SqlStoreApi for $store {
            async fn connect_to(
                url: &str,
                table: &str,
                batch: Option<::std::num::NonZeroU32>,
            ) -> ::session_core::Result<Self> {
                let table = ::session_db::TableName::new(table).expect("a valid table name");
                let mut builder = <$store>::builder().with_table_name(table);
                if let Some(rows) = batch {
                    builder = builder.with_clear_batch_size(rows);
                }
                builder.connect(url).await
            }

            async fn from_url(
                url: &str,
                acquire_timeout: ::std::time::Duration,
                lazy: bool,
            ) -> ::session_core::Result<Self> {
                let builder = <$store>::builder().with_acquire_timeout(acquire_timeout);
                if lazy {
                    builder.connect_lazy(url)
                } else {
                    builder.connect(url).await
                }
            }

            async fn migrate(&self) -> ::session_core::Result<()> {
                <$store>::migrate(self).await
            }

            async fn clear_expired_in_batches(
                &self,
            ) -> ::session_core::Result<::session_db::ClearStats> {
                <$store>::clear_expired_in_batches(self).await
            }
        }
    };
}
pub(crate) use sql_store;

/// One database as the shared tests see it: its store type, where its tables live, and
/// the few things done with SQL of its own dialect rather than through the store.
#[async_trait]
pub(crate) trait Harness: Send + Sync + 'static {
    /// `SqliteStore`, `PostgresStore` or `MySqlStore`.
    type Store: SqlStoreApi;

    /// The URL of the database holding `table`.
    fn url(&self, table: &str) -> String;

    /// Drops the store's table.
    async fn drop_table(&self, store: &Self::Store);

    /// Every cell of every row (`SELECT *`), as bytes; see [`cells`].
    async fn scan(&self, store: &Self::Store) -> Vec<Vec<Vec<u8>>>;

    /// The row under the hex storage id `id`, read directly.
    async fn read_row(&self, store: &Self::Store, id: &str) -> Option<RawRow>;

    /// Overwrites the payload of the row under the hex storage id `id`.
    async fn set_payload(&self, store: &Self::Store, id: &str, payload: &[u8]);

    /// Inserts `rows` rows that expired an hour ago, with payload `{}`, version 1 and ids
    /// 1 to `rows` in 64 hex digits, in one statement.
    async fn insert_expired(&self, store: &Self::Store, rows: u32);

    /// A store on `table` with a pool of its own, not migrated; `batch` is its
    /// `clear_expired` batch size (the default when `None`).
    async fn connect(&self, table: &str, batch: Option<NonZeroU32>) -> Self::Store {
        let url = self.url(table);
        Self::Store::connect_to(&url, table, batch)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"))
    }

    /// A migrated store on `table`.
    async fn open(&self, table: &str) -> Self::Store {
        let store = self.connect(table, None).await;
        store.migrate().await.expect("migrate");
        store
    }
}

/// A database behind a server: what the tests of a server going away need.
pub(crate) trait ServerHarness: Harness {
    /// A URL of this database's scheme naming a closed port.
    const CLOSED_PORT_URL: &'static str;

    /// The test server's `host:port`.
    fn upstream(&self) -> String;

    /// A store on `table` whose lazily connected pool reaches the server through
    /// `127.0.0.1:port` and waits at most a second for a connection.
    fn through(&self, port: u16, table: &str) -> Self::Store;
}

/// The conformance suite's view of a [`Harness`]: a namespace is a table.
pub(crate) struct Conformance<H>(pub(crate) H);

#[async_trait]
impl<H: Harness> Factory for Conformance<H> {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(self.0.open(ns).await)
    }

    async fn cleanup(&self, ns: &str) {
        let store = self.0.open(ns).await;
        self.0.drop_table(&store).await;
    }
}

/// Declares the tests of [`Harness`] `$harness` (an expression), ignored with `$reason`
/// if given.
macro_rules! store_tests {
    ($harness:expr $(, ignore = $reason:literal)? $(,)?) => {
        $crate::common::store_tests!(@each $harness, [$(#[ignore = $reason])?],
            raw_key_appears_nowhere_in_the_table,
            ended_marker_row_holds_no_data,
            garbage_payload_loads_as_none_and_is_removed,
            migrate_twice_and_concurrently,
            two_tables_do_not_see_each_other,
            clear_expired_removes_100k_expired_rows_in_batches,
            clear_batch_size_is_configurable,
        );

        #[test]
        fn invalid_table_names_are_refused() {
            $crate::common::invalid_table_names_are_refused();
        }
    };
    (@each $harness:expr, $attrs:tt, $($name:ident,)*) => {
        $($crate::common::store_tests!(@one $harness, [tokio::test], $attrs, $name);)*
    };
    (@one $harness:expr, [$($test:tt)*], [$($attr:tt)*], $name:ident) => {
        #[$($test)*]
        $($attr)*
        async fn $name() {
            $crate::common::$name(&$harness).await;
        }
    };
}
pub(crate) use store_tests;

/// Declares the tests of [`ServerHarness`] `$harness` that need its server, ignored with
/// `$reason`, and the one that needs none.
macro_rules! server_tests {
    ($harness:expr, ignore = $reason:literal $(,)?) => {
        $crate::common::store_tests!(@one $harness,
            [tokio::test(flavor = "multi_thread", worker_threads = 4)], [#[ignore = $reason]],
            saves_racing_a_delete_never_fail);
        $crate::common::store_tests!(@one $harness,
            [tokio::test(flavor = "multi_thread", worker_threads = 2)], [#[ignore = $reason]],
            the_store_works_again_when_the_database_comes_back);
        $crate::common::store_tests!(@one $harness, [tokio::test], [],
            closed_port_is_a_backend_error_within_the_acquire_timeout);
    };
}
pub(crate) use server_tests;

/// Table names every store must refuse before running any SQL.
pub(crate) const INVALID_TABLE_NAMES: &[&str] = &[
    "a;drop",
    "sessions; DROP TABLE users; --",
    "1abc",
    "",
    "a b",
    " sessions",
    "\"sessions\"",
    "'sessions'",
    "`sessions`",
    "public.sessions",
    "Sessions",
    "séances",
    "会话",
    "a\u{0}b",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // 49 bytes
];

/// A fresh table name for one test.
pub(crate) fn fresh_table(prefix: &str) -> String {
    format!("{prefix}_{}", &SessionKey::generate().as_str()[..10])
}

pub(crate) fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

pub(crate) fn an_hour_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::hours(1)
}

pub(crate) fn record(value: &str) -> Record {
    let mut data = Data::new();
    data.insert("value".into(), json!(value));
    Record::new(data, in_an_hour())
}

/// One row as the table holds it, read with SQL rather than through the store.
pub(crate) struct RawRow {
    pub(crate) payload: Vec<u8>,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) version: i64,
}

/// Every column of `rows`, as bytes: text and blobs as they are, integers in decimal,
/// anything else as `other` (which reads the database's timestamp type) renders it.
pub(crate) fn cells<R>(rows: &[R], other: impl Fn(&R, usize) -> Option<String>) -> Vec<Vec<Vec<u8>>>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let cell = |row: &R, column: &<R::Database as sqlx::Database>::Column| {
        let i = column.ordinal();
        if let Ok(s) = row.try_get::<String, _>(i) {
            s.into_bytes()
        } else if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
            b
        } else if let Ok(n) = row.try_get::<i64, _>(i) {
            n.to_string().into_bytes()
        } else if let Some(s) = other(row, i) {
            s.into_bytes()
        } else {
            panic!("column {} could not be read", column.name());
        }
    };
    rows.iter()
        .map(|row| row.columns().iter().map(|c| cell(row, c)).collect())
        .collect()
}

/// Fails if the key, as text, occurs in any stored cell; checks the cells hold the
/// storage id instead, so an empty scan cannot pass.
fn assert_key_absent(rows: &[Vec<Vec<u8>>], key: &SessionKey) {
    let needle = key.as_str().as_bytes();
    assert_eq!(
        hits(rows, needle),
        0,
        "the raw session key was found in a stored column"
    );
    let id = key.storage_id().to_hex();
    assert!(
        rows.iter().flatten().any(|c| c == id.as_bytes()),
        "the storage id is not among the scanned cells: the scan saw nothing"
    );
}

/// How many cells of `rows` contain `needle`.
fn hits(rows: &[Vec<Vec<u8>>], needle: &[u8]) -> usize {
    rows.iter()
        .flatten()
        .filter(|cell| cell.windows(needle.len()).any(|w| w == needle))
        .count()
}

pub(crate) async fn raw_key_appears_nowhere_in_the_table<H: Harness>(h: &H) {
    let store = h.open(&fresh_table("t")).await;
    let key = store.create(&record("first")).await.expect("create");
    assert_key_absent(&h.scan(&store).await, &key);
    let mut r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).insert("k".into(), key.as_str().into());
    store.save(&key, &r).await.expect("save");
    // The key was put into the data on purpose: it must then appear in the payload only.
    assert_eq!(
        hits(&h.scan(&store).await, key.as_str().as_bytes()),
        1,
        "the key must appear in the payload it was put in, nowhere else"
    );
    r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).remove("k");
    store.save(&key, &r).await.expect("save");
    assert_key_absent(&h.scan(&store).await, &key);
    h.drop_table(&store).await;
}

/// A value that must not survive in the table once its session has ended.
const ENDED_SECRET: &str = "ended-session-secret";

/// Saves a session holding [`ENDED_SECRET`], ends it, and checks (reading the row
/// directly) that what is left is a bare ended marker: version 0, an empty payload,
/// `expires_at` at the instant `end` was given, and the secret nowhere in the table.
/// Then checks that nothing writes through the marker: a `save` at version 0 (a record
/// never stored), a `touch` and a second `end` all answer `NotFound` and leave the row
/// as it was.
pub(crate) async fn ended_marker_row_holds_no_data<H: Harness>(h: &H) {
    let store = h.open(&fresh_table("e")).await;
    let key = store.create(&record("first")).await.expect("create");
    let mut r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).insert("secret".into(), json!(ENDED_SECRET));
    store.save(&key, &r).await.expect("save");
    let id = key.storage_id().to_hex();
    let before = h.read_row(&store, &id).await.expect("the saved row");
    assert_eq!(before.version, 2);
    assert!(!before.payload.is_empty());

    // Whole seconds, which every dialect keeps exactly.
    let until = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("now")
        + Duration::minutes(5);
    store.end(&key, 2, until).await.expect("end");
    let assert_marker = |row: Option<RawRow>, after: &str| {
        let row = row.unwrap_or_else(|| panic!("{after}: the marker row is gone"));
        assert_eq!(row.version, 0, "{after}: the marker's version");
        assert!(
            row.payload.is_empty(),
            "{after}: the marker holds a payload of {} bytes",
            row.payload.len()
        );
        assert_eq!(row.expires_at, until, "{after}: the marker's expires_at");
    };
    assert_marker(h.read_row(&store, &id).await, "end");
    assert!(matches!(
        store.lookup(&key).await,
        Ok(session_core::Lookup::Ended)
    ));
    assert!(store.load(&key).await.expect("load").is_none());

    let never_stored = record("intruder");
    assert_eq!(never_stored.version, 0);
    assert!(matches!(
        store.save(&key, &never_stored).await,
        Err(Error::NotFound)
    ));
    assert_marker(h.read_row(&store, &id).await, "save at version 0");
    assert!(matches!(
        store.touch(&key, in_an_hour()).await,
        Err(Error::NotFound)
    ));
    assert_marker(h.read_row(&store, &id).await, "touch");
    for version in [0, 2] {
        assert!(matches!(
            store.end(&key, version, in_an_hour()).await,
            Err(Error::NotFound)
        ));
        assert_marker(h.read_row(&store, &id).await, "a second end");
    }

    let rows = h.scan(&store).await;
    assert!(!rows.is_empty(), "the scan saw nothing");
    assert_eq!(
        hits(&rows, ENDED_SECRET.as_bytes()),
        0,
        "the ended session's data is still stored"
    );
    h.drop_table(&store).await;
}

pub(crate) async fn garbage_payload_loads_as_none_and_is_removed<H: Harness>(h: &H) {
    let store = h.open(&fresh_table("t")).await;
    let good = store.create(&record("good")).await.expect("create");
    for garbage in [&b"\xff\xfe not json"[..], b"{}", b"[1,2]", b""] {
        let key = store.create(&record("soon garbage")).await.expect("create");
        let id = key.storage_id().to_hex();
        h.set_payload(&store, &id, garbage).await;
        assert!(store.load(&key).await.expect("load").is_none());
        assert!(
            h.read_row(&store, &id).await.is_none(),
            "the garbage row was not removed"
        );
    }
    assert!(store.load(&good).await.expect("load").is_some());
    h.drop_table(&store).await;
}

pub(crate) async fn migrate_twice_and_concurrently<H: Harness>(h: &H) {
    let a = h.open(&fresh_table("m")).await;
    let key = a.create(&record("kept")).await.expect("create");
    a.migrate().await.expect("second migrate");
    a.migrate().await.expect("third migrate");
    assert!(
        a.load(&key).await.expect("load").is_some(),
        "migrate lost data"
    );
    h.drop_table(&a).await;

    // Several rounds of stores with pools of their own: an unguarded concurrent CREATE
    // TABLE IF NOT EXISTS fails now and then.
    for _ in 0..5 {
        let table = fresh_table("m");
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(h.connect(&table, None).await);
        }
        let (r0, r1, r2, r3) = tokio::join!(
            stores[0].migrate(),
            stores[1].migrate(),
            stores[2].migrate(),
            stores[3].migrate(),
        );
        for migrated in [r0, r1, r2, r3] {
            migrated.expect("concurrent migrate");
        }
        let key = stores[0].create(&record("x")).await.expect("create");
        assert!(stores[3].load(&key).await.expect("load").is_some());
        h.drop_table(&stores[0]).await;
    }
}

/// Creates and saves through `a`, then checks `b` (another table) sees none of it, and
/// that deleting through `b` leaves `a`'s record alone.
pub(crate) async fn two_tables_do_not_see_each_other<H: Harness>(h: &H) {
    let a = h.open(&fresh_table("t")).await;
    let b = h.open(&fresh_table("t")).await;
    let key = a.create(&record("a")).await.expect("create in a");
    assert!(b.load(&key).await.expect("load in b").is_none());
    let mut r = a.load(&key).await.expect("load").expect("stored");
    assert!(matches!(b.save(&key, &r).await, Err(Error::NotFound)));
    b.delete(&key).await.expect("delete in b");
    Arc::make_mut(&mut r.data).insert("more".into(), json!(1));
    a.save(&key, &r).await.expect("save in a");
    assert_eq!(
        a.load(&key).await.expect("load").expect("stored").version,
        2
    );
    let key_b = b.create(&record("b")).await.expect("create in b");
    assert!(a.load(&key_b).await.expect("load in a").is_none());
    h.drop_table(&a).await;
    h.drop_table(&b).await;
}

pub(crate) fn invalid_table_names_are_refused() {
    for bad in INVALID_TABLE_NAMES {
        assert!(TableName::new(bad).is_err(), "{bad:?} was accepted");
    }
}

pub(crate) async fn clear_expired_removes_100k_expired_rows_in_batches<H: Harness>(h: &H) {
    let store = h.open(&fresh_table("c")).await;
    let mut live = Vec::new();
    for i in 0..5 {
        live.push(store.create(&record(&i.to_string())).await.expect("create"));
    }
    h.insert_expired(&store, 100_000).await;
    let stats = store.clear_expired_in_batches().await.expect("clear");
    assert_eq!(stats.removed, 100_000);
    assert_eq!(
        stats.statements, 101,
        "1000-row batches, then one that found none"
    );
    for key in &live {
        assert!(
            store.load(key).await.expect("load").is_some(),
            "a live row went"
        );
    }
    assert_eq!(h.scan(&store).await.len(), 5);
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
    h.drop_table(&store).await;
}

pub(crate) async fn clear_batch_size_is_configurable<H: Harness>(h: &H) {
    let store = h
        .connect(
            &fresh_table("b"),
            Some(NonZeroU32::new(3).expect("non-zero")),
        )
        .await;
    store.migrate().await.expect("migrate");
    for i in 0..7 {
        let mut r = record(&i.to_string());
        r.expires_at = an_hour_ago();
        store.create(&r).await.expect("create");
    }
    let stats = store.clear_expired_in_batches().await.expect("clear");
    assert_eq!((stats.removed, stats.statements), (7, 3));
    h.drop_table(&store).await;
}

/// Many saves and touches of one session race its deletion (a logout) and a
/// `clear_expired`, round after round. Every operation must end in a verdict about the
/// session (done, `Conflict`, `NotFound`), never in a backend error: a database that picks
/// one of these statements as a deadlock victim rolls it back and the store runs it again.
/// Afterwards the deleted session stays deleted.
pub(crate) async fn saves_racing_a_delete_never_fail<H: Harness>(h: &H) {
    const WRITERS: usize = 12;
    let direct = h.open(&fresh_table("d")).await;
    let store: Arc<dyn Store> = Arc::new(direct.clone());
    for round in 0..40 {
        let key = store.create(&record("raced")).await.expect("create");
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let (store, key) = (store.clone(), key.clone());
            tasks.spawn(async move {
                for i in 0..6 {
                    let Some(mut r) = store.load(&key).await? else {
                        return Ok(());
                    };
                    let outcome = if (w + i) % 3 == 0 {
                        store.touch(&key, in_an_hour()).await.map(drop)
                    } else {
                        Arc::make_mut(&mut r.data).insert(format!("w{w}"), json!(i));
                        store.save(&key, &r).await.map(drop)
                    };
                    match outcome {
                        Ok(()) | Err(Error::Conflict) => {}
                        Err(Error::NotFound) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
        }
        {
            let (store, key) = (store.clone(), key.clone());
            tasks.spawn(async move {
                for _ in 0..(round % 5) {
                    tokio::task::yield_now().await;
                }
                store.delete(&key).await
            });
        }
        {
            let store = store.clone();
            tasks.spawn(async move { store.clear_expired().await.map(drop) });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.expect("task panicked") {
                panic!("round {round}: an operation failed instead of giving a verdict: {e}");
            }
        }
        assert!(
            store.load(&key).await.expect("load").is_none(),
            "round {round}: the deleted session came back"
        );
    }
    h.drop_table(&direct).await;
}

pub(crate) async fn closed_port_is_a_backend_error_within_the_acquire_timeout<H: ServerHarness>(
    _: &H,
) {
    let timeout = StdDuration::from_millis(500);
    let store = H::Store::from_url(H::CLOSED_PORT_URL, timeout, true)
        .await
        .expect("a valid URL");
    let started = Instant::now();
    let got = store.load(&SessionKey::generate()).await;
    assert!(matches!(got, Err(Error::Backend { .. })), "{got:?}");
    assert!(
        started.elapsed() < timeout * 10,
        "took {:?}",
        started.elapsed()
    );
    let got = H::Store::from_url(H::CLOSED_PORT_URL, timeout, false).await;
    assert!(matches!(got, Err(Error::Backend { .. })), "{:?}", got.err());
}

pub(crate) async fn the_store_works_again_when_the_database_comes_back<H: ServerHarness>(h: &H) {
    let table = fresh_table("r");
    let direct = h.open(&table).await;
    let upstream = h.upstream();
    let proxy = Proxy::start(None, &upstream).await;
    let store = h.through(proxy.port(), &table);
    let key = store
        .create(&record("x"))
        .await
        .expect("create through the proxy");

    let port = proxy.port();
    proxy.stop();
    let started = Instant::now();
    let got = store.load(&key).await;
    assert!(
        matches!(got, Err(Error::Backend { .. })),
        "database down: {got:?}"
    );
    assert!(
        started.elapsed() < StdDuration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let proxy = Proxy::start(Some(port), &upstream).await;
    let got = store.load(&key).await;
    assert!(matches!(got, Ok(Some(_))), "database back: {got:?}");
    proxy.stop();
    h.drop_table(&direct).await;
}

/// A TCP forwarder standing in for a database that goes down and comes back.
pub(crate) struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `port` (any free port if `None`) and forwards every connection to
    /// `upstream`.
    pub(crate) async fn start(port: Option<u16>, upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("local address").port();
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every forwarded connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Closes the listener and every forwarded connection.
    pub(crate) fn stop(self) {
        self.task.abort();
    }
}
