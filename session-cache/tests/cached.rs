//! CachedStore over an in-process cache: the conformance suite, the races it must survive
//! and a cache that fails.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json::json;
use session_cache::{CachedStore, MokaStore, SessionCache};
use session_core::conformance::Factory;
use session_core::{
    Capabilities, Data, Error, Lookup, MemoryStore, Record, Result, SessionKey, StorageId, Store,
    async_trait,
};
use session_db::{SqliteStore, TableName};
use time::OffsetDateTime;

#[path = "common/browse.rs"]
mod browse;

use browse::{login, logout, manager, user};

/// A named in-memory SQLite database per namespace: two handles on one namespace share it,
/// and tests never contend for one database's schema lock (shared-cache table locks are
/// not covered by the busy timeout). It lives as long as a handle on it is open.
async fn sqlite(ns: &str) -> SqliteStore {
    let url = format!("sqlite:file:session_cache_{ns}?mode=memory&cache=shared");
    let store = SqliteStore::builder()
        .with_table_name(TableName::new(ns).expect("a valid table name"))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    store.migrate().await.expect("migrate");
    store
}

/// The moka cache of namespace `ns`: two handles on one namespace share it.
fn moka(ns: &str) -> MokaStore {
    static CACHES: LazyLock<Mutex<HashMap<String, MokaStore>>> = LazyLock::new(Mutex::default);
    CACHES
        .lock()
        .unwrap()
        .entry(ns.to_owned())
        .or_default()
        .clone()
}

struct CachedSqlite;

#[async_trait]
impl Factory for CachedSqlite {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(CachedStore::new(moka(ns), sqlite(ns).await))
    }
}

session_core::conformance_tests!(cached_moka_sqlite, CachedSqlite);

fn one(k: &str, v: serde_json::Value) -> Record {
    let mut data = Data::new();
    data.insert(k.into(), v);
    Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1))
}

async fn save_value(store: &impl Store, key: &SessionKey, v: serde_json::Value) {
    let mut r = store.load(key).await.unwrap().expect("stored");
    Arc::make_mut(&mut r.data).insert("v".into(), v);
    store.save(key, &r).await.unwrap();
}

#[tokio::test]
async fn reads_come_from_the_cache_and_writes_reach_the_database() {
    let ns = session_core::conformance::fresh_namespace();
    let store = CachedStore::new(MokaStore::new(), sqlite(&ns).await);
    let key = store.create(&one("v", json!(1))).await.unwrap();
    save_value(&store, &key, json!(2)).await;
    let id = key.storage_id();
    assert_eq!(store.cache().get(&id).await.unwrap().unwrap().data["v"], 2);
    assert_eq!(store.db().load(&key).await.unwrap().unwrap().data["v"], 2);
    // Proof that loads are served by the cache: a change made behind the cache's back
    // is not seen until the cache entry goes.
    let mut r = store.db().load(&key).await.unwrap().unwrap();
    Arc::make_mut(&mut r.data).insert("v".into(), json!("db only"));
    store.db().save(&key, &r).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().data["v"], 2);
    store.cache().invalidate_all();
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().data["v"],
        "db only"
    );
}

#[tokio::test]
async fn serves_correct_data_when_the_cache_is_flushed_behind_its_back() {
    let ns = session_core::conformance::fresh_namespace();
    let store = CachedStore::new(MokaStore::new(), sqlite(&ns).await);
    let key = store.create(&one("v", json!(1))).await.unwrap();
    save_value(&store, &key, json!(2)).await;
    store.cache().invalidate_all();
    let r = store
        .load(&key)
        .await
        .unwrap()
        .expect("refilled from the database");
    assert_eq!((r.version, r.data["v"].clone()), (2, json!(2)));
    // The refill is in the cache again, and later writes keep it current.
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_some()
    );
    save_value(&store, &key, json!(3)).await;
    store.cache().invalidate_all();
    save_value(&store, &key, json!(4)).await;
    let r = store.load(&key).await.unwrap().unwrap();
    assert_eq!((r.version, r.data["v"].clone()), (4, json!(4)));
    store.cache().invalidate_all();
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
}

/// A database whose next `load` pauses after reading, until the test releases it: the
/// slow request of a race.
#[derive(Clone, Debug, Default)]
struct PausingDb {
    inner: MemoryStore,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Store for PausingDb {
    async fn create(&self, r: &Record) -> Result<SessionKey> {
        self.inner.create(r).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.lookup(key).await.map(Lookup::into_live)
    }
    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        let got = self.inner.lookup(key).await;
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
            self.gate.release.notified().await;
        }
        got
    }
    async fn save(&self, key: &SessionKey, r: &Record) -> Result<SessionKey> {
        self.inner.save(key, r).await
    }
    async fn touch(&self, key: &SessionKey, at: OffsetDateTime) -> Result<SessionKey> {
        self.inner.touch(key, at).await
    }
    async fn end(&self, key: &SessionKey, version: u64, until: OffsetDateTime) -> Result<()> {
        self.inner.end(key, version, until).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn clear_expired(&self) -> Result<u64> {
        self.inner.clear_expired().await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// Starts a load that misses the cache, reads the database and stops before filling.
async fn start_slow_load(
    store: &CachedStore<MokaStore, PausingDb>,
    key: &SessionKey,
) -> tokio::task::JoinHandle<Option<Record>> {
    store.cache().invalidate_all();
    store.db().gate.armed.store(true, Ordering::SeqCst);
    let (s, k) = (store.clone(), key.clone());
    let slow = tokio::spawn(async move { s.load(&k).await.unwrap() });
    store.db().gate.reached.notified().await;
    slow
}

#[tokio::test]
async fn a_late_fill_does_not_overwrite_a_newer_save() {
    let store = CachedStore::new(MokaStore::new(), PausingDb::default());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let slow = start_slow_load(&store, &key).await;
    save_value(&store, &key, json!(2)).await; // database and cache now hold version 2
    store.db().gate.release.notify_one();
    assert_eq!(
        slow.await.unwrap().unwrap().version,
        1,
        "the slow load read version 1"
    );
    let r = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        (r.version, r.data["v"].clone()),
        (2, json!(2)),
        "the late fill won"
    );
}

#[tokio::test]
async fn a_late_fill_does_not_resurrect_a_deleted_session() {
    let store = CachedStore::new(MokaStore::new(), PausingDb::default());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let slow = start_slow_load(&store, &key).await;
    store.delete(&key).await.unwrap();
    store.db().gate.release.notify_one();
    assert!(
        slow.await.unwrap().is_some(),
        "the slow load read the session before the delete"
    );
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "the deleted session came back"
    );
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_late_fill_does_not_undo_a_touch_that_ends_the_session() {
    let store = CachedStore::new(MokaStore::new(), PausingDb::default());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let slow = start_slow_load(&store, &key).await;
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    store.touch(&key, past).await.unwrap();
    store.db().gate.release.notify_one();
    slow.await.unwrap();
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "the ended session came back"
    );
}

#[tokio::test]
async fn touch_moves_the_cached_expiry() {
    let store = CachedStore::new(MokaStore::new(), MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let later = OffsetDateTime::now_utc() + time::Duration::days(3);
    store.touch(&key, later).await.unwrap();
    let cached = store.cache().get(&key.storage_id()).await.unwrap().unwrap();
    assert_eq!(cached.expires_at, later);
}

/// A cache that always fails.
#[derive(Debug)]
struct DownCache;

fn down() -> Error {
    Error::backend("test-cache", "the cache is down")
}

#[async_trait]
impl SessionCache for DownCache {
    async fn get(&self, _: &StorageId) -> Result<Option<Record>> {
        Err(down())
    }
    async fn put_if_newer(&self, _: &StorageId, _: &Record, _: Option<Duration>) -> Result<bool> {
        Err(down())
    }
    async fn extend(&self, _: &StorageId, _: OffsetDateTime, _: Option<Duration>) -> Result<bool> {
        Err(down())
    }
    async fn tombstone(&self, _: &StorageId, _: Duration) -> Result<()> {
        Err(down())
    }
}

#[tokio::test]
async fn a_failing_cache_never_fails_a_request() {
    let store = CachedStore::new(DownCache, MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    save_value(&store, &key, json!(2)).await;
    let later = OffsetDateTime::now_utc() + time::Duration::days(1);
    store.touch(&key, later).await.unwrap();
    let r = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        (r.version, r.data["v"].clone(), r.expires_at),
        (2, json!(2), later)
    );
    // The database's verdicts still come through.
    let mut stale = r.clone();
    stale.version = 1;
    assert!(matches!(
        store.save(&key, &stale).await,
        Err(Error::Conflict)
    ));
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    assert!(matches!(store.save(&key, &r).await, Err(Error::NotFound)));
}

/// A moka cache that can be switched off (every call fails) and back on, keeping what it
/// held: a Redis that was unreachable for a while.
#[derive(Clone, Debug, Default)]
struct FlakyCache {
    inner: MokaStore,
    down: Arc<AtomicBool>,
}

impl FlakyCache {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(down())
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionCache for FlakyCache {
    async fn get(&self, id: &StorageId) -> Result<Option<Record>> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn put_if_newer(&self, id: &StorageId, r: &Record, d: Option<Duration>) -> Result<bool> {
        self.check()?;
        self.inner.put_if_newer(id, r, d).await
    }
    async fn extend(
        &self,
        id: &StorageId,
        at: OffsetDateTime,
        d: Option<Duration>,
    ) -> Result<bool> {
        self.check()?;
        self.inner.extend(id, at, d).await
    }
    async fn tombstone(&self, id: &StorageId, ttl: Duration) -> Result<()> {
        self.check()?;
        self.inner.tombstone(id, ttl).await
    }
}

#[tokio::test]
async fn a_cache_that_missed_a_save_never_serves_the_older_copy() {
    let store = CachedStore::new(FlakyCache::default(), MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some()); // cached: version 1
    store.cache().down.store(true, Ordering::SeqCst);
    save_value(&store, &key, json!(2)).await; // the cache still holds version 1
    store.cache().down.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        let r = store.load(&key).await.unwrap().unwrap();
        assert_eq!(
            (r.version, r.data["v"].clone()),
            (2, json!(2)),
            "served the copy the save could not replace"
        );
    }
    // The deleted session is not served from the stale copy either.
    store.cache().down.store(true, Ordering::SeqCst);
    store.delete(&key).await.unwrap();
    store.cache().down.store(false, Ordering::SeqCst);
    assert!(store.load(&key).await.unwrap().is_none());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_cache_on_a_dead_port_never_fails_a_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = session_cache::RedisStore::builder()
        .with_connect_timeout(Duration::from_millis(200))
        .with_response_timeout(Duration::from_millis(200))
        .connect_lazy(&format!("redis://127.0.0.1:{port}/"))
        .unwrap();
    let store = CachedStore::new(cache, MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    save_value(&store, &key, json!(2)).await;
    let r = store.load(&key).await.unwrap().unwrap();
    assert_eq!((r.version, r.data["v"].clone()), (2, json!(2)));
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
}

fn remember() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::minutes(1)
}

#[tokio::test]
async fn end_drops_the_cached_copy_and_lookup_reports_the_database_s_marker() {
    let store = CachedStore::new(MokaStore::new(), MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let id = key.storage_id();
    assert!(store.cache().get(&id).await.unwrap().is_some(), "cached");
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Live(_)));
    store.end(&key, 1, remember()).await.unwrap();
    assert!(store.cache().get(&id).await.unwrap().is_none());
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
    assert!(store.load(&key).await.unwrap().is_none());
    // The marker is never cached: the database still answers, and still says ended.
    assert!(store.cache().get(&id).await.unwrap().is_none());
    assert!(matches!(
        store.db().lookup(&key).await.unwrap(),
        Lookup::Ended
    ));
}

#[tokio::test]
async fn end_passes_the_database_s_verdict_through_and_drops_the_entry() {
    let store = CachedStore::new(MokaStore::new(), MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    save_value(&store, &key, json!(2)).await;
    // A copy of version 1 left in the cache behind the store's back.
    let mut old = store.db().load(&key).await.unwrap().unwrap();
    old.version = 1;
    store.cache().invalidate_all();
    store
        .cache()
        .put_if_newer(&key.storage_id(), &old, None)
        .await
        .unwrap();
    assert!(matches!(
        store.end(&key, 1, remember()).await,
        Err(Error::Conflict)
    ));
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_none(),
        "the stale copy survived a conflicting end"
    );
    assert_eq!(store.load(&key).await.unwrap().unwrap().version, 2);
    assert!(matches!(
        store.end(&SessionKey::generate(), 1, remember()).await,
        Err(Error::NotFound)
    ));
    let bad = SessionKey::parse("../x").unwrap();
    assert!(matches!(
        store.end(&bad, 1, remember()).await,
        Err(Error::InvalidKey)
    ));
}

#[tokio::test]
async fn a_late_fill_does_not_resurrect_an_ended_session() {
    let store = CachedStore::new(MokaStore::new(), PausingDb::default());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let slow = start_slow_load(&store, &key).await;
    store.end(&key, 1, remember()).await.unwrap();
    store.db().gate.release.notify_one();
    assert!(
        slow.await.unwrap().is_some(),
        "the slow load read the session before the end"
    );
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_none(),
        "the late fill cached the ended session"
    );
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
}

#[tokio::test]
async fn an_end_the_cache_missed_never_leaves_a_live_copy_served() {
    let store = CachedStore::new(FlakyCache::default(), MemoryStore::new());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some()); // cached: version 1
    store.cache().down.store(true, Ordering::SeqCst);
    store.end(&key, 1, remember()).await.unwrap(); // the cache still holds version 1
    store.cache().down.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(
            matches!(store.lookup(&key).await.unwrap(), Lookup::Ended),
            "served the copy the end could not drop"
        );
    }
}

/// A database that answers every `end` with a timeout after ending the session: the
/// cached copy must go all the same.
#[derive(Clone, Debug, Default)]
struct TimesOutAfterEnding(MemoryStore);

#[async_trait]
impl Store for TimesOutAfterEnding {
    async fn create(&self, r: &Record) -> Result<SessionKey> {
        self.0.create(r).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.0.load(key).await
    }
    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        self.0.lookup(key).await
    }
    async fn save(&self, key: &SessionKey, r: &Record) -> Result<SessionKey> {
        self.0.save(key, r).await
    }
    async fn touch(&self, key: &SessionKey, at: OffsetDateTime) -> Result<SessionKey> {
        self.0.touch(key, at).await
    }
    async fn end(&self, key: &SessionKey, version: u64, until: OffsetDateTime) -> Result<()> {
        self.0.end(key, version, until).await?;
        Err(Error::Timeout {
            store: "test-db",
            after: Duration::from_millis(1),
        })
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.0.delete(key).await
    }
    async fn clear_expired(&self) -> Result<u64> {
        self.0.clear_expired().await
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

#[tokio::test]
async fn an_end_that_failed_after_ending_still_drops_the_cached_copy() {
    let store = CachedStore::new(MokaStore::new(), TimesOutAfterEnding::default());
    let key = store.create(&one("v", json!(1))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
    assert!(matches!(
        store.end(&key, 1, remember()).await,
        Err(Error::Timeout { .. })
    ));
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "served an ended session"
    );
}

/// The issue this bound exists for: the database ends a session behind the cache's back
/// (here written to the database directly; in production a logout through another process
/// with its own cache, or a cache copy revived by a Redis failover). Requests through the
/// manager keep getting the cached session until the staleness bound has passed since the
/// cache was filled, then never again.
#[tokio::test]
async fn a_session_ended_behind_the_cache_is_served_until_max_staleness_then_not() {
    let bound = Duration::from_millis(1500);
    let store = CachedStore::new(MokaStore::new(), MemoryStore::new()).with_max_staleness(bound);
    assert_eq!(store.max_staleness(), Some(bound));
    let m = manager(store.clone());
    let filled = std::time::Instant::now();
    let cookie = login(&m, "ada").await; // database, then cache
    let key = SessionKey::parse(&cookie).unwrap();
    store.db().end(&key, 1, remember()).await.unwrap();
    assert_eq!(
        user(&m, &cookie).await.as_deref(),
        Some("ada"),
        "the cache is expected to serve its copy within the bound"
    );
    assert!(
        filled.elapsed() < bound,
        "too slow to observe the cached copy"
    );
    tokio::time::sleep(bound.saturating_sub(filled.elapsed()) + Duration::from_millis(100)).await;
    assert_eq!(
        user(&m, &cookie).await,
        None,
        "served an ended session past max_staleness"
    );
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_none(),
        "the ended session was cached again"
    );
}

/// Two processes, each with its own in-process cache, over one database: a logout through
/// one is seen by the other within the staleness bound. A live session's cache copy is
/// refreshed after the bound (one database read) and keeps being served.
#[tokio::test]
async fn a_logout_through_another_process_reaches_this_cache_within_max_staleness() {
    let bound = Duration::from_millis(1500);
    let db = MemoryStore::new();
    let a = manager(CachedStore::new(MokaStore::new(), db.clone()).with_max_staleness(bound));
    let b_store = CachedStore::new(MokaStore::new(), db.clone()).with_max_staleness(bound);
    let b = manager(b_store.clone());
    let cookie = login(&a, "ada").await;
    let other = login(&a, "bob").await;
    let filled = std::time::Instant::now();
    assert_eq!(user(&b, &cookie).await.as_deref(), Some("ada")); // now in b's cache too
    assert_eq!(user(&b, &other).await.as_deref(), Some("bob"));
    let commit = logout(&a, &cookie).await.unwrap();
    assert!(matches!(
        commit.cookie,
        session_core::CookieAction::Remove(_)
    ));
    assert_eq!(
        user(&a, &cookie).await,
        None,
        "the logging-out process serves it"
    );
    tokio::time::sleep(bound.saturating_sub(filled.elapsed()) + Duration::from_millis(100)).await;
    assert_eq!(
        user(&b, &cookie).await,
        None,
        "the other process served a logged-out session past max_staleness"
    );
    assert_eq!(user(&b, &other).await.as_deref(), Some("bob"));
    let key = SessionKey::parse(&other).unwrap();
    assert!(
        b_store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_some(),
        "a live session was not cached again after its revalidation"
    );
}

/// Without a bound a cached copy is served until the session's own expiry, as Django's
/// `cached_db` does: the database's end goes unseen.
#[tokio::test]
async fn without_max_staleness_a_copy_is_served_until_the_session_expires() {
    let store = CachedStore::new(MokaStore::new(), MemoryStore::new()).with_max_staleness(None);
    assert_eq!(store.max_staleness(), None);
    let m = manager(store.clone());
    let cookie = login(&m, "ada").await;
    let key = SessionKey::parse(&cookie).unwrap();
    store.db().end(&key, 1, remember()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(user(&m, &cookie).await.as_deref(), Some("ada"));
    assert_eq!(
        CachedStore::new(MokaStore::new(), MemoryStore::new()).max_staleness(),
        Some(session_cache::DEFAULT_MAX_STALENESS)
    );
}

/// A fill whose database call took longer than the whole bound is not cached at all.
#[tokio::test]
async fn a_fill_slower_than_the_bound_is_not_cached() {
    let store = CachedStore::new(MokaStore::new(), PausingDb::default())
        .with_max_staleness(Duration::from_millis(200));
    let key = store.create(&one("v", json!(1))).await.unwrap();
    let slow = start_slow_load(&store, &key).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.db().gate.release.notify_one();
    assert!(slow.await.unwrap().is_some());
    assert!(
        store
            .cache()
            .get(&key.storage_id())
            .await
            .unwrap()
            .is_none(),
        "a fill older than the bound was cached"
    );
}
