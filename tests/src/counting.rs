//! A store wrapper that counts the operations reaching the store it wraps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use session_core::{Error, Record, Result, SessionKey, Store, async_trait};
use time::OffsetDateTime;

/// Counts the operations that reach a store.
#[derive(Debug, Default)]
pub struct Counts {
    /// `create` calls.
    pub create: AtomicU64,
    /// `load` and `lookup` calls.
    pub load: AtomicU64,
    /// `save` calls.
    pub save: AtomicU64,
    /// `touch` calls.
    pub touch: AtomicU64,
    /// `delete` and `end` calls.
    pub delete: AtomicU64,
    /// `clear_expired` calls.
    pub clear_expired: AtomicU64,
}

impl Counts {
    /// Every operation, in the order of the fields.
    pub fn snapshot(&self) -> [u64; 6] {
        [
            &self.create,
            &self.load,
            &self.save,
            &self.touch,
            &self.delete,
            &self.clear_expired,
        ]
        .map(|c| c.load(Ordering::SeqCst))
    }

    /// How many operations reached the store in all.
    pub fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }

    /// How many writes (create, save, touch) reached the store.
    pub fn writes(&self) -> u64 {
        let [c, _, s, t, _, _] = self.snapshot();
        c + s + t
    }
}

/// A store wrapper that counts every operation before passing it on.
pub struct Counting {
    /// The store operations are passed on to.
    pub inner: Arc<dyn Store>,
    /// The counts, shared with whoever reads them.
    pub counts: Arc<Counts>,
}

impl Counting {
    /// Counts the operations on `inner`, from zero.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting")
            .field("counts", &self.counts)
            .finish()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}

#[async_trait]
impl Store for Counting {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        bump(&self.counts.create);
        self.inner.create(record).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        bump(&self.counts.load);
        self.inner.load(key).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        bump(&self.counts.save);
        self.inner.save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        bump(&self.counts.touch);
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        bump(&self.counts.delete);
        self.inner.delete(key).await
    }
    async fn lookup(&self, key: &SessionKey) -> Result<session_core::Lookup> {
        bump(&self.counts.load);
        self.inner.lookup(key).await
    }
    async fn end(&self, key: &SessionKey, version: u64, until: OffsetDateTime) -> Result<()> {
        bump(&self.counts.delete);
        self.inner.end(key, version, until).await
    }
    fn recognizes(&self, key: &SessionKey) -> bool {
        self.inner.recognizes(key)
    }
    async fn clear_expired(&self) -> Result<u64> {
        bump(&self.counts.clear_expired);
        self.inner.clear_expired().await
    }
    fn capabilities(&self) -> session_core::Capabilities {
        self.inner.capabilities()
    }
}

/// Whether a result is the error `Error::Conflict`.
pub fn is_conflict<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Conflict))
}
