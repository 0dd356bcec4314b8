//! The registry: how every store of the family is opened for a test, a benchmark or a
//! load run, on a namespace of its own, and what is removed afterwards.
//!
//! [`open`] gives any [`Kind`] of store on a fresh [`Namespace`] (a table of its own, a
//! Redis key prefix of its own, a temporary directory) with the clean-up to run at the
//! end. The typed openers below it ([`sqlite`], [`postgres`], [`mysql`], [`redis()`],
//! [`redis_cluster`], [`file()`], [`cookie`]) are what it is made of, for callers that need
//! the concrete store (its pool, `clear_expired_in_batches`) or a namespace of their own
//! choosing (the benchmarks' fixed tables).
//!
//! Service URLs come from `SESSION_TEST_POSTGRES_URL`, `SESSION_TEST_MYSQL_URL`,
//! `SESSION_TEST_REDIS_URL` and `SESSION_TEST_REDIS_CLUSTER_URLS` ([`Service`]). [`open`]
//! panics with the name of a missing variable, so an ignored test run with
//! `--include-ignored` never passes without its service; [`Service::url`] lets a caller
//! skip instead.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use session_cache::{CachedStore, MokaStore, RedisPrefix, RedisStore};
use session_core::{SessionKey, Store};
use session_db::sqlx;
use session_db::{MySqlStore, PostgresStore, SqliteStore, TableName};
use session_file::FileStore;
use session_signed_cookie::CookieStore;
use tempfile::TempDir;

/// The master secret of the cookie stores [`open`] gives.
pub const COOKIE_SECRET: &[u8] = b"reliability suite secret, 32 bytes or more, not for production";

/// A service a store needs, and the variable holding its URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// PostgreSQL: `SESSION_TEST_POSTGRES_URL`.
    Postgres,
    /// MySQL or MariaDB: `SESSION_TEST_MYSQL_URL`.
    MySql,
    /// Redis: `SESSION_TEST_REDIS_URL`.
    Redis,
    /// Redis Cluster: `SESSION_TEST_REDIS_CLUSTER_URLS` (comma-separated seed URLs).
    RedisCluster,
}

impl Service {
    /// The environment variable holding the service's URL.
    #[must_use]
    pub const fn var(self) -> &'static str {
        match self {
            Self::Postgres => "SESSION_TEST_POSTGRES_URL",
            Self::MySql => "SESSION_TEST_MYSQL_URL",
            Self::Redis => "SESSION_TEST_REDIS_URL",
            Self::RedisCluster => "SESSION_TEST_REDIS_CLUSTER_URLS",
        }
    }

    /// The service's URL, or `None` when its variable is unset or blank.
    #[must_use]
    pub fn url(self) -> Option<String> {
        std::env::var(self.var())
            .ok()
            .filter(|url| !url.trim().is_empty())
    }

    /// The service's URL.
    ///
    /// # Panics
    ///
    /// When the variable is unset or blank, naming it: a test that needs the service
    /// fails rather than passing without it.
    #[must_use]
    pub fn require(self) -> String {
        self.url().unwrap_or_else(|| {
            panic!(
                "{} is not set: this test needs its service (see SECURITY.md / .ci/run)",
                self.var()
            )
        })
    }
}

/// The seed URLs in a comma-separated list (`SESSION_TEST_REDIS_CLUSTER_URLS`).
#[must_use]
pub fn cluster_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The name a store's data lives under on a shared service: its table, or its Redis key
/// prefix (the name and a colon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    /// A namespace no one else uses: `<tag>_` and 12 random characters, a valid table
    /// name when `tag` is one.
    #[must_use]
    pub fn fresh(tag: &str) -> Self {
        Self(format!("{tag}_{}", &SessionKey::generate().as_str()[..12]))
    }

    /// A namespace of the caller's choosing (the benchmarks reuse fixed tables).
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a table name.
    ///
    /// # Panics
    ///
    /// When the name is not a valid table name.
    #[must_use]
    pub fn table(&self) -> TableName {
        TableName::new(&self.0).unwrap_or_else(|e| panic!("{:?} is not a table name: {e}", self.0))
    }

    /// The Redis key prefix: the name and a colon.
    #[must_use]
    pub fn redis_prefix(&self) -> String {
        format!("{}:", self.0)
    }

    /// The Redis key prefix as a store takes it.
    ///
    /// # Panics
    ///
    /// When the name makes no valid prefix.
    #[must_use]
    pub fn redis_store_prefix(&self) -> RedisPrefix {
        let prefix = self.redis_prefix();
        RedisPrefix::new(&prefix).unwrap_or_else(|e| panic!("{prefix:?} is not a prefix: {e}"))
    }

    /// `base`, a store URL of `service` as `sessions::open` takes it, confined to this
    /// namespace: `table=<name>` for a database, `prefix=<name>:` for Redis.
    #[must_use]
    pub fn url_for(&self, service: Service, base: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        match service {
            Service::Postgres | Service::MySql => format!("{base}{sep}table={}", self.0),
            Service::Redis | Service::RedisCluster => {
                format!("{base}{sep}prefix={}", self.redis_prefix())
            }
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A future that removes what a test left on a shared service.
pub type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every store of the family, as [`open`] sets it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `session_core::MemoryStore`.
    Memory,
    /// `session_cache::MokaStore`.
    Moka,
    /// `session_db::SqliteStore` on `sqlite::memory:`.
    SqliteMemory,
    /// `session_db::SqliteStore` on a file in a temporary directory.
    SqliteFile,
    /// `session_file::FileStore` in a temporary directory.
    File,
    /// `CachedStore` of a `MokaStore` over SQLite in memory.
    CachedMokaSqlite,
    /// `session_db::PostgresStore` (a table of its own, dropped by the clean-up).
    Postgres,
    /// `session_db::MySqlStore` (a table of its own, dropped by the clean-up).
    MySql,
    /// `session_cache::RedisStore` (a key prefix of its own, removed by the clean-up).
    Redis,
    /// `session_cache::RedisStore` on Redis Cluster (a key prefix of its own; the
    /// cluster is private to the run and its keys expire by their TTL).
    RedisCluster,
    /// `CachedStore` of a `RedisStore` over PostgreSQL.
    CachedRedisPostgres,
    /// `session_signed_cookie::CookieStore`, signed, with [`COOKIE_SECRET`].
    CookieSigned,
    /// `session_signed_cookie::CookieStore`, encrypted, with [`COOKIE_SECRET`].
    CookieEncrypted,
}

impl Kind {
    /// Every kind, embedded ones first.
    pub const ALL: [Self; 13] = [
        Self::Memory,
        Self::Moka,
        Self::SqliteMemory,
        Self::SqliteFile,
        Self::File,
        Self::CachedMokaSqlite,
        Self::CookieSigned,
        Self::CookieEncrypted,
        Self::Postgres,
        Self::MySql,
        Self::Redis,
        Self::RedisCluster,
        Self::CachedRedisPostgres,
    ];

    /// The services the kind needs (none for an embedded store).
    #[must_use]
    pub const fn services(self) -> &'static [Service] {
        match self {
            Self::Postgres => &[Service::Postgres],
            Self::MySql => &[Service::MySql],
            Self::Redis => &[Service::Redis],
            Self::RedisCluster => &[Service::RedisCluster],
            Self::CachedRedisPostgres => &[Service::Redis, Service::Postgres],
            Self::Memory
            | Self::Moka
            | Self::SqliteMemory
            | Self::SqliteFile
            | Self::File
            | Self::CachedMokaSqlite
            | Self::CookieSigned
            | Self::CookieEncrypted => &[],
        }
    }
}

/// A store under test, with whatever must live as long as it does.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The temporary directory of a file-backed store.
    pub dir: Option<TempDir>,
    /// Run at the end of the test ([`finish`](Self::finish)): drops tables, removes keys.
    pub cleanup: Option<Cleanup>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("dir", &self.dir)
            .field("cleanup", &self.cleanup.is_some())
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// `store` with no directory and nothing to clean up.
    pub fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            dir: None,
            cleanup: None,
        }
    }

    fn in_dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    fn then(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = Some(cleanup);
        self
    }

    /// Runs the clean-up, if any (the directory goes when `self` is dropped).
    pub async fn finish(self) {
        if let Some(c) = self.cleanup {
            c.await;
        }
    }
}

/// Opens a store of `kind` on a fresh namespace (`rel_…`).
///
/// # Panics
///
/// When a service variable the kind needs is missing, or the store cannot be opened.
pub async fn open(kind: Kind) -> Opened {
    let ns = Namespace::fresh("rel");
    match kind {
        Kind::Memory => Opened::new(session_core::MemoryStore::new()),
        Kind::Moka => Opened::new(MokaStore::new()),
        Kind::SqliteMemory => Opened::new(sqlite("sqlite::memory:", &ns).await),
        Kind::SqliteFile => {
            let dir = temp_dir();
            let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
            Opened::new(sqlite(&url, &ns).await).in_dir(dir)
        }
        Kind::File => {
            let dir = temp_dir();
            Opened::new(file(&dir.path().join("sessions"))).in_dir(dir)
        }
        Kind::CachedMokaSqlite => Opened::new(CachedStore::new(
            MokaStore::new(),
            sqlite("sqlite::memory:", &ns).await,
        )),
        Kind::Postgres => {
            let store = postgres(&Service::Postgres.require(), &ns).await;
            Opened::new(store.clone()).then(Box::pin(drop_postgres(store)))
        }
        Kind::MySql => {
            let store = mysql(&Service::MySql.require(), &ns).await;
            Opened::new(store.clone()).then(Box::pin(drop_mysql(store)))
        }
        Kind::Redis => {
            let url = Service::Redis.require();
            let store = redis(&url, &ns).await;
            Opened::new(store).then(Box::pin(remove_redis_keys(url, ns.redis_prefix())))
        }
        Kind::RedisCluster => {
            Opened::new(redis_cluster(&Service::RedisCluster.require(), &ns).await)
        }
        Kind::CachedRedisPostgres => {
            let db = postgres(&Service::Postgres.require(), &ns).await;
            let url = Service::Redis.require();
            let cache = redis(&url, &ns).await;
            let prefix = ns.redis_prefix();
            Opened::new(CachedStore::new(cache, db.clone())).then(Box::pin(async move {
                drop_postgres(db).await;
                remove_redis_keys(url, prefix).await;
            }))
        }
        Kind::CookieSigned => Opened::new(cookie(false, COOKIE_SECRET)),
        Kind::CookieEncrypted => Opened::new(cookie(true, COOKIE_SECRET)),
    }
}

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Generates, for one SQL store, the opener on a URL, the opener beside another store, and
/// the statements emptying and dropping its table (the table name is a validated
/// identifier, quoted).
macro_rules! sql_store {
    (
        $store:ty, $what:literal, $quote:literal,
        $connect:ident, $beside:ident, $empty:ident, $drop:ident
    ) => {
        #[doc = concat!("A ", $what, " store on `url`, in the table named by `ns`, migrated.")]
        ///
        /// # Panics
        ///
        /// When the store cannot connect or migrate.
        pub async fn $connect(url: &str, ns: &Namespace) -> $store {
            let store = <$store>::builder()
                .with_table_name(ns.table())
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
            store
                .migrate()
                .await
                .unwrap_or_else(|e| panic!(concat!("migrate ", $what, ": {}"), e));
            store
        }

        #[doc = concat!("A ", $what, " store on the pool of `other`, in the table named by `ns`, migrated.")]
        ///
        /// # Panics
        ///
        /// When the store cannot migrate.
        pub async fn $beside(other: &$store, ns: &Namespace) -> $store {
            let store = <$store>::builder()
                .with_table_name(ns.table())
                .build(other.pool().clone());
            store
                .migrate()
                .await
                .unwrap_or_else(|e| panic!(concat!("migrate ", $what, ": {}"), e));
            store
        }

        #[doc = concat!("Deletes every row of a ", $what, " store's table.")]
        ///
        /// # Panics
        ///
        /// When the statement fails.
        pub async fn $empty(store: &$store) {
            let sql = format!(
                concat!("DELETE FROM ", $quote, "{}", $quote),
                store.table_name()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(store.pool())
                .await
                .expect("empty the table");
        }

        #[doc = concat!("Drops a ", $what, " store's table.")]
        ///
        /// # Panics
        ///
        /// When the statement fails.
        pub async fn $drop(store: $store) {
            let sql = format!(
                concat!("DROP TABLE IF EXISTS ", $quote, "{}", $quote),
                store.table_name()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(store.pool())
                .await
                .expect("drop table");
        }
    };
}

sql_store!(
    SqliteStore,
    "SQLite",
    "\"",
    sqlite,
    sqlite_beside,
    empty_sqlite,
    drop_sqlite
);
sql_store!(
    PostgresStore,
    "PostgreSQL",
    "\"",
    postgres,
    postgres_beside,
    empty_postgres,
    drop_postgres
);
sql_store!(
    MySqlStore,
    "MySQL",
    "`",
    mysql,
    mysql_beside,
    empty_mysql,
    drop_mysql
);

/// A Redis store on `url`, under the key prefix of `ns`.
///
/// # Panics
///
/// When it cannot connect.
pub async fn redis(url: &str, ns: &Namespace) -> RedisStore {
    RedisStore::builder()
        .with_prefix(ns.redis_store_prefix())
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A Redis Cluster store on the comma-separated seed `urls`, under the key prefix of `ns`.
///
/// # Panics
///
/// When it cannot connect.
pub async fn redis_cluster(urls: &str, ns: &Namespace) -> RedisStore {
    let urls = cluster_urls(urls);
    RedisStore::builder()
        .with_prefix(ns.redis_store_prefix())
        .connect_cluster(&urls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the cluster {urls:?}: {e}"))
}

/// Removes every key under `prefix` from the Redis at `url`.
///
/// # Panics
///
/// When Redis cannot be reached.
pub async fn remove_redis_keys(url: String, prefix: String) {
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    for chunk in keys.chunks(500) {
        let () = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

/// A file store in `dir` (created if missing).
///
/// # Panics
///
/// When the directory cannot be opened.
#[must_use]
pub fn file(dir: &Path) -> FileStore {
    FileStore::open(dir).expect("open the file store")
}

/// A cookie store with `secret`: encrypted, or signed.
///
/// # Panics
///
/// When the secret is refused (shorter than 32 bytes).
#[must_use]
pub fn cookie(encrypted: bool, secret: &[u8]) -> CookieStore {
    let builder = if encrypted {
        CookieStore::encrypted(secret)
    } else {
        CookieStore::signed(secret)
    };
    builder.build().expect("build the cookie store")
}
