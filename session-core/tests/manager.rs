//! The request lifecycle through `SessionManager`, against MemoryStore and a store that
//! can be switched off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;
use session_core::{
    Capabilities, CookieAction, Error, Expiry, LazySession, Lookup, MemoryStore, Record, Result,
    SessionConfig, SessionKey, SessionManager, Store, async_trait,
};
use time::{Duration, OffsetDateTime};

/// MemoryStore behind a switch that makes every operation fail as an unreachable backend
/// would, and that counts operations (to prove "no I/O").
#[derive(Default)]
struct Switchable {
    inner: MemoryStore,
    down: AtomicBool,
    ops: AtomicUsize,
}

impl Switchable {
    fn check(&self) -> Result<()> {
        self.ops.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(Error::backend(
                "test",
                std::io::Error::other("connection refused"),
            ))
        } else {
            Ok(())
        }
    }
    fn ops(&self) -> usize {
        self.ops.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for Switchable {
    async fn create(&self, r: &Record) -> Result<SessionKey> {
        self.check()?;
        self.inner.create(r).await
    }
    async fn load(&self, k: &SessionKey) -> Result<Option<Record>> {
        self.check()?;
        self.inner.load(k).await
    }
    async fn lookup(&self, k: &SessionKey) -> Result<Lookup> {
        self.check()?;
        self.inner.lookup(k).await
    }
    async fn end(&self, k: &SessionKey, version: u64, until: OffsetDateTime) -> Result<()> {
        self.check()?;
        self.inner.end(k, version, until).await
    }
    async fn save(&self, k: &SessionKey, r: &Record) -> Result<SessionKey> {
        self.check()?;
        self.inner.save(k, r).await
    }
    async fn touch(&self, k: &SessionKey, at: OffsetDateTime) -> Result<SessionKey> {
        self.check()?;
        self.inner.touch(k, at).await
    }
    async fn delete(&self, k: &SessionKey) -> Result<()> {
        self.check()?;
        self.inner.delete(k).await
    }
    async fn clear_expired(&self) -> Result<u64> {
        self.check()?;
        self.inner.clear_expired().await
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}

fn setup(config: SessionConfig) -> (Arc<Switchable>, SessionManager) {
    let store = Arc::new(Switchable::default());
    let manager = SessionManager::new(store.clone(), config);
    (store, manager)
}

/// The cookie value a `Set-Cookie` header gives the client.
fn value_of(action: &CookieAction) -> String {
    let CookieAction::Set(c) = action else {
        panic!("expected a Set cookie, got {action:?}");
    };
    let pair = c.as_str().split(';').next().expect("name=value");
    pair.split_once('=').expect("=").1.to_owned()
}

fn request(manager: &SessionManager, cookie: Option<&str>) -> LazySession {
    manager.lazy(cookie)
}

/// A first request that stores `key = value`; returns the cookie value it got.
async fn stored(manager: &SessionManager, key: &str, value: impl serde::Serialize) -> String {
    let lazy = request(manager, None);
    lazy.load()
        .await
        .expect("load")
        .insert(key, value)
        .expect("insert");
    value_of(&manager.commit(&lazy, 200).await.expect("commit").cookie)
}

#[tokio::test]
async fn untouched_request_costs_no_io_and_no_cookie() {
    let (store, m) = setup(SessionConfig::default());
    let key = SessionKey::generate();
    let lazy = request(&m, Some(key.as_str()));
    let commit = m.commit(&lazy, 200).await.expect("commit");
    assert_eq!(commit.cookie, CookieAction::Keep);
    assert!(!commit.vary_cookie);
    assert_eq!(store.ops(), 0);
}

#[tokio::test]
async fn new_session_is_created_and_cookie_set_with_max_age() {
    let (store, m) = setup(SessionConfig::default());
    let lazy = request(&m, None);
    lazy.load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    assert_eq!(store.ops(), 0, "a new session is not read from the store");
    let commit = m.commit(&lazy, 200).await.expect("commit");
    let CookieAction::Set(c) = &commit.cookie else {
        panic!("no cookie")
    };
    assert!(c.as_str().contains("Max-Age=1209600"), "{}", c.as_str());
    assert!(c.as_str().contains("HttpOnly") && c.as_str().contains("SameSite=Lax"));
    assert!(commit.vary_cookie);
    let key = SessionKey::parse(&value_of(&commit.cookie)).expect("key");
    assert!(key.is_generated_shape());
    assert_eq!(
        store
            .inner
            .load(&key)
            .await
            .expect("load")
            .expect("stored")
            .data["n"],
        1
    );
}

#[tokio::test]
async fn read_only_request_writes_nothing_and_varies() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "n", 1).await;
    let before = store.ops();
    let lazy = request(&m, Some(&key));
    assert_eq!(
        lazy.load()
            .await
            .expect("load")
            .get::<i32>("n")
            .expect("typed"),
        Some(1)
    );
    let commit = m.commit(&lazy, 200).await.expect("commit");
    assert_eq!(commit.cookie, CookieAction::Keep);
    assert!(
        commit.vary_cookie,
        "a response that read the session varies on Cookie"
    );
    assert_eq!(store.ops() - before, 1, "exactly one read");
}

#[tokio::test]
async fn modified_session_is_saved_under_the_same_key() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "n", 1).await;
    let lazy = request(&m, Some(&key));
    lazy.load()
        .await
        .expect("load")
        .insert("n", 2)
        .expect("insert");
    let commit = m.commit(&lazy, 200).await.expect("commit");
    // Saved under the key the browser holds, whose expiry has not moved enough to need a
    // new cookie: none is sent (it could overwrite a concurrent login's cookie).
    assert!(commit.written);
    assert_eq!(commit.cookie, CookieAction::Keep);
    let stored = store
        .inner
        .load(&SessionKey::parse(&key).expect("key"))
        .await
        .expect("load")
        .expect("stored");
    assert_eq!((stored.version, stored.data["n"].clone()), (2, json!(2)));
}

#[tokio::test]
async fn unknown_malformed_and_oversized_cookies_get_a_fresh_session_and_store_nothing() {
    let (store, m) = setup(SessionConfig::default());
    let huge = "a".repeat(8 * 1024);
    let unknown = SessionKey::generate();
    for cookie in [
        unknown.as_str(),
        "../../etc/passwd",
        "bad;value",
        huge.as_str(),
        "",
    ] {
        let lazy = request(&m, Some(cookie));
        let s = lazy.load().await.expect("never an error page");
        assert!(s.is_empty() && s.key().is_none(), "{cookie:.20}");
        let commit = m.commit(&lazy, 200).await.expect("commit");
        // A cookie naming nothing this store holds is removed, not kept to cost a read on
        // every request.
        assert!(
            matches!(commit.cookie, CookieAction::Remove(_)),
            "{cookie:.20}: {commit:?}"
        );
    }
    assert!(
        store.inner.is_empty(),
        "nothing is created until the session is written"
    );
    // Only the well-formed unknown key cost a read.
    assert_eq!(store.ops(), 1);

    // When written, an unknown client key is never adopted.
    let lazy = request(&m, Some(unknown.as_str()));
    lazy.load()
        .await
        .expect("load")
        .insert("x", 1)
        .expect("insert");
    let issued = value_of(&m.commit(&lazy, 200).await.expect("commit").cookie);
    assert_ne!(issued, unknown.as_str());
}

#[tokio::test]
async fn cookie_header_parsing_picks_the_first_well_formed_value() {
    let (_store, m) = setup(SessionConfig::default());
    let a = stored(&m, "who", "first").await;
    let b = stored(&m, "who", "second").await;

    let header_ab = format!("x=1; sessionid=bad,value; sessionid={a}; sessionid={b}");
    let lazy = m.lazy_from_cookie_headers([header_ab.as_str()]);
    assert_eq!(
        lazy.load().await.expect("load").get_value("who"),
        Some(json!("first"))
    );
    let header_b = format!("sessionid={b}");
    let lazy = m.lazy_from_cookie_headers(["other=1", header_b.as_str()]);
    assert_eq!(
        lazy.load().await.expect("load").get_value("who"),
        Some(json!("second"))
    );
}

#[tokio::test]
async fn server_error_saves_nothing() {
    let (store, m) = setup(SessionConfig::default());
    let lazy = request(&m, None);
    lazy.load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    for status in [500, 503, 599] {
        let commit = m.commit(&lazy, status).await.expect("commit");
        assert_eq!(commit.cookie, CookieAction::Keep);
    }
    assert!(store.inner.is_empty());
    assert_eq!(store.ops(), 0);
}

#[tokio::test]
async fn store_down_at_load_is_an_error_never_an_empty_session() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "cart", ["book"]).await;

    store.down.store(true, Ordering::SeqCst);
    let lazy = request(&m, Some(&key));
    let err = lazy.load().await.expect_err("must fail");
    assert!(err.is_unavailable());
    assert!(lazy.session().is_none(), "no empty stand-in session");
    // Nothing to commit: the stored session is left alone.
    assert_eq!(
        m.commit(&lazy, 200).await.expect("commit").cookie,
        CookieAction::Keep
    );

    store.down.store(false, Ordering::SeqCst);
    let again = lazy.load().await.expect("loads once the store is back");
    assert_eq!(
        again.get::<Vec<String>>("cart").expect("typed"),
        Some(vec!["book".into()])
    );
}

#[tokio::test]
async fn store_down_at_commit_is_an_error() {
    let (store, m) = setup(SessionConfig::default());
    let lazy = request(&m, None);
    lazy.load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    store.down.store(true, Ordering::SeqCst);
    assert!(m.commit(&lazy, 200).await.is_err());
}

#[tokio::test]
async fn emptied_session_is_deleted_and_its_cookie_removed() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "n", 1).await;
    let lazy = request(&m, Some(&key));
    lazy.load().await.expect("load").remove("n");
    let commit = m.commit(&lazy, 200).await.expect("commit");
    let CookieAction::Remove(c) = &commit.cookie else {
        panic!("{commit:?}")
    };
    assert!(c.as_str().starts_with("sessionid=;") && c.as_str().contains("Max-Age=0"));
    let key = SessionKey::parse(&key).expect("key");
    assert_eq!(
        store.inner.lookup(&key).await.expect("lookup"),
        Lookup::Ended
    );
}

#[tokio::test]
async fn flush_deletes_the_stored_session_and_removes_the_cookie() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "user", 7).await;

    let lazy = request(&m, Some(&key));
    let s = lazy.load().await.expect("load");
    s.flush();
    assert!(s.is_empty() && s.key().is_none());
    let commit = m.commit(&lazy, 200).await.expect("commit");
    assert!(
        matches!(commit.cookie, CookieAction::Remove(_)),
        "{commit:?}"
    );
    let ended = SessionKey::parse(&key).expect("key");
    assert_eq!(
        store.inner.lookup(&ended).await.expect("lookup"),
        Lookup::Ended
    );
    // The old key is dead.
    let replay = request(&m, Some(&key));
    assert!(replay.load().await.expect("load").is_empty());
}

#[tokio::test]
async fn flush_then_write_starts_a_new_session_under_a_new_key() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "user", 7).await;
    let lazy = request(&m, Some(&key));
    let s = lazy.load().await.expect("load");
    s.flush();
    s.insert("message", "logged out").expect("insert");
    let new_key = value_of(&m.commit(&lazy, 200).await.expect("commit").cookie);
    assert_ne!(new_key, key);
    let ended = SessionKey::parse(&key).expect("key");
    assert_eq!(
        store.inner.lookup(&ended).await.expect("lookup"),
        Lookup::Ended
    );
    let r = request(&m, Some(&new_key));
    let s = r.load().await.expect("load");
    assert_eq!(
        (s.get_value("user"), s.get_value("message")),
        (None, Some(json!("logged out")))
    );
}

#[tokio::test]
async fn cycle_key_keeps_the_data_under_a_new_key() {
    let (store, m) = setup(SessionConfig::default());
    let old = stored(&m, "cart", [1, 2]).await;

    let login = request(&m, Some(&old));
    let s = login.load().await.expect("load");
    s.cycle_key();
    s.insert("user", "ada").expect("insert");
    let new = value_of(&m.commit(&login, 200).await.expect("commit").cookie);
    assert_ne!(new, old);
    let ended = SessionKey::parse(&old).expect("key");
    assert_eq!(
        store.inner.lookup(&ended).await.expect("lookup"),
        Lookup::Ended,
        "the old session is ended"
    );
    assert!(
        request(&m, Some(&old))
            .load()
            .await
            .expect("load")
            .is_empty()
    );
    let after = request(&m, Some(&new));
    let s = after.load().await.expect("load");
    assert_eq!(
        (s.get_value("cart"), s.get_value("user")),
        (Some(json!([1, 2])), Some(json!("ada")))
    );
}

#[tokio::test]
async fn browser_session_expiry_sets_no_max_age() {
    for (config, expiry) in [
        (
            SessionConfig::builder()
                .with_expire_at_browser_close(true)
                .build()
                .expect("valid"),
            None,
        ),
        (SessionConfig::default(), Some(Expiry::BrowserSession)),
    ] {
        let (store, m) = setup(config);
        let lazy = request(&m, None);
        let s = lazy.load().await.expect("load");
        s.insert("n", 1).expect("insert");
        s.set_expiry(expiry).expect("in range");
        assert!(s.expires_at_browser_close());
        let commit = m.commit(&lazy, 200).await.expect("commit");
        let CookieAction::Set(c) = &commit.cookie else {
            panic!("{commit:?}")
        };
        assert!(!c.as_str().contains("Max-Age") && !c.as_str().contains("Expires"));
        // The store still keeps it for the configured age.
        let key = SessionKey::parse(&value_of(&commit.cookie)).expect("key");
        let stored = store.inner.load(&key).await.expect("load").expect("stored");
        let left = stored.expires_at - OffsetDateTime::now_utc();
        assert!(left > Duration::days(13), "{left}");
    }
}

#[tokio::test]
async fn at_date_time_expiry_sets_that_instant() {
    let (store, m) = setup(SessionConfig::default());
    let at = OffsetDateTime::now_utc() + Duration::hours(3);
    let lazy = request(&m, None);
    let s = lazy.load().await.expect("load");
    s.insert("n", 1).expect("insert");
    s.set_expiry(Some(Expiry::AtDateTime(at)))
        .expect("in range");
    assert!((s.expiry_date() - at).abs() < Duration::seconds(1));
    let commit = m.commit(&lazy, 200).await.expect("commit");
    let CookieAction::Set(c) = &commit.cookie else {
        panic!("{commit:?}")
    };
    let max_age: i64 = c
        .as_str()
        .split("Max-Age=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.parse().ok())
        .expect("Max-Age");
    assert!((10_790..=10_800).contains(&max_age), "{max_age}");
    let key = SessionKey::parse(&value_of(&commit.cookie)).expect("key");
    let stored = store.inner.load(&key).await.expect("load").expect("stored");
    assert!((stored.expires_at - at).abs() < Duration::milliseconds(1));
}

#[tokio::test]
async fn rolling_expiry_touches_on_read_and_resets_the_cookie() {
    let (store, m) = setup(SessionConfig::default());
    let lazy = request(&m, None);
    let s = lazy.load().await.expect("load");
    s.insert("n", 1).expect("insert");
    s.set_expiry(Some(Expiry::OnInactivity(Duration::seconds(2))))
        .expect("in range");
    let key = value_of(&m.commit(&lazy, 200).await.expect("commit").cookie);
    let k = SessionKey::parse(&key).expect("key");
    let first = store
        .inner
        .load(&k)
        .await
        .expect("load")
        .expect("stored")
        .expires_at;

    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let read = request(&m, Some(&key));
    let _ = read.load().await.expect("load").get_value("n");
    let commit = m.commit(&read, 200).await.expect("commit");
    assert!(matches!(commit.cookie, CookieAction::Set(_)), "{commit:?}");
    let stored = store.inner.load(&k).await.expect("load").expect("stored");
    assert!(stored.expires_at > first, "touch moved the expiry");
    assert_eq!(stored.version, 1, "a touch is not a save");
}

#[tokio::test]
async fn fixed_expiry_read_does_not_touch() {
    let (store, m) = setup(SessionConfig::default());
    let lazy = request(&m, None);
    lazy.load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    let key = value_of(&m.commit(&lazy, 200).await.expect("commit").cookie);
    let before = store.ops();
    let read = request(&m, Some(&key));
    let _ = read.load().await.expect("load").get_value("n");
    assert_eq!(
        m.commit(&read, 200).await.expect("commit").cookie,
        CookieAction::Keep
    );
    assert_eq!(store.ops() - before, 1);
}

#[tokio::test]
async fn save_every_request_saves_untouched_and_read_only_requests() {
    let config = SessionConfig::builder()
        .with_save_every_request(true)
        .build()
        .expect("valid");
    let (store, m) = setup(config);
    let lazy = request(&m, None);
    lazy.load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    let key = value_of(&m.commit(&lazy, 200).await.expect("commit").cookie);
    let k = SessionKey::parse(&key).expect("key");

    let read = request(&m, Some(&key));
    let _ = read.load().await.expect("load").get_value("n");
    assert!(m.commit(&read, 200).await.expect("commit").written);
    let untouched = request(&m, Some(&key));
    assert!(m.commit(&untouched, 200).await.expect("commit").written);
    let stored = store.inner.load(&k).await.expect("load").expect("stored");
    assert_eq!(stored.version, 3, "both requests saved");
    // A request without a session cookie still costs nothing.
    let before = store.ops();
    assert_eq!(
        m.commit(&request(&m, None), 200)
            .await
            .expect("commit")
            .cookie,
        CookieAction::Keep
    );
    assert_eq!(store.ops(), before);
}

#[tokio::test]
async fn concurrent_requests_changing_different_keys_both_keep_their_writes() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "base", 0).await;

    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    let (sa, sb) = (a.load().await.expect("load"), b.load().await.expect("load"));
    sa.insert("a", "from a").expect("insert");
    sb.insert("b", "from b").expect("insert");
    sb.remove("base");
    m.commit(&a, 200).await.expect("a commits");
    m.commit(&b, 200).await.expect("b re-applies and commits");

    let k = SessionKey::parse(&key).expect("key");
    let stored = store.inner.load(&k).await.expect("load").expect("stored");
    assert_eq!(
        serde_json::Value::Object((*stored.data).clone()),
        json!({"a": "from a", "b": "from b"})
    );
    assert_eq!(stored.version, 3);
}

#[tokio::test]
async fn concurrent_requests_on_one_key_end_with_one_whole_value() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "v", 0).await;
    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    let (sa, sb) = (a.load().await.expect("load"), b.load().await.expect("load"));
    sa.insert("v", json!({"from": "a", "items": [1, 2, 3]}))
        .expect("insert");
    sb.insert("v", json!({"from": "b", "items": [4]}))
        .expect("insert");
    m.commit(&a, 200).await.expect("a");
    m.commit(&b, 200).await.expect("b");
    let stored = store
        .inner
        .load(&SessionKey::parse(&key).expect("key"))
        .await
        .expect("load")
        .expect("stored");
    let v = &stored.data["v"];
    assert!(
        *v == json!({"from": "a", "items": [1, 2, 3]}) || *v == json!({"from": "b", "items": [4]}),
        "mixed value {v}"
    );
}

#[tokio::test]
async fn many_concurrent_requests_lose_no_increment() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "count", 0).await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (m, key) = (m.clone(), key.clone());
            tokio::spawn(async move {
                for i in 0..10 {
                    let lazy = m.lazy(Some(&key));
                    let s = lazy.load().await.expect("load");
                    s.insert(format!("t{t}"), i + 1).expect("insert");
                    m.commit(&lazy, 200).await.expect("commit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let stored = store
        .inner
        .load(&SessionKey::parse(&key).expect("key"))
        .await
        .expect("load")
        .expect("stored");
    for t in 0..16 {
        assert_eq!(stored.data[&format!("t{t}")], 10, "task {t} lost a write");
    }
}

#[tokio::test]
async fn a_logout_racing_a_save_is_not_undone() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "user", 1).await;
    let slow = request(&m, Some(&key));
    let logout = request(&m, Some(&key));
    slow.load()
        .await
        .expect("load")
        .insert("cart", 1)
        .expect("insert");
    logout.load().await.expect("load").flush();
    m.commit(&logout, 200).await.expect("logout");
    let commit = m.commit(&slow, 200).await.expect("slow request");
    // The logout's own response removed the cookie; this one must not set it again.
    assert_eq!(commit.cookie, CookieAction::Keep, "{commit:?}");
    assert!(commit.writes_dropped);
    let key = SessionKey::parse(&key).expect("key");
    assert_eq!(
        store.inner.lookup(&key).await.expect("lookup"),
        Lookup::Ended
    );
}

#[tokio::test]
async fn conflict_retries_are_bounded() {
    /// A store whose every save conflicts.
    struct AlwaysConflict(MemoryStore);
    #[async_trait]
    impl Store for AlwaysConflict {
        async fn create(&self, r: &Record) -> Result<SessionKey> {
            self.0.create(r).await
        }
        async fn load(&self, k: &SessionKey) -> Result<Option<Record>> {
            self.0.load(k).await
        }
        async fn save(&self, _: &SessionKey, _: &Record) -> Result<SessionKey> {
            Err(Error::Conflict)
        }
        async fn touch(&self, k: &SessionKey, at: OffsetDateTime) -> Result<SessionKey> {
            self.0.touch(k, at).await
        }
        async fn end(&self, k: &SessionKey, v: u64, until: OffsetDateTime) -> Result<()> {
            self.0.end(k, v, until).await
        }
        async fn delete(&self, k: &SessionKey) -> Result<()> {
            self.0.delete(k).await
        }
        async fn clear_expired(&self) -> Result<u64> {
            self.0.clear_expired().await
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::server_side()
        }
    }
    let m = SessionManager::new(
        Arc::new(AlwaysConflict(MemoryStore::new())),
        SessionConfig::builder()
            .with_conflict_retries(3)
            .build()
            .expect("valid"),
    );
    let first = m.lazy(None);
    first
        .load()
        .await
        .expect("load")
        .insert("n", 1)
        .expect("insert");
    let key = value_of(&m.commit(&first, 200).await.expect("commit").cookie);
    let lazy = m.lazy(Some(&key));
    lazy.load()
        .await
        .expect("load")
        .insert("n", 2)
        .expect("insert");
    assert!(matches!(m.commit(&lazy, 200).await, Err(Error::Conflict)));
}

#[tokio::test]
async fn clear_expired_goes_to_the_store() {
    let (store, m) = setup(SessionConfig::default());
    let mut r = Record::new(
        Default::default(),
        OffsetDateTime::now_utc() - Duration::hours(1),
    );
    r.version = 0;
    store.inner.create(&r).await.expect("create");
    assert_eq!(m.clear_expired().await.expect("clear"), 1);
}

#[tokio::test]
async fn overlapping_read_modify_writes_of_one_key_never_lose_an_increment() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "n", 0).await;
    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    for lazy in [&a, &b] {
        let s = lazy.load().await.expect("load");
        let n = s.get::<i64>("n").expect("typed").unwrap_or(0);
        s.insert("n", n + 1).expect("insert");
    }
    m.commit(&a, 200).await.expect("the first commit wins");
    assert!(
        matches!(m.commit(&b, 200).await, Err(Error::Conflict)),
        "re-applying n = 1 over n = 1 would lose b's increment"
    );
    // The client retries b: it now reads 1 and writes 2.
    let retry = request(&m, Some(&key));
    let s = retry.load().await.expect("load");
    let n = s.get::<i64>("n").expect("typed").unwrap_or(0);
    s.insert("n", n + 1).expect("insert");
    m.commit(&retry, 200).await.expect("retry");
    let k = SessionKey::parse(&key).expect("key");
    assert_eq!(
        store
            .inner
            .load(&k)
            .await
            .expect("load")
            .expect("stored")
            .data["n"],
        2
    );
}

#[tokio::test]
async fn read_modify_writes_of_different_keys_still_merge() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "a", 0).await;
    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    let sa = a.load().await.expect("load");
    let sb = b.load().await.expect("load");
    let n = sa.get::<i64>("a").expect("typed").unwrap_or(0);
    sa.insert("a", n + 1).expect("insert");
    let n = sb.get::<i64>("b").expect("typed").unwrap_or(0);
    sb.insert("b", n + 1).expect("insert");
    m.commit(&a, 200).await.expect("a");
    m.commit(&b, 200)
        .await
        .expect("b merges: it never read `a`");
    let k = SessionKey::parse(&key).expect("key");
    let r = store.inner.load(&k).await.expect("load").expect("stored");
    assert_eq!(
        (r.data["a"].clone(), r.data["b"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn a_whole_dictionary_read_makes_every_write_a_read_modify_write() {
    let (_store, m) = setup(SessionConfig::default());
    let key = stored(&m, "items", json!([1])).await;
    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    a.load()
        .await
        .expect("load")
        .insert("items", json!([1, 2]))
        .expect("insert");
    let sb = b.load().await.expect("load");
    let count = sb.values().len();
    sb.insert("items", json!(vec![0; count])).expect("insert");
    m.commit(&a, 200).await.expect("a");
    assert!(matches!(m.commit(&b, 200).await, Err(Error::Conflict)));
}

#[tokio::test]
async fn reading_only_the_set_of_keys_does_not_conflict_with_a_changed_value() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "items", json!([1])).await;
    let a = request(&m, Some(&key));
    let b = request(&m, Some(&key));
    a.load()
        .await
        .expect("load")
        .insert("items", json!([1, 2]))
        .expect("insert");
    let sb = b.load().await.expect("load");
    let (n, names, empty) = (sb.len(), sb.keys(), sb.is_empty());
    sb.insert("seen", json!([n, names, empty])).expect("insert");
    m.commit(&a, 200).await.expect("a");
    m.commit(&b, 200)
        .await
        .expect("a changed value is not a changed key set");
    let k = SessionKey::parse(&key).expect("key");
    let r = store.inner.load(&k).await.expect("load").expect("stored");
    assert_eq!(r.data["items"], json!([1, 2]));
    assert_eq!(r.data["seen"], json!([1, ["items"], false]));

    // A key added concurrently does change what `len` saw: that write conflicts.
    let c = request(&m, Some(&key));
    let d = request(&m, Some(&key));
    c.load()
        .await
        .expect("load")
        .insert("new", 1)
        .expect("insert");
    let sd = d.load().await.expect("load");
    let n = sd.len();
    sd.insert("count", n).expect("insert");
    m.commit(&c, 200).await.expect("c");
    assert!(matches!(m.commit(&d, 200).await, Err(Error::Conflict)));
}

#[tokio::test]
async fn a_save_sends_the_cookie_again_only_when_its_expiry_must_move() {
    let (store, m) = setup(SessionConfig::default());
    let key = stored(&m, "n", 1).await;
    let k = SessionKey::parse(&key).expect("key");
    // The stored expiry lies well before what a save now would give: the cookie, set to
    // expire with it, must be refreshed.
    let mut r = store.inner.load(&k).await.expect("load").expect("stored");
    let old = r.expires_at - Duration::hours(1);
    r.expires_at = old;
    store.inner.save(&k, &r).await.expect("save");
    let lazy = request(&m, Some(&key));
    lazy.load()
        .await
        .expect("load")
        .insert("n", 2)
        .expect("insert");
    let commit = m.commit(&lazy, 200).await.expect("commit");
    assert_eq!(value_of(&commit.cookie), key, "{commit:?}");
    // Right after, a second save moves it by less than a minute: no cookie.
    let lazy = request(&m, Some(&key));
    lazy.load()
        .await
        .expect("load")
        .insert("n", 3)
        .expect("insert");
    let commit = m.commit(&lazy, 200).await.expect("commit");
    assert_eq!((commit.cookie, commit.written), (CookieAction::Keep, true));
}
