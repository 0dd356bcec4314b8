//! The demo served on a loopback port, driven by an HTTP client with a cookie jar, against
//! every store of the default test run (and Redis / PostgreSQL when their URLs are set).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::SET_COOKIE;
use sessions::{SessionKey, SessionManager};

struct Server {
    addr: SocketAddr,
    manager: SessionManager,
}

async fn serve(store_url: &str) -> Server {
    let (app, manager) = demo::build(store_url, demo::session_config(false).expect("config"))
        .await
        .unwrap_or_else(|e| panic!("{store_url}: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Server { addr, manager }
}

struct Browser {
    jar: Arc<Jar>,
    http: reqwest::Client,
    base: reqwest::Url,
}

impl Browser {
    fn new(server: &Server) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let base = format!("http://{}/", server.addr).parse().expect("url");
        Self { jar, http, base }
    }

    /// The session cookie the jar holds for the site, if any.
    fn cookie(&self) -> Option<String> {
        let header = self.jar.cookies(&self.base)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("sessionid=").map(str::to_owned))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let url = self.base.join(path).expect("url");
        let res = self.http.get(url).send().await.expect("GET");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res
    }

    async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("body")
    }

    /// Posts a form, expects the redirect every form answers with, and follows it.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (Vec<String>, String) {
        let url = self.base.join(path).expect("url");
        let res = self.http.post(url).form(form).send().await.expect("POST");
        assert!(
            res.status().is_redirection(),
            "POST {path}: {}",
            res.status()
        );
        let set_cookie = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        let location = res.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        (set_cookie, self.text(&location).await)
    }
}

fn visits(page: &str) -> u64 {
    let start = page.find("You have visited this page ").expect("counter") + 27;
    page[start..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

async fn walk_through(store_url: &str) {
    let server = serve(store_url).await;
    let server_side = server.manager.store().capabilities().server_side;
    let alice = Browser::new(&server);

    // The cookie comes with the configured attributes.
    let first = alice.get("/").await;
    let set_cookie: Vec<String> = first
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    for attr in [
        "sessionid=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=1209600",
    ] {
        assert!(
            set_cookie[0].contains(attr),
            "{} lacks {attr}",
            set_cookie[0]
        );
    }
    assert!(
        !set_cookie[0].contains("Secure"),
        "the demo serves plain HTTP"
    );
    let page = first.text().await.expect("body");
    assert_eq!(visits(&page), 1);
    assert!(
        page.contains(&sessions::redact_url(store_url)),
        "the page names the store"
    );

    // The counter goes 1, 2, 3 for one browser and starts at 1 for another.
    assert_eq!(visits(&alice.text("/").await), 2);
    assert_eq!(visits(&alice.text("/").await), 3);
    let bob = Browser::new(&server);
    assert_eq!(visits(&bob.text("/").await), 1);

    // Login changes the cookie value and keeps the data.
    let before = alice.cookie().expect("a session cookie");
    let (_, home) = alice.post("/login", &[("username", "ada")]).await;
    let after = alice.cookie().expect("a session cookie");
    assert_ne!(before, after, "login must issue a new key");
    assert!(home.contains(r#"<strong id="user">ada</strong>"#), "{home}");
    assert_eq!(visits(&home), 4, "the data survives the new key");
    if server_side {
        let old = SessionKey::parse(&before).expect("key");
        let gone = server.manager.store().load(&old).await.expect("load");
        assert!(gone.is_none(), "the pre-login key is dead");
    }

    // Preferences are stored.
    let (_, prefs) = alice.post("/preferences", &[("theme", "dark")]).await;
    assert!(prefs.contains("Current theme: dark"), "{prefs}");
    assert!(alice.text("/").await.contains(r#"<body class="dark">"#));

    // Logout removes the cookie and the stored session.
    let key = alice.cookie().expect("a session cookie");
    let (set_cookie, home) = alice.post("/logout", &[]).await;
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    assert!(
        set_cookie[0].starts_with("sessionid=;") && set_cookie[0].contains("Max-Age=0"),
        "logout removes the cookie: {set_cookie:?}"
    );
    assert!(!home.contains("Logged in as"));
    assert_eq!(visits(&home), 1, "a fresh session after logout");
    assert_ne!(
        alice.cookie().as_deref(),
        Some(key.as_str()),
        "a new key after logout"
    );
    if server_side {
        let k = SessionKey::parse(&key).expect("key");
        assert!(
            server
                .manager
                .store()
                .load(&k)
                .await
                .expect("load")
                .is_none()
        );
    }
}

#[tokio::test]
async fn memory_store() {
    walk_through("memory://").await;
}

#[tokio::test]
async fn moka_store() {
    walk_through("moka://").await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    walk_through(&format!(
        "sqlite://{}",
        dir.path().join("demo.db").display()
    ))
    .await;
}

#[tokio::test]
async fn file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    walk_through(&format!("file://{}", dir.path().join("sessions").display())).await;
}

#[tokio::test]
async fn cookie_stores() {
    // A variable cargo sets for every test process, longer than the minimum secret.
    walk_through("cookie+signed://?secret_env=CARGO_PKG_DESCRIPTION").await;
    walk_through("cookie+encrypted://?secret_env=CARGO_PKG_DESCRIPTION").await;
}

#[tokio::test]
async fn cached_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    walk_through(&format!(
        "cached:moka://|sqlite://{}",
        dir.path().join("c.db").display()
    ))
    .await;
}

fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"))
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_POSTGRES_URL"]
async fn postgres_store() {
    walk_through(&format!(
        "{}?table=demo_e2e",
        env_url("SESSION_TEST_POSTGRES_URL")
    ))
    .await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL"]
async fn redis_store() {
    walk_through(&format!(
        "{}?prefix=demo_e2e:",
        env_url("SESSION_TEST_REDIS_URL")
    ))
    .await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn mysql_store() {
    walk_through(&format!(
        "{}?table=demo_e2e",
        env_url("SESSION_TEST_MYSQL_URL")
    ))
    .await;
}

#[tokio::test]
async fn clear_expired_works_for_the_demo_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(&format!("sqlite://{}", dir.path().join("x.db").display())).await;
    assert_eq!(server.manager.clear_expired().await.expect("clear"), 0);
}
