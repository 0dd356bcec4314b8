//! One URL (or one serde configuration) picks the store.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use session_core::{ConfigError, MemoryStore, SessionConfig, SessionManager, Store};

/// Why [`open`] could not give a store.
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

/// The store choice as configuration: what [`open`] reads from one URL, as a struct that
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
    /// The store URL (see [`open`]).
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

/// The Cargo feature of this crate that the store behind `scheme` needs, or `None` for an
/// unknown scheme (`memory` needs none: `Some("")`).
#[must_use]
pub fn feature_for_scheme(scheme: &str) -> Option<&'static str> {
    Some(match scheme {
        "memory" | "cached" => "",
        "moka" => "moka",
        "sqlite" => "sqlite",
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        "redis" | "rediss" => "redis",
        "redis+cluster" | "rediss+cluster" => "redis-cluster",
        "file" => "file",
        "cookie+signed" | "cookie+encrypted" => "cookie",
        _ => return None,
    })
}

/// Opens the store a URL names, ready to use (SQL tables are migrated):
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory://` | [`MemoryStore`] | – |
/// | `moka://?max_bytes=67108864` | `MokaStore` | `moka` |
/// | `sqlite://sessions.db`, `sqlite::memory:` | `SqliteStore` | `sqlite` |
/// | `postgres://user@host/db?table=sessions&schema=web` | `PostgresStore` | `postgres` |
/// | `mysql://user@host/db`, `mariadb://…` | `MySqlStore` | `mysql` |
/// | `redis://host:6379/0?prefix=session:` | `RedisStore` | `redis` |
/// | `redis+cluster://host1:7000,host2:7001` | `RedisStore` on a cluster | `redis-cluster` |
/// | `file:///var/lib/app/sessions` | `FileStore` | `file` |
/// | `cookie+signed://`, `cookie+encrypted://?secret_env=APP_SECRET` | `CookieStore` | `cookie` |
/// | `cached:moka://|postgres://…` | `CachedStore` (cache over database) | both |
///
/// Parameters of ours (`table`, `schema`, `prefix`, `max_bytes`, `secret_env`,
/// `previous_secrets_env`) are taken out of the query; the rest goes to the driver (e.g.
/// `sslmode`). Cookie secrets come from an environment variable, never from the URL.
///
/// A cookie store binds its values to the cookie's name, which is the
/// [`SessionConfig`]'s: `open` uses the default configuration's (`sessionid`); with another
/// name, open the store with [`open_with`], or build the whole manager with [`manager`].
///
/// # Errors
///
/// An [`OpenError`] naming the problem: unknown scheme, a feature that is off, a malformed
/// URL or parameter, a missing secret, or a store that could not be opened.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessions::OpenError> {
/// let store = sessions::open("memory://").await?;
/// assert!(store.capabilities().server_side);
///
/// let Err(err) = sessions::open("mongodb://localhost").await else { unreachable!() };
/// assert!(err.to_string().contains("unknown session store scheme `mongodb`"));
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    open_with(url, &SessionConfig::default()).await
}

/// Opens the store `url` names for sessions configured by `session` (a cookie store binds
/// its values to `session`'s cookie name); see [`open`].
///
/// # Errors
///
/// As [`open`].
pub async fn open_with(url: &str, session: &SessionConfig) -> Result<Arc<dyn Store>, OpenError> {
    open_config_with(&StoreConfig::from_url(url), session).await
}

/// A [`SessionManager`] over the store `url` names, configured by `session`: the one call
/// that keeps the cookie name in one place.
///
/// # Errors
///
/// As [`open`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = sessions::SessionConfig::builder().cookie_name("sid").build()?;
/// let manager = sessions::manager("memory://", config).await?;
/// assert_eq!(manager.config().cookie_name(), "sid");
/// # Ok(()) }
/// ```
pub async fn manager(url: &str, session: SessionConfig) -> Result<SessionManager, OpenError> {
    let store = open_with(url, &session).await?;
    Ok(SessionManager::new(store, session))
}

/// Opens the store a [`StoreConfig`] describes, with the default [`SessionConfig`]; see
/// [`open`].
///
/// # Errors
///
/// As [`open`].
pub async fn open_config(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    open_config_with(config, &SessionConfig::default()).await
}

/// Opens the store a [`StoreConfig`] describes for sessions configured by `session`; see
/// [`open_with`].
///
/// # Errors
///
/// As [`open`].
pub async fn open_config_with(
    config: &StoreConfig,
    session: &SessionConfig,
) -> Result<Arc<dyn Store>, OpenError> {
    let url = config.url.trim();
    if let Some(cache) = &config.cache {
        return open_cached(config, session, cache, url).await;
    }
    if let Some(pair) = url.strip_prefix("cached:") {
        let (cache, db) = pair.split_once('|').ok_or_else(|| {
            OpenError::Malformed("a cached store is written `cached:CACHE_URL|DB_URL`".into())
        })?;
        return open_cached(config, session, cache.trim(), db.trim()).await;
    }
    let target = Target::parse(url, config, session)?;
    open_target(&target).await
}

/// A URL taken apart: its scheme, what goes on to the driver, and our parameters.
struct Target {
    scheme: String,
    /// The URL without our parameters.
    // Unread when no driver-backed store feature is on.
    #[allow(dead_code)]
    driver_url: String,
    /// After `scheme:` and any `//`, without our parameters.
    rest: String,
    params: Params,
}

#[derive(Default)]
struct Params {
    table: Option<String>,
    schema: Option<String>,
    prefix: Option<String>,
    max_bytes: Option<u64>,
    secret_env: Option<String>,
    previous_secrets_env: Option<String>,
    /// The session cookie's name (from the `SessionConfig`).
    #[cfg_attr(not(feature = "cookie"), allow(dead_code))] // only cookie stores bind it
    cookie_name: String,
    /// Query parameters that are not ours, for the driver.
    other: Vec<(String, String)>,
}

impl Target {
    fn parse(url: &str, config: &StoreConfig, session: &SessionConfig) -> Result<Self, OpenError> {
        let (scheme, after) = url
            .split_once(':')
            .filter(|(s, _)| !s.is_empty())
            .ok_or_else(|| OpenError::Malformed("no scheme (expected e.g. `sqlite://…`)".into()))?;
        let scheme = scheme.to_ascii_lowercase();
        if feature_for_scheme(&scheme).is_none() {
            return Err(OpenError::UnknownScheme(scheme));
        }
        let (body, query) = after.split_once('?').unwrap_or((after, ""));
        let mut params = Params {
            cookie_name: session.cookie_name().to_owned(),
            ..Params::default()
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "table" => params.table = Some(v),
                "schema" => params.schema = Some(v),
                "prefix" => params.prefix = Some(v),
                "max_bytes" => {
                    params.max_bytes = Some(v.parse().map_err(|_| {
                        OpenError::Malformed("`max_bytes` must be a whole number of bytes".into())
                    })?);
                }
                "secret_env" => params.secret_env = Some(v),
                "previous_secrets_env" => params.previous_secrets_env = Some(v),
                "cookie_name" => {
                    return Err(OpenError::Malformed(
                        "the cookie name comes from the SessionConfig (open the store with `open_with`)"
                            .into(),
                    ));
                }
                "secret" | "key" | "password" if scheme.starts_with("cookie") => {
                    return Err(OpenError::Malformed(
                        "secrets never go in the URL: name an environment variable with `secret_env`"
                            .into(),
                    ));
                }
                other => params.other.push((other.to_owned(), v)),
            }
        }
        overlay(&mut params.table, &config.table);
        overlay(&mut params.schema, &config.schema);
        overlay(&mut params.prefix, &config.prefix);
        if config.max_bytes.is_some() {
            params.max_bytes = config.max_bytes;
        }
        overlay(&mut params.secret_env, &config.secret_env);
        overlay(
            &mut params.previous_secrets_env,
            &config.previous_secrets_env,
        );

        let mut driver_url = format!("{scheme}:{body}");
        if !params.other.is_empty() {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params.other)
                .finish();
            driver_url = format!("{driver_url}?{q}");
        }
        let rest = body.strip_prefix("//").unwrap_or(body).to_owned();
        Ok(Self {
            scheme,
            driver_url,
            rest,
            params,
        })
    }

    /// Refuses driver parameters for stores that have no driver.
    fn no_driver_params(&self) -> Result<(), OpenError> {
        match self.params.other.first() {
            Some((k, _)) => Err(OpenError::Malformed(format!(
                "`{}://` takes no parameter `{k}`",
                self.scheme
            ))),
            None => Ok(()),
        }
    }

    // Unused only when every store feature is on.
    #[allow(dead_code)]
    fn disabled(&self) -> OpenError {
        OpenError::FeatureDisabled {
            scheme: self.scheme.clone(),
            feature: feature_for_scheme(&self.scheme).unwrap_or(""),
        }
    }
}

fn overlay(slot: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

async fn open_target(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    match t.scheme.as_str() {
        "memory" => {
            t.no_driver_params()?;
            if !t.rest.is_empty() {
                return Err(OpenError::Malformed("`memory://` takes no path".into()));
            }
            Ok(Arc::new(MemoryStore::new()))
        }
        "moka" => open_moka(t).map(|s| -> Arc<dyn Store> { s }),
        "sqlite" => open_sqlite(t).await,
        "postgres" | "postgresql" => open_postgres(t).await,
        "mysql" | "mariadb" => open_mysql(t).await,
        "redis" | "rediss" => open_redis(t).await.map(|s| -> Arc<dyn Store> { s }),
        "redis+cluster" | "rediss+cluster" => {
            open_redis_cluster(t).await.map(|s| -> Arc<dyn Store> { s })
        }
        "file" => open_file(t),
        "cookie+signed" | "cookie+encrypted" => open_cookie(t),
        other => Err(OpenError::UnknownScheme(other.to_owned())),
    }
}

#[cfg(feature = "moka")]
fn open_moka(t: &Target) -> Result<Arc<session_cache::MokaStore>, OpenError> {
    t.no_driver_params()?;
    Ok(Arc::new(match t.params.max_bytes {
        Some(0) => {
            return Err(OpenError::Malformed(
                "`max_bytes` must be more than 0".into(),
            ));
        }
        Some(n) => session_cache::MokaStore::with_capacity_bytes(n),
        None => session_cache::MokaStore::new(),
    }))
}

#[cfg(not(feature = "moka"))]
fn open_moka(t: &Target) -> Result<Arc<MemoryStore>, OpenError> {
    Err(t.disabled())
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn table_name(t: &Target) -> Result<session_db::TableName, OpenError> {
    Ok(session_db::TableName::new(
        t.params.table.as_deref().unwrap_or("sessions"),
    )?)
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    let store = session_db::SqliteStore::builder()
        .with_table_name(table_name(t)?)
        .connect(&t.driver_url)
        .await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "postgres")]
async fn open_postgres(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    let mut builder = session_db::PostgresStore::builder().with_table_name(table_name(t)?);
    if let Some(schema) = &t.params.schema {
        builder = builder.with_schema(session_db::SchemaName::new(schema)?);
    }
    let url = t.driver_url.replacen("postgresql:", "postgres:", 1);
    let store = builder.connect(&url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "mysql")]
async fn open_mysql(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    let url = t.driver_url.replacen("mariadb:", "mysql:", 1);
    let store = session_db::MySqlStore::builder()
        .with_table_name(table_name(t)?)
        .connect(&url)
        .await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "mysql"))]
async fn open_mysql(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "redis")]
fn redis_builder(t: &Target) -> Result<session_cache::RedisStoreBuilder, OpenError> {
    let builder = session_cache::RedisStore::builder();
    Ok(match &t.params.prefix {
        Some(p) => builder.with_prefix(session_cache::RedisPrefix::new(p)?),
        None => builder,
    })
}

#[cfg(feature = "redis")]
async fn open_redis(t: &Target) -> Result<Arc<session_cache::RedisStore>, OpenError> {
    Ok(Arc::new(redis_builder(t)?.connect(&t.driver_url).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(t: &Target) -> Result<Arc<MemoryStore>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "redis-cluster")]
async fn open_redis_cluster(t: &Target) -> Result<Arc<session_cache::RedisStore>, OpenError> {
    let scheme = if t.scheme.starts_with("rediss") {
        "rediss"
    } else {
        "redis"
    };
    let (hosts, path) = t.rest.split_once('/').unwrap_or((&t.rest, ""));
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{h}/{path}"))
        .collect();
    if urls.is_empty() {
        return Err(OpenError::Malformed(
            "`redis+cluster://` needs at least one host: redis+cluster://host1:7000,host2:7001"
                .into(),
        ));
    }
    t.no_driver_params()?;
    Ok(Arc::new(redis_builder(t)?.connect_cluster(urls).await?))
}

#[cfg(not(feature = "redis-cluster"))]
async fn open_redis_cluster(t: &Target) -> Result<Arc<MemoryStore>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "file")]
fn open_file(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    t.no_driver_params()?;
    if t.rest.is_empty() {
        return Err(OpenError::Malformed(
            "`file://` needs a directory: file:///var/lib/app/sessions".into(),
        ));
    }
    let mut builder = session_file::FileStore::builder(&t.rest);
    if let Some(p) = &t.params.prefix {
        builder = builder.with_prefix(session_file::FilePrefix::new(p)?);
    }
    Ok(Arc::new(builder.open()?))
}

#[cfg(not(feature = "file"))]
fn open_file(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    Err(t.disabled())
}

#[cfg(feature = "cookie")]
fn open_cookie(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    use session_signed_cookie::{CookieStore, Mode};
    t.no_driver_params()?;
    if !t.rest.is_empty() {
        return Err(OpenError::Malformed(format!(
            "`{}://` takes no host or path (the secret comes from an environment variable)",
            t.scheme
        )));
    }
    let mode = if t.scheme == "cookie+signed" {
        Mode::Signed
    } else {
        Mode::Encrypted
    };
    let var = t.params.secret_env.as_deref().unwrap_or("SESSION_SECRET");
    let secret = std::env::var(var).map_err(|_| OpenError::MissingSecret(var.to_owned()))?;
    let mut builder = CookieStore::builder(mode, secret.as_bytes())
        .with_cookie_name(&t.params.cookie_name);
    let previous = t
        .params
        .previous_secrets_env
        .as_deref()
        .unwrap_or("SESSION_PREVIOUS_SECRETS");
    if let Ok(list) = std::env::var(previous) {
        for old in list.split_whitespace() {
            builder = builder.with_previous_secret(old.as_bytes());
        }
    }
    let store = builder
        .build()
        .map_err(|e| OpenError::Invalid(Box::new(e)))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "cookie"))]
fn open_cookie(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
    Err(t.disabled())
}

#[cfg(any(feature = "moka", feature = "redis"))]
async fn open_cached(
    config: &StoreConfig,
    session: &SessionConfig,
    cache_url: &str,
    db_url: &str,
) -> Result<Arc<dyn Store>, OpenError> {
    let db_config = StoreConfig {
        url: db_url.to_owned(),
        cache: None,
        ..config.clone()
    };
    let db = Box::pin(open_config_with(&db_config, session)).await?;
    if !db.capabilities().server_side {
        return Err(OpenError::Malformed(
            "a cached store needs a server-side database under the cache".into(),
        ));
    }
    let cache = Target::parse(cache_url, &StoreConfig::default(), session)?;
    match cache.scheme.as_str() {
        #[cfg(feature = "moka")]
        "moka" => {
            let cache = open_moka(&cache)?;
            Ok(Arc::new(session_cache::CachedStore::new(cache, db)))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let cache = open_redis(&cache).await?;
            Ok(Arc::new(session_cache::CachedStore::new(cache, db)))
        }
        #[cfg(not(feature = "moka"))]
        "moka" => Err(cache.disabled()),
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => Err(cache.disabled()),
        other => Err(OpenError::Malformed(format!(
            "`{other}://` cannot be a cache; use moka:// or redis://"
        ))),
    }
}

#[cfg(not(any(feature = "moka", feature = "redis")))]
async fn open_cached(
    _config: &StoreConfig,
    _session: &SessionConfig,
    _cache_url: &str,
    _db_url: &str,
) -> Result<Arc<dyn Store>, OpenError> {
    Err(OpenError::FeatureDisabled {
        scheme: "cached".into(),
        feature: "moka",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_names_its_feature() {
        for (scheme, feature) in [
            ("memory", ""),
            ("moka", "moka"),
            ("sqlite", "sqlite"),
            ("postgres", "postgres"),
            ("postgresql", "postgres"),
            ("mysql", "mysql"),
            ("mariadb", "mysql"),
            ("redis", "redis"),
            ("rediss", "redis"),
            ("redis+cluster", "redis-cluster"),
            ("file", "file"),
            ("cookie+signed", "cookie"),
            ("cookie+encrypted", "cookie"),
        ] {
            assert_eq!(feature_for_scheme(scheme), Some(feature), "{scheme}");
        }
        assert_eq!(feature_for_scheme("mongodb"), None);
    }

    #[test]
    fn our_parameters_are_taken_out_and_the_rest_goes_to_the_driver() {
        let t = Target::parse(
            "postgres://u@h/db?table=t1&sslmode=disable&schema=web",
            &StoreConfig::default(),
            &SessionConfig::default(),
        )
        .expect("parses");
        assert_eq!(t.driver_url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(t.params.table.as_deref(), Some("t1"));
        assert_eq!(t.params.schema.as_deref(), Some("web"));
        assert_eq!(t.rest, "u@h/db");
    }

    #[test]
    fn config_fields_override_url_parameters() {
        let config = StoreConfig {
            table: Some("from_config".into()),
            ..StoreConfig::from_url("sqlite://x.db?table=from_url")
        };
        let t = Target::parse(&config.url, &config, &SessionConfig::default()).expect("parses");
        assert_eq!(t.params.table.as_deref(), Some("from_config"));
    }

    #[test]
    fn debug_and_redaction_hide_passwords() {
        let config = StoreConfig::from_url("postgres://app:hunter2@db.example/app");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(redact_url("memory://"), "memory://");
    }
}
