//! The LocalLibrary visit counter: the session example of MDN's Django tutorial, on axum
//! with the `sessions` crate family.
//!
//! Pages:
//! - `/`: counts this browser's visits ("You have visited this page N times");
//! - `/login`: a form; logging in calls [`cycle_key`](sessions::core::Session::cycle_key) and
//!   remembers the user;
//! - `/logout`: flushes the session (data, key and cookie);
//! - `/preferences`: stores a choice of theme.
//!
//! Every page says which store is in use. The store comes from one URL (see
//! [`sessions::open`]); the binary reads it from `SESSION_STORE`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use sessions::{Session, SessionLayer};
use sessions::{SessionConfig, SessionManager};

/// The store the demo uses when `SESSION_STORE` is not set: a SQLite file in the working
/// directory, so the demo needs no service.
pub const DEFAULT_STORE: &str = "sqlite://demo-sessions.sqlite3";

/// What every page shows about the running application.
#[derive(Clone, Debug)]
struct App {
    /// The store URL with any password hidden.
    store: Arc<str>,
}

/// The session configuration of the demo: the defaults, except `Secure`, which the demo
/// turns off because it serves plain HTTP on the loopback interface (set
/// `SESSION_COOKIE_SECURE=1` behind TLS).
///
/// # Errors
///
/// Never for the built-in values; a [`sessions::ConfigError`] if they were invalid.
pub fn session_config(secure: bool) -> Result<SessionConfig, sessions::ConfigError> {
    SessionConfig::builder().with_cookie_secure(secure).build()
}

/// The demo's routes, with sessions committed through `manager`; `store_url` is shown
/// (redacted) on every page.
pub fn router(manager: SessionManager, store_url: &str) -> Router {
    let app = App {
        store: sessions::redact_url(store_url).into(),
    };
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout_form).post(logout))
        .route("/preferences", get(preferences_form).post(save_preferences))
        .with_state(app)
        .layer(SessionLayer::new(manager))
}

/// Opens the store `store_url` names and builds the demo on it.
///
/// # Errors
///
/// The store could not be opened.
pub async fn build(
    store_url: &str,
    config: SessionConfig,
) -> Result<(Router, SessionManager), sessions::OpenError> {
    // One call, so a cookie store binds the configuration's cookie name.
    let manager = sessions::manager(store_url, config).await?;
    Ok((router(manager.clone(), store_url), manager))
}

const VISITS: &str = "num_visits";
const USER: &str = "user";
const THEME: &str = "theme";
const THEMES: [&str; 3] = ["light", "dark", "sepia"];

fn page(app: &App, session: &Session, title: &str, body: &str) -> Html<String> {
    let theme = session
        .get::<String>(THEME)
        .ok()
        .flatten()
        .filter(|t| THEMES.contains(&t.as_str()))
        .unwrap_or_else(|| "light".into());
    let who = match session.get::<String>(USER).ok().flatten() {
        Some(user) => format!(
            r#"Logged in as <strong id="user">{}</strong> · <a href="/logout">Log out</a>"#,
            escape(&user)
        ),
        None => r#"<a href="/login">Log in</a>"#.to_owned(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · LocalLibrary</title>
<style>
body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; }}
body.dark {{ background: #222; color: #eee; }} body.sepia {{ background: #f4ecd8; }}
nav a {{ margin-right: 1em; }} footer {{ margin-top: 3em; font-size: small; color: #777; }}
</style></head>
<body class="{theme}">
<nav><a href="/">Home</a><a href="/preferences">Preferences</a>{who}</nav>
<h1>{title}</h1>
{body}
<footer>Session store: <code id="store">{store}</code></footer>
</body></html>"#,
        store = escape(&app.store),
    ))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A session write failed to serialize: cannot happen for these values, but a handler
/// answers 500 rather than panicking.
fn internal(error: &sessions::Error) -> Response {
    tracing::error!(%error, "session write failed");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn home(State(app): State<App>, session: Session) -> Response {
    // A function of the stored count, applied again at commit if another tab counted
    // meanwhile: a double click counts twice and never answers 500.
    let visits = match session.update(VISITS, |n: Option<u64>| n.unwrap_or(0).saturating_add(1)) {
        Ok(n) => n,
        Err(e) => return internal(&e),
    };
    let times = if visits == 1 { "time" } else { "times" };
    page(
        &app,
        &session,
        "Local Library Home",
        &format!(
            r#"<p>Welcome to LocalLibrary, a website developed by <em>Mozilla Developer Network</em>!</p>
<p id="visits">You have visited this page {visits} {times}.</p>"#
        ),
    )
    .into_response()
}

async fn login_form(State(app): State<App>, session: Session) -> Html<String> {
    page(
        &app,
        &session,
        "Log in",
        r#"<form method="post" action="/login">
<label>User name <input name="username" id="username" required maxlength="64" pattern="[A-Za-z0-9_.-]+"></label>
<button type="submit" id="login">Log in</button></form>"#,
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
struct Login {
    username: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Response {
    let name = form.username.trim();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        return (StatusCode::BAD_REQUEST, "Invalid user name").into_response();
    }
    // A new key on login: a key planted before login is worthless after it.
    session.cycle_key();
    if let Err(e) = session.insert(USER, name) {
        return internal(&e);
    }
    tracing::info!(user = name, "logged in");
    Redirect::to("/").into_response()
}

async fn logout_form(State(app): State<App>, session: Session) -> Html<String> {
    page(
        &app,
        &session,
        "Log out",
        r#"<form method="post" action="/logout"><button type="submit" id="logout">Log out</button></form>"#,
    )
}

async fn logout(session: Session) -> Redirect {
    session.flush();
    Redirect::to("/")
}

async fn preferences_form(State(app): State<App>, session: Session) -> Html<String> {
    let current = session.get::<String>(THEME).ok().flatten();
    let options: String = THEMES
        .iter()
        .map(|t| {
            let selected = if current.as_deref() == Some(t) {
                " selected"
            } else {
                ""
            };
            format!(r#"<option value="{t}"{selected}>{t}</option>"#)
        })
        .collect();
    page(
        &app,
        &session,
        "Preferences",
        &format!(
            r#"<form method="post" action="/preferences">
<label>Theme <select name="theme" id="theme">{options}</select></label>
<button type="submit" id="save">Save</button></form>
<p id="current">Current theme: {}</p>"#,
            current.as_deref().unwrap_or("light (default)")
        ),
    )
}

/// The preferences form.
#[derive(Debug, Deserialize)]
struct Preferences {
    theme: String,
}

async fn save_preferences(session: Session, Form(form): Form<Preferences>) -> Response {
    if !THEMES.contains(&form.theme.as_str()) {
        return (StatusCode::BAD_REQUEST, "Unknown theme").into_response();
    }
    if let Err(e) = session.insert(THEME, form.theme) {
        return internal(&e);
    }
    Redirect::to("/preferences").into_response()
}
