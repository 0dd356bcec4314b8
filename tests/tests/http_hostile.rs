//! Hostile input at the HTTP layer: `session-tower`'s `SessionLayer` and the axum
//! `Session` extractor over every embedded store, driven in process with
//! `tower::ServiceExt::oneshot`.
//!
//! - Unknown keys (thousands of them) create no session and get nothing but the removal of
//!   the dead cookie unless the handler writes, and a handler that writes gets a fresh
//!   key, never the one it was sent.
//! - Several session cookies in one request (cookie tossing): the first value that names a
//!   live session wins, in one `Cookie` header and across several.
//! - Over-long cookie values (4097 bytes, 8 KiB, 1 MiB) are refused by length: a fresh
//!   session, the junk cookie removed, and no store operation at all (counted by a wrapper
//!   store).
//! - A request still holding a key that a concurrent login rotated, or a logout ended,
//!   gets no data and no `Set-Cookie`, on every server-side store.
//! - Header injection through the cookie configuration is refused when it is built.
//! - Every error response is the same empty 500, and a tampered cookie-store cookie gets
//!   exactly the response an unknown one gets.

// A failed unwrap is how a test reports an unexpected error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use session_core::{
    Capabilities, Error, Record, Result, SameSite, SessionConfig, SessionKey, SessionManager,
    Store, async_trait,
};
use session_signed_cookie::CookieStore;
use session_tower::{Session, SessionLayer};
use time::OffsetDateTime;
use tower::ServiceExt;

use session_tests::{COOKIE_SECRET, Counting, Counts, Kind, Opened, open};

/// An app with three routes: `/noop` never touches the session, `/read` reads the visit
/// counter, `/write` increments it.
fn app(store: Arc<dyn Store>) -> (Router, Arc<Counts>) {
    let counting = Counting::new(store);
    let counts = counting.counts.clone();
    let manager = SessionManager::new(Arc::new(counting), SessionConfig::default());
    (router(manager), counts)
}

fn router(manager: SessionManager) -> Router {
    Router::new()
        .route("/noop", get(|| async { "ok" }))
        .route(
            "/read",
            get(|s: Session| async move { format!("{:?}", s.get::<u64>("visits").unwrap()) }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let n = s.get::<u64>("visits").unwrap().unwrap_or(0) + 1;
                s.insert("visits", n).unwrap();
                format!("{:?}", Some(n))
            }),
        )
        .route(
            "/login",
            get(|s: Session| async move {
                s.cycle_key();
                s.insert("user", "ada").unwrap();
                "welcome"
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.flush();
                "bye"
            }),
        )
        .layer(SessionLayer::new(manager))
}

/// What a client sees of a response.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn set_cookie(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == SET_COOKIE.as_str())
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response removes the session cookie.
    fn removes_cookie(&self) -> bool {
        self.set_cookie()
            .is_some_and(|c| c.starts_with("sessionid=;") && c.contains("Max-Age=0"))
    }

    /// The session cookie value the response sets.
    fn cookie_value(&self) -> Option<String> {
        let pair = self.set_cookie()?.split(';').next()?;
        Some(pair.split_once('=')?.1.to_owned())
    }
}

async fn send(app: &Router, path: &str, cookie_headers: &[&str]) -> Seen {
    let mut req = Request::builder().uri(path);
    for c in cookie_headers {
        req = req.header(COOKIE, *c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Seen {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// A value that is a well-formed key but that no store issued, or a malformed one.
fn hostile_value(i: usize) -> String {
    let k = SessionKey::generate();
    let s = k.as_str();
    match i % 6 {
        0 | 1 => s.to_owned(),
        2 => s.to_uppercase(),
        3 => format!("{s}{s}"),
        4 => format!("../{}", &s[..8]),
        _ => format!("{s}%00\"{}", &s[..3]),
    }
}

async fn unknown_keys_create_nothing(kind: Kind) {
    let opened: Opened = open(kind).await;
    let (app, counts) = app(opened.store.clone());
    for i in 0..2000 {
        let value = hostile_value(i);
        let path = if i % 2 == 0 { "/read" } else { "/noop" };
        let seen = send(&app, path, &[&format!("sessionid={value}")]).await;
        assert_eq!(seen.status, StatusCode::OK, "{kind:?}: {value}");
        assert!(
            seen.set_cookie().is_none() || seen.removes_cookie(),
            "{kind:?}: a cookie was set for {value}: {:?}",
            seen.set_cookie()
        );
        if path == "/read" {
            assert!(seen.removes_cookie(), "{kind:?}: {value} was not removed");
        }
        if path == "/read" {
            assert_eq!(seen.body, "None", "{kind:?}: {value} was adopted");
        }
    }
    assert_eq!(counts.writes(), 0, "{kind:?}: {:?}", counts.snapshot());
    let before = counts.snapshot();

    // A handler that writes gets a new key, never the one it was sent.
    for i in 0..200 {
        let value = hostile_value(i);
        let seen = send(&app, "/write", &[&format!("sessionid={value}")]).await;
        assert_eq!(seen.body, "Some(1)");
        let issued = seen
            .cookie_value()
            .expect("a writing handler sets the cookie");
        assert_ne!(issued, value, "{kind:?}: the unknown key was adopted");
    }
    let after = counts.snapshot();
    // create, save, touch: 200 creates, no save or touch of an unknown key.
    assert_eq!(
        [
            after[0] - before[0],
            after[2] - before[2],
            after[3] - before[3]
        ],
        [200, 0, 0],
        "{kind:?}"
    );
    opened.finish().await;
}

async fn first_live_cookie_wins(kind: Kind) {
    let opened = open(kind).await;
    let (app, _) = app(opened.store.clone());
    let a = send(&app, "/write", &[]).await.cookie_value().unwrap();
    let b = send(&app, "/write", &[]).await.cookie_value().unwrap();
    let b = send(&app, "/write", &[&format!("sessionid={b}")])
        .await
        .cookie_value()
        .unwrap_or(b);
    assert_eq!(
        send(&app, "/read", &[&format!("sessionid={b}")]).await.body,
        "Some(2)"
    );

    let unknown = SessionKey::generate();
    let long = "a".repeat(5000);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![format!("sessionid={a}; sessionid={b}")], "Some(1)"),
        (vec![format!("sessionid={b}; sessionid={a}")], "Some(2)"),
        (
            vec![format!("sessionid={a}"), format!("sessionid={b}")],
            "Some(1)",
        ),
        (
            vec![format!("sessionid={b}"), format!("sessionid={a}")],
            "Some(2)",
        ),
        (
            vec![format!(
                "x=1; sessionidx={b}; sessionid=\"{a}\"; sessionid={b}"
            )],
            "Some(1)",
        ),
        // Malformed values are skipped.
        (
            vec![format!("sessionid=a\\b; sessionid={a}; sessionid={b}")],
            "Some(1)",
        ),
        (
            vec![format!("sessionid={long}"), format!("sessionid={b}")],
            "Some(2)",
        ),
        (vec![format!("sessionid=; sessionid={a}")], "Some(1)"),
        // A planted value the store does not know never replaces the real session.
        (
            vec![format!("sessionid={}; sessionid={a}", unknown.as_str())],
            "Some(1)",
        ),
        (
            vec![
                format!("sessionid={}", unknown.as_str()),
                format!("sessionid={b}"),
            ],
            "Some(2)",
        ),
    ];
    for (headers, want) in &cases {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        for _ in 0..20 {
            let seen = send(&app, "/read", &headers).await;
            assert_eq!(&seen.body, want, "{kind:?}: {headers:?}");
            assert_eq!(seen.set_cookie(), None);
        }
    }
    opened.finish().await;
}

async fn over_long_values_are_refused_by_length(kind: Kind) {
    let opened = open(kind).await;
    let (app, counts) = app(opened.store.clone());
    // A real session, so that a refused value provably does not fall back to it.
    let first = send(&app, "/write", &[]).await.cookie_value().unwrap();
    let real = send(&app, "/write", &[&format!("sessionid={first}")])
        .await
        .cookie_value()
        .unwrap_or(first);
    assert_eq!(
        send(&app, "/read", &[&format!("sessionid={real}")])
            .await
            .body,
        "Some(2)"
    );
    for len in [4097, 8 * 1024, 1024 * 1024] {
        // Starts with the real value: only the length can make it wrong.
        let value = format!("{real}{}", "a".repeat(len - real.len()));
        let before = counts.total();
        let seen = send(&app, "/read", &[&format!("sessionid={value}")]).await;
        assert_eq!(
            (seen.status, seen.body.as_str(), seen.removes_cookie()),
            (StatusCode::OK, "None", true),
            "{kind:?}: {len} bytes"
        );
        assert_eq!(
            counts.total(),
            before,
            "{kind:?}: a {len}-byte value reached the store"
        );
        // A handler that writes gets a fresh session (the real one holds 2).
        let seen = send(&app, "/write", &[&format!("sessionid={value}")]).await;
        assert_eq!(seen.body, "Some(1)", "{kind:?}: {len} bytes");
        assert!(seen.cookie_value().is_some());
    }
    opened.finish().await;
}

macro_rules! per_store {
    ($($name:ident: $kind:expr;)*) => {
        mod unknown_keys {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    unknown_keys_create_nothing($kind).await;
                }
            )*
        }
        mod duplicate_cookies {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    first_live_cookie_wins($kind).await;
                }
            )*
        }
        mod over_long_values {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    over_long_values_are_refused_by_length($kind).await;
                }
            )*
        }
    };
}

/// A late request of the same browser (an XHR sent before the login or logout answered)
/// still holds the old key: it gets no data, and no `Set-Cookie` that would replace the
/// cookie the login just set or bring back the one the logout removed.
async fn a_rotated_or_ended_key_sets_no_cookie(kind: Kind) {
    let opened = open(kind).await;
    let (app, counts) = app(opened.store.clone());
    let old = send(&app, "/write", &[]).await.cookie_value().unwrap();
    let login = send(&app, "/login", &[&format!("sessionid={old}")]).await;
    let new = login.cookie_value().unwrap();
    assert_ne!(new, old, "{kind:?}: login did not rotate the key");
    let writes = counts.writes();
    for path in ["/read", "/write", "/login", "/logout", "/noop"] {
        let late = send(&app, path, &[&format!("sessionid={old}")]).await;
        assert_eq!(late.status, StatusCode::OK, "{kind:?} {path}");
        assert_eq!(
            late.set_cookie(),
            None,
            "{kind:?} {path}: the login cookie is clobbered"
        );
        if path == "/read" {
            assert_eq!(late.body, "None", "{kind:?}: the old key reads data");
        }
    }
    assert_eq!(counts.writes(), writes, "{kind:?}: the late requests wrote");
    assert_eq!(
        send(&app, "/read", &[&format!("sessionid={new}")])
            .await
            .body,
        "Some(1)",
        "{kind:?}: the new session changed"
    );
    // The same after a logout: the removal stays.
    let out = send(&app, "/logout", &[&format!("sessionid={new}")]).await;
    assert!(out.removes_cookie(), "{kind:?}");
    let late = send(&app, "/write", &[&format!("sessionid={new}")]).await;
    assert_eq!(
        late.set_cookie(),
        None,
        "{kind:?}: a late write brought a cookie back"
    );
    opened.finish().await;
}

mod rotated_keys {
    use super::*;

    macro_rules! server_side {
        ($($name:ident: $kind:expr;)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                a_rotated_or_ended_key_sets_no_cookie($kind).await;
            }
        )*};
    }

    server_side! {
        memory: Kind::Memory;
        moka: Kind::Moka;
        sqlite_memory: Kind::SqliteMemory;
        sqlite_file: Kind::SqliteFile;
        file: Kind::File;
        cached_moka_sqlite: Kind::CachedMokaSqlite;
    }

    macro_rules! service {
        ($($name:ident: $kind:expr, $why:literal;)*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = $why]
            async fn $name() {
                a_rotated_or_ended_key_sets_no_cookie($kind).await;
            }
        )*};
    }

    service! {
        postgres: Kind::Postgres, "needs SESSION_TEST_POSTGRES_URL";
        mysql: Kind::MySql, "needs SESSION_TEST_MYSQL_URL";
        redis: Kind::Redis, "needs SESSION_TEST_REDIS_URL";
        redis_cluster: Kind::RedisCluster, "needs SESSION_TEST_REDIS_CLUSTER_URLS";
        cached_redis_postgres: Kind::CachedRedisPostgres,
            "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL";
    }
}

per_store! {
    memory: Kind::Memory;
    moka: Kind::Moka;
    sqlite_memory: Kind::SqliteMemory;
    sqlite_file: Kind::SqliteFile;
    file: Kind::File;
    cached_moka_sqlite: Kind::CachedMokaSqlite;
    signed_cookie: Kind::CookieSigned;
    encrypted_cookie: Kind::CookieEncrypted;
}

// --- configuration -------------------------------------------------------------------

#[test]
fn header_injection_through_the_configuration_is_refused_at_build_time() {
    let b = SessionConfig::builder;
    let bad = [
        b().with_cookie_name("sid\r\nSet-Cookie: admin=1"),
        b().with_cookie_name("sid\nX: y"),
        b().with_cookie_name("sid; Domain=evil.example"),
        b().with_cookie_name("sid=x"),
        b().with_cookie_name("s id"),
        b().with_cookie_name("sid\0"),
        b().with_cookie_name("séance"),
        b().with_cookie_path("/\r\nSet-Cookie: admin=1"),
        b().with_cookie_path("/; Domain=evil.example"),
        b().with_cookie_path("/\u{7f}"),
        b().with_cookie_path("/é"),
        b().with_cookie_domain("example.com\r\nX: y"),
        b().with_cookie_domain("example.com; Secure"),
        b().with_cookie_domain("example.com/path"),
        b().with_cookie_domain("exa mple.com"),
        b().with_cookie_samesite(SameSite::None)
            .with_cookie_secure(false),
    ];
    for builder in bad {
        let shown = format!("{builder:?}");
        assert!(builder.build().is_err(), "accepted {shown}");
    }
    for name in ["a;b", "a\r\nb", "a b", ""] {
        assert!(
            CookieStore::signed(COOKIE_SECRET)
                .with_cookie_name(name)
                .build()
                .is_err(),
            "the cookie store accepted the name {name:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any configuration value holding a header-breaking byte is refused; any accepted
    /// configuration yields a `Set-Cookie` with exactly the attributes it configured.
    #[test]
    fn no_configuration_value_breaks_the_set_cookie_header(
        name in "[a-z]{1,8}",
        path in "/[a-z/]{0,8}",
        domain in "[a-z]{1,8}\\.example",
        evil in prop::sample::select(vec![";", "\r", "\n", "\r\n", "\0", "\u{7f}", ";,"]),
        at in 0usize..8,
        which in 0usize..3,
    ) {
        let insert = |s: &str| {
            let at = at.min(s.len());
            format!("{}{evil}{}", &s[..at], &s[at..])
        };
        let b = SessionConfig::builder().with_cookie_name(&name).with_cookie_path(&path).with_cookie_domain(&domain);
        let broken = match which {
            0 => b.with_cookie_name(insert(&name)),
            1 => b.with_cookie_path(insert(&path)),
            _ => b.with_cookie_domain(insert(&domain)),
        };
        prop_assert!(broken.build().is_err());

        let config = SessionConfig::builder()
            .with_cookie_name(&name)
            .with_cookie_path(&path)
            .with_cookie_domain(&domain)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let seen = rt.block_on(async {
            let manager = SessionManager::new(Arc::new(session_core::MemoryStore::new()), config);
            send(&router(manager), "/write", &[]).await
        });
        let set_cookie = seen.set_cookie().unwrap();
        let parts: Vec<&str> = set_cookie.split("; ").collect();
        let prefix = format!("{name}=");
        prop_assert!(parts[0].starts_with(&prefix));
        let path_attr = format!("Path={path}");
        let domain_attr = format!("Domain={domain}");
        prop_assert_eq!(parts.iter().filter(|p| p.starts_with("Path=")).count(), 1);
        prop_assert!(parts.contains(&path_attr.as_str()));
        prop_assert_eq!(parts.iter().filter(|p| p.starts_with("Domain=")).count(), 1);
        prop_assert!(parts.contains(&domain_attr.as_str()));
        for attr in ["Secure", "HttpOnly", "SameSite=Lax"] {
            prop_assert!(parts.contains(&attr), "{} lacks {}", set_cookie, attr);
        }
    }
}

// --- generic errors ------------------------------------------------------------------

/// How a [`Broken`] store fails.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// Every operation is a backend error whose message names the failing check.
    Backend,
    /// Every operation times out.
    Timeout,
    /// Loads find a record; every save conflicts (the commit runs out of retries).
    Conflicts,
    /// Loads find nothing; creates are refused as too large.
    TooLarge,
}

#[derive(Debug)]
struct Broken(Failure);

fn leaky_error() -> Error {
    Error::backend(
        "postgres",
        std::io::Error::other("relation \"secret_sessions\" does not exist; HMAC check failed"),
    )
}

#[async_trait]
impl Store for Broken {
    async fn create(&self, _: &Record) -> Result<SessionKey> {
        Err(match self.0 {
            Failure::Timeout => Error::Timeout {
                store: "redis",
                after: std::time::Duration::from_millis(250),
            },
            Failure::TooLarge => Error::TooLarge {
                size: 5000,
                limit: 4096,
            },
            Failure::Backend | Failure::Conflicts => leaky_error(),
        })
    }
    async fn load(&self, _: &SessionKey) -> Result<Option<Record>> {
        match self.0 {
            Failure::Backend => Err(leaky_error()),
            Failure::Timeout => Err(Error::Timeout {
                store: "redis",
                after: std::time::Duration::from_millis(250),
            }),
            Failure::Conflicts => {
                let mut data = session_core::Data::new();
                data.insert("visits".into(), 1.into());
                let mut r = Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1));
                r.version = 3;
                Ok(Some(r))
            }
            Failure::TooLarge => Ok(None),
        }
    }
    async fn save(&self, _: &SessionKey, _: &Record) -> Result<SessionKey> {
        Err(match self.0 {
            Failure::Conflicts => Error::Conflict,
            _ => leaky_error(),
        })
    }
    async fn touch(&self, _: &SessionKey, _: OffsetDateTime) -> Result<SessionKey> {
        Err(leaky_error())
    }
    async fn delete(&self, _: &SessionKey) -> Result<()> {
        Err(leaky_error())
    }
    async fn end(&self, _: &SessionKey, _: u64, _: OffsetDateTime) -> Result<()> {
        Err(leaky_error())
    }
    async fn clear_expired(&self) -> Result<u64> {
        Err(leaky_error())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}

#[tokio::test]
async fn every_error_response_is_the_same_empty_500() {
    let key = SessionKey::generate();
    let cookie = format!("sessionid={}", key.as_str());
    let mut responses = Vec::new();
    for failure in [
        Failure::Backend,
        Failure::Timeout,
        Failure::Conflicts,
        Failure::TooLarge,
    ] {
        let (app, _) = app(Arc::new(Broken(failure)));
        for (path, cookies) in [
            ("/read", vec![cookie.as_str()]),
            ("/write", vec![cookie.as_str()]),
            ("/write", vec![]),
        ] {
            let seen = send(&app, path, &cookies).await;
            let label = format!("{failure:?} {path} {cookies:?}");
            // A store that reads fine and fails only writes serves a read-only request.
            if matches!(failure, Failure::Conflicts | Failure::TooLarge) && path == "/read" {
                assert_eq!(seen.status, StatusCode::OK, "{label}");
                continue;
            }
            assert_eq!(seen.status, StatusCode::INTERNAL_SERVER_ERROR, "{label}");
            assert_eq!(
                seen.body, "",
                "{label}: the body tells the client something"
            );
            assert_eq!(seen.set_cookie(), None, "{label}");
            for (name, value) in &seen.headers {
                for word in [
                    "secret", "hmac", "postgres", "redis", "relation", "conflict", "large", "timed",
                ] {
                    assert!(
                        !value.to_ascii_lowercase().contains(word),
                        "{label}: header {name}: {value} leaks {word:?}"
                    );
                }
            }
            responses.push((label, seen));
        }
    }
    let (first_label, first) = &responses[0];
    for (label, seen) in &responses[1..] {
        assert_eq!(seen, first, "{label} differs from {first_label}");
    }
    assert!(responses.len() >= 8, "{}", responses.len());
}

/// Flips one character of `token` at `at` to another base64url character.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

async fn tampered_cookie_looks_unknown(kind: Kind) {
    let opened = open(kind).await;
    let (app, _) = app(opened.store.clone());
    let token = send(&app, "/write", &[]).await.cookie_value().unwrap();
    assert_eq!(
        send(&app, "/read", &[&format!("sessionid={token}")])
            .await
            .body,
        "Some(1)"
    );

    let foreign = {
        let other = CookieStore::builder(
            match kind {
                Kind::CookieSigned => session_signed_cookie::Mode::Signed,
                _ => session_signed_cookie::Mode::Encrypted,
            },
            b"another secret of at least thirty-two bytes, unrelated",
        )
        .build()
        .unwrap();
        let (other_app, _) = app_with(other);
        send(&other_app, "/write", &[])
            .await
            .cookie_value()
            .unwrap()
    };
    let unknown = send(
        &app,
        "/read",
        &["sessionid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    )
    .await;
    assert_eq!(unknown.body, "None");
    let mut hostile = vec![
        ("foreign key", foreign),
        ("truncated", token[..token.len() - 1].to_owned()),
        ("extended", format!("{token}A")),
        ("empty-ish", "A".to_owned()),
    ];
    for at in [
        0,
        1,
        2,
        token.len() / 3,
        token.len() / 2,
        token.len() - 2,
        token.len() - 1,
    ] {
        hostile.push(("flipped", flip(&token, at)));
    }
    for (what, value) in hostile {
        let seen = send(&app, "/read", &[&format!("sessionid={value}")]).await;
        assert_eq!(
            seen, unknown,
            "{kind:?}: a {what} cookie is answered differently from an unknown one"
        );
    }
    opened.finish().await;
}

fn app_with(store: impl Store) -> (Router, Arc<Counts>) {
    app(Arc::new(store))
}

#[tokio::test]
async fn tampered_signed_cookie_gets_the_unknown_cookie_response() {
    tampered_cookie_looks_unknown(Kind::CookieSigned).await;
}

#[tokio::test]
async fn tampered_encrypted_cookie_gets_the_unknown_cookie_response() {
    tampered_cookie_looks_unknown(Kind::CookieEncrypted).await;
}

/// On a server-side store an unknown well-formed key and a malformed key are
/// indistinguishable to the client: both get what no cookie gets, plus the removal of the
/// dead cookie.
#[tokio::test]
async fn unknown_and_malformed_keys_get_the_same_response() {
    for kind in [Kind::Memory, Kind::SqliteMemory, Kind::File] {
        let opened = open(kind).await;
        let (app, _) = app(opened.store.clone());
        let fresh = send(&app, "/read", &[]).await;
        let none = send(
            &app,
            "/read",
            &[&format!("sessionid={}", SessionKey::generate().as_str())],
        )
        .await;
        assert!(none.removes_cookie());
        assert_eq!((&none.status, &none.body), (&fresh.status, &fresh.body));
        for value in [
            SessionKey::generate().as_str().to_owned(),
            "../../etc/passwd".to_owned(),
            "x".repeat(31),
            "Z".repeat(32),
        ] {
            let seen = send(&app, "/read", &[&format!("sessionid={value}")]).await;
            assert_eq!(seen, none, "{kind:?}: {value}");
        }
        opened.finish().await;
    }
}
