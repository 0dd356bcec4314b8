//! The one error type of the session crate family.

use std::fmt;

/// A boxed error from a backend driver, kept as the source of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`Store`](crate::Store) or the [`SessionManager`](crate::SessionManager)
/// can fail with.
///
/// Callers branch on the typed variants; [`Error::Backend`] keeps the driver's own error as
/// its [`source`](std::error::Error::source). No variant ever carries a session key, a
/// secret or session data, so errors are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `save` met a stored version other than the record's: another request saved first.
    #[error("the session was changed concurrently (stored version differs)")]
    Conflict,
    /// `save` or `touch` on a session that does not exist (deleted, expired or never
    /// created). The session must not be brought back.
    #[error("the session does not exist (deleted or expired)")]
    NotFound,
    /// The key does not have the shape this store issues; no I/O was done.
    #[error("invalid session key")]
    InvalidKey,
    /// The payload could not be encoded or decoded.
    #[error("session payload codec error: {0}")]
    Codec(#[source] BoxError),
    /// The encoded session is larger than the store can keep.
    #[error("session too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// Size of what would have been written, in bytes.
        size: usize,
        /// The store's limit, in bytes.
        limit: usize,
    },
    /// The storage medium failed: unreachable, timed out, refused the statement.
    #[error("session store `{store}` failed: {source}")]
    Backend {
        /// Which store failed (`"postgres"`, `"redis"`, ...).
        store: &'static str,
        /// The driver's own error.
        #[source]
        source: BoxError,
    },
    /// `create` drew a fresh key that was already taken, again and again: with about 165
    /// random bits per key even one collision is suspicious (a broken random source, a
    /// proxy rewriting keys, a medium answering "exists" to everything), so the store gave
    /// up after a few attempts instead of looping, and changed nothing.
    #[error("session store `{store}` met an existing key on each of {attempts} fresh keys")]
    KeyCollision {
        /// Which store gave up.
        store: &'static str,
        /// How many fresh keys it tried.
        attempts: u32,
    },
    /// A value nests arrays and objects deeper than the session keeps (see
    /// [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH)): refused when it is set, so that
    /// everything a session accepts loads back.
    #[error("session value nested deeper than {limit} levels")]
    TooDeep {
        /// The deepest nesting a value may have.
        limit: usize,
    },
    /// An expiry outside the range a session can hold (see
    /// [`Expiry::check`](crate::Expiry::check)), refused where it was set.
    #[error("session expiry out of range: {0}")]
    ExpiryOutOfRange(&'static str),
    /// The operation did not finish within the store's configured time limit.
    #[error("session store `{store}` timed out after {after:?}")]
    Timeout {
        /// Which store timed out.
        store: &'static str,
        /// The configured limit that was exceeded.
        after: std::time::Duration,
    },
}

impl Error {
    /// Wraps a driver error as [`Error::Backend`], keeping it as the source.
    pub fn backend(store: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            store,
            source: source.into(),
        }
    }

    /// Wraps an encoding or decoding failure as [`Error::Codec`].
    pub fn codec(source: impl Into<BoxError>) -> Self {
        Self::Codec(source.into())
    }

    /// Whether this error means the medium itself is unavailable (backend failure or
    /// timeout), as opposed to a verdict about the session.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Backend { .. } | Self::Timeout { .. })
    }
}

/// A configuration value was rejected when a configuration or store was built.
///
/// Construction-time problems are their own type: they are programming or deployment
/// errors, reported before the first request.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    what: &'static str,
    reason: String,
}

impl ConfigError {
    /// A rejected setting `what`, with the reason it was rejected.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }

    /// The name of the rejected setting.
    #[must_use]
    pub fn setting(&self) -> &'static str {
        self.what
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.what, self.reason)
    }
}

impl std::error::Error for ConfigError {}
