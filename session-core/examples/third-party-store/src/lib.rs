//! A session store as a backend author outside this workspace would write one, and the
//! three lines that hold it to the conformance suite (`tests/conformance.rs`).
//!
//! `ExampleStore` keeps every session as the core's framed bytes in a map (standing for
//! any medium that keeps bytes under a name: a key-value service, an object store), and
//! uses only what `session-core` publishes: `Record::encode_framed` and
//! `Lookup::decode_framed` for the bytes, `Record::encode_ended_marker` for ended
//! sessions, `create_with_fresh_keys` for bounded key generation, and
//! `SessionKey::storage_id` so the key itself is never stored.
//!
//! ```
//! use session_core::{Record, Store};
//! use third_party_store::ExampleStore;
//! use session_core::time::{Duration, OffsetDateTime};
//!
//! # session_core::conformance::run_check(async {
//! let store = ExampleStore::new();
//! let key = store
//!     .create(&Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1)))
//!     .await
//!     .expect("created");
//! assert_eq!(store.load(&key).await.expect("loaded").map(|r| r.version), Some(1));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::time::OffsetDateTime;
use session_core::{
    Capabilities, Error, FrameHeader, Lookup, Record, Result, SessionKey, StorageId, Store,
    async_trait, create_with_fresh_keys,
};

/// Sessions as framed bytes in a map, keyed by storage id. Clones share the map.
#[derive(Clone, Debug, Default)]
pub struct ExampleStore {
    map: Arc<Mutex<HashMap<StorageId, Vec<u8>>>>,
}

impl ExampleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<StorageId, Vec<u8>>> {
        // Every write is one map operation: a poisoned lock holds consistent data.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The header of what is stored under `id`, if it is an unexpired record or marker.
    fn live_header(bytes: Option<&Vec<u8>>, now: OffsetDateTime) -> Option<FrameHeader> {
        let header = FrameHeader::read(bytes?).ok()?;
        (header.expires_at > now).then_some(header)
    }

    /// Replaces the live record under `key` with `write(header)` if its version is
    /// `version`: the compare-and-set every transition shares.
    fn compare_and_replace(
        &self,
        key: &SessionKey,
        version: u64,
        write: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<()> {
        key.require_generated_shape()?;
        let id = key.storage_id();
        let mut map = self.map();
        let header = Self::live_header(map.get(&id), OffsetDateTime::now_utc())
            .filter(|h| !h.is_ended_marker())
            .ok_or(Error::NotFound)?;
        if header.version != version {
            return Err(Error::Conflict);
        }
        map.insert(id, write()?);
        Ok(())
    }
}

#[async_trait]
impl Store for ExampleStore {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let bytes = Record {
            version: 1,
            ..record.clone()
        }
        .encode_framed()?;
        create_with_fresh_keys("example", |key| {
            let mut map = self.map();
            let id = key.storage_id();
            let taken = Self::live_header(map.get(&id), OffsetDateTime::now_utc()).is_some();
            if !taken {
                map.insert(id, bytes.clone());
            }
            std::future::ready(Ok(!taken))
        })
        .await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.lookup(key).await.map(Lookup::into_live)
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        if !key.is_generated_shape() {
            return Ok(Lookup::Absent);
        }
        let id = key.storage_id();
        let mut map = self.map();
        let Some(bytes) = map.get(&id) else {
            return Ok(Lookup::Absent);
        };
        match Lookup::decode_framed(bytes, OffsetDateTime::now_utc()) {
            Ok(found) => Ok(found),
            Err(_) => {
                // Unreadable bytes are absent, and removed.
                map.remove(&id);
                Ok(Lookup::Absent)
            }
        }
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        self.compare_and_replace(key, record.version, || {
            Record {
                version: record.next_version()?,
                ..record.clone()
            }
            .encode_framed()
        })?;
        Ok(key.clone())
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let record = self.load(key).await?.ok_or(Error::NotFound)?;
        let version = record.version;
        self.compare_and_replace(key, version, || {
            Record {
                expires_at,
                ..record
            }
            .encode_framed()
        })?;
        Ok(key.clone())
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        self.compare_and_replace(key, version, || {
            Ok(Record::encode_ended_marker(remember_until))
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        if key.is_generated_shape() {
            self.map().remove(&key.storage_id());
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, bytes| Self::live_header(Some(bytes), now).is_some());
        Ok(u64::try_from(before - map.len()).unwrap_or(u64::MAX))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}
