#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(unix)]
mod dir;
#[cfg(unix)]
mod file;
mod prefix;

#[cfg(unix)]
pub use file::{FileStore, FileStoreBuilder};
pub use prefix::FilePrefix;
