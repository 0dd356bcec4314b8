//! The construction-time error of [`CookieStoreBuilder::build`](crate::CookieStoreBuilder::build).

use session_core::ConfigError;

/// A [`CookieStore`](crate::CookieStore) could not be built from its configuration.
///
/// These are deployment errors, reported once at start-up. No variant carries secret bytes,
/// so the error is safe to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The current master secret is shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN).
    #[error(
        "the cookie master secret is {len} bytes long; at least {min} bytes of random data are \
         required (generate them with a CSPRNG, e.g. `openssl rand -base64 48`)"
    )]
    SecretTooShort {
        /// Length of the secret that was given, in bytes.
        len: usize,
        /// The minimum length, in bytes.
        min: usize,
    },
    /// A previous (rotated-out) secret is shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN).
    #[error(
        "previous cookie secret #{index} is {len} bytes long; at least {min} bytes are required"
    )]
    PreviousSecretTooShort {
        /// Position of the secret in the order it was added, from 0.
        index: usize,
        /// Length of the secret that was given, in bytes.
        len: usize,
        /// The minimum length, in bytes.
        min: usize,
    },
    /// The cookie name is empty, longer than 256 bytes, or not an RFC 6265 token.
    #[error(
        "invalid cookie name: it must be 1 to 256 characters of letters, digits and \
         !#$%&'*+-.^_`|~"
    )]
    InvalidCookieName,
    /// The cookie name and the attribute allowance leave no room for even an empty session.
    #[error(
        "the cookie name ({name_len} bytes) and the attribute allowance ({allowance} bytes) \
         leave no room for a session value within {limit} bytes"
    )]
    NoRoomForValue {
        /// Length of the cookie name, in bytes.
        name_len: usize,
        /// The configured attribute allowance, in bytes.
        allowance: usize,
        /// The browser limit, in bytes.
        limit: usize,
    },
    /// Two different secrets produced keys with the same key id (a one in four billion
    /// chance per pair): replace the current secret with a freshly generated one.
    #[error("two different cookie secrets have the same key id; generate a new current secret")]
    KeyIdCollision,
}

impl From<BuildError> for ConfigError {
    fn from(e: BuildError) -> Self {
        let what = match e {
            BuildError::SecretTooShort { .. } => "cookie secret",
            BuildError::PreviousSecretTooShort { .. } | BuildError::KeyIdCollision => {
                "previous cookie secrets"
            }
            BuildError::InvalidCookieName => "cookie name",
            BuildError::NoRoomForValue { .. } => "cookie attribute allowance",
        };
        ConfigError::new(what, e.to_string())
    }
}
