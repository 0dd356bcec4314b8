//! The file store under a real crash: a child process (this same binary) writes with a
//! failpoint that aborts the process right after one step of the write sequence (write,
//! sync, publish, directory sync), so no destructor runs and nothing is cleaned up. The
//! parent then opens a fresh store on the directory and checks that the session reads
//! as the complete old record or the complete new one, never torn or absent, and that
//! what the crash left behind is ignored by `load` and swept by `clear_expired`.
//!
//! A test without the libtest harness (`harness = false`): it needs its own `main` to
//! play the child.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use session_core::{Record, SessionKey, Store};
use session_file::{FileStore, Step};
use time::OffsetDateTime;

const CHILD: &str = "SESSION_TESTS_CRASH_CHILD";

const STEPS: [(Step, &str); 4] = [
    (Step::Write, "write"),
    (Step::Sync, "sync"),
    (Step::Publish, "publish"),
    (Step::SyncDir, "syncdir"),
];

fn expiry(hours: i64) -> OffsetDateTime {
    // Fixed instants, so parent and child build equal records.
    OffsetDateTime::from_unix_timestamp(4_000_000_000).expect("in range")
        + time::Duration::hours(hours)
}

fn record(n: u64, len: usize, expires_at: OffsetDateTime) -> Record {
    let mut data = session_core::Data::new();
    data.insert("n".into(), n.into());
    data.insert("fill".into(), n.to_string().repeat(len).into());
    Record::new(data, expires_at)
}

fn old() -> Record {
    record(1, 3000, expiry(1))
}

fn new() -> Record {
    let mut new = record(2, 12_000, expiry(2));
    new.version = 1;
    new
}

fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The child: `<op> <step> <dir> [<key>]`; aborts right after `step`.
fn child(args: &[String]) {
    let [op, step, dir, rest @ ..] = args else {
        panic!("child arguments: {args:?}");
    };
    let step = STEPS
        .iter()
        .find(|(_, name)| name == step)
        .map(|(s, _)| *s)
        .expect("a step name");
    let store = FileStore::builder(dir)
        .with_failpoint(move |at| {
            if at == step {
                std::process::abort();
            }
            Ok(())
        })
        .open()
        .expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let key = rest.first().map(|k| SessionKey::parse(k).expect("a key"));
        let result = match (op.as_str(), key) {
            ("save", Some(key)) => store.save(&key, &new()).await.map(drop),
            ("touch", Some(key)) => store.touch(&key, expiry(3)).await.map(drop),
            ("create", None) => store.create(&new()).await.map(drop),
            ("delete", Some(key)) => store.delete(&key).await,
            other => panic!("unknown child operation {other:?}"),
        };
        panic!("the write should have crashed after {step:?}, it returned {result:?}");
    });
}

/// Runs the child and checks that it died of the abort.
fn crash(op: &str, step: &str, dir: &Path, key: Option<&SessionKey>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD, "1").arg(op).arg(step).arg(dir);
    if let Some(key) = key {
        cmd.arg(key.as_str());
    }
    let status = cmd.status().expect("run the child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "{op} after {step}: the child should die of SIGABRT, it ended with {status}"
    );
}

/// Ages the temporary files a crash left, then sweeps: they go, sessions stay.
async fn sweep_leftovers(dir: &Path) {
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    for name in names(dir, ".tmp-") {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(&name))
            .expect("open leftover");
        file.set_modified(long_ago).expect("set mtime");
    }
    let before = names(dir, "session_");
    let removed = FileStore::open(dir)
        .expect("open")
        .clear_expired()
        .await
        .expect("clear");
    assert_eq!(removed, 0, "no live session is swept");
    assert!(
        names(dir, ".tmp-").is_empty(),
        "stale temporary files are removed"
    );
    assert_eq!(names(dir, "session_"), before);
}

async fn reread(dir: &Path, key: &SessionKey) -> Record {
    FileStore::open(dir)
        .expect("reopen")
        .load(key)
        .await
        .expect("load")
        .expect("the session must never be absent after a crash")
}

async fn parent() {
    let mut checks = 0;
    for (step, name) in STEPS {
        let published = matches!(step, Step::Publish | Step::SyncDir);

        // save
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let key = FileStore::open(&dir)
            .expect("open")
            .create(&old())
            .await
            .expect("create");
        crash("save", name, &dir, Some(&key));
        // A real crash cleans nothing: before the rename the temporary file stays.
        assert_eq!(
            names(&dir, ".tmp-").len(),
            usize::from(!published),
            "after {step:?}"
        );
        let got = reread(&dir, &key).await;
        let (want, version) = if published { (new(), 2) } else { (old(), 1) };
        assert_eq!(
            (got.version, &got.data, got.expires_at),
            (version, &want.data, want.expires_at),
            "save crashed after {step:?}"
        );
        sweep_leftovers(&dir).await;
        assert_eq!(reread(&dir, &key).await.version, version);
        checks += 1;

        // touch
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let key = FileStore::open(&dir)
            .expect("open")
            .create(&old())
            .await
            .expect("create");
        crash("touch", name, &dir, Some(&key));
        let got = reread(&dir, &key).await;
        let want = if published { expiry(3) } else { expiry(1) };
        assert_eq!(
            (got.version, &got.data, got.expires_at),
            (1, &old().data, want),
            "touch crashed after {step:?}"
        );
        sweep_leftovers(&dir).await;
        checks += 1;

        // create: no session, or one whole session under a key nobody was given.
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        std::fs::create_dir(&dir).expect("mkdir");
        crash("create", name, &dir, None);
        let sessions = names(&dir, "session_");
        if published {
            assert_eq!(
                sessions.len(),
                1,
                "create crashed after {step:?}: {sessions:?}"
            );
            let bytes = std::fs::read(dir.join(&sessions[0])).expect("read");
            let got = Record::decode_framed(&bytes).expect("a whole record");
            assert_eq!((got.version, &got.data), (1, &new().data));
        } else {
            assert!(
                sessions.is_empty(),
                "create crashed after {step:?}: {sessions:?}"
            );
        }
        sweep_leftovers(&dir).await;
        checks += 1;
    }

    // delete syncs the directory (its only step): the name is gone after the crash.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let key = FileStore::open(&dir)
        .expect("open")
        .create(&old())
        .await
        .expect("create");
    crash("delete", "syncdir", &dir, Some(&key));
    let store = FileStore::open(&dir).expect("reopen");
    assert_eq!(store.load(&key).await.expect("load"), None);
    checks += 1;

    eprintln!("file_crash: {checks} crash scenarios passed");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os(CHILD).is_some() {
        child(&args);
        return;
    }
    // Run as a test. Of libtest's options only these matter: nothing is listed, and the
    // scenarios are not ignored tests (a run of `--ignored` tests alone skips them).
    if args.iter().any(|a| a == "--list" || a == "--ignored") {
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(parent());
}
