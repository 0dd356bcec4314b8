//! The reference store: a map in process memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    Capabilities, Error, GENERATED_KEY_LEN, Lookup, Record, Result, SessionKey, Store,
    create_with_fresh_keys,
};

/// The map key: a generated session key's own bytes (see [`SessionKey::generated_bytes`]).
type Id = [u8; GENERATED_KEY_LEN];

/// Sessions in a map behind a lock, in this process only.
///
/// The reference implementation of [`Store`]: for tests, examples and single-process
/// development. Clones share one map (a clone is a second handle on the same medium).
/// Records are kept decoded, so `load` costs a lookup and a reference count. Nothing leaves
/// the process, so the map is indexed by the key itself rather than its SHA-256.
///
/// # Examples
///
/// ```
/// use session_core::{MemoryStore, Record, Store};
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let store = MemoryStore::new();
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// let loaded = store.load(&key).await?.expect("stored");
/// assert_eq!(loaded.version, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    map: Arc<RwLock<HashMap<Id, Slot>>>,
}

/// What the map holds under a key.
#[derive(Clone)]
enum Slot {
    Live(Record),
    /// Ended by [`Store::end`], remembered until this instant.
    Ended(OffsetDateTime),
}

impl Slot {
    fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        match self {
            Self::Live(r) => r.is_expired_at(now),
            Self::Ended(until) => *until <= now,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the map holds, expired ones and ended markers included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    /// Whether the map holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock cannot leave a record half-written (every write is a
    // single map operation), so a poisoned lock is safe to keep using.
    fn read<T>(&self, f: impl FnOnce(&HashMap<Id, Slot>) -> T) -> T {
        f(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut HashMap<Id, Slot>) -> T) -> T {
        f(&mut self.map.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// The live (unexpired, not ended) record under `id`, mutably.
    fn live<'m>(
        map: &'m mut HashMap<Id, Slot>,
        id: &Id,
        now: OffsetDateTime,
    ) -> Result<&'m mut Record> {
        match map.get_mut(id) {
            Some(Slot::Live(r)) if !r.is_expired_at(now) => Ok(r),
            _ => Err(Error::NotFound),
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let now = OffsetDateTime::now_utc();
        create_with_fresh_keys("memory", |key| {
            let stored = match key.generated_bytes() {
                Some(id) => self.write(|map| match map.entry(id) {
                    Entry::Occupied(e) if !e.get().is_expired_at(now) => false,
                    Entry::Occupied(mut e) => {
                        e.insert(Slot::Live(Record {
                            version: 1,
                            ..record.clone()
                        }));
                        true
                    }
                    Entry::Vacant(e) => {
                        e.insert(Slot::Live(Record {
                            version: 1,
                            ..record.clone()
                        }));
                        true
                    }
                }),
                None => false,
            };
            std::future::ready(Ok(stored))
        })
        .await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        // Directly, not through `lookup`: one boxed future per load, not two.
        let Some(id) = key.generated_bytes() else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        Ok(self.read(|map| match map.get(&id) {
            Some(Slot::Live(r)) if !r.is_expired_at(now) => Some(r.clone()),
            _ => None,
        }))
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        let Some(id) = key.generated_bytes() else {
            return Ok(Lookup::Absent);
        };
        let now = OffsetDateTime::now_utc();
        Ok(self.read(|map| match map.get(&id) {
            Some(slot) if slot.is_expired_at(now) => Lookup::Absent,
            Some(Slot::Live(r)) => Lookup::Live(r.clone()),
            Some(Slot::Ended(_)) => Lookup::Ended,
            None => Lookup::Absent,
        }))
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let now = OffsetDateTime::now_utc();
        self.write(|map| {
            let stored = Self::live(map, &id, now)?;
            if stored.version != record.version {
                return Err(Error::Conflict);
            }
            *stored = Record {
                version: record.next_version()?,
                ..record.clone()
            };
            Ok(())
        })?;
        Ok(key.clone())
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let now = OffsetDateTime::now_utc();
        self.write(|map| {
            Self::live(map, &id, now)?.expires_at = expires_at;
            Ok::<_, Error>(())
        })?;
        Ok(key.clone())
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let id = key.generated_bytes().ok_or(Error::InvalidKey)?;
        let now = OffsetDateTime::now_utc();
        self.write(|map| {
            if Self::live(map, &id, now)?.version != version {
                return Err(Error::Conflict);
            }
            map.insert(id, Slot::Ended(remember_until));
            Ok(())
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        if let Some(id) = key.generated_bytes() {
            self.write(|map| map.remove(&id));
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        let removed = self.write(|map| {
            let before = map.len();
            map.retain(|_, slot| !slot.is_expired_at(now));
            before - map.len()
        });
        Ok(u64::try_from(removed).unwrap_or(u64::MAX))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}
