//! `CookieStore` against the conformance suite, plus the cookie-specific checks: format
//! pins, tampering, modes, secrets, rotation, size limits and redaction.

use std::future::Future;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};
use session_core::{
    Capabilities, Data, Error, Expiry, Lookup, Record, SessionKey, Store, from_unix_millis,
};
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
    URL_SAFE_NO_PAD
        .decode(key.as_str())
        .expect("tokens are base64url")
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

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_record_round_trips(mode in arb_mode(), record in arb_record()) {
        let s = store(mode, SECRET);
        let key = create(&s, &record);
        let mut want = record;
        want.version = 1;
        prop_assert_eq!(load(&s, &key), Some(want));
    }

    #[test]
    fn flipping_any_bit_is_refused(
        mode in arb_mode(),
        record in arb_record(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let s = store(mode, SECRET);
        let mut bytes = raw(&create(&s, &record));
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(load_str(&s, &token(&bytes)).is_none(), "bit {} of byte {} flipped", bit, i);
    }

    #[test]
    fn replacing_any_byte_or_character_is_refused(
        mode in arb_mode(),
        record in arb_record(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let s = store(mode, SECRET);
        let key = create(&s, &record);
        let mut bytes = raw(&key);
        let i = at.index(bytes.len());
        bytes[i] = bytes[i].wrapping_add(delta);
        prop_assert!(load_str(&s, &token(&bytes)).is_none());

        let mut chars = key.as_str().as_bytes().to_vec();
        let j = at.index(chars.len());
        chars[j] = chars[j].wrapping_add(delta);
        let text = String::from_utf8_lossy(&chars).into_owned();
        prop_assert!(load_str(&s, &text).is_none(), "character {} changed", j);
    }

    #[test]
    fn truncating_or_extending_is_refused(
        mode in arb_mode(),
        record in arb_record(),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let s = store(mode, SECRET);
        let key = create(&s, &record);
        let value = key.as_str();
        let keep = cut.index(value.len());
        prop_assert!(load_str(&s, &value[..keep]).is_none(), "truncated to {}", keep);

        let mut longer = raw(&key);
        longer.extend_from_slice(&extra);
        prop_assert!(load_str(&s, &token(&longer)).is_none());
        let appended = format!("{value}{}", token(&extra));
        prop_assert!(load_str(&s, &appended).is_none());
    }

    #[test]
    fn reordering_bytes_is_refused(
        mode in arb_mode(),
        record in arb_record(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let s = store(mode, SECRET);
        let mut bytes = raw(&create(&s, &record));
        let (i, j) = (a.index(bytes.len()), b.index(bytes.len()));
        prop_assume!(bytes[i] != bytes[j]);
        bytes.swap(i, j);
        prop_assert!(load_str(&s, &token(&bytes)).is_none());
    }

    #[test]
    fn a_cookie_never_opens_in_the_other_mode(record in arb_record()) {
        let (sig, enc) = (store(Mode::Signed, SECRET), store(Mode::Encrypted, SECRET));
        prop_assert!(load(&enc, &create(&sig, &record)).is_none());
        prop_assert!(load(&sig, &create(&enc, &record)).is_none());
    }

    #[test]
    fn a_cookie_never_opens_with_another_secret(
        mode in arb_mode(),
        record in arb_record(),
        a in prop::collection::vec(any::<u8>(), 32..48),
        b in prop::collection::vec(any::<u8>(), 32..48),
    ) {
        prop_assume!(a != b);
        let key = create(&store(mode, &a), &record);
        prop_assert!(load(&store(mode, &b), &key).is_none());
    }

    #[test]
    fn rotation_keeps_old_cookies_and_reissues_them(
        mode in arb_mode(),
        record in arb_record(),
        old in prop::collection::vec(any::<u8>(), 32..48),
        new in prop::collection::vec(any::<u8>(), 32..48),
    ) {
        prop_assume!(old != new);
        let before = store(mode, &old);
        let after = CookieStore::builder(mode, &new)
            .with_previous_secret(&old)
            .build()
            .expect("valid configuration");
        let only_new = store(mode, &new);

        let key = create(&before, &record);
        let loaded = load(&after, &key).expect("an old cookie still loads");
        prop_assert_eq!(&loaded.data, &record.data);

        let saved = block(after.save(&key, &loaded)).expect("save");
        prop_assert_eq!(load(&only_new, &saved).map(|r| r.version), Some(2));
        prop_assert!(load(&before, &saved).is_none(), "save kept the old secret");

        let touched = block(after.touch(&key, in_an_hour())).expect("touch");
        prop_assert_eq!(load(&only_new, &touched).map(|r| r.version), Some(1));
    }

    #[test]
    fn every_cookie_a_store_opens_it_recognizes(
        mode in arb_mode(),
        record in arb_record(),
        old in prop::collection::vec(any::<u8>(), 32..48),
    ) {
        prop_assume!(old[..] != SECRET[..]);
        let before = store(mode, &old);
        let after = CookieStore::builder(mode, SECRET)
            .with_previous_secret(&old)
            .build()
            .expect("valid configuration");
        let from_before = create(&before, &record);
        let created = create(&after, &record);
        let loaded = load(&after, &from_before).expect("loads");
        let saved = block(after.save(&from_before, &loaded)).expect("save");
        let touched = block(after.touch(&from_before, in_an_hour())).expect("touch");
        for key in [&from_before, &created, &saved, &touched] {
            prop_assert!(load(&after, key).is_some());
            prop_assert!(after.recognizes(key), "a cookie that opens was not recognized");
        }
        prop_assert!(before.recognizes(&from_before));
        // Under a key it does not have, a cookie is never recognized.
        prop_assert!(!before.recognizes(&created));
    }

    #[test]
    fn whatever_is_not_recognized_never_opens(
        mode in arb_mode(),
        value in "[A-Za-z0-9_.~!*'()-]{1,200}",
    ) {
        let s = store(mode, SECRET);
        let key = SessionKey::parse(&value).expect("cookie-safe");
        if !s.recognizes(&key) {
            prop_assert!(load(&s, &key).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Exhaustive tampering of one cookie per mode: every bit of the raw bytes, every other
// character at every position, every truncation.

#[test]
fn every_single_modification_of_a_cookie_is_refused() {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for mode in MODES {
        let s = store(mode, SECRET);
        let key = create(&s, &sample());
        assert!(load(&s, &key).is_some());
        let bytes = raw(&key);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert_refused(&s, &token(&b), &format!("{mode:?} bit {bit} of byte {i}"));
            }
        }
        let value = key.as_str().as_bytes();
        for i in 0..value.len() {
            for &c in ALPHABET.iter().filter(|&&c| c != value[i]) {
                let mut v = value.to_vec();
                v[i] = c;
                let v = String::from_utf8(v).expect("ASCII");
                assert!(
                    load_str(&s, &v).is_none(),
                    "{mode:?} char {i} -> {}",
                    char::from(c)
                );
            }
        }
        for keep in 0..value.len() {
            let v = std::str::from_utf8(&value[..keep]).expect("ASCII");
            assert!(load_str(&s, v).is_none(), "{mode:?} truncated to {keep}");
        }
    }
}

#[test]
fn a_cookie_never_opens_under_another_cookie_name() {
    for mode in MODES {
        let a = CookieStore::builder(mode, SECRET)
            .with_cookie_name("a")
            .build()
            .expect("valid");
        let b = CookieStore::builder(mode, SECRET)
            .with_cookie_name("b")
            .build()
            .expect("valid");
        let key = create(&a, &sample());
        assert!(load(&a, &key).is_some());
        assert!(load(&b, &key).is_none(), "{mode:?}");
    }
}

#[test]
fn swapping_the_key_id_for_another_stores_is_refused() {
    // A token whose header names the key of another store (here: another cookie name) is
    // still refused: the name is bound by the key and by the associated data.
    for mode in MODES {
        let a = CookieStore::builder(mode, SECRET)
            .with_cookie_name("a")
            .build()
            .expect("valid");
        let b = CookieStore::builder(mode, SECRET)
            .with_cookie_name("b")
            .build()
            .expect("valid");
        let mut from_a = raw(&create(&a, &sample()));
        let from_b = raw(&create(&b, &sample()));
        from_a[..6].copy_from_slice(&from_b[..6]);
        assert!(load_str(&b, &token(&from_a)).is_none(), "{mode:?}");
    }
}

#[test]
fn an_over_long_value_is_refused() {
    for mode in MODES {
        let s = store(mode, SECRET);
        let key = create(&s, &sample());
        let padded = format!(
            "{}{}",
            key.as_str(),
            "A".repeat(s.max_value_len() + 1 - key.as_str().len())
        );
        assert_eq!(padded.len(), s.max_value_len() + 1);
        assert!(load_str(&s, &padded).is_none());
        assert!(matches!(
            block(s.save(&SessionKey::parse(&padded).expect("cookie-safe"), &sample())),
            Err(Error::NotFound)
        ));
    }
}

#[test]
fn encrypted_cookies_use_a_fresh_nonce_every_time() {
    let s = store(Mode::Encrypted, SECRET);
    let r = sample();
    let (a, b) = (raw(&create(&s, &r)), raw(&create(&s, &r)));
    assert_ne!(a[6..18], b[6..18], "two cookies share a nonce");
    assert_ne!(a, b);
}

#[test]
fn save_checks_the_version_inside_the_presented_cookie() {
    for mode in MODES {
        let s = store(mode, SECRET);
        let v1 = create(&s, &sample());
        let mut r = load(&s, &v1).expect("loads");
        let v2 = block(s.save(&v1, &r)).expect("save");
        r.version = 2;
        let v3 = block(s.save(&v2, &r)).expect("save");
        assert_eq!(load(&s, &v3).map(|r| r.version), Some(3));
        assert!(
            matches!(block(s.save(&v3, &r)), Err(Error::Conflict)),
            "{mode:?}"
        );
    }
}

#[test]
fn touch_keeps_data_and_version() {
    for mode in MODES {
        let s = store(mode, SECRET);
        let key = create(&s, &sample());
        let r = load(&s, &key).expect("loads");
        let key = block(s.save(&key, &r)).expect("save");
        let later = in_an_hour() + Duration::days(2);
        let touched = block(s.touch(&key, later)).expect("touch");
        let back = load(&s, &touched).expect("loads");
        assert_eq!(
            (back.version, &back.data, back.expires_at),
            (2, &r.data, later)
        );
    }
}

#[test]
fn the_store_is_client_side() {
    for mode in MODES {
        let s = store(mode, SECRET);
        assert_eq!(s.capabilities(), Capabilities::client_side());
        assert_eq!(s.mode(), mode);
        let key = create(&s, &sample());
        block(s.delete(&key)).expect("delete");
        assert!(load(&s, &key).is_some(), "delete cannot revoke a cookie");
        assert_eq!(block(s.clear_expired()).ok(), Some(0));
    }
}

#[test]
fn end_has_nothing_to_end_and_the_cookie_keeps_loading() {
    for mode in MODES {
        let s = store(mode, SECRET);
        assert!(!s.capabilities().remembers_ended);
        let key = create(&s, &sample());
        let r = load(&s, &key).expect("loads");
        for version in [0, r.version, r.version + 1, u64::MAX] {
            for until in [in_an_hour(), OffsetDateTime::UNIX_EPOCH] {
                assert!(
                    block(s.end(&key, version, until)).is_ok(),
                    "{mode:?}: end failed"
                );
            }
        }
        // The browser still holds the cookie: nothing on the server could forget it.
        assert_eq!(load(&s, &key).map(|r| r.version), Some(1));
        assert!(matches!(block(s.lookup(&key)), Ok(Lookup::Live(_))));
        // Whatever the value, `end` succeeds without looking at it.
        for junk in ["x", "../../etc/passwd", "abcdefghijklmnopqrstuvwxyz012345"] {
            let junk = SessionKey::parse(junk).expect("cookie-safe");
            assert!(block(s.end(&junk, 1, in_an_hour())).is_ok());
            assert!(matches!(block(s.lookup(&junk)), Ok(Lookup::Absent)));
        }
    }
}

// ---------------------------------------------------------------------------------------
// `recognizes`: the shape check without cryptography

#[test]
fn values_that_can_never_be_its_cookies_are_not_recognized() {
    for mode in MODES {
        let s = store(mode, SECRET);
        let other_mode = store(
            match mode {
                Mode::Signed => Mode::Encrypted,
                _ => Mode::Signed,
            },
            SECRET,
        );
        let other_secret = store(mode, b"another-secret-of-32-bytes-at-least");
        let other_name = CookieStore::builder(mode, SECRET)
            .with_cookie_name("other")
            .build()
            .expect("valid configuration");
        let good = create(&s, &sample());
        assert!(s.recognizes(&good), "{mode:?}: its own cookie");
        let good_raw = raw(&good);
        let with_header = |at: usize, byte: u8| {
            let mut raw = good_raw.clone();
            raw[at] = byte;
            token(&raw)
        };
        let last = good.as_str().len() - 1;
        let mut junk: Vec<(&str, String)> = vec![
            (
                "a server-side key",
                SessionKey::generate().as_str().to_owned(),
            ),
            ("a short value", "abc".to_owned()),
            ("over-long", "A".repeat(s.max_value_len() + 1)),
            ("padded", format!("{}=", good.as_str())),
            (
                "a dot",
                format!("{}.{}", &good.as_str()[..10], &good.as_str()[11..]),
            ),
            ("a tilde", format!("~{}", &good.as_str()[1..])),
            (
                // A character of standard base64, not of base64url (a random token need
                // not hold a `-` or `_` to replace, so one is put in).
                "standard base64",
                format!("{}+{}", &good.as_str()[..5], &good.as_str()[6..]),
            ),
            (
                "standard base64",
                format!("{}/{}", &good.as_str()[..7], &good.as_str()[8..]),
            ),
            (
                "a length no base64 has",
                good.as_str()[..last + 1 - (last + 4) % 4].to_owned(),
            ),
            ("unknown format", with_header(0, 2)),
            ("unknown mode", with_header(1, 0x7f)),
            ("unknown key id", with_header(2, good_raw[2] ^ 1)),
            (
                "the other mode",
                create(&other_mode, &sample()).as_str().to_owned(),
            ),
            (
                "another secret",
                create(&other_secret, &sample()).as_str().to_owned(),
            ),
            (
                "another cookie name",
                create(&other_name, &sample()).as_str().to_owned(),
            ),
        ];
        // A last character with bits beyond the encoded bytes (not canonical base64).
        if !good.as_str().len().is_multiple_of(4) {
            let mut chars = good.as_str().as_bytes().to_vec();
            chars[last] = b'_';
            junk.push((
                "non-canonical end",
                String::from_utf8(chars).expect("ascii"),
            ));
        }
        for (what, value) in junk {
            let Ok(key) = SessionKey::parse(&value) else {
                continue;
            };
            assert!(!s.recognizes(&key), "{mode:?}: {what} was recognized");
            assert!(load(&s, &key).is_none(), "{mode:?}: {what} loaded");
        }
    }
}

#[test]
fn a_recognized_value_is_not_a_verified_one() {
    for mode in MODES {
        let s = store(mode, SECRET);
        let mut bytes = raw(&create(&s, &sample()));
        let at = bytes.len() - 1;
        bytes[at] ^= 0x40; // the tag: only the cryptography can tell
        let forged = SessionKey::parse(&token(&bytes)).expect("cookie-safe");
        assert!(s.recognizes(&forged), "{mode:?}");
        assert!(load(&s, &forged).is_none(), "{mode:?}");
        // Expired cookies are recognized too: the expiry is inside the tag.
        let mut r = sample();
        r.expires_at = OffsetDateTime::now_utc() - Duration::hours(1);
        let expired = create(&s, &r);
        assert!(s.recognizes(&expired) && load(&s, &expired).is_none());
    }
}

#[test]
fn the_manager_removes_a_junk_cookie_a_request_never_loaded() {
    use session_core::{CookieAction, SessionConfig, SessionManager};
    use std::sync::Arc;

    for mode in MODES {
        let s = store(mode, SECRET);
        let manager = SessionManager::new(
            Arc::new(s.clone()),
            SessionConfig::builder().build().expect("valid config"),
        );
        let commit = |value: &str| {
            block(async {
                let lazy = manager.lazy(Some(value));
                manager.commit(&lazy, 200).await
            })
            .expect("commit")
            .cookie
        };
        let junk = SessionKey::generate();
        assert!(
            matches!(commit(junk.as_str()), CookieAction::Remove(_)),
            "{mode:?}: a junk cookie was kept"
        );
        // A cookie this store may have issued is left alone: telling a live one from a
        // forged or expired one takes the cryptography a request that never loaded its
        // session does not pay for.
        let good = create(&s, &sample());
        assert!(
            matches!(commit(good.as_str()), CookieAction::Keep),
            "{mode:?}: a cookie of the store was not kept"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Deeply nested values: the `Session` refuses them first; the store never panics on them

fn nested(depth: usize) -> Value {
    let mut v = json!(0);
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

#[test]
fn deeply_nested_values_never_make_the_store_panic() {
    let limit = session_core::MAX_VALUE_DEPTH;
    for mode in MODES {
        let s = store(mode, SECRET);
        for depth in [limit, limit + 1, 126, 127, 200, 1000] {
            let mut data = Data::new();
            data.insert("deep".into(), nested(depth));
            let r = Record::new(data, in_an_hour());
            let key = match block(s.create(&r)) {
                Ok(key) => key,
                Err(Error::TooLarge { .. }) => continue,
                Err(e) => panic!("{mode:?}, depth {depth}: {e}"),
            };
            assert!(s.recognizes(&key));
            // What a session accepts (and a little more) comes back; beyond the JSON
            // decoder's recursion limit the cookie loads as absent (logged), as any
            // cookie that does not decode.
            let back = load(&s, &key).map(|back| back.data);
            if depth <= limit + 1 {
                assert_eq!(back, Some(r.data.clone()), "{mode:?}, depth {depth}");
            } else if depth >= 200 {
                assert_eq!(back, None, "{mode:?}, depth {depth}");
            }
            let mut stored = r.clone();
            stored.version = 1;
            let saved = block(s.save(&key, &stored));
            assert!(
                matches!(saved, Ok(_) | Err(Error::TooLarge { .. })),
                "{mode:?}, depth {depth}: {saved:?}"
            );
            assert!(block(s.touch(&key, in_an_hour())).is_ok());
            assert!(block(s.end(&key, 1, in_an_hour())).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Size

/// A record holding `n` characters that do not compress (a fixed pseudo-random sequence).
fn record_of_len(n: usize) -> Record {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let text: String = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(CHARS[usize::try_from(state % 62).expect("small")])
        })
        .collect();
    let mut data = Data::new();
    data.insert("s".into(), json!(text));
    Record::new(data, in_an_hour())
}

#[test]
fn too_large_carries_the_size_at_create_and_save() {
    for mode in MODES {
        // A store with no attribute allowance issues the token; the same token needs
        // `name=` plus the token plus the allowance in a store that keeps an allowance.
        let roomy = CookieStore::builder(mode, SECRET)
            .with_attribute_allowance(0)
            .build()
            .expect("valid");
        let r = record_of_len(2500);
        let key = create(&roomy, &r);
        let needed = "sessionid=".len() + key.as_str().len();
        let allowance = 4096 - needed + 1;
        let tight = CookieStore::builder(mode, SECRET)
            .with_attribute_allowance(allowance)
            .build()
            .expect("valid");
        let want = needed + allowance;
        let too_large = |got: Result<SessionKey, Error>| match got {
            Err(Error::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (want, 4096), "{mode:?}");
                assert!(
                    Error::TooLarge { size, limit }
                        .to_string()
                        .contains(&want.to_string())
                );
            }
            other => panic!("{mode:?}: expected TooLarge, got {other:?}"),
        };
        too_large(block(tight.create(&r)));
        let small = create(&tight, &sample());
        let mut bigger = r.clone();
        bigger.version = 1;
        too_large(block(tight.save(&small, &bigger)));
        // Nothing changed in the cookie it was given: the small one still loads.
        assert!(load(&tight, &small).is_some());

        // Exactly at the limit is fine, and so is touching such a cookie (a touched cookie
        // has the length of the one presented, which passed the same limit on the way in).
        let exact = CookieStore::builder(mode, SECRET)
            .with_attribute_allowance(allowance - 1)
            .build()
            .expect("valid");
        let at_limit = block(exact.create(&r)).expect("a cookie of exactly 4096 bytes");
        assert_eq!(
            "sessionid=".len() + at_limit.as_str().len() + allowance - 1,
            4096
        );
        let touched = block(exact.touch(&at_limit, in_an_hour())).expect("touch");
        assert_eq!(touched.as_str().len(), at_limit.as_str().len());
        // A value longer than this store could issue is refused unread.
        assert!(load(&tight, &at_limit).is_none(), "{mode:?}");
    }
}

#[test]
fn a_huge_record_is_too_large() {
    for mode in MODES {
        let got = block(store(mode, SECRET).create(&record_of_len(1 << 20)));
        assert!(
            matches!(got, Err(Error::TooLarge { size, limit: 4096 }) if size > 1 << 20),
            "{mode:?}: {got:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Construction

#[test]
fn a_short_secret_is_refused_with_a_clear_message() {
    let short = [7u8; MIN_SECRET_LEN - 1];
    for mode in MODES {
        let err = CookieStore::builder(mode, short)
            .build()
            .expect_err("short secret");
        assert_eq!(err, BuildError::SecretTooShort { len: 31, min: 32 });
        let msg = err.to_string();
        assert!(
            msg.contains("31 bytes") && msg.contains("at least 32 bytes"),
            "{msg}"
        );

        let err = CookieStore::builder(mode, SECRET)
            .with_previous_secret(SECRET)
            .with_previous_secret(short)
            .build()
            .expect_err("short previous secret");
        assert_eq!(
            err,
            BuildError::PreviousSecretTooShort {
                index: 1,
                len: 31,
                min: 32
            }
        );
    }
    assert!(CookieStore::signed([7u8; MIN_SECRET_LEN]).build().is_ok());
}

#[test]
fn bad_cookie_names_and_allowances_are_refused() {
    for name in ["", "a b", "a;b", "a=b", "é", &"n".repeat(257)] {
        let err = CookieStore::signed(SECRET)
            .with_cookie_name(name)
            .build()
            .expect_err(name);
        assert_eq!(err, BuildError::InvalidCookieName);
    }
    let err = CookieStore::encrypted(SECRET)
        .with_attribute_allowance(4096)
        .build()
        .expect_err("no room");
    assert!(
        matches!(
            err,
            BuildError::NoRoomForValue {
                allowance: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    let config: session_core::ConfigError = err.into();
    assert_eq!(config.setting(), "cookie attribute allowance");
}

#[test]
fn debug_output_holds_no_secret() {
    let secret = *b"s3cr3t-S3CR3T-s3cr3t-S3CR3T-s3cr";
    let old = *b"0ld-0ld-0ld-0ld-0ld-0ld-0ld-0ld!";
    let builder = CookieStore::encrypted(secret).with_previous_secret(old);
    let shown_builder = format!("{builder:?} {builder:#?}");
    let s = builder.build().expect("valid");
    let shown = format!("{shown_builder} {s:?} {s:#?}");
    for secret in [&secret[..], &old[..]] {
        let text = std::str::from_utf8(secret).expect("ASCII");
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let list = format!("{secret:?}");
        for needle in [text, &text[..8], &hex[..16], &list[1..list.len() - 1]] {
            assert!(!shown.contains(needle), "Debug shows {needle}: {shown}");
        }
    }
    assert!(
        shown.contains("Encrypted") && shown.contains("redacted"),
        "{shown}"
    );
}

#[test]
fn identical_secrets_collapse_into_one_key() {
    let s = CookieStore::signed(SECRET)
        .with_previous_secret(SECRET)
        .build()
        .expect("valid");
    // Same single key id as a store with only the one secret.
    assert_eq!(
        format!("{s:?}"),
        format!("{:?}", store(Mode::Signed, SECRET))
    );
}

// ---------------------------------------------------------------------------------------
// The format, written out independently of the crate: a signed token built by hand from
// the documented layout opens, and validly signed tokens the crate would never issue are
// refused.

/// Builds a signed token by hand from the documented format.
fn forge_signed(
    secret: &[u8],
    name: &str,
    mode_byte: u8,
    format: u8,
    version: u64,
    expires_ms: i64,
    payload: &[u8],
) -> String {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"session-signed-cookie/v1"), secret);
    let mut key = [0u8; 32];
    hkdf.expand_multi_info(
        &[b"hmac-sha256 signing key", b"\0", name.as_bytes()],
        &mut key,
    )
    .expect("32 bytes");
    let id = Sha256::new()
        .chain_update(b"session-signed-cookie/v1 key id\0")
        .chain_update(key)
        .finalize();
    let mut raw = vec![format, mode_byte];
    raw.extend_from_slice(&id[..4]);
    let body_at = raw.len();
    raw.extend_from_slice(&version.to_be_bytes());
    raw.extend_from_slice(&expires_ms.to_be_bytes());
    raw.extend_from_slice(payload);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any length");
    mac.update(&raw[..body_at]);
    mac.update(&u16::try_from(name.len()).expect("short").to_be_bytes());
    mac.update(name.as_bytes());
    mac.update(&raw[body_at..]);
    raw.extend_from_slice(&mac.finalize().into_bytes());
    token(&raw)
}

const PAYLOAD: &[u8] = br#"{"d":{"n":1,"user":"ada"},"x":{"i":1800000}}"#;

#[test]
fn a_hand_built_token_matches_the_crate() {
    let forged = forge_signed(
        KAT_SECRET,
        "sessionid",
        0x01,
        1,
        1,
        4_102_444_800_000,
        PAYLOAD,
    );
    assert_eq!(forged, KAT_SIGNED);
}

#[test]
fn validly_signed_tokens_the_crate_never_issues_are_refused() {
    let s = store(Mode::Signed, SECRET);
    let far = 4_102_444_800_000;
    let good = forge_signed(SECRET, "sessionid", 0x01, 1, 9, far, PAYLOAD);
    assert_eq!(load_str(&s, &good).map(|r| r.version), Some(9));
    for (what, value) in [
        (
            "unknown format",
            forge_signed(SECRET, "sessionid", 0x01, 2, 9, far, PAYLOAD),
        ),
        (
            "unknown mode",
            forge_signed(SECRET, "sessionid", 0x03, 1, 9, far, PAYLOAD),
        ),
        (
            "encrypted mode byte",
            forge_signed(SECRET, "sessionid", 0x02, 1, 9, far, PAYLOAD),
        ),
        (
            "expired",
            forge_signed(SECRET, "sessionid", 0x01, 1, 9, 1_000, PAYLOAD),
        ),
        (
            "expiry out of range",
            forge_signed(SECRET, "sessionid", 0x01, 1, 9, i64::MAX, PAYLOAD),
        ),
        (
            "not a payload",
            forge_signed(SECRET, "sessionid", 0x01, 1, 9, far, b"{\"d\":[1]}"),
        ),
        (
            "not JSON",
            forge_signed(SECRET, "sessionid", 0x01, 1, 9, far, b"\xff\xfe"),
        ),
        (
            "bad deflate",
            forge_signed(SECRET, "sessionid", 0x11, 1, 9, far, b"\xff\xff\xff"),
        ),
    ] {
        assert!(load_str(&s, &value).is_none(), "{what} loaded");
    }
}

// ---------------------------------------------------------------------------------------
// Compression (signed mode only)

/// A record that deflates well.
#[cfg(feature = "compression")]
fn compressible() -> Record {
    let mut data = Data::new();
    for i in 0..40 {
        data.insert(
            format!("item_{i:02}"),
            json!({"title": "The Name of the Rose", "borrowed": false}),
        );
    }
    Record::new(data, in_an_hour())
}

#[cfg(feature = "compression")]
#[test]
fn signed_cookies_are_deflated_when_that_is_smaller() {
    let on = CookieStore::signed(SECRET).build().expect("valid");
    let off = CookieStore::signed(SECRET)
        .with_compression(false)
        .build()
        .expect("valid");
    let r = compressible();
    let small = create(&on, &r);
    let plain = create(&off, &r);
    assert!(
        small.as_str().len() * 3 < plain.as_str().len(),
        "{} vs {}",
        small.as_str().len(),
        plain.as_str().len()
    );
    assert_eq!(raw(&small)[1], 0x11, "deflate flag");
    assert_eq!(raw(&plain)[1], 0x01);
    // Both stores read both forms.
    for s in [&on, &off] {
        assert_eq!(load(s, &small).map(|r| r.data), Some(r.data.clone()));
        assert_eq!(load(s, &plain).map(|r| r.data), Some(r.data.clone()));
    }
    // touch keeps the payload as it was, deflated.
    let touched = block(on.touch(&small, in_an_hour())).expect("touch");
    assert_eq!(raw(&touched)[1], 0x11);
    assert_eq!(load(&off, &touched).map(|r| r.data), Some(r.data.clone()));
    // Small payloads stay as they are.
    assert_eq!(raw(&create(&on, &sample()))[1], 0x01);
    // The encrypted mode never compresses.
    let enc = create(&store(Mode::Encrypted, SECRET), &r);
    assert_eq!(raw(&enc)[1], 0x02);
}

#[cfg(feature = "compression")]
#[test]
fn inflating_is_bounded() {
    let s = store(Mode::Signed, SECRET);
    let far = 4_102_444_800_000;
    // Valid JSON padded with spaces: tiny deflated, as large as we like inflated.
    let padded = |n: usize| {
        let mut p = br#"{"d":{}}"#.to_vec();
        p.resize(p.len() + n, b' ');
        miniz_oxide::deflate::compress_to_vec(&p, 9)
    };
    let fits = forge_signed(SECRET, "sessionid", 0x11, 1, 1, far, &padded(60 * 1024));
    assert!(
        load_str(&s, &fits).is_some(),
        "60 KiB inflated is within the limit"
    );
    let bomb = forge_signed(SECRET, "sessionid", 0x11, 1, 1, far, &padded(2 << 20));
    assert!(bomb.len() < 4000, "the bomb fits in a cookie");
    assert!(load_str(&s, &bomb).is_none(), "a 2 MiB bomb inflated");
}

#[cfg(feature = "compression")]
#[test]
fn a_compressible_payload_beyond_the_inflate_limit_is_too_large() {
    let s = store(Mode::Signed, SECRET);
    let mut data = Data::new();
    data.insert("s".into(), json!("a".repeat(70 * 1024)));
    let got = block(s.create(&Record::new(data, in_an_hour())));
    assert!(
        matches!(got, Err(Error::TooLarge { size, .. }) if size > 70 * 1024),
        "{got:?}"
    );
}

#[cfg(not(feature = "compression"))]
#[test]
fn without_the_feature_deflated_cookies_are_refused() {
    // Raw deflate of the KAT payload, stored as one uncompressed block: readable with the
    // feature, refused without it.
    let mut stored = vec![0x01];
    let len = u16::try_from(PAYLOAD.len()).expect("short");
    stored.extend_from_slice(&len.to_le_bytes());
    stored.extend_from_slice(&(!len).to_le_bytes());
    stored.extend_from_slice(PAYLOAD);
    let value = forge_signed(SECRET, "sessionid", 0x11, 1, 1, 4_102_444_800_000, &stored);
    assert!(load_str(&store(Mode::Signed, SECRET), &value).is_none());
}

// ---------------------------------------------------------------------------------------
// With the session manager: the allowance covers the attributes it adds.

#[test]
fn the_largest_accepted_session_fits_with_the_managers_attributes() {
    use session_core::{CookieAction, SessionConfig, SessionManager};
    use std::sync::Arc;

    for mode in MODES {
        let config = SessionConfig::builder()
            .with_cookie_domain("a-rather-long-subdomain.example.org")
            .build()
            .expect("valid config");
        let manager = SessionManager::new(Arc::new(store(mode, SECRET)), config);
        let commit = |n: usize| {
            block(async {
                let lazy = manager.lazy(None);
                let r = record_of_len(n);
                lazy.load().await?.insert("s", r.data["s"].clone())?;
                manager.commit(&lazy, 200).await
            })
        };
        // The largest n that is accepted, by bisection (token length grows with n).
        let (mut ok, mut too_large) = (0, 4096);
        while too_large - ok > 1 {
            let mid = (ok + too_large) / 2;
            match commit(mid) {
                Ok(_) => ok = mid,
                Err(Error::TooLarge { .. }) => too_large = mid,
                Err(e) => panic!("{mode:?}: {e}"),
            }
        }
        let Ok(done) = commit(ok) else {
            panic!("{mode:?}: the largest session stopped fitting");
        };
        let CookieAction::Set(header) = done.cookie else {
            panic!("{mode:?}: a new session sets its cookie");
        };
        let header = header.as_str();
        assert!(
            header.contains("Domain=") && header.contains("Expires="),
            "{mode:?}"
        );
        assert!(
            header.len() <= 4096,
            "{mode:?}: Set-Cookie of {} bytes",
            header.len()
        );
        assert!(
            header.len() > 4096 - 160,
            "{mode:?}: the allowance is far too generous"
        );
    }
}

#[test]
fn a_tampered_cookie_is_removed_even_by_a_request_that_never_reads_it() {
    use session_core::{CookieAction, SessionConfig, SessionManager};
    use std::sync::Arc;

    for mode in MODES {
        let manager = SessionManager::new(Arc::new(store(mode, SECRET)), SessionConfig::default());
        let good = block(async {
            let lazy = manager.lazy(None);
            lazy.load().await?.insert("a", 1)?;
            manager.commit(&lazy, 200).await
        })
        .expect("commit");
        let CookieAction::Set(header) = good.cookie else {
            panic!("{mode:?}: a new session sets its cookie");
        };
        let token = header
            .as_str()
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .expect("pair")
            .1
            .to_owned();
        // Untouched by the handler: a valid cookie is left alone...
        let kept = block(async { manager.commit(&manager.lazy(Some(&token)), 200).await })
            .expect("commit");
        assert_eq!(kept.cookie, CookieAction::Keep, "{mode:?}");
        // ...and one whose tag fails is removed.
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).expect("ascii");
        let removed = block(async { manager.commit(&manager.lazy(Some(&forged)), 200).await })
            .expect("commit");
        assert!(
            matches!(removed.cookie, CookieAction::Remove(_)),
            "{mode:?}: {removed:?}"
        );
    }
}
