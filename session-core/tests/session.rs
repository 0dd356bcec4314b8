//! The dictionary API of `Session` and its accessed / modified flags.

use std::sync::Arc;

use serde_json::{Value, json};
use session_core::{Expiry, MemoryStore, Session, SessionConfig, SessionManager};
use time::{Duration, OffsetDateTime};

async fn fresh() -> Session {
    let m = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
    m.lazy(None).load().await.expect("load")
}

/// A session holding `{"a": 1}` with both flags cleared (as if freshly loaded).
async fn with_a() -> Session {
    let m = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
    let first = m.lazy(None);
    first
        .load()
        .await
        .expect("load")
        .insert("a", 1)
        .expect("insert");
    let commit = m.commit(&first, 200).await.expect("commit");
    let header = commit.cookie.header().expect("set").as_str().to_owned();
    let pair = header.split(';').next().expect("pair").to_owned();
    let lazy = m.lazy_from_cookie_headers([pair.as_str()]);
    lazy.load().await.expect("load")
}

#[tokio::test]
async fn a_fresh_session_is_neither_accessed_nor_modified() {
    let s = fresh().await;
    assert!(!s.is_accessed() && !s.is_modified());
    assert!(s.key().is_none());
}

#[tokio::test]
async fn every_read_marks_accessed_but_not_modified() {
    type Read = fn(&Session);
    let reads: [(&str, Read); 9] = [
        ("get", |s| drop(s.get::<i32>("a"))),
        ("get_value", |s| drop(s.get_value("a"))),
        ("contains_key", |s| {
            let _ = s.contains_key("a");
        }),
        ("keys", |s| drop(s.keys())),
        ("values", |s| drop(s.values())),
        ("iter", |s| {
            let _ = s.iter().count();
        }),
        ("len", |s| {
            let _ = s.len();
        }),
        ("is_empty", |s| {
            let _ = s.is_empty();
        }),
        ("snapshot", |s| drop(s.snapshot())),
    ];
    for (name, read) in reads {
        let s = with_a().await;
        assert!(!s.is_accessed(), "{name}: loading alone is not an access");
        read(&s);
        assert!(s.is_accessed(), "{name} did not mark accessed");
        assert!(!s.is_modified(), "{name} marked modified");
    }
}

#[tokio::test]
async fn every_write_marks_modified() {
    type Write = fn(&Session);
    let writes: [(&str, Write); 10] = [
        ("insert", |s| drop(s.insert("b", 2))),
        ("insert_value", |s| drop(s.insert_value("a", json!(3)))),
        ("remove", |s| drop(s.remove("a"))),
        ("clear", Session::clear),
        ("extend", |s| drop(s.extend([("x", 1), ("y", 2)]))),
        ("get_or_insert_with", |s| {
            drop(s.get_or_insert_with("new", || 5))
        }),
        ("flush", Session::flush),
        ("cycle_key", Session::cycle_key),
        ("set_expiry", |s| {
            drop(s.set_expiry(Some(Expiry::BrowserSession)))
        }),
        ("set_test_cookie", Session::set_test_cookie),
    ];
    for (name, write) in writes {
        let s = with_a().await;
        write(&s);
        assert!(s.is_modified(), "{name} did not mark modified");
        assert!(s.is_accessed(), "{name} did not mark accessed");
    }
}

#[tokio::test]
async fn no_op_writes_do_not_mark_modified() {
    let s = with_a().await;
    assert_eq!(s.remove("missing"), None);
    assert!(!s.is_modified(), "removing an absent key");
    assert_eq!(s.get_or_insert_with("a", || 9).expect("typed"), 1);
    assert!(!s.is_modified(), "setdefault of a present key");
    s.delete_test_cookie();
    assert!(!s.is_modified(), "deleting an absent test cookie");
    let empty = fresh().await;
    empty.clear();
    assert!(!empty.is_modified(), "clearing an empty session");
}

#[tokio::test]
async fn dictionary_methods_behave_like_a_dict() {
    let s = fresh().await;
    assert!(s.is_empty());
    assert_eq!(s.insert("b", "two").expect("insert"), None);
    assert_eq!(s.insert("a", 1).expect("insert"), None);
    assert_eq!(s.insert("a", 11).expect("insert"), Some(json!(1)));
    assert_eq!(s.len(), 2);
    assert_eq!(s.keys(), ["a", "b"]);
    assert_eq!(s.values(), [json!(11), json!("two")]);
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        [("a".to_owned(), json!(11)), ("b".to_owned(), json!("two"))]
    );
    assert!(s.contains_key("a") && !s.contains_key("z"));
    assert_eq!(s.get::<u8>("a").expect("typed"), Some(11));
    assert!(
        s.get::<bool>("a").is_err(),
        "wrong type is an error, not a panic"
    );
    assert_eq!(s.get::<u8>("z").expect("typed"), None);
    assert_eq!(
        s.remove_as::<String>("b").expect("typed"),
        Some("two".to_owned())
    );
    s.extend([("x", json!([1])), ("y", json!({"k": null}))])
        .expect("extend");
    assert_eq!(s.len(), 3);
    assert_eq!(
        s.get_or_insert_with("z", || vec![1, 2]).expect("typed"),
        vec![1, 2]
    );
    assert_eq!(s.get_value("z"), Some(json!([1, 2])));
    s.clear();
    assert!(s.is_empty());
}

#[tokio::test]
async fn non_string_map_keys_are_a_codec_error_and_change_nothing() {
    let s = fresh().await;
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), "tuple keys do not serialize to JSON");
    assert!(s.insert("bad", bad).is_err());
    assert!(!s.contains_key("bad"));
}

#[tokio::test]
async fn test_cookie_trio() {
    let s = fresh().await;
    assert!(!s.test_cookie_worked());
    s.set_test_cookie();
    assert!(s.test_cookie_worked());
    assert_eq!(s.get_value("testcookie"), Some(Value::from("worked")));
    s.delete_test_cookie();
    assert!(!s.test_cookie_worked());
}

#[tokio::test]
async fn expiry_getters_follow_the_override_and_the_config() {
    let s = fresh().await;
    assert_eq!(s.expiry(), None);
    assert!((s.expiry_age() - Duration::seconds(1_209_600)).abs() < Duration::seconds(1));
    assert!(!s.expires_at_browser_close());
    s.set_expiry(Some(Expiry::OnInactivity(Duration::minutes(10))))
        .expect("in range");
    assert!((s.expiry_age() - Duration::minutes(10)).abs() < Duration::seconds(1));
    let at = OffsetDateTime::now_utc() + Duration::days(1);
    s.set_expiry(Some(Expiry::AtDateTime(at)))
        .expect("in range");
    assert!((s.expiry_date() - at).abs() < Duration::milliseconds(1));
    s.set_expiry(Some(Expiry::BrowserSession))
        .expect("in range");
    assert!(s.expires_at_browser_close());
    s.set_expiry(None).expect("in range");
    assert!(!s.expires_at_browser_close());
}

#[tokio::test]
async fn clones_share_one_session_and_debug_hides_values() {
    let s = fresh().await;
    let t = s.clone();
    t.insert("secret", "hunter2").expect("insert");
    assert_eq!(s.get_value("secret"), Some(json!("hunter2")));
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[tokio::test]
async fn setting_the_policy_the_session_already_has_is_no_write() {
    let s = with_a().await;
    s.set_expiry(None).expect("in range");
    assert!(!s.is_modified(), "set_expiry(None) without an override");
    let rolling = Some(Expiry::OnInactivity(Duration::minutes(5)));
    s.set_expiry(rolling).expect("in range");
    assert!(s.is_modified());
    let t = with_a().await;
    t.set_expiry(Some(Expiry::BrowserSession))
        .expect("in range");
    assert!(t.is_modified(), "a new policy is a write");
}

#[tokio::test]
async fn values_nested_too_deep_are_refused_and_change_nothing() {
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |v, _| json!([v]))
    }
    let s = with_a().await;
    let deep = nested(session_core::MAX_VALUE_DEPTH + 1);
    assert!(matches!(
        s.insert_value("deep", deep.clone()),
        Err(session_core::Error::TooDeep { .. })
    ));
    assert!(matches!(
        s.insert("deep", &deep),
        Err(session_core::Error::TooDeep { .. })
    ));
    assert!(matches!(
        s.update("deep", move |_: Option<Value>| deep.clone()),
        Err(session_core::Error::TooDeep { .. })
    ));
    assert!(!s.is_modified() && !s.contains_key("deep"));
    s.insert_value("ok", nested(session_core::MAX_VALUE_DEPTH))
        .expect("the deepest accepted value");
}

#[tokio::test]
async fn update_applies_now_and_reports_the_new_value() {
    let s = with_a().await;
    assert_eq!(
        s.update("a", |n: Option<i64>| n.unwrap_or(0) + 41)
            .expect("update"),
        42
    );
    assert_eq!(
        s.update("b", |n: Option<i64>| n.unwrap_or(0) + 1)
            .expect("update"),
        1
    );
    assert_eq!(s.get::<i64>("a").expect("typed"), Some(42));
    assert!(s.is_modified());
    // A value of another type is a codec error, and the session is unchanged.
    s.insert("text", "x").expect("insert");
    assert!(s.update("text", |n: Option<i64>| n.unwrap_or(0)).is_err());
    assert_eq!(s.get_value("text"), Some(json!("x")));
}

mod expiry_range {
    use super::*;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    proptest! {
        /// "no expiry input, configured or stored, can panic; out-of-range values are
        /// refused with a typed error at the call that sets them" — over the whole
        /// `Duration` range, through a commit and a reload.
        #[test]
        fn any_inactivity_window_is_refused_or_works(secs in any::<i64>(), nanos in -999_999_999i32..=999_999_999) {
            let d = Duration::new(secs, nanos);
            rt().block_on(async {
                let m = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
                let lazy = m.lazy(None);
                let s = lazy.load().await.expect("load");
                s.insert("a", 1).expect("insert");
                match s.set_expiry(Some(Expiry::OnInactivity(d))) {
                    Ok(()) => prop_assert!(d > Duration::ZERO && d <= Expiry::MAX_WINDOW),
                    Err(e) => {
                        prop_assert!(matches!(e, session_core::Error::ExpiryOutOfRange(_)));
                        prop_assert_eq!(s.expiry(), None);
                    }
                }
                let _ = s.expiry_age();
                let _ = s.expiry_date();
                let commit = m.commit(&lazy, 200).await.expect("commit");
                let header = commit.cookie.header().expect("set").as_str().to_owned();
                let pair = header.split(';').next().expect("pair").to_owned();
                let again = m.lazy_from_cookie_headers([pair.as_str()]);
                prop_assert_eq!(again.load().await.expect("load").get::<i64>("a").expect("typed"), Some(1));
                let commit = m.commit(&again, 200).await;
                prop_assert!(commit.is_ok());
                Ok(())
            })?;
        }

        /// A stored record carrying any window whatsoever decodes or is refused as
        /// unreadable; it never panics.
        #[test]
        fn any_stored_window_decodes_or_is_unreadable(millis in any::<i64>()) {
            let payload = format!(r#"{{"d":{{"a":1}},"x":{{"i":{millis}}}}}"#);
            let now = OffsetDateTime::now_utc();
            match session_core::Record::decode_payload(payload.as_bytes(), now, 1) {
                Ok(r) => prop_assert!(r.expiry.is_some_and(|e| e.check().is_ok())),
                Err(e) => prop_assert!(matches!(e, session_core::Error::Codec(_))),
            }
        }

        /// Any instant, set as a fixed expiry: refused or accepted, never a panic.
        #[test]
        fn any_fixed_instant_is_refused_or_works(secs in -377_705_116_800i64..=253_402_300_799) {
            let at = OffsetDateTime::from_unix_timestamp(secs).expect("in time's range");
            rt().block_on(async {
                let s = fresh().await;
                let ok = s.set_expiry(Some(Expiry::AtDateTime(at))).is_ok();
                prop_assert_eq!(ok, at >= OffsetDateTime::UNIX_EPOCH);
                let _ = s.expiry_age();
                Ok(())
            })?;
        }
    }
}
