//! RedisStore on a standalone server: the conformance suite and the Redis-specific
//! behaviours. Run with `SESSION_TEST_REDIS_URL=redis://127.0.0.1:6379/` and
//! `-- --include-ignored`.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::json;
use session_cache::RedisStore;
use session_core::conformance::Factory;
use session_core::{Data, Error, Record, SessionKey, Store, async_trait, unix_millis};
use time::OffsetDateTime;

use common::{delete_prefix, node, prefix, redis_prefix, redis_url, scan_prefix};

async fn store(ns: &str) -> RedisStore {
    RedisStore::builder()
        .with_prefix(redis_prefix(ns))
        .connect(&redis_url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redis_url()))
}

struct Redis;

#[async_trait]
impl Factory for Redis {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(store(ns).await)
    }
    async fn cleanup(&self, ns: &str) {
        delete_prefix(&[redis_url()], &prefix(ns)).await;
    }
}

session_core::conformance_tests!(redis_store, Redis, ignore = "needs SESSION_TEST_REDIS_URL");

fn one(k: &str, v: serde_json::Value) -> Record {
    let mut data = Data::new();
    data.insert(k.into(), v);
    Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1))
}

fn fresh_ns() -> String {
    session_core::conformance::fresh_namespace()
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn the_raw_key_appears_nowhere_in_redis() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let key = store.create(&one("user", json!("alice"))).await.unwrap();
    let mut r = store.load(&key).await.unwrap().unwrap();
    Arc::make_mut(&mut r.data).insert("more".into(), json!(1));
    store.save(&key, &r).await.unwrap();
    let found = scan_prefix(&[redis_url()], &prefix(&ns)).await;
    assert_eq!(found.len(), 1, "one session, one Redis key");
    let (k, v) = &found[0];
    assert_eq!(k, &store.redis_key(&key));
    assert_eq!(
        k,
        format!("{}{}", prefix(&ns), key.storage_id().to_hex()).as_bytes()
    );
    let raw = key.as_str().as_bytes();
    assert!(
        !k.windows(raw.len()).any(|w| w == raw),
        "the key is in the Redis key"
    );
    assert!(
        !v.windows(raw.len()).any(|w| w == raw),
        "the key is in the value"
    );
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn garbage_under_a_session_key_loads_as_absent_and_is_removed() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    for garbage in [
        &b"garbage"[..],
        b"",
        b"SR\x01short",
        // A valid header (version 1, expiring in the year 6395) over a corrupt payload.
        b"SR\x01\0\0\0\0\0\0\0\x01\0\0\x7f\0\0\0\0\0{not json",
    ] {
        let key = store.create(&one("a", json!(1))).await.unwrap();
        let _: () = con.set(store.redis_key(&key), garbage).await.unwrap();
        assert!(
            store.load(&key).await.unwrap().is_none(),
            "garbage {garbage:?} loaded"
        );
        let exists: bool = con.exists(store.redis_key(&key)).await.unwrap();
        assert!(!exists, "garbage {garbage:?} was left in place");
        if garbage.starts_with(b"SR\x01") {
            // A valid header over a corrupt payload: only decoding finds it, which `save`
            // and `touch` do not do (they read the header alone).
            continue;
        }
        let _: () = con.set(store.redis_key(&key), garbage).await.unwrap();
        let mut r = one("a", json!(2));
        r.version = 1;
        assert!(matches!(store.save(&key, &r).await, Err(Error::NotFound)));
        assert!(matches!(
            store.touch(&key, r.expires_at).await,
            Err(Error::NotFound)
        ));
    }
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

/// A forged or corrupted header can carry the largest version; saving such a session
/// back must fail cleanly (no overflow, no wrap to version 0) and leave the value as it is.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn a_stored_version_at_its_maximum_is_refused_not_wrapped() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let key = store.create(&one("a", json!(1))).await.unwrap();
    let mut value: Vec<u8> = con.get(store.redis_key(&key)).await.unwrap();
    // The header: "SR\x01", the version (8 bytes, big endian), then `expires_at`.
    value[3..11].copy_from_slice(&u64::MAX.to_be_bytes());
    let _: () = con.set(store.redis_key(&key), &value).await.unwrap();
    let loaded = store.load(&key).await.unwrap().expect("a valid record");
    assert_eq!(loaded.version, u64::MAX);
    assert!(matches!(
        store.save(&key, &loaded).await,
        Err(Error::Codec(_))
    ));
    let after: Vec<u8> = con.get(store.redis_key(&key)).await.unwrap();
    assert_eq!(after, value, "the refused save changed the stored value");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn the_ttl_redis_holds_matches_expires_at() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let mut r = one("a", json!(1));
    r.expires_at =
        OffsetDateTime::now_utc() + time::Duration::minutes(30) + time::Duration::milliseconds(123);
    let key = store.create(&r).await.unwrap();
    let redis_key = store.redis_key(&key);
    let check = |want: OffsetDateTime, pttl: i64, at: i64| {
        let left = (want - OffsetDateTime::now_utc()).whole_milliseconds();
        assert!(
            (i128::from(pttl) - left).abs() < 2_000,
            "PTTL {pttl} ms, expires_at in {left} ms"
        );
        // The TTL is relative, measured on this process's clock: on one host Redis's
        // absolute deadline matches `expires_at` up to the command's latency.
        assert!(
            (at - unix_millis(want)).abs() < 1_000,
            "PEXPIRETIME {at} differs from expires_at {}",
            unix_millis(want)
        );
    };
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&redis_key)
        .query_async(&mut con)
        .await
        .unwrap();
    check(r.expires_at, pttl, at);
    // save and touch move it too.
    let mut loaded = store.load(&key).await.unwrap().unwrap();
    loaded.expires_at += time::Duration::hours(2);
    store.save(&key, &loaded).await.unwrap();
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&redis_key)
        .query_async(&mut con)
        .await
        .unwrap();
    check(loaded.expires_at, pttl, at);
    let touched =
        OffsetDateTime::now_utc() + time::Duration::days(2) + time::Duration::milliseconds(7);
    store.touch(&key, touched).await.unwrap();
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&redis_key)
        .query_async(&mut con)
        .await
        .unwrap();
    check(touched, pttl, at);
    assert_eq!(
        unix_millis(store.load(&key).await.unwrap().unwrap().expires_at),
        unix_millis(touched)
    );
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn two_prefixes_do_not_see_each_other() {
    let (ns_a, ns_b) = (fresh_ns(), fresh_ns());
    let (a, b) = (store(&ns_a).await, store(&ns_b).await);
    let key = a.create(&one("a", json!(1))).await.unwrap();
    assert!(b.load(&key).await.unwrap().is_none());
    let mut r = a.load(&key).await.unwrap().unwrap();
    assert!(matches!(b.save(&key, &r).await, Err(Error::NotFound)));
    assert!(matches!(
        b.touch(&key, r.expires_at).await,
        Err(Error::NotFound)
    ));
    b.delete(&key).await.unwrap();
    Arc::make_mut(&mut r.data).insert("a".into(), json!(2));
    a.save(&key, &r).await.unwrap();
    assert_eq!(a.load(&key).await.unwrap().unwrap().data["a"], 2);
    assert!(scan_prefix(&[redis_url()], &prefix(&ns_b)).await.is_empty());
    delete_prefix(&[redis_url()], &prefix(&ns_a)).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn a_forgotten_script_is_loaded_again() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let key = store.create(&one("a", json!(1))).await.unwrap();
    let mut con = node(&redis_url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    let r = store.load(&key).await.unwrap().unwrap();
    store.save(&key, &r).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().version, 2);
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_closed_port_fails_fast_with_a_backend_error() {
    let url = format!("redis://127.0.0.1:{}/", spare_port());
    let builder = RedisStore::builder()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let got = builder.clone().connect(&url).await;
    assert!(
        matches!(got, Err(Error::Backend { .. })),
        "connect: {got:?}"
    );
    let lazy = builder.connect_lazy(&url).unwrap();
    let key = SessionKey::generate();
    assert!(matches!(lazy.load(&key).await, Err(Error::Backend { .. })));
    assert!(matches!(
        lazy.create(&one("a", json!(1))).await,
        Err(Error::Backend { .. })
    ));
    // A generous bound that only a hang would exceed.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A redis-server of this test's own, on a spare port, without persistence.
struct OwnServer {
    port: u16,
    child: Child,
}

impl OwnServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it on PATH?): {e}"));
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
#[ignore = "needs redis-server on PATH"]
async fn the_same_store_recovers_after_redis_restarts() {
    let port = spare_port();
    let mut server = OwnServer::start(port);
    let store = RedisStore::builder()
        .with_connect_timeout(Duration::from_millis(300))
        .with_response_timeout(Duration::from_millis(300))
        .connect(&format!("redis://127.0.0.1:{}/", server.port))
        .await
        .unwrap();
    let key = store.create(&one("a", json!(1))).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let got = store.load(&key).await;
        assert!(
            matches!(got, Err(Error::Backend { .. } | Error::Timeout { .. })),
            "while Redis is down: {got:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "an operation hung for {:?}",
            started.elapsed()
        );
        let got = store.create(&one("a", json!(2))).await;
        assert!(
            got.as_ref().err().is_some_and(Error::is_unavailable),
            "while Redis is down: {got:?}"
        );
    }

    let _server = OwnServer::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let key = loop {
        match store.create(&one("a", json!(3))).await {
            Ok(key) => break key,
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                assert!(Instant::now() < deadline, "the store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(store.load(&key).await.unwrap().unwrap().data["a"], 3);
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn as_a_cache_redis_orders_puts_and_honours_tombstones() {
    use session_cache::SessionCache;
    let ns = fresh_ns();
    let cache = store(&ns).await;
    let id = SessionKey::generate().storage_id();
    let mut r = one("v", json!(2));
    r.version = 2;
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    let mut older = r.clone();
    older.version = 1;
    older.expires_at += time::Duration::hours(5);
    assert!(
        !cache.put_if_newer(&id, &older, None).await.unwrap(),
        "an older version replaced a newer one"
    );
    assert!(!cache.put_if_newer(&id, &r, None).await.unwrap());
    let later = r.expires_at + time::Duration::minutes(1);
    assert!(cache.extend(&id, later, None).await.unwrap());
    assert!(
        !cache.extend(&id, r.expires_at, None).await.unwrap(),
        "extend moved the expiry back"
    );
    assert!(
        !cache.put_if_newer(&id, &r, None).await.unwrap(),
        "an earlier expiry replaced a later one"
    );
    let got = cache.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (got.version, unix_millis(got.expires_at)),
        (2, unix_millis(later))
    );

    cache
        .tombstone(&id, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(cache.get(&id).await.unwrap().is_none());
    let mut newer = r.clone();
    newer.version = 9;
    assert!(
        !cache.put_if_newer(&id, &newer, None).await.unwrap(),
        "a put passed the tombstone"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(cache.put_if_newer(&id, &newer, None).await.unwrap());
    assert_eq!(cache.get(&id).await.unwrap().unwrap().version, 9);
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

fn signal(server: &OwnServer, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} failed");
}

#[tokio::test]
#[ignore = "needs redis-server on PATH"]
async fn an_unresponsive_redis_times_out_instead_of_hanging() {
    let server = OwnServer::start(spare_port());
    let store = RedisStore::builder()
        .with_connect_timeout(Duration::from_millis(300))
        .with_response_timeout(Duration::from_millis(300))
        .connect(&format!("redis://127.0.0.1:{}/", server.port))
        .await
        .unwrap();
    let key = store.create(&one("a", json!(1))).await.unwrap();
    signal(&server, "-STOP"); // accepts connections, answers nothing
    let started = Instant::now();
    let got = store.load(&key).await;
    signal(&server, "-CONT");
    assert!(
        matches!(got, Err(Error::Timeout { .. } | Error::Backend { .. })),
        "while Redis was frozen: {got:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "hung for {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.load(&key).await {
            Ok(got) => {
                assert_eq!(got.unwrap().data["a"], 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the store did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Set in the environment of the child that the clock-skew test starts: the file the child
/// reports its clock to, which also makes it insist on a clock well behind Redis's.
const SKEW_REPORT_ENV: &str = "SESSION_TEST_SKEW_REPORT";

/// How far behind Redis the child's clock is set.
const SKEW: time::Duration = time::Duration::minutes(5);

/// Where Debian's `libfaketime` package puts the preload library.
fn libfaketime() -> Option<std::path::PathBuf> {
    let listed = Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(std::path::PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "libfaketime.so.1") && p.exists())
}

/// One clock: the application's clock runs five minutes behind Redis's (libfaketime in a
/// child process). Absolute deadlines (`PXAT`) computed on the application's clock would be
/// five minutes in Redis's past, and a two-minute session would vanish at once; relative
/// TTLs keep it for its two minutes.
#[test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
fn a_clock_behind_redis_neither_shortens_nor_drops_sessions() {
    let _ = redis_url();
    let lib = libfaketime().unwrap_or_else(|| {
        panic!(
            "libfaketime.so.1 not found: this test needs the Debian package `faketime` \
             (apt-get install -y faketime)"
        )
    });
    let report = std::env::temp_dir().join(format!("{}.skew", fresh_ns()));
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "skewed_clock_child",
            "--exact",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", format!("-{}m", SKEW.whole_minutes()))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env(SKEW_REPORT_ENV, &report)
        .output()
        .unwrap();
    let ours = unix_millis(OffsetDateTime::now_utc());
    let reported = std::fs::read_to_string(&report);
    let _ = std::fs::remove_file(&report);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child with a skewed clock failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run its test:\n{stdout}"
    );
    let theirs: i64 = reported
        .unwrap_or_else(|e| panic!("the child wrote no clock report ({e}):\n{stdout}"))
        .trim()
        .parse()
        .unwrap();
    let behind = ours - theirs;
    let want = i64::try_from(SKEW.whole_milliseconds()).unwrap();
    assert!(
        (behind - want).abs() < 30_000,
        "the child's clock was {behind} ms behind ours, not about {want} ms: libfaketime did not apply"
    );
}

/// The child of [`a_clock_behind_redis_neither_shortens_nor_drops_sessions`]. Run alone it
/// checks the same on an unskewed clock; as the child it also proves its clock is behind
/// Redis's and reports that clock to the parent.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn skewed_clock_child() {
    let report = std::env::var_os(SKEW_REPORT_ENV);
    let mut con = node(&redis_url()).await;
    let ours = OffsetDateTime::now_utc();
    if report.is_some() {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
        let redis_now = secs * 1000 + micros / 1000;
        let behind = redis_now - unix_millis(ours);
        let want = i64::try_from(SKEW.whole_milliseconds()).unwrap();
        assert!(
            (behind - want).abs() < 30_000,
            "this clock is {behind} ms behind Redis's, not about {want} ms"
        );
    }
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut r = one("a", json!(1));
    r.expires_at = OffsetDateTime::now_utc() + time::Duration::minutes(2);
    let key = store.create(&r).await.unwrap();
    let check = |pttl: i64, what: &str| {
        assert!(
            (110_000..=120_000).contains(&pttl),
            "after {what}, Redis keeps a two-minute session for {pttl} ms"
        );
    };
    let loaded = store
        .load(&key)
        .await
        .unwrap()
        .expect("the session vanished");
    check(con.pttl(store.redis_key(&key)).await.unwrap(), "create");
    store.save(&key, &loaded).await.unwrap();
    check(con.pttl(store.redis_key(&key)).await.unwrap(), "save");
    store.touch(&key, r.expires_at).await.unwrap();
    check(con.pttl(store.redis_key(&key)).await.unwrap(), "touch");
    let loaded = store
        .load(&key)
        .await
        .unwrap()
        .expect("the session vanished");
    assert_eq!(loaded.version, 2);
    // An ended marker is remembered for its time too.
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(2);
    store.end(&key, 2, until).await.unwrap();
    assert!(matches!(
        store.lookup(&key).await.unwrap(),
        session_core::Lookup::Ended
    ));
    check(con.pttl(store.redis_key(&key)).await.unwrap(), "end");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
    if let Some(path) = report {
        std::fs::write(path, unix_millis(ours).to_string()).unwrap();
    }
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn end_leaves_a_bare_marker_for_its_time_that_nothing_overwrites() {
    use session_cache::SessionCache;
    use session_core::Lookup;
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let key = store.create(&one("a", json!(1))).await.unwrap();
    let redis_key = store.redis_key(&key);
    let until = OffsetDateTime::now_utc() + time::Duration::seconds(90);
    store.end(&key, 1, until).await.unwrap();
    let raw: Vec<u8> = con.get(&redis_key).await.unwrap();
    assert_eq!(raw, Record::encode_ended_marker(until), "not a bare marker");
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    assert!((80_000..=90_000).contains(&pttl), "marker PTTL {pttl} ms");
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
    // Neither a cache fill of any version nor a save, touch or second end replaces it.
    let mut newer = one("a", json!(2));
    newer.version = 7;
    assert!(
        !store
            .put_if_newer(&key.storage_id(), &newer, None)
            .await
            .unwrap()
    );
    assert!(store.get(&key.storage_id()).await.unwrap().is_none());
    newer.version = 0;
    assert!(
        !store
            .put_if_newer(&key.storage_id(), &newer, None)
            .await
            .unwrap()
    );
    newer.version = 1;
    assert!(matches!(
        store.save(&key, &newer).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.touch(&key, newer.expires_at).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.end(&key, 0, until).await,
        Err(Error::NotFound)
    ));
    let after: Vec<u8> = con.get(&redis_key).await.unwrap();
    assert_eq!(after, raw, "the marker was changed");
    // An end whose remembering time has already passed simply removes the record.
    let other = store.create(&one("a", json!(1))).await.unwrap();
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.end(&other, 1, past).await.unwrap();
    let exists: bool = con.exists(store.redis_key(&other)).await.unwrap();
    assert!(!exists, "an end remembered until the past left a value");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

/// Expiry is decided on this process's clock: a value whose header has expired is absent
/// to every operation, even while Redis still holds the key.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn a_header_past_its_expiry_is_absent_even_while_redis_keeps_the_key() {
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let key = store.create(&one("a", json!(1))).await.unwrap();
    let mut stale = one("a", json!(1));
    stale.version = 1;
    stale.expires_at = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let value = stale.encode_framed().unwrap();
    let _: () = con.set(store.redis_key(&key), &value).await.unwrap(); // no TTL
    assert!(store.load(&key).await.unwrap().is_none());
    let mut r = one("a", json!(2));
    r.version = 1;
    assert!(matches!(store.save(&key, &r).await, Err(Error::NotFound)));
    assert!(matches!(
        store.touch(&key, r.expires_at).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.end(&key, 1, r.expires_at).await,
        Err(Error::NotFound)
    ));
    let after: Vec<u8> = con.get(store.redis_key(&key)).await.unwrap();
    assert_eq!(after, value, "an expired record was written over");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

/// Writes whose expiry has already passed write nothing: Redis is never sent a
/// non-positive TTL, and a record saved or touched into the past is deleted.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn writes_already_expired_store_nothing() {
    use session_core::conformance::with_forced_key;
    let ns = fresh_ns();
    let store = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let expired = Record::new(Data::new(), past);
    let key = store.create(&expired).await.unwrap();
    let exists: bool = con.exists(store.redis_key(&key)).await.unwrap();
    assert!(!exists, "an expired record was written");
    // Even so, a taken key is never handed out.
    let live = store.create(&one("a", json!(1))).await.unwrap();
    let got = with_forced_key(live.clone(), store.create(&expired)).await;
    assert!(matches!(got, Err(Error::KeyCollision { .. })), "{got:?}");
    assert_eq!(store.load(&live).await.unwrap().unwrap().data["a"], 1);
    // A save into the past removes the record.
    let mut r = store.load(&live).await.unwrap().unwrap();
    r.expires_at = past;
    store.save(&live, &r).await.unwrap();
    let exists: bool = con.exists(store.redis_key(&live)).await.unwrap();
    assert!(!exists, "a record saved into the past was kept");
    // So does a touch.
    let key = store.create(&one("a", json!(1))).await.unwrap();
    store.touch(&key, past).await.unwrap();
    let exists: bool = con.exists(store.redis_key(&key)).await.unwrap();
    assert!(!exists, "a record touched into the past was kept");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}

/// As a cache under a staleness bound, an entry's Redis TTL is the bound (not the
/// session's remaining life), while its header keeps the session's real expiry; `extend`
/// renews the bound. A replica or a snapshot keeps the TTL as an absolute instant, so a
/// copy brought back by a failover or a restore dies when the original would have.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn as_a_cache_redis_bounds_entries_by_serve_for() {
    use session_cache::SessionCache;
    let ns = fresh_ns();
    let cache = store(&ns).await;
    let mut con = node(&redis_url()).await;
    let id = SessionKey::generate().storage_id();
    let redis_key = format!("{}{}", prefix(&ns), id.to_hex());
    let mut r = one("v", json!(1)); // expires in an hour
    r.version = 1;
    let bound = Some(Duration::from_millis(1_500));
    assert!(cache.put_if_newer(&id, &r, bound).await.unwrap());
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    assert!((1..=1_500).contains(&pttl), "PTTL {pttl} ms, not the bound");
    assert_eq!(
        unix_millis(cache.get(&id).await.unwrap().unwrap().expires_at),
        unix_millis(r.expires_at),
        "the header lost the session's expiry"
    );
    let later = r.expires_at + time::Duration::minutes(5);
    assert!(
        cache
            .extend(&id, later, Some(Duration::from_secs(3)))
            .await
            .unwrap()
    );
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    assert!(
        (1_500..=3_000).contains(&pttl),
        "PTTL {pttl} ms after extend"
    );
    assert_eq!(
        unix_millis(cache.get(&id).await.unwrap().unwrap().expires_at),
        unix_millis(later)
    );
    // Without a bound the TTL is the session's own.
    let mut newer = r.clone();
    newer.version = 2;
    assert!(cache.put_if_newer(&id, &newer, None).await.unwrap());
    let pttl: i64 = con.pttl(&redis_key).await.unwrap();
    assert!(pttl > 3_500_000, "PTTL {pttl} ms without a bound");
    // A zero bound stores nothing and drops the older copy.
    newer.version = 3;
    assert!(
        !cache
            .put_if_newer(&id, &newer, Some(Duration::ZERO))
            .await
            .unwrap()
    );
    let exists: bool = con.exists(&redis_key).await.unwrap();
    assert!(!exists, "a zero bound left a copy");
    delete_prefix(&[redis_url()], &prefix(&ns)).await;
}
