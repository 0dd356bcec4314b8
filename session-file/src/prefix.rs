//! The validated prefix of session file names.

use std::fmt;
use std::str::FromStr;

use session_core::ConfigError;

/// The prefix of every session file name: a [`FileStore`](crate::FileStore) names a
/// session `<prefix><storage id in hex>`.
///
/// Only `[A-Za-z0-9_-]`, at most [`MAX_LEN`](Self::MAX_LEN) bytes, so a prefix can never
/// name another directory, start a hidden file or a temporary file of the store, or make a
/// name longer than a file system keeps. Several stores with different prefixes can share
/// one directory; the default is `session_`.
///
/// # Examples
///
/// ```
/// use session_file::FilePrefix;
///
/// let prefix = FilePrefix::new("shop-sess_")?;
/// assert_eq!(prefix.as_str(), "shop-sess_");
/// assert_eq!(FilePrefix::default().as_str(), "session_");
///
/// assert!(FilePrefix::new("../etc/").is_err());
/// assert!(FilePrefix::new(".hidden").is_err());
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FilePrefix(Box<str>);

impl FilePrefix {
    /// Longest prefix accepted, in bytes (the name then stays well below the 255 bytes
    /// most file systems allow).
    pub const MAX_LEN: usize = 64;

    /// Accepts `prefix` if it is at most [`MAX_LEN`](Self::MAX_LEN) characters of
    /// `[A-Za-z0-9_-]` (the empty prefix included).
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
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(
                "prefix",
                "only ASCII letters, digits, `_` and `-` are allowed",
            ));
        }
        Ok(Self(prefix.into()))
    }

    /// The prefix as written in file names.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for FilePrefix {
    fn default() -> Self {
        Self("session_".into())
    }
}

impl FromStr for FilePrefix {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Debug for FilePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for FilePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_safe_alphabet_and_the_empty_prefix() {
        for ok in ["", "session_", "A-z_09", &"a".repeat(FilePrefix::MAX_LEN)] {
            assert_eq!(
                FilePrefix::new(ok).map(|p| p.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn refuses_separators_dots_and_long_prefixes() {
        for bad in [
            "a/b",
            "..",
            ".tmp-",
            "a b",
            "a\0",
            "é",
            "a\\b",
            &"a".repeat(FilePrefix::MAX_LEN + 1),
        ] {
            let err = FilePrefix::new(bad).expect_err(bad);
            assert_eq!(err.setting(), "prefix");
        }
    }
}
