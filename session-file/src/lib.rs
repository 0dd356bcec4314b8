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

/// Testing only (feature `failpoints`): the steps of a durable write, after each of which
/// [`FileStoreBuilder::with_failpoint`] can inject a failure.
#[cfg(all(unix, feature = "failpoints"))]
#[doc(hidden)]
pub use dir::{Failpoint, Step};
