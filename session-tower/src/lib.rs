#![doc = include_str!("../README.md")]

mod layer;

#[cfg(feature = "axum")]
mod extract;

#[cfg(feature = "axum")]
pub use extract::{Session, SessionError, SessionRejection};
pub use layer::{SessionLayer, SessionService, WritesDropped};

pub use session_core::{LazySession, SessionConfig, SessionManager};
