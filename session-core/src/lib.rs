#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod expiry;
mod key;
mod manager;
mod memory;
mod plan;
mod record;
mod session;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use config::{SameSite, SessionConfig, SessionConfigBuilder};
pub use error::{BoxError, ConfigError, Error, Result};
pub use expiry::Expiry;
pub use key::{GENERATED_KEY_LEN, MAX_KEY_LEN, SessionKey, StorageId};
pub use manager::{
    CacheControl, Commit, CookieAction, LazySession, MAX_COOKIE_CANDIDATES, SessionManager,
    SetCookie,
};
pub use memory::MemoryStore;
pub use record::{
    Data, FrameHeader, MAX_VALUE_DEPTH, Record, check_value_depth, from_unix_millis, unix_millis,
};
pub use session::{Session, TEST_COOKIE_NAME, TEST_COOKIE_VALUE};
pub use store::{CREATE_ATTEMPTS, Capabilities, Lookup, Store, create_with_fresh_keys};

/// Re-exported so stores and applications name the same versions.
pub use async_trait::async_trait;
pub use serde_json;
pub use time;
