//! The store choice as a serde configuration struct, and URL redaction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The store choice as configuration: what [`open`](crate::open) reads from one URL, as a struct that
/// deserializes from TOML, JSON or environment-based configuration.
///
/// Every field but `url` is optional; a parameter given both in the URL's query and here
/// takes the value given here.
///
/// ```
/// let config: sessions::StoreConfig = serde_json::from_str(
///     r#"{"url": "sqlite://sessions.db", "table": "web_sessions", "cache": "moka://?max_bytes=67108864"}"#,
/// ).unwrap();
/// assert_eq!(config.table.as_deref(), Some("web_sessions"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store URL (see [`open`](crate::open)).
    pub url: String,
    /// A cache URL (`moka://…` or `redis://…`) layered over the database at `url`
    /// (Django's `cached_db`).
    #[serde(default)]
    pub cache: Option<String>,
    /// SQL stores: the table (default `sessions`).
    #[serde(default)]
    pub table: Option<String>,
    /// PostgreSQL: the schema of the table.
    #[serde(default)]
    pub schema: Option<String>,
    /// Redis and file stores: the prefix of every key or file name.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Moka: the capacity in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Cookie stores: the environment variable holding the secret (default
    /// `SESSION_SECRET`). Secrets never go in a URL.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Cookie stores: the environment variable holding previous secrets, separated by
    /// whitespace, that still verify (default `SESSION_PREVIOUS_SECRETS`, optional).
    #[serde(default)]
    pub previous_secrets_env: Option<String>,
}

impl StoreConfig {
    /// A configuration holding only `url`.
    #[must_use]
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("cache", &self.cache.as_deref().map(redact_url))
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("max_bytes", &self.max_bytes)
            .field("secret_env", &self.secret_env)
            .field("previous_secrets_env", &self.previous_secrets_env)
            .finish()
    }
}

/// `url` with any password replaced by `***`, for logs and pages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            if u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                format!("{}://…", u.scheme())
            }
        }
        Ok(_) => url.to_owned(),
        Err(_) => url
            .split_once(':')
            .map_or_else(|| "…".to_owned(), |(scheme, _)| format!("{scheme}:…")),
    }
}
