//! Helpers shared by the Redis-backed tests.
// Not every test binary uses every helper; a failed unwrap is a test failure.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod browse;

use redis::AsyncCommands;

/// `SESSION_TEST_REDIS_URL`, or a loud failure: an ignored test run on purpose must not
/// pass without its service.
pub fn redis_url() -> String {
    std::env::var("SESSION_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("SESSION_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/)")
    })
}

/// `SESSION_TEST_REDIS_CLUSTER_URLS` (comma-separated), or a loud failure.
pub fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("SESSION_TEST_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!("SESSION_TEST_REDIS_CLUSTER_URLS is not set (start one with .ci/redis-cluster.sh)")
    });
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "SESSION_TEST_REDIS_CLUSTER_URLS holds no URL"
    );
    urls
}

/// The key prefix of namespace `ns`.
pub fn prefix(ns: &str) -> String {
    format!("sc-test:{ns}:")
}

/// The key prefix of namespace `ns`, as a store takes it.
pub fn redis_prefix(ns: &str) -> session_cache::RedisPrefix {
    session_cache::RedisPrefix::new(&prefix(ns)).unwrap()
}

/// A plain connection to one server (or one cluster node).
pub async fn node(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"))
}

/// Every `(key, value)` under `prefix` on the given servers (each cluster node lists its
/// own keys).
pub async fn scan_prefix(urls: &[String], prefix: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for url in urls {
        let mut con = node(url).await;
        let keys: Vec<Vec<u8>> = {
            let mut iter = con
                .scan_match::<_, Vec<u8>>(format!("{prefix}*"))
                .await
                .unwrap();
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k.unwrap());
            }
            keys
        };
        for k in keys {
            let v: Option<Vec<u8>> = con.get(&k).await.unwrap();
            out.push((k, v.unwrap_or_default()));
        }
    }
    out
}

/// Deletes every key under `prefix` on the given servers.
pub async fn delete_prefix(urls: &[String], prefix: &str) {
    for url in urls {
        let keys: Vec<Vec<u8>> = scan_prefix(std::slice::from_ref(url), prefix)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut con = node(url).await;
        for k in keys {
            let _: () = con.del(k).await.unwrap();
        }
    }
}
