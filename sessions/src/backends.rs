//! Opening each store from a parsed URL; a store whose feature is off is a clear error.

use std::sync::Arc;

use session_core::{MemoryStore, SessionConfig, Store};

use crate::target::Target;
use crate::{OpenError, StoreConfig};

pub(crate) async fn open_target(t: &Target) -> Result<Arc<dyn Store>, OpenError> {
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
    let mut builder =
        CookieStore::builder(mode, secret.as_bytes()).with_cookie_name(&t.params.cookie_name);
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
pub(crate) async fn open_cached(
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
    let db = Box::pin(crate::open_config_with(&db_config, session)).await?;
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
pub(crate) async fn open_cached(
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
