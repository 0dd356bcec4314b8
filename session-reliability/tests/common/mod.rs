//! Opening every store the reliability suites run against, one namespace per test.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use session_cache::{CachedStore, MokaStore, RedisStore};
use session_core::{Error, Record, Result, SessionKey, Store, async_trait};
use session_db::sqlx;
use session_db::{MySqlStore, PostgresStore, SqliteStore, TableName};
use session_file::FileStore;
use session_signed_cookie::CookieStore;
use tempfile::TempDir;
use time::OffsetDateTime;

/// A future that removes what a test left on a shared service.
pub(crate) type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A store under test, with whatever must live as long as it does.
pub(crate) struct Opened {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The directory of a file-backed store.
    pub(crate) dir: Option<TempDir>,
    /// Run at the end of the test (drops tables).
    pub(crate) cleanup: Option<Cleanup>,
}

impl Opened {
    fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            dir: None,
            cleanup: None,
        }
    }

    /// Runs the cleanup, if any.
    pub(crate) async fn finish(self) {
        if let Some(c) = self.cleanup {
            c.await;
        }
    }
}

/// Every store the suites know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Moka,
    SqliteMemory,
    SqliteFile,
    File,
    CachedMokaSqlite,
    Postgres,
    MySql,
    Redis,
    RedisCluster,
    CachedRedisPostgres,
    CookieSigned,
    CookieEncrypted,
}

/// A fresh namespace: a valid table name and Redis prefix, unique per call.
pub(crate) fn namespace() -> String {
    format!("rel_{}", &SessionKey::generate().as_str()[..12])
}

/// The value of a service URL variable; panics when it is missing, so an ignored test run
/// with `--include-ignored` never passes without its service.
pub(crate) fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs its service (see SECURITY.md / .ci/run)")
    })
}

/// The master secret of the cookie stores in these tests.
pub(crate) const COOKIE_SECRET: &[u8] =
    b"reliability suite secret, 32 bytes or more, not for production";

async fn sqlite(url: &str) -> SqliteStore {
    let store = SqliteStore::builder()
        .with_table_name(TableName::new(&namespace()).expect("table name"))
        .connect(url)
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    store
}

async fn postgres(ns: &str) -> PostgresStore {
    let url = env_url("SESSION_TEST_POSTGRES_URL");
    let store = PostgresStore::builder()
        .with_table_name(TableName::new(ns).expect("table name"))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    store.migrate().await.expect("migrate PostgreSQL");
    store
}

async fn mysql(ns: &str) -> MySqlStore {
    let url = env_url("SESSION_TEST_MYSQL_URL");
    let store = MySqlStore::builder()
        .with_table_name(TableName::new(ns).expect("table name"))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    store.migrate().await.expect("migrate MySQL");
    store
}

async fn redis(ns: &str) -> RedisStore {
    let url = env_url("SESSION_TEST_REDIS_URL");
    RedisStore::builder()
        .prefix(format!("{ns}:"))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn redis_cluster(ns: &str) -> RedisStore {
    let urls: Vec<String> = env_url("SESSION_TEST_REDIS_CLUSTER_URLS")
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    RedisStore::builder()
        .prefix(format!("{ns}:"))
        .connect_cluster(&urls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the cluster {urls:?}: {e}"))
}

fn drop_pg(store: PostgresStore) -> Cleanup {
    Box::pin(async move {
        let sql = format!("DROP TABLE IF EXISTS \"{}\"", store.table_name());
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("drop table");
    })
}

fn drop_mysql(store: MySqlStore) -> Cleanup {
    Box::pin(async move {
        let sql = format!("DROP TABLE IF EXISTS `{}`", store.table_name());
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("drop table");
    })
}

/// Opens a store of `kind` in a namespace of its own.
pub(crate) async fn open(kind: Kind) -> Opened {
    let ns = namespace();
    match kind {
        Kind::Memory => Opened::new(session_core::MemoryStore::new()),
        Kind::Moka => Opened::new(MokaStore::new()),
        Kind::SqliteMemory => Opened::new(sqlite("sqlite::memory:").await),
        Kind::SqliteFile => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
            let mut o = Opened::new(sqlite(&url).await);
            o.dir = Some(dir);
            o
        }
        Kind::File => {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut o = Opened::new(FileStore::open(dir.path().join("sessions")).expect("open"));
            o.dir = Some(dir);
            o
        }
        Kind::CachedMokaSqlite => Opened::new(CachedStore::new(
            MokaStore::new(),
            sqlite("sqlite::memory:").await,
        )),
        Kind::Postgres => {
            let store = postgres(&ns).await;
            let mut o = Opened::new(store.clone());
            o.cleanup = Some(drop_pg(store));
            o
        }
        Kind::MySql => {
            let store = mysql(&ns).await;
            let mut o = Opened::new(store.clone());
            o.cleanup = Some(drop_mysql(store));
            o
        }
        Kind::Redis => Opened::new(redis(&ns).await),
        // The cluster is private to the run (`.ci/redis-cluster.sh`); the test's keys
        // expire by their TTL.
        Kind::RedisCluster => Opened::new(redis_cluster(&ns).await),
        Kind::CachedRedisPostgres => {
            let db = postgres(&ns).await;
            let mut o = Opened::new(CachedStore::new(redis(&ns).await, db.clone()));
            o.cleanup = Some(drop_pg(db));
            o
        }
        Kind::CookieSigned => {
            Opened::new(CookieStore::signed(COOKIE_SECRET).build().expect("build"))
        }
        Kind::CookieEncrypted => Opened::new(
            CookieStore::encrypted(COOKIE_SECRET)
                .build()
                .expect("build"),
        ),
    }
}

/// Counts the operations that reach a store.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) create: AtomicU64,
    pub(crate) load: AtomicU64,
    pub(crate) save: AtomicU64,
    pub(crate) touch: AtomicU64,
    pub(crate) delete: AtomicU64,
    pub(crate) clear_expired: AtomicU64,
}

impl Counts {
    /// Every operation, in the order of the fields.
    pub(crate) fn snapshot(&self) -> [u64; 6] {
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
    pub(crate) fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }

    /// How many writes (create, save, touch) reached the store.
    pub(crate) fn writes(&self) -> u64 {
        let [c, _, s, t, _, _] = self.snapshot();
        c + s + t
    }
}

/// A store wrapper that counts every operation before passing it on.
pub(crate) struct Counting {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) counts: Arc<Counts>,
}

impl Counting {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
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
pub(crate) fn is_conflict<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Conflict))
}
