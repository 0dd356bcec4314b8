//! Model-based property test: random sequences of `create` / `load` / `save` / `touch` /
//! `delete` / `clear_expired` run against a store and against a plain in-memory model, and
//! the two must agree after every step (results, errors, loaded data and versions).
//!
//! Expiries are either at least a second in the past or at least ten minutes ahead, so no
//! step depends on timing. Embedded stores run in the default `cargo test`; the
//! service-backed ones need `SESSION_TEST_{POSTGRES,MYSQL,REDIS}_URL` and
//! `-- --include-ignored`. The client-side cookie store has a model of its own: every token
//! is a self-contained snapshot, `delete` revokes nothing, and an old token still saves.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::Value;
use session_core::{Data, Error, Expiry, Record, SessionKey, Store, from_unix_millis, unix_millis};
use time::{Duration, OffsetDateTime};

use session_tests::{Kind, Opened, open};

/// How far from "now" an expiry lies, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct ExpSpec(i64);

impl ExpSpec {
    fn at(self) -> OffsetDateTime {
        // Millisecond precision: what every store keeps.
        let now = unix_millis(OffsetDateTime::now_utc());
        from_unix_millis(now + self.0).unwrap()
    }
}

fn exp_spec() -> impl Strategy<Value = ExpSpec> {
    prop_oneof![
        // In the past: between one second and two days ago.
        (1_000i64..172_800_000).prop_map(|ms| ExpSpec(-ms)),
        // Ahead: between ten minutes and two days from now.
        (600_000i64..172_800_000).prop_map(ExpSpec),
    ]
}

#[derive(Clone, Debug)]
struct RecSpec {
    data: Vec<(String, Value)>,
    expiry: Option<ExpirySpec>,
    expires: ExpSpec,
    /// What `record.version` says on `create` (the store must ignore it).
    version: u64,
}

#[derive(Clone, Copy, Debug)]
enum ExpirySpec {
    Browser,
    Inactivity(i64),
    At(i64),
}

impl RecSpec {
    fn record(&self, version: u64) -> Record {
        let data: Data = self.data.iter().cloned().collect();
        let mut r = Record::new(data, self.expires.at());
        r.expiry = self.expiry.map(|e| match e {
            ExpirySpec::Browser => Expiry::BrowserSession,
            ExpirySpec::Inactivity(s) => Expiry::OnInactivity(Duration::seconds(s)),
            ExpirySpec::At(ms) => Expiry::AtDateTime(from_unix_millis(ms).unwrap()),
        });
        r.version = version;
        r
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zé☃ ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::vec(("[a-c]", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn rec_spec() -> impl Strategy<Value = RecSpec> {
    let key = prop_oneof![
        Just("user".to_owned()),
        Just("cart".to_owned()),
        Just("ключ".to_owned()),
        "[a-z]{1,6}",
    ];
    let expiry = prop_oneof![
        Just(None),
        Just(Some(ExpirySpec::Browser)),
        (1i64..100_000).prop_map(|s| Some(ExpirySpec::Inactivity(s))),
        (1_600_000_000_000i64..2_000_000_000_000).prop_map(|ms| Some(ExpirySpec::At(ms))),
    ];
    (
        prop::collection::vec((key, value()), 0..4),
        expiry,
        exp_spec(),
        any::<u64>(),
    )
        .prop_map(|(data, expiry, expires, version)| RecSpec {
            data,
            expiry,
            expires,
            version,
        })
}

/// Which key an operation uses.
#[derive(Clone, Debug)]
enum KeyPick {
    /// One of the keys returned so far (index modulo their number); deleted ones included.
    Known(usize),
    /// A well-formed key no store ever issued.
    Unknown,
    /// A cookie-safe value that is not of the generated shape.
    Odd(&'static str),
}

fn key_pick() -> impl Strategy<Value = KeyPick> {
    prop_oneof![
        8 => any::<usize>().prop_map(KeyPick::Known),
        1 => Just(KeyPick::Unknown),
        1 => prop::sample::select(vec![
            "../../etc/passwd",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            "short",
            "abcdefghijklmnopqrstuvwxyz0123456",
            "a.b-c_d",
        ])
        .prop_map(KeyPick::Odd),
    ]
}

/// Which version a `save` claims.
#[derive(Clone, Copy, Debug)]
enum VersionPick {
    /// The model's current version of that key (the save should succeed if it is live).
    Current,
    /// The current version plus this (non-zero) offset: a stale or future version.
    Off(i8),
}

#[derive(Clone, Debug)]
enum Op {
    Create(RecSpec),
    Load(KeyPick),
    Save(KeyPick, VersionPick, RecSpec),
    Touch(KeyPick, ExpSpec),
    Delete(KeyPick),
    ClearExpired,
}

fn op() -> impl Strategy<Value = Op> {
    let version = prop_oneof![
        3 => Just(VersionPick::Current),
        1 => prop_oneof![-3i8..=-1, 1i8..=3].prop_map(VersionPick::Off),
    ];
    prop_oneof![
        3 => rec_spec().prop_map(Op::Create),
        4 => key_pick().prop_map(Op::Load),
        4 => (key_pick(), version, rec_spec()).prop_map(|(k, v, r)| Op::Save(k, v, r)),
        2 => (key_pick(), exp_spec()).prop_map(|(k, e)| Op::Touch(k, e)),
        2 => key_pick().prop_map(Op::Delete),
        1 => Just(Op::ClearExpired),
    ]
}

/// What the model keeps per key.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    version: u64,
    data: Data,
    expiry: Option<Expiry>,
    expires_at: OffsetDateTime,
}

impl Entry {
    fn of(r: &Record, version: u64) -> Self {
        Self {
            version,
            data: (*r.data).clone(),
            expiry: r.expiry,
            expires_at: r.expires_at,
        }
    }

    fn live(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now
    }
}

/// A result reduced to what the model predicts.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    Loaded(Option<Entry>),
    Cleared(u64),
    Conflict,
    NotFound,
    InvalidKey,
    Other(String),
}

fn outcome_err(e: &Error) -> Outcome {
    match e {
        Error::Conflict => Outcome::Conflict,
        Error::NotFound => Outcome::NotFound,
        Error::InvalidKey => Outcome::InvalidKey,
        other => Outcome::Other(other.to_string()),
    }
}

/// Server-side model: one entry per issued key. Client-side model: one immutable
/// snapshot per issued token.
struct Model {
    client_side: bool,
    expires_by_itself: bool,
    entries: HashMap<String, Entry>,
    /// Every key (or token) returned so far, in order.
    keys: Vec<SessionKey>,
}

impl Model {
    fn key(&self, pick: &KeyPick) -> SessionKey {
        match pick {
            KeyPick::Known(i) if !self.keys.is_empty() => self.keys[i % self.keys.len()].clone(),
            KeyPick::Known(_) | KeyPick::Unknown => SessionKey::generate(),
            KeyPick::Odd(s) => SessionKey::parse(s).unwrap(),
        }
    }

    fn shape_ok(&self, key: &SessionKey) -> bool {
        self.client_side || key.is_generated_shape()
    }

    fn live(&self, key: &SessionKey, now: OffsetDateTime) -> Option<&Entry> {
        self.entries.get(key.as_str()).filter(|e| e.live(now))
    }
}

thread_local! {
    /// The tally of the run on this thread (each test runs its cases on one thread).
    static SEEN: std::cell::RefCell<Option<Arc<Seen>>> = const { std::cell::RefCell::new(None) };
}

struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How often each outcome was seen over all cases: a run that never conflicted or never
/// loaded anything would prove little.
#[derive(Debug, Default)]
struct Seen {
    loaded: AtomicU64,
    saved: AtomicU64,
    conflict: AtomicU64,
    not_found: AtomicU64,
    invalid_key: AtomicU64,
}

impl Seen {
    fn note(&self, o: &Outcome) {
        let c = match o {
            Outcome::Loaded(Some(_)) => &self.loaded,
            Outcome::Ok => &self.saved,
            Outcome::Conflict => &self.conflict,
            Outcome::NotFound => &self.not_found,
            Outcome::InvalidKey => &self.invalid_key,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn assert_covered(&self, server_side: bool) {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert!(n(&self.loaded) > 0, "no load ever found a record: {self:?}");
        assert!(
            n(&self.saved) > 0,
            "no save or touch ever succeeded: {self:?}"
        );
        assert!(n(&self.conflict) > 0, "no save ever conflicted: {self:?}");
        assert!(
            n(&self.not_found) > 0,
            "no save or touch ever missed: {self:?}"
        );
        if server_side {
            assert!(
                n(&self.invalid_key) > 0,
                "no odd key was ever refused: {self:?}"
            );
        }
    }
}

fn check(step: usize, op: &Op, got: Outcome, want: Outcome) -> Result<(), TestCaseError> {
    SEEN.with(|s| {
        if let Some(s) = s.borrow().as_ref() {
            s.note(&got);
        }
    });
    if got == want {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "step {step}: {op:?}\n  store: {got:?}\n  model: {want:?}"
        )))
    }
}

async fn run_case(store: &dyn Store, ops: &[Op]) -> Result<(), TestCaseError> {
    let caps = store.capabilities();
    // Expired records of earlier cases would count in this case's clear_expired.
    store.clear_expired().await.unwrap();
    let mut m = Model {
        client_side: !caps.server_side,
        expires_by_itself: caps.expires_by_itself,
        entries: HashMap::new(),
        keys: Vec::new(),
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Create(spec) => {
                let record = spec.record(spec.version);
                match store.create(&record).await {
                    Ok(key) => {
                        if !m.client_side {
                            prop_assert!(key.is_generated_shape(), "step {step}: odd key");
                        }
                        let fresh = m
                            .entries
                            .insert(key.as_str().to_owned(), Entry::of(&record, 1));
                        prop_assert!(fresh.is_none(), "step {step}: create reused a key");
                        m.keys.push(key);
                    }
                    Err(e) => check(step, op, outcome_err(&e), Outcome::Ok)?,
                }
            }
            Op::Load(pick) => {
                let key = m.key(pick);
                let got = match store.load(&key).await {
                    Ok(r) => Outcome::Loaded(r.map(|r| Entry::of(&r, r.version))),
                    Err(e) => outcome_err(&e),
                };
                let now = OffsetDateTime::now_utc();
                let want = Outcome::Loaded(m.live(&key, now).cloned());
                check(step, op, got, want)?;
            }
            Op::Save(pick, vpick, spec) => {
                let key = m.key(pick);
                let now = OffsetDateTime::now_utc();
                let current = m.live(&key, now).map(|e| e.version);
                let version = match (vpick, current) {
                    (VersionPick::Current, Some(v)) => v,
                    (VersionPick::Off(d), Some(v)) => v.saturating_add_signed(i64::from(*d)),
                    (_, None) => spec.version % 8,
                };
                let record = spec.record(version);
                let want = if !m.shape_ok(&key) {
                    Outcome::InvalidKey
                } else {
                    match current {
                        None => Outcome::NotFound,
                        Some(v) if v != version => Outcome::Conflict,
                        Some(_) => Outcome::Ok,
                    }
                };
                let got = match store.save(&key, &record).await {
                    Ok(new_key) => {
                        let entry = Entry::of(&record, version + 1);
                        if m.client_side {
                            m.entries.insert(new_key.as_str().to_owned(), entry);
                            m.keys.push(new_key);
                        } else {
                            prop_assert_eq!(&new_key, &key, "step {}: save changed the key", step);
                            m.entries.insert(key.as_str().to_owned(), entry);
                        }
                        Outcome::Ok
                    }
                    Err(e) => outcome_err(&e),
                };
                check(step, op, got, want)?;
            }
            Op::Touch(pick, exp) => {
                let key = m.key(pick);
                let at = exp.at();
                let now = OffsetDateTime::now_utc();
                let current = m.live(&key, now).cloned();
                let want = if !m.shape_ok(&key) {
                    Outcome::InvalidKey
                } else if current.is_some() {
                    Outcome::Ok
                } else {
                    Outcome::NotFound
                };
                let got = match store.touch(&key, at).await {
                    Ok(new_key) => {
                        if let Some(mut entry) = current {
                            entry.expires_at = at;
                            if m.client_side {
                                m.entries.insert(new_key.as_str().to_owned(), entry);
                                m.keys.push(new_key);
                            } else {
                                prop_assert_eq!(
                                    &new_key,
                                    &key,
                                    "step {}: touch changed the key",
                                    step
                                );
                                m.entries.insert(key.as_str().to_owned(), entry);
                            }
                        }
                        Outcome::Ok
                    }
                    Err(e) => outcome_err(&e),
                };
                check(step, op, got, want)?;
            }
            Op::Delete(pick) => {
                let key = m.key(pick);
                let got = match store.delete(&key).await {
                    Ok(()) => Outcome::Ok,
                    Err(e) => outcome_err(&e),
                };
                if !m.client_side {
                    // A client-side store cannot revoke a token the client keeps.
                    m.entries.remove(key.as_str());
                }
                check(step, op, got, Outcome::Ok)?;
            }
            Op::ClearExpired => {
                let got = store.clear_expired().await;
                let now = OffsetDateTime::now_utc();
                let expired = if m.client_side {
                    0
                } else {
                    let before = m.entries.len();
                    m.entries.retain(|_, e| e.live(now));
                    u64::try_from(before - m.entries.len()).unwrap()
                };
                match got {
                    // A medium that expires records by itself may have removed them already.
                    Ok(n) if m.expires_by_itself && n <= expired => {}
                    Ok(n) => check(step, op, Outcome::Cleared(n), Outcome::Cleared(expired))?,
                    Err(e) => check(step, op, outcome_err(&e), Outcome::Cleared(expired))?,
                }
            }
        }
    }
    // The whole state agrees at the end too.
    let now = OffsetDateTime::now_utc();
    for key in &m.keys {
        let got = store
            .load(key)
            .await
            .unwrap()
            .map(|r| Entry::of(&r, r.version));
        prop_assert_eq!(got, m.live(key, now).cloned(), "final state of {:?}", key);
    }
    // Leave nothing behind on a shared medium.
    for key in &m.keys {
        store.delete(key).await.unwrap();
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The runner's seed. Fixed, so that every run (and every store) replays the same
/// sequences and the coverage assertions never depend on luck; `PROPTEST_RNG_SEED` in the
/// environment explores other sequences.
fn seed() -> RngSeed {
    std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(RngSeed::Fixed(0x5e55_1045), RngSeed::Fixed)
}

/// Runs `cases` random sequences of up to `max_ops` operations against the store `open`
/// gives.
fn run<F: Future<Output = Opened>>(cases: u32, max_ops: usize, open: impl FnOnce() -> F) {
    let rt = runtime();
    let opened = rt.block_on(open());
    let store = opened.store.clone();
    let seen = Arc::new(Seen::default());
    SEEN.with(|s| *s.borrow_mut() = Some(seen.clone()));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: seed(),
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..=max_ops), |ops| {
        rt.block_on(run_case(store.as_ref(), &ops))
    });
    rt.block_on(opened.finish());
    if let Err(e) = result {
        panic!("{:?}", Failure(e.to_string()));
    }
    seen.assert_covered(store.capabilities().server_side);
}

const CASES: u32 = 32;
const OPS: usize = 40;
const SERVICE_CASES: u32 = CASES;
const SERVICE_OPS: usize = 40;

#[test]
fn memory_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::Memory));
}

#[test]
fn moka_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::Moka));
}

#[test]
fn sqlite_in_memory_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::SqliteMemory));
}

#[test]
fn sqlite_file_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::SqliteFile));
}

#[test]
fn file_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::File));
}

#[test]
fn cached_moka_sqlite_store_agrees_with_the_model() {
    run(CASES, OPS, || open(Kind::CachedMokaSqlite));
}

#[test]
fn signed_cookie_store_agrees_with_the_cookie_model() {
    run(CASES, OPS, || open(Kind::CookieSigned));
}

#[test]
fn encrypted_cookie_store_agrees_with_the_cookie_model() {
    run(CASES, OPS, || open(Kind::CookieEncrypted));
}

#[test]
#[ignore = "needs SESSION_TEST_POSTGRES_URL"]
fn postgres_store_agrees_with_the_model() {
    run(SERVICE_CASES, SERVICE_OPS, || open(Kind::Postgres));
}

#[test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
fn mysql_store_agrees_with_the_model() {
    run(SERVICE_CASES, SERVICE_OPS, || open(Kind::MySql));
}

#[test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
fn redis_store_agrees_with_the_model() {
    run(SERVICE_CASES, SERVICE_OPS, || open(Kind::Redis));
}

#[test]
#[ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL"]
fn cached_redis_postgres_store_agrees_with_the_model() {
    run(SERVICE_CASES, SERVICE_OPS, || {
        open(Kind::CachedRedisPostgres)
    });
}

/// The model itself is not vacuous: a store that forgets versions is caught.
#[test]
fn the_model_catches_a_store_that_ignores_versions() {
    #[derive(Debug, Default)]
    struct Careless(session_core::MemoryStore);

    #[session_core::async_trait]
    impl Store for Careless {
        async fn create(&self, r: &Record) -> session_core::Result<SessionKey> {
            self.0.create(r).await
        }
        async fn load(&self, k: &SessionKey) -> session_core::Result<Option<Record>> {
            self.0.load(k).await
        }
        async fn save(&self, k: &SessionKey, r: &Record) -> session_core::Result<SessionKey> {
            // Blind overwrite: takes whatever version is stored.
            k.require_generated_shape()?;
            let stored = self.0.load(k).await?.ok_or(Error::NotFound)?;
            let r = Record {
                version: stored.version,
                ..r.clone()
            };
            self.0.save(k, &r).await
        }
        async fn touch(
            &self,
            k: &SessionKey,
            at: OffsetDateTime,
        ) -> session_core::Result<SessionKey> {
            self.0.touch(k, at).await
        }
        async fn delete(&self, k: &SessionKey) -> session_core::Result<()> {
            self.0.delete(k).await
        }
        async fn end(
            &self,
            k: &SessionKey,
            version: u64,
            until: OffsetDateTime,
        ) -> session_core::Result<()> {
            self.0.end(k, version, until).await
        }
        async fn clear_expired(&self) -> session_core::Result<u64> {
            self.0.clear_expired().await
        }
        fn capabilities(&self) -> session_core::Capabilities {
            session_core::Capabilities::server_side()
        }
    }

    let rt = runtime();
    let store = Careless::default();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..=OPS), |ops| {
        rt.block_on(run_case(&store, &ops))
    });
    let message = format!("{:?}", result.expect_err("the careless store is caught"));
    assert!(message.contains("Conflict"), "{message}");
}
