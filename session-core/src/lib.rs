#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod expiry;
mod key;
mod memory;
mod record;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{BoxError, ConfigError, Error, Result};
pub use expiry::Expiry;
pub use key::{GENERATED_KEY_LEN, MAX_KEY_LEN, SessionKey, StorageId};
pub use memory::MemoryStore;
pub use record::{Data, FrameHeader, Record, from_unix_millis, unix_millis};
pub use store::{Capabilities, Store};

/// Re-exported so stores and applications name the same versions.
pub use async_trait::async_trait;
pub use serde_json;
pub use time;
