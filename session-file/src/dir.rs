//! The blocking half of the store: every function here runs inside one
//! `spawn_blocking` call of [`FileStore`](crate::FileStore).
//!
//! Directory layout (`<prefix>` is the store's [`FilePrefix`]):
//!
//! - `<prefix><64 hex>`: a session, in the framed form of
//!   [`Record::encode_framed`] (header with version and `expires_at`, then the payload),
//!   or the [ended marker](Record::encode_ended_marker) that replaces it when the session
//!   is ended (the bare 19-byte header, version 0, `expires_at` = until when it is
//!   remembered);
//! - `.tmp-<32 random>`: a file being written; it only ever becomes a session by a
//!   `link` or `rename` once its content is synced, so a crash leaves at worst a stale
//!   temporary file, which `load` never looks at and `clear_expired` removes;
//! - `.lock-<2 hex>`: 256 lock files striped by the first byte of the storage id, locked
//!   with `flock` around every change of an existing session.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use session_core::{Error, FrameHeader, Lookup, Record, Result, SessionKey, StorageId};
use time::OffsetDateTime;

use crate::FilePrefix;

/// The store name in [`Error::Backend`].
pub(crate) const STORE: &str = "file";

/// Temporary files older than this are leftovers of a crash (a write takes milliseconds).
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

const TEMP_PREFIX: &str = ".tmp-";

/// The steps of a durable write, in order. `SessionDir::checkpoint` runs after each, so
/// a fault can be injected between any two of them (feature `failpoints`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "failpoints"), allow(unreachable_pub))]
pub enum Step {
    /// The bytes are written to the temporary file.
    Write,
    /// The temporary file is synced to stable storage.
    Sync,
    /// The temporary file is linked (create) or renamed (save, touch, end) to its final
    /// name.
    Publish,
    /// The directory is synced, so the new name survives a power loss.
    SyncDir,
}

/// A function run after every [`Step`] of a write (feature `failpoints`): an error it
/// returns ends the operation there, as a failure of that step would.
#[cfg(feature = "failpoints")]
pub type Failpoint = std::sync::Arc<dyn Fn(Step) -> io::Result<()> + Send + Sync>;

/// One session directory, opened.
#[derive(Debug)]
pub(crate) struct SessionDir {
    path: PathBuf,
    /// The directory itself, kept open to sync it after names change.
    handle: File,
    prefix: FilePrefix,
    #[cfg(feature = "failpoints")]
    failpoint: Option<Hook>,
}

/// A [`Failpoint`] with a `Debug` form.
#[cfg(feature = "failpoints")]
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Failpoint);

#[cfg(feature = "failpoints")]
impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Failpoint")
    }
}

/// `(device, inode)`: tells whether a name still refers to the file that was read.
type Identity = (u64, u64);

/// What a session name refers to.
enum Opened {
    Missing,
    /// A symlink, FIFO, directory...: never a session this store wrote.
    NotRegular,
    Regular(File, Metadata),
}

/// What a directory entry is to this store.
enum Kind {
    Session(StorageId),
    Temp,
    Other,
}

fn backend(e: io::Error) -> Error {
    Error::backend(STORE, e)
}

fn identity(meta: &Metadata) -> Identity {
    (meta.dev(), meta.ino())
}

/// Opens `path` for reading without following a symlink (`O_NOFOLLOW`) and without
/// blocking on a FIFO planted under a session name (`O_NONBLOCK`, harmless for regular
/// files).
fn open_session_file(path: &Path) -> io::Result<Opened> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Opened::NotRegular),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok(Opened::Regular(file, meta))
    } else {
        Ok(Opened::NotRegular)
    }
}

fn read_whole(mut file: File, meta: &Metadata) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads the frame header alone; `Ok(None)` when the file is too short or not framed.
fn read_header(file: &mut File) -> io::Result<Option<FrameHeader>> {
    let mut buf = [0u8; FrameHeader::LEN];
    match file.read_exact(&mut buf) {
        Ok(()) => Ok(FrameHeader::read(&buf).ok()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `path`, treating an already missing file as removed.
fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A temporary file that is removed when dropped, unless it was renamed away.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a temporary file left behind is removed by `clear_expired`.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl SessionDir {
    /// Creates the directory if missing (mode 0700) and opens it.
    pub(crate) fn open(path: PathBuf, prefix: FilePrefix) -> io::Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)?;
        // The directory itself may be a symlink chosen by the administrator: follow it.
        let meta = fs::metadata(&path)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                dir = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the session directory is accessible to other users"
            );
        }
        let handle = File::open(&path)?;
        Ok(Self {
            path,
            handle,
            prefix,
            #[cfg(feature = "failpoints")]
            failpoint: None,
        })
    }

    /// Runs `hook` after every step of every write from now on.
    #[cfg(feature = "failpoints")]
    pub(crate) fn set_failpoint(&mut self, hook: Option<Hook>) {
        self.failpoint = hook;
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn prefix(&self) -> &FilePrefix {
        &self.prefix
    }

    /// The path of the session stored under `id`. Only a storage id (64 hex digits)
    /// and the validated prefix go into the name: no input can name another file.
    fn session_path(&self, id: &StorageId) -> PathBuf {
        let mut hex = [0u8; 64];
        let mut name = String::with_capacity(self.prefix.as_str().len() + 64);
        name.push_str(self.prefix.as_str());
        name.push_str(id.encode_hex(&mut hex));
        self.path.join(name)
    }

    fn classify(&self, name: &str) -> Kind {
        if name.starts_with(TEMP_PREFIX) {
            return Kind::Temp;
        }
        name.strip_prefix(self.prefix.as_str())
            .and_then(StorageId::from_hex)
            .map_or(Kind::Other, Kind::Session)
    }

    /// Takes the exclusive advisory lock that guards every change of the sessions whose
    /// storage id starts with the byte of `id`; released when the file is dropped.
    fn lock(&self, id: &StorageId) -> io::Result<File> {
        let name = format!(".lock-{:02x}", id.as_bytes()[0]);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path.join(name))?;
        file.lock()?;
        Ok(file)
    }

    /// Runs after each [`Step`] of a write: the one place where a test can make the
    /// sequence stop after any step. Without the `failpoints` feature it does nothing.
    #[cfg_attr(not(feature = "failpoints"), allow(clippy::unused_self))]
    fn checkpoint(&self, step: Step) -> io::Result<()> {
        #[cfg(feature = "failpoints")]
        if let Some(Hook(hook)) = &self.failpoint {
            return hook(step);
        }
        let _ = step;
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.handle.sync_all()?;
        self.checkpoint(Step::SyncDir)
    }

    /// Writes `bytes` to a new temporary file (mode 0600) and syncs it.
    fn write_temp(&self, bytes: &[u8]) -> io::Result<TempFile> {
        let mut attempt = 0;
        loop {
            // A generated key is 32 random [a-z0-9]: a fine unique name. This runs on a
            // blocking thread, where no test hook forces the generated value.
            let path = self
                .path
                .join(format!("{TEMP_PREFIX}{}", SessionKey::generate().as_str()));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            let mut file = match opened {
                Ok(file) => file,
                // A random name taken twice in a row means the file system answers
                // `EEXIST` for another reason: give up rather than spin.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 2 => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let temp = TempFile { path, armed: true };
            file.write_all(bytes)?;
            self.checkpoint(Step::Write)?;
            file.sync_all()?;
            self.checkpoint(Step::Sync)?;
            return Ok(temp);
        }
    }

    /// Replaces the file at `path` with `bytes`: write a temporary file, sync it, rename
    /// it over `path`, sync the directory. A crash at any point leaves the old or the new
    /// content under `path`, never a mix. The caller holds the lock of `path`.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = self.write_temp(bytes)?;
        fs::rename(&temp.path, path)?;
        temp.disarm();
        self.checkpoint(Step::Publish)?;
        self.sync_dir()
    }

    /// Stores `framed` under `id` unless the name is taken, and answers whether it did.
    ///
    /// The synced temporary file is hard-linked to the session name: `link` fails when
    /// the name exists (so it never replaces a session, live or ended, and never follows
    /// a symlink planted there), and the name appears only with its whole content, so a
    /// crash never leaves a torn session. A name still held by an expired file that
    /// `clear_expired` has not removed yet counts as taken too: the caller draws another
    /// key.
    pub(crate) fn create(&self, id: &StorageId, framed: &[u8]) -> Result<bool> {
        let temp = self.write_temp(framed).map_err(backend)?;
        match fs::hard_link(&temp.path, self.session_path(id)) {
            Ok(()) => {}
            // Dropping the guard removes the temporary file.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(backend(e)),
        }
        self.checkpoint(Step::Publish).map_err(backend)?;
        // Dropping the guard unlinks the temporary name; the session keeps the inode.
        drop(temp);
        self.sync_dir().map_err(backend)?;
        Ok(true)
    }

    /// What is stored under `id`: a live record, an ended marker still before its
    /// instant, or nothing. Unreadable files are logged and removed; expired ones are left
    /// for `clear_expired` (a read never writes).
    pub(crate) fn lookup(&self, id: &StorageId) -> Result<Lookup> {
        let path = self.session_path(id);
        let (file, meta) = match open_session_file(&path).map_err(backend)? {
            Opened::Missing => return Ok(Lookup::Absent),
            Opened::NotRegular => {
                tracing::warn!(session = %id.short(), "a session name that is not a regular file was removed");
                self.remove_odd(id, &path).map_err(backend)?;
                return Ok(Lookup::Absent);
            }
            Opened::Regular(file, meta) => (file, meta),
        };
        let bytes = read_whole(file, &meta).map_err(backend)?;
        match Lookup::decode_framed(&bytes, OffsetDateTime::now_utc()) {
            Ok(found) => Ok(found),
            Err(_) => {
                let damaged = if FrameHeader::read(&bytes).is_err() {
                    "header"
                } else {
                    "payload"
                };
                self.discard(id, &path, &meta, damaged)?;
                Ok(Lookup::Absent)
            }
        }
    }

    /// Logs and removes a session file that cannot be decoded.
    fn discard(
        &self,
        id: &StorageId,
        path: &Path,
        meta: &Metadata,
        damaged: &'static str,
    ) -> Result<()> {
        // The decoder's message can quote the file's content (session data): log only
        // which part was damaged.
        tracing::warn!(session = %id.short(), damaged, len = meta.len(), "an unreadable session file was removed");
        self.remove_unless_replaced(id, path, identity(meta))
            .map_err(backend)?;
        Ok(())
    }

    /// Removes the non-regular entry (a planted symlink...) at `path` without following it.
    fn remove_odd(&self, id: &StorageId, path: &Path) -> io::Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_file() => self.remove_unless_replaced(id, path, identity(&meta)),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Under the session's lock, removes `path` if it still names the file `seen`, so a
    /// session written meanwhile is never removed in its place.
    fn remove_unless_replaced(
        &self,
        id: &StorageId,
        path: &Path,
        seen: Identity,
    ) -> io::Result<bool> {
        let _lock = self.lock(id)?;
        match fs::symlink_metadata(path) {
            Ok(meta) if identity(&meta) == seen => remove_if_present(path),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The header of the live session at `path`; `NotFound` when it is missing, expired,
    /// ended (an ended marker) or not a session file. The caller holds the lock.
    fn live_file(&self, path: &Path) -> Result<(File, FrameHeader)> {
        let Opened::Regular(mut file, _) = open_session_file(path).map_err(backend)? else {
            return Err(Error::NotFound);
        };
        match read_header(&mut file).map_err(backend)? {
            Some(header)
                if !header.is_ended_marker() && header.expires_at > OffsetDateTime::now_utc() =>
            {
                Ok((file, header))
            }
            _ => Err(Error::NotFound),
        }
    }

    /// Compare-and-set: replaces the session with `framed` (which carries
    /// `expected + 1`) if its stored version is `expected`.
    pub(crate) fn save(&self, id: &StorageId, expected: u64, framed: &[u8]) -> Result<()> {
        let _lock = self.lock(id).map_err(backend)?;
        let path = self.session_path(id);
        let (_, header) = self.live_file(&path)?;
        if header.version != expected {
            return Err(Error::Conflict);
        }
        self.replace(&path, framed).map_err(backend)
    }

    /// Moves the expiry of the live session under `id`, keeping version and payload bytes.
    pub(crate) fn touch(&self, id: &StorageId, expires_at: OffsetDateTime) -> Result<()> {
        let _lock = self.lock(id).map_err(backend)?;
        let path = self.session_path(id);
        let (mut file, header) = self.live_file(&path)?;
        let mut bytes = Vec::with_capacity(FrameHeader::LEN + 256);
        FrameHeader {
            version: header.version,
            expires_at,
        }
        .write(&mut bytes);
        file.read_to_end(&mut bytes).map_err(backend)?;
        self.replace(&path, &bytes).map_err(backend)
    }

    /// Ends the live session under `id` if its stored version is `version`: replaces it
    /// with an ended marker remembered until `remember_until`. One locked operation: the
    /// version is compared and the marker written under the stripe's lock (the one `save`
    /// takes), through the same synced temporary file and rename, so a crash leaves the
    /// whole record or the whole marker.
    pub(crate) fn end(
        &self,
        id: &StorageId,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        let _lock = self.lock(id).map_err(backend)?;
        let path = self.session_path(id);
        let (_, header) = self.live_file(&path)?;
        if header.version != version {
            return Err(Error::Conflict);
        }
        self.replace(&path, &Record::encode_ended_marker(remember_until))
            .map_err(backend)
    }

    /// Removes the session (or ended marker) under `id`, if any. Under the lock, so a
    /// save in flight cannot bring it back after the removal.
    pub(crate) fn delete(&self, id: &StorageId) -> Result<()> {
        let _lock = self.lock(id).map_err(backend)?;
        if remove_if_present(&self.session_path(id)).map_err(backend)? {
            // A logout must survive a power loss.
            self.sync_dir().map_err(backend)?;
        }
        Ok(())
    }

    /// Streams the directory, removing expired and unreadable sessions, ended markers past
    /// their instant and stale temporary files; returns how many session files (markers
    /// included) it removed.
    pub(crate) fn clear_expired(&self) -> Result<u64> {
        let now = OffsetDateTime::now_utc();
        let stale_before = SystemTime::now()
            .checked_sub(STALE_TEMP_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0u64;
        let mut changed = false;
        for entry in fs::read_dir(&self.path).map_err(backend)? {
            let entry = entry.map_err(backend)?;
            let name = entry.file_name();
            // Every name this store writes is ASCII; anything else is not ours.
            let Some(name) = name.to_str() else { continue };
            match self.classify(name) {
                Kind::Temp => {
                    if self
                        .remove_stale_temp(&entry, stale_before)
                        .map_err(backend)?
                    {
                        changed = true;
                    }
                }
                Kind::Session(id) => {
                    if self.sweep(&id, &entry.path(), now).map_err(backend)? {
                        removed += 1;
                        changed = true;
                    }
                }
                Kind::Other => {}
            }
        }
        if changed {
            self.sync_dir().map_err(backend)?;
        }
        Ok(removed)
    }

    fn remove_stale_temp(
        &self,
        entry: &fs::DirEntry,
        stale_before: SystemTime,
    ) -> io::Result<bool> {
        // `DirEntry::metadata` does not follow symlinks.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.modified()? < stale_before {
            remove_if_present(&entry.path())
        } else {
            Ok(false)
        }
    }

    /// Removes the session file at `path` if it is expired or unreadable. An ended marker
    /// is a bare header whose `expires_at` is the instant it is remembered until, so the
    /// same header check removes it once that instant has passed.
    fn sweep(&self, id: &StorageId, path: &Path, now: OffsetDateTime) -> io::Result<bool> {
        let (mut file, meta) = match open_session_file(path)? {
            Opened::Missing => return Ok(false),
            Opened::NotRegular => {
                tracing::warn!(session = %id.short(), "a session name that is not a regular file was removed");
                return self.remove_odd(id, path);
            }
            Opened::Regular(file, meta) => (file, meta),
        };
        match read_header(&mut file)? {
            Some(header) if header.expires_at > now => Ok(false),
            Some(_) => self.remove_unless_replaced(id, path, identity(&meta)),
            None => {
                tracing::warn!(session = %id.short(), "an unreadable session file was removed");
                self.remove_unless_replaced(id, path, identity(&meta))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, SessionDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = SessionDir::open(tmp.path().join("s"), FilePrefix::default()).expect("open");
        (tmp, dir)
    }

    #[test]
    fn names_are_classified_by_shape() {
        let (_tmp, dir) = dir();
        let id = SessionKey::generate().storage_id();
        let name = format!("session_{}", id.to_hex());
        assert!(matches!(dir.classify(&name), Kind::Session(got) if got == id));
        assert!(matches!(dir.classify(".tmp-abc"), Kind::Temp));
        for other in [
            ".lock-00",
            "session_",
            "session_xyz",
            "other_0000000000000000000000000000000000000000000000000000000000000000",
            &format!("session_{}", id.to_hex().to_uppercase()),
            &format!("session_{}0", id.to_hex()),
        ] {
            assert!(matches!(dir.classify(other), Kind::Other), "{other}");
        }
    }

    #[test]
    fn session_path_stays_in_the_directory() {
        let (_tmp, dir) = dir();
        let id = SessionKey::generate().storage_id();
        let path = dir.session_path(&id);
        assert_eq!(path.parent(), Some(dir.path()));
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(format!("session_{}", id.to_hex()).as_str())
        );
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let (_tmp, dir) = dir();
        let temp = dir.write_temp(b"abc").expect("write");
        assert!(temp.path.exists());
        let path = temp.path.clone();
        drop(temp);
        assert!(!path.exists());
    }
}
