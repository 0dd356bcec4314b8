#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod compression;
mod envelope;
mod error;
mod keys;
mod store;

pub use envelope::COOKIE_SIZE_LIMIT;
pub use error::BuildError;
pub use keys::MIN_SECRET_LEN;
pub use store::{
    CookieStore, CookieStoreBuilder, DEFAULT_ATTRIBUTE_ALLOWANCE, DEFAULT_COOKIE_NAME, Mode,
};
