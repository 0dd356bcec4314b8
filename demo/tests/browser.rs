//! The demo in a real browser: headless Chromium driven through WebDriver.
//!
//! Needs a running ChromeDriver: `chromedriver --port=9515` and
//! `SESSION_TEST_WEBDRIVER_URL=http://127.0.0.1:9515` (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver` and does this). `SESSION_TEST_CHROMIUM` names the
//! browser binary (default `/usr/bin/chromium`). A screenshot of the home page is left in
//! the target directory (`demo-home.png`).

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::{Value, json};

/// The WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    http: reqwest::Client,
    session: String,
}

impl Driver {
    async fn start() -> Self {
        let base = std::env::var("SESSION_TEST_WEBDRIVER_URL")
            .unwrap_or_else(|_| panic!("SESSION_TEST_WEBDRIVER_URL is not set"));
        let binary =
            std::env::var("SESSION_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().expect("profile dir").keep();
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("WebDriver reachable")
            .json()
            .await
            .expect("json");
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"));
        Self {
            http,
            session: format!("{base}/session/{id}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req
            .send()
            .await
            .expect("WebDriver")
            .json()
            .await
            .expect("json");
        if res["value"].get("error").is_some() {
            panic!("WebDriver {path}: {res}");
        }
        res["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn source(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/source", None).await;
        v.as_str().expect("source").to_owned()
    }

    /// The page source once it contains `needle` (a click returns before the navigation
    /// it starts has finished).
    async fn wait_for(&self, needle: &str) -> String {
        let mut page = String::new();
        for _ in 0..100 {
            page = self.source().await;
            if page.contains(needle) {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the page never showed {needle:?}: {page}");
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The browser's `sessionid` cookie for the current page, if any.
    async fn session_cookie(&self) -> Option<Value> {
        let all = self.call(reqwest::Method::GET, "/cookie", None).await;
        all.as_array()?
            .iter()
            .find(|c| c["name"] == "sessionid")
            .cloned()
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("png");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).expect("write screenshot");
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

async fn serve(store_url: &str) -> SocketAddr {
    let (app, _) = demo::build(store_url, demo::session_config(false).expect("config"))
        .await
        .expect("demo");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_WEBDRIVER_URL (a running chromedriver)"]
async fn a_real_browser_counts_logs_in_and_logs_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = serve(&format!("sqlite://{}", dir.path().join("b.db").display())).await;
    let site = format!("http://{addr}");
    let browser = Driver::start().await;

    for _ in 0..3 {
        browser.goto(&format!("{site}/")).await;
    }
    let page = browser.source().await;
    assert!(
        page.contains("You have visited this page 3 times."),
        "{page}"
    );
    browser.screenshot("demo-home.png").await;

    let cookie = browser.session_cookie().await.expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Lax", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    let before = cookie["value"].as_str().expect("value").to_owned();

    browser.goto(&format!("{site}/login")).await;
    browser.type_into("#username", "ada").await;
    browser.click("#login").await;
    let page = browser.wait_for(r#"<strong id="user">ada</strong>"#).await;
    assert!(
        page.contains("You have visited this page 4 times."),
        "data kept: {page}"
    );
    let after = browser.session_cookie().await.expect("a session cookie");
    assert_ne!(
        after["value"].as_str(),
        Some(before.as_str()),
        "login issues a new key"
    );

    browser.goto(&format!("{site}/logout")).await;
    browser.click("#logout").await;
    let page = browser.wait_for("You have visited this page 1 time.").await;
    assert!(!page.contains("Logged in as"), "{page}");
    let fresh = browser
        .session_cookie()
        .await
        .expect("a new session cookie");
    assert_ne!(fresh["value"], after["value"], "logout drops the key");

    browser.quit().await;
}
