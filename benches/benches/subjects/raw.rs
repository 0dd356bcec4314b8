//! Raw media. A raw session is an id (32 random bytes) and the version it holds. This
//! module: memory, moka and files; the SQL databases, Redis, the cached pair and the
//! cookie codecs have their own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use session_core::Record;

use crate::common::{Size, in_a_day, random_id};
use crate::driver::Subject;

#[derive(Clone, Copy)]
pub(crate) struct RawH {
    pub(crate) id: [u8; 32],
    pub(crate) version: u64,
}

impl RawH {
    pub(crate) fn fresh() -> Self {
        Self {
            id: random_id(),
            version: 1,
        }
    }
}

/// The framed bytes of `record` with `version` written into the header.
pub(crate) fn framed(record: &Record, version: u64) -> Vec<u8> {
    let mut r = record.clone();
    r.version = version;
    r.encode_framed().expect("encode")
}

/// A copy of framed `bytes` with another version in the header (a memcpy, no encoding).
pub(crate) fn with_version(bytes: &[u8], version: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[3..11].copy_from_slice(&version.to_be_bytes());
    out
}

/// A map behind a lock: what an in-process store cannot avoid.
pub(crate) struct RawMemory {
    map: RwLock<HashMap<[u8; 32], Record>>,
    record: Record,
}

impl RawMemory {
    pub(crate) fn new(size: Size) -> Self {
        Self {
            map: RwLock::default(),
            record: size.record(),
        }
    }
}

impl Subject for RawMemory {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        let mut r = self.record.clone();
        r.version = 1;
        self.map.write().expect("lock").insert(h.id, r);
        h
    }
    async fn load(&self, h: &RawH) {
        let r = self.map.read().expect("lock").get(&h.id).cloned();
        assert!(r.is_some(), "session missing");
    }
    async fn save(&self, h: &mut RawH) {
        let mut map = self.map.write().expect("lock");
        let slot = map.get_mut(&h.id).expect("session missing");
        assert_eq!(slot.version, h.version);
        let mut r = self.record.clone();
        r.version = h.version + 1;
        *slot = r;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        let mut map = self.map.write().expect("lock");
        map.get_mut(&h.id).expect("session missing").expires_at = in_a_day();
    }
    async fn delete(&self, h: RawH) {
        self.map.write().expect("lock").remove(&h.id);
    }
}

/// moka get/insert of the framed bytes.
pub(crate) struct RawMoka {
    cache: moka::future::Cache<[u8; 32], Arc<[u8]>>,
    bytes: Arc<[u8]>,
}

impl RawMoka {
    pub(crate) fn new(size: Size) -> Self {
        Self {
            cache: moka::future::Cache::builder().max_capacity(1 << 20).build(),
            bytes: framed(&size.record(), 1).into(),
        }
    }
    pub(crate) async fn put(&self, h: &RawH) {
        self.cache.insert(h.id, Arc::clone(&self.bytes)).await;
    }
    pub(crate) async fn get(&self, h: &RawH) {
        assert!(self.cache.get(&h.id).await.is_some(), "session missing");
    }
    pub(crate) async fn del(&self, h: &RawH) {
        self.cache.invalidate(&h.id).await;
    }
}

impl Subject for RawMoka {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.put(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        self.get(h).await;
    }
    async fn save(&self, h: &mut RawH) {
        self.get(h).await;
        self.put(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.get(h).await;
        self.put(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.del(&h).await;
    }
}

/// write + fsync + rename of the framed bytes, one `spawn_blocking` per operation.
pub(crate) struct RawFile {
    dir: PathBuf,
    bytes: Arc<[u8]>,
}

impl RawFile {
    pub(crate) fn new(dir: PathBuf, size: Size) -> Self {
        Self {
            dir,
            bytes: framed(&size.record(), 1).into(),
        }
    }
    async fn write(&self, h: &RawH) {
        let path = self.dir.join(hex::encode(h.id));
        let temp = self
            .dir
            .join(format!(".tmp-{}", hex::encode(&random_id()[..12])));
        let bytes = Arc::clone(&self.bytes);
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut f = std::fs::File::create_new(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&temp, &path)
        })
        .await
        .expect("join")
        .expect("write");
    }
}

impl Subject for RawFile {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.write(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        let path = self.dir.join(hex::encode(h.id));
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .expect("join")
            .expect("read");
        assert!(!bytes.is_empty());
    }
    async fn save(&self, h: &mut RawH) {
        self.write(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.write(h).await;
    }
    async fn delete(&self, h: RawH) {
        let path = self.dir.join(hex::encode(h.id));
        tokio::task::spawn_blocking(move || std::fs::remove_file(path))
            .await
            .expect("join")
            .expect("remove");
    }
}
