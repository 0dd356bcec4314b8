//! `FileStore`: one file per session in a directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use session_core::{
    Capabilities, Error, FrameHeader, Lookup, Record, Result, SessionKey, Store,
    create_with_fresh_keys,
};
use time::OffsetDateTime;

use crate::FilePrefix;
use crate::dir::{STORE, SessionDir};

/// Sessions kept as one file each in a directory, safe to share between processes.
///
/// - A session is stored in `<dir>/<prefix><storage id>`, where the storage id is the
///   SHA-256 of the key in hex: a directory listing reveals no key a browser could present.
///   A key that does not have the generated shape is refused before any path is built.
/// - Writes go to a temporary file in the same directory, which is synced and then linked
///   (`create`) or renamed (`save`, `touch`, `end`) to the session name, and the directory
///   is synced: after a crash or a power loss a session is the old one or the new one,
///   never a torn one.
/// - `save`, `touch`, `end` and `delete` run under an advisory `flock` lock, so several
///   processes sharing the directory never lose a write, and of a save and an end based on
///   one version exactly one wins.
/// - [`end`](Store::end) replaces the session file with an ended marker (the bare 19-byte
///   frame header, version 0) remembered until the instant it is given; `clear_expired`
///   removes it afterwards.
/// - Every operation runs in one [`spawn_blocking`](tokio::task::spawn_blocking) call
///   (`create`, in one per key it tries: keys are drawn on the calling task).
///
/// Clones share one handle on the directory. See the [crate documentation](crate) for the
/// design and its limits.
///
/// # Examples
///
/// ```
/// use session_core::{Record, Store};
/// use session_file::FileStore;
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let dir = tmp.path().join("sessions");
/// let store = FileStore::open(&dir)?;
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FileStore {
    dir: Arc<SessionDir>,
}

impl FileStore {
    /// Opens the session directory `dir` with the default [`FilePrefix`], creating it
    /// (and its missing parents) with mode 0700 if needed. Blocks briefly: call it at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the directory cannot be created or opened, or is not a
    /// directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(dir).open()
    }

    /// A builder for a store over `dir`, to set the file name prefix.
    pub fn builder(dir: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            dir: dir.into(),
            prefix: FilePrefix::default(),
            #[cfg(feature = "failpoints")]
            failpoint: None,
        }
    }

    /// The session directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The prefix of session file names.
    #[must_use]
    pub fn prefix(&self) -> &FilePrefix {
        self.dir.prefix()
    }

    /// Runs `op` on the directory in one blocking task.
    async fn blocking<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&SessionDir) -> Result<T> + Send + 'static,
    {
        let dir = Arc::clone(&self.dir);
        // If the caller stops waiting, the operation still runs to its end: every one of
        // them leaves the directory consistent only when it completes.
        tokio::task::spawn_blocking(move || op(&dir))
            .await
            .map_err(|e| Error::backend(STORE, e))?
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.dir())
            .field("prefix", self.prefix())
            .finish()
    }
}

/// Encodes `record` in the framed form with `version` in its header.
fn framed(record: &Record, version: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(FrameHeader::LEN + 256);
    FrameHeader {
        version,
        expires_at: record.expires_at,
    }
    .write(&mut out);
    record.write_payload(&mut out)?;
    Ok(out)
}

#[async_trait]
impl Store for FileStore {
    /// Stores the record under a fresh key. Keys are drawn on the calling task, through
    /// [`create_with_fresh_keys`]; each one is offered to one blocking exclusive create
    /// (`link`), which never replaces an existing file, live session or ended marker.
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let bytes: Arc<[u8]> = framed(record, 1)?.into();
        create_with_fresh_keys(STORE, |key| {
            let (id, bytes) = (key.storage_id(), Arc::clone(&bytes));
            self.blocking(move |dir| dir.create(&id, &bytes))
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
        self.blocking(move |dir| dir.lookup(&id)).await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let bytes = framed(record, record.next_version()?)?;
        let (id, expected) = (key.storage_id(), record.version);
        self.blocking(move |dir| dir.save(&id, expected, &bytes))
            .await?;
        Ok(key.clone())
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let id = key.storage_id();
        self.blocking(move |dir| dir.touch(&id, expires_at)).await?;
        Ok(key.clone())
    }

    /// Compares the stored version and writes the ended marker in one operation under the
    /// session's lock, through a synced temporary file renamed over the session.
    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        key.require_generated_shape()?;
        let id = key.storage_id();
        self.blocking(move |dir| dir.end(&id, version, remember_until))
            .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        if !key.is_generated_shape() {
            return Ok(());
        }
        let id = key.storage_id();
        self.blocking(move |dir| dir.delete(&id)).await
    }

    async fn clear_expired(&self) -> Result<u64> {
        self.blocking(SessionDir::clear_expired).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}

/// Builds a [`FileStore`]; from [`FileStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct FileStoreBuilder {
    dir: PathBuf,
    prefix: FilePrefix,
    #[cfg(feature = "failpoints")]
    failpoint: Option<crate::dir::Hook>,
}

impl FileStoreBuilder {
    /// Sets the prefix of session file names (default `session_`). Stores with different
    /// prefixes can share a directory without seeing each other's sessions.
    pub fn with_prefix(mut self, prefix: FilePrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// Creates the directory if missing (mode 0700, parents included) and opens the
    /// store. An existing directory keeps its permissions; a warning is logged when other
    /// users can access it.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the directory cannot be created or opened, or is not a
    /// directory.
    pub fn open(self) -> Result<FileStore> {
        #[cfg_attr(not(feature = "failpoints"), allow(unused_mut))]
        let mut dir =
            SessionDir::open(self.dir, self.prefix).map_err(|e| Error::backend(STORE, e))?;
        #[cfg(feature = "failpoints")]
        dir.set_failpoint(self.failpoint);
        Ok(FileStore { dir: Arc::new(dir) })
    }

    /// Testing only (feature `failpoints`): runs `hook` after every [`Step`](crate::Step)
    /// of every write (write, sync, publish, directory sync); an error it returns ends the
    /// operation right there, as if that step had failed, and the operation fails with
    /// [`Error::Backend`]. A hook that aborts the process simulates a crash after the step.
    #[cfg(feature = "failpoints")]
    #[doc(hidden)]
    pub fn with_failpoint<F>(mut self, hook: F) -> Self
    where
        F: Fn(crate::Step) -> std::io::Result<()> + Send + Sync + 'static,
    {
        self.failpoint = Some(crate::dir::Hook(Arc::new(hook)));
        self
    }
}
