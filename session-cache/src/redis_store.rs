//! `RedisStore`: sessions in Redis (standalone or Cluster), expiring by Redis's own TTL.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Script, ServerErrorKind};
use session_core::{
    Capabilities, Error, FrameHeader, Lookup, Record, Result, SessionKey, StorageId, Store,
    create_with_fresh_keys, unix_millis,
};
use time::OffsetDateTime;

use crate::{RedisPrefix, SessionCache};

const STORE: &str = "redis";

/// The key prefix a [`RedisStore`] uses unless told otherwise (see [`RedisPrefix`]).
pub const DEFAULT_REDIS_PREFIX: &str = "session:";

/// What a cache tombstone holds: three bytes that are not a record header.
const TOMBSTONE: &[u8] = b"SR\x00";

// Every script reads only the 19-byte header (GETRANGE), so a large record is never copied
// into Lua. A header is a record when it starts with "SR\1", its version is not 0 (version
// 0 is an ended marker) and its `expires_at` is after the caller's `now`: the application's
// clock decides expiry, Redis's clock only runs the relative TTL (`PX`/`PEXPIRE`) that
// removes the key. A TTL argument of "0" means the new value has already expired: the key
// is deleted instead of written.

/// Compare-and-replace, behind both `save` and `end`. KEYS[1]: the session; ARGV: the
/// expected version (8 bytes, big endian), the new value (a framed record for `save`, an
/// ended marker for `end`), its TTL in milliseconds, now (Unix milliseconds). Returns 1
/// (replaced), 0 (missing, expired, ended or not a record), 2 (the stored version differs).
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local h = redis.call('GETRANGE', KEYS[1], 0, 18)
if string.len(h) ~= 19 or string.sub(h, 1, 3) ~= 'SR\1' then return 0 end
local v, e = struct.unpack('>I8i8', h, 4)
if v == 0 or e <= tonumber(ARGV[4]) then return 0 end
if string.sub(h, 4, 11) ~= ARGV[1] then return 2 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1",
    )
});

/// Moves a record's expiry: rewrites the `expires_at` of its header (SETRANGE) and its TTL
/// (PEXPIRE; a TTL of "0" deletes the key). KEYS[1]: the session; ARGV: the new expiry
/// (8 bytes, big endian), the same in decimal milliseconds, its TTL in milliseconds, "1"
/// to move only forward (the cache's `extend`), now (Unix milliseconds). Returns 1 (moved)
/// or 0 (not a live record, or an earlier instant when moving only forward).
static MOVE_EXPIRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local h = redis.call('GETRANGE', KEYS[1], 0, 18)
if string.len(h) ~= 19 or string.sub(h, 1, 3) ~= 'SR\1' then return 0 end
local v, e = struct.unpack('>I8i8', h, 4)
if v == 0 or e <= tonumber(ARGV[5]) then return 0 end
if ARGV[4] == '1' and e > tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SETRANGE', KEYS[1], 11, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1",
    )
});

/// The cache's conditional put. KEYS[1]: the session; ARGV: version and expiry (decimal),
/// the framed record, its TTL in milliseconds. Refuses (0) under a cache tombstone, over an
/// ended marker, or when the cached record's `(version, expires_at)` is at least the new
/// one; otherwise writes it (1), or, when the record has already expired, deletes the older
/// copy (0).
static PUT_IF_NEWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local h = redis.call('GETRANGE', KEYS[1], 0, 18)
if h == 'SR\0' then return 0 end
if string.len(h) == 19 and string.sub(h, 1, 3) == 'SR\1' then
  local v, e = struct.unpack('>I8i8', h, 4)
  if v == 0 then return 0 end
  local nv, ne = tonumber(ARGV[1]), tonumber(ARGV[2])
  if v > nv or (v == nv and e >= ne) then return 0 end
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
redis.call('DEL', KEYS[1])
return 0",
    )
});

/// Sessions in Redis, standalone or on a Redis Cluster.
///
/// - **Keys**: the configured [`RedisPrefix`] (default [`DEFAULT_REDIS_PREFIX`]) followed by the
///   64 hex characters of [`SessionKey::storage_id`]; the key itself never reaches Redis.
/// - **Values**: the record in the core's [framed](Record::encode_framed) form (version and
///   `expires_at` in a 19-byte header, then the JSON payload), so `load` is one `GET`.
/// - **Expiry** is Redis's own, on one clock: every write sends a *relative* TTL (`PX`,
///   `PEXPIRE`: `expires_at` minus now, on this process's clock), never an absolute
///   instant that Redis would read on its own, possibly different, clock. The header keeps
///   `expires_at`, which this process checks on every read and script. Redis drops expired
///   sessions, so `clear_expired` returns 0.
/// - `create` is `SET … PX … NX` through [`create_with_fresh_keys`] (at most
///   [`CREATE_ATTEMPTS`](session_core::CREATE_ATTEMPTS) keys); `save` and `end` are one Lua
///   script (sent as `EVALSHA`, loaded on `NOSCRIPT`) that compares the stored version and
///   replaces the value: by the new record for `save`, by an
///   [ended marker](Record::encode_ended_marker) kept until `remember_until` for `end`;
///   `touch` is one script that rewrites the header's expiry and `PEXPIRE`s the key;
///   `lookup` and `load` are one `GET`; `delete` is `DEL`.
/// - Every operation is one round trip touching one key, so it runs unchanged on a Cluster.
/// - The connection is one multiplexed, auto-reconnecting connection
///   ([`ConnectionManager`], or the cluster connection): requests of every task are
///   pipelined on it, and a clone of the store shares it.
/// - Every operation is bounded by the configured timeouts: while Redis is unreachable
///   operations fail with [`Error::Backend`] or [`Error::Timeout`], never hang, and the
///   store reconnects by itself when Redis is back.
/// - **Replicas.** Redis replicates asynchronously, so by default a logout acknowledged by
///   the primary can be lost by a failover. With
///   [`with_wait_for_replicas`](RedisStoreBuilder::with_wait_for_replicas), `end` and `delete`
///   also send `WAIT` (in one pipeline with the write, on a connection of their own) and
///   fail with a [`NotReplicated`] backend error when too few replicas acknowledged.
///
/// It is also a [`SessionCache`] for [`CachedStore`](crate::CachedStore); as a cache, an
/// entry's TTL is its staleness bound when one is given (the header keeps the session's
/// real expiry).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use session_cache::{RedisPrefix, RedisStore};
/// use session_core::{Record, Store};
/// use time::OffsetDateTime;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder()
///     .with_prefix(RedisPrefix::new("myapp:session:")?)
///     .with_response_timeout(Duration::from_millis(500))
///     .connect("redis://127.0.0.1:6379/")
///     .await?;
/// let record = Record::new(Default::default(), OffsetDateTime::now_utc() + time::Duration::hours(1));
/// let key = store.create(&record).await?;
/// assert_eq!(store.load(&key).await?.map(|r| r.version), Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    prefix: RedisPrefix,
    /// Upper bound of one operation: a reconnect plus a command.
    deadline: Duration,
    response_timeout: Duration,
    /// With [`RedisStoreBuilder::with_wait_for_replicas`]: where and how session-ending writes
    /// wait for replicas. `None` (the default) costs one branch per `end` and `delete`.
    durable: Option<Durable>,
}

/// Session-ending writes made durable on replicas: each goes out on `conn`, a connection
/// of its own, as a pipeline of the write and `WAIT replicas timeout_ms`.
struct Durable {
    /// Kept apart from the main connection: a `WAIT` blocks its connection on the server
    /// until the replicas answer, and loads and saves must not queue behind it.
    conn: Conn,
    replicas: u32,
    /// The `WAIT` timeout as configured (at least 1 ms: Redis reads 0 as "forever").
    timeout: Duration,
    timeout_ms: u64,
    /// Upper bound of one waiting write: a reconnect, the command and the `WAIT`.
    deadline: Duration,
}

impl Durable {
    /// `Ok` when at least the configured number of replicas acknowledged the write.
    fn confirm(&self, id: &StorageId, acknowledged: u32) -> Result<()> {
        if acknowledged >= self.replicas {
            return Ok(());
        }
        let e = NotReplicated {
            acknowledged,
            wanted: self.replicas,
            timeout: self.timeout,
        };
        tracing::warn!(session = %id.short(), error = %e, "a session-ending write was not confirmed by enough replicas");
        Err(Error::backend(STORE, e))
    }
}

/// Why a session-ending write failed under [`RedisStoreBuilder::with_wait_for_replicas`]: the
/// primary applied it, but fewer replicas than configured acknowledged it within the
/// timeout, so a failover to a replica that missed it could bring the session back. It is
/// the [`source`](std::error::Error::source) of the [`Error::Backend`] the operation fails
/// with (find it with `downcast_ref`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotReplicated {
    /// How many replicas acknowledged the write.
    pub acknowledged: u32,
    /// How many the store was configured to wait for.
    pub wanted: u32,
    /// How long `WAIT` waited.
    pub timeout: Duration,
}

impl std::fmt::Display for NotReplicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the primary ended the session but only {} of {} replicas acknowledged it within {:?}; \
             a failover could bring it back",
            self.acknowledged, self.wanted, self.timeout
        )
    }
}

impl std::error::Error for NotReplicated {}

#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Configures and connects a [`RedisStore`]: the same builder picks standalone Redis
/// ([`connect`](Self::connect)) or a Redis Cluster ([`connect_cluster`](Self::connect_cluster)).
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: RedisPrefix,
    connect_timeout: Duration,
    response_timeout: Duration,
    wait: Option<(u32, Duration)>,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: RedisPrefix::default(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            wait: None,
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key this store writes (default [`DEFAULT_REDIS_PREFIX`];
    /// [`RedisPrefix`] says which prefixes are accepted). Stores with different prefixes
    /// never see each other's sessions.
    pub fn with_prefix(mut self, prefix: RedisPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// How long one connection attempt may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long Redis may take to answer one command (default 1 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Makes the writes that end a session durable on replicas: after every
    /// [`end`](Store::end) (logout, and the old key of a rotation) and every
    /// [`delete`](Store::delete) that changed something, the store sends
    /// `WAIT replicas timeout` and fails with [`Error::Backend`] (its source a
    /// [`NotReplicated`]) when fewer than `replicas` replicas acknowledged the write in
    /// time. The session is then never reported as ended while a failover could bring it
    /// back: the manager answers a server error instead of removing the cookie. Off by
    /// default (one Redis without replicas); `replicas = 0` turns it off.
    ///
    /// Redis replicates asynchronously: without this, a primary that fails over before its
    /// replica received the write revives the ended session, and its old cookie works
    /// again. With it, a failover to any replica that acknowledged keeps the session ended
    /// (Sentinel and Cluster prefer the most up-to-date replica when they promote one). It does not protect
    /// against restoring an RDB/AOF snapshot taken before the write.
    ///
    /// **Cost.** Each `end` and `delete` waits for the acknowledgements: about one round
    /// trip between the primary and its replicas on a healthy link, in the same request
    /// (the write and the `WAIT` go out as one pipeline). They go out on a connection of
    /// their own (one more per process, per node on a Cluster), because a `WAIT` holds its
    /// connection on the server until it returns: loads and saves never queue behind it,
    /// ending writes queue behind each other. `WAIT` counts every earlier write of that
    /// connection, so a write may wait for the acknowledgement of another session's end
    /// too: conservative, never wrong. While replicas are down or lagging every logout
    /// takes `timeout` and then fails, and under many concurrent logouts the later ones
    /// fail with [`Error::Timeout`]; nothing is then reported as ended. Set it only where
    /// the primary has at least `replicas` replicas.
    ///
    /// **Bound.** A waiting operation takes at most connect timeout + response timeout +
    /// `timeout` (a `timeout` of zero is taken as 1 ms: Redis reads 0 as "wait forever").
    /// Other operations keep their own bound.
    pub fn with_wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some((replicas, timeout.max(Duration::from_millis(1))));
        self
    }

    /// Connects to a standalone Redis server (`redis://[user:password@]host:port/db`, or
    /// `rediss://` with a TLS feature of the `redis` crate).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] for an invalid URL or an unreachable server,
    /// [`Error::Timeout`] when connecting takes longer than the configured timeouts.
    pub async fn connect(self, url: &str) -> Result<RedisStore> {
        let store = self.connect_lazy(url)?;
        store.query::<()>(&redis::cmd("PING")).await?;
        Ok(store)
    }

    /// A store on a standalone Redis server that connects on first use: no I/O here, so it
    /// also builds while Redis is down (operations then fail until it is up). Call it
    /// inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] for an invalid URL.
    pub fn connect_lazy(self, url: &str) -> Result<RedisStore> {
        let client = redis::Client::open(url).map_err(|e| Error::backend(STORE, e))?;
        let manager = |response_timeout: Duration| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(response_timeout))
                // Few, quick retries: the operation's own deadline bounds the wait, and
                // the next operation after a failed reconnect starts a fresh one.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(200));
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map(Conn::Standalone)
                .map_err(|e| Error::backend(STORE, e))
        };
        let conn = manager(self.response_timeout)?;
        let durable = match self.wait {
            Some((_, timeout)) => Some(manager(self.response_timeout.saturating_add(timeout))?),
            None => None,
        };
        Ok(self.build(conn, durable))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] for invalid URLs or an unreachable cluster, [`Error::Timeout`]
    /// when connecting takes longer than the configured timeouts.
    #[cfg(feature = "cluster")]
    pub async fn connect_cluster<I>(self, urls: I) -> Result<RedisStore>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        if urls.is_empty() {
            return Err(Error::backend(STORE, "no Redis Cluster node given"));
        }
        let conn = self
            .cluster_connection(&urls, self.response_timeout)
            .await?;
        let durable = match self.wait {
            Some((_, timeout)) => Some(
                self.cluster_connection(&urls, self.response_timeout.saturating_add(timeout))
                    .await?,
            ),
            None => None,
        };
        Ok(self.build(conn, durable))
    }

    /// A cluster connection (one multiplexed connection per node) whose commands may take
    /// `response_timeout`.
    #[cfg(feature = "cluster")]
    async fn cluster_connection(
        &self,
        urls: &[String],
        response_timeout: Duration,
    ) -> Result<Conn> {
        let client = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .connection_timeout(self.connect_timeout)
            .response_timeout(response_timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()
            .map_err(|e| Error::backend(STORE, e))?;
        let deadline = self
            .connect_timeout
            .saturating_mul(2)
            .saturating_add(self.response_timeout);
        match tokio::time::timeout(deadline, client.get_async_connection()).await {
            Ok(Ok(conn)) => Ok(Conn::Cluster(conn)),
            Ok(Err(e)) => Err(Error::backend(STORE, e)),
            Err(_) => Err(Error::Timeout {
                store: STORE,
                after: deadline,
            }),
        }
    }

    fn build(self, conn: Conn, durable: Option<Conn>) -> RedisStore {
        let deadline = self.connect_timeout.saturating_add(self.response_timeout);
        let durable = durable
            .zip(self.wait)
            .map(|(conn, (replicas, timeout))| Durable {
                conn,
                replicas,
                timeout,
                timeout_ms: u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    // Redis keeps the timeout in a signed 64-bit integer.
                    .min(u64::try_from(i64::MAX).unwrap_or(u64::MAX)),
                deadline: deadline.saturating_add(timeout),
            });
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                prefix: self.prefix,
                deadline,
                response_timeout: self.response_timeout,
                durable,
            }),
        }
    }
}

impl RedisStore {
    /// A builder with the default prefix and timeouts.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Connects to a standalone Redis server with the default settings.
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().connect(url).await
    }

    /// The prefix of every Redis key this store writes.
    #[must_use]
    pub fn prefix(&self) -> &RedisPrefix {
        &self.inner.prefix
    }

    /// The Redis key of the session `key`: the prefix followed by the hex storage id.
    #[must_use]
    pub fn redis_key(&self, key: &SessionKey) -> Vec<u8> {
        let mut hex = [0u8; 64];
        let prefix = self.inner.prefix.as_bytes();
        let mut out = Vec::with_capacity(prefix.len() + 64);
        out.extend_from_slice(prefix);
        out.extend_from_slice(key.storage_id().encode_hex(&mut hex).as_bytes());
        out
    }

    /// Appends the Redis key of `id` to `cmd` without a heap allocation (a valid prefix
    /// always fits the stack buffer).
    fn key_arg(&self, cmd: &mut Cmd, id: &StorageId) {
        let prefix = self.inner.prefix.as_bytes();
        let mut hex = [0u8; 64];
        let hex = id.encode_hex(&mut hex).as_bytes();
        let mut buf = [0u8; RedisPrefix::MAX_LEN + 64];
        if let Some(slot) = buf.get_mut(..prefix.len() + hex.len()) {
            slot[..prefix.len()].copy_from_slice(prefix);
            slot[prefix.len()..].copy_from_slice(hex);
            cmd.arg(&*slot);
        } else {
            let mut long = Vec::with_capacity(prefix.len() + hex.len());
            long.extend_from_slice(prefix);
            long.extend_from_slice(hex);
            cmd.arg(long);
        }
    }

    /// A command `name KEY` sized for `extra_args` more arguments of `extra_bytes` bytes.
    fn keyed(&self, name: &str, id: &StorageId, extra_args: usize, extra_bytes: usize) -> Cmd {
        let mut cmd = Cmd::with_capacity(
            2 + extra_args,
            name.len() + self.inner.prefix.as_bytes().len() + 64 + extra_bytes,
        );
        cmd.arg(name);
        self.key_arg(&mut cmd, id);
        cmd
    }

    /// `EVALSHA sha 1 KEY`, sized for `extra_args` more arguments of `extra_bytes` bytes.
    fn evalsha(
        &self,
        script: &Script,
        id: &StorageId,
        extra_args: usize,
        extra_bytes: usize,
    ) -> Cmd {
        let mut cmd = Cmd::with_capacity(
            4 + extra_args,
            7 + 40 + 1 + self.inner.prefix.as_bytes().len() + 64 + extra_bytes,
        );
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(1);
        self.key_arg(&mut cmd, id);
        cmd
    }

    /// Runs `cmd` with the operation deadline.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let conn = self.inner.conn.clone();
        self.bounded(self.inner.deadline, conn.query(cmd)).await
    }

    /// Runs a prepared `EVALSHA`; when Redis does not know the script yet (`NOSCRIPT`: a
    /// restart, a new cluster node), loads it and sends the same command again.
    async fn eval<T: FromRedisValue>(&self, script: &Script, cmd: &Cmd) -> Result<T> {
        let conn = self.inner.conn.clone();
        self.bounded(self.inner.deadline, async move {
            match conn.query(cmd).await {
                Err(e) if is_noscript(&e) => {}
                other => return other,
            }
            conn.load(script).await?;
            conn.query(cmd).await
        })
        .await
    }

    /// Runs `cmd` (an `EVALSHA` of `script`, or a plain command) followed by `WAIT` on the
    /// connection kept for session-ending writes, as one pipeline: one round trip, and the
    /// `WAIT` is sure to follow the write on the same connection (after a reconnect in
    /// between, a `WAIT` would count the writes of the fresh connection: none). Answers
    /// the command's reply and how many replicas acknowledged.
    async fn waiting<T: FromRedisValue>(
        &self,
        durable: &Durable,
        script: Option<&Script>,
        cmd: Cmd,
    ) -> Result<(T, u32)> {
        let mut pipe = redis::Pipeline::with_capacity(2);
        pipe.add_command(cmd)
            .cmd("WAIT")
            .arg(durable.replicas)
            .arg(durable.timeout_ms);
        let conn = durable.conn.clone();
        self.bounded(durable.deadline, async move {
            match conn.pipeline(&pipe).await {
                Err(e) if script.is_some() && is_noscript(&e) => {}
                other => return other,
            }
            if let Some(script) = script {
                conn.load(script).await?;
            }
            conn.pipeline(&pipe).await
        })
        .await
    }

    /// Runs `fut` for at most `deadline`; a response timeout of the connection is
    /// reported as such (the waiting connection's includes the `WAIT` timeout).
    async fn bounded<T>(
        &self,
        deadline: Duration,
        fut: impl Future<Output = redis::RedisResult<T>> + Send,
    ) -> Result<T> {
        match tokio::time::timeout(deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(Error::Timeout {
                store: STORE,
                after: self
                    .inner
                    .response_timeout
                    .saturating_add(deadline.saturating_sub(self.inner.deadline)),
            }),
            Ok(Err(e)) => Err(Error::backend(STORE, e)),
            Err(_) => Err(Error::Timeout {
                store: STORE,
                after: deadline,
            }),
        }
    }

    /// What is stored under `id`, judged on this process's clock: a live record, an ended
    /// marker, or nothing (a cache tombstone counts as nothing). Garbage is logged and
    /// removed.
    async fn lookup_id(&self, id: &StorageId) -> Result<Lookup> {
        let cmd = self.keyed("GET", id, 0, 0);
        let Some(bytes) = self.query::<Option<Vec<u8>>>(&cmd).await? else {
            return Ok(Lookup::Absent);
        };
        if bytes == TOMBSTONE {
            return Ok(Lookup::Absent);
        }
        match Lookup::decode_framed(&bytes, OffsetDateTime::now_utc()) {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!(session = %id.short(), error = %e, "undecodable session in Redis; removing it");
                let del = self.keyed("DEL", id, 0, 0);
                if let Err(e) = self.query::<()>(&del).await {
                    tracing::warn!(session = %id.short(), error = %e, "could not remove an undecodable session");
                }
                Ok(Lookup::Absent)
            }
        }
    }

    /// The compare-and-replace script's command: `value` replaces the record under `id`
    /// if its stored version is `version`, for `ttl` (`None`: the value has already
    /// expired, so the record is deleted instead).
    fn replace_cmd(
        &self,
        id: &StorageId,
        version: u64,
        value: &[u8],
        ttl: Option<u64>,
        now: OffsetDateTime,
    ) -> Cmd {
        let mut cmd = self.evalsha(&REPLACE, id, 4, 8 + value.len() + 2 * DECIMAL_LEN);
        cmd.arg(&version.to_be_bytes()[..])
            .arg(value)
            .arg(ttl.unwrap_or(0))
            .arg(non_negative(unix_millis(now)));
        cmd
    }

    /// Runs the compare-and-replace script (see [`replace_cmd`](Self::replace_cmd)).
    async fn replace(
        &self,
        id: &StorageId,
        version: u64,
        value: &[u8],
        ttl: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let cmd = self.replace_cmd(id, version, value, ttl, now);
        replaced(self.eval::<i64>(&REPLACE, &cmd).await?)
    }

    /// Runs the expiry-moving script; `forward_only` refuses earlier instants, and
    /// `serve_for` caps the key's TTL (the cache's staleness bound).
    async fn move_expiry(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        forward_only: bool,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        let cmd = self.move_expiry_cmd(
            id,
            expires_at,
            forward_only,
            serve_for,
            OffsetDateTime::now_utc(),
        );
        Ok(self.eval::<i64>(&MOVE_EXPIRY, &cmd).await? == 1)
    }

    /// The expiry-moving script's command (see [`move_expiry`](Self::move_expiry)), with
    /// TTLs measured from `now`.
    fn move_expiry_cmd(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        forward_only: bool,
        serve_for: Option<Duration>,
        now: OffsetDateTime,
    ) -> Cmd {
        let millis = unix_millis(expires_at);
        let px = bounded_ttl(ttl_millis(expires_at, now), serve_for).unwrap_or(0);
        let mut cmd = self.evalsha(&MOVE_EXPIRY, id, 5, 8 + 3 * DECIMAL_LEN + 1);
        cmd.arg(&millis.to_be_bytes()[..])
            .arg(non_negative(millis))
            .arg(px)
            .arg(if forward_only { "1" } else { "0" })
            .arg(non_negative(unix_millis(now)));
        cmd
    }

    /// `SET KEY value PX px NX`: writes a new session unless the key is taken.
    fn create_cmd(&self, id: &StorageId, value: &[u8], px: u64) -> Cmd {
        let mut cmd = self.keyed("SET", id, 4, value.len() + 2 + DECIMAL_LEN + 2);
        cmd.arg(value).arg("PX").arg(px).arg("NX");
        cmd
    }

    /// The cache's conditional put (see [`PUT_IF_NEWER`]) of `value`, the framed record
    /// of `version` expiring at `expires_millis`, kept for `px` milliseconds.
    fn put_if_newer_cmd(
        &self,
        id: &StorageId,
        version: u64,
        expires_millis: i64,
        value: &[u8],
        px: u64,
    ) -> Cmd {
        let mut cmd = self.evalsha(&PUT_IF_NEWER, id, 4, 3 * DECIMAL_LEN + value.len());
        cmd.arg(version)
            .arg(non_negative(expires_millis))
            .arg(value)
            .arg(px);
        cmd
    }

    /// `SET KEY <tombstone> PX ttl` (at least 1 ms).
    fn tombstone_cmd(&self, id: &StorageId, ttl: Duration) -> Cmd {
        let px = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = self.keyed("SET", id, 3, TOMBSTONE.len() + 2 + DECIMAL_LEN);
        cmd.arg(TOMBSTONE).arg("PX").arg(px);
        cmd
    }
}

impl Conn {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Standalone(c) => cmd.query_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// Sends `pipe` on one connection (on a Cluster, to the node of its first keyed
    /// command).
    async fn pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        match self {
            Self::Standalone(c) => pipe.query_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => pipe.query_async(&mut c.clone()).await,
        }
    }

    async fn load(&self, script: &Script) -> redis::RedisResult<String> {
        match self {
            Self::Standalone(c) => script.load_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => script.load_async(&mut c.clone()).await,
        }
    }
}

impl std::fmt::Debug for RedisStore {
    // The URL may hold a password: it is not kept, and never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.inner.conn {
            Conn::Standalone(_) => "standalone",
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => "cluster",
        };
        let waits_for = self.inner.durable.as_ref().map(|d| (d.replicas, d.timeout));
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.inner.prefix)
            .field("deadline", &self.inner.deadline)
            .field("wait_for_replicas", &waits_for)
            .finish()
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        let value = framed(record, 1)?;
        let ttl = ttl_millis(record.expires_at, OffsetDateTime::now_utc());
        let value = &value[..];
        create_with_fresh_keys(STORE, |key| async move {
            let id = key.storage_id();
            let Some(px) = ttl else {
                // Already expired: nothing to write, but the key must still be free, so
                // that it is never handed out while another session holds it.
                let cmd = self.keyed("EXISTS", &id, 0, 0);
                return Ok(self.query::<i64>(&cmd).await? == 0);
            };
            let cmd = self.create_cmd(&id, value, px);
            // `SET … NX` answers nil when the key exists (a live record or an ended
            // marker): the key is taken.
            Ok(self.query::<Option<()>>(&cmd).await?.is_some())
        })
        .await
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        self.lookup(key).await.map(Lookup::into_live)
    }

    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        if !key.is_generated_shape() {
            return Ok(Lookup::Absent);
        }
        self.lookup_id(&key.storage_id()).await
    }

    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        key.require_generated_shape()?;
        let value = framed(record, record.next_version()?)?;
        let now = OffsetDateTime::now_utc();
        let ttl = ttl_millis(record.expires_at, now);
        self.replace(&key.storage_id(), record.version, &value, ttl, now)
            .await?;
        Ok(key.clone())
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        key.require_generated_shape()?;
        if self
            .move_expiry(&key.storage_id(), expires_at, false, None)
            .await?
        {
            Ok(key.clone())
        } else {
            Err(Error::NotFound)
        }
    }

    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        key.require_generated_shape()?;
        let marker = Record::encode_ended_marker(remember_until);
        let now = OffsetDateTime::now_utc();
        let ttl = ttl_millis(remember_until, now);
        let id = key.storage_id();
        let Some(durable) = &self.inner.durable else {
            return self.replace(&id, version, &marker, ttl, now).await;
        };
        let cmd = self.replace_cmd(&id, version, &marker, ttl, now);
        let (code, acknowledged) = self.waiting::<i64>(durable, Some(&REPLACE), cmd).await?;
        // Only a write that happened needs its replicas: a verdict changed nothing.
        if code == 1 {
            durable.confirm(&id, acknowledged)?;
        }
        replaced(code)
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        if key.is_generated_shape() {
            let id = key.storage_id();
            let cmd = self.keyed("DEL", &id, 0, 0);
            match &self.inner.durable {
                None => self.query::<()>(&cmd).await?,
                Some(durable) => {
                    let (removed, acknowledged) = self.waiting::<u64>(durable, None, cmd).await?;
                    if removed > 0 {
                        durable.confirm(&id, acknowledged)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn clear_expired(&self) -> Result<u64> {
        // Redis removes expired keys, and ended markers past their instant, by itself.
        Ok(0)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side().with_expires_by_itself(true)
    }
}

#[async_trait]
impl SessionCache for RedisStore {
    async fn get(&self, id: &StorageId) -> Result<Option<Record>> {
        self.lookup_id(id).await.map(Lookup::into_live)
    }

    async fn put_if_newer(
        &self,
        id: &StorageId,
        record: &Record,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        let value = framed(record, record.version)?;
        let px = bounded_ttl(
            ttl_millis(record.expires_at, OffsetDateTime::now_utc()),
            serve_for,
        )
        .unwrap_or(0);
        let cmd = self.put_if_newer_cmd(id, record.version, record.expires_at_millis(), &value, px);
        Ok(self.eval::<i64>(&PUT_IF_NEWER, &cmd).await? == 1)
    }

    async fn extend(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        self.move_expiry(id, expires_at, true, serve_for).await
    }

    async fn tombstone(&self, id: &StorageId, ttl: Duration) -> Result<()> {
        let cmd = self.tombstone_cmd(id, ttl);
        self.query::<()>(&cmd).await
    }
}

/// The verdict of the compare-and-replace script: 1 replaced, 2 another version, else
/// nothing live to replace.
fn replaced(code: i64) -> Result<()> {
    match code {
        1 => Ok(()),
        2 => Err(Error::Conflict),
        _ => Err(Error::NotFound),
    }
}

/// Whether Redis answered `NOSCRIPT` (also as the first error of a pipeline).
fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The framed form of `record` with `version`, encoded in a per-thread scratch buffer and
/// copied out once at its exact size.
fn framed(record: &Record, version: u64) -> Result<Vec<u8>> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let encode = |buf: &mut Vec<u8>| -> Result<Vec<u8>> {
        buf.clear();
        FrameHeader {
            version,
            expires_at: record.expires_at,
        }
        .write(buf);
        record.write_payload(buf)?;
        Ok(buf.as_slice().to_vec())
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            let out = encode(&mut buf);
            // Do not keep a huge buffer alive because of one large session.
            if buf.capacity() > 64 << 10 {
                *buf = Vec::new();
            }
            out
        }
        Err(_) => encode(&mut Vec::new()),
    })
}

/// The relative TTL that makes Redis drop a value at `until`, in milliseconds measured
/// on this process's clock (`now`), rounded up so that Redis never drops a value this
/// process still holds live; `None` when `until` is not after `now` (the value has already
/// expired and must not be written). Redis runs the TTL on its own clock, so a skew between
/// the two clocks never shortens or lengthens a session.
fn ttl_millis(until: OffsetDateTime, now: OffsetDateTime) -> Option<u64> {
    if until <= now {
        return None;
    }
    let nanos = (until - now).whole_nanoseconds();
    let millis = (nanos + 999_999) / 1_000_000;
    Some(u64::try_from(millis).unwrap_or(u64::MAX).max(1))
}

/// `ttl` (see [`ttl_millis`]) capped at `bound`, in whole milliseconds rounded down so
/// that the bound is never exceeded; `None` when nothing is left to keep.
fn bounded_ttl(ttl: Option<u64>, bound: Option<Duration>) -> Option<u64> {
    let Some(bound) = bound else {
        return ttl;
    };
    let bound = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    ttl.map(|t| t.min(bound)).filter(|t| *t > 0)
}

/// The longest decimal integer argument (`u64::MAX`), for sizing commands. Redis-rs
/// writes integer arguments in decimal itself.
const DECIMAL_LEN: usize = 20;

/// An instant in Unix milliseconds as a script argument: negative values are sent as 0
/// (every caller passes an instant after the epoch).
fn non_negative(millis: i64) -> u64 {
    u64::try_from(millis).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command built from string arguments, integers written in decimal by hand: the
    /// bytes the store sent before integers were handed to redis-rs.
    fn by_hand(args: &[&[u8]]) -> Vec<u8> {
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.get_packed_command()
    }

    #[tokio::test]
    async fn integer_arguments_are_sent_in_decimal_as_before() {
        let store = RedisStore::builder()
            .with_prefix(RedisPrefix::new("t:").expect("valid prefix"))
            .connect_lazy("redis://127.0.0.1:1/")
            .expect("valid url");
        let key = SessionKey::generate();
        let id = key.storage_id();
        let redis_key = store.redis_key(&key);
        let at = |ms: i64| session_core::from_unix_millis(ms).expect("in range");
        let dec = |n: u64| n.to_string().into_bytes();
        let value = b"SR\x01value";

        for n in [0u64, 1, 9, 10, 120_000, 1_700_000_000_123, u64::MAX] {
            assert_eq!(
                store.create_cmd(&id, value, n).get_packed_command(),
                by_hand(&[b"SET", &redis_key, value, b"PX", &dec(n), b"NX"])
            );
            assert_eq!(
                store
                    .put_if_newer_cmd(&id, n, 1_700_000_000_123, value, n)
                    .get_packed_command(),
                by_hand(&[
                    b"EVALSHA",
                    PUT_IF_NEWER.get_hash().as_bytes(),
                    b"1",
                    &redis_key,
                    &dec(n),
                    b"1700000000123",
                    value,
                    &dec(n),
                ])
            );
            assert_eq!(
                store
                    .replace_cmd(&id, n, value, Some(n), at(1_700_000_000_123))
                    .get_packed_command(),
                by_hand(&[
                    b"EVALSHA",
                    REPLACE.get_hash().as_bytes(),
                    b"1",
                    &redis_key,
                    &n.to_be_bytes(),
                    value,
                    &dec(n),
                    b"1700000000123",
                ])
            );
        }

        // No TTL, and instants before the epoch, go out as 0.
        assert_eq!(
            store
                .replace_cmd(&id, 7, value, None, at(-5))
                .get_packed_command(),
            by_hand(&[
                b"EVALSHA",
                REPLACE.get_hash().as_bytes(),
                b"1",
                &redis_key,
                &7u64.to_be_bytes(),
                value,
                b"0",
                b"0",
            ])
        );
        assert_eq!(
            store
                .put_if_newer_cmd(&id, 3, -5, value, 0)
                .get_packed_command(),
            by_hand(&[
                b"EVALSHA",
                PUT_IF_NEWER.get_hash().as_bytes(),
                b"1",
                &redis_key,
                b"3",
                b"0",
                value,
                b"0",
            ])
        );

        let now = at(1_700_000_000_000);
        let until = at(1_700_000_120_000);
        for (forward_only, serve_for, px, flag) in [
            (false, None, &b"120000"[..], &b"0"[..]),
            (true, Some(Duration::from_secs(5)), b"5000", b"1"),
        ] {
            assert_eq!(
                store
                    .move_expiry_cmd(&id, until, forward_only, serve_for, now)
                    .get_packed_command(),
                by_hand(&[
                    b"EVALSHA",
                    MOVE_EXPIRY.get_hash().as_bytes(),
                    b"1",
                    &redis_key,
                    &1_700_000_120_000i64.to_be_bytes(),
                    b"1700000120000",
                    px,
                    flag,
                    b"1700000000000",
                ])
            );
        }

        for (ttl, px) in [
            (Duration::ZERO, &b"1"[..]),
            (Duration::from_millis(1_500), b"1500"),
            (Duration::MAX, b"18446744073709551615"),
        ] {
            assert_eq!(
                store.tombstone_cmd(&id, ttl).get_packed_command(),
                by_hand(&[b"SET", &redis_key, TOMBSTONE, b"PX", px])
            );
        }
    }

    #[test]
    fn header_offsets_match_the_core_frame() {
        let at = session_core::from_unix_millis(1_800_000_000_000).expect("in range");
        let mut r = Record::new(Default::default(), at);
        r.version = 3;
        let bytes = r.encode_framed().expect("encodes");
        assert_eq!(&bytes[..3], b"SR\x01");
        assert_eq!(&bytes[3..11], &3u64.to_be_bytes());
        assert_eq!(
            // Where the scripts read and SETRANGE the expiry.
            &bytes[11..FrameHeader::LEN],
            &1_800_000_000_000i64.to_be_bytes()
        );
        assert_ne!(TOMBSTONE, &bytes[..3]);
    }

    #[test]
    fn ttls_are_relative_rounded_up_and_absent_once_past() {
        use time::Duration as D;
        let now = OffsetDateTime::now_utc();
        assert_eq!(ttl_millis(now + D::minutes(2), now), Some(120_000));
        assert_eq!(ttl_millis(now + D::microseconds(1_500), now), Some(2));
        assert_eq!(ttl_millis(now + D::nanoseconds(1), now), Some(1));
        assert_eq!(ttl_millis(now, now), None);
        assert_eq!(ttl_millis(now - D::seconds(1), now), None);
        // Measured from the given `now`, whatever the wall clock says.
        let skewed = now - D::minutes(5);
        assert_eq!(ttl_millis(skewed + D::minutes(2), skewed), Some(120_000));
    }

    #[tokio::test]
    async fn debug_shows_no_url() {
        let store = RedisStore::builder()
            .connect_lazy("redis://user:hunter2@127.0.0.1:1/")
            .expect("valid url");
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
