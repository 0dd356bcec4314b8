#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod cached;
#[cfg(feature = "moka")]
mod moka_store;
#[cfg(feature = "redis")]
mod redis_prefix;
#[cfg(feature = "redis")]
mod redis_store;

pub use cache::SessionCache;
pub use cached::{CachedStore, DEFAULT_MAX_STALENESS, DEFAULT_TOMBSTONE_TTL};
#[cfg(feature = "moka")]
pub use moka_store::{DEFAULT_MOKA_CAPACITY_BYTES, MokaStore};
#[cfg(feature = "redis")]
pub use redis_prefix::RedisPrefix;
#[cfg(feature = "redis")]
pub use redis_store::{DEFAULT_REDIS_PREFIX, NotReplicated, RedisStore, RedisStoreBuilder};
