//! The subjects: our stores, the raw media, the peers; and which run for which store.
//!
//! Our stores are opened through the registry of `session-tests`
//! (`session_tests::stores`), on the fixed tables and key prefixes listed in the
//! crate's README.

mod ours;
mod peers;
mod raw;
mod raw_cached;
mod raw_cookie;
mod raw_redis;
mod raw_sql;

use std::sync::Arc;

use session_core::MemoryStore;
use session_tests::stores::{self, Namespace};

use crate::common::{Size, file_root, fresh_dir, random_id, service_url};
use crate::driver::{Subjects, runner};
use crate::ts_peer::TowerSessions14;

use ours::Ours;
use peers::{Actix, TowerSessions15, fred_pool, peer_mysql, peer_pg};
use raw::{RawFile, RawMemory, RawMoka};
use raw_cached::{RawCache, RawCached};
use raw_cookie::RawCookie;
use raw_redis::RawRedis;
use raw_sql::{RawMySql, RawPg, RawSqlite};

/// Every store, in the order they run and appear in the report.
pub(crate) const NAMES: [&str; 13] = [
    "memory",
    "moka",
    "sqlite-file",
    "sqlite-mem",
    "postgres",
    "mysql",
    "redis",
    "redis-cluster",
    "cached-moka-postgres",
    "cached-redis-postgres",
    "file",
    "cookie-signed",
    "cookie-encrypted",
];

/// Our SQLite store on `url` (table `bench_ours`) and the raw table `bench_raw` on the
/// same pool, both emptied.
async fn sqlite_stores(url: &str) -> (Arc<session_db::SqliteStore>, sqlx::SqlitePool) {
    let ours = stores::sqlite(url, &Namespace::named("bench_ours")).await;
    let raw = stores::sqlite_beside(&ours, &Namespace::named("bench_raw")).await;
    stores::empty_sqlite(&ours).await;
    stores::empty_sqlite(&raw).await;
    let pool = ours.pool().clone();
    (Arc::new(ours), pool)
}

/// Our PostgreSQL store on `url` (table `table`) and the raw table `<table>_raw` on the
/// same pool, both emptied.
async fn postgres(
    url: &str,
    table: &str,
) -> (Arc<session_db::PostgresStore>, sqlx::PgPool, RawPgTable) {
    let ours = stores::postgres(url, &Namespace::named(table)).await;
    let raw_table = format!("{table}_raw");
    let raw = stores::postgres_beside(&ours, &Namespace::named(&raw_table)).await;
    stores::empty_postgres(&ours).await;
    stores::empty_postgres(&raw).await;
    let pool = ours.pool().clone();
    (Arc::new(ours), pool, RawPgTable(raw_table))
}

/// Our MySQL store on `url` (table `bench_ours`) and the raw table `bench_raw` on the
/// same pool, both emptied.
async fn mysql_stores(url: &str) -> (Arc<session_db::MySqlStore>, sqlx::MySqlPool) {
    let ours = stores::mysql(url, &Namespace::named("bench_ours")).await;
    let raw = stores::mysql_beside(&ours, &Namespace::named("bench_raw")).await;
    stores::empty_mysql(&ours).await;
    stores::empty_mysql(&raw).await;
    let pool = ours.pool().clone();
    (Arc::new(ours), pool)
}

/// The raw table beside an ours table.
pub(crate) struct RawPgTable(String);

fn push(out: &mut Vec<(Size, Subjects)>, size: Size, subjects: Subjects) {
    out.push((size, subjects));
}

/// The subjects of `store` per size, or `None` when its service is not configured.
pub(crate) async fn build(store: &str) -> Option<Vec<(Size, Subjects)>> {
    let mut out = Vec::new();
    match store {
        "memory" => {
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        (
                            "ours",
                            runner(Ours::new(Arc::new(MemoryStore::new()), size)),
                        ),
                        ("raw", runner(RawMemory::new(size))),
                        (
                            "tower-sessions",
                            runner(TowerSessions15::new(
                                tower_sessions::MemoryStore::default(),
                                size,
                            )),
                        ),
                    ],
                );
            }
        }
        "moka" => {
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        (
                            "ours",
                            runner(Ours::new(session_cache::MokaStore::new(), size)),
                        ),
                        ("raw", runner(RawMoka::new(size))),
                        (
                            "tower-sessions-moka-store",
                            runner(TowerSessions14::new(
                                tower_sessions_moka_store::MokaStore::new(Some(1 << 20)),
                                size,
                            )),
                        ),
                    ],
                );
            }
        }
        "sqlite-file" | "sqlite-mem" => {
            let url = if store == "sqlite-file" {
                let dir = fresh_dir(&file_root().join("sqlite"));
                format!("sqlite://{}", dir.join("bench.db").display())
            } else {
                "sqlite::memory:".to_owned()
            };
            let (ours, pool) = sqlite_stores(&url).await;
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawSqlite::new(pool.clone(), "bench_raw", size)),
                        ),
                    ],
                );
            }
        }
        "postgres" => {
            let url = service_url("SESSION_TEST_POSTGRES_URL", "PostgreSQL")?;
            let (ours, pool, raw) = postgres(&url, "bench_ours").await;
            let peer = peer_pg(&url).await;
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        ("raw", runner(RawPg::new(pool.clone(), &raw.0, size))),
                        (
                            "tower-sessions-sqlx-store",
                            runner(TowerSessions14::new(peer.clone(), size)),
                        ),
                    ],
                );
            }
        }
        "mysql" => {
            let url = service_url("SESSION_TEST_MYSQL_URL", "MySQL/MariaDB")?;
            let (ours, pool) = mysql_stores(&url).await;
            let peer = peer_mysql(&url).await;
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawMySql::new(pool.clone(), "bench_raw", size)),
                        ),
                        (
                            "tower-sessions-sqlx-store",
                            runner(TowerSessions14::new(peer.clone(), size)),
                        ),
                    ],
                );
            }
        }
        "redis" => {
            let url = service_url("SESSION_TEST_REDIS_URL", "Redis")?;
            let ours = stores::redis(&url, &Namespace::named("bench:ours")).await;
            let conn = redis::Client::open(url.as_str())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let fred = fred_pool(&url).await;
            let actix = actix_session::storage::RedisSessionStore::builder(url.clone())
                .cache_keygen(|k| format!("bench:actix:{k}"))
                .build()
                .await
                .expect("actix redis");
            let ours = Arc::new(ours);
            let actix = Arc::new(actix);
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawRedis::new(conn.clone(), "bench:raw:", size)),
                        ),
                        (
                            "tower-sessions-redis-store",
                            runner(TowerSessions14::new(
                                tower_sessions_redis_store::RedisStore::new(fred.clone()),
                                size,
                            )),
                        ),
                        (
                            "actix-session",
                            runner(Actix::new(Arc::clone(&actix), size)),
                        ),
                    ],
                );
            }
        }
        "redis-cluster" => {
            let urls = service_url("SESSION_TEST_REDIS_CLUSTER_URLS", "Redis Cluster")?;
            let ours = stores::redis_cluster(&urls, &Namespace::named("bench:ours")).await;
            let conn = redis::cluster::ClusterClient::new(stores::cluster_urls(&urls))
                .expect("cluster urls")
                .get_async_connection()
                .await
                .expect("redis cluster");
            let ours = Arc::new(ours);
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        (
                            "raw",
                            runner(RawRedis::new(conn.clone(), "bench:raw:", size)),
                        ),
                    ],
                );
            }
        }
        "cached-moka-postgres" | "cached-redis-postgres" => {
            let pg_url = service_url("SESSION_TEST_POSTGRES_URL", "PostgreSQL")?;
            let redis_url = if store == "cached-redis-postgres" {
                Some(service_url("SESSION_TEST_REDIS_URL", "Redis")?)
            } else {
                None
            };
            let (db, pool, raw_table) = postgres(&pg_url, "bench_cached").await;
            let peer_db = peer_pg(&pg_url).await;
            match redis_url {
                None => {
                    for size in Size::ALL {
                        let ours = session_cache::CachedStore::new(
                            session_cache::MokaStore::new(),
                            Arc::clone(&db),
                        );
                        let peer = tower_sessions_core_014::session_store::CachingSessionStore::new(
                            tower_sessions_moka_store::MokaStore::new(Some(1 << 20)),
                            peer_db.clone(),
                        );
                        push(
                            &mut out,
                            size,
                            vec![
                                ("ours", runner(Ours::new(ours, size))),
                                (
                                    "raw",
                                    runner(RawCached::new(
                                        RawPg::new(pool.clone(), &raw_table.0, size),
                                        RawCache::Moka(RawMoka::new(size)),
                                    )),
                                ),
                                (
                                    "tower-sessions-caching",
                                    runner(TowerSessions14::new(peer, size)),
                                ),
                            ],
                        );
                    }
                }
                Some(url) => {
                    let cache = stores::redis(&url, &Namespace::named("bench:cached")).await;
                    let conn = redis::Client::open(url.as_str())
                        .expect("redis url")
                        .get_multiplexed_async_connection()
                        .await
                        .expect("redis");
                    let fred = fred_pool(&url).await;
                    for size in Size::ALL {
                        let ours = session_cache::CachedStore::new(cache.clone(), Arc::clone(&db));
                        let peer = tower_sessions_core_014::session_store::CachingSessionStore::new(
                            tower_sessions_redis_store::RedisStore::new(fred.clone()),
                            peer_db.clone(),
                        );
                        push(
                            &mut out,
                            size,
                            vec![
                                ("ours", runner(Ours::new(ours, size))),
                                (
                                    "raw",
                                    runner(RawCached::new(
                                        RawPg::new(pool.clone(), &raw_table.0, size),
                                        RawCache::Redis(RawRedis::new(
                                            conn.clone(),
                                            "bench:rawcached:",
                                            size,
                                        )),
                                    )),
                                ),
                                (
                                    "tower-sessions-caching",
                                    runner(TowerSessions14::new(peer, size)),
                                ),
                            ],
                        );
                    }
                }
            }
        }
        "file" => {
            let ours_dir = fresh_dir(&file_root().join("ours"));
            let raw_dir = fresh_dir(&file_root().join("raw"));
            let ours = Arc::new(stores::file(&ours_dir));
            for size in Size::ALL {
                push(
                    &mut out,
                    size,
                    vec![
                        ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                        ("raw", runner(RawFile::new(raw_dir.clone(), size))),
                    ],
                );
            }
        }
        "cookie-signed" | "cookie-encrypted" => {
            let encrypted = store == "cookie-encrypted";
            let secret = random_id().repeat(2);
            let ours = Arc::new(stores::cookie(encrypted, &secret));
            // A 10 KiB record does not fit in a cookie: 1 KiB only.
            let size = Size::K1;
            push(
                &mut out,
                size,
                vec![
                    ("ours", runner(Ours::new(Arc::clone(&ours), size))),
                    ("raw", runner(RawCookie::new(encrypted, size))),
                    (
                        "actix-session",
                        runner(Actix::new(
                            actix_session::storage::CookieSessionStore::default(),
                            size,
                        )),
                    ),
                ],
            );
        }
        _ => return None,
    }
    Some(out)
}
