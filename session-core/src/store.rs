//! The `Store` contract every backend implements.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{Record, Result, SessionKey};

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
///
/// The trait is dyn-compatible: applications hold an `Arc<dyn Store>` chosen at run time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `record` under a fresh key and returns that key; the stored version is 1
    /// whatever `record.version` says.
    ///
    /// The store generates the key itself (a client-side store derives it from the data)
    /// and MUST retry on collision: `create` never replaces another session.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`](crate::Error::TooLarge) when the record exceeds what the store
    /// keeps; backend errors.
    async fn create(&self, record: &Record) -> Result<SessionKey>;

    /// The record stored under `key`, or `None` when it is absent, expired, malformed or
    /// unreadable.
    ///
    /// # Errors
    ///
    /// Backend errors only; never for a key the store does not know.
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>>;

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

    /// Removes the record under `key`. Idempotent: deleting an absent key succeeds.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn delete(&self, key: &SessionKey) -> Result<()>;

    /// Removes every expired record and returns how many it removed (Django's
    /// `clearsessions`). Stores whose medium expires records by itself return 0.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn clear_expired(&self) -> Result<u64>;

    /// What this store can and cannot do; the manager and the conformance suite read it.
    fn capabilities(&self) -> Capabilities;
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
}

impl Capabilities {
    /// A server-side store whose expired records `clear_expired` removes.
    #[must_use]
    pub const fn server_side() -> Self {
        Self {
            server_side: true,
            expires_by_itself: false,
        }
    }

    /// A client-side store: the data travels in the cookie.
    #[must_use]
    pub const fn client_side() -> Self {
        Self {
            server_side: false,
            expires_by_itself: true,
        }
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
}
