//! SessionLayer and the Session extractor in an axum router.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{COOKIE, SET_COOKIE, VARY};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use session_core::{
    Capabilities, Error, MemoryStore, Record, Result, SessionConfig, SessionKey, SessionManager,
    Store, async_trait, time::OffsetDateTime,
};
use session_tower::{Session, SessionLayer};
use tower::ServiceExt;

async fn counter(session: Session) -> String {
    let n = session.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
    session.insert("n", n).expect("insert");
    n.to_string()
}

async fn reader(session: Session) -> String {
    session
        .get::<u64>("n")
        .ok()
        .flatten()
        .unwrap_or(0)
        .to_string()
}

async fn logout(session: Session) -> &'static str {
    session.flush();
    "bye"
}

async fn broken(session: Session) -> StatusCode {
    session.insert("n", 999).expect("insert");
    StatusCode::INTERNAL_SERVER_ERROR
}

fn app(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/", get(counter))
        .route("/read", get(reader))
        .route("/logout", get(logout))
        .route("/broken", get(broken))
        .route("/plain", get(|| async { "no session here" }))
        .layer(SessionLayer::new(SessionManager::new(
            store,
            SessionConfig::default(),
        )))
}

struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    vary: Vec<String>,
    body: String,
}

async fn send(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let header = |name| {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect::<Vec<_>>()
    };
    let (set_cookie, vary, status) = (header(SET_COOKIE), header(VARY), res.status());
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        set_cookie,
        vary,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

fn cookie_pair(reply: &Reply) -> String {
    reply.set_cookie[0]
        .split(';')
        .next()
        .expect("pair")
        .to_owned()
}

#[tokio::test]
async fn counter_counts_per_client_with_the_configured_cookie() {
    let app = app(Arc::new(MemoryStore::new()));
    let first = send(&app, "/", None).await;
    assert_eq!((first.status, first.body.as_str()), (StatusCode::OK, "1"));
    let set = &first.set_cookie[0];
    for attr in [
        "sessionid=",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=1209600",
    ] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert_eq!(first.vary, ["Cookie"]);
    let cookie = cookie_pair(&first);
    assert_eq!(send(&app, "/", Some(&cookie)).await.body, "2");
    assert_eq!(send(&app, "/", Some(&cookie)).await.body, "3");
    assert_eq!(
        send(&app, "/", None).await.body,
        "1",
        "another client starts at 1"
    );
}

#[tokio::test]
async fn reading_sets_vary_but_no_cookie() {
    let app = app(Arc::new(MemoryStore::new()));
    let cookie = cookie_pair(&send(&app, "/", None).await);
    let read = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(read.body, "1");
    assert!(read.set_cookie.is_empty());
    assert_eq!(read.vary, ["Cookie"]);
}

#[tokio::test]
async fn a_route_without_session_use_gets_no_cookie_and_no_vary() {
    let store = MemoryStore::new();
    let app = app(Arc::new(store.clone()));
    let unknown = format!("sessionid={}", SessionKey::generate().as_str());
    let reply = send(&app, "/plain", Some(&unknown)).await;
    assert!(reply.set_cookie.is_empty() && reply.vary.is_empty());
    let reply = send(&app, "/read", Some(&unknown)).await;
    assert!(
        reply.set_cookie.len() == 1 && reply.set_cookie[0].contains("Max-Age=0"),
        "an unknown key, once loaded, gets its cookie removed: {:?}",
        reply.set_cookie
    );
    assert!(store.is_empty(), "nothing is created for an unknown key");
}

#[tokio::test]
async fn logout_removes_the_cookie_and_the_stored_session() {
    let store = MemoryStore::new();
    let app = app(Arc::new(store.clone()));
    let cookie = cookie_pair(&send(&app, "/", None).await);
    let out = send(&app, "/logout", Some(&cookie)).await;
    assert!(
        out.set_cookie[0].starts_with("sessionid=;"),
        "{:?}",
        out.set_cookie
    );
    assert!(out.set_cookie[0].contains("Max-Age=0"));
    assert!(store.len() <= 1, "only the ended marker stays");
    assert_eq!(
        send(&app, "/", Some(&cookie)).await.body,
        "1",
        "the old cookie is dead"
    );
}

#[tokio::test]
async fn a_server_error_response_saves_nothing() {
    let store = MemoryStore::new();
    let app = app(Arc::new(store.clone()));
    let reply = send(&app, "/broken", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie.is_empty());
    assert!(store.is_empty());
}

/// A store whose medium is unreachable.
struct Down;

#[async_trait]
impl Store for Down {
    async fn create(&self, _: &Record) -> Result<SessionKey> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn load(&self, _: &SessionKey) -> Result<Option<Record>> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn save(&self, _: &SessionKey, _: &Record) -> Result<SessionKey> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn touch(&self, _: &SessionKey, _: OffsetDateTime) -> Result<SessionKey> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn delete(&self, _: &SessionKey) -> Result<()> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn end(&self, _: &SessionKey, _: u64, _: OffsetDateTime) -> Result<()> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn clear_expired(&self) -> Result<u64> {
        Err(Error::backend(
            "down",
            std::io::Error::other("connection refused"),
        ))
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::server_side()
    }
}

#[tokio::test]
async fn a_store_that_is_down_gives_a_generic_500() {
    let app = app(Arc::new(Down));
    // A new session (no load) fails at commit.
    let reply = send(&app, "/", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie.is_empty());
    assert!(
        reply.body.is_empty(),
        "nothing about the cause: {}",
        reply.body
    );
    // A known-shape key fails at load.
    let cookie = format!("sessionid={}", SessionKey::generate().as_str());
    let reply = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.is_empty());
    // A route that does not use the session still works.
    assert_eq!(
        send(&app, "/plain", Some(&cookie)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500() {
    let app: Router = Router::new().route("/", get(counter));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn an_existing_vary_header_is_kept_and_not_duplicated() {
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                s.insert("a", 1).expect("insert");
                ([(VARY, "Accept-Encoding, cookie")], "ok")
            }),
        )
        .layer(SessionLayer::new(SessionManager::new(
            Arc::new(MemoryStore::new()),
            SessionConfig::default(),
        )));
    let reply = send(&app, "/", None).await;
    assert_eq!(reply.vary, ["Accept-Encoding, cookie"]);
}

async fn login(session: Session) -> &'static str {
    session.cycle_key();
    session.insert("user", "ada").expect("insert");
    "welcome"
}

fn app_with(store: Arc<dyn Store>, config: SessionConfig) -> Router {
    Router::new()
        .route("/", get(counter))
        .route("/read", get(reader))
        .route("/login", get(login))
        .route("/plain", get(|| async { "no session here" }))
        .route(
            "/public",
            get(|s: Session| async move {
                s.insert("n", 1).expect("insert");
                (
                    [(http::header::CACHE_CONTROL, "public, max-age=60")],
                    "cached",
                )
            }),
        )
        .route(
            "/chosen",
            get(|s: Session| async move {
                s.insert("n", 1).expect("insert");
                ([(http::header::CACHE_CONTROL, "no-store")], "mine")
            }),
        )
        .layer(SessionLayer::new(SessionManager::new(store, config)))
}

/// The whole response, extensions included.
async fn raw(app: &Router, path: &str, cookie: Option<&str>) -> http::Response<Body> {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

#[tokio::test]
async fn a_request_still_holding_a_rotated_key_leaves_the_new_cookie_alone() {
    let store = MemoryStore::new();
    let app = app_with(Arc::new(store.clone()), SessionConfig::default());
    let old = cookie_pair(&send(&app, "/", None).await);
    // The login rotates the key; the browser now holds the new cookie.
    let logged_in = send(&app, "/login", Some(&old)).await;
    let new = cookie_pair(&logged_in);
    assert_ne!(new, old);
    // An XHR sent before the login answered arrives with the old cookie.
    let late = raw(&app, "/", Some(&old)).await;
    assert!(
        late.headers().get_all(SET_COOKIE).iter().next().is_none(),
        "a Set-Cookie here would log the user out"
    );
    assert!(
        late.extensions()
            .get::<session_tower::WritesDropped>()
            .is_some()
    );
    let body = late.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"1", "the late request saw no data");
    // The new session is intact and did not get the late write.
    assert_eq!(send(&app, "/read", Some(&new)).await.body, "1");
}

#[tokio::test]
async fn junk_and_dead_cookies_are_removed() {
    let store = MemoryStore::new();
    let app = app_with(Arc::new(store.clone()), SessionConfig::default());
    // A value no key of this store can have: removed without touching the store.
    for junk in [
        "sessionid=../../etc/passwd",
        "sessionid=%00",
        "sessionid=ABC",
    ] {
        let reply = send(&app, "/plain", Some(junk)).await;
        assert_eq!(reply.set_cookie.len(), 1, "{junk}: {:?}", reply.set_cookie);
        assert!(reply.set_cookie[0].contains("Max-Age=0"));
    }
    // A well-formed key the store does not hold: removed once loaded.
    let dead = format!("sessionid={}", SessionKey::generate().as_str());
    let reply = send(&app, "/read", Some(&dead)).await;
    assert!(reply.set_cookie[0].starts_with("sessionid=;"));
    // Written to instead: a new session whose cookie replaces the dead one.
    let reply = send(&app, "/", Some(&dead)).await;
    assert!(!reply.set_cookie[0].contains("Max-Age=0"));
    assert_ne!(cookie_pair(&reply), dead);
}

#[tokio::test]
async fn a_tossed_cookie_ahead_of_the_real_one_does_not_win() {
    let app = app_with(Arc::new(MemoryStore::new()), SessionConfig::default());
    let real = cookie_pair(&send(&app, "/", None).await);
    let real_value = real.split_once('=').expect("pair").1.to_owned();
    let planted = SessionKey::generate();
    let header = format!(
        "sessionid=\"<script>\"; sessionid={}; {real}",
        planted.as_str()
    );
    let reply = send(&app, "/", Some(&header)).await;
    assert_eq!(reply.body, "2", "the real session was not the one used");
    // Saved under the real key, which the browser already holds: no cookie replaces it.
    assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    assert_eq!(
        send(&app, "/read", Some(&format!("sessionid={real_value}")))
            .await
            .body,
        "2"
    );
}

#[tokio::test]
async fn responses_that_set_the_cookie_are_kept_out_of_shared_caches() {
    let app = app_with(Arc::new(MemoryStore::new()), SessionConfig::default());
    let first = raw(&app, "/", None).await;
    assert_eq!(first.headers()[http::header::CACHE_CONTROL], "private");
    // A response that does not change the cookie is left alone.
    let cookie = first.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let read = raw(&app, "/read", Some(&cookie)).await;
    assert!(read.headers().get(http::header::CACHE_CONTROL).is_none());
    // What the application chose is kept; `public` is only warned about by default...
    let chosen = raw(&app, "/chosen", None).await;
    assert_eq!(chosen.headers()[http::header::CACHE_CONTROL], "no-store");
    let public = raw(&app, "/public", None).await;
    assert_eq!(
        public.headers()[http::header::CACHE_CONTROL],
        "public, max-age=60"
    );
    // ...and replaced when configured.
    let strict = app_with(
        Arc::new(MemoryStore::new()),
        SessionConfig::builder()
            .with_override_public_cache_control(true)
            .build()
            .expect("valid"),
    );
    let public = raw(&strict, "/public", None).await;
    assert_eq!(public.headers()[http::header::CACHE_CONTROL], "private");
}
