//! Validated SQL identifiers: the only configuration that is ever spliced into SQL.

use std::fmt;
use std::str::FromStr;

use session_core::ConfigError;

/// Longest identifier accepted, in bytes.
///
/// Lower than every database's own limit (PostgreSQL 63, MySQL 64) so that the names
/// derived from it (the `<table>_expires_at_idx` index, the `session_db:<table>` migration
/// lock) still fit.
pub const MAX_IDENTIFIER_LEN: usize = 48;

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $setting:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Accepts a plain identifier: 1 to [`MAX_IDENTIFIER_LEN`] bytes of lower-case
            /// ASCII letters, digits and `_`, not starting with a digit.
            ///
            /// # Errors
            ///
            /// [`ConfigError`] for anything else (empty, too long, upper case, quotes,
            /// spaces, punctuation, non-ASCII), before any SQL runs.
            pub fn new(name: &str) -> Result<Self, ConfigError> {
                validate($setting, name)?;
                Ok(Self(name.into()))
            }

            /// The identifier as written.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ConfigError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ConfigError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ConfigError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(&s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The name of the sessions table, validated as a plain SQL identifier.
    ///
    /// This is the only piece of configuration that ends up inside SQL text, so it is
    /// checked once, when it is built: a `TableName` that exists is safe to splice (the
    /// stores quote it as well, so reserved words such as `user` work). The default is
    /// `sessions`.
    ///
    /// # Examples
    ///
    /// ```
    /// use session_db::TableName;
    ///
    /// assert_eq!(TableName::new("web_sessions")?.as_str(), "web_sessions");
    /// assert_eq!(TableName::default().as_str(), "sessions");
    /// for bad in ["", "a;drop", "1abc", "Sessions", "a b", "\"x\"", "séance"] {
    ///     assert!(TableName::new(bad).is_err(), "{bad}");
    /// }
    /// # Ok::<(), session_core::ConfigError>(())
    /// ```
    TableName,
    "table_name"
);

identifier!(
    /// A PostgreSQL schema name, validated like a [`TableName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use session_db::SchemaName;
    ///
    /// assert!(SchemaName::new("auth").is_ok());
    /// assert!(SchemaName::new("public; drop").is_err());
    /// ```
    SchemaName,
    "schema"
);

impl Default for TableName {
    fn default() -> Self {
        Self("sessions".into())
    }
}

fn validate(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let Some(first) = name.bytes().next() else {
        return Err(ConfigError::new(setting, "an identifier cannot be empty"));
    };
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(ConfigError::new(
            setting,
            format!("longer than {MAX_IDENTIFIER_LEN} bytes"),
        ));
    }
    if first.is_ascii_digit() {
        return Err(ConfigError::new(setting, "must not start with a digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ConfigError::new(
            setting,
            "only lower-case ASCII letters, digits and `_` are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers() {
        for ok in [
            "sessions",
            "_x",
            "a1",
            "sc_abc123",
            &"a".repeat(MAX_IDENTIFIER_LEN),
        ] {
            assert_eq!(TableName::new(ok).expect("valid").as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        let long = "a".repeat(MAX_IDENTIFIER_LEN + 1);
        for bad in [
            "",
            "a;drop",
            "1abc",
            "a b",
            " a",
            "a\"b",
            "a'b",
            "a`b",
            "a-b",
            "a.b",
            "Ab",
            "é",
            "表",
            "a\0",
            long.as_str(),
        ] {
            let err = TableName::new(bad).expect_err(bad);
            assert_eq!(err.setting(), "table_name");
        }
        assert_eq!(
            SchemaName::new("x y").expect_err("space").setting(),
            "schema"
        );
    }
}
