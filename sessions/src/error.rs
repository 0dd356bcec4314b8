//! Why a store could not be opened.

use session_core::ConfigError;

/// Why [`open`](crate::open) could not give a store.
///
/// Messages name the problem and never repeat a password or a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The scheme is not one this crate knows.
    #[error(
        "unknown session store scheme `{0}`; expected memory://, moka://, sqlite://, postgres://, \
         mysql://, mariadb://, redis://, rediss://, redis+cluster://, file://, cookie+signed://, \
         cookie+encrypted:// or cached:CACHE_URL|DB_URL"
    )]
    UnknownScheme(String),
    /// The scheme is known but its store was compiled out.
    #[error("`{scheme}://` needs the `{feature}` feature of the `sessions` crate")]
    FeatureDisabled {
        /// The scheme of the URL.
        scheme: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The URL or one of its parameters is not well-formed.
    #[error("malformed session store URL: {0}")]
    Malformed(String),
    /// The environment variable that should hold the cookie secret is not set (or not
    /// Unicode).
    #[error("the cookie secret environment variable `{0}` is not set")]
    MissingSecret(String),
    /// A setting was rejected (table name, prefix, secret length, ...); the typed error of
    /// the crate that rejected it is the source.
    #[error("invalid session store setting: {0}")]
    Invalid(#[source] session_core::BoxError),
    /// The store could not be opened (database unreachable, migration failed, ...).
    #[error("could not open the session store: {0}")]
    Store(#[from] session_core::Error),
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        Self::Invalid(Box::new(e))
    }
}
