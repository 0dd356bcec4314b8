//! MokaStore: the conformance suite, the byte bound and the cache-side operations.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::json;
use session_cache::{MokaStore, SessionCache};
use session_core::{Data, Error, Record, SessionKey, Store};
use time::OffsetDateTime;

/// One cache per namespace: two handles on one namespace share it.
fn shared(ns: &str) -> MokaStore {
    static STORES: LazyLock<Mutex<HashMap<String, MokaStore>>> = LazyLock::new(Mutex::default);
    STORES
        .lock()
        .unwrap()
        .entry(ns.to_owned())
        .or_default()
        .clone()
}

session_core::conformance_tests!(moka_store, |ns: String| async move { shared(&ns) });

fn record_of(bytes: usize) -> Record {
    let mut data = Data::new();
    data.insert("blob".into(), json!("x".repeat(bytes)));
    Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1))
}

#[tokio::test]
async fn capacity_is_bounded_in_bytes() {
    let capacity = 1 << 20;
    let store = MokaStore::with_capacity_bytes(capacity);
    let mut keys = Vec::new();
    for _ in 0..100 {
        keys.push(store.create(&record_of(50_000)).await.unwrap());
    }
    store.run_pending_tasks().await;
    assert!(
        store.weighted_size() <= capacity,
        "weighted size {} exceeds the capacity {capacity}",
        store.weighted_size()
    );
    let mut kept = 0;
    for k in &keys {
        if let Some(r) = store.load(k).await.unwrap() {
            assert_eq!(r.data["blob"].as_str().map(str::len), Some(50_000));
            kept += 1;
        }
    }
    // 100 records of ~50 KB cannot fit in 1 MiB; about 20 can.
    assert!(kept > 0, "everything was evicted");
    assert!(kept <= 21, "{kept} records of 50 KB kept in 1 MiB");
}

#[tokio::test]
async fn small_records_are_not_evicted_by_a_byte_bound_they_fit_in() {
    let store = MokaStore::with_capacity_bytes(1 << 20);
    let mut keys = Vec::new();
    for _ in 0..100 {
        keys.push(store.create(&record_of(1_000)).await.unwrap());
    }
    store.run_pending_tasks().await;
    for k in &keys {
        assert!(store.load(k).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_record_larger_than_the_capacity_is_too_large() {
    let store = MokaStore::with_capacity_bytes(10_000);
    let got = store.create(&record_of(20_000)).await;
    assert!(matches!(got, Err(Error::TooLarge { .. })), "{got:?}");
}

#[tokio::test]
async fn loads_share_the_decoded_data() {
    let store = MokaStore::new();
    let key = store.create(&record_of(10)).await.unwrap();
    let a = store.load(&key).await.unwrap().unwrap();
    let b = store.load(&key).await.unwrap().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a.data, &b.data),
        "each load copied the data"
    );
}

#[tokio::test]
async fn put_if_newer_orders_by_version_then_expiry() {
    let cache = MokaStore::new();
    let id = SessionKey::generate().storage_id();
    let mut r = record_of(1);
    r.version = 2;
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    let mut older = r.clone();
    older.version = 1;
    older.expires_at += time::Duration::hours(5);
    assert!(
        !cache.put_if_newer(&id, &older, None).await.unwrap(),
        "older version replaced a newer one"
    );
    assert!(
        !cache.put_if_newer(&id, &r, None).await.unwrap(),
        "the same record counts as newer"
    );
    let mut touched = r.clone();
    touched.expires_at += time::Duration::minutes(1);
    assert!(cache.put_if_newer(&id, &touched, None).await.unwrap());
    assert!(
        !cache.put_if_newer(&id, &r, None).await.unwrap(),
        "an earlier expiry replaced a later one"
    );
    assert_eq!(
        cache.get(&id).await.unwrap().unwrap().expires_at,
        touched.expires_at
    );
}

#[tokio::test]
async fn a_tombstone_blocks_puts_until_it_expires() {
    let cache = MokaStore::new();
    let id = SessionKey::generate().storage_id();
    let r = record_of(1);
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    cache
        .tombstone(&id, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(cache.get(&id).await.unwrap().is_none());
    assert!(
        !cache.put_if_newer(&id, &r, None).await.unwrap(),
        "a put passed the tombstone"
    );
    assert!(!cache.extend(&id, r.expires_at, None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    assert!(cache.get(&id).await.unwrap().is_some());
}

/// A fill or an expiry extension that was under way when the tombstone went in must not
/// replace it: every write to an entry excludes the others, so after all of them the
/// tombstone (which nothing may pass) is what the entry holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fills_racing_a_tombstone_never_replace_it() {
    let cache = MokaStore::new();
    for round in 0..200 {
        let id = SessionKey::generate().storage_id();
        let mut tasks = tokio::task::JoinSet::new();
        for version in 1..=8 {
            let cache = cache.clone();
            tasks.spawn(async move {
                let mut r = record_of(64);
                r.version = version;
                cache.put_if_newer(&id, &r, None).await.unwrap();
                cache
                    .extend(&id, r.expires_at + time::Duration::hours(1), None)
                    .await
                    .unwrap();
            });
        }
        {
            let cache = cache.clone();
            tasks.spawn(async move {
                tokio::task::yield_now().await;
                cache.tombstone(&id, Duration::from_secs(60)).await.unwrap();
            });
        }
        while let Some(t) = tasks.join_next().await {
            t.unwrap();
        }
        assert!(
            cache.get(&id).await.unwrap().is_none(),
            "round {round}: a fill replaced the tombstone"
        );
    }
}

#[tokio::test]
async fn extend_moves_expiry_only_forward() {
    let cache = MokaStore::new();
    let id = SessionKey::generate().storage_id();
    let r = record_of(1);
    assert!(
        !cache.extend(&id, r.expires_at, None).await.unwrap(),
        "extended nothing"
    );
    cache.put_if_newer(&id, &r, None).await.unwrap();
    let later = r.expires_at + time::Duration::hours(1);
    assert!(cache.extend(&id, later, None).await.unwrap());
    assert!(!cache.extend(&id, r.expires_at, None).await.unwrap());
    assert_eq!(cache.get(&id).await.unwrap().unwrap().expires_at, later);
}

#[tokio::test]
async fn clones_share_one_cache_and_stores_do_not() {
    let a = MokaStore::new();
    let key = a.create(&record_of(1)).await.unwrap();
    assert!(a.clone().load(&key).await.unwrap().is_some());
    assert!(MokaStore::new().load(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn ended_markers_weigh_as_small_entries_and_block_fills() {
    use session_core::Lookup;
    let store = MokaStore::with_capacity_bytes(1 << 20);
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(store.create(&record_of(50_000)).await.unwrap());
    }
    store.run_pending_tasks().await;
    assert!(store.weighted_size() > 10 * 50_000);
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    for k in &keys {
        store.end(k, 1, until).await.unwrap();
    }
    store.run_pending_tasks().await;
    assert_eq!(store.entry_count(), 10, "the markers are kept");
    assert!(
        store.weighted_size() <= 10 * 256,
        "ten markers weigh {} bytes",
        store.weighted_size()
    );
    for k in &keys {
        assert!(matches!(store.lookup(k).await.unwrap(), Lookup::Ended));
        assert!(store.load(k).await.unwrap().is_none());
        // The cache side addresses the same entry by these bytes: it holds nothing there
        // and no fill, whatever its version, replaces the marker.
        let id = same_entry(k);
        assert!(store.get(&id).await.unwrap().is_none());
        let mut fill = record_of(1);
        fill.version = 9;
        assert!(!store.put_if_newer(&id, &fill, None).await.unwrap());
        assert!(!store.extend(&id, until, None).await.unwrap());
        assert!(matches!(store.lookup(k).await.unwrap(), Lookup::Ended));
    }
}

/// The cache-side id of the entry the store keeps `key` under (its generated bytes).
fn same_entry(key: &SessionKey) -> session_core::StorageId {
    let bytes = key.generated_bytes().unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    session_core::StorageId::from_hex(&hex).unwrap()
}

#[tokio::test]
async fn an_end_remembered_until_the_past_removes_the_record() {
    use session_core::Lookup;
    let store = MokaStore::new();
    let key = store.create(&record_of(1)).await.unwrap();
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.end(&key, 1, past).await.unwrap();
    assert!(matches!(store.lookup(&key).await.unwrap(), Lookup::Absent));
    store.run_pending_tasks().await;
    assert_eq!(store.entry_count(), 0);
}

/// As a cache under a staleness bound, an entry is served for at most `serve_for` after
/// its write, whatever the record's own expiry; once past it, it refuses no put, and an
/// `extend` (the database confirmed the session) gives it a fresh bound.
#[tokio::test]
async fn a_bounded_entry_is_served_for_its_bound_only() {
    let cache = MokaStore::new();
    let id = SessionKey::generate().storage_id();
    let r = record_of(1); // expires in an hour
    let bound = Some(Duration::from_millis(600));
    assert!(cache.put_if_newer(&id, &r, bound).await.unwrap());
    assert!(cache.get(&id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        cache.get(&id).await.unwrap().is_none(),
        "served past its staleness bound"
    );
    // The same record put again (a fill after the database confirmed it) lands.
    assert!(cache.put_if_newer(&id, &r, bound).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = r.expires_at + time::Duration::minutes(1);
    assert!(cache.extend(&id, later, bound).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        cache.get(&id).await.unwrap().map(|r| r.expires_at),
        Some(later),
        "extend did not renew the bound"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cache.get(&id).await.unwrap().is_none());
    // A zero bound caches nothing, and drops the older copy.
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    let mut newer = r.clone();
    newer.version += 1;
    assert!(
        !cache
            .put_if_newer(&id, &newer, Some(Duration::ZERO))
            .await
            .unwrap()
    );
    assert!(cache.get(&id).await.unwrap().is_none());
    // Without a bound, the entry lives until the record's expiry.
    assert!(cache.put_if_newer(&id, &r, None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cache.get(&id).await.unwrap().is_some());
}
