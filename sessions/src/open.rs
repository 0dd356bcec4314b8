//! One URL (or one serde configuration) picks the store.

use std::sync::Arc;

use session_core::{SessionConfig, SessionManager, Store};

use crate::backends::{open_cached, open_target};
use crate::target::Target;
use crate::{OpenError, StoreConfig};

/// Opens the store a URL names, ready to use (SQL tables are migrated):
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory://` | [`MemoryStore`](crate::MemoryStore) | – |
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
/// let config = sessions::SessionConfig::builder().with_cookie_name("sid").build()?;
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
