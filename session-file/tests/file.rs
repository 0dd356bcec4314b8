//! FileStore against the conformance suite, and the behaviours only a directory has.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration as StdDuration, SystemTime};

use serde_json::json;
use session_core::conformance::Factory;
use session_core::{
    Data, Error, FrameHeader, Lookup, Record, SessionKey, Store, async_trait, from_unix_millis,
    unix_millis,
};
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

/// The bytes of a stored record as the store writes them (stored versions start at 1;
/// a version-0 header is an ended marker).
fn stored_bytes(n: u64, expires_at: OffsetDateTime) -> Vec<u8> {
    Record {
        version: 1,
        ..record(n, expires_at)
    }
    .encode_framed()
    .expect("encode")
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
    assert!(
        matches!(store.lookup(key).await, Ok(Lookup::Absent)),
        "lookup {key:?}"
    );
    assert!(store.delete(key).await.is_ok(), "delete {key:?}");
    assert!(
        matches!(
            store.end(key, 1, in_an_hour()).await,
            Err(Error::InvalidKey)
        ),
        "end {key:?}"
    );
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
    let whole = stored_bytes(1, in_an_hour());
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

// ---------------------------------------------------------------------------------------
// Ending a session: the ended marker

/// An instant in whole milliseconds, as the header keeps it.
fn millis_from_now(ms: i64) -> OffsetDateTime {
    from_unix_millis(unix_millis(OffsetDateTime::now_utc()) + ms).expect("in range")
}

/// Names in the directory that are neither lock files nor `keep`.
fn leftovers(dir: &Path, keep: &Path) -> Vec<String> {
    let keep = keep.file_name().map(|n| n.to_string_lossy().into_owned());
    listing(dir)
        .into_iter()
        .filter(|n| !n.starts_with(".lock-") && Some(n) != keep.as_ref())
        .collect()
}

#[tokio::test]
async fn end_leaves_a_bare_header_and_no_data() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let mut secret = Data::new();
    secret.insert("token".into(), json!("hunter2-secret"));
    let key = store
        .create(&Record::new(secret, in_an_hour()))
        .await
        .expect("create");
    let path = session_path(&store, &key);
    let until = millis_from_now(5 * 60 * 1000);

    store.end(&key, 1, until).await.expect("end");

    let bytes = fs::read(&path).expect("the marker is a file under the session name");
    assert_eq!(
        bytes.len(),
        FrameHeader::LEN,
        "the marker holds more than a header"
    );
    assert_eq!(bytes.len(), 19);
    assert_eq!(bytes, Record::encode_ended_marker(until));
    let header = FrameHeader::read(&bytes).expect("a frame header");
    assert!(header.is_ended_marker());
    assert_eq!((header.version, header.expires_at), (0, until));
    assert_eq!(mode(&path), 0o600, "mode of the marker");
    assert!(
        leftovers(store.dir(), &path).is_empty(),
        "end left files behind: {:?}",
        leftovers(store.dir(), &path)
    );

    assert!(matches!(store.lookup(&key).await, Ok(Lookup::Ended)));
    assert!(matches!(store.load(&key).await, Ok(None)));
    let r = Record {
        version: 1,
        ..record(1, in_an_hour())
    };
    assert!(matches!(store.save(&key, &r).await, Err(Error::NotFound)));
    assert!(matches!(
        store.touch(&key, in_an_hour()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.end(&key, 1, in_an_hour()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.end(&key, 0, in_an_hour()).await,
        Err(Error::NotFound)
    ));
    assert_eq!(
        fs::read(&path).expect("read"),
        bytes,
        "a refused operation changed the marker"
    );

    // A second handle (another process, say) sees the same marker.
    let other = FileStore::open(store.dir()).expect("open");
    assert!(matches!(other.lookup(&key).await, Ok(Lookup::Ended)));

    // `delete` removes markers too.
    store.delete(&key).await.expect("delete");
    assert!(!path.exists());
    assert!(matches!(store.lookup(&key).await, Ok(Lookup::Absent)));
}

#[tokio::test]
async fn end_with_another_version_leaves_the_file_as_it_was() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let key = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let path = session_path(&store, &key);
    let before = fs::read(&path).expect("read");
    for stale in [0, 2, u64::MAX] {
        assert!(matches!(
            store.end(&key, stale, in_an_hour()).await,
            Err(Error::Conflict)
        ));
    }
    assert_eq!(fs::read(&path).expect("read"), before);
    assert!(leftovers(store.dir(), &path).is_empty());
}

#[tokio::test]
async fn clear_expired_sweeps_markers_past_their_instant_and_counts_them() {
    let tmp = tmp();
    let store = store_in(&tmp);
    let short = store
        .create(&record(1, in_an_hour()))
        .await
        .expect("create");
    let long = store
        .create(&record(2, in_an_hour()))
        .await
        .expect("create");
    let live = store
        .create(&record(3, in_an_hour()))
        .await
        .expect("create");
    store
        .end(&short, 1, millis_from_now(300))
        .await
        .expect("end");
    store
        .end(&long, 1, millis_from_now(60 * 60 * 1000))
        .await
        .expect("end");

    // Both markers are still remembered: the header-only scan keeps them.
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
    assert!(session_path(&store, &short).exists());
    assert!(matches!(store.lookup(&short).await, Ok(Lookup::Ended)));

    tokio::time::sleep(StdDuration::from_millis(500)).await;
    // Past its instant the marker reads as absent before any sweep...
    assert!(matches!(store.lookup(&short).await, Ok(Lookup::Absent)));
    // ...and the sweep removes it, counted with the removed sessions.
    assert_eq!(store.clear_expired().await.expect("clear"), 1);
    assert!(!session_path(&store, &short).exists());
    assert!(session_path(&store, &long).exists());
    assert!(matches!(store.lookup(&long).await, Ok(Lookup::Ended)));
    assert!(store.load(&live).await.expect("load").is_some());
    assert_eq!(store.clear_expired().await.expect("clear"), 0);
}

#[tokio::test]
async fn create_never_replaces_a_marker_even_an_expired_one() {
    use session_core::conformance::with_forced_key;

    for until in [in_an_hour(), OffsetDateTime::now_utc() - Duration::hours(1)] {
        let tmp = tmp();
        let store = store_in(&tmp);
        let key = SessionKey::generate();
        let path = session_path(&store, &key);
        let marker = Record::encode_ended_marker(until);
        fs::write(&path, &marker).expect("plant a marker");
        let got = with_forced_key(key.clone(), store.create(&record(9, in_an_hour()))).await;
        assert!(
            matches!(
                got,
                Err(Error::KeyCollision {
                    store: "file",
                    attempts: 4
                })
            ),
            "create over a marker answered {got:?}"
        );
        assert_eq!(fs::read(&path).expect("read"), marker, "the marker changed");
        assert!(
            leftovers(store.dir(), &path).is_empty(),
            "a refused create left files behind"
        );
    }
}

const END_WORKER_DIR: &str = "SESSION_FILE_TEST_END_WORKER_DIR";
const END_WORKER_KEY: &str = "SESSION_FILE_TEST_END_WORKER_KEY";
const END_WORKER_OUT: &str = "SESSION_FILE_TEST_END_WORKER_OUT";
const END_TASKS_PER_PROCESS: usize = 4;

/// Like `two_processes_lose_no_increment`: run in the parent, it spawns copies of this
/// test binary that all try to end one session at version 1 at once. Across processes
/// exactly one end wins; every other finds the session ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_to_end_one_session_have_one_winner() {
    if let (Ok(dir), Ok(key), Ok(out)) = (
        std::env::var(END_WORKER_DIR),
        std::env::var(END_WORKER_KEY),
        std::env::var(END_WORKER_OUT),
    ) {
        let store = FileStore::open(dir).expect("open in the worker");
        let key = SessionKey::parse(&key).expect("key");
        let tasks: Vec<_> = (0..END_TASKS_PER_PROCESS)
            .map(|_| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move { store.end(&key, 1, in_an_hour()).await })
            })
            .collect();
        let mut wins = 0u32;
        for t in tasks {
            match t.await.expect("worker task") {
                Ok(()) => wins += 1,
                Err(Error::NotFound) => {}
                Err(e) => panic!("end failed: {e}"),
            }
        }
        fs::write(
            Path::new(&out).join(format!("wins-{}", std::process::id())),
            wins.to_string(),
        )
        .expect("write the result");
        return;
    }

    let tmp = tmp();
    let store = store_in(&tmp);
    let results = tmp.path().join("results");
    fs::create_dir(&results).expect("mkdir");
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
                    "processes_racing_to_end_one_session_have_one_winner",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(END_WORKER_DIR, store.dir())
                .env(END_WORKER_KEY, key.as_str())
                .env(END_WORKER_OUT, &results)
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
    let reports = listing(&results);
    assert_eq!(reports.len(), usize::try_from(PROCESSES).expect("small"));
    let wins: u32 = reports
        .iter()
        .map(|n| {
            fs::read_to_string(results.join(n))
                .expect("read")
                .parse::<u32>()
                .expect("a count")
        })
        .sum();
    assert_eq!(wins, 1, "{wins} ends of one version succeeded");
    assert!(matches!(store.lookup(&key).await, Ok(Lookup::Ended)));
    assert_eq!(
        fs::read(session_path(&store, &key)).expect("read").len(),
        FrameHeader::LEN
    );
}

/// A failure injected after each step of `end`'s write leaves the whole record (before
/// the rename) or the whole marker (from the rename on), never a torn file.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_failed_end_leaves_the_whole_record_or_the_whole_marker() {
    use session_file::Step;

    for step in [Step::Write, Step::Sync, Step::Publish, Step::SyncDir] {
        let tmp = tmp();
        let store = store_in(&tmp);
        let key = store
            .create(&record(4, in_an_hour()))
            .await
            .expect("create");
        let path = session_path(&store, &key);
        let whole = fs::read(&path).expect("read");
        let failing = FileStore::builder(store.dir())
            .with_failpoint(move |at| {
                if at == step {
                    Err(std::io::Error::other("injected failure"))
                } else {
                    Ok(())
                }
            })
            .open()
            .expect("open");
        let until = millis_from_now(60_000);
        assert!(
            matches!(
                failing.end(&key, 1, until).await,
                Err(Error::Backend { store: "file", .. })
            ),
            "end failing at {step:?}"
        );

        let reopened = FileStore::open(store.dir()).expect("reopen");
        let bytes = fs::read(&path).expect("the session name is never left empty");
        match step {
            Step::Write | Step::Sync => {
                assert_eq!(bytes, whole, "after a failure at {step:?}");
                let r = reopened
                    .load(&key)
                    .await
                    .expect("load")
                    .expect("still live");
                assert_eq!((r.version, r.data["n"].clone()), (1, json!(4)));
            }
            Step::Publish | Step::SyncDir => {
                assert_eq!(bytes, Record::encode_ended_marker(until), "at {step:?}");
                assert!(matches!(reopened.lookup(&key).await, Ok(Lookup::Ended)));
            }
        }
        assert!(
            leftovers(store.dir(), &path).is_empty(),
            "a failure at {step:?} left files behind"
        );
    }
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
    let mut bytes = stored_bytes(1, in_an_hour());
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
