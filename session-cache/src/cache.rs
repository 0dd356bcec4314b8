//! The cache side of [`CachedStore`](crate::CachedStore).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{Record, Result, StorageId};
use time::OffsetDateTime;

/// A cache that [`CachedStore`](crate::CachedStore) puts in front of a database.
///
/// The [`Store`](session_core::Store) trait cannot serve here: it has no "put this record
/// under this key" operation (its `create` picks the key) and no way to order two writes.
/// A `SessionCache` is addressed by [`StorageId`] (the cache never needs the key itself) and
/// orders what it keeps by `(version, expires_at)`, so a slow request can never replace a
/// newer record with an older one.
///
/// Implementations MUST make each operation atomic on its entry:
///
/// - [`get`](Self::get) answers `None` for an absent, expired, undecodable or tombstoned
///   entry;
/// - [`put_if_newer`](Self::put_if_newer) stores `record` only if there is no tombstone and
///   no entry whose `(version, expires_at)` is greater than or equal to the record's;
/// - [`extend`](Self::extend) moves the expiry of a cached record forward, never backward;
/// - an entry written by `put_if_newer` or `extend` with a `serve_for` bound answers `get`
///   for at most that long after the write, then is gone as if it had expired (it may stay
///   in memory, but is never returned and never refuses a put); this is how
///   [`CachedStore::with_max_staleness`](crate::CachedStore::with_max_staleness) bounds how
///   long a copy is served without the database confirming it. The bound must survive the
///   medium's own copies: on Redis it is the key's TTL, which replicas and snapshots keep
///   as an absolute instant, so a copy brought back by a failover or a restore dies at the
///   same instant;
/// - [`tombstone`](Self::tombstone) replaces whatever the entry holds by a marker that makes
///   `get` answer `None` and `put_if_newer` refuse, until `ttl` has passed.
///
/// Errors are [`Error::Backend`](session_core::Error::Backend) or
/// [`Error::Timeout`](session_core::Error::Timeout); `CachedStore` survives them all.
#[async_trait]
pub trait SessionCache: Send + Sync + 'static {
    /// The live record cached under `id`.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn get(&self, id: &StorageId) -> Result<Option<Record>>;

    /// Caches `record` under `id` unless a tombstone or a record at least as new
    /// (compared by `(version, expires_at)`) is there. Returns whether it stored it.
    ///
    /// The entry is served until the record's `expires_at`, or for at most `serve_for`
    /// from now when that is given (a zero `serve_for` stores nothing and drops any older
    /// copy).
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn put_if_newer(
        &self,
        id: &StorageId,
        record: &Record,
        serve_for: Option<Duration>,
    ) -> Result<bool>;

    /// Moves the expiry of the live record cached under `id` to `expires_at` if that is
    /// not earlier than its current one, and serves it for at most `serve_for` from now
    /// when that is given (as for [`put_if_newer`](Self::put_if_newer)). Returns whether
    /// the cache now holds the record with that expiry (`false`: nothing cached, a
    /// tombstone, or an earlier instant).
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn extend(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        serve_for: Option<Duration>,
    ) -> Result<bool>;

    /// Replaces the entry under `id` by a tombstone that lives for `ttl`.
    ///
    /// # Errors
    ///
    /// Backend errors only.
    async fn tombstone(&self, id: &StorageId, ttl: Duration) -> Result<()>;
}

#[async_trait]
impl<C: SessionCache + ?Sized> SessionCache for Arc<C> {
    async fn get(&self, id: &StorageId) -> Result<Option<Record>> {
        (**self).get(id).await
    }
    async fn put_if_newer(
        &self,
        id: &StorageId,
        record: &Record,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        (**self).put_if_newer(id, record, serve_for).await
    }
    async fn extend(
        &self,
        id: &StorageId,
        expires_at: OffsetDateTime,
        serve_for: Option<Duration>,
    ) -> Result<bool> {
        (**self).extend(id, expires_at, serve_for).await
    }
    async fn tombstone(&self, id: &StorageId, ttl: Duration) -> Result<()> {
        (**self).tombstone(id, ttl).await
    }
}
