//! The `Store` contract every backend implements.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{Error, Record, Result, SessionKey};

/// Where sessions live: a database table, a cache, a directory, or the cookie itself.
///
/// Implementations MUST follow this contract; the
/// [conformance suite](crate#the-conformance-suite) checks every sentence of it.
///
/// - Keys are untrusted input. A server-side store MUST refuse, without any I/O, every
///   key that is not of the [generated shape](SessionKey::is_generated_shape): `load`
///   answers `None`, `delete` does nothing, `save` and `touch` fail with
///   [`Error::InvalidKey`](crate::Error::InvalidKey).
/// - A server-side store MUST persist [`SessionKey::storage_id`], never the key itself (a
///   store that keeps sessions only in this process's memory may index by
///   [`SessionKey::generated_bytes`] instead: nothing of it can leak as a dump).
/// - A record whose `expires_at` has passed MUST behave exactly like an absent one.
/// - A stored payload that cannot be decoded MUST load as `None` (the store logs it with
///   the hashed id and removes it); a medium that cannot be reached MUST be an
///   [`Error::Backend`](crate::Error::Backend) or [`Error::Timeout`](crate::Error::Timeout),
///   never `None`, so a session that could not be read is never overwritten by an empty one.
/// - No method may panic on any input.
/// - A server-side store that [remembers ended sessions](Capabilities::remembers_ended)
///   keeps, after [`end`](Self::end), an *ended marker* under the key until the instant
///   `end` was given: [`lookup`](Self::lookup) answers [`Lookup::Ended`] for it, and
///   `load`, `save` and `touch` treat it as absent. The marker holds no data.
///
/// The trait is dyn-compatible: applications hold an `Arc<dyn Store>` chosen at run time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `record` under a fresh key and returns that key; the stored version is 1
    /// whatever `record.version` says.
    ///
    /// The store generates the key itself (a client-side store derives it from the data)
    /// with [`SessionKey::generate`]. `create` MUST NOT replace another session, live or
    /// ended: on a collision it draws another key, at most [`CREATE_ATTEMPTS`] keys in
    /// all, each collision logged at `warn` (it is a security signal), and then fails with
    /// [`Error::KeyCollision`](crate::Error::KeyCollision), leaving every record as it was.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`](crate::Error::TooLarge) when the record exceeds what the store
    /// keeps; [`Error::KeyCollision`](crate::Error::KeyCollision); backend errors.
    async fn create(&self, record: &Record) -> Result<SessionKey>;

    /// The record stored under `key`, or `None` when it is absent, expired, malformed or
    /// unreadable.
    ///
    /// # Errors
    ///
    /// Backend errors only; never for a key the store does not know.
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>>;

    /// What is stored under `key`: a live record, a session [ended](Self::end) moments
    /// ago whose marker is still kept, or nothing (absent, expired, malformed key or
    /// unreadable record, as for [`load`](Self::load)).
    ///
    /// The default answers from `load` and never says [`Lookup::Ended`]: right for a store
    /// that does not [remember ended sessions](Capabilities::remembers_ended).
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        Ok(self.load(key).await?.map_or(Lookup::Absent, Lookup::Live))
    }

    /// Compare-and-set: replaces the record under `key` only if the stored version equals
    /// `record.version`, and stores `version + 1`. Returns the key the client holds from
    /// now on (the same key for server-side stores, a new token for cookie stores).
    ///
    /// # Errors
    ///
    /// - [`Error::Conflict`](crate::Error::Conflict) when the stored version differs;
    /// - [`Error::NotFound`](crate::Error::NotFound) when the key is missing or expired: a
    ///   deleted session MUST NOT be resurrected;
    /// - [`Error::InvalidKey`](crate::Error::InvalidKey), [`Error::TooLarge`](crate::Error::TooLarge),
    ///   backend errors.
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey>;

    /// Moves only the expiry of the record under `key` (rolling sessions), leaving data and
    /// version as they are. Returns the key the client holds from now on.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) when the key is missing or expired;
    /// [`Error::InvalidKey`](crate::Error::InvalidKey); backend errors.
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey>;

    /// Ends the session under `key` if, and only if, its stored version is `version`: the
    /// conditional transition behind logout and key rotation, atomic on the medium (one
    /// statement, one script, one locked file operation).
    ///
    /// A store that [remembers ended sessions](Capabilities::remembers_ended) replaces the
    /// record by an ended marker kept until `remember_until` (see
    /// [`lookup`](Self::lookup)); one that does not removes it. A store without server-side
    /// records (a cookie store) has nothing to end and succeeds.
    ///
    /// Of two calls for the same `(key, version)` at most one succeeds: the other finds the
    /// session ended.
    ///
    /// # Errors
    ///
    /// - [`Error::Conflict`](crate::Error::Conflict) when the stored version differs (the
    ///   record is left as it is);
    /// - [`Error::NotFound`](crate::Error::NotFound) when the key is missing, expired or
    ///   already ended;
    /// - [`Error::InvalidKey`](crate::Error::InvalidKey); backend errors.
    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()>;

    /// Removes the record (or ended marker) under `key` unconditionally: an operator's
    /// tool, not part of the request lifecycle, which uses [`end`](Self::end). Idempotent:
    /// deleting an absent key succeeds.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn delete(&self, key: &SessionKey) -> Result<()>;

    /// Removes every expired record, and every ended marker past its `remember_until`, and
    /// returns how many records it removed (Django's `clearsessions`). Stores whose medium
    /// expires records by itself return 0.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn clear_expired(&self) -> Result<u64>;

    /// What this store can and cannot do; the manager and the conformance suite read it.
    fn capabilities(&self) -> Capabilities;

    /// Whether `key` could be a key of this store at all, decided without I/O: a
    /// server-side store issues only keys of the [generated
    /// shape](SessionKey::is_generated_shape), which is the default. The manager skips
    /// other values of the session cookie without asking the store, and removes a cookie
    /// that holds none it could know.
    fn recognizes(&self, key: &SessionKey) -> bool {
        !self.capabilities().server_side || key.is_generated_shape()
    }

    /// The cookie name a store binds its values to, if it binds one (a cookie store
    /// authenticates the name with the value). It MUST be the
    /// [`SessionConfig::cookie_name`](crate::SessionConfig::cookie_name) the store serves:
    /// [`SessionManager::new`](crate::SessionManager::new) logs an error when they differ.
    /// The default binds none.
    fn cookie_name(&self) -> Option<&str> {
        None
    }
}

/// How many fresh keys [`Store::create`] draws before it gives up with
/// [`Error::KeyCollision`](crate::Error::KeyCollision).
pub const CREATE_ATTEMPTS: u32 = 4;

/// The body of every [`Store::create`]: draws up to [`CREATE_ATTEMPTS`] fresh keys and
/// offers each to `store_under`, which stores the record under it unless the key is taken
/// and answers whether it did. Each collision is logged at `warn` with `store`'s name;
/// when every key was taken the answer is [`Error::KeyCollision`].
///
/// # Errors
///
/// What `store_under` fails with, or [`Error::KeyCollision`].
///
/// # Examples
///
/// ```
/// use session_core::{Error, SessionKey, create_with_fresh_keys};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A medium that answers "taken" to everything: create gives up, it does not loop.
/// let got = create_with_fresh_keys("example", |_key: SessionKey| async { Ok(false) }).await;
/// assert!(matches!(got, Err(Error::KeyCollision { attempts: 4, .. })));
/// # }
/// ```
pub async fn create_with_fresh_keys<F, Fut>(
    store: &'static str,
    mut store_under: F,
) -> Result<SessionKey>
where
    F: FnMut(SessionKey) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    for attempt in 1..=CREATE_ATTEMPTS {
        let key = SessionKey::generate();
        let id = key.storage_id();
        if store_under(key.clone()).await? {
            return Ok(key);
        }
        tracing::warn!(
            store,
            session = %id.short(),
            attempt,
            "a freshly generated session key was already taken; drawing another"
        );
    }
    Err(Error::KeyCollision {
        store,
        attempts: CREATE_ATTEMPTS,
    })
}

/// What [`Store::lookup`] found under a key.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Lookup {
    /// A live record.
    Live(Record),
    /// The session was [ended](Store::end) (logged out, or its key rotated) moments ago,
    /// and the store still remembers it: a request holding this key must get no data,
    /// create nothing and leave the cookie alone, because a concurrent request of the same
    /// browser has just set the cookie that counts.
    Ended,
    /// Nothing: never stored, expired, forgotten, or unreadable.
    Absent,
}

impl Lookup {
    /// The live record, if any.
    #[must_use]
    pub fn into_live(self) -> Option<Record> {
        match self {
            Self::Live(r) => Some(r),
            Self::Ended | Self::Absent => None,
        }
    }
}

/// What a [`Store`] can do, for the manager and the conformance suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Sessions live on the server: `delete` revokes a session, `save` detects conflicts
    /// and keys have the generated shape. `false` for a store whose data travels in the
    /// cookie: it cannot revoke a cookie the client keeps.
    pub server_side: bool,
    /// The medium removes expired records by itself (a TTL), so `clear_expired` has
    /// nothing to do and may report fewer removals than there were expired records.
    pub expires_by_itself: bool,
    /// [`Store::end`] leaves an ended marker that [`Store::lookup`] reports as
    /// [`Lookup::Ended`] until the instant given to `end`: requests still holding a key
    /// that was rotated or logged out moments ago are recognised and leave the cookie a
    /// concurrent request set alone. Every server-side store of this family does.
    pub remembers_ended: bool,
}

impl Capabilities {
    /// A server-side store whose expired records `clear_expired` removes.
    #[must_use]
    pub const fn server_side() -> Self {
        Self {
            server_side: true,
            expires_by_itself: false,
            remembers_ended: true,
        }
    }

    /// A client-side store: the data travels in the cookie.
    #[must_use]
    pub const fn client_side() -> Self {
        Self {
            server_side: false,
            expires_by_itself: true,
            remembers_ended: false,
        }
    }

    /// Sets [`remembers_ended`](Self::remembers_ended).
    #[must_use]
    pub const fn with_remembers_ended(mut self, yes: bool) -> Self {
        self.remembers_ended = yes;
        self
    }

    /// Sets [`expires_by_itself`](Self::expires_by_itself).
    #[must_use]
    pub const fn with_expires_by_itself(mut self, yes: bool) -> Self {
        self.expires_by_itself = yes;
        self
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        (**self).create(record).await
    }
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        (**self).load(key).await
    }
    async fn lookup(&self, key: &SessionKey) -> Result<Lookup> {
        (**self).lookup(key).await
    }
    async fn end(
        &self,
        key: &SessionKey,
        version: u64,
        remember_until: OffsetDateTime,
    ) -> Result<()> {
        (**self).end(key, version, remember_until).await
    }
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        (**self).save(key, record).await
    }
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        (**self).touch(key, expires_at).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<()> {
        (**self).delete(key).await
    }
    async fn clear_expired(&self) -> Result<u64> {
        (**self).clear_expired().await
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn recognizes(&self, key: &SessionKey) -> bool {
        (**self).recognizes(key)
    }
    fn cookie_name(&self) -> Option<&str> {
        (**self).cookie_name()
    }
}
