//! The file store under failure: a failure injected after every step of the write
//! sequence (write, sync, publish, directory sync) through the `failpoints` feature of
//! `session-file`, a full disk and a read-only directory. After each, a fresh store on
//! the same directory reads the session as the complete old record or the complete new
//! one, never torn and never absent. (`tests/file_crash.rs` does the same with a real
//! crash of the writing process.)

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use session_core::{Error, Record, SessionKey, Store};
use session_file::{FileStore, Step};
use time::OffsetDateTime;

const STEPS: [Step; 4] = [Step::Write, Step::Sync, Step::Publish, Step::SyncDir];

fn at(hours: i64) -> OffsetDateTime {
    // Whole seconds: a record read back compares equal.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns");
    now + time::Duration::hours(hours)
}

/// A record whose payload is `n` repeated in `len` bytes of text, so a torn file could
/// not pass for a whole one.
fn record(n: u64, len: usize, expires_at: OffsetDateTime) -> Record {
    let mut data = session_core::Data::new();
    data.insert("n".into(), n.into());
    data.insert("fill".into(), n.to_string().repeat(len).into());
    Record::new(data, expires_at)
}

/// A store on `dir` whose writes fail right after `step`.
fn failing_at(dir: &Path, step: Step, error: fn() -> io::Error) -> FileStore {
    FileStore::builder(dir)
        .with_failpoint(move |at| if at == step { Err(error()) } else { Ok(()) })
        .open()
        .expect("open")
}

fn injected() -> io::Error {
    io::Error::other("injected failure")
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

fn session_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with("session_"))
        .collect()
}

fn assert_backend<T: std::fmt::Debug>(result: session_core::Result<T>, what: &str) {
    match result {
        Err(Error::Backend { store: "file", .. }) => {}
        other => panic!("{what}: expected Error::Backend from the file store, got {other:?}"),
    }
}

/// Reads `key` with a store opened afresh on `dir`, as a restarted process would.
async fn reread(dir: &Path, key: &SessionKey) -> Record {
    FileStore::open(dir)
        .expect("reopen")
        .load(key)
        .await
        .expect("load")
        .expect("the session must never be absent after a failed write")
}

#[tokio::test]
async fn a_failed_save_leaves_the_complete_old_or_new_record() {
    for step in STEPS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let healthy = FileStore::open(&dir).expect("open");
        let old = record(1, 4000, at(1));
        let key = healthy.create(&old).await.expect("create");
        let loaded = healthy.load(&key).await.expect("load").expect("created");

        let mut new = record(2, 9000, at(2));
        new.version = loaded.version;
        let failing = failing_at(&dir, step, injected);
        assert_backend(
            failing.save(&key, &new).await,
            &format!("save failing at {step:?}"),
        );

        let got = reread(&dir, &key).await;
        // Before the rename the old file is untouched; from the rename on the new one is
        // in place, whole (its content was synced before it got the name).
        let (want, version) = match step {
            Step::Write | Step::Sync => (&old, 1),
            Step::Publish | Step::SyncDir => (&new, 2),
        };
        assert_eq!(got.version, version, "after a failure at {step:?}");
        assert_eq!(got.data, want.data, "after a failure at {step:?}");
        assert_eq!(
            got.expires_at, want.expires_at,
            "after a failure at {step:?}"
        );
        assert_eq!(session_files(&dir).len(), 1, "after a failure at {step:?}");

        // The session goes on: a save based on what was read succeeds.
        let fresh = FileStore::open(&dir).expect("reopen");
        fresh
            .save(&key, &got)
            .await
            .expect("save after the failure");
        assert_eq!(
            fresh.load(&key).await.expect("load").map(|r| r.version),
            Some(version + 1)
        );
    }
}

#[tokio::test]
async fn a_failed_touch_leaves_the_old_or_new_expiry_with_the_same_data() {
    for step in STEPS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let healthy = FileStore::open(&dir).expect("open");
        let old = record(5, 3000, at(1));
        let key = healthy.create(&old).await.expect("create");

        let failing = failing_at(&dir, step, injected);
        assert_backend(
            failing.touch(&key, at(5)).await,
            &format!("touch failing at {step:?}"),
        );

        let got = reread(&dir, &key).await;
        let want = match step {
            Step::Write | Step::Sync => at(1),
            Step::Publish | Step::SyncDir => at(5),
        };
        assert_eq!(got.expires_at, want, "after a failure at {step:?}");
        assert_eq!(got.data, old.data, "after a failure at {step:?}");
        assert_eq!(got.version, 1, "touch never changes the version");
    }
}

#[tokio::test]
async fn a_failed_create_leaves_no_session_or_a_whole_one() {
    for step in STEPS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let failing = failing_at(&dir, step, injected);
        let new = record(9, 5000, at(1));
        assert_backend(
            failing.create(&new).await,
            &format!("create failing at {step:?}"),
        );
        let names = session_files(&dir);
        match step {
            Step::Write | Step::Sync => assert!(names.is_empty(), "{step:?}: {names:?}"),
            Step::Publish | Step::SyncDir => {
                // The key was never handed out: an orphan, but a whole record, which
                // expires and is swept like any other.
                assert_eq!(names.len(), 1, "{step:?}: {names:?}");
                let name = names.first().expect("one");
                let bytes = std::fs::read(dir.join(name)).expect("read");
                let got = Record::decode_framed(&bytes).expect("a whole record");
                assert_eq!((got.version, &got.data), (1, &new.data));
            }
        }
        // No temporary file is ever left under a session name; what the failed write
        // left (if anything) is swept once stale, never loaded.
        let others: Vec<_> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .filter(|n| {
                !n.starts_with("session_") && !n.starts_with(".tmp-") && !n.starts_with(".lock-")
            })
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }
}

#[tokio::test]
async fn a_failed_directory_sync_after_delete_still_removes_the_session() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let key = FileStore::open(&dir)
        .expect("open")
        .create(&record(1, 10, at(1)))
        .await
        .expect("create");
    let failing = failing_at(&dir, Step::SyncDir, injected);
    assert_backend(failing.delete(&key).await, "delete failing at SyncDir");
    // The name is gone (only its durability was not confirmed): never a half-deleted file.
    let fresh = FileStore::open(&dir).expect("reopen");
    assert_eq!(fresh.load(&key).await.expect("load"), None);
    fresh.delete(&key).await.expect("delete is idempotent");
}

#[tokio::test]
async fn a_simulated_full_disk_fails_the_write_and_keeps_the_old_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let old = record(1, 100, at(1));
    let key = FileStore::open(&dir)
        .expect("open")
        .create(&old)
        .await
        .expect("create");
    // ENOSPC as the write (or the sync that flushes it) would report it.
    for step in [Step::Write, Step::Sync] {
        let full = failing_at(&dir, step, enospc);
        let mut new = record(2, 100, at(2));
        new.version = 1;
        assert_backend(full.save(&key, &new).await, "save on a full disk");
        assert_backend(full.touch(&key, at(3)).await, "touch on a full disk");
        assert_backend(full.create(&new).await, "create on a full disk");
        let got = reread(&dir, &key).await;
        assert_eq!(
            (got.version, &got.data, got.expires_at),
            (1, &old.data, old.expires_at)
        );
        assert_eq!(session_files(&dir).len(), 1);
    }
}

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mnt)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed ({status}): this test needs root (CAP_SYS_ADMIN)"
        );
        Self { _tmp: tmp, mnt }
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.mnt)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {mode} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Fills the file system of `dir` until it reports ENOSPC; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = [0u8; 1024];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Drain every last block (a partial write above may have left a few bytes free).
    while file.write(&[0u8]).is_ok_and(|n| n == 1) {}
    path
}

#[tokio::test]
#[ignore = "mounts a tmpfs: needs root (CAP_SYS_ADMIN)"]
async fn a_really_full_disk_fails_the_write_and_keeps_the_old_record() {
    let fs = Tmpfs::mount("256k");
    let dir = fs.mnt.join("s");
    let store = FileStore::open(&dir).expect("open");
    let old = record(1, 2000, at(1));
    let key = store.create(&old).await.expect("create");
    let filler = fill(&fs.mnt);

    let mut new = record(2, 20_000, at(2));
    new.version = 1;
    assert_backend(store.save(&key, &new).await, "save on a full disk");
    assert_backend(store.create(&new).await, "create on a full disk");
    let got = reread(&dir, &key).await;
    assert_eq!(
        (got.version, &got.data, got.expires_at),
        (1, &old.data, old.expires_at)
    );
    assert_eq!(session_files(&dir).len(), 1);

    // Space back: the same store value writes again.
    std::fs::remove_file(filler).expect("remove filler");
    store
        .save(&key, &new)
        .await
        .expect("save once there is room");
    assert_eq!(reread(&dir, &key).await.version, 2);
}

#[tokio::test]
#[ignore = "mounts a tmpfs: needs root (CAP_SYS_ADMIN)"]
async fn a_read_only_directory_refuses_writes_and_keeps_the_old_record() {
    // Root ignores permission bits (chmod 0500 would not stop it): remount read-only.
    let fs = Tmpfs::mount("1m");
    let dir = fs.mnt.join("s");
    let store: Arc<dyn Store> = Arc::new(FileStore::open(&dir).expect("open"));
    let old = record(1, 500, at(1));
    let key = store.create(&old).await.expect("create");
    fs.remount("ro");

    let mut new = record(2, 500, at(2));
    new.version = 1;
    assert_backend(
        store.save(&key, &new).await,
        "save on a read-only file system",
    );
    assert_backend(
        store.touch(&key, at(3)).await,
        "touch on a read-only file system",
    );
    assert_backend(
        store.create(&new).await,
        "create on a read-only file system",
    );
    assert_backend(
        store.delete(&key).await,
        "delete on a read-only file system",
    );
    // Reading still works, and reads the old record.
    let got = store.load(&key).await.expect("load").expect("present");
    assert_eq!(
        (got.version, &got.data, got.expires_at),
        (1, &old.data, old.expires_at)
    );
    assert_eq!(store.clear_expired().await.expect("nothing to clear"), 0);

    fs.remount("rw");
    store.save(&key, &new).await.expect("save once writable");
    assert_eq!(
        store.load(&key).await.expect("load").map(|r| r.version),
        Some(2)
    );
}
