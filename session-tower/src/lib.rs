#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod layer;

#[cfg(feature = "axum")]
mod extract;

#[cfg(feature = "axum")]
pub use extract::{Session, SessionError, SessionRejection};
pub use layer::{SessionLayer, SessionService, WritesDropped};

pub use session_core::{LazySession, SessionConfig, SessionManager};
