//! The validated prefix of session keys in Redis.

use std::fmt;
use std::str::FromStr;

use session_core::ConfigError;

use crate::DEFAULT_REDIS_PREFIX;

/// The prefix of every Redis key a [`RedisStore`](crate::RedisStore) writes: a session
/// is stored under `<prefix><storage id in hex>`.
///
/// Only printable ASCII without spaces (`!` to `~`), except `{` and `}`, at most
/// [`MAX_LEN`](Self::MAX_LEN) bytes:
///
/// - no spaces, control characters or non-ASCII bytes, so a key reads the same in
///   `redis-cli`, `MONITOR`, logs and `SCAN MATCH <prefix>*`;
/// - no `{` or `}`: on a Redis Cluster, a key holding `{…}` is placed by the hash of what
///   the braces enclose (a *hash tag*), so a prefix with a hash tag would put every session
///   in one slot, on one node;
/// - a bounded length, so a session key stays short and is built without allocating.
///
/// The empty prefix is accepted (sessions in a database of their own); the default is
/// [`DEFAULT_REDIS_PREFIX`]. Stores with different prefixes never see each other's
/// sessions.
///
/// # Examples
///
/// ```
/// use session_cache::RedisPrefix;
///
/// let prefix = RedisPrefix::new("shop:session:")?;
/// assert_eq!(prefix.as_str(), "shop:session:");
/// assert_eq!(RedisPrefix::default().as_str(), "session:");
///
/// assert!(RedisPrefix::new("{shop}:session:").is_err()); // a hash tag
/// assert!(RedisPrefix::new("my session:").is_err()); // a space
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisPrefix(Box<str>);

impl RedisPrefix {
    /// Longest prefix accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Accepts `prefix` if it is at most [`MAX_LEN`](Self::MAX_LEN) bytes of printable
    /// ASCII other than space, `{` and `}` (the empty prefix included).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting `prefix` otherwise.
    pub fn new(prefix: &str) -> Result<Self, ConfigError> {
        if prefix.len() > Self::MAX_LEN {
            return Err(ConfigError::new(
                "prefix",
                format!("longer than {} bytes", Self::MAX_LEN),
            ));
        }
        if prefix.bytes().any(|b| b == b'{' || b == b'}') {
            return Err(ConfigError::new(
                "prefix",
                "`{` and `}` are not allowed: a hash tag would put every session in one Redis Cluster slot",
            ));
        }
        if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "prefix",
                "only printable ASCII without spaces is allowed",
            ));
        }
        Ok(Self(prefix.into()))
    }

    /// The prefix as written in Redis keys.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix as the bytes of Redis keys.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self(DEFAULT_REDIS_PREFIX.into())
    }
}

impl FromStr for RedisPrefix {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for RedisPrefix {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RedisPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ascii_and_the_empty_prefix() {
        for ok in [
            "",
            DEFAULT_REDIS_PREFIX,
            "app:v2/session|",
            "a-b_c.d[e]*?~!",
            &"a".repeat(RedisPrefix::MAX_LEN),
        ] {
            assert_eq!(
                RedisPrefix::new(ok).map(|p| p.to_string()),
                Ok(ok.to_owned())
            );
        }
        assert_eq!(
            RedisPrefix::default(),
            RedisPrefix::new(DEFAULT_REDIS_PREFIX).expect("valid")
        );
    }

    #[test]
    fn refuses_hash_tags_spaces_controls_non_ascii_and_long_prefixes() {
        for bad in [
            "{app}:",
            "app:{",
            "}",
            "my session:",
            "tab\t",
            "line\n",
            "nul\0",
            "del\x7f",
            "sé:",
            &"a".repeat(RedisPrefix::MAX_LEN + 1),
        ] {
            let err = RedisPrefix::new(bad).expect_err(bad);
            assert_eq!(err.setting(), "prefix");
        }
    }
}
