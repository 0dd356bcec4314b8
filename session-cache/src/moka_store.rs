//! `MokaStore`: sessions in an in-process moka cache bounded in bytes.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::future::Cache;
use session_core::serde_json::Value;
use session_core::{
    Capabilities, Error, Lookup, Record, Result, SessionKey, StorageId, Store,
    create_with_fresh_keys,
};
use time::OffsetDateTime;
use tokio::sync::{Mutex, MutexGuard};

use crate::SessionCache;

/// Default capacity of a [`MokaStore`]: 64 MiB of estimated record weight.
pub const DEFAULT_MOKA_CAPACITY_BYTES: u64 = 64 << 20;

/// Longest time moka is asked to keep an entry; records that expire later are dropped
/// from the cache after this (about 100 years), which keeps moka's clock arithmetic in range.
const LONGEST_KEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The cache key: a session key's own 32 bytes when the store serves as a [`Store`]
/// (nothing leaves the process, and a SHA-256 per operation would cost more than the
/// lookup), the [`StorageId`] bytes when it serves as a [`SessionCache`] under a
/// `CachedStore` (which names sessions by storage id).
type Id = [u8; 32];

/// The weight of an entry that holds no record (a cache tombstone, an ended marker): the
/// key, the slot and moka's bookkeeping.
const MARKER_WEIGHT: u32 = 64;

/// How many locks the writes are spread over (one per value of the low byte of an id's
/// hash). Writes to one entry always take the same lock; writes to different entries
/// rarely meet on one.
const WRITE_STRIPES: usize = 256;

/// Sessions in a [`moka::future::Cache`] in this process: the fastest store, and the usual
/// cache side of a [`CachedStore`](crate::CachedStore).
///
/// - Records are kept **decoded**: `load` costs a hash lookup and a reference count (the
///   data is an `Arc`), never a JSON decode.
/// - Each entry expires at its own `expires_at` (moka's per-entry [`Expiry`](moka::Expiry)),
///   so expired sessions leave by themselves and `clear_expired` has nothing to count.
/// - The capacity is a bound in **bytes** of estimated record size (see
///   [`estimated_size`](Self::estimated_size)); when it is reached moka evicts the entries
///   least likely to be used again (TinyLFU), like Django's cache backend under memory
///   pressure. A record larger than the whole capacity is refused with
///   [`Error::TooLarge`].
/// - Every write (`create` insert-if-absent, `save` compare-and-set, `touch`, `end`,
///   `delete`) holds one of 256 striped locks, chosen by the entry's hash, from its read of
///   the entry to its `insert` or `invalidate`: a write never acts on a stale read, a
///   `save` can never put back a session that an `end` or a `delete` removed, and of two
///   `end`s of one version exactly one wins. Reads take no lock.
/// - [`end`](Store::end) replaces the record by an *ended marker* that expires at the
///   instant `end` was given (the same per-entry expiry) and weighs as a small entry, like
///   a cache tombstone; `lookup` reports it as [`Lookup::Ended`], every other operation as
///   absent, and `create` never draws a key that holds one.
///
/// As a [`SessionCache`], an entry written with a staleness bound (`serve_for`) expires
/// after that bound even when the record lives longer.
///
/// A clone is a second handle on the same cache; create one store per namespace.
///
/// # Examples
///
/// ```
/// use session_cache::MokaStore;
/// use session_core::{Record, Store};
/// use time::{Duration, OffsetDateTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MokaStore::with_capacity_bytes(16 << 20);
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// let loaded = store.load(&key).await?.expect("stored");
/// assert_eq!(loaded.version, 1);
/// # Ok::<(), session_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct MokaStore {
    cache: Cache<Id, Slot, BuildHasherDefault<IdHasher>>,
    writers: Arc<[Mutex<()>]>,
    capacity_bytes: u64,
}

impl MokaStore {
    /// A store bounded at [`DEFAULT_MOKA_CAPACITY_BYTES`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity_bytes(DEFAULT_MOKA_CAPACITY_BYTES)
    }

    /// A store that keeps at most `capacity_bytes` of estimated record size.
    #[must_use]
    pub fn with_capacity_bytes(capacity_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_id: &Id, slot: &Slot| slot.weight())
            .expire_after(SlotExpiry)
            .build_with_hasher(BuildHasherDefault::default());
        Self {
            cache,
            writers: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            capacity_bytes,
        }
    }

    /// The configured capacity, in bytes.
    #[must_use]
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The estimated size of everything cached, in bytes (as of moka's last maintenance;
    /// [`run_pending_tasks`](Self::run_pending_tasks) brings it up to date).
    #[must_use]
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// How many entries are cached (as of moka's last maintenance), tombstones and ended
    /// markers included.
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs moka's pending maintenance now: evictions, expirations, size bookkeeping.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Drops every entry (a cache flush).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// The size this store charges a record against its capacity, in bytes.
    ///
    /// It estimates the record's memory footprint without encoding it: a fixed cost per
    /// entry (key, record, moka's bookkeeping), plus for every JSON node a fixed cost (the
    /// `Value` and, in objects, the map slot) and the bytes of its strings and keys. The
    /// walk visits each node once and allocates only for nested containers, so weighing a
    /// 1 KiB record costs far less than encoding it; it is within a small factor of the
    /// true heap size, which is what a byte bound needs.
    #[must_use]
    pub fn estimated_size(record: &Record) -> u64 {
        const ENTRY: u64 = 192;
        const NODE: u64 = 32;
        const MAP_SLOT: u64 = 48;
        let mut total = ENTRY;
        let mut nested: Vec<&Value> = Vec::new();
        // The bytes of a string; containers are queued and weighed when popped.
        fn visit<'a>(v: &'a Value, nested: &mut Vec<&'a Value>) -> u64 {
            match v {
                Value::String(s) => len64(s.len()),
                Value::Array(_) | Value::Object(_) => {
                    nested.push(v);
                    0
                }
                _ => 0,
            }
        }
        for (k, v) in record.data.iter() {
            total += MAP_SLOT + NODE + len64(k.len());
            total += visit(v, &mut nested);
        }
        while let Some(v) = nested.pop() {
            match v {
                Value::Array(items) => {
                    for item in items {
                        total += NODE + visit(item, &mut nested);
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map {
                        total += MAP_SLOT + NODE + len64(k.len()) + visit(item, &mut nested);
                    }
                }
                _ => {}
            }
        }
        total
    }

    fn live_slot(&self, record: &Record, version: u64) -> Result<Slot> {
        let size = Self::estimated_size(record);
        if size > self.capacity_bytes {
            return Err(Error::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(self.capacity_bytes).unwrap_or(usize::MAX),
            });
        }
        Ok(Slot::Live {
            record: Record {
                version,
                ..record.clone()
            },
            weight: u32::try_from(size).unwrap_or(u32::MAX),
            serve_for: None,
        })
    }
}

impl Default for MokaStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MokaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaStore")
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .field("capacity_bytes", &self.capacity_bytes)
            .finish()
    }
}

impl MokaStore {
    /// The live record under `id`, if any.
    async fn live(&self, id: &Id) -> Option<Record> {
        let now = OffsetDateTime::now_utc();
        // The owned slot moka hands out is the copy: move its record out, no second clone.
        match self.cache.get(id).await {
            Some(Slot::Live { record, .. }) if !record.is_expired_at(now) => Some(record),
            _ => None,
        }
    }

    /// Excludes every other write to the entry under `id` while the guard lives.
    ///
    /// Cheaper than moka's per-key compute (`and_compute_with`), which allocates and
    /// registers a lock for each call; moka's own evictions and expirations only ever
    /// remove an entry, which every write below reads as "absent".
    async fn write_lock(&self, id: &Id) -> MutexGuard<'_, ()> {
        let hash = BuildHasherDefault::<IdHasher>::default().hash_one(id);
        let stripe = usize::from(hash.to_le_bytes()[0]) % self.writers.len();
        self.writers[stripe].lock().await
    }
}

#[async_trait]
impl Store for MokaStore {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let slot = self.live_slot(record, 1)?;
        create_with_fresh_keys("moka", |key| {
            let slot = slot.clone();
            async move {
                let Some(id) = key.generated_bytes() else {
                    return Ok(false);
                };
                let _writing = self.write_lock(&id).await;
                // Whatever is there (a live record, an ended marker, an entry not yet
                // evicted) is never replaced: the key is taken.
                if self.cache.contains_key(&id) {
                    return Ok(false);
                }
                self.cache.insert(id, slot).await;
                Ok(true)
            }
        })
        .await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        // Directly, not through `lookup`: one boxed future per load, not two.
        match key.generated_bytes() {
            Some(id) => Ok(self.live(&id).await),
            None => Ok(None),
        }
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        let Some(id) = key.generated_bytes() else {
            return Ok(Lookup::Absent);
        };
        let now = OffsetDateTime::now_utc();
        Ok(match self.cache.get(&id).await {
            Some(Slot::Live { record, .. }) if !record.is_expired_at(now) => Lookup::Live(record),
            Some(Slot::Ended { until }) if until > now => Lookup::Ended,
            _ => Lookup::Absent,
        })
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let slot = self.live_slot(record, record.next_version()?)?;
        let _writing = self.write_lock(&id).await;
        match self.live(&id).await {
            Some(held) if held.version == record.version => {
                self.cache.insert(id, slot).await;
                Ok(key.clone())
            }
            Some(_) => Err(Error::Conflict),
            None => Err(Error::NotFound),
        }
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let _writing = self.write_lock(&id).await;
        let now = OffsetDateTime::now_utc();
        let moved = self
            .cache
            .get(&id)
            .await
            .and_then(|slot| slot.moved_to(expires_at, now))
            .ok_or(Error::NotFound)?;
        self.cache.insert(id, moved).await;
        Ok(key.clone())
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let _writing = self.write_lock(&id).await;
        match self.live(&id).await {
            Some(held) if held.version == version => {
                if remember_until > OffsetDateTime::now_utc() {
                    let marker = Slot::Ended {
                        until: remember_until,
                    };
                    self.cache.insert(id, marker).await;
                } else {
                    // Nothing left to remember.
                    self.cache.invalidate(&id).await;
                }
                Ok(())
            }
            Some(_) => Err(Error::Conflict),
            None => Err(Error::NotFound),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        if let Some(id) = key.generated_bytes() {
            // Under the write lock: a `save` that saw the entry live cannot put it back
            // after the delete (a logout undone by a racing request).
            let _writing = self.write_lock(&id).await;
            self.cache.invalidate(&id).await;
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        // moka drops expired entries by itself; running its maintenance now makes that
        // visible in `entry_count`/`weighted_size`. It does not report how many it dropped.
        self.cache.run_pending_tasks().await;
        Ok(0)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side().with_expires_by_itself(true)
    }
}

#[async_trait]
impl SessionCache for MokaStore {
    async fn get(&self, id: &StorageId) -> Result<Option<Record>> {
        Ok(self.live(id.as_bytes()).await)
    }

    async fn put_if_newer(
        &self,
        id: &StorageId,
        record: &Record,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        let id = *id.as_bytes();
        // Too large to cache, or to be served for no time at all: the entry must still not
        // keep an older version.
        let slot = match serve_for {
            Some(d) if d.is_zero() => None,
            _ => self
                .live_slot(record, record.version)
                .ok()
                .map(|slot| slot.served_for(serve_for)),
        };
        let _writing = self.write_lock(&id).await;
        let now = OffsetDateTime::now_utc();
        match (self.cache.get(&id).await, slot) {
            (Some(Slot::Tombstone { until } | Slot::Ended { until }), _) if until > now => {
                Ok(false)
            }
            (Some(Slot::Live { record: held, .. }), _)
                if !held.is_expired_at(now)
                    && (held.version, held.expires_at) >= (record.version, record.expires_at) =>
            {
                Ok(false)
            }
            (_, Some(slot)) => {
                self.cache.insert(id, slot).await;
                Ok(true)
            }
            (Some(_), None) => {
                self.cache.invalidate(&id).await;
                Ok(false)
            }
            (None, None) => Ok(false),
        }
    }

    async fn extend(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        let id = *id.as_bytes();
        let _writing = self.write_lock(&id).await;
        let now = OffsetDateTime::now_utc();
        let moved = self.cache.get(&id).await.and_then(|slot| match &slot {
            Slot::Live { record, .. } if record.expires_at <= expires_at => slot
                .moved_to(expires_at, now)
                .map(|moved| moved.served_for(serve_for)),
            _ => None,
        });
        let Some(moved) = moved else {
            return Ok(false);
        };
        self.cache.insert(id, moved).await;
        Ok(true)
    }

    async fn tombstone(&self, id: &StorageId, ttl: Duration) -> Result<()> {
        let id = *id.as_bytes();
        let until = OffsetDateTime::now_utc() + ttl;
        // Under the write lock, so a cache fill already under way cannot replace it.
        let _writing = self.write_lock(&id).await;
        self.cache.insert(id, Slot::Tombstone { until }).await;
        Ok(())
    }
}

/// What the cache holds under one id.
#[derive(Clone)]
enum Slot {
    /// A record, with its weight computed once when it was stored, and, for a cache entry
    /// under a staleness bound, how long from its write it may be served (moka's
    /// per-entry expiry enforces it: the entry is gone after that, as if expired).
    Live {
        record: Record,
        weight: u32,
        serve_for: Option<Duration>,
    },
    /// A cache tombstone (a deleted or dropped session): blocks cache fills until `until`.
    Tombstone { until: OffsetDateTime },
    /// An ended session ([`Store::end`]), remembered until `until`: no data, and nothing
    /// is written over it before then.
    Ended { until: OffsetDateTime },
}

impl Slot {
    /// This live slot with its expiry moved to `expires_at`.
    fn moved_to(&self, expires_at: OffsetDateTime, now: OffsetDateTime) -> Option<Self> {
        let (record, weight, serve_for) = match self {
            Self::Live {
                record,
                weight,
                serve_for,
            } if !record.is_expired_at(now) => (record, *weight, *serve_for),
            _ => return None,
        };
        Some(Self::Live {
            record: Record {
                expires_at,
                ..record.clone()
            },
            weight,
            serve_for,
        })
    }

    /// This slot, served for at most `bound` from its next write when that is given.
    fn served_for(self, bound: Option<Duration>) -> Self {
        match self {
            Self::Live { record, weight, .. } => Self::Live {
                record,
                weight,
                serve_for: bound,
            },
            other => other,
        }
    }

    fn weight(&self) -> u32 {
        match self {
            Self::Live { weight, .. } => *weight,
            Self::Tombstone { .. } | Self::Ended { .. } => MARKER_WEIGHT,
        }
    }

    fn deadline(&self) -> OffsetDateTime {
        match self {
            Self::Live { record, .. } => record.expires_at,
            Self::Tombstone { until } | Self::Ended { until } => *until,
        }
    }

    /// How long moka keeps the entry from now (a write): until its deadline, and for a
    /// cache entry under a staleness bound no longer than that bound.
    fn remaining(&self) -> Duration {
        let left = self.deadline() - OffsetDateTime::now_utc();
        let left = Duration::try_from(left)
            .unwrap_or(Duration::ZERO)
            .min(LONGEST_KEEP);
        match self {
            Self::Live {
                serve_for: Some(bound),
                ..
            } => left.min(*bound),
            _ => left,
        }
    }
}

/// Per-entry expiry: every entry leaves at its own deadline, recomputed on each write.
struct SlotExpiry;

impl moka::Expiry<Id, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &Id, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.remaining())
    }

    fn expire_after_update(
        &self,
        _: &Id,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.remaining())
    }
}

/// Hashes an [`Id`] (random bytes: a generated key or a SHA-256 digest) by folding its
/// 8-byte words with a multiply and finishing with SplitMix64's mixer, which spreads a key
/// of 36 letters and digits over every bit. SipHash's keyed protection buys nothing here:
/// only server-generated keys are ever inserted, so a client cannot choose ids that pile
/// into one bucket.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::serde_json::json;

    fn record(data: Value) -> Record {
        let Value::Object(map) = data else {
            panic!("an object")
        };
        Record::new(map, OffsetDateTime::now_utc() + time::Duration::hours(1))
    }

    #[test]
    fn estimate_grows_with_strings_and_nesting() {
        let empty = MokaStore::estimated_size(&record(json!({})));
        let small = MokaStore::estimated_size(&record(json!({"a": "x"})));
        let big = MokaStore::estimated_size(&record(json!({"a": "x".repeat(10_000)})));
        let nested = MokaStore::estimated_size(&record(json!({"a": [{"b": "x".repeat(10_000)}]})));
        assert!(empty < small && small < big && big < nested);
        assert!((10_000..10_000 + 512).contains(&big));
    }

    #[test]
    fn id_hasher_spreads_generated_keys_over_the_low_bits() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        let hash = |id: &Id| build.hash_one(id);
        let a = SessionKey::generate().generated_bytes().expect("generated");
        assert_eq!(hash(&a), hash(&a));
        // Keys of 36 letters and digits still fill every one of 256 low-byte buckets.
        let mut seen = [false; 256];
        for _ in 0..4096 {
            let id = SessionKey::generate().generated_bytes().expect("generated");
            seen[usize::from(hash(&id).to_le_bytes()[0])] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "some low-byte buckets were never hit"
        );
    }
}
