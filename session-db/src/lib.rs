#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod common;
mod ident;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod store;

pub use common::{ClearStats, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CLEAR_BATCH_SIZE};
pub use ident::{MAX_IDENTIFIER_LEN, SchemaName, TableName};
#[cfg(feature = "mysql")]
pub use mysql::{MySqlStore, MySqlStoreBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use store::{SqlStore, SqlStoreBuilder};

/// Re-exported so applications build pools with the same sqlx version.
pub use sqlx;
