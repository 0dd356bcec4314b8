//! Helpers shared by the store-specific tests. Each test binary uses a subset.
#![allow(dead_code)]

use std::sync::Arc;

use session_core::serde_json::json;
use session_core::{Data, Record, SessionKey, Store};
use time::{Duration, OffsetDateTime};

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

/// Fails if the key, as text, occurs in any stored cell; checks the cells hold the
/// storage id instead, so an empty scan cannot pass.
pub(crate) fn assert_key_absent(cells: &[Vec<u8>], key: &SessionKey) {
    let needle = key.as_str().as_bytes();
    for cell in cells {
        assert!(
            !cell.windows(needle.len()).any(|w| w == needle),
            "the raw session key was found in a stored column"
        );
    }
    let id = key.storage_id().to_hex();
    assert!(
        cells.iter().any(|c| c == id.as_bytes()),
        "the storage id is not among the scanned cells: the scan saw nothing"
    );
}

/// Creates and saves through `a`, then checks `b` (another table) sees none of it, and
/// that deleting through `b` leaves `a`'s record alone.
pub(crate) async fn check_tables_are_isolated(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let key = a.create(&record("a")).await.expect("create in a");
    assert!(b.load(&key).await.expect("load in b").is_none());
    let mut r = a.load(&key).await.expect("load").expect("stored");
    assert!(matches!(
        b.save(&key, &r).await,
        Err(session_core::Error::NotFound)
    ));
    b.delete(&key).await.expect("delete in b");
    Arc::make_mut(&mut r.data).insert("more".into(), json!(1));
    a.save(&key, &r).await.expect("save in a");
    assert_eq!(
        a.load(&key).await.expect("load").expect("stored").version,
        2
    );
    let key_b = b.create(&record("b")).await.expect("create in b");
    assert!(a.load(&key_b).await.expect("load in a").is_none());
}

/// Creates `live` records that must survive a `clear_expired`, and one expired record.
pub(crate) async fn create_live(store: &dyn Store, live: usize) -> Vec<SessionKey> {
    let mut keys = Vec::new();
    for i in 0..live {
        keys.push(store.create(&record(&i.to_string())).await.expect("create"));
    }
    keys
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

/// Many saves and touches of one session race its deletion (a logout) and a
/// `clear_expired`, round after round. Every operation must end in a verdict about the
/// session (done, `Conflict`, `NotFound`), never in a backend error: a database that picks
/// one of these statements as a deadlock victim rolls it back and the store runs it again.
/// Afterwards the deleted session stays deleted.
pub(crate) async fn check_saves_racing_a_delete_never_fail(store: Arc<dyn Store>) {
    const WRITERS: usize = 12;
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
                        Ok(()) | Err(session_core::Error::Conflict) => {}
                        Err(session_core::Error::NotFound) => return Ok(()),
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
}

/// One row as the table holds it, read with SQL rather than through the store.
pub(crate) struct RawRow {
    pub(crate) payload: Vec<u8>,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) version: i64,
}

/// A value that must not survive in the table once its session has ended.
pub(crate) const ENDED_SECRET: &str = "ended-session-secret";

/// Saves a session holding [`ENDED_SECRET`], ends it, and checks through `read` (the row
/// under a hex storage id, read directly) that what is left is a bare ended marker:
/// version 0, an empty payload, `expires_at` at the instant `end` was given. Then checks
/// that nothing writes through the marker: a `save` at version 0 (a record never stored),
/// a `touch` and a second `end` all answer `NotFound` and leave the row as it was.
/// Returns the ended key; the caller scans the table for [`ENDED_SECRET`].
pub(crate) async fn check_ended_marker_holds_no_data<F, Fut>(
    store: &dyn Store,
    read: F,
) -> SessionKey
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<RawRow>>,
{
    let key = store.create(&record("first")).await.expect("create");
    let mut r = store.load(&key).await.expect("load").expect("stored");
    Arc::make_mut(&mut r.data).insert("secret".into(), json!(ENDED_SECRET));
    store.save(&key, &r).await.expect("save");
    let id = key.storage_id().to_hex();
    let before = read(id.clone()).await.expect("the saved row");
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
    assert_marker(read(id.clone()).await, "end");
    assert!(matches!(
        store.lookup(&key).await,
        Ok(session_core::Lookup::Ended)
    ));
    assert!(store.load(&key).await.expect("load").is_none());

    let never_stored = record("intruder");
    assert_eq!(never_stored.version, 0);
    assert!(matches!(
        store.save(&key, &never_stored).await,
        Err(session_core::Error::NotFound)
    ));
    assert_marker(read(id.clone()).await, "save at version 0");
    assert!(matches!(
        store.touch(&key, in_an_hour()).await,
        Err(session_core::Error::NotFound)
    ));
    assert_marker(read(id.clone()).await, "touch");
    for version in [0, 2] {
        assert!(matches!(
            store.end(&key, version, in_an_hour()).await,
            Err(session_core::Error::NotFound)
        ));
        assert_marker(read(id.clone()).await, "a second end");
    }
    key
}

/// Fails if `needle` occurs in any of `cells`.
pub(crate) fn assert_no_cell_contains(cells: &[Vec<u8>], needle: &str) {
    assert!(!cells.is_empty(), "the scan saw nothing");
    let needle = needle.as_bytes();
    for cell in cells {
        assert!(
            !cell.windows(needle.len()).any(|w| w == needle),
            "{:?} is still stored",
            String::from_utf8_lossy(needle)
        );
    }
}
