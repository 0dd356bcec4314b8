//! The conformance suite: the behaviours every [`Store`] must show.
//!
//! Each check is a `pub async fn` taking a [`Factory`]; its doc comment quotes the
//! sentence of the contract it enforces. [`conformance_tests!`](crate::conformance_tests)
//! expands to one `#[test]` per check, so a failure names the behaviour and a single check
//! runs by name (`cargo test create_never_overwrites`). A third-party store runs the whole
//! suite with three lines in `tests/conformance.rs`:
//!
//! ```
//! use session_core::MemoryStore; // your store
//! use session_core::conformance::PerNamespace;
//! session_core::conformance_tests!(my_store, PerNamespace::new(|| async { MemoryStore::new() }));
//! # fn main() {}
//! ```
//!
//! The checks are a test suite, not an API: new checks are added, and existing ones
//! tightened, in any release, outside semantic versioning (as `object_store`'s
//! integration tests are). A store that passes today may fail a check of a later
//! version because it found a real defect.
//!
//! Checks never skip silently: where a behaviour differs between server-side and
//! client-side stores (see [`Capabilities`]), the check asserts the behaviour the store's
//! capabilities promise instead.
//!
//! Every check opens its own namespace (a fresh table, key prefix, directory or cookie
//! purpose), so checks run in parallel against one server without seeing each other.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::{
    CREATE_ATTEMPTS, Capabilities, Commit, CookieAction, Data, Error, Expiry, Lookup, Record,
    Session, SessionConfig, SessionKey, SessionManager, Store,
};

/// Opens store handles for the checks.
///
/// Implemented for every `Fn(String) -> impl Future<Output = impl Store>`, so a factory is
/// usually a closure: `|ns| async move { MyStore::open(&ns).await.unwrap() }`.
#[async_trait]
pub trait Factory: Send + Sync {
    /// Opens a handle on namespace `ns` (an identifier of `[a-z0-9_]`, at most 32 bytes).
    ///
    /// Two calls with the same `ns` MUST return two independent handles on one medium
    /// (records written through one are read through the other); different namespaces
    /// MUST NOT see each other's records. Panic with a clear message when the medium is
    /// unavailable: a check must fail loudly, never pass by returning early.
    async fn open(&self, ns: &str) -> Arc<dyn Store>;

    /// Removes what namespace `ns` left behind (drop a table, a directory). The default
    /// does nothing.
    async fn cleanup(&self, _ns: &str) {}
}

#[async_trait]
impl<F, Fut, S> Factory for F
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send,
    S: Store,
{
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        Arc::new(self(ns.to_owned()).await)
    }
}

/// A namespace no other check uses: `sc_` and twelve random `[a-z0-9]`.
#[must_use]
pub fn fresh_namespace() -> String {
    format!("sc_{}", &SessionKey::generate().as_str()[..12])
}

/// One check's store, opened on a fresh namespace and cleaned up when the check ends.
struct Fixture<'f> {
    factory: &'f dyn Factory,
    ns: String,
    store: Arc<dyn Store>,
    caps: Capabilities,
}

impl<'f> Fixture<'f> {
    async fn new(factory: &'f dyn Factory) -> Self {
        let ns = fresh_namespace();
        let store = factory.open(&ns).await;
        let caps = store.capabilities();
        Self {
            factory,
            ns,
            store,
            caps,
        }
    }

    async fn finish(self) {
        drop(self.store);
        self.factory.cleanup(&self.ns).await;
    }
}

fn in_an_hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::hours(1)
}

fn an_hour_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::hours(1)
}

fn record(data: Value, expires_at: OffsetDateTime) -> Record {
    let Value::Object(map) = data else {
        panic!("test records are objects");
    };
    Record::new(map, expires_at)
}

fn one(key: &str, value: Value) -> Record {
    let mut data = Data::new();
    data.insert(key.to_owned(), value);
    Record::new(data, in_an_hour())
}

async fn must_load(store: &dyn Store, key: &SessionKey) -> Record {
    match store.load(key).await {
        Ok(Some(r)) => r,
        Ok(None) => panic!("a stored record loaded as None"),
        Err(e) => panic!("load failed: {e}"),
    }
}

async fn must_create(store: &dyn Store, record: &Record) -> SessionKey {
    store
        .create(record)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"))
}

fn assert_same_instant(got: OffsetDateTime, want: OffsetDateTime) {
    assert!(
        (got - want).abs() < Duration::milliseconds(1),
        "expires_at lost precision: stored {want}, loaded {got}"
    );
}

fn assert_is<T: std::fmt::Debug>(got: crate::Result<T>, want: fn(&Error) -> bool, what: &str) {
    match got {
        Err(e) if want(&e) => {}
        other => panic!("expected {what}, got {other:?}"),
    }
}

/// "create/load round-trip of every JSON type": null, booleans, integers at the edges of
/// `i64`/`u64`, floats, strings, arrays and nested objects come back equal.
pub async fn create_then_load_round_trips_every_json_type(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let r = record(
        json!({
            "null": null, "yes": true, "no": false,
            "zero": 0, "neg": i64::MIN, "big": u64::MAX, "float": -1.25e-7,
            "text": "plain", "empty": "", "escapes": "quote \" backslash \\ newline \n tab \t nul \u{0}",
            "list": [1, "two", [3.0], {"four": null}],
            "nested": {"a": {"b": {"c": [true, false]}}},
            "empty_list": [], "empty_map": {}
        }),
        in_an_hour(),
    );
    let key = must_create(&*fx.store, &r).await;
    let back = must_load(&*fx.store, &key).await;
    assert_eq!(
        back.data, r.data,
        "data changed on the way through the store"
    );
    fx.finish().await;
}

/// "unicode keys and values": non-ASCII keys and values, astral-plane characters included,
/// come back byte for byte.
pub async fn unicode_keys_and_values_round_trip(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let r = record(
        json!({"ключ": "значение", "键": "值 🎉", "𝄞 clef": "e\u{301} vs é", "rtl": "שלום"}),
        in_an_hour(),
    );
    let key = must_create(&*fx.store, &r).await;
    assert_eq!(must_load(&*fx.store, &key).await.data, r.data);
    fx.finish().await;
}

/// "empty records": a record with no entries is stored and loads as an empty dictionary.
pub async fn empty_record_round_trips(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let r = Record::new(Data::new(), in_an_hour());
    let key = must_create(&*fx.store, &r).await;
    assert!(must_load(&*fx.store, &key).await.data.is_empty());
    fx.finish().await;
}

/// "large (1 MiB) records": a server-side store keeps a 1 MiB record whole; a client-side
/// store refuses it with `Error::TooLarge` rather than dropping it silently.
pub async fn large_record_round_trips(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let big: String = (0..(1usize << 20))
        .map(|i| char::from(letters[i % 26]))
        .collect();
    let r = one("big", json!(big));
    if fx.caps.server_side {
        let key = must_create(&*fx.store, &r).await;
        assert_eq!(must_load(&*fx.store, &key).await.data, r.data);
    } else {
        assert_is(
            fx.store.create(&r).await,
            |e| matches!(e, Error::TooLarge { .. }),
            "Error::TooLarge",
        );
    }
    fx.finish().await;
}

/// "create ... stores version 1": whatever version the record carries, the stored one is 1.
pub async fn create_sets_version_one(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut r = one("a", json!(1));
    r.version = 41;
    let key = must_create(&*fx.store, &r).await;
    assert_eq!(must_load(&*fx.store, &key).await.version, 1);
    fx.finish().await;
}

/// "`create` generates the key itself": server-side keys have the generated shape
/// (32 `[a-z0-9]`); every key is cookie-safe.
pub async fn create_issues_well_formed_keys(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    assert!(
        SessionKey::parse(key.as_str()).is_ok(),
        "key is not cookie-safe"
    );
    if fx.caps.server_side {
        assert!(
            key.is_generated_shape(),
            "server-side key of the wrong shape"
        );
    }
    fx.finish().await;
}

/// "keys never collide across 10,000 creates".
pub async fn keys_never_collide_across_10000_creates(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let tasks = 32;
    let per_task = 10_000 / tasks + 1;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = fx.store.clone();
        handles.push(tokio::spawn(async move {
            let mut keys = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let r = one("i", json!(t * per_task + i));
                keys.push(must_create(&*store, &r).await.as_str().to_owned());
            }
            keys
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for k in h
            .await
            .unwrap_or_else(|e| panic!("create task failed: {e}"))
        {
            assert!(seen.insert(k), "two creates returned the same key");
        }
    }
    assert!(seen.len() >= 10_000);
    fx.finish().await;
}

/// "create never overwrites": a second create leaves the first record as it was.
pub async fn create_never_overwrites(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let a = must_create(&*fx.store, &one("who", json!("a"))).await;
    let b = must_create(&*fx.store, &one("who", json!("b"))).await;
    assert_ne!(a, b, "two creates returned one key");
    assert_eq!(must_load(&*fx.store, &a).await.data["who"], "a");
    assert_eq!(must_load(&*fx.store, &b).await.data["who"], "b");
    fx.finish().await;
}

/// "load of unknown ... keys is `None` without error".
pub async fn load_unknown_key_is_none(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let got = fx.store.load(&SessionKey::generate()).await;
    assert!(matches!(got, Ok(None)), "unknown key: {got:?}");
    fx.finish().await;
}

/// "load of ... malformed ... keys is `None` without error": traversal attempts, wrong
/// case, wrong length, over-long and token-like values.
pub async fn load_malformed_key_is_none(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    // Something stored, so a store that ignores the key entirely is caught too.
    must_create(&*fx.store, &one("a", json!(1))).await;
    let long = "a".repeat(4096);
    for bad in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "abc",
        "abcdefghijklmnopqrstuvwxyz0123456",
        "*",
        "%00",
        "'OR'1'='1",
        long.as_str(),
    ] {
        let key = SessionKey::parse(bad).unwrap_or_else(|_| panic!("{bad} should parse"));
        let got = fx.store.load(&key).await;
        assert!(matches!(got, Ok(None)), "malformed key {bad:.20}: {got:?}");
    }
    fx.finish().await;
}

/// "load of ... expired keys is `None` without error": a record created with an
/// `expires_at` in the past is never returned.
pub async fn load_expired_record_is_none(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &Record::new(Data::new(), an_hour_ago())).await;
    let got = fx.store.load(&key).await;
    assert!(matches!(got, Ok(None)), "expired record: {got:?}");
    fx.finish().await;
}

/// "A record whose `expires_at` has passed MUST behave exactly like an absent one": a
/// record that was live when written is gone once its instant passes.
pub async fn record_expires_when_its_time_passes(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut r = one("a", json!(1));
    r.expires_at = OffsetDateTime::now_utc() + Duration::milliseconds(300);
    let key = must_create(&*fx.store, &r).await;
    assert!(
        fx.store.load(&key).await.ok().flatten().is_some(),
        "gone too early"
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let got = fx.store.load(&key).await;
    assert!(matches!(got, Ok(None)), "still there after expiry: {got:?}");
    fx.finish().await;
}

/// "`expiry`: a per-session override": every `Expiry` variant comes back as stored.
pub async fn expiry_override_round_trips(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let at = crate::from_unix_millis(crate::unix_millis(in_an_hour())).unwrap_or_else(in_an_hour);
    for e in [
        Expiry::BrowserSession,
        Expiry::OnInactivity(Duration::minutes(30)),
        Expiry::AtDateTime(at),
    ] {
        let mut r = one("a", json!(1));
        r.expiry = Some(e);
        let key = must_create(&*fx.store, &r).await;
        assert_eq!(must_load(&*fx.store, &key).await.expiry, Some(e));
    }
    fx.finish().await;
}

/// "Stores keep `expires_at` to at least millisecond precision".
pub async fn expires_at_keeps_millisecond_precision(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut r = one("a", json!(1));
    r.expires_at = in_an_hour() + Duration::milliseconds(123);
    let key = must_create(&*fx.store, &r).await;
    assert_same_instant(must_load(&*fx.store, &key).await.expires_at, r.expires_at);
    fx.finish().await;
}

/// "`save` ... stores `version + 1`".
pub async fn save_increments_version(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut key = must_create(&*fx.store, &one("n", json!(0))).await;
    for n in 1..=3u64 {
        let mut r = must_load(&*fx.store, &key).await;
        assert_eq!(r.version, n);
        std::sync::Arc::make_mut(&mut r.data).insert("n".into(), json!(n));
        key = fx
            .store
            .save(&key, &r)
            .await
            .unwrap_or_else(|e| panic!("save failed: {e}"));
    }
    let r = must_load(&*fx.store, &key).await;
    assert_eq!((r.version, r.data["n"].clone()), (4, json!(3)));
    fx.finish().await;
}

/// "`save` ... replaces the record": keys removed from the data are gone after the save.
pub async fn save_replaces_the_data(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &record(json!({"a": 1, "b": 2}), in_an_hour())).await;
    let mut r = must_load(&*fx.store, &key).await;
    std::sync::Arc::make_mut(&mut r.data).remove("a");
    let key = fx
        .store
        .save(&key, &r)
        .await
        .unwrap_or_else(|e| panic!("save failed: {e}"));
    let back = must_load(&*fx.store, &key).await;
    assert_eq!(Value::Object((*back.data).clone()), json!({"b": 2}));
    fx.finish().await;
}

/// "A different stored version is `Error::Conflict`": a save based on an older version
/// fails and leaves the newer record in place.
pub async fn save_with_stale_version_is_conflict(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("v", json!("first"))).await;
    let base = must_load(&*fx.store, &key).await;
    let mut winner = base.clone();
    std::sync::Arc::make_mut(&mut winner.data).insert("v".into(), json!("winner"));
    let key2 = fx
        .store
        .save(&key, &winner)
        .await
        .unwrap_or_else(|e| panic!("first save failed: {e}"));
    let mut loser = base;
    std::sync::Arc::make_mut(&mut loser.data).insert("v".into(), json!("loser"));
    // The stale record is presented with the key its writer held.
    let got = fx.store.save(&key, &loser).await;
    if fx.caps.server_side {
        assert_is(got, |e| matches!(e, Error::Conflict), "Error::Conflict");
        assert_eq!(must_load(&*fx.store, &key).await.data["v"], "winner");
    } else {
        // A client-side store can only compare against the token it is given: the old
        // token still holds version 1, so the stale save cannot be told apart. Against the
        // newer token it must conflict.
        assert!(
            got.is_ok(),
            "client-side save on its own token failed: {got:?}"
        );
        assert_is(
            fx.store.save(&key2, &loser).await,
            |e| matches!(e, Error::Conflict),
            "Error::Conflict",
        );
        assert_eq!(must_load(&*fx.store, &key2).await.data["v"], "winner");
    }
    fx.finish().await;
}

/// "A different stored version is `Error::Conflict`": also a version from the future.
pub async fn save_with_newer_version_is_conflict(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let mut r = must_load(&*fx.store, &key).await;
    r.version += 1;
    assert_is(
        fx.store.save(&key, &r).await,
        |e| matches!(e, Error::Conflict),
        "Error::Conflict",
    );
    assert_eq!(must_load(&*fx.store, &key).await.version, 1);
    fx.finish().await;
}

/// "a missing ... key is `Error::NotFound`".
pub async fn save_unknown_key_is_not_found(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut r = one("a", json!(1));
    r.version = 1;
    let unknown = SessionKey::generate();
    assert_is(
        fx.store.save(&unknown, &r).await,
        |e| matches!(e, Error::NotFound),
        "Error::NotFound",
    );
    assert!(
        matches!(fx.store.load(&unknown).await, Ok(None)),
        "save created a record"
    );
    fx.finish().await;
}

/// "a missing or expired key is `Error::NotFound`": an expired record is not revived.
pub async fn save_expired_key_is_not_found(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &Record::new(Data::new(), an_hour_ago())).await;
    let mut r = one("a", json!(1));
    r.version = 1;
    assert_is(
        fx.store.save(&key, &r).await,
        |e| matches!(e, Error::NotFound),
        "Error::NotFound",
    );
    assert!(
        matches!(fx.store.load(&key).await, Ok(None)),
        "expired record revived"
    );
    fx.finish().await;
}

/// "the session was deleted, e.g. by a logout in another tab, and must not be
/// resurrected". A client-side store cannot revoke a token the client keeps: for it the
/// check asserts the documented replay instead.
pub async fn save_after_delete_is_not_found(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("user", json!(7))).await;
    let r = must_load(&*fx.store, &key).await;
    fx.store
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e}"));
    let got = fx.store.save(&key, &r).await;
    if fx.caps.server_side {
        assert_is(got, |e| matches!(e, Error::NotFound), "Error::NotFound");
        assert!(
            matches!(fx.store.load(&key).await, Ok(None)),
            "deleted session resurrected"
        );
    } else {
        assert!(
            got.is_ok(),
            "client-side save of a replayed token failed: {got:?}"
        );
    }
    fx.finish().await;
}

/// "`save` ... replaces the record": including its `expires_at`.
pub async fn save_moves_expires_at(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let mut r = must_load(&*fx.store, &key).await;
    r.expires_at = in_an_hour() + Duration::hours(5);
    let key = fx
        .store
        .save(&key, &r)
        .await
        .unwrap_or_else(|e| panic!("save failed: {e}"));
    assert_same_instant(must_load(&*fx.store, &key).await.expires_at, r.expires_at);
    fx.finish().await;
}

/// "A server-side store MUST refuse, without any I/O, every key that is not of the
/// generated shape: ... `save` and `touch` fail with `Error::InvalidKey`" (a client-side
/// store cannot decode such a key: `NotFound`).
pub async fn save_and_touch_with_malformed_key_are_refused(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut r = one("a", json!(1));
    r.version = 1;
    for bad in ["../x", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "short"] {
        let key = SessionKey::parse(bad).unwrap_or_else(|_| panic!("{bad} should parse"));
        let want: fn(&Error) -> bool = if fx.caps.server_side {
            |e| matches!(e, Error::InvalidKey)
        } else {
            |e| matches!(e, Error::NotFound | Error::InvalidKey)
        };
        assert_is(fx.store.save(&key, &r).await, want, "a refused key");
        assert_is(
            fx.store.touch(&key, in_an_hour()).await,
            want,
            "a refused key",
        );
    }
    fx.finish().await;
}

/// "`touch` moves only the expiry": data and version stay as they were.
pub async fn touch_moves_only_the_expiry(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let r = record(json!({"a": [1, 2], "b": "x"}), in_an_hour());
    let key = must_create(&*fx.store, &r).await;
    let later = in_an_hour() + Duration::days(3) + Duration::milliseconds(7);
    let key = fx
        .store
        .touch(&key, later)
        .await
        .unwrap_or_else(|e| panic!("touch failed: {e}"));
    let back = must_load(&*fx.store, &key).await;
    assert_eq!(back.data, r.data);
    assert_eq!(back.version, 1, "touch changed the version");
    assert_same_instant(back.expires_at, later);
    fx.finish().await;
}

/// "`touch` ... `Error::NotFound` when the key is missing or expired".
pub async fn touch_unknown_key_is_not_found(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    assert_is(
        fx.store.touch(&SessionKey::generate(), in_an_hour()).await,
        |e| matches!(e, Error::NotFound),
        "Error::NotFound",
    );
    let expired = must_create(&*fx.store, &Record::new(Data::new(), an_hour_ago())).await;
    assert_is(
        fx.store.touch(&expired, in_an_hour()).await,
        |e| matches!(e, Error::NotFound),
        "Error::NotFound",
    );
    fx.finish().await;
}

/// "`touch` moves only the expiry": also into the past, which ends the session.
pub async fn touch_into_the_past_expires_the_record(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let key = match fx.store.touch(&key, an_hour_ago()).await {
        Ok(k) => k,
        Err(e) => panic!("touch failed: {e}"),
    };
    assert!(matches!(fx.store.load(&key).await, Ok(None)));
    fx.finish().await;
}

/// "`delete` removes the record" (server-side); a client-side store cannot revoke the
/// token, which keeps loading until it expires.
pub async fn delete_removes_the_record(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let other = must_create(&*fx.store, &one("b", json!(2))).await;
    fx.store
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e}"));
    let got = fx.store.load(&key).await;
    if fx.caps.server_side {
        assert!(
            matches!(got, Ok(None)),
            "deleted record still loads: {got:?}"
        );
    } else {
        assert!(
            matches!(got, Ok(Some(_))),
            "client-side token stopped loading: {got:?}"
        );
    }
    assert_eq!(
        must_load(&*fx.store, &other).await.data["b"],
        2,
        "delete hit another key"
    );
    fx.finish().await;
}

/// "delete is idempotent": deleting twice, an unknown key or a malformed key succeeds.
pub async fn delete_is_idempotent(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    for k in [
        key.clone(),
        key,
        SessionKey::generate(),
        SessionKey::parse("../../x").unwrap_or_else(|_| SessionKey::generate()),
    ] {
        let got = fx.store.delete(&k).await;
        assert!(got.is_ok(), "delete failed: {got:?}");
    }
    fx.finish().await;
}

/// "clear_expired removes exactly the expired records and reports their count".
pub async fn clear_expired_removes_exactly_the_expired(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let mut expired = Vec::new();
    for i in 0..7 {
        let mut r = one("i", json!(i));
        r.expires_at = OffsetDateTime::now_utc() + Duration::milliseconds(200);
        expired.push(must_create(&*fx.store, &r).await);
    }
    let mut live = Vec::new();
    for i in 0..5 {
        live.push(must_create(&*fx.store, &one("i", json!(i))).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let removed = fx
        .store
        .clear_expired()
        .await
        .unwrap_or_else(|e| panic!("clear_expired failed: {e}"));
    if fx.caps.expires_by_itself {
        assert!(
            removed <= 7,
            "reported {removed} removals of 7 expired records"
        );
    } else {
        assert_eq!(removed, 7, "wrong count of removed records");
        assert_eq!(
            fx.store.clear_expired().await.ok(),
            Some(0),
            "second pass found more"
        );
    }
    for k in &expired {
        assert!(matches!(fx.store.load(k).await, Ok(None)));
    }
    for k in &live {
        must_load(&*fx.store, k).await;
    }
    fx.finish().await;
}

/// "clear_expired ... reports their count": zero on a store with nothing expired.
pub async fn clear_expired_with_nothing_expired_is_zero(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    assert_eq!(fx.store.clear_expired().await.ok(), Some(0));
    must_load(&*fx.store, &key).await;
    fx.finish().await;
}

/// "concurrent creates ... from many tasks": all of them are kept.
pub async fn concurrent_creates_are_all_kept(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = fx.store.clone();
            tokio::spawn(async move { (i, must_create(&*store, &one("i", json!(i))).await) })
        })
        .collect();
    for t in tasks {
        let (i, key) = t.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        assert_eq!(must_load(&*fx.store, &key).await.data["i"], i);
    }
    fx.finish().await;
}

/// "save is compare-and-set ... concurrent saves from many tasks": of many saves based on
/// one version, exactly one wins on a server-side store and the rest are `Conflict`.
pub async fn concurrent_saves_of_one_version_have_one_winner(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("w", json!(-1))).await;
    let base = must_load(&*fx.store, &key).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, key, mut r) = (fx.store.clone(), key.clone(), base.clone());
            tokio::spawn(async move {
                std::sync::Arc::make_mut(&mut r.data).insert("w".into(), json!(i));
                (i, store.save(&key, &r).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap_or_else(|e| panic!("task failed: {e}")) {
            (i, Ok(k)) => winners.push((i, k)),
            (_, Err(Error::Conflict)) => {}
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    if fx.caps.server_side {
        assert_eq!(
            winners.len(),
            1,
            "{} saves of one version succeeded",
            winners.len()
        );
        let r = must_load(&*fx.store, &key).await;
        assert_eq!((r.version, r.data["w"].clone()), (2, json!(winners[0].0)));
    } else {
        assert_eq!(
            winners.len(),
            16,
            "client-side saves on their own token must succeed"
        );
        for (i, k) in winners {
            assert_eq!(must_load(&*fx.store, &k).await.data["w"], i);
        }
    }
    fx.finish().await;
}

/// "concurrent ... saves from many tasks": saves of different sessions never interfere.
pub async fn concurrent_saves_of_different_sessions_all_succeed(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = fx.store.clone();
            tokio::spawn(async move {
                let mut key = must_create(&*store, &one("n", json!(0))).await;
                for n in 1..=5 {
                    let mut r = must_load(&*store, &key).await;
                    std::sync::Arc::make_mut(&mut r.data).insert("n".into(), json!(n));
                    key = store
                        .save(&key, &r)
                        .await
                        .unwrap_or_else(|e| panic!("save {i}/{n} failed: {e}"));
                }
                key
            })
        })
        .collect();
    for t in tasks {
        let key = t.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        let r = must_load(&*fx.store, &key).await;
        assert_eq!((r.version, r.data["n"].clone()), (6, json!(5)));
    }
    fx.finish().await;
}

/// "records written by one store handle are read by another handle on the same medium",
/// and a compare-and-set through one handle is seen by the other.
pub async fn second_handle_sees_the_same_records(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let other = fx.factory.open(&fx.ns).await;
    let key = must_create(&*fx.store, &one("from", json!("first"))).await;
    let mut r = must_load(&*other, &key).await;
    assert_eq!(r.data["from"], "first");
    std::sync::Arc::make_mut(&mut r.data).insert("from".into(), json!("second"));
    let key = other
        .save(&key, &r)
        .await
        .unwrap_or_else(|e| panic!("save through the second handle failed: {e}"));
    let back = must_load(&*fx.store, &key).await;
    assert_eq!(
        (back.version, back.data["from"].clone()),
        (2, json!("second"))
    );
    drop(other);
    fx.finish().await;
}

/// "different namespaces never see each other's records" (tables, prefixes, directories,
/// cookie purposes).
pub async fn namespaces_are_isolated(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let ns = fresh_namespace();
    let other = factory.open(&ns).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    assert!(
        matches!(other.load(&key).await, Ok(None)),
        "another namespace saw the record"
    );
    other
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e}"));
    must_load(&*fx.store, &key).await;
    drop(other);
    factory.cleanup(&ns).await;
    fx.finish().await;
}

/// "a read-only request must not write": loading leaves version and expiry as stored.
pub async fn load_changes_nothing(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let r = one("a", json!(1));
    let key = must_create(&*fx.store, &r).await;
    let first = must_load(&*fx.store, &key).await;
    let second = must_load(&*fx.store, &key).await;
    assert_eq!((first.version, second.version), (1, 1));
    assert_eq!(first.expires_at, second.expires_at);
    assert_same_instant(second.expires_at, r.expires_at);
    fx.finish().await;
}

/// How long the end checks ask the store to remember an ended session.
fn remember() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::minutes(5)
}

/// "`end` ends the session under `key` if, and only if, its stored version is `version`",
/// and afterwards `load`, `save` and `touch` treat it as absent while `lookup` reports it
/// ended (a store that remembers ended sessions) or absent. A client-side store has nothing
/// to end: `end` succeeds and the token keeps loading.
pub async fn end_at_the_stored_version_ends_the_session(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let other = must_create(&*fx.store, &one("b", json!(2))).await;
    let r = must_load(&*fx.store, &key).await;
    let got = fx.store.end(&key, r.version, remember()).await;
    assert!(got.is_ok(), "end at the stored version failed: {got:?}");
    if !fx.caps.server_side {
        must_load(&*fx.store, &key).await;
        fx.finish().await;
        return;
    }
    assert!(
        matches!(fx.store.load(&key).await, Ok(None)),
        "an ended session still loads"
    );
    let looked = fx.store.lookup(&key).await;
    if fx.caps.remembers_ended {
        assert!(
            matches!(looked, Ok(Lookup::Ended)),
            "lookup after end: {looked:?}"
        );
    } else {
        assert!(
            matches!(looked, Ok(Lookup::Absent)),
            "lookup after end: {looked:?}"
        );
    }
    assert_is(
        fx.store.save(&key, &r).await,
        |e| matches!(e, Error::NotFound),
        "NotFound from save",
    );
    assert_is(
        fx.store.touch(&key, in_an_hour()).await,
        |e| matches!(e, Error::NotFound),
        "NotFound from touch",
    );
    assert_is(
        fx.store.end(&key, r.version, remember()).await,
        |e| matches!(e, Error::NotFound),
        "NotFound from a second end",
    );
    assert_eq!(
        must_load(&*fx.store, &other).await.data["b"],
        2,
        "end hit another key"
    );
    fx.finish().await;
}

/// "`end` ... is `Error::Conflict` when the stored version differs (the record is left as
/// it is)".
pub async fn end_with_another_version_is_conflict(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_end_ends_nothing(&fx).await;
        fx.finish().await;
        return;
    }
    let key = must_create(&*fx.store, &one("n", json!(1))).await;
    let mut r = must_load(&*fx.store, &key).await;
    std::sync::Arc::make_mut(&mut r.data).insert("n".into(), json!(2));
    let key = fx
        .store
        .save(&key, &r)
        .await
        .unwrap_or_else(|e| panic!("save failed: {e}"));
    for stale in [1, 3] {
        assert_is(
            fx.store.end(&key, stale, remember()).await,
            |e| matches!(e, Error::Conflict),
            "Conflict from end at another version",
        );
    }
    let back = must_load(&*fx.store, &key).await;
    assert_eq!((back.version, back.data["n"].clone()), (2, json!(2)));
    fx.finish().await;
}

/// "`end` ... is `Error::NotFound` when the key is missing, expired or already ended",
/// and `Error::InvalidKey` for a key a server-side store never issues.
pub async fn end_unknown_or_expired_key_is_not_found(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_end_ends_nothing(&fx).await;
        fx.finish().await;
        return;
    }
    assert_is(
        fx.store.end(&SessionKey::generate(), 1, remember()).await,
        |e| matches!(e, Error::NotFound),
        "NotFound for an unknown key",
    );
    let mut r = one("a", json!(1));
    r.expires_at = OffsetDateTime::now_utc() + Duration::milliseconds(150);
    let key = must_create(&*fx.store, &r).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_is(
        fx.store.end(&key, 1, remember()).await,
        |e| matches!(e, Error::NotFound),
        "NotFound for an expired key",
    );
    if let Ok(bad) = SessionKey::parse("../../etc/passwd") {
        assert_is(
            fx.store.end(&bad, 1, remember()).await,
            |e| matches!(e, Error::InvalidKey),
            "InvalidKey for a malformed key",
        );
    }
    fx.finish().await;
}

/// "A server-side store that remembers ended sessions keeps ... an ended marker under the
/// key until the instant `end` was given": afterwards the key is simply unknown, and
/// `clear_expired` removes the marker.
pub async fn ended_marker_is_forgotten_after_its_instant(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_end_ends_nothing(&fx).await;
        fx.finish().await;
        return;
    }
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let until = OffsetDateTime::now_utc() + Duration::milliseconds(300);
    fx.store
        .end(&key, 1, until)
        .await
        .unwrap_or_else(|e| panic!("end failed: {e}"));
    if fx.caps.remembers_ended {
        assert!(matches!(fx.store.lookup(&key).await, Ok(Lookup::Ended)));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let cleared = fx.store.clear_expired().await;
    assert!(cleared.is_ok(), "clear_expired failed: {cleared:?}");
    assert!(matches!(fx.store.lookup(&key).await, Ok(Lookup::Absent)));
    assert_is(
        fx.store.end(&key, 1, remember()).await,
        |e| matches!(e, Error::NotFound),
        "NotFound",
    );
    fx.finish().await;
}

/// "Of two calls for the same `(key, version)` at most one succeeds": sixteen concurrent
/// ends of one version have exactly one winner; the rest find the session ended.
pub async fn concurrent_ends_of_one_version_have_one_winner(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_end_ends_nothing(&fx).await;
        fx.finish().await;
        return;
    }
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, key) = (fx.store.clone(), key.clone());
            tokio::spawn(async move { store.end(&key, 1, remember()).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap_or_else(|e| panic!("task failed: {e}")) {
            Ok(()) => wins += 1,
            Err(Error::NotFound) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1, "{wins} ends of one version succeeded");
    fx.finish().await;
}

/// "`end` ... racing a save": of a save and an end based on one version exactly one wins;
/// a lost save is `Conflict` or `NotFound`, never a resurrection.
pub async fn end_racing_a_save_has_one_winner(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_end_ends_nothing(&fx).await;
        fx.finish().await;
        return;
    }
    for round in 0..20 {
        let key = must_create(&*fx.store, &one("r", json!(round))).await;
        let mut r = must_load(&*fx.store, &key).await;
        std::sync::Arc::make_mut(&mut r.data).insert("r".into(), json!("saved"));
        let (s1, s2) = (fx.store.clone(), fx.store.clone());
        let (k1, k2) = (key.clone(), key.clone());
        let save = tokio::spawn(async move { s1.save(&k1, &r).await });
        let end = tokio::spawn(async move { s2.end(&k2, 1, remember()).await });
        let save = save.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        let end = end.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        match (&save, &end) {
            (Ok(_), Err(Error::Conflict)) => {
                assert_eq!(must_load(&*fx.store, &key).await.data["r"], "saved");
            }
            (Err(Error::NotFound), Ok(())) => {
                assert!(matches!(fx.store.load(&key).await, Ok(None)), "resurrected");
            }
            other => panic!("round {round}: save and end both won or both lost: {other:?}"),
        }
    }
    fx.finish().await;
}

/// "`create` MUST NOT replace another session, live or ended: ... at most
/// [`CREATE_ATTEMPTS`] keys in all ... then fails with `Error::KeyCollision`, leaving every
/// record as it was." Driven by forcing every fresh key onto an existing one.
pub async fn create_gives_up_when_every_key_collides(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_create_takes_no_fresh_key(&fx).await;
        fx.finish().await;
        return;
    }
    let live = must_create(&*fx.store, &one("owner", json!("first"))).await;
    let ended = must_create(&*fx.store, &one("owner", json!("ended"))).await;
    fx.store
        .end(&ended, 1, remember())
        .await
        .unwrap_or_else(|e| panic!("end failed: {e}"));
    for taken in [&live, &ended] {
        let got = with_forced_key(
            taken.clone(),
            fx.store.create(&one("owner", json!("intruder"))),
        )
        .await;
        match got {
            Err(Error::KeyCollision { attempts, .. }) => assert_eq!(attempts, CREATE_ATTEMPTS),
            other => panic!("create over an existing key answered {other:?}"),
        }
    }
    // Through the manager: a request that would create a session fails with the error
    // (a 500 through a framework layer), never hangs, never hands out the taken key.
    let m = manager_for(&fx.store, Duration::minutes(1));
    let lazy = m.lazy(None);
    let session = lazy.load().await.unwrap_or_else(|e| panic!("load: {e}"));
    session
        .insert_value("owner", json!("intruder"))
        .unwrap_or_else(|e| panic!("insert: {e}"));
    match with_forced_key(live.clone(), m.commit(&lazy, 200)).await {
        Err(Error::KeyCollision { .. }) => {}
        other => panic!("a commit creating over an existing key answered {other:?}"),
    }
    let r = must_load(&*fx.store, &live).await;
    assert_eq!((r.version, r.data["owner"].clone()), (1, json!("first")));
    assert!(
        matches!(fx.store.load(&ended).await, Ok(None)),
        "the ended session came back"
    );
    fx.finish().await;
}

/// What a client-side store promises where a server-side one ends sessions: "A store
/// without server-side records (a cookie store) has nothing to end and succeeds": `end`
/// succeeds whatever the version, and the token keeps loading (it cannot be revoked).
async fn client_side_end_ends_nothing(fx: &Fixture<'_>) {
    let key = must_create(&*fx.store, &one("a", json!(1))).await;
    for version in [0, 1, 2, u64::MAX] {
        let got = fx.store.end(&key, version, remember()).await;
        assert!(got.is_ok(), "client-side end at version {version}: {got:?}");
    }
    assert_eq!(
        must_load(&*fx.store, &key).await.data["a"],
        1,
        "the token stopped loading"
    );
}

/// A client-side store derives its key from the data: a forced key is not taken, and
/// create still succeeds.
async fn client_side_create_takes_no_fresh_key(fx: &Fixture<'_>) {
    let first = must_create(&*fx.store, &one("owner", json!("first"))).await;
    let got = with_forced_key(
        first.clone(),
        fx.store.create(&one("owner", json!("second"))),
    )
    .await;
    let key = got.unwrap_or_else(|e| panic!("client-side create failed: {e}"));
    assert_eq!(must_load(&*fx.store, &key).await.data["owner"], "second");
    assert_eq!(must_load(&*fx.store, &first).await.data["owner"], "first");
}

/// Through the manager, a client-side store issues a token holding the data on every
/// write, and a rotation issues a new token holding the same data.
async fn client_side_tokens_carry_their_data(fx: &Fixture<'_>) {
    let m = manager_for(&fx.store, Duration::minutes(1));
    let key = logged_in(&m, "user", json!("ada")).await;
    let (_, commit) = browse(&m, Some(&key), |s| {
        s.cycle_key();
        s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
            .unwrap_or_else(|e| panic!("update: {e}"));
    })
    .await;
    let commit = must_commit(commit);
    let token = set_value(&commit).unwrap_or_else(|| panic!("no token: {commit:?}"));
    let (s, _) = browse(&m, Some(&token), |_| {}).await;
    assert_eq!(
        (s.get_value("user"), s.get_value("n")),
        (Some(json!("ada")), Some(json!(1))),
        "the rotated token lost the data"
    );
}

// ---------------------------------------------------------------------------------------
// The request lifecycle through `SessionManager`: the concurrency rules of the contract,
// held by every store.

/// A manager over the check's store; `grace` is how long ended keys are remembered.
fn manager_for(store: &Arc<dyn Store>, grace: Duration) -> SessionManager {
    // Many requests of one session at once, as the checks make, need more rounds than a
    // browser's few tabs.
    let config = SessionConfig::builder()
        .with_ended_grace(grace)
        .with_conflict_retries(100)
        .build()
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    SessionManager::new(store.clone(), config)
}

/// The cookie value a commit sets, or `None` when it sets none.
fn set_value(commit: &Commit) -> Option<String> {
    let CookieAction::Set(c) = &commit.cookie else {
        return None;
    };
    let pair = c.as_str().split(';').next().unwrap_or("");
    pair.split_once('=').map(|(_, v)| v.to_owned())
}

/// One request of a browser holding `cookie`: loads, runs `f`, commits with status 200.
async fn browse(
    m: &SessionManager,
    cookie: Option<&str>,
    f: impl FnOnce(&Session),
) -> (Session, crate::Result<Commit>) {
    let lazy = m.lazy(cookie);
    let session = lazy
        .load()
        .await
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    f(&session);
    let commit = m.commit(&lazy, 200).await;
    (session, commit)
}

/// A first request storing `key = value`; the cookie value it got.
async fn logged_in(m: &SessionManager, key: &str, value: Value) -> String {
    let (_, commit) = browse(m, None, |s| {
        s.insert_value(key, value)
            .unwrap_or_else(|e| panic!("insert: {e}"));
    })
    .await;
    let commit = commit.unwrap_or_else(|e| panic!("commit failed: {e}"));
    set_value(&commit).unwrap_or_else(|| panic!("a new session sets its cookie: {commit:?}"))
}

fn must_commit(commit: crate::Result<Commit>) -> Commit {
    commit.unwrap_or_else(|e| panic!("commit failed: {e}"))
}

/// "rotation is conditional on the old record still existing at the version this request
/// loaded": tab A loaded the logged-in session, tab B logs out, then A rotates the key; A
/// must not get a fresh key holding the logged-out data, and must not touch the cookie.
pub async fn lifecycle_logout_is_not_undone_by_a_concurrent_rotation(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let m = manager_for(&fx.store, Duration::minutes(1));
    let key = logged_in(&m, "user", json!("ada")).await;
    let a = m.lazy(Some(&key));
    let sa = a.load().await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(sa.get_value("user"), Some(json!("ada")));
    let (_, logout) = browse(&m, Some(&key), Session::flush).await;
    assert!(matches!(
        must_commit(logout).cookie,
        CookieAction::Remove(_)
    ));
    sa.cycle_key();
    sa.insert_value("seen", json!(true))
        .unwrap_or_else(|e| panic!("insert: {e}"));
    let commit = must_commit(m.commit(&a, 200).await);
    if fx.caps.server_side {
        assert_eq!(
            commit.cookie,
            CookieAction::Keep,
            "the rotation won over a logout"
        );
        assert!(commit.writes_dropped, "dropped writes not reported");
        let (s, _) = browse(&m, Some(&key), |_| {}).await;
        assert!(s.is_empty(), "the logged-out key still reads data");
    }
    fx.finish().await;
}

/// "Two concurrent rotations: exactly one wins": two tabs rotate the same session; one
/// gets a new key holding the data, the other writes nothing and sets no cookie.
pub async fn lifecycle_two_concurrent_rotations_have_one_winner(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let m = manager_for(&fx.store, Duration::minutes(1));
    let key = logged_in(&m, "cart", json!([1])).await;
    let (a, b) = (m.lazy(Some(&key)), m.lazy(Some(&key)));
    for (lazy, who) in [(&a, "a"), (&b, "b")] {
        let s = lazy.load().await.unwrap_or_else(|e| panic!("load: {e}"));
        s.cycle_key();
        s.insert_value("user", json!(who))
            .unwrap_or_else(|e| panic!("insert: {e}"));
    }
    let (ca, cb) = tokio::join!(m.commit(&a, 200), m.commit(&b, 200));
    let (ca, cb) = (must_commit(ca), must_commit(cb));
    let winners: Vec<_> = [&ca, &cb].into_iter().filter_map(set_value).collect();
    if !fx.caps.server_side {
        assert_eq!(winners.len(), 2, "client-side rotations each issue a token");
        fx.finish().await;
        return;
    }
    assert_eq!(winners.len(), 1, "rotations: {ca:?} / {cb:?}");
    let loser = if set_value(&ca).is_some() { &cb } else { &ca };
    assert_eq!(loser.cookie, CookieAction::Keep);
    assert!(loser.writes_dropped);
    let (s, _) = browse(&m, Some(&winners[0]), |_| {}).await;
    assert_eq!(
        s.get_value("cart"),
        Some(json!([1])),
        "the winner lost the data"
    );
    let (old, _) = browse(&m, Some(&key), |_| {}).await;
    assert!(old.is_empty(), "the rotated key still reads data");
    fx.finish().await;
}

/// "A concurrent save on the old key between A's load and A's cycle" is kept: the rotation
/// reloads and re-applies its own changes.
pub async fn lifecycle_rotation_keeps_a_concurrent_save(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_tokens_carry_their_data(&fx).await;
        fx.finish().await;
        return;
    }
    let m = manager_for(&fx.store, Duration::minutes(1));
    let key = logged_in(&m, "cart", json!([1])).await;
    let a = m.lazy(Some(&key));
    let sa = a.load().await.unwrap_or_else(|e| panic!("load: {e}"));
    let (_, saved) = browse(&m, Some(&key), |s| {
        s.insert_value("theme", json!("dark"))
            .unwrap_or_else(|e| panic!("insert: {e}"));
    })
    .await;
    must_commit(saved);
    sa.cycle_key();
    sa.insert_value("user", json!("ada"))
        .unwrap_or_else(|e| panic!("insert: {e}"));
    let commit = must_commit(m.commit(&a, 200).await);
    let new =
        set_value(&commit).unwrap_or_else(|| panic!("the rotation set no cookie: {commit:?}"));
    let (s, _) = browse(&m, Some(&new), |_| {}).await;
    assert_eq!(
        (
            s.get_value("cart"),
            s.get_value("theme"),
            s.get_value("user")
        ),
        (Some(json!([1])), Some(json!("dark")), Some(json!("ada"))),
        "the concurrent save was lost in the rotation"
    );
    fx.finish().await;
}

/// "A request arriving with [a key rotated or ended moments ago] gets no access to any
/// data, does not create a session, drops its writes, and sends no Set-Cookie at all."
pub async fn lifecycle_a_key_ended_moments_ago_gets_nothing_and_sets_no_cookie(
    factory: &dyn Factory,
) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_tokens_carry_their_data(&fx).await;
        fx.finish().await;
        return;
    }
    let m = manager_for(&fx.store, Duration::minutes(1));
    let old = logged_in(&m, "cart", json!([1])).await;
    let (_, login) = browse(&m, Some(&old), |s| {
        s.cycle_key();
        s.insert_value("user", json!("ada"))
            .unwrap_or_else(|e| panic!("insert: {e}"));
    })
    .await;
    let new = set_value(&must_commit(login)).unwrap_or_else(|| panic!("login set no cookie"));
    let (late, commit) = browse(&m, Some(&old), |s| {
        assert!(s.is_empty(), "a rotated key reads data");
        assert_eq!(s.get_value("user"), None);
        s.insert_value("late", json!(1))
            .unwrap_or_else(|e| panic!("insert: {e}"));
    })
    .await;
    let commit = must_commit(commit);
    assert_eq!(
        commit.cookie,
        CookieAction::Keep,
        "the login cookie would be clobbered"
    );
    assert!(commit.writes_dropped);
    if fx.caps.remembers_ended {
        assert!(late.ended_elsewhere());
    }
    let (s, _) = browse(&m, Some(&new), |_| {}).await;
    assert_eq!(
        s.get_value("late"),
        None,
        "a write through the old key landed"
    );
    assert_eq!(s.get_value("user"), Some(json!("ada")));
    fx.finish().await;
}

/// "After the grace period the key is simply unknown, and a request holding it gets its
/// cookie removed"; so does a request whose well-formed key was never known.
pub async fn lifecycle_unknown_and_forgotten_keys_get_their_cookie_removed(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_tokens_carry_their_data(&fx).await;
        fx.finish().await;
        return;
    }
    let m = manager_for(&fx.store, Duration::milliseconds(200));
    let unknown = SessionKey::generate();
    let (_, commit) = browse(&m, Some(unknown.as_str()), |s| {
        assert!(s.is_empty());
    })
    .await;
    assert!(matches!(
        must_commit(commit).cookie,
        CookieAction::Remove(_)
    ));
    let old = logged_in(&m, "n", json!(1)).await;
    let (_, logout) = browse(&m, Some(&old), Session::flush).await;
    must_commit(logout);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (s, commit) = browse(&m, Some(&old), |s| {
        assert!(s.is_empty());
    })
    .await;
    assert!(!s.ended_elsewhere(), "the grace period did not end");
    assert!(matches!(
        must_commit(commit).cookie,
        CookieAction::Remove(_)
    ));
    fx.finish().await;
}

/// "values that can never be keys of this store are skipped without I/O; among the
/// remaining candidates, the first that names a live session wins."
pub async fn lifecycle_tossed_cookies_pick_the_first_live_session(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let m = manager_for(&fx.store, Duration::minutes(1));
    let real = logged_in(&m, "user", json!("ada")).await;
    let planted = SessionKey::generate();
    let header = format!(
        "sessionid=../../x; other=1; sessionid={}; sessionid={real}",
        planted.as_str()
    );
    let lazy = m.lazy_from_cookie_headers([header.as_str()]);
    let s = lazy.load().await.unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(
        s.get_value("user"),
        Some(json!("ada")),
        "a planted cookie won"
    );
    s.insert_value("n", json!(1))
        .unwrap_or_else(|e| panic!("insert: {e}"));
    let commit = must_commit(m.commit(&lazy, 200).await);
    assert!(commit.written, "{commit:?}");
    if fx.caps.server_side {
        // Saved under the real key, and no other key's cookie sent.
        assert_eq!(s.key().map(|k| k.as_str().to_owned()), Some(real.clone()));
        assert!(set_value(&commit).is_none_or(|v| v == real), "{commit:?}");
    }
    fx.finish().await;
}

/// "A read-modify-write can be expressed as a function of the stored value, applied at
/// commit on the freshest data, so concurrent increments all land without a conflict."
pub async fn lifecycle_concurrent_updates_all_land(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    if !fx.caps.server_side {
        client_side_tokens_carry_their_data(&fx).await;
        fx.finish().await;
        return;
    }
    let m = manager_for(&fx.store, Duration::minutes(1));
    let key = logged_in(&m, "visits", json!(0)).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (m, key) = (m.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let (_, commit) = browse(&m, Some(&key), |s| {
                        s.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
                            .unwrap_or_else(|e| panic!("update: {e}"));
                    })
                    .await;
                    must_commit(commit);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("task failed: {e}"));
    }
    let (s, _) = browse(&m, Some(&key), |_| {}).await;
    assert_eq!(
        s.get::<u64>("visits").ok().flatten(),
        Some(80),
        "increments were lost"
    );
    fx.finish().await;
}

/// "What save accepts, load must return": random values up to
/// [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH) levels deep, with floats, large integers
/// and unicode, round-trip through the store exactly.
pub async fn lifecycle_every_accepted_value_round_trips(factory: &dyn Factory) {
    let fx = Fixture::new(factory).await;
    let m = manager_for(&fx.store, Duration::minutes(1));
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let small = !fx.caps.server_side;
    for round in 0..24 {
        let value = if round == 0 {
            deepest_value()
        } else {
            random_value(&mut rng, if small { 3 } else { 6 }, small)
        };
        let (_, commit) = browse(&m, None, |s| {
            s.insert_value("v", value.clone())
                .unwrap_or_else(|e| panic!("an acceptable value was refused: {e}"));
        })
        .await;
        let commit = must_commit(commit);
        let key = set_value(&commit).unwrap_or_else(|| panic!("no cookie: {commit:?}"));
        let (s, _) = browse(&m, Some(&key), |_| {}).await;
        assert_eq!(
            s.get_value("v"),
            Some(value),
            "round {round} changed the value"
        );
    }
    fx.finish().await;
}

/// The deepest value a session accepts.
fn deepest_value() -> Value {
    let mut v = json!("leaf");
    for i in 0..crate::MAX_VALUE_DEPTH {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

fn next(rng: &mut u64) -> u64 {
    // xorshift64*: deterministic, so a failure replays.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn random_value(rng: &mut u64, depth: usize, small: bool) -> Value {
    let width = if small { 3 } else { 6 };
    match next(rng) % if depth == 0 { 6 } else { 8 } {
        0 => Value::Null,
        1 => Value::Bool(next(rng).is_multiple_of(2)),
        2 => json!(next(rng)),
        3 => json!(i64::from_ne_bytes(next(rng).to_ne_bytes())),
        4 => {
            let f = f64::from_bits(next(rng));
            if f.is_finite() {
                json!(f)
            } else {
                json!(next(rng) % 1000)
            }
        }
        5 => {
            let pool = ['a', 'é', '€', '𝄞', '\u{0}', '"', '\\', '\n', '😀', 'ß'];
            let len = usize::try_from(next(rng) % 12).unwrap_or(0);
            let text: String = (0..len)
                .map(|_| pool[usize::try_from(next(rng) % 10).unwrap_or(0)])
                .collect();
            Value::String(text)
        }
        6 => Value::Array(
            (0..next(rng) % width)
                .map(|_| random_value(rng, depth - 1, small))
                .collect(),
        ),
        _ => Value::Object(
            (0..next(rng) % width)
                .map(|i| {
                    (
                        format!("k{i}·{}", next(rng) % 100),
                        random_value(rng, depth - 1, small),
                    )
                })
                .collect(),
        ),
    }
}

tokio::task_local! {
    static FORCED_KEY: SessionKey;
}

/// Runs `fut` with every [`SessionKey::generate`] inside it (on this task) returning
/// `key`: the hook a check uses to force collisions.
pub async fn with_forced_key<F: Future>(key: SessionKey, fut: F) -> F::Output {
    FORCED_KEY.scope(key, fut).await
}

/// The key [`with_forced_key`] forces on the current task, if any.
pub(crate) fn forced_key() -> Option<SessionKey> {
    FORCED_KEY.try_with(SessionKey::clone).ok()
}

/// Expands to one `#[test]` per conformance check, in a module of the given name.
///
/// The factory is any expression implementing [`Factory`](crate::conformance::Factory):
/// [`PerNamespace`](crate::conformance::PerNamespace) for a store without namespaces of its
/// own, or an async closure from a namespace to a store. Add `ignore = "reason"` to mark
/// every test of a store that needs a service; run them with
/// `cargo test -- --include-ignored`, where a missing service fails loudly.
///
/// Each test runs its check on a multi-threaded Tokio runtime of its own; the calling
/// crate needs no Tokio dependency.
///
/// ```
/// use session_core::MemoryStore;
/// use session_core::conformance::PerNamespace;
/// session_core::conformance_tests!(memory_store, PerNamespace::new(|| async { MemoryStore::new() }));
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $factory:expr $(,)?) => {
        $crate::conformance_tests!(@emit $name, $factory, []);
    };
    ($name:ident, $factory:expr, ignore = $reason:literal $(,)?) => {
        $crate::conformance_tests!(@emit $name, $factory, [#[ignore = $reason]]);
    };
    (@emit $name:ident, $factory:expr, [$($attr:tt)*]) => {
        #[allow(unreachable_pub, missing_docs)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_checks!((tests $factory, [$($attr)*]));
        }
    };
}

/// The one list of checks, in order, handed to [`__conformance_emit!`]: the macro's tests
/// and [`CHECKS`] both come from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($mode:tt) => {
        $crate::__conformance_emit! { $mode
            create_then_load_round_trips_every_json_type,
            unicode_keys_and_values_round_trip,
            empty_record_round_trips,
            large_record_round_trips,
            create_sets_version_one,
            create_issues_well_formed_keys,
            keys_never_collide_across_10000_creates,
            create_never_overwrites,
            load_unknown_key_is_none,
            load_malformed_key_is_none,
            load_expired_record_is_none,
            record_expires_when_its_time_passes,
            expiry_override_round_trips,
            expires_at_keeps_millisecond_precision,
            save_increments_version,
            save_replaces_the_data,
            save_with_stale_version_is_conflict,
            save_with_newer_version_is_conflict,
            save_unknown_key_is_not_found,
            save_expired_key_is_not_found,
            save_after_delete_is_not_found,
            save_moves_expires_at,
            save_and_touch_with_malformed_key_are_refused,
            touch_moves_only_the_expiry,
            touch_unknown_key_is_not_found,
            touch_into_the_past_expires_the_record,
            delete_removes_the_record,
            delete_is_idempotent,
            clear_expired_removes_exactly_the_expired,
            clear_expired_with_nothing_expired_is_zero,
            concurrent_creates_are_all_kept,
            concurrent_saves_of_one_version_have_one_winner,
            concurrent_saves_of_different_sessions_all_succeed,
            second_handle_sees_the_same_records,
            namespaces_are_isolated,
            load_changes_nothing,
            end_at_the_stored_version_ends_the_session,
            end_with_another_version_is_conflict,
            end_unknown_or_expired_key_is_not_found,
            ended_marker_is_forgotten_after_its_instant,
            concurrent_ends_of_one_version_have_one_winner,
            end_racing_a_save_has_one_winner,
            create_gives_up_when_every_key_collides,
            lifecycle_logout_is_not_undone_by_a_concurrent_rotation,
            lifecycle_two_concurrent_rotations_have_one_winner,
            lifecycle_rotation_keeps_a_concurrent_save,
            lifecycle_a_key_ended_moments_ago_gets_nothing_and_sets_no_cookie,
            lifecycle_unknown_and_forgotten_keys_get_their_cookie_removed,
            lifecycle_tossed_cookies_pick_the_first_live_session,
            lifecycle_concurrent_updates_all_land,
            lifecycle_every_accepted_value_round_trips,
        }
    };
}

/// Emits, for the list of checks, either their names or one test each.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_emit {
    ((names) $($check:ident,)*) => {
        /// The names of every check, in the order [`conformance_tests!`](crate::conformance_tests)
        /// emits them.
        pub const CHECKS: &[&str] = &[$(stringify!($check)),*];
    };
    ((tests $factory:expr, $attrs:tt) $($check:ident,)*) => {
        $( $crate::__conformance_emit!(@one $factory, $attrs, $check); )*
    };
    (@one $factory:expr, [$($attr:tt)*], $check:ident) => {
        #[test]
        $($attr)*
        fn $check() {
            $crate::conformance::run_check(async {
                let factory = $factory;
                $crate::conformance::$check(&factory).await;
            });
        }
    };
}

crate::__conformance_checks!((names));

/// Runs one check on a multi-threaded Tokio runtime of its own (what the tests
/// [`conformance_tests!`](crate::conformance_tests) emits call).
///
/// # Panics
///
/// When no runtime can be built, or the check fails: a check reports failure by panicking.
pub fn run_check(check: impl Future<Output = ()>) {
    #[allow(clippy::expect_used)] // a test that cannot get a runtime must fail loudly
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the check")
        .block_on(check);
}

/// A [`Factory`] for a store without namespaces of its own (an in-process store, a store
/// a test opens afresh): the first `open` of a namespace calls `open_store`, later ones
/// hand out the same store again, so that two handles on one namespace share their
/// records and different namespaces never do.
pub struct PerNamespace<F> {
    open_store: F,
    stores: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Store>>>,
}

impl<F> PerNamespace<F> {
    /// A factory opening one store per namespace with `open_store`.
    pub fn new(open_store: F) -> Self {
        Self {
            open_store,
            stores: std::sync::Mutex::default(),
        }
    }

    fn stores(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<dyn Store>>> {
        self.stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<F> std::fmt::Debug for PerNamespace<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerNamespace")
            .field("namespaces", &self.stores().len())
            .finish()
    }
}

#[async_trait]
impl<F, Fut, S> Factory for PerNamespace<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send,
    S: Store,
{
    async fn open(&self, ns: &str) -> Arc<dyn Store> {
        if let Some(store) = self.stores().get(ns) {
            return store.clone();
        }
        let store: Arc<dyn Store> = Arc::new((self.open_store)().await);
        self.stores().entry(ns.to_owned()).or_insert(store).clone()
    }

    async fn cleanup(&self, ns: &str) {
        self.stores().remove(ns);
    }
}
