//! The per-request session dictionary.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::{Data, Error, Expiry, Record, Result, SessionKey, check_value_depth};

/// The key [`Session::set_test_cookie`] writes (Django's `TEST_COOKIE_NAME`).
pub const TEST_COOKIE_NAME: &str = "testcookie";
/// The value [`Session::set_test_cookie`] writes (Django's `TEST_COOKIE_VALUE`).
pub const TEST_COOKIE_VALUE: &str = "worked";

/// One browser's session during one request: a dictionary of JSON values.
///
/// A cheap, cloneable handle: the middleware and the handler hold clones of one session.
/// Its methods are synchronous because the data is loaded before the handler sees it
/// (see [`LazySession::load`](crate::LazySession::load)); nothing reaches the store until
/// [`SessionManager::commit`](crate::SessionManager::commit).
///
/// It follows Django's `request.session`: reading marks it *accessed* (the response then
/// varies on `Cookie`), writing marks it *modified* (the commit then saves it).
///
/// It also remembers which keys this request read and which it changed. When another
/// request of the same browser saved first, the commit re-applies exactly this request's
/// changes to the newer record instead of overwriting it, unless that would lose an
/// update: if a key this request read and then wrote (a read-modify-write such as a
/// counter) was changed meanwhile, the commit fails with
/// [`Error::Conflict`](crate::Error::Conflict) and the request can be retried. Keys written
/// without being read first merge, the last writer winning.
///
/// # Examples
///
/// ```
/// use session_core::{MemoryStore, SessionConfig, SessionManager};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let manager = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
/// let session = manager.lazy(None).load().await?;
///
/// session.insert("visits", 1)?;
/// assert_eq!(session.get::<u32>("visits")?, Some(1));
/// let cart = session.get_or_insert_with("cart", Vec::<String>::new)?;
/// assert!(cart.is_empty());
/// assert!(session.is_modified());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    state: Arc<Mutex<State>>,
}

/// A read-modify-write recorded by [`Session::update`], applied again to the freshest
/// stored value when the commit meets a concurrent change.
type UpdateFn = dyn Fn(Option<&Value>) -> Result<Value> + Send + Sync;

/// What this request did to one key, for re-applying it to a newer stored dictionary.
#[derive(Clone, Default)]
pub(crate) struct Change {
    /// `Some(Some(v))`: set to `v`; `Some(None)`: removed; `None`: neither (only updates),
    /// so the updates apply to whatever the store holds.
    set: Option<Option<Value>>,
    /// Updates applied after `set`, in order.
    updates: Vec<Arc<UpdateFn>>,
}

impl Change {
    /// Whether re-applying this change depends on nothing this request read: a change
    /// made only of updates is a function of the stored value.
    fn is_update_only(&self) -> bool {
        self.set.is_none()
    }

    /// This change applied to `stored` (the value a newer record holds): `None` removes
    /// the key.
    fn apply(&self, stored: Option<&Value>) -> Result<Option<Value>> {
        let mut value = match &self.set {
            Some(v) => v.clone(),
            None => stored.cloned(),
        };
        for f in &self.updates {
            let next = f(value.as_ref())?;
            check_value_depth(&next)?;
            value = Some(next);
        }
        Ok(value)
    }
}

type Changes = HashMap<String, Change>;

pub(crate) struct State {
    /// The key the session was loaded under (`None` for a new session).
    pub(crate) key: Option<SessionKey>,
    pub(crate) data: Arc<Data>,
    pub(crate) expiry: Option<Expiry>,
    /// `expires_at` as loaded (`None` for a new session).
    pub(crate) expires_at: Option<OffsetDateTime>,
    pub(crate) version: u64,
    /// The dictionary as loaded (or as last committed): what this request's reads saw.
    pub(crate) base: Arc<Data>,
    /// This request's writes, key by key, for re-applying after a conflict.
    pub(crate) changes: Changes,
    /// Keys whose stored value this request read (before writing them).
    pub(crate) observed: HashSet<String>,
    /// Keys whose presence (not value) this request read (`contains_key`).
    pub(crate) observed_presence: HashSet<String>,
    /// The set of keys was read (`keys`, `len`, `is_empty`), not the values.
    pub(crate) observed_keyset: bool,
    /// A whole-dictionary read of the values (`values`, `iter`, `snapshot`).
    pub(crate) observed_all: bool,
    /// `clear` (or `flush`) ran: the changes apply to an empty dictionary.
    pub(crate) cleared: bool,
    pub(crate) expiry_changed: bool,
    pub(crate) modified: bool,
    pub(crate) accessed: bool,
    /// `flush` ran: the stored session (key, loaded version) is ended at commit.
    pub(crate) flushed: Option<(SessionKey, u64)>,
    /// `cycle_key` ran: the data moves to a new key at commit.
    pub(crate) cycle: bool,
    /// The request's cookie named a session ended elsewhere moments ago (rotated or logged
    /// out by a concurrent request): nothing is read, written, or set as cookie.
    pub(crate) ended_elsewhere: bool,
    /// The request's cookie named no session this store holds (unknown, expired, or a
    /// value it could never issue): the cookie is removed unless a new session is saved.
    pub(crate) stale_cookie: bool,
    pub(crate) default_age: Duration,
    pub(crate) browser_close_default: bool,
}

impl State {
    pub(crate) fn new(default_age: Duration, browser_close_default: bool) -> Self {
        Self {
            key: None,
            data: Arc::new(Data::new()),
            expiry: None,
            expires_at: None,
            version: 0,
            base: Arc::new(Data::new()),
            changes: Changes::new(),
            observed: HashSet::new(),
            observed_presence: HashSet::new(),
            observed_keyset: false,
            observed_all: false,
            cleared: false,
            expiry_changed: false,
            modified: false,
            accessed: false,
            flushed: None,
            cycle: false,
            ended_elsewhere: false,
            stale_cookie: false,
            default_age,
            browser_close_default,
        }
    }

    pub(crate) fn loaded(mut self, key: SessionKey, record: Record) -> Self {
        self.key = Some(key);
        self.base = record.data.clone();
        self.data = record.data;
        self.expiry = record.expiry;
        self.expires_at = Some(record.expires_at);
        self.version = record.version;
        self
    }

    /// Whether re-applying this request's changes on top of `fresh` (a newer stored
    /// dictionary) would lose an update: something this request read, and based a write on,
    /// was changed by someone else since this request loaded it.
    ///
    /// What counts is what was actually observed: a key's value (`get`), its presence
    /// (`contains_key`), the set of keys (`keys`, `len`, `is_empty`) or everything
    /// (`values`, `iter`). Blind writes (a key written without being read first) and
    /// [`Session::update`]s never count: the last writer wins for the former, and the
    /// latter are applied again to the fresh value.
    pub(crate) fn would_lose_update(&self, fresh: &Data) -> bool {
        let mut writes = self
            .changes
            .iter()
            .filter(|(_, c)| !c.is_update_only())
            .map(|(k, _)| k)
            .peekable();
        if writes.peek().is_none() && !self.cleared {
            return false;
        }
        if self.observed_all && *self.base != *fresh {
            return true;
        }
        if self.observed_keyset && !self.base.keys().eq(fresh.keys()) {
            return true;
        }
        writes.any(|k| {
            (self.observed.contains(k) && self.base.get(k) != fresh.get(k))
                || (self.observed_presence.contains(k)
                    && self.base.contains_key(k) != fresh.contains_key(k))
        })
    }

    /// Records that this request read the stored value of `key`.
    fn observe(&mut self, key: &str) {
        self.accessed = true;
        if !self.changes.contains_key(key) && !self.observed.contains(key) {
            self.observed.insert(key.to_owned());
        }
    }

    /// Records that this request read whether `key` is present.
    fn observe_presence(&mut self, key: &str) {
        self.accessed = true;
        if !self.changes.contains_key(key) && !self.observed_presence.contains(key) {
            self.observed_presence.insert(key.to_owned());
        }
    }

    /// Applies this request's changes on top of `base` (a newer stored dictionary).
    ///
    /// # Errors
    ///
    /// What an [update](Session::update) fails with on the newer value.
    pub(crate) fn reapply(&self, base: Arc<Data>) -> Result<Arc<Data>> {
        let mut data = if self.cleared {
            Arc::new(Data::new())
        } else {
            base
        };
        if !self.changes.is_empty() {
            let map = Arc::make_mut(&mut data);
            for (k, change) in &self.changes {
                match change.apply(map.get(k))? {
                    Some(v) => map.insert(k.clone(), v),
                    None => map.remove(k),
                };
            }
        }
        Ok(data)
    }

    /// The expiry instant of a record saved now.
    pub(crate) fn expires_at_if_saved_now(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.expiry
            .unwrap_or(Expiry::BrowserSession)
            .expires_at(now, self.default_age)
    }

    pub(crate) fn is_browser_session(&self) -> bool {
        match self.expiry {
            Some(e) => e.is_browser_session(),
            None => self.browser_close_default,
        }
    }

    /// Records that this request has just been written to the store: `record` now stands
    /// under `key` with the stored version `version`.
    pub(crate) fn committed(&mut self, key: Option<SessionKey>, record: Option<(&Record, u64)>) {
        self.key = key;
        if let Some((r, version)) = record {
            self.base = r.data.clone();
            self.data = r.data.clone();
            self.expiry = r.expiry;
            self.expires_at = Some(r.expires_at);
            self.version = version;
        } else {
            self.base = Arc::new(Data::new());
            self.expires_at = None;
            self.version = 0;
        }
        self.changes.clear();
        self.observed.clear();
        self.observed_presence.clear();
        self.observed_keyset = false;
        self.observed_all = false;
        self.cleared = false;
        self.expiry_changed = false;
        self.modified = false;
        self.flushed = None;
        self.cycle = false;
        self.stale_cookie = false;
    }

    fn set(&mut self, key: String, value: Value) -> Option<Value> {
        self.accessed = true;
        self.modified = true;
        self.changes.insert(
            key.clone(),
            Change {
                set: Some(Some(value.clone())),
                updates: Vec::new(),
            },
        );
        Arc::make_mut(&mut self.data).insert(key, value)
    }

    fn unset(&mut self, key: &str) -> Option<Value> {
        self.accessed = true;
        if !self.data.contains_key(key) {
            return None;
        }
        self.modified = true;
        self.changes.insert(
            key.to_owned(),
            Change {
                set: Some(None),
                updates: Vec::new(),
            },
        );
        Arc::make_mut(&mut self.data).remove(key)
    }

    /// Applies `f` to the current value of `key` now, and records it to be applied again
    /// to the freshest stored value if the commit meets a concurrent change.
    fn update(&mut self, key: &str, f: Arc<UpdateFn>) -> Result<Value> {
        self.accessed = true;
        let next = f(self.data.get(key))?;
        check_value_depth(&next)?;
        self.modified = true;
        self.changes
            .entry(key.to_owned())
            .or_default()
            .updates
            .push(f);
        Arc::make_mut(&mut self.data).insert(key.to_owned(), next.clone());
        Ok(next)
    }
}

impl Session {
    pub(crate) fn from_state(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    // No method panics while holding the lock, and every mutation is completed before the
    // guard drops; a poisoned lock therefore holds consistent state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read of the whole dictionary: it observes every key and value.
    fn read<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        let mut st = self.lock();
        st.accessed = true;
        st.observed_all = true;
        f(&st.data)
    }

    /// A read of the set of keys only: a concurrent change of a value does not matter to
    /// it, a key added or removed does.
    fn read_keys<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        let mut st = self.lock();
        st.accessed = true;
        st.observed_keyset = true;
        f(&st.data)
    }

    /// A read of one key: it observes that key.
    fn read_key<T>(&self, key: &str, f: impl FnOnce(Option<&Value>) -> T) -> T {
        let mut st = self.lock();
        st.observe(key);
        f(st.data.get(key))
    }

    /// The value under `key`, deserialized as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the stored value does not deserialize as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_value(key)
            .map(|v| serde_json::from_value(v).map_err(Error::codec))
            .transpose()
    }

    /// The raw JSON value under `key`.
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.read_key(key, |v| v.cloned())
    }

    /// Sets `key` to `value` and returns the previous raw value (Django `session[key] = v`).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `value` does not serialize to JSON (e.g. a map with non-string
    /// keys), [`Error::TooDeep`] if it nests deeper than
    /// [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH); the session is then unchanged.
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<Option<Value>> {
        let value = serde_json::to_value(value).map_err(Error::codec)?;
        self.insert_value(key, value)
    }

    /// Sets `key` to a raw JSON value and returns the previous one.
    ///
    /// # Errors
    ///
    /// [`Error::TooDeep`] if `value` nests deeper than
    /// [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH); the session is then unchanged.
    pub fn insert_value(&self, key: impl Into<String>, value: Value) -> Result<Option<Value>> {
        check_value_depth(&value)?;
        Ok(self.lock().set(key.into(), value))
    }

    /// Replaces the value under `key` by `f(current value)` and returns the new value: a
    /// read-modify-write that never conflicts.
    ///
    /// `f` runs now, on the value this request loaded, so the handler sees the result at
    /// once; and when another request of the same browser saved first, the commit runs `f`
    /// again on the freshest stored value instead of failing. Two concurrent increments of
    /// a counter therefore both land (a `get` followed by an `insert` of the same key would
    /// instead make one of them fail with [`Error::Conflict`], because re-applying its
    /// write would lose the other's). `f` may run several times: keep it a pure function
    /// of its argument.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the current value does not deserialize as `T` or the new one
    /// does not serialize; [`Error::TooDeep`]. The session is then unchanged. At commit,
    /// the same errors from a re-run fail the commit.
    ///
    /// # Examples
    ///
    /// ```
    /// use session_core::{MemoryStore, SessionConfig, SessionManager};
    /// use std::sync::Arc;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::Error> {
    /// let manager = SessionManager::new(Arc::new(MemoryStore::new()), SessionConfig::default());
    /// let session = manager.lazy(None).load().await?;
    /// let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
    /// assert_eq!(visits, 1);
    /// # Ok(()) }
    /// ```
    pub fn update<T, F>(&self, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let apply: Arc<UpdateFn> = Arc::new(move |current: Option<&Value>| {
            let current = current
                .map(|v| T::deserialize(v).map_err(Error::codec))
                .transpose()?;
            serde_json::to_value(f(current)).map_err(Error::codec)
        });
        let next = self.lock().update(key, apply)?;
        serde_json::from_value(next).map_err(Error::codec)
    }

    /// Removes `key` and returns its value (Django `pop`). Removing an absent key does not
    /// mark the session modified.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.lock().unset(key)
    }

    /// Removes `key` and returns its value deserialized as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the removed value does not deserialize as `T` (it is removed all
    /// the same).
    pub fn remove_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.remove(key)
            .map(|v| serde_json::from_value(v).map_err(Error::codec))
            .transpose()
    }

    /// Whether `key` is set (Django `key in session`).
    #[must_use]
    pub fn contains_key(&self, key: &str) -> bool {
        let mut st = self.lock();
        st.observe_presence(key);
        st.data.contains_key(key)
    }

    /// The keys, in order.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        self.read_keys(|d| d.keys().cloned().collect())
    }

    /// The values, in key order.
    #[must_use]
    pub fn values(&self) -> Vec<Value> {
        self.read(|d| d.values().cloned().collect())
    }

    /// A snapshot of the entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (String, Value)> + use<> {
        let snapshot = self.snapshot();
        let entries: Vec<(String, Value)> = snapshot
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.into_iter()
    }

    /// The whole dictionary as it is now, shared (no copy).
    #[must_use]
    pub fn snapshot(&self) -> Arc<Data> {
        let mut st = self.lock();
        st.accessed = true;
        st.observed_all = true;
        st.data.clone()
    }

    /// How many entries there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read_keys(Data::len)
    }

    /// Whether there are no entries. At commit, an empty session is deleted from the store
    /// and its cookie removed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.read_keys(Data::is_empty)
    }

    /// Removes every entry, keeping the key (Django `clear`).
    pub fn clear(&self) {
        let mut st = self.lock();
        st.accessed = true;
        if !st.data.is_empty() {
            st.modified = true;
            st.cleared = true;
            st.changes.clear();
            st.data = Arc::new(Data::new());
        }
    }

    /// Sets every entry of `entries` (Django `update`).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if a value does not serialize; entries before it are set.
    pub fn extend<K, V, I>(&self, entries: I) -> Result<()>
    where
        K: Into<String>,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        for (k, v) in entries {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// The value under `key`, after inserting `default()` if it was absent (Django
    /// `setdefault`).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the default does not serialize or the stored value does not
    /// deserialize as `T`.
    pub fn get_or_insert_with<T, F>(&self, key: &str, default: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        if let Some(v) = self.get_value(key) {
            return serde_json::from_value(v).map_err(Error::codec);
        }
        let value = default();
        self.insert(key, &value)?;
        Ok(value)
    }

    /// Drops the data and the key (logout): at commit the stored session is deleted and the
    /// cookie removed; anything inserted afterwards goes to a new session under a new key.
    pub fn flush(&self) {
        let mut st = self.lock();
        st.accessed = true;
        st.modified = true;
        if let Some(key) = st.key.take() {
            st.flushed = Some((key, st.version));
        }
        st.data = Arc::new(Data::new());
        st.changes.clear();
        st.cleared = true;
        st.expiry = None;
        st.expires_at = None;
        st.version = 0;
        st.cycle = false;
    }

    /// Keeps the data under a new key (call on login, against session fixation). At commit
    /// the data is stored under a fresh key and the old key is deleted.
    pub fn cycle_key(&self) {
        let mut st = self.lock();
        st.accessed = true;
        st.modified = true;
        st.cycle = true;
    }

    /// Overrides the configured expiry for this session; `None` returns to the configured
    /// policy (Django `set_expiry`). Setting the policy the session already has changes
    /// nothing (no write, no new cookie).
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryOutOfRange`] for a policy no session can hold (see
    /// [`Expiry::check`]); the session is then unchanged.
    pub fn set_expiry(&self, expiry: Option<Expiry>) -> Result<()> {
        if let Some(e) = &expiry {
            e.check()?;
        }
        let mut st = self.lock();
        st.accessed = true;
        if st.expiry != expiry {
            st.modified = true;
            st.expiry = expiry;
            st.expiry_changed = true;
        }
        Ok(())
    }

    /// The per-session expiry override, if any.
    #[must_use]
    pub fn expiry(&self) -> Option<Expiry> {
        self.lock().expiry
    }

    /// Seconds until the session would expire if saved now (Django `get_expiry_age`).
    #[must_use]
    pub fn expiry_age(&self) -> Duration {
        let now = OffsetDateTime::now_utc();
        self.lock().expires_at_if_saved_now(now) - now
    }

    /// When the session would expire if saved now (Django `get_expiry_date`).
    #[must_use]
    pub fn expiry_date(&self) -> OffsetDateTime {
        self.lock()
            .expires_at_if_saved_now(OffsetDateTime::now_utc())
    }

    /// Whether the cookie ends with the browser session (Django
    /// `get_expire_at_browser_close`).
    #[must_use]
    pub fn expires_at_browser_close(&self) -> bool {
        self.lock().is_browser_session()
    }

    /// Sets the test entry, to check on the next request that the browser keeps cookies.
    pub fn set_test_cookie(&self) {
        self.lock()
            .set(TEST_COOKIE_NAME.to_owned(), Value::from(TEST_COOKIE_VALUE));
    }

    /// Whether the test entry set on an earlier request came back.
    #[must_use]
    pub fn test_cookie_worked(&self) -> bool {
        self.get_value(TEST_COOKIE_NAME)
            .as_ref()
            .and_then(Value::as_str)
            == Some(TEST_COOKIE_VALUE)
    }

    /// Removes the test entry.
    pub fn delete_test_cookie(&self) {
        self.remove(TEST_COOKIE_NAME);
    }

    /// Whether this request changed the session (the commit will save it).
    #[must_use]
    pub fn is_modified(&self) -> bool {
        self.lock().modified
    }

    /// Whether this request read or wrote the session (the response varies on `Cookie`).
    #[must_use]
    pub fn is_accessed(&self) -> bool {
        self.lock().accessed
    }

    /// The key the client holds for this session, if it has been stored. `None` for a new
    /// session until its first commit, and after [`flush`](Self::flush).
    #[must_use]
    pub fn key(&self) -> Option<SessionKey> {
        self.lock().key.clone()
    }

    /// Whether the request's cookie named a session that a concurrent request of the same
    /// browser ended or rotated moments ago. Such a session reads as empty, and nothing
    /// written to it is kept: the commit drops the writes and leaves the cookie alone (see
    /// [`Commit::writes_dropped`](crate::Commit::writes_dropped)).
    #[must_use]
    pub fn ended_elsewhere(&self) -> bool {
        self.lock().ended_elsewhere
    }

    /// The stored version this request's data is based on (0 for a new session).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.lock().version
    }
}

impl fmt::Debug for Session {
    // Values may be secrets: show the shape only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Session")
            .field("key", &st.key)
            .field("entries", &st.data.len())
            .field("version", &st.version)
            .field("modified", &st.modified)
            .field("accessed", &st.accessed)
            .finish_non_exhaustive()
    }
}
