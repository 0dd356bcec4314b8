//! `CookieStore` against the conformance suite, plus the cookie-specific checks: format
//! pins, tampering, modes, secrets, rotation, size limits and redaction.

use std::future::Future;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};
use session_core::{Capabilities, Data, Error, Expiry, Record, SessionKey, Store, from_unix_millis};
use session_signed_cookie::{BuildError, CookieStore, MIN_SECRET_LEN, Mode};
use time::{Duration, OffsetDateTime};

const SECRET: &[u8; 32] = b"conformance-secret-0123456789abc";

fn signed(ns: &str) -> CookieStore {
    CookieStore::signed(SECRET)
        .with_cookie_name(ns)
        .build()
        .expect("valid configuration")
}

fn encrypted(ns: &str) -> CookieStore {
    CookieStore::encrypted(SECRET)
        .with_cookie_name(ns)
        .build()
        .expect("valid configuration")
}

session_core::conformance_tests!(signed_mode, |ns: String| async move { signed(&ns) });
session_core::conformance_tests!(encrypted_mode, |ns: String| async move { encrypted(&ns) });

// ---------------------------------------------------------------------------------------
// Helpers

/// The store methods never wait on anything; one small runtime drives them in sync tests.
fn block<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
    .block_on(f)
}

const MODES: [Mode; 2] = [Mode::Signed, Mode::Encrypted];

fn store(mode: Mode, secret: &[u8]) -> CookieStore {
    CookieStore::builder(mode, secret)
        .build()
        .expect("valid configuration")
}

fn in_an_hour() -> OffsetDateTime {
    // Whole milliseconds, so a loaded record compares equal.
    let now = session_core::unix_millis(OffsetDateTime::now_utc());
    from_unix_millis(now + 3_600_000).expect("in range")
}

fn sample() -> Record {
    let mut data = Data::new();
    data.insert("user".into(), json!("ada"));
    data.insert("cart".into(), json!([1, 2, {"sku": "x-1"}]));
    Record::new(data, in_an_hour())
}

fn create(store: &CookieStore, record: &Record) -> SessionKey {
    block(store.create(record)).expect("create")
}

fn load(store: &CookieStore, key: &SessionKey) -> Option<Record> {
    block(store.load(key)).expect("load never fails")
}

/// Loads a raw string: a value that is not even a cookie-safe key is refused as well.
fn load_str(store: &CookieStore, value: &str) -> Option<Record> {
    let key = SessionKey::parse(value).ok()?;
    load(store, &key)
}

fn raw(key: &SessionKey) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(key.as_str()).expect("tokens are base64url")
}

fn token(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

fn assert_refused(store: &CookieStore, value: &str, what: &str) {
    assert!(
        load_str(store, value).is_none(),
        "{what}: a modified cookie loaded"
    );
    if let Ok(key) = SessionKey::parse(value) {
        let mut r = sample();
        r.version = 1;
        assert!(
            matches!(block(store.save(&key, &r)), Err(Error::NotFound)),
            "{what}: save accepted a modified cookie"
        );
        assert!(
            matches!(block(store.touch(&key, in_an_hour())), Err(Error::NotFound)),
            "{what}: touch accepted a modified cookie"
        );
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths print and parse back exactly.
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_record() -> impl Strategy<Value = Record> {
    let expiry = prop_oneof![
        Just(None),
        Just(Some(Expiry::BrowserSession)),
        (1i64..10_000_000).prop_map(|ms| Some(Expiry::OnInactivity(Duration::milliseconds(ms)))),
        (0i64..4_000_000_000_000)
            .prop_map(|ms| Some(Expiry::AtDateTime(from_unix_millis(ms).expect("in range")))),
    ];
    (
        prop::collection::btree_map("\\PC{0,12}", arb_value(), 0..6),
        expiry,
        1i64..1_000_000_000_000,
    )
        .prop_map(|(data, expiry, ahead)| {
            let at = session_core::unix_millis(OffsetDateTime::now_utc()) + 60_000 + ahead;
            let mut r = Record::new(
                data.into_iter().collect(),
                from_unix_millis(at).expect("in range"),
            );
            r.expiry = expiry;
            r
        })
}

fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Signed), Just(Mode::Encrypted)]
}

// ---------------------------------------------------------------------------------------
// Known answers: these pin the format. If one fails, existing cookies would break.

const KAT_SECRET: &[u8; 32] = b"known-answer-test-secret-32bytes";
const KAT_OLD_SECRET: &[u8; 32] = b"an-older-secret-for-rotation-kat";

/// `{"n":1,"user":"ada"}`, expiry `OnInactivity(30 min)`, expires 2100-01-01T00:00:00Z.
fn kat_record() -> Record {
    let mut data = Data::new();
    data.insert("user".into(), json!("ada"));
    data.insert("n".into(), json!(1));
    let mut r = Record::new(data, from_unix_millis(4_102_444_800_000).expect("in range"));
    r.expiry = Some(Expiry::OnInactivity(Duration::minutes(30)));
    r
}

/// [`kat_record`], version 1, signed with [`KAT_SECRET`], cookie `sessionid`.
const KAT_SIGNED: &str = "AQF6y_OxAAAAAAAAAAEAAAO7LMPYAHsiZCI6eyJuIjoxLCJ1c2VyIjoiYWRhIn0sIngiOnsiaSI6MTgwMDAwMH19cNC5IjR7r1aa78OyiwA3Dv-VJyF0w0W67SIzLKtZuLU";
/// The same record, version 1, encrypted with [`KAT_SECRET`], cookie `sessionid`, nonce
/// `00 01 .. 0b` (the crate's unit tests pin the encoding side with that nonce).
const KAT_ENCRYPTED: &str = "AQLsfrZ-AAECAwQFBgcICQoLTVi85b6ClqR3YHHx8J96mXX_pMdHovnhMh33gEzJESEzf1ZONB4w5_yewWuz0p83IY4-Reo-cz7nrf8gtqf7GsRjDx-U6ZCJgwiVAQ";
/// [`kat_record`], version 1, signed with [`KAT_OLD_SECRET`], cookie `sessionid`.
const KAT_SIGNED_OLD: &str = "AQHaWJYSAAAAAAAAAAEAAAO7LMPYAHsiZCI6eyJuIjoxLCJ1c2VyIjoiYWRhIn0sIngiOnsiaSI6MTgwMDAwMH19DjfVP3eVtormJypy3Wxkxr0oE8VUIFXcoQATxiYXqjc";

#[test]
fn signed_known_answer_encodes_exactly() {
    let current = store(Mode::Signed, KAT_SECRET);
    assert_eq!(create(&current, &kat_record()).as_str(), KAT_SIGNED);
    let old = store(Mode::Signed, KAT_OLD_SECRET);
    assert_eq!(create(&old, &kat_record()).as_str(), KAT_SIGNED_OLD);
}

#[test]
fn known_answers_decode() {
    let mut want = kat_record();
    want.version = 1;
    for (mode, value) in [(Mode::Signed, KAT_SIGNED), (Mode::Encrypted, KAT_ENCRYPTED)] {
        let got = load_str(&store(mode, KAT_SECRET), value);
        assert_eq!(got.as_ref(), Some(&want), "{mode:?}");
    }
    let rotated = CookieStore::signed(KAT_SECRET)
        .with_previous_secret(KAT_OLD_SECRET)
        .build()
        .expect("valid configuration");
    assert_eq!(load_str(&rotated, KAT_SIGNED_OLD), Some(want));
}

#[test]
fn signed_cookies_are_readable_by_the_client() {
    let raw = raw(&SessionKey::parse(KAT_SIGNED).expect("cookie-safe"));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(r#"{"d":{"n":1,"user":"ada"},"x":{"i":1800000}}"#));
    let raw = raw_of(KAT_ENCRYPTED);
    assert!(!String::from_utf8_lossy(&raw).contains("ada"));
}

fn raw_of(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).expect("base64url")
}
