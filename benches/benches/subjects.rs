//! The subjects: our stores, the raw media, the peers; and which run for which store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use session_core::{Data, MemoryStore, Record, SessionKey, Store};
use sha2::Sha256;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::common::{Size, file_root, fresh_dir, hex, in_a_day, random_id, service_url};
use crate::driver::{Subject, Subjects, runner};
use crate::ts_peer::{TowerSessions14, ts_peer};

// ---------------------------------------------------------------------------------------
// Ours: any `Store`.

pub(crate) struct Ours<S> {
    store: S,
    record: Record,
}

impl<S: Store> Ours<S> {
    pub(crate) fn new(store: S, size: Size) -> Self {
        Self {
            store,
            record: size.record(),
        }
    }
}

impl<S: Store> Subject for Ours<S> {
    type H = (SessionKey, u64);

    async fn create(&self) -> Self::H {
        (self.store.create(&self.record).await.expect("create"), 1)
    }

    async fn load(&self, h: &Self::H) {
        let r = self.store.load(&h.0).await.expect("load");
        assert!(r.is_some(), "session missing");
    }

    async fn save(&self, h: &mut Self::H) {
        let mut r = self.record.clone();
        r.version = h.1;
        h.0 = self.store.save(&h.0, &r).await.expect("save");
        h.1 += 1;
    }

    async fn touch(&self, h: &mut Self::H) {
        h.0 = self.store.touch(&h.0, in_a_day()).await.expect("touch");
    }

    async fn delete(&self, h: Self::H) {
        self.store.delete(&h.0).await.expect("delete");
    }
}

// ---------------------------------------------------------------------------------------
// Raw media. A raw session is an id (32 random bytes) and the version it holds.

#[derive(Clone, Copy)]
pub(crate) struct RawH {
    id: [u8; 32],
    version: u64,
}

impl RawH {
    fn fresh() -> Self {
        Self {
            id: random_id(),
            version: 1,
        }
    }
}

/// The framed bytes of `record` with `version` written into the header.
fn framed(record: &Record, version: u64) -> Vec<u8> {
    let mut r = record.clone();
    r.version = version;
    r.encode_framed().expect("encode")
}

/// A copy of framed `bytes` with another version in the header (a memcpy, no encoding).
fn with_version(bytes: &[u8], version: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[3..11].copy_from_slice(&version.to_be_bytes());
    out
}

/// A map behind a lock: what an in-process store cannot avoid.
pub(crate) struct RawMemory {
    map: RwLock<HashMap<[u8; 32], Record>>,
    record: Record,
}

impl RawMemory {
    pub(crate) fn new(size: Size) -> Self {
        Self {
            map: RwLock::default(),
            record: size.record(),
        }
    }
}

impl Subject for RawMemory {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        let mut r = self.record.clone();
        r.version = 1;
        self.map.write().expect("lock").insert(h.id, r);
        h
    }
    async fn load(&self, h: &RawH) {
        let r = self.map.read().expect("lock").get(&h.id).cloned();
        assert!(r.is_some(), "session missing");
    }
    async fn save(&self, h: &mut RawH) {
        let mut map = self.map.write().expect("lock");
        let slot = map.get_mut(&h.id).expect("session missing");
        assert_eq!(slot.version, h.version);
        let mut r = self.record.clone();
        r.version = h.version + 1;
        *slot = r;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        let mut map = self.map.write().expect("lock");
        map.get_mut(&h.id).expect("session missing").expires_at = in_a_day();
    }
    async fn delete(&self, h: RawH) {
        self.map.write().expect("lock").remove(&h.id);
    }
}

/// moka get/insert of the framed bytes.
pub(crate) struct RawMoka {
    cache: moka::future::Cache<[u8; 32], Arc<[u8]>>,
    bytes: Arc<[u8]>,
}

impl RawMoka {
    pub(crate) fn new(size: Size) -> Self {
        Self {
            cache: moka::future::Cache::builder().max_capacity(1 << 20).build(),
            bytes: framed(&size.record(), 1).into(),
        }
    }
    async fn put(&self, h: &RawH) {
        self.cache.insert(h.id, Arc::clone(&self.bytes)).await;
    }
    async fn get(&self, h: &RawH) {
        assert!(self.cache.get(&h.id).await.is_some(), "session missing");
    }
    async fn del(&self, h: &RawH) {
        self.cache.invalidate(&h.id).await;
    }
}

impl Subject for RawMoka {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.put(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        self.get(h).await;
    }
    async fn save(&self, h: &mut RawH) {
        self.get(h).await;
        self.put(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.get(h).await;
        self.put(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.del(&h).await;
    }
}

/// write + fsync + rename of the framed bytes, one `spawn_blocking` per operation.
pub(crate) struct RawFile {
    dir: PathBuf,
    bytes: Arc<[u8]>,
}

impl RawFile {
    pub(crate) fn new(dir: PathBuf, size: Size) -> Self {
        Self {
            dir,
            bytes: framed(&size.record(), 1).into(),
        }
    }
    async fn write(&self, h: &RawH) {
        let path = self.dir.join(hex(&h.id));
        let temp = self.dir.join(format!(".tmp-{}", hex(&random_id()[..12])));
        let bytes = Arc::clone(&self.bytes);
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut f = std::fs::File::create_new(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&temp, &path)
        })
        .await
        .expect("join")
        .expect("write");
    }
}

impl Subject for RawFile {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.write(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        let path = self.dir.join(hex(&h.id));
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .expect("join")
            .expect("read");
        assert!(!bytes.is_empty());
    }
    async fn save(&self, h: &mut RawH) {
        self.write(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.write(h).await;
    }
    async fn delete(&self, h: RawH) {
        let path = self.dir.join(hex(&h.id));
        tokio::task::spawn_blocking(move || std::fs::remove_file(path))
            .await
            .expect("join")
            .expect("remove");
    }
}

/// The statements of a store, read from session-db's own SQL files.
struct SqlSet {
    create: Arc<str>,
    load: Arc<str>,
    save: Arc<str>,
    touch: Arc<str>,
    delete: Arc<str>,
}

impl SqlSet {
    fn new(templates: [&str; 5], table: &str) -> Self {
        let r = |t: &str| -> Arc<str> { t.trim().replace("{table}", table).into() };
        Self {
            create: r(templates[0]),
            load: r(templates[1]),
            save: r(templates[2]),
            touch: r(templates[3]),
            delete: r(templates[4]),
        }
    }
}

macro_rules! sql_files {
    ($db:literal) => {
        [
            include_str!(concat!("../../session-db/src/sql/", $db, "/create.sql")),
            include_str!(concat!("../../session-db/src/sql/", $db, "/lookup.sql")),
            include_str!(concat!("../../session-db/src/sql/", $db, "/save.sql")),
            include_str!(concat!("../../session-db/src/sql/", $db, "/touch.sql")),
            include_str!(concat!("../../session-db/src/sql/", $db, "/delete.sql")),
        ]
    };
}

fn sqlite_time(at: OffsetDateTime) -> i64 {
    session_core::unix_millis(at)
}

fn pg_time(at: OffsetDateTime) -> OffsetDateTime {
    at
}

fn mysql_time(at: OffsetDateTime) -> PrimitiveDateTime {
    let utc = at.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

/// Raw sqlx: the store's own statements (prepared and cached by sqlx), the payload
/// already encoded.
macro_rules! raw_sql {
    ($name:ident, $pool:ty, $db:literal, $time:path, $time_ty:ty) => {
        pub(crate) struct $name {
            pool: $pool,
            sql: SqlSet,
            payload: Vec<u8>,
            expires_at: OffsetDateTime,
        }

        impl $name {
            pub(crate) fn new(pool: $pool, table: &str, size: Size) -> Self {
                let record = size.record();
                Self {
                    pool,
                    sql: SqlSet::new(sql_files!($db), table),
                    payload: record.encode_payload().expect("encode"),
                    expires_at: record.expires_at,
                }
            }
            async fn insert(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.create)))
                    .bind(hex(&h.id))
                    .bind(self.payload.as_slice())
                    .bind($time(self.expires_at))
                    .execute(&self.pool)
                    .await
                    .expect("insert")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            async fn select(&self, h: &RawH) {
                use sqlx::Row as _;
                let row = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.load)))
                    .bind(hex(&h.id))
                    .bind($time(OffsetDateTime::now_utc()))
                    .fetch_optional(&self.pool)
                    .await
                    .expect("select")
                    .expect("session missing");
                let payload: &[u8] = row.try_get(0).expect("payload");
                let _: $time_ty = row.try_get(1).expect("expires_at");
                let _: i64 = row.try_get(2).expect("version");
                assert!(!payload.is_empty());
            }
            async fn update(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.save)))
                    .bind(self.payload.as_slice())
                    .bind($time(self.expires_at))
                    .bind(hex(&h.id))
                    .bind(i64::try_from(h.version).expect("version"))
                    .bind($time(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .expect("update")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            async fn extend(&self, h: &RawH) {
                let n = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.touch)))
                    .bind($time(in_a_day()))
                    .bind(hex(&h.id))
                    .bind($time(OffsetDateTime::now_utc()))
                    .execute(&self.pool)
                    .await
                    .expect("touch")
                    .rows_affected();
                assert_eq!(n, 1);
            }
            async fn remove(&self, h: &RawH) {
                sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&self.sql.delete)))
                    .bind(hex(&h.id))
                    .execute(&self.pool)
                    .await
                    .expect("delete");
            }
        }

        impl Subject for $name {
            type H = RawH;
            async fn create(&self) -> RawH {
                let h = RawH::fresh();
                self.insert(&h).await;
                h
            }
            async fn load(&self, h: &RawH) {
                self.select(h).await;
            }
            async fn save(&self, h: &mut RawH) {
                self.update(h).await;
                h.version += 1;
            }
            async fn touch(&self, h: &mut RawH) {
                self.extend(h).await;
            }
            async fn delete(&self, h: RawH) {
                self.remove(&h).await;
            }
        }
    };
}

raw_sql!(RawSqlite, sqlx::SqlitePool, "sqlite", sqlite_time, i64);
raw_sql!(RawPg, sqlx::PgPool, "postgres", pg_time, OffsetDateTime);
raw_sql!(
    RawMySql,
    sqlx::MySqlPool,
    "mysql",
    mysql_time,
    PrimitiveDateTime
);

/// Raw redis on one multiplexed connection: `SET … PX … NX`, `GET`, `EVALSHA` (a
/// compare-and-set script and an expiry script), `DEL`.
pub(crate) struct RawRedis<C> {
    conn: C,
    prefix: String,
    bytes: Vec<u8>,
    cas: redis::Script,
    extend: redis::Script,
}

const DAY_MS: i64 = 86_400_000;

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static> RawRedis<C> {
    pub(crate) fn new(conn: C, prefix: &str, size: Size) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            bytes: framed(&size.record(), 1),
            cas: redis::Script::new(
                r"local h = redis.call('GETRANGE', KEYS[1], 3, 10)
if h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1",
            ),
            extend: redis::Script::new(
                r"local h = redis.call('GETRANGE', KEYS[1], 0, 18)
if string.len(h) ~= 19 then return 0 end
redis.call('SETRANGE', KEYS[1], 11, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1",
            ),
        }
    }
    fn key(&self, h: &RawH) -> String {
        format!("{}{}", self.prefix, hex(&h.id))
    }
    async fn put(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(self.key(h))
            .arg(&self.bytes)
            .arg("PX")
            .arg(DAY_MS)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .expect("SET");
        assert!(r.is_some());
    }
    async fn get(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let r: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(h))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert!(r.is_some(), "session missing");
    }
    async fn cas(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let next = with_version(&self.bytes, h.version + 1);
        let r: i64 = self
            .cas
            .key(self.key(h))
            .arg(&h.version.to_be_bytes()[..])
            .arg(next)
            .arg(DAY_MS)
            .invoke_async(&mut conn)
            .await
            .expect("EVALSHA");
        assert_eq!(r, 1);
    }
    async fn extend(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let at = session_core::unix_millis(in_a_day());
        let r: i64 = self
            .extend
            .key(self.key(h))
            .arg(&at.to_be_bytes()[..])
            .arg(DAY_MS)
            .invoke_async(&mut conn)
            .await
            .expect("EVALSHA");
        assert_eq!(r, 1);
    }
    async fn del(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(h))
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static> Subject for RawRedis<C> {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.put(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        self.get(h).await;
    }
    async fn save(&self, h: &mut RawH) {
        self.cas(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.extend(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.del(&h).await;
    }
}

/// A raw cache over raw PostgreSQL: reads from the cache, writes to both.
pub(crate) enum RawCache {
    Moka(RawMoka),
    Redis(RawRedis<redis::aio::MultiplexedConnection>),
}

pub(crate) struct RawCached {
    db: RawPg,
    cache: RawCache,
}

impl RawCached {
    pub(crate) fn new(db: RawPg, cache: RawCache) -> Self {
        Self { db, cache }
    }
    async fn fill(&self, h: &RawH) {
        match &self.cache {
            RawCache::Moka(m) => m.put(h).await,
            RawCache::Redis(r) => {
                let mut conn = r.conn.clone();
                let _: () = redis::cmd("SET")
                    .arg(r.key(h))
                    .arg(&r.bytes)
                    .arg("PX")
                    .arg(DAY_MS)
                    .query_async(&mut conn)
                    .await
                    .expect("SET");
            }
        }
    }
}

impl Subject for RawCached {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.db.insert(&h).await;
        self.fill(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        match &self.cache {
            RawCache::Moka(m) => m.get(h).await,
            RawCache::Redis(r) => r.get(h).await,
        }
    }
    async fn save(&self, h: &mut RawH) {
        self.db.update(h).await;
        h.version += 1;
        self.fill(h).await;
    }
    async fn touch(&self, h: &mut RawH) {
        self.db.extend(h).await;
        self.fill(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.db.remove(&h).await;
        match &self.cache {
            RawCache::Moka(m) => m.del(&h).await,
            RawCache::Redis(r) => r.del(&h).await,
        }
    }
}

/// serde_json + HMAC-SHA256 (signed) or AES-256-GCM (encrypted) + base64 of the record.
pub(crate) struct RawCookie {
    encrypted: bool,
    mac_key: [u8; 32],
    aead: aes_gcm::Aes256Gcm,
    data: Data,
    expires_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CookieBody<'a> {
    d: std::borrow::Cow<'a, Data>,
    e: i64,
    v: u64,
}

impl RawCookie {
    pub(crate) fn new(encrypted: bool, size: Size) -> Self {
        use aes_gcm::KeyInit as _;
        Self {
            encrypted,
            mac_key: random_id(),
            aead: aes_gcm::Aes256Gcm::new(&random_id().into()),
            data: size.data(),
            expires_ms: session_core::unix_millis(in_a_day()),
        }
    }
    fn encode(&self, version: u64) -> String {
        let body = CookieBody {
            d: std::borrow::Cow::Borrowed(&self.data),
            e: self.expires_ms,
            v: version,
        };
        let mut bytes = serde_json::to_vec(&body).expect("json");
        if self.encrypted {
            use aes_gcm::aead::AeadInPlace as _;
            let nonce: [u8; 12] = random_id()[..12].try_into().expect("12 bytes");
            let tag = self
                .aead
                .encrypt_in_place_detached(&nonce.into(), b"sessionid", &mut bytes)
                .expect("encrypt");
            let mut out = Vec::with_capacity(12 + bytes.len() + 16);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&bytes);
            out.extend_from_slice(&tag);
            URL_SAFE_NO_PAD.encode(out)
        } else {
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("key");
            mac.update(&bytes);
            bytes.extend_from_slice(&mac.finalize().into_bytes());
            URL_SAFE_NO_PAD.encode(bytes)
        }
    }
    fn decode(&self, token: &str) -> u64 {
        let mut bytes = URL_SAFE_NO_PAD.decode(token).expect("base64");
        let json: &[u8] = if self.encrypted {
            use aes_gcm::aead::AeadInPlace as _;
            let (nonce, rest) = bytes.split_at_mut(12);
            let (body, tag) = rest.split_at_mut(rest.len() - 16);
            let nonce: [u8; 12] = (&*nonce).try_into().expect("nonce");
            let tag: [u8; 16] = (&*tag).try_into().expect("tag");
            self.aead
                .decrypt_in_place_detached(&nonce.into(), b"sessionid", body, &tag.into())
                .expect("decrypt");
            body
        } else {
            let (body, tag) = bytes.split_at(bytes.len() - 32);
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("key");
            mac.update(body);
            mac.verify_slice(tag).expect("verify");
            body
        };
        let body: CookieBody<'_> = serde_json::from_slice(json).expect("json");
        // An owned map, as a store hands out.
        let data: Data = body.d.into_owned();
        assert!(!data.is_empty());
        body.v
    }
}

impl Subject for RawCookie {
    type H = (String, u64);
    async fn create(&self) -> Self::H {
        (self.encode(1), 1)
    }
    async fn load(&self, h: &Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
    }
    async fn save(&self, h: &mut Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
        h.1 += 1;
        h.0 = self.encode(h.1);
    }
    async fn touch(&self, h: &mut Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
        h.0 = self.encode(h.1);
    }
    async fn delete(&self, _h: Self::H) {}
}

// ---------------------------------------------------------------------------------------
// Peers.

// tower-sessions 0.15 itself (its MemoryStore); the 0.14-trait stores are in `ts_peer`.
ts_peer!(TowerSessions15, tower_sessions);

/// An actix-session store: `save` creates, `update` saves, `update_ttl` touches.
pub(crate) struct Actix<S> {
    store: S,
    state: HashMap<String, String>,
}

impl<S> Actix<S> {
    pub(crate) fn new(store: S, size: Size) -> Self {
        Self {
            store,
            state: size
                .data()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        }
    }
}

fn actix_ttl() -> time::Duration {
    time::Duration::days(1)
}

macro_rules! actix_peer {
    ($store:ty) => {
        impl Subject for Actix<$store> {
            type H = actix_session::storage::SessionKey;
            async fn create(&self) -> Self::H {
                use actix_session::storage::SessionStore as _;
                self.store
                    .save(self.state.clone(), &actix_ttl())
                    .await
                    .expect("create")
            }
            async fn load(&self, h: &Self::H) {
                use actix_session::storage::SessionStore as _;
                let r = self.store.load(h).await.expect("load");
                assert!(r.is_some(), "session missing");
            }
            async fn save(&self, h: &mut Self::H) {
                use actix_session::storage::SessionStore as _;
                let key = actix_session::storage::SessionKey::try_from(h.as_ref().to_owned())
                    .expect("key");
                *h = self
                    .store
                    .update(key, self.state.clone(), &actix_ttl())
                    .await
                    .expect("save");
            }
            async fn touch(&self, h: &mut Self::H) {
                use actix_session::storage::SessionStore as _;
                self.store.update_ttl(h, &actix_ttl()).await.expect("touch");
            }
            async fn delete(&self, h: Self::H) {
                use actix_session::storage::SessionStore as _;
                self.store.delete(&h).await.expect("delete");
            }
        }
    };
}

actix_peer!(actix_session::storage::CookieSessionStore);
actix_peer!(Arc<actix_session::storage::RedisSessionStore>);

// ---------------------------------------------------------------------------------------
// Which subjects run for which store.

/// Every store, in the order they run and appear in the report.
pub(crate) const NAMES: [&str; 13] = [
    "memory",
    "moka",
    "sqlite-file",
    "sqlite-mem",
    "postgres",
    "mysql",
    "redis",
    "redis-cluster",
    "cached-moka-postgres",
    "cached-redis-postgres",
    "file",
    "cookie-signed",
    "cookie-encrypted",
];

async fn sqlite_stores(url: &str) -> (Arc<session_db::SqliteStore>, sqlx::SqlitePool) {
    let ours = session_db::SqliteStore::builder()
        .with_table_name(session_db::TableName::new("bench_ours").expect("name"))
        .connect(url)
        .await
        .expect("sqlite");
    ours.migrate().await.expect("migrate");
    let pool = ours.pool().clone();
    let raw = session_db::SqliteStore::builder()
        .with_table_name(session_db::TableName::new("bench_raw").expect("name"))
        .build(pool.clone());
    raw.migrate().await.expect("migrate");
    for t in ["DELETE FROM bench_ours", "DELETE FROM bench_raw"] {
        sqlx::query(t).execute(&pool).await.expect("clear");
    }
    (Arc::new(ours), pool)
}

async fn postgres(
    url: &str,
    table: &str,
) -> (Arc<session_db::PostgresStore>, sqlx::PgPool, RawPgTable) {
    let ours = session_db::PostgresStore::builder()
        .with_table_name(session_db::TableName::new(table).expect("name"))
        .connect(url)
        .await
        .expect("postgres");
    ours.migrate().await.expect("migrate");
    let pool = ours.pool().clone();
    let raw_table = format!("{table}_raw");
    let raw = session_db::PostgresStore::builder()
        .with_table_name(session_db::TableName::new(&raw_table).expect("name"))
        .build(pool.clone());
    raw.migrate().await.expect("migrate");
    for t in [table, raw_table.as_str()] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
            .execute(&pool)
            .await
            .expect("clear");
    }
    (Arc::new(ours), pool, RawPgTable(raw_table))
}

/// The raw table beside an ours table.
pub(crate) struct RawPgTable(String);

async fn peer_pg(url: &str) -> tower_sessions_sqlx_store::PostgresStore {
    let pool = sqlx_08::PgPool::connect(url)
        .await
        .expect("postgres (sqlx 0.8)");
    let store = tower_sessions_sqlx_store::PostgresStore::new(pool.clone());
    store.migrate().await.expect("migrate");
    sqlx_08::query("DELETE FROM tower_sessions.session")
        .execute(&pool)
        .await
        .expect("clear");
    store
}

async fn fred_pool(url: &str) -> fred::prelude::Pool {
    use fred::prelude::*;
    let config = Config::from_url(url).expect("fred config");
    let pool = Builder::from_config(config)
        .build_pool(4)
        .expect("fred pool");
    pool.init().await.expect("fred connect");
    pool
}

fn push(out: &mut Vec<(Size, Subjects)>, size: Size, subjects: Subjects) {
    out.push((size, subjects));
}

/// The subjects of `store` per size, or `None` when its service is not configured.
pub(crate) async fn build(store: &str) -> Option<Vec<(Size, Subjects)>> {
    let mut out = Vec::new();
    match store {
        "memory" => {
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        (
                            "ours",
                            runner(Ours::new(Arc::new(MemoryStore::new()), size)),
                        ),
                        ("raw", runner(RawMemory::new(size))),
                        (
                            "tower-sessions",
                            runner(TowerSessions15::new(
                                tower_sessions::MemoryStore::default(),
                                size,
                            )),
                        ),
                    ],
                );
            }
        }
        "moka" => {
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        (
                            "ours",
                            runner(Ours::new(session_cache::MokaStore::new(), size)),
                        ),
                        ("raw", runner(RawMoka::new(size))),
                        (
                            "tower-sessions-moka-store",
                            runner(TowerSessions14::new(
                                tower_sessions_moka_store::MokaStore::new(Some(1 << 20)),
                                size,
                            )),
                        ),
                    ],
                );
            }
        }
        "sqlite-file" | "sqlite-mem" => {
            let url = if store == "sqlite-file" {
                let dir = fresh_dir(&file_root().join("sqlite"));
                format!("sqlite://{}", dir.join("bench.db").display())
            } else {
                "sqlite::memory:".to_owned()
            };
            let (ours, pool) = sqlite_stores(&url).await;
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawSqlite::new(pool.clone(), "bench_raw", size)),
                        ),
                    ],
                );
            }
        }
        "postgres" => {
            let url = service_url("SESSION_TEST_POSTGRES_URL", "PostgreSQL")?;
            let (ours, pool, raw) = postgres(&url, "bench_ours").await;
            let peer = peer_pg(&url).await;
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        ("raw", runner(RawPg::new(pool.clone(), &raw.0, size))),
                        (
                            "tower-sessions-sqlx-store",
                            runner(TowerSessions14::new(peer.clone(), size)),
                        ),
                    ],
                );
            }
        }
        "mysql" => {
            let url = service_url("SESSION_TEST_MYSQL_URL", "MySQL/MariaDB")?;
            let ours = session_db::MySqlStore::builder()
                .with_table_name(session_db::TableName::new("bench_ours").expect("name"))
                .connect(&url)
                .await
                .expect("mysql");
            ours.migrate().await.expect("migrate");
            let pool = ours.pool().clone();
            let raw = session_db::MySqlStore::builder()
                .with_table_name(session_db::TableName::new("bench_raw").expect("name"))
                .build(pool.clone());
            raw.migrate().await.expect("migrate");
            for t in ["DELETE FROM bench_ours", "DELETE FROM bench_raw"] {
                sqlx::query(t).execute(&pool).await.expect("clear");
            }
            let peer_pool = sqlx_08::MySqlPool::connect(&url)
                .await
                .expect("mysql (sqlx 0.8)");
            let peer = tower_sessions_sqlx_store::MySqlStore::new(peer_pool.clone());
            peer.migrate().await.expect("migrate");
            sqlx_08::query("DELETE FROM tower_sessions.session")
                .execute(&peer_pool)
                .await
                .expect("clear");
            let ours = Arc::new(ours);
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawMySql::new(pool.clone(), "bench_raw", size)),
                        ),
                        (
                            "tower-sessions-sqlx-store",
                            runner(TowerSessions14::new(peer.clone(), size)),
                        ),
                    ],
                );
            }
        }
        "redis" => {
            let url = service_url("SESSION_TEST_REDIS_URL", "Redis")?;
            let ours = session_cache::RedisStore::builder()
                .prefix("bench:ours:")
                .connect(&url)
                .await
                .expect("redis");
            let conn = redis::Client::open(url.as_str())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let fred = fred_pool(&url).await;
            let actix = actix_session::storage::RedisSessionStore::builder(url.clone())
                .cache_keygen(|k| format!("bench:actix:{k}"))
                .build()
                .await
                .expect("actix redis");
            let ours = Arc::new(ours);
            let actix = Arc::new(actix);
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawRedis::new(conn.clone(), "bench:raw:", size)),
                        ),
                        (
                            "tower-sessions-redis-store",
                            runner(TowerSessions14::new(
                                tower_sessions_redis_store::RedisStore::new(fred.clone()),
                                size,
                            )),
                        ),
                        (
                            "actix-session",
                            runner(Actix::new(Arc::clone(&actix), size)),
                        ),
                    ],
                );
            }
        }
        "redis-cluster" => {
            let urls = service_url("SESSION_TEST_REDIS_CLUSTER_URLS", "Redis Cluster")?;
            let urls: Vec<String> = urls.split(',').map(|s| s.trim().to_owned()).collect();
            let ours = session_cache::RedisStore::builder()
                .prefix("bench:ours:")
                .connect_cluster(urls.clone())
                .await
                .expect("redis cluster");
            let conn = redis::cluster::ClusterClient::new(urls)
                .expect("cluster urls")
                .get_async_connection()
                .await
                .expect("redis cluster");
            let ours = Arc::new(ours);
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawRedis::new(conn.clone(), "bench:raw:", size)),
                        ),
                    ],
                );
            }
        }
        "cached-moka-postgres" | "cached-redis-postgres" => {
            let pg_url = service_url("SESSION_TEST_POSTGRES_URL", "PostgreSQL")?;
            let redis_url = if store == "cached-redis-postgres" {
                Some(service_url("SESSION_TEST_REDIS_URL", "Redis")?)
            } else {
                None
            };
            let (db, pool, raw_table) = postgres(&pg_url, "bench_cached").await;
            let peer_db = peer_pg(&pg_url).await;
            match redis_url {
                None => {
                    for size in Size::ALL {
                        let ours = session_cache::CachedStore::new(
                            session_cache::MokaStore::new(),
                            Arc::clone(&db),
                        );
                        let peer = tower_sessions_core_014::session_store::CachingSessionStore::new(
                            tower_sessions_moka_store::MokaStore::new(Some(1 << 20)),
                            peer_db.clone(),
                        );
                        push(
                            &mut out,
                            size,
                            vec![
                                ("ours", runner(Ours::new(ours, size))),
                                (
                                    "raw",
                                    runner(RawCached::new(
                                        RawPg::new(pool.clone(), &raw_table.0, size),
                                        RawCache::Moka(RawMoka::new(size)),
                                    )),
                                ),
                                (
                                    "tower-sessions-caching",
                                    runner(TowerSessions14::new(peer, size)),
                                ),
                            ],
                        );
                    }
                }
                Some(url) => {
                    let cache = session_cache::RedisStore::builder()
                        .prefix("bench:cached:")
                        .connect(&url)
                        .await
                        .expect("redis");
                    let conn = redis::Client::open(url.as_str())
                        .expect("redis url")
                        .get_multiplexed_async_connection()
                        .await
                        .expect("redis");
                    let fred = fred_pool(&url).await;
                    for size in Size::ALL {
                        let ours = session_cache::CachedStore::new(cache.clone(), Arc::clone(&db));
                        let peer = tower_sessions_core_014::session_store::CachingSessionStore::new(
                            tower_sessions_redis_store::RedisStore::new(fred.clone()),
                            peer_db.clone(),
                        );
                        push(
                            &mut out,
                            size,
                            vec![
                                ("ours", runner(Ours::new(ours, size))),
                                (
                                    "raw",
                                    runner(RawCached::new(
                                        RawPg::new(pool.clone(), &raw_table.0, size),
                                        RawCache::Redis(RawRedis::new(
                                            conn.clone(),
                                            "bench:rawcached:",
                                            size,
                                        )),
                                    )),
                                ),
                                (
                                    "tower-sessions-caching",
                                    runner(TowerSessions14::new(peer, size)),
                                ),
                            ],
                        );
                    }
                }
            }
        }
        "file" => {
            let ours_dir = fresh_dir(&file_root().join("ours"));
            let raw_dir = fresh_dir(&file_root().join("raw"));
            let ours = Arc::new(session_file::FileStore::open(&ours_dir).expect("file store"));
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        ("raw", runner(RawFile::new(raw_dir.clone(), size))),
                    ],
                );
            }
        }
        "cookie-signed" | "cookie-encrypted" => {
            let encrypted = store == "cookie-encrypted";
            let secret = random_id().repeat(2);
            let builder = if encrypted {
                session_signed_cookie::CookieStore::encrypted(&secret)
            } else {
                session_signed_cookie::CookieStore::signed(&secret)
            };
            let ours = Arc::new(builder.build().expect("cookie store"));
            // A 10 KiB record does not fit in a cookie: 1 KiB only.
            let size = Size::K1;
            push(
                &mut out,
                size,
                vec![
                    ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                    ("raw", runner(RawCookie::new(encrypted, size))),
                    (
                        "actix-session",
                        runner(Actix::new(
                            actix_session::storage::CookieSessionStore::default(),
                            size,
                        )),
                    ),
                ],
            );
        }
        _ => return None,
    }
    Some(out)
}
