//! The reference store: a map in process memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{Capabilities, Error, GENERATED_KEY_LEN, Record, Result, SessionKey, Store};

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
    map: Arc<RwLock<HashMap<Id, Record>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the map holds, expired ones included.
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
    fn read<T>(&self, f: impl FnOnce(&HashMap<Id, Record>) -> T) -> T {
        f(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut HashMap<Id, Record>) -> T) -> T {
        f(&mut self.map.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// The live (unexpired) record under `id`, mutably.
    fn live<'m>(
        map: &'m mut HashMap<Id, Record>,
        id: &Id,
        now: OffsetDateTime,
    ) -> Result<&'m mut Record> {
        match map.get_mut(id) {
            Some(r) if !r.is_expired_at(now) => Ok(r),
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
        loop {
            let key = SessionKey::generate();
            let Some(id) = key.generated_bytes() else {
                continue;
            };
            let stored = self.write(|map| match map.entry(id) {
                Entry::Occupied(mut e) if e.get().is_expired_at(now) => {
                    e.insert(Record {
                        version: 1,
                        ..record.clone()
                    });
                    true
                }
                Entry::Occupied(_) => false,
                Entry::Vacant(e) => {
                    e.insert(Record {
                        version: 1,
                        ..record.clone()
                    });
                    true
                }
            });
            if stored {
                return Ok(key);
            }
        }
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let Some(id) = key.generated_bytes() else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        Ok(self.read(|map| map.get(&id).filter(|r| !r.is_expired_at(now)).cloned()))
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
            map.retain(|_, r| !r.is_expired_at(now));
            before - map.len()
        });
        Ok(u64::try_from(removed).unwrap_or(u64::MAX))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}
