//! Requests of a browser through `SessionManager`: log in, read, log out, rotate the key.
// Not every test binary uses every helper; a failed unwrap is a test failure.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use session_core::{Commit, CookieAction, Result, SessionConfig, SessionManager, Store};

/// A manager over `store` with the default configuration.
pub fn manager(store: impl Store) -> SessionManager {
    SessionManager::new(Arc::new(store), SessionConfig::default())
}

/// The cookie value a commit sets, if it sets one.
pub fn set_value(commit: &Commit) -> Option<String> {
    let CookieAction::Set(c) = &commit.cookie else {
        return None;
    };
    let pair = c.as_str().split(';').next()?;
    pair.split_once('=').map(|(_, v)| v.to_owned())
}

/// A first request that logs `user` in; the cookie value it got.
pub async fn login(m: &SessionManager, user: &str) -> String {
    let lazy = m.lazy(None);
    lazy.load().await.unwrap().insert("user", user).unwrap();
    let commit = m.commit(&lazy, 200).await.unwrap();
    set_value(&commit).unwrap_or_else(|| panic!("a login sets its cookie: {commit:?}"))
}

/// A read-only request with `cookie`: the user it is logged in as, if any.
pub async fn user(m: &SessionManager, cookie: &str) -> Option<String> {
    let lazy = m.lazy(Some(cookie));
    let user = lazy.load().await.unwrap().get::<String>("user").unwrap();
    m.commit(&lazy, 200).await.unwrap();
    user
}

/// A logout request with `cookie` (`Session::flush`).
pub async fn logout(m: &SessionManager, cookie: &str) -> Result<Commit> {
    let lazy = m.lazy(Some(cookie));
    lazy.load().await?.flush();
    m.commit(&lazy, 200).await
}

/// A request with `cookie` that rotates the key (`Session::cycle_key`, as on login).
pub async fn rotate(m: &SessionManager, cookie: &str) -> Result<Commit> {
    let lazy = m.lazy(Some(cookie));
    lazy.load().await?.cycle_key();
    m.commit(&lazy, 200).await
}
