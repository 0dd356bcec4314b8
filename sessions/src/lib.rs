#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backends;
mod config;
mod error;
mod open;
mod target;

pub use config::{StoreConfig, redact_url};
pub use error::OpenError;
pub use open::{manager, open, open_config, open_config_with, open_with};
pub use target::feature_for_scheme;

pub use session_core::*;

/// The SQL stores (`sqlite`, `postgres`, `mysql` features).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use session_db as db;

/// The cache stores (`redis`, `redis-cluster`, `moka` features).
#[cfg(any(feature = "redis", feature = "moka"))]
pub use session_cache as cache;

/// The file store (`file` feature).
#[cfg(feature = "file")]
pub use session_file as file;

/// The client-side cookie store (`cookie` feature).
#[cfg(feature = "cookie")]
pub use session_signed_cookie as cookie;

/// The tower layer and the axum extractor (`tower` feature).
#[cfg(feature = "tower")]
pub use session_tower as tower;

#[cfg(any(feature = "redis", feature = "moka"))]
pub use session_cache::CachedStore;
#[cfg(feature = "moka")]
pub use session_cache::MokaStore;
#[cfg(feature = "redis")]
pub use session_cache::RedisStore;
/// The session core: the framework-neutral [`Session`](session_core::Session) handle
/// among the rest (at the crate root, `Session` is the axum extractor when the `tower`
/// feature is on).
pub use session_core as core;
#[cfg(feature = "mysql")]
pub use session_db::MySqlStore;
#[cfg(feature = "postgres")]
pub use session_db::PostgresStore;
#[cfg(feature = "sqlite")]
pub use session_db::SqliteStore;
#[cfg(feature = "file")]
pub use session_file::FileStore;
#[cfg(feature = "cookie")]
pub use session_signed_cookie::CookieStore;

/// With the `tower` feature, `sessions::Session` is the axum extractor (it dereferences to
/// the core [`Session`](session_core::Session) handle), so `use sessions::Session` is what
/// an axum handler takes.
#[cfg(feature = "tower")]
pub use session_tower::{Session, SessionError, SessionLayer, WritesDropped};

/// The workspace README's examples (the quick start among them), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;
