//! `CachedStore`: a cache in front of a database (Django's `cached_db`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::{Capabilities, Error, Lookup, Record, Result, SessionKey, StorageId, Store};
use time::OffsetDateTime;

use crate::SessionCache;

/// How long a tombstone blocks cache fills unless configured otherwise.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(5);

/// How long the cache may serve a copy without the database confirming it, unless
/// configured otherwise (see [`CachedStore::with_max_staleness`]).
///
/// Five seconds: a session that the database ended (a logout through another process, a
/// cache copy brought back by a Redis failover or restore) is served for at most that
/// long, a window of the order of a client's retry and far below any session lifetime,
/// while the database sees at most one read per active session every five seconds per
/// cache, so a page and the requests it triggers are still served from the cache. One
/// second would send most of those bursts to the database for little gain.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);

/// How many ids whose cache entry could not be dropped are remembered (see
/// [`CachedStore`], "a cache error").
const PENDING_LIMIT: usize = 100_000;

/// Django's `cached_db`: reads the cache first, writes the database first.
///
/// `D` (any [`Store`], usually a SQL store) is the truth; `C` (a [`SessionCache`]: a
/// [`MokaStore`](crate::MokaStore) in this process or a [`RedisStore`](crate::RedisStore)
/// shared by several) holds copies.
///
/// - **Reads**: `load` and `lookup` answer from the cache when it holds a live record; on a
///   miss they ask the database's [`lookup`](Store::lookup) and fill the cache with what
///   it found live. A session the database remembers as ended is answered
///   [`Lookup::Ended`] and never cached.
/// - **Writes**: `create`, `save`, `touch`, `end` and `delete` go to the database first,
///   and its answer is the answer, `Conflict` and `NotFound` included; only then is the
///   cache updated. `create` draws its key (at most
///   [`CREATE_ATTEMPTS`](session_core::CREATE_ATTEMPTS) of them) in the database.
///
/// # Correctness under concurrency and failure
///
/// 1. **A late fill never replaces newer data.** A request that read the database before a
///    save can reach the cache after the save's own cache update. Every cache write is
///    therefore conditional ([`SessionCache::put_if_newer`]): it lands only if the cache
///    holds nothing newer, ordered by `(version, expires_at)`. Versions only grow (the
///    database's compare-and-set), and for one version a later expiry is a later `touch`,
///    so the order is monotonic. `touch` moves a cached expiry only forward
///    ([`SessionCache::extend`]); a touch that shortens or ends a session, or finds nothing
///    to move, drops the entry instead (next point).
/// 2. **A fill never resurrects a deleted or ended session.** `delete` and `end` (and
///    every other "drop this entry") write a *tombstone* into the cache: for the tombstone
///    TTL (default [`DEFAULT_TOMBSTONE_TTL`]) the cache answers "absent" and refuses every
///    put, so a fill that read the record before the delete or end cannot bring it back.
///    A fill or write whose database call took longer than half the TTL (or than the
///    staleness bound, point 4) is not written to the cache at all (a write drops the
///    entry instead), so no put can outlive the tombstone meant to stop it.
/// 3. **A cache error never fails a request or loses a write.** The database has already
///    answered: on a cache error the read is served from the database, and after a write
///    the cache entry is dropped (tombstoned), with a `tracing` warning. If even the drop
///    fails (the cache is down), the id is remembered in this process and every read of
///    it skips the cache and retries the drop until it succeeds, so this process never
///    serves a copy older than the last successful save. (Another process sharing a
///    Redis cache that was unreachable during the drop may, once Redis is back, serve the
///    older copy until the tombstone retry of this process or the copy's staleness bound,
///    point 4; keep the cache's timeouts short and its availability high.)
/// 4. **A copy the database no longer backs is served for a bounded time.** Every cache
///    entry is written with a staleness bound (default [`DEFAULT_MAX_STALENESS`], see
///    [`with_max_staleness`](Self::with_max_staleness)): it is served for at most that long
///    after the database call that produced it began, then it is gone from the cache and
///    the next read asks the database again. So a session the database ended or deleted
///    behind this store's back (through another process with its own `MokaStore`, or
///    directly) and a copy a Redis cache got back after a failover or a snapshot restore
///    (the bound is the key's TTL, which replicas and snapshots keep as an absolute
///    instant) are served for at most the bound after the end.
///
/// On `Conflict` or `NotFound` from the database the cache entry is dropped too: the
/// client evidently held a copy the database no longer has. `end` drops it whatever the
/// database answered (an error may hide an end that happened): the cache never serves a
/// live copy of a session ended through this store.
///
/// Each process's in-process cache (a `MokaStore`) is its own: a session ended or deleted
/// through one process stays in another process's cache until that copy's staleness
/// bound (or, without one, its expiry). Share a `RedisStore` as the cache when several
/// processes serve one database.
///
/// # Examples
///
/// ```
/// use session_cache::{CachedStore, MokaStore};
/// use session_core::{MemoryStore, Record, Store};
/// use time::{Duration, OffsetDateTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // In production: a SQL store from session-db as the database.
/// let store = CachedStore::new(MokaStore::new(), MemoryStore::new());
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1)); // from the cache
/// assert_eq!(store.db().load(&key).await?.map(|r| r.version), Some(1)); // in the database
/// # Ok::<(), session_core::Error>(()) }).unwrap();
/// ```
pub struct CachedStore<C, D> {
    cache: C,
    db: D,
    tombstone_ttl: Duration,
    max_staleness: Option<Duration>,
    pending: Arc<Pending>,
}

/// Ids whose cache entry could not be dropped after a write.
#[derive(Default)]
struct Pending {
    any: AtomicBool,
    ids: Mutex<HashSet<StorageId>>,
}

impl<C: SessionCache, D: Store> CachedStore<C, D> {
    /// `cache` in front of `db`, with the default tombstone TTL and staleness bound.
    pub fn new(cache: C, db: D) -> Self {
        Self {
            cache,
            db,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            max_staleness: Some(DEFAULT_MAX_STALENESS),
            pending: Arc::default(),
        }
    }

    /// How long the cache may serve a copy that the database has not confirmed since
    /// (default [`DEFAULT_MAX_STALENESS`]; `None` turns the bound off).
    ///
    /// Every cache write (a fill after a miss, and the update after `create`, `save` and
    /// `touch`) gives the entry a life of at most `max_staleness` counted from the start
    /// of the database call behind it; after that the entry is gone and the next read is
    /// a miss that asks the database's [`lookup`](Store::lookup) and fills the cache
    /// again. A session the database ended is therefore served from the cache for at most
    /// `max_staleness` after the end, whatever the cache went through.
    ///
    /// Revalidation is a reload: the [`Store`] trait has no cheaper version probe, and a
    /// reload costs what a version check followed by refreshing the entry would (one
    /// database read, one cache write). Fresh hits cost what they cost without the bound:
    /// one cache read, no clock, no extra round trip; the bound is only the entry's TTL
    /// (moka's per-entry expiry, Redis's `PX`). With `None` entries live until the
    /// session's own expiry, as before; a zero bound caches nothing.
    #[must_use]
    pub fn with_max_staleness(mut self, max_staleness: impl Into<Option<Duration>>) -> Self {
        self.max_staleness = max_staleness.into();
        self
    }

    /// The configured staleness bound.
    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    /// How long a tombstone blocks cache fills after a delete or a dropped entry (default
    /// [`DEFAULT_TOMBSTONE_TTL`]). Database calls slower than half of it skip the cache.
    #[must_use]
    pub fn with_tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// The cache.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// The database.
    pub fn db(&self) -> &D {
        &self.db
    }

    /// The body of `load` and `lookup`, as an inherent method so that `load` costs one
    /// boxed future, not two.
    async fn find(&self, key: &SessionKey) -> Result<Lookup> {
        if !key.is_generated_shape() {
            return Ok(Lookup::Absent);
        }
        let id = key.storage_id();
        let mut fill = true;
        if self.pending.contains(&id) {
            // An earlier write could not drop this entry: the cache may hold an old copy.
            if self.cache.tombstone(&id, self.tombstone_ttl).await.is_ok() {
                self.pending.remove(&id);
            }
            fill = false;
        } else {
            match self.cache.get(&id).await {
                Ok(Some(r)) if !r.is_expired() => return Ok(Lookup::Live(r)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id.short(), error = %e, "session cache read failed; reading the database");
                    fill = false;
                }
            }
        }
        let started = Instant::now();
        let found = self.db.lookup(key).await?;
        if let Lookup::Live(r) = &found
            && fill
            && let Some(serve_for) = self.in_time(started)
        {
            // A failed fill changes nothing the database does not agree with: log only.
            if let Err(e) = self.cache.put_if_newer(&id, r, serve_for).await {
                tracing::warn!(session = %id.short(), error = %e, "session cache fill failed");
            }
        }
        Ok(found)
    }

    /// Whether a cache write that follows a database call started at `started` may still
    /// land: before any tombstone written after that call expires, and with some of the
    /// staleness bound left. Answers the entry's `serve_for` (what is left of the bound).
    fn in_time(&self, started: Instant) -> Option<Option<Duration>> {
        let elapsed = started.elapsed();
        if elapsed >= self.tombstone_ttl / 2 {
            return None;
        }
        match self.max_staleness {
            None => Some(None),
            Some(bound) => bound
                .checked_sub(elapsed)
                .filter(|left| !left.is_zero())
                .map(Some),
        }
    }

    /// Writes `record` (as the database now holds it) to the cache, or drops the entry
    /// when that is not possible.
    async fn after_write(&self, id: &StorageId, record: &Record, started: Instant) {
        let Some(serve_for) = self.in_time(started) else {
            self.drop_entry(id).await;
            return;
        };
        if let Err(e) = self.cache.put_if_newer(id, record, serve_for).await {
            tracing::warn!(session = %id.short(), error = %e, "session cache update failed; dropping the entry");
            self.drop_entry(id).await;
        }
    }

    /// Replaces the cache entry by a tombstone; remembers the id when even that fails.
    async fn drop_entry(&self, id: &StorageId) {
        if let Err(e) = self.cache.tombstone(id, self.tombstone_ttl).await {
            tracing::warn!(session = %id.short(), error = %e, "could not drop a session cache entry; bypassing the cache for it");
            self.pending.insert(*id);
        }
    }
}

impl Pending {
    fn insert(&self, id: StorageId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() < PENDING_LIMIT {
            ids.insert(id);
            self.any.store(true, Ordering::Release);
        } else {
            tracing::error!(session = %id.short(), "too many undroppable session cache entries; this one may be served stale");
        }
    }

    fn contains(&self, id: &StorageId) -> bool {
        // Fast path: one atomic load when the cache has been healthy.
        self.any.load(Ordering::Acquire)
            && self
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(id)
    }

    fn remove(&self, id: &StorageId) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.remove(id);
        if ids.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }
}

impl<C: Clone, D: Clone> Clone for CachedStore<C, D> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            db: self.db.clone(),
            tombstone_ttl: self.tombstone_ttl,
            max_staleness: self.max_staleness,
            pending: self.pending.clone(),
        }
    }
}

impl<C: std::fmt::Debug, D: std::fmt::Debug> std::fmt::Debug for CachedStore<C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("cache", &self.cache)
            .field("db", &self.db)
            .field("tombstone_ttl", &self.tombstone_ttl)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<C: SessionCache, D: Store> Store for CachedStore<C, D> {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let started = Instant::now();
        let key = self.db.create(record).await?;
        let stored = Record {
            version: 1,
            ..record.clone()
        };
        self.after_write(&key.storage_id(), &stored, started).await;
        Ok(key)
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.find(key).await.map(Lookup::into_live)
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        self.find(key).await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        let started = Instant::now();
        match self.db.save(key, record).await {
            Ok(new_key) => {
                let stored = Record {
                    // The database accepted the save, so the next version exists.
                    version: record.version.saturating_add(1),
                    ..record.clone()
                };
                self.after_write(&key.storage_id(), &stored, started).await;
                Ok(new_key)
            }
            Err(e @ (Error::Conflict | Error::NotFound)) => {
                self.drop_entry(&key.storage_id()).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        let started = Instant::now();
        let new_key = match self.db.touch(key, expires_at).await {
            Ok(k) => k,
            Err(Error::NotFound) => {
                self.drop_entry(&key.storage_id()).await;
                return Err(Error::NotFound);
            }
            Err(e) => return Err(e),
        };
        let id = key.storage_id();
        // The database has just confirmed the session live: the entry may be served for a
        // fresh staleness bound.
        let extended = match self.in_time(started) {
            Some(serve_for) if expires_at > OffsetDateTime::now_utc() => {
                self.cache.extend(&id, expires_at, serve_for).await
            }
            _ => Ok(false),
        };
        match extended {
            Ok(true) => {}
            Ok(false) => self.drop_entry(&id).await,
            Err(e) => {
                tracing::warn!(session = %id.short(), error = %e, "session cache touch failed; dropping the entry");
                self.drop_entry(&id).await;
            }
        }
        Ok(new_key)
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let ended = self.db.end(key, version, remember_until).await;
        // Whatever the answer (an error may hide an end the database did make), the cached
        // copy goes, exactly as for `delete`; a key of another shape was never cached.
        if key.is_generated_shape() {
            self.drop_entry(&key.storage_id()).await;
        }
        ended
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        self.db.delete(key).await?;
        if key.is_generated_shape() {
            self.drop_entry(&key.storage_id()).await;
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        // The cache expires its entries by itself; the database is the count that matters.
        self.db.clear_expired().await
    }

    fn capabilities(&self) -> Capabilities {
        self.db.capabilities()
    }
}
