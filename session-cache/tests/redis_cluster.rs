//! RedisStore on a Redis Cluster: the conformance suite and how keys spread. Start a
//! cluster with `.ci/redis-cluster.sh start`, then run with
//! `SESSION_TEST_REDIS_CLUSTER_URLS=<its output>` and `-- --include-ignored`.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use session_cache::{NotReplicated, RedisStore};
use session_core::conformance::Factory;
use session_core::{Data, Error, Lookup, Record, SessionKey, Store, async_trait};
use time::OffsetDateTime;

use common::browse::{login, logout, manager, user};
use common::{cluster_urls, delete_prefix, prefix, redis_prefix, scan_prefix};

async fn store(ns: &str) -> RedisStore {
    RedisStore::builder()
        .with_prefix(redis_prefix(ns))
        .connect_cluster(cluster_urls())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the cluster {:?}: {e}", cluster_urls()))
}

struct Cluster;

#[async_trait]
impl Factory for Cluster {
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(store(ns).await)
    }
    async fn cleanup(&self, ns: &str) {
        delete_prefix(&cluster_urls(), &prefix(ns)).await;
    }
}

session_core::conformance_tests!(
    redis_cluster,
    Cluster,
    ignore = "needs SESSION_TEST_REDIS_CLUSTER_URLS"
);

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_CLUSTER_URLS"]
async fn sessions_spread_over_the_masters_and_hold_no_raw_key() {
    let ns = session_core::conformance::fresh_namespace();
    let store = store(&ns).await;
    let mut keys = Vec::new();
    for i in 0..60 {
        let mut data = Data::new();
        data.insert("i".into(), json!(i));
        let r = Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1));
        keys.push(store.create(&r).await.unwrap());
    }
    let mut nodes_used = 0;
    let mut total = 0;
    for url in cluster_urls() {
        let on_node = scan_prefix(std::slice::from_ref(&url), &prefix(&ns)).await;
        nodes_used += usize::from(!on_node.is_empty());
        total += on_node.len();
        for (k, v) in &on_node {
            for key in &keys {
                let raw = key.as_str().as_bytes();
                assert!(!k.windows(raw.len()).any(|w| w == raw));
                assert!(!v.windows(raw.len()).any(|w| w == raw));
            }
        }
    }
    assert_eq!(total, 60);
    assert!(nodes_used > 1, "all sessions landed on one node");
    for key in &keys {
        assert!(store.load(key).await.unwrap().is_some());
    }
    delete_prefix(&cluster_urls(), &prefix(&ns)).await;
}

/// The shared test cluster has masters only: a store told to wait for a replica routes
/// each `WAIT` to the master of the session's slot (on every master in turn, as sessions
/// spread), finds no replica there, and fails the logout after its timeout instead of
/// reporting it done; the master has ended the session all the same.
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_CLUSTER_URLS"]
async fn waiting_for_replicas_the_cluster_lacks_fails_the_logout() {
    let ns = session_core::conformance::fresh_namespace();
    let wait = Duration::from_millis(200);
    let store = RedisStore::builder()
        .with_prefix(redis_prefix(&ns))
        .with_wait_for_replicas(1, wait)
        .connect_cluster(cluster_urls())
        .await
        .unwrap();
    let m = manager(store.clone());
    for _ in 0..6 {
        let cookie = login(&m, "ada").await;
        let started = Instant::now();
        let got = logout(&m, &cookie).await;
        let took = started.elapsed();
        let Err(Error::Backend { source, .. }) = got else {
            panic!("the logout was reported done: {got:?}");
        };
        let e = source
            .downcast_ref::<NotReplicated>()
            .unwrap_or_else(|| panic!("another error: {source}"));
        assert_eq!((e.acknowledged, e.wanted), (0, 1));
        assert!(
            took >= wait && took < Duration::from_secs(3),
            "took {took:?}"
        );
        let key = SessionKey::parse(&cookie).unwrap();
        assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Ended));
        assert_eq!(user(&m, &cookie).await, None);
    }
    delete_prefix(&cluster_urls(), &prefix(&ns)).await;
}
