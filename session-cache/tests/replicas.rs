//! `RedisStoreBuilder::with_wait_for_replicas` against private primary/replica pairs that the
//! tests start themselves from the `redis-server` on PATH: a standalone pair
//! (`--replicaof`) and a one-shard Cluster with a replica. Logouts and key rotations
//! through `SessionManager` wait for the replica; while it is paused they fail (a 500),
//! within the configured bound, instead of being reported done. The conformance suite also
//! runs with the option on. Run with `-- --include-ignored`; no other service is needed.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use session_cache::{NotReplicated, RedisStore};
use session_core::conformance::{Factory, fresh_namespace};
use session_core::{CookieAction, Error, Lookup, SessionKey, Store, async_trait};
use time::OffsetDateTime;

use common::browse::{login, logout, manager, rotate, user};
use common::{delete_prefix, node, prefix, redis_prefix};

/// Starts `redis-server` with the given arguments and keeps it tied to this test process:
/// the shell stays between them, reading its stdin, which only this process holds; when
/// the test ends in any way (the server's `Drop`, a panic, a kill) the pipe closes and the
/// shell kills the server and removes its directory.
const WATCHDOG: &str = r#"dir=$1; shift
redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
cat >/dev/null
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf -- "$dir""#;

/// One redis-server of a test's own, on a spare loopback port, persisting nothing.
struct Server {
    port: u16,
    /// The redis-server process (for SIGSTOP/SIGCONT).
    pid: u32,
    watchdog: Child,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let found = Command::new("redis-server").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "redis-server is not on PATH: these tests start their own Redis servers"
        );
        let port = spare_port();
        let dir =
            std::env::temp_dir().join(format!("session-cache-replicas-{}", fresh_namespace()));
        std::fs::create_dir_all(&dir).unwrap();
        let port_arg = port.to_string();
        let dir_arg = dir.to_str().unwrap();
        let mut args = vec![
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--dir",
            dir_arg,
            "--save",
            "",
            "--appendonly",
            "no",
            // A replica's first full sync starts at once instead of after 5 s.
            "--repl-diskless-sync-delay",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&dir)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
        let mut line = String::new();
        BufReader::new(watchdog.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().unwrap();
        let server = Self {
            port,
            pid,
            watchdog,
        };
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

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Freezes the server: it accepts nothing, answers nothing, acknowledges nothing.
    fn pause(&self) {
        self.signal("-STOP");
    }

    fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A frozen server is killed all the same.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary and its one replica.
struct Pair {
    primary: Server,
    replica: Server,
}

impl Pair {
    /// A standalone primary with a replica (`--replicaof`), in sync.
    async fn standalone() -> Self {
        let primary = Server::start(&[]);
        let primary_port = primary.port.to_string();
        let replica = Server::start(&["--replicaof", "127.0.0.1", &primary_port]);
        let pair = Self { primary, replica };
        pair.wait_in_sync().await;
        pair
    }

    /// A one-shard Redis Cluster: a primary holding every slot and its replica.
    #[cfg(feature = "cluster")]
    async fn cluster() -> Self {
        let cluster = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ];
        let pair = Self {
            primary: Server::start(&cluster),
            replica: Server::start(&cluster),
        };
        let mut p = node(&pair.primary.url()).await;
        let mut r = node(&pair.replica.url()).await;
        // ADDSLOTS rather than ADDSLOTSRANGE, which needs Redis 7.
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTS")
            .arg((0..16384).collect::<Vec<u16>>())
            .query_async(&mut p)
            .await
            .unwrap();
        let id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut p)
            .await
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(pair.primary.port)
            .query_async(&mut r)
            .await
            .unwrap();
        eventually("the replica to meet the primary", || async {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut node(&pair.replica.url()).await)
                .await
                .unwrap();
            nodes.contains(&id)
        })
        .await;
        let _: () = redis::cmd("CLUSTER")
            .arg("REPLICATE")
            .arg(&id)
            .query_async(&mut r)
            .await
            .unwrap();
        for url in [pair.primary.url(), pair.replica.url()] {
            eventually("cluster_state:ok", || async {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node(&url).await)
                    .await
                    .unwrap();
                info.contains("cluster_state:ok")
            })
            .await;
        }
        pair.wait_in_sync().await;
        pair
    }

    /// Until the replica is connected and acknowledges writes.
    async fn wait_in_sync(&self) {
        let replica = self.replica.url();
        eventually("the replica's link to be up", || async {
            info(&replica, "replication")
                .await
                .contains("master_link_status:up")
        })
        .await;
        let primary = self.primary.url();
        eventually("the replica to acknowledge", || async {
            let mut con = node(&primary).await;
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(200)
                .query_async(&mut con)
                .await
                .unwrap();
            acked == 1
        })
        .await;
    }
}

async fn info(url: &str, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut node(url).await)
        .await
        .unwrap()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ended-or-live state of `key` as `url` (a replica) holds it right now, read
/// directly (`READONLY` lets a Cluster replica answer for its shard).
async fn on_replica(url: &str, store: &RedisStore, key: &SessionKey) -> Lookup {
    let mut con = node(url).await;
    let _: redis::RedisResult<()> = redis::cmd("READONLY").query_async(&mut con).await;
    let raw: Option<Vec<u8>> = con.get(store.redis_key(key)).await.unwrap();
    match raw {
        None => Lookup::Absent,
        Some(bytes) => Lookup::decode_framed(&bytes, OffsetDateTime::now_utc()).unwrap(),
    }
}

/// `NotReplicated` behind a failed operation, or a panic saying what came instead.
fn not_replicated<T: std::fmt::Debug>(got: Result<T, Error>) -> NotReplicated {
    match got {
        Err(Error::Backend { source, .. }) => source
            .downcast_ref::<NotReplicated>()
            .unwrap_or_else(|| panic!("another backend error: {source}"))
            .clone(),
        other => panic!("expected a NotReplicated backend error, got {other:?}"),
    }
}

fn remember() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::minutes(1)
}

const CONNECT: Duration = Duration::from_millis(300);
const RESPONSE: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy)]
enum Mode {
    Standalone,
    #[cfg(feature = "cluster")]
    Cluster,
}

/// A store of namespace `ns` on `pair`'s primary, waiting for `replicas` replicas for
/// `wait` (no waiting with `replicas = 0`).
async fn open(mode: Mode, pair: &Pair, ns: &str, replicas: u32, wait: Duration) -> RedisStore {
    let builder = RedisStore::builder()
        .with_prefix(redis_prefix(ns))
        .with_connect_timeout(CONNECT)
        .with_response_timeout(RESPONSE)
        .with_wait_for_replicas(replicas, wait);
    match mode {
        Mode::Standalone => builder.connect(&pair.primary.url()).await.unwrap(),
        #[cfg(feature = "cluster")]
        Mode::Cluster => builder.connect_cluster([pair.primary.url()]).await.unwrap(),
    }
}

/// The checks shared by the standalone and the Cluster pair, all through
/// `SessionManager` except the operator's `delete`.
async fn logout_and_rotation_wait_for_the_replica(mode: Mode, pair: &Pair) {
    let ns = fresh_namespace();
    let store = open(mode, pair, &ns, 1, WAIT).await;
    let plain = open(mode, pair, &ns, 0, WAIT).await;
    assert!(format!("{store:?}").contains("wait_for_replicas: Some((1,"));
    assert!(format!("{plain:?}").contains("wait_for_replicas: None"));
    let replica = pair.replica.url();
    let m = manager(store.clone());

    // Logout: once the manager answers, the replica already holds the ended marker.
    let cookie = login(&m, "ada").await;
    let key = SessionKey::parse(&cookie).unwrap();
    let commit = logout(&m, &cookie).await.unwrap();
    assert!(matches!(commit.cookie, CookieAction::Remove(_)));
    assert!(
        matches!(on_replica(&replica, &store, &key).await, Lookup::Ended),
        "the logout answered before the replica had the marker"
    );
    assert_eq!(user(&m, &cookie).await, None);

    // Rotation (a login): the old key's marker is on the replica when the new cookie goes.
    let cookie = login(&m, "bob").await;
    let old = SessionKey::parse(&cookie).unwrap();
    let commit = rotate(&m, &cookie).await.unwrap();
    let new = common::browse::set_value(&commit).expect("a rotation sets the new cookie");
    assert!(matches!(
        on_replica(&replica, &store, &old).await,
        Lookup::Ended
    ));
    assert_eq!(user(&m, &new).await.as_deref(), Some("bob"));

    // An operator's delete waits too; a script Redis forgot is loaded again.
    let gone = SessionKey::parse(&login(&m, "cy").await).unwrap();
    store.delete(&gone).await.unwrap();
    assert!(matches!(
        on_replica(&replica, &store, &gone).await,
        Lookup::Absent
    ));
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut node(&pair.primary.url()).await)
        .await
        .unwrap();
    let cookie = login(&m, "di").await;
    logout(&m, &cookie).await.unwrap();

    // The replica freezes: logouts, rotations and deletes fail, none hangs.
    let cookies = [
        login(&m, "ed").await,
        login(&m, "flo").await,
        login(&m, "gus").await,
        login(&m, "hal").await,
        login(&m, "ivy").await,
        login(&m, "jo").await,
    ];
    pair.replica.pause();
    let bound = CONNECT + RESPONSE + WAIT + Duration::from_millis(700);
    let started = Instant::now();
    let got = logout(&m, &cookies[0]).await;
    let took = started.elapsed();
    let e = not_replicated(got);
    assert_eq!((e.acknowledged, e.wanted, e.timeout), (0, 1, WAIT));
    assert!(
        took >= WAIT - Duration::from_millis(50) && took < bound,
        "the failed logout took {took:?}"
    );
    let started = Instant::now();
    let got = rotate(&m, &cookies[1]).await;
    assert!(got.is_err(), "a rotation was reported done: {got:?}");
    assert!(
        started.elapsed() < bound * 2,
        "took {:?}",
        started.elapsed()
    );
    let key = SessionKey::parse(&cookies[2]).unwrap();
    not_replicated(store.end(&key, 1, remember()).await);
    not_replicated(store.delete(&SessionKey::parse(&cookies[3]).unwrap()).await);
    // The primary did apply the end: it is the replica that cannot vouch for it.
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
    // Reads do not queue behind a waiting write.
    let waiting = tokio::spawn({
        let (m, cookie) = (m.clone(), cookies[4].clone());
        async move { logout(&m, &cookie).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(user(&m, &new).await.as_deref(), Some("bob"));
    assert!(
        started.elapsed() < WAIT / 2,
        "a read queued behind a waiting write for {:?}",
        started.elapsed()
    );
    assert!(waiting.await.unwrap().is_err());
    // Without the option nothing waits: the same end succeeds at once.
    let quick = SessionKey::parse(&cookies[5]).unwrap();
    let started = Instant::now();
    plain.end(&quick, 1, remember()).await.unwrap();
    assert!(
        started.elapsed() < WAIT / 2,
        "an end without the option waited {:?}",
        started.elapsed()
    );

    // Back: the replica catches up, and logouts succeed again.
    pair.replica.resume();
    eventually("the replica to catch up", || async {
        matches!(on_replica(&replica, &store, &key).await, Lookup::Ended)
    })
    .await;
    let cookie = login(&m, "kim").await;
    let commit = logout(&m, &cookie).await.unwrap();
    assert!(matches!(commit.cookie, CookieAction::Remove(_)));

    // Waiting for more replicas than there are always fails, after the timeout.
    let greedy = open(mode, pair, &ns, 2, Duration::from_millis(200)).await;
    let key = SessionKey::parse(&login(&m, "lu").await).unwrap();
    let e = not_replicated(greedy.end(&key, 1, remember()).await);
    assert_eq!((e.acknowledged, e.wanted), (1, 2));

    // A frozen primary: a waiting write still ends within its bound.
    let key = SessionKey::parse(&login(&m, "mo").await).unwrap();
    pair.primary.pause();
    let started = Instant::now();
    let got = store.end(&key, 1, remember()).await;
    let took = started.elapsed();
    pair.primary.resume();
    assert!(got.is_err(), "{got:?}");
    assert!(took < bound, "a waiting end hung for {took:?}");
}

#[tokio::test]
#[ignore = "needs redis-server on PATH"]
async fn standalone_logout_and_rotation_wait_for_the_replica() {
    let pair = Pair::standalone().await;
    logout_and_rotation_wait_for_the_replica(Mode::Standalone, &pair).await;
}

#[cfg(feature = "cluster")]
#[tokio::test]
#[ignore = "needs redis-server on PATH"]
async fn cluster_logout_and_rotation_wait_for_the_replica_of_the_shard() {
    let pair = Pair::cluster().await;
    logout_and_rotation_wait_for_the_replica(Mode::Cluster, &pair).await;
}

/// The whole conformance suite on a store that waits for its replica: one standalone pair
/// for the whole test binary (its servers die with the process, see [`WATCHDOG`]).
struct Waiting;

static SHARED: tokio::sync::OnceCell<Pair> = tokio::sync::OnceCell::const_new();

async fn shared() -> &'static Pair {
    SHARED.get_or_init(Pair::standalone).await
}

#[async_trait]
impl Factory for Waiting {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        let pair = shared().await;
        Arc::new(open(Mode::Standalone, pair, ns, 1, Duration::from_secs(2)).await)
    }
    async fn cleanup(&self, ns: &str) {
        delete_prefix(&[shared().await.primary.url()], &prefix(ns)).await;
    }
}

session_core::conformance_tests!(
    redis_waiting_for_a_replica,
    Waiting,
    ignore = "needs redis-server on PATH"
);
