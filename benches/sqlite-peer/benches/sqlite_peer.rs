//! tower-sessions-sqlx-store's `SqliteStore` on the two SQLite media of the `stores`
//! benchmark (a file in WAL mode, and memory), through the same driver, fixtures and
//! criterion settings, under the same benchmark ids: group
//! `sqlite-file.<op>.<size>.<mode>` or `sqlite-mem.…`, function
//! `tower-sessions-sqlx-store`.
//!
//! It runs from its own project (see its Cargo.toml: the peer's sqlx links another
//! SQLite than the workspace's) and writes to the same criterion directory, so the report
//! reads its rows beside ours and the raw statements'.

#![allow(missing_docs, dead_code, unreachable_pub)]

#[path = "../../benches/common/mod.rs"]
mod common;
#[path = "../../benches/driver.rs"]
mod driver;
#[path = "../../benches/ts_peer.rs"]
mod ts_peer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions_sqlx_store::SqliteStore;

use common::Size;
use driver::runner;
use ts_peer::TowerSessions14;

/// The pool settings `session_db::SqliteStore::connect` uses for the same URL, so both
/// libraries meet the same medium: WAL and `synchronous = NORMAL` on a file; one
/// connection kept for the store's lifetime in memory.
async fn pool(store: &str) -> sqlx::SqlitePool {
    let timeout = Duration::from_secs(5);
    if store == "sqlite-file" {
        let dir = common::fresh_dir(&common::file_root().join("sqlite-peer"));
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .expect("url")
            .busy_timeout(timeout)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        SqlitePoolOptions::new()
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .expect("sqlite file")
    } else {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .expect("url")
            .busy_timeout(timeout);
        SqlitePoolOptions::new()
            .acquire_timeout(timeout)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .expect("sqlite memory")
    }
}

fn main() {
    let mut c = common::criterion();
    let rt = common::runtime();
    for store in ["sqlite-file", "sqlite-mem"] {
        if !common::selected(store) {
            continue;
        }
        let peer = rt.block_on(async {
            let peer = SqliteStore::new(pool(store).await);
            peer.migrate().await.expect("migrate");
            peer
        });
        let sizes: Vec<_> = Size::ALL
            .into_iter()
            .map(|size| {
                let subject = runner(TowerSessions14::new(peer.clone(), size));
                (size, vec![("tower-sessions-sqlx-store", subject)])
            })
            .collect();
        driver::bench_store(&mut c, &rt, store, &sizes);
    }
    c.final_summary();
}
