//! The framework-neutral request lifecycle: lazy load, commit, cookie decision.

use std::fmt;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tokio::sync::OnceCell;

use crate::session::State;
use crate::{Error, Expiry, Record, Result, Session, SessionConfig, SessionKey, Store};

/// Wires a [`Store`] and a [`SessionConfig`] into any web framework in three calls:
///
/// 1. [`lazy`](Self::lazy) (or [`lazy_from_cookie_headers`](Self::lazy_from_cookie_headers))
///    when a request arrives: reads the cookie, does no I/O;
/// 2. [`LazySession::load`] the first time the handler asks for the session: one store
///    read, at most once per request;
/// 3. [`commit`](Self::commit) when the response is ready: saves what needs saving and says
///    what to do with the cookie and with `Vary`.
///
/// A request that never touches its session costs no store I/O; a read-only request writes
/// nothing (unless its expiry is rolling); a server error (5xx) saves nothing.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use session_core::{CookieAction, MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let manager = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
///
/// // First request: no cookie yet.
/// let lazy = manager.lazy_from_cookie_headers(std::iter::empty());
/// lazy.load().await?.insert("visits", 1)?;
/// let commit = manager.commit(&lazy, 200).await?;
/// let CookieAction::Set(set_cookie) = commit.cookie else { panic!("a new session sets its cookie") };
/// assert!(set_cookie.as_str().starts_with("sessionid="));
///
/// // Second request: the browser sends the cookie back.
/// let cookie = set_cookie.as_str().split(';').next().unwrap();
/// let lazy = manager.lazy_from_cookie_headers([cookie]);
/// assert_eq!(lazy.load().await?.get::<u32>("visits")?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: SessionConfig,
}

impl SessionManager {
    /// A manager for `store` with `config`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: SessionConfig) -> Self {
        Self {
            inner: Arc::new(Inner { store, config }),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Starts a request whose session cookie value is `cookie_value` (already extracted by
    /// the framework). No I/O. A value that is not a well-formed key is ignored: the request
    /// gets a fresh, empty session.
    #[must_use]
    pub fn lazy(&self, cookie_value: Option<&str>) -> LazySession {
        let client = cookie_value.and_then(|v| SessionKey::parse(v).ok());
        LazySession {
            inner: Arc::new(LazyInner {
                manager: self.clone(),
                client,
                cell: OnceCell::new(),
            }),
        }
    }

    /// Starts a request from its raw `Cookie` header values. No I/O.
    ///
    /// When the request carries several cookies of the configured name (a browser sends
    /// the one with the most specific path first), the first one that is a well-formed key
    /// wins; values over 4096 bytes are refused by length before anything else.
    #[must_use]
    pub fn lazy_from_cookie_headers<'h>(
        &self,
        headers: impl IntoIterator<Item = &'h str>,
    ) -> LazySession {
        let name = self.config().cookie_name();
        let value = headers
            .into_iter()
            .flat_map(|h| cookie_values(h, name))
            .find(|v| SessionKey::parse(v).is_ok());
        self.lazy(value)
    }

    /// Ends a request whose response has HTTP status `status`: saves the session if
    /// needed and says what to do with the cookie.
    ///
    /// - nothing happens for a session the request never loaded, or when `status` is a
    ///   server error (5xx);
    /// - an empty session is deleted from the store and its cookie removed;
    /// - a new, modified, flushed or cycled session is written, and the cookie set with
    ///   `Max-Age`/`Expires` (none for a browser-session expiry);
    /// - when another request of the same browser saved first (`Conflict`), the session is
    ///   reloaded, this request's own changes are re-applied key by key, and the save is
    ///   retried up to [`SessionConfig::conflict_retries`] times; but when a key this
    ///   request read and then wrote was changed meanwhile, re-applying would lose that
    ///   update, so the commit fails with [`Error::Conflict`] (retry the request);
    /// - a session deleted meanwhile (`NotFound`, e.g. a logout in another tab) is not
    ///   brought back: the cookie is removed;
    /// - a rolling session ([`Expiry::OnInactivity`]) that was only read has its expiry
    ///   moved with [`Store::touch`] (at most about once per hundredth of its window).
    ///
    /// # Errors
    ///
    /// Store errors, and [`Error::Conflict`] when a read-modify-write met a concurrent change
    /// or the retries run out. The response should then be a server error (or the request
    /// retried); the stored session is left as it was.
    pub async fn commit(&self, lazy: &LazySession, status: u16) -> Result<Commit> {
        if status >= 500 {
            let vary_cookie = lazy.session().is_some_and(|s| s.is_accessed());
            return Ok(Commit::keep(vary_cookie));
        }
        let session = match lazy.session() {
            Some(s) => s.clone(),
            None if self.config().save_every_request() && lazy.inner.client.is_some() => {
                lazy.load().await?
            }
            None => return Ok(Commit::keep(false)),
        };
        let st = session.lock().snapshot();
        let vary = st.accessed;
        let store = self.store();

        if let Some(old) = &st.flushed_key {
            store.delete(old).await?;
        }
        if st.data.is_empty() {
            let had_stored = st.key.is_some() || st.flushed_key.is_some();
            if let Some(key) = &st.key {
                store.delete(key).await?;
            }
            session.lock().committed(None, None);
            return Ok(if had_stored {
                Commit::remove(self.config())
            } else {
                Commit::keep(vary)
            });
        }

        let now = OffsetDateTime::now_utc();
        let mut record = Record {
            data: st.data.clone(),
            expiry: st.expiry,
            expires_at: st.expires_at_if_saved_now(now),
            version: st.version,
        };
        // The key the client holds from now on, the record stored under it and its version.
        let (key, record, version) = match &st.key {
            None => {
                record.version = 0;
                (store.create(&record).await?, record, 1)
            }
            Some(old) if st.cycle => {
                record.version = 0;
                let key = store.create(&record).await?;
                store.delete(old).await?;
                (key, record, 1)
            }
            Some(key) if st.modified || self.config().save_every_request() => {
                match self.save_with_retries(key, &session, record).await? {
                    Some((key, record)) => {
                        // The store accepted the save, so the next version exists.
                        let version = record.version.saturating_add(1);
                        (key, record, version)
                    }
                    None => return Ok(self.gone(&session, key)),
                }
            }
            Some(key) => match st.expiry {
                Some(Expiry::OnInactivity(idle)) if self.touch_due(&st, &record, idle) => {
                    match store.touch(key, record.expires_at).await {
                        Ok(new_key) => (new_key, record, st.version),
                        Err(Error::NotFound) => return Ok(self.gone(&session, key)),
                        Err(e) => return Err(e),
                    }
                }
                _ => return Ok(Commit::keep(vary)),
            },
        };
        let cookie = self
            .config()
            .set_cookie(key.as_str(), self.cookie_expiry(&record));
        session
            .lock()
            .committed(Some(key), Some((&record, version)));
        Ok(Commit {
            cookie: CookieAction::Set(SetCookie(cookie)),
            vary_cookie: true,
        })
    }

    /// Removes every expired session from the store (Django's `clearsessions`).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn clear_expired(&self) -> Result<u64> {
        self.store().clear_expired().await
    }

    async fn save_with_retries(
        &self,
        key: &SessionKey,
        session: &Session,
        mut record: Record,
    ) -> Result<Option<(SessionKey, Record)>> {
        let mut attempt = 0;
        loop {
            match self.store().save(key, &record).await {
                Ok(new_key) => return Ok(Some((new_key, record))),
                Err(Error::NotFound) => return Ok(None),
                Err(Error::Conflict) if attempt < self.config().conflict_retries() => {
                    attempt += 1;
                    tracing::debug!(
                        session = %key.storage_id().short(),
                        attempt,
                        "session changed concurrently; re-applying this request's changes"
                    );
                    let Some(fresh) = self.store().load(key).await? else {
                        return Ok(None);
                    };
                    // The handler has finished: the live session holds this request's
                    // changes, consulted only here, on the conflict path.
                    let merged = {
                        let st = session.lock();
                        if st.would_lose_update(&fresh.data) {
                            None
                        } else {
                            let expiry = if st.expiry_changed {
                                st.expiry
                            } else {
                                fresh.expiry
                            };
                            Some((st.reapply(fresh.data), expiry))
                        }
                    };
                    let Some((data, expiry)) = merged else {
                        tracing::debug!(
                            session = %key.storage_id().short(),
                            "a key this request read and wrote changed concurrently"
                        );
                        return Err(Error::Conflict);
                    };
                    record.data = data;
                    record.expiry = expiry;
                    let now = OffsetDateTime::now_utc();
                    let age = self.config().cookie_age();
                    record.expires_at = record.expiry.map_or(now + age, |e| e.expires_at(now, age));
                    record.version = fresh.version;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A rolling session needs a touch once its expiry would move by more than a hundredth
    /// of its window (at most a minute), so a burst of reads costs one write.
    fn touch_due(&self, st: &State, record: &Record, idle: Duration) -> bool {
        let threshold = (idle / 100_i32).min(Duration::minutes(1));
        st.expires_at
            .is_none_or(|prev| record.expires_at - prev >= threshold)
    }

    /// The session was deleted by someone else meanwhile: do not bring it back.
    fn gone(&self, session: &Session, key: &SessionKey) -> Commit {
        tracing::debug!(
            session = %key.storage_id().short(),
            "session deleted concurrently; its changes are dropped"
        );
        session.lock().committed(None, None);
        Commit::remove(self.config())
    }

    fn cookie_expiry(&self, record: &Record) -> Option<OffsetDateTime> {
        let browser = match record.expiry {
            Some(e) => e.is_browser_session(),
            None => self.config().expire_at_browser_close(),
        };
        (!browser).then_some(record.expires_at)
    }

    fn new_state(&self) -> State {
        State::new(
            self.config().cookie_age(),
            self.config().expire_at_browser_close(),
        )
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("capabilities", &self.store().capabilities())
            .field("config", self.config())
            .finish()
    }
}

/// Every value of cookie `name` in one `Cookie` header, in order.
fn cookie_values<'h>(header: &'h str, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    // RFC 6265 allows only spaces and tabs around the pairs.
    let ows = |c: char| c == ' ' || c == '\t';
    header.split(';').filter_map(move |pair| {
        let (n, v) = pair.split_once('=')?;
        if n.trim_matches(ows) != name {
            return None;
        }
        let v = v.trim_matches(ows);
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

/// A request's session, loaded from the store on first use.
///
/// Cloneable: the middleware keeps one clone to commit, the handler loads through another.
#[derive(Clone)]
pub struct LazySession {
    inner: Arc<LazyInner>,
}

struct LazyInner {
    manager: SessionManager,
    client: Option<SessionKey>,
    cell: OnceCell<Session>,
}

impl LazySession {
    /// The session, loading it on first call (one store read when the client sent a key
    /// the store could know; none otherwise). Later calls return a handle on the same
    /// session (a clone shares its state).
    ///
    /// A key the store does not know is never adopted: the request gets a fresh, empty
    /// session, and a new key is issued if it is ever saved.
    ///
    /// # Errors
    ///
    /// Store errors. The session is then not loaded (a later call tries again) and is never
    /// replaced by an empty one that could overwrite the stored data.
    pub async fn load(&self) -> Result<Session> {
        self.inner
            .cell
            .get_or_try_init(|| async {
                let manager = &self.inner.manager;
                let state = manager.new_state();
                let Some(key) = &self.inner.client else {
                    return Ok(Session::from_state(state));
                };
                let store = manager.store();
                if store.capabilities().server_side && !key.is_generated_shape() {
                    return Ok(Session::from_state(state));
                }
                Ok(Session::from_state(match store.load(key).await? {
                    Some(record) => state.loaded(key.clone(), record),
                    None => state,
                }))
            })
            .await
            .cloned()
    }

    /// The session if it has been loaded.
    #[must_use]
    pub fn session(&self) -> Option<&Session> {
        self.inner.cell.get()
    }

    /// Whether the request carried a well-formed session key.
    #[must_use]
    pub fn has_client_key(&self) -> bool {
        self.inner.client.is_some()
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("client_key", &self.inner.client)
            .field("session", &self.inner.cell.get())
            .finish()
    }
}

/// What [`SessionManager::commit`] decided for the response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// What to do with the session cookie.
    pub cookie: CookieAction,
    /// Whether to add `Cookie` to the response's `Vary` header (the response depended on
    /// the session, or the cookie changes).
    pub vary_cookie: bool,
}

impl Commit {
    fn keep(vary_cookie: bool) -> Self {
        Self {
            cookie: CookieAction::Keep,
            vary_cookie,
        }
    }

    fn remove(config: &SessionConfig) -> Self {
        Self {
            cookie: CookieAction::Remove(SetCookie(config.removal_cookie())),
            vary_cookie: true,
        }
    }
}

/// What to do with the session cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieAction {
    /// Leave the client's cookie as it is.
    Keep,
    /// Send this `Set-Cookie` header.
    Set(SetCookie),
    /// Send this `Set-Cookie` header, which removes the cookie.
    Remove(SetCookie),
}

impl CookieAction {
    /// The `Set-Cookie` header to send, if any.
    #[must_use]
    pub fn header(&self) -> Option<&SetCookie> {
        match self {
            Self::Keep => None,
            Self::Set(c) | Self::Remove(c) => Some(c),
        }
    }
}

/// A complete `Set-Cookie` header value. It holds the session key, so `Debug` shows only
/// the cookie's name.
#[derive(Clone, PartialEq, Eq)]
pub struct SetCookie(String);

impl SetCookie {
    /// The header value.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header value, owned.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0.split('=').next().unwrap_or("");
        write!(f, "SetCookie({name}=…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_finds_every_occurrence_in_order() {
        let h = "a=1; sessionid=first ; b=2;sessionid=\"second\"; sessionidx=no";
        let got: Vec<_> = cookie_values(h, "sessionid").collect();
        assert_eq!(got, ["first", "second"]);
        assert_eq!(cookie_values("", "sessionid").count(), 0);
        assert_eq!(cookie_values(";;=;sessionid", "sessionid").count(), 0);
        // Only space and tab are optional white space.
        assert_eq!(
            cookie_values("sessionid=\x0ckey", "sessionid").collect::<Vec<_>>(),
            ["\x0ckey"]
        );
    }

    #[test]
    fn set_cookie_debug_hides_the_value() {
        let c = SetCookie("sessionid=secretvalue; Path=/".into());
        assert_eq!(format!("{c:?}"), "SetCookie(sessionid=…)");
    }
}
