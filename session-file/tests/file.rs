//! FileStore against the conformance suite, and the behaviours only a directory has.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration as StdDuration, SystemTime};

use serde_json::json;
use session_core::conformance::Factory;
use session_core::{Data, Error, FrameHeader, Record, SessionKey, Store, async_trait};
use session_file::{FilePrefix, FileStore};
use time::{Duration, OffsetDateTime};

/// Every namespace of the conformance suite is a directory under one base directory
/// (inside the target directory, so nothing is left in the system's temporary directory).
static BASE: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    tempfile::Builder::new()
        .prefix("session-file-conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a base directory for the conformance suite")
});

struct Directories;

#[async_trait]
impl Factory for Directories {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(FileStore::open(BASE.path().join(ns)).expect("open the namespace directory"))
    }

    async fn cleanup(&self, ns: &str) {
        let _ = fs::remove_dir_all(BASE.path().join(ns));
    }
}

session_core::conformance_tests!(file_store, super::Directories);

// ---------------------------------------------------------------------------------------

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn record(n: u64, expires_at: OffsetDateTime) -> Record {
    let mut data = Data::new();
    data.insert("n".into(), json!(n));
    Record::new(data, expires_at)
}

fn session_path(store: &FileStore, key: &SessionKey) -> PathBuf {
    store
        .dir()
        .join(format!("{}{}", store.prefix(), key.storage_id().to_hex()))
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn store_in(tmp: &tempfile::TempDir) -> FileStore {
    FileStore::open(tmp.path().join("sessions")).expect("open")
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("session-file-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
}

/// Keys a client may send that must never become a path.
fn hostile_keys() -> Vec<SessionKey> {
    let mut keys: Vec<SessionKey> = [
        "../x",
        "..",
        ".",
        "...",
        "/etc/passwd",
        "/",
        "../../../../../../../../../../ab", // 32 characters, the generated length
        "abcdefghijklmnop/qrstuvwxyz01234",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "abcdefghijklmnopqrstuvwxyz01234",   // 31
        "abcdefghijklmnopqrstuvwxyz0123456", // 33
        ".tmp-abcdefghijklmnopqrstuvwxyz0",
    ]
    .iter()
    .map(|k| SessionKey::parse(k).expect("cookie-safe"))
    .collect();
    keys.push(SessionKey::parse(&"a".repeat(session_core::MAX_KEY_LEN)).expect("cookie-safe"));
    keys
}

/// Runs every keyed operation with a hostile key and asserts the refusals.
async fn assert_refused(store: &FileStore, key: &SessionKey) {
    let r = Record {
        version: 1,
        ..record(1, in_an_hour())
    };
    assert!(matches!(store.load(key).await, Ok(None)), "load {key:?}");
    assert!(store.delete(key).await.is_ok(), "delete {key:?}");
    assert!(
        matches!(store.save(key, &r).await, Err(Error::InvalidKey)),
        "save {key:?}"
    );
    assert!(
        matches!(store.touch(key, in_an_hour()).await, Err(Error::InvalidKey)),
        "touch {key:?}"
    );
}

#[tokio::test]
async fn malformed_keys_are_refused_without_touching_the_file_system() {
    // NUL, spaces and separators other than `/` never even make a key.
    for bad in ["a\0b", "a b", "a;b", "a\\b", ""] {
        assert!(SessionKey::parse(bad).is_err(), "{bad:?} parsed");
    }

    let tmp = tmp();
    let store = store_in(&tmp);
    let key = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let before = listing(store.dir());
    for bad in hostile_keys() {
        assert_refused(&store, &bad).await;
    }
    assert_eq!(
        listing(store.dir()),
        before,
        "a refused key changed the directory"
    );
    assert_eq!(listing(tmp.path()), BTreeSet::from(["sessions".to_owned()]));

    // With the directory gone, any file system access fails: refused keys still get
    // their answers, proving no access was attempted, while a well-formed key reaches
    // the (missing) directory and reports it.
    fs::remove_dir_all(store.dir()).expect("remove the directory");
    for bad in hostile_keys() {
        assert_refused(&store, &bad).await;
    }
    let r = Record {
        version: 1,
        ..record(1, in_an_hour())
    };
    assert!(
        matches!(store.save(&key, &r).await, Err(Error::Backend { .. })),
        "a well-formed key did not reach the file system"
    );
    assert!(!store.dir().exists());
}

#[tokio::test]
async fn a_torn_temporary_file_is_ignored_by_load_and_removed_when_stale() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let key = store
        .create(&record(7, in_an_hour()))
        .await
        .expect("create");
    let whole = record(8, in_an_hour()).encode_framed().expect("encode");
    let torn = store.dir().join(".tmp-tornwriteleftbyacrash0000000");
    fs::write(&torn, &whole[..whole.len() / 2]).expect("plant a torn temporary file");

    let loaded = store.load(&key).await.expect("load").expect("present");
    assert_eq!(loaded.data["n"], 7);

    // Young temporary files may belong to a write in progress: left alone.
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
    assert!(torn.exists(), "a fresh temporary file was removed");

    fs::File::options()
        .write(true)
        .open(&torn)
        .expect("open")
        .set_modified(SystemTime::now() - StdDuration::from_secs(120))
        .expect("age the file");
    assert_eq!(
        store.clear_expired().await.expect("clear"),
        0,
        "a temporary file was counted as a session"
    );
    assert!(
        !torn.exists(),
        "a stale temporary file survived clear_expired"
    );
    assert_eq!(
        store
            .load(&key)
            .await
            .expect("load")
            .map(|r| r.data["n"].clone()),
        Some(json!(7))
    );
}

#[tokio::test]
async fn truncated_or_garbage_session_files_load_as_absent_and_are_removed() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let whole = record(1, in_an_hour()).encode_framed().expect("encode");
    let damages: Vec<Vec<u8>> = vec![
        Vec::new(),
        whole[..5].to_vec(),
        whole[..FrameHeader::LEN].to_vec(),
        whole[..whole.len() - 3].to_vec(),
        b"\xff\x00garbage that is not a session at all\n".to_vec(),
        {
            let mut bad = whole.clone();
            bad[FrameHeader::LEN] = b'[';
            bad
        },
    ];
    for (i, damaged) in damages.iter().enumerate() {
        let key = store
            .create(&record(1, in_an_hour()))
            .await
            .expect("create");
        let path = session_path(&store, &key);
        fs::write(&path, damaged).expect("damage the file");
        assert!(
            matches!(store.load(&key).await, Ok(None)),
            "damage {i} did not load as absent"
        );
        assert!(!path.exists(), "damaged file {i} was not removed");
        assert!(
            matches!(
                store.save(&key, &record(1, in_an_hour())).await,
                Err(Error::NotFound)
            ),
            "damage {i}: the session came back"
        );
    }

    // clear_expired removes files whose header cannot be read, and counts them.
    let live = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let key = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    fs::write(session_path(&store, &key), b"SR").expect("damage");
    assert_eq!(store.clear_expired().await.expect("clear"), 1);
    assert!(!session_path(&store, &key).exists());
    assert!(store.load(&live).await.expect("load").is_some());
}

#[tokio::test]
async fn directory_and_files_are_owner_only() {
    let tmp = tmp();
    let dir = tmp.path().join("a").join("b");
    let store = FileStore::open(&dir).expect("open");
    assert_eq!(mode(&dir), 0o700, "directory mode");
    assert_eq!(mode(&tmp.path().join("a")), 0o700, "created parent mode");

    let key = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let path = session_path(&store, &key);
    assert_eq!(mode(&path), 0o600, "mode after create");

    let r = store.load(&key).await.expect("load").expect("present");
    store.save(&key, &r).await.expect("save");
    assert_eq!(mode(&path), 0o600, "mode after save");
    store.touch(&key, in_an_hour()).await.expect("touch");
    assert_eq!(mode(&path), 0o600, "mode after touch");

    for name in listing(&dir) {
        assert_eq!(mode(&dir.join(&name)), 0o600, "mode of {name}");
    }
}

#[tokio::test]
async fn planted_symlinks_are_not_followed() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let outside = tmp.path().join("outside");
    let original = record(5, in_an_hour())
        .encode_framed()
        .map(|mut bytes| {
            // A valid live session of version 1: were the link followed, it would load.
            bytes[3..11].copy_from_slice(&1u64.to_be_bytes());
            bytes
        })
        .expect("encode");
    fs::write(&outside, &original).expect("write the target");

    let key = SessionKey::generate();
    let link = session_path(&store, &key);
    let plant = || {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&outside, &link).expect("plant a symlink");
    };

    plant();
    assert!(
        matches!(store.load(&key).await, Ok(None)),
        "load read through the link"
    );

    let r = Record {
        version: 1,
        ..record(99, in_an_hour())
    };
    plant();
    assert!(
        matches!(store.save(&key, &r).await, Err(Error::NotFound)),
        "save accepted a linked session"
    );
    plant();
    assert!(
        matches!(store.touch(&key, in_an_hour()).await, Err(Error::NotFound)),
        "touch accepted a linked session"
    );
    assert_eq!(
        fs::read(&outside).expect("read"),
        original,
        "the target changed"
    );

    plant();
    store.delete(&key).await.expect("delete");
    assert!(fs::symlink_metadata(&link).is_err(), "delete kept the link");
    assert_eq!(
        fs::read(&outside).expect("read"),
        original,
        "delete hit the target"
    );

    plant();
    assert_eq!(store.clear_expired().await.expect("clear"), 1);
    assert!(
        fs::symlink_metadata(&link).is_err(),
        "clear_expired kept the link"
    );
    assert_eq!(
        fs::read(&outside).expect("read"),
        original,
        "clear_expired hit the target"
    );
}

#[tokio::test]
async fn a_fifo_under_a_session_name_does_not_block_load() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let key = SessionKey::generate();
    let path = session_path(&store, &key);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    let load = tokio::time::timeout(StdDuration::from_secs(10), store.load(&key)).await;
    assert!(matches!(load, Ok(Ok(None))), "load of a FIFO: {load:?}");
}

const WORKER_DIR: &str = "SESSION_FILE_TEST_WORKER_DIR";
const WORKER_KEY: &str = "SESSION_FILE_TEST_WORKER_KEY";
const PROCESSES: u64 = 3;
const TASKS_PER_PROCESS: u64 = 2;
const INCREMENTS_PER_TASK: u64 = 25;

/// Loads, increments and saves `n` until `times` saves succeeded, retrying on conflict.
async fn increment(store: FileStore, key: SessionKey, times: u64) {
    let mut done = 0;
    while done < times {
        let mut r = store
            .load(&key)
            .await
            .expect("load")
            .expect("the session exists");
        let n = r.data["n"].as_u64().expect("n is a number");
        Arc::make_mut(&mut r.data).insert("n".into(), json!(n + 1));
        match store.save(&key, &r).await {
            Ok(_) => done += 1,
            Err(Error::Conflict) => {}
            Err(e) => panic!("save failed: {e}"),
        }
    }
}

/// Run in the parent, it spawns `PROCESSES` copies of this test binary that run this same
/// test in worker mode (selected by the environment), each incrementing one shared
/// session; no increment may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_lose_no_increment() {
    if let (Ok(dir), Ok(key)) = (std::env::var(WORKER_DIR), std::env::var(WORKER_KEY)) {
        let store = FileStore::open(dir).expect("open in the worker");
        let key = SessionKey::parse(&key).expect("key");
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|_| tokio::spawn(increment(store.clone(), key.clone(), INCREMENTS_PER_TASK)))
            .collect();
        for t in tasks {
            t.await.expect("worker task");
        }
        return;
    }

    let tmp = tmp();
    let store = store_in(&tmp);
    let key = store
        .create(&record(0, in_an_hour()))
        .await
        .expect("create");
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "two_processes_lose_no_increment",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_DIR, store.dir())
                .env(WORKER_KEY, key.as_str())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn a worker process")
        })
        .collect();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait for the worker");
        assert!(
            out.status.success(),
            "worker failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let total = PROCESSES * TASKS_PER_PROCESS * INCREMENTS_PER_TASK;
    let r = store.load(&key).await.expect("load").expect("present");
    assert_eq!(r.data["n"], total, "increments were lost");
    assert_eq!(r.version, total + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_expired_over_50000_files_removes_exactly_the_expired() {
    const FILES: usize = 50_000;
    const LIVE_WRITTEN: usize = 200;
    let tmp = tmp();
    let store = store_in(&tmp);

    let mut live = Vec::new();
    for i in 0..20 {
        live.push(
            store
                .create(&record(i, in_an_hour()))
                .await
                .expect("create"),
        );
    }
    // Written directly in the store's format: 50,000 synced creates would only test the disk.
    let expired_bytes = Record {
        version: 1,
        ..record(0, OffsetDateTime::now_utc() - Duration::hours(1))
    }
    .encode_framed()
    .expect("encode");
    let live_bytes = Record {
        version: 1,
        ..record(1, in_an_hour())
    }
    .encode_framed()
    .expect("encode");
    let mut expired = Vec::new();
    for i in 0..FILES {
        let key = SessionKey::generate();
        let bytes = if i % (FILES / LIVE_WRITTEN) == 0 {
            live.push(key.clone());
            &live_bytes
        } else {
            expired.push(key.clone());
            &expired_bytes
        };
        fs::write(session_path(&store, &key), bytes).expect("write a session file");
    }
    assert_eq!(live.len(), 20 + LIVE_WRITTEN);

    let removed = store.clear_expired().await.expect("clear_expired");
    assert_eq!(removed, u64::try_from(expired.len()).expect("fits"));

    let left: BTreeSet<String> = listing(store.dir())
        .into_iter()
        .filter(|n| n.starts_with(store.prefix().as_str()))
        .collect();
    let want: BTreeSet<String> = live
        .iter()
        .map(|k| format!("{}{}", store.prefix(), k.storage_id().to_hex()))
        .collect();
    assert_eq!(
        left, want,
        "the surviving files are not exactly the live ones"
    );
    for key in live.iter().step_by(7) {
        assert!(store.load(key).await.expect("load").is_some());
    }
    for key in expired.iter().step_by(997) {
        assert!(store.load(key).await.expect("load").is_none());
    }
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
}

#[tokio::test]
async fn stores_with_different_prefixes_share_a_directory() {
    let tmp = tmp();
    let dir = tmp.path().join("shared");
    let a = FileStore::builder(&dir)
        .with_prefix(FilePrefix::new("a_").expect("prefix"))
        .open()
        .expect("open a");
    let b = FileStore::builder(&dir)
        .with_prefix(FilePrefix::new("b_").expect("prefix"))
        .open()
        .expect("open b");
    let in_a = a.create(&record(1, in_an_hour())).await.expect("create");
    let expired_in_b = b
        .create(&record(2, OffsetDateTime::now_utc() - Duration::hours(1)))
        .await
        .expect("create");
    assert!(b.load(&in_a).await.expect("load").is_none());
    b.delete(&in_a).await.expect("delete");
    assert!(a.load(&in_a).await.expect("load").is_some());

    assert_eq!(
        a.clear_expired().await.expect("clear"),
        0,
        "a swept b's files"
    );
    assert!(session_path(&b, &expired_in_b).exists());
    assert_eq!(b.clear_expired().await.expect("clear"), 1);
}

#[tokio::test]
async fn open_refuses_a_path_that_is_not_a_directory() {
    let tmp = tmp();
    let file = tmp.path().join("plain");
    fs::write(&file, b"x").expect("write");
    assert!(matches!(FileStore::open(&file), Err(Error::Backend { .. })));
    assert!(matches!(
        FileStore::open(file.join("below")),
        Err(Error::Backend { .. })
    ));
}

#[tokio::test]
async fn the_directory_may_be_a_symlink() {
    let tmp = tmp();
    let real = tmp.path().join("real");
    fs::create_dir(&real).expect("mkdir");
    let via = tmp.path().join("via");
    std::os::unix::fs::symlink(&real, &via).expect("symlink");
    let store = FileStore::open(&via).expect("open through the link");
    let key = store
        .create(&record(3, in_an_hour()))
        .await
        .expect("create");
    assert!(
        real.join(format!("session_{}", key.storage_id().to_hex()))
            .exists()
    );
    assert!(store.load(&key).await.expect("load").is_some());
}

/// Log lines written by the whole test binary (the subscriber is process-wide because
/// the store logs from its blocking threads).
static LOGS: LazyLock<Arc<std::sync::Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&logs);
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || LogWriter(Arc::clone(&sink)))
        .try_init()
        .expect("no other subscriber in this binary");
    logs
});

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unreadable_file_is_logged_by_its_short_hashed_id_only() {
    let logs = Arc::clone(&LOGS);
    let tmp = tmp();
    let store = store_in(&tmp);
    let key = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let mut bytes = record(1, in_an_hour()).encode_framed().expect("encode");
    bytes.truncate(FrameHeader::LEN);
    bytes.extend_from_slice(br#"{"d":"hunter2-secret"}"#); // a payload the decoder refuses
    fs::write(session_path(&store, &key), &bytes).expect("damage");

    assert!(matches!(store.load(&key).await, Ok(None)));

    let text = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains(&key.storage_id().short()))
        .unwrap_or_else(|| panic!("no log line names the session: {text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("unreadable session file"), "{line}");
    assert!(!line.contains(key.as_str()), "the key was logged");
    assert!(
        !line.contains(&key.storage_id().to_hex()),
        "the whole storage id was logged"
    );
    assert!(!line.contains("hunter2"), "session data was logged");
}
