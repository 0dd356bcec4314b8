//! `CookieStore`: the session travels in the cookie.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use session_core::{Capabilities, Error, Record, Result, SessionKey, Store};
use time::OffsetDateTime;

use crate::BuildError;
use crate::envelope::{
    self, COOKIE_SIZE_LIMIT, Codec, MODE_ENCRYPTED, MODE_SIGNED, NonceSource, Payload,
};
use crate::keys::{self, MIN_SECRET_LEN, Secret};

/// The cookie name a builder starts with (Django's `SESSION_COOKIE_NAME`).
pub const DEFAULT_COOKIE_NAME: &str = "sessionid";

/// Bytes kept free for the cookie's attributes by default: enough for
/// `; Path=/; Max-Age=1209600; Expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; Secure;
/// SameSite=Lax` (97 bytes) and a `Domain` attribute of up to 54 characters.
pub const DEFAULT_ATTRIBUTE_ALLOWANCE: usize = 160;

/// Length of the payload of an empty session, `{"d":{}}`.
const EMPTY_PAYLOAD_LEN: usize = 8;

/// Longest cookie name a builder accepts, in bytes.
const MAX_COOKIE_NAME_LEN: usize = 256;

/// How a [`CookieStore`] protects the session it puts in the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// HMAC-SHA256: the client can read the session (it is base64 JSON) but not change it.
    Signed,
    /// AES-256-GCM with a fresh random 96-bit nonce per cookie: the client can neither read
    /// nor change the session.
    Encrypted,
}

impl Mode {
    /// The mode byte of the token format.
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Self::Signed => MODE_SIGNED,
            Self::Encrypted => MODE_ENCRYPTED,
        }
    }

    /// The HKDF info label: signing and encryption keys never coincide.
    pub(crate) const fn key_label(self) -> &'static [u8] {
        match self {
            Self::Signed => b"hmac-sha256 signing key",
            Self::Encrypted => b"aes-256-gcm encryption key",
        }
    }
}

/// A client-side session store: the whole session travels in the cookie, signed or
/// encrypted, and the [`SessionKey`] it returns *is* the cookie value.
///
/// Cloning is cheap (the keys are shared). See the [crate documentation](crate) for the
/// format, the security notes (a cookie replays until it expires) and key rotation.
///
/// # Examples
///
/// ```
/// use session_core::{Data, Record, Store};
/// use session_signed_cookie::CookieStore;
/// use time::{Duration, OffsetDateTime};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = CookieStore::encrypted(b"an example secret of 32 bytes or more!").build()?;
///
/// let mut data = Data::new();
/// data.insert("user".into(), 42.into());
/// let token = store.create(&Record::new(data, OffsetDateTime::now_utc() + Duration::hours(1))).await?;
///
/// let record = store.load(&token).await?.expect("a fresh cookie loads");
/// assert_eq!(record.data["user"], 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CookieStore {
    codec: Arc<Codec>,
}

impl CookieStore {
    /// Starts a signed-mode (HMAC-SHA256) store whose current master secret is `secret`.
    ///
    /// The secret must be at least [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) random bytes;
    /// [`build`](CookieStoreBuilder::build) checks it. The builder keeps a copy that is wiped
    /// when it is dropped; wiping the caller's own copy is the caller's business.
    pub fn signed(secret: impl AsRef<[u8]>) -> CookieStoreBuilder {
        CookieStoreBuilder::new(Mode::Signed, secret.as_ref())
    }

    /// Starts an encrypted-mode (AES-256-GCM) store whose current master secret is
    /// `secret`. See [`signed`](Self::signed) for the requirements on the secret.
    pub fn encrypted(secret: impl AsRef<[u8]>) -> CookieStoreBuilder {
        CookieStoreBuilder::new(Mode::Encrypted, secret.as_ref())
    }

    /// Starts a store of the given mode; the same as [`signed`](Self::signed) or
    /// [`encrypted`](Self::encrypted).
    pub fn builder(mode: Mode, secret: impl AsRef<[u8]>) -> CookieStoreBuilder {
        CookieStoreBuilder::new(mode, secret.as_ref())
    }

    /// The store's mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.codec.mode()
    }

    /// The longest cookie value this store issues or accepts, in bytes: 4096 minus the
    /// cookie name, `=` and the attribute allowance.
    #[must_use]
    pub fn max_value_len(&self) -> usize {
        self.codec.max_token_len()
    }

    /// Seals a token under the current key.
    fn issue(
        &self,
        version: u64,
        expires_at: OffsetDateTime,
        payload: Payload<'_>,
    ) -> Result<SessionKey> {
        self.codec
            .seal(version, expires_at, payload, NonceSource::Random)
    }

    #[cfg(test)]
    pub(crate) fn codec(&self) -> &Codec {
        &self.codec
    }
}

impl fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_ids: Vec<String> = self.codec.keys().iter().map(|k| keys::hex(&k.id)).collect();
        f.debug_struct("CookieStore")
            .field("mode", &self.codec.mode())
            .field("cookie_name", &self.codec.cookie_name())
            .field("key_ids", &key_ids)
            .field("attribute_allowance", &self.codec.attribute_allowance())
            .field("compression", &self.codec.compression())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for CookieStore {
    /// Issues a token holding `record` with version 1.
    async fn create(&self, record: &Record) -> Result<SessionKey> {
        self.issue(1, record.expires_at, Payload::Record(record))
    }

    /// Opens the token; `None` when it does not verify or has expired.
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>> {
        let Some(opened) = self.codec.open(key.as_str(), OffsetDateTime::now_utc()) else {
            tracing::debug!("session cookie refused: unknown, tampered with or expired");
            return Ok(None);
        };
        match opened.into_record() {
            Ok(record) => Ok(Some(record)),
            Err(e) => {
                // The tag verified, so this cookie was issued with our key: a bug, not an
                // attack. Nothing of the cookie goes to the log.
                tracing::warn!(error = %e, "an authenticated session cookie does not decode");
                Ok(None)
            }
        }
    }

    /// Compares `record.version` with the version inside the presented token and issues a
    /// new token with `version + 1` under the current key.
    async fn save(&self, key: &SessionKey, record: &Record) -> Result<SessionKey> {
        let opened = self
            .codec
            .open(key.as_str(), OffsetDateTime::now_utc())
            .ok_or(Error::NotFound)?;
        if opened.version != record.version {
            return Err(Error::Conflict);
        }
        let next = record.next_version()?;
        self.issue(next, record.expires_at, Payload::Record(record))
    }

    /// Re-issues the presented token under the current key with a new `expires_at`; data
    /// and version are carried over without decoding them.
    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<SessionKey> {
        let opened = self
            .codec
            .open(key.as_str(), OffsetDateTime::now_utc())
            .ok_or(Error::NotFound)?;
        let (bytes, deflated) = opened.stored_payload();
        self.issue(
            opened.version,
            expires_at,
            Payload::Stored { bytes, deflated },
        )
    }

    /// Succeeds without doing anything: the session lives in the browser's cookie, not
    /// on the server, so there is no record to end and none to remember as ended
    /// ([`Capabilities::remembers_ended`] is `false`). On logout the manager removes the
    /// cookie from this browser, on key rotation it replaces it; a copy of the cookie
    /// taken earlier still loads until the expiry sealed inside it (see the crate
    /// documentation's security notes and `SECURITY.md`). Version and key are not
    /// checked: there is no stored version to compare them with.
    async fn end(
        &self,
        _key: &SessionKey,
        _version: u64,
        _remember_until: OffsetDateTime,
    ) -> Result<()> {
        Ok(())
    }

    /// Does nothing: a client-side store cannot revoke a cookie the client keeps.
    async fn delete(&self, _key: &SessionKey) -> Result<()> {
        Ok(())
    }

    /// Nothing to remove: expired cookies are refused when they come back.
    async fn clear_expired(&self) -> Result<u64> {
        Ok(0)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::client_side()
    }

    /// The name every value is bound to (authenticated with it).
    fn cookie_name(&self) -> Option<&str> {
        Some(self.codec.cookie_name())
    }

    /// Whether `key` could be a cookie this store issued, judged by its shape alone and
    /// without any MAC or cipher work: a length it can issue, canonical base64url, the
    /// format byte, a mode byte of this store's mode and the id of one of its keys (current
    /// or previous). The session manager asks this for requests that never loaded their
    /// session, to remove a cookie that can hold nothing of this store; a `true` says
    /// nothing about the tag or the expiry, which only [`load`](Store::load) checks.
    fn recognizes(&self, key: &SessionKey) -> bool {
        self.codec.recognizes(key.as_str())
    }
}

/// Configures a [`CookieStore`]; made by [`CookieStore::signed`],
/// [`CookieStore::encrypted`] or [`CookieStore::builder`].
///
/// The copies of the secrets it holds are wiped from memory when it is dropped.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CookieStoreBuilder {
    mode: Mode,
    secret: Secret,
    previous: Vec<Secret>,
    cookie_name: String,
    attribute_allowance: usize,
    compression: bool,
}

impl CookieStoreBuilder {
    fn new(mode: Mode, secret: &[u8]) -> Self {
        Self {
            mode,
            secret: Secret::new(secret),
            previous: Vec::new(),
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            attribute_allowance: DEFAULT_ATTRIBUTE_ALLOWANCE,
            compression: cfg!(feature = "compression"),
        }
    }

    /// The name of the session cookie (default `sessionid`); use the same name as the
    /// session manager's configuration.
    ///
    /// The name is the purpose of the keys: it selects the derived keys and is part of the
    /// authenticated data, so a cookie issued under one name never opens under another,
    /// and renaming the cookie ends every existing session.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Adds a previous master secret: cookies made under it open, but none is issued
    /// under it (every `save` or `touch` re-issues them under the current secret). Add
    /// the most recently retired first.
    ///
    /// Two uses in a [rotation](crate#key-rotation) across several instances: first the
    /// *new* secret is listed here everywhere (so every instance reads what an updated
    /// instance will issue), then, once every instance has it, it becomes current and
    /// the *old* secret is listed here until the longest session lifetime has passed.
    pub fn with_previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous.push(Secret::new(secret.as_ref()));
        self
    }

    /// Bytes kept free for the attributes the session manager adds to the cookie
    /// (`Path`, `Domain`, `Max-Age`, `Expires`, `HttpOnly`, `Secure`, `SameSite`); default
    /// [`DEFAULT_ATTRIBUTE_ALLOWANCE`]. A session whose `name=value` plus this allowance
    /// exceeds 4096 bytes is refused with [`Error::TooLarge`].
    pub fn with_attribute_allowance(mut self, bytes: usize) -> Self {
        self.attribute_allowance = bytes;
        self
    }

    /// Whether signed-mode payloads of 128 bytes or more are deflated when that makes the
    /// cookie smaller (on by default with the `compression` feature). Deflated cookies are
    /// read whatever this says. The encrypted mode never compresses: compressing secrets
    /// beside attacker-chosen data before encryption leaks them through the length
    /// (CRIME, BREACH).
    #[cfg(feature = "compression")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Derives the keys and builds the store.
    ///
    /// # Errors
    ///
    /// - [`BuildError::SecretTooShort`] / [`BuildError::PreviousSecretTooShort`] for a secret
    ///   shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) bytes;
    /// - [`BuildError::InvalidCookieName`] for a name that is not an RFC 6265 token of 1 to
    ///   256 bytes;
    /// - [`BuildError::NoRoomForValue`] when the name and the attribute allowance leave no
    ///   room for the smallest cookie;
    /// - [`BuildError::KeyIdCollision`] when two different secrets share a key id.
    pub fn build(self) -> Result<CookieStore, BuildError> {
        if self.secret.len() < MIN_SECRET_LEN {
            return Err(BuildError::SecretTooShort {
                len: self.secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        if let Some((index, short)) = self
            .previous
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() < MIN_SECRET_LEN)
        {
            return Err(BuildError::PreviousSecretTooShort {
                index,
                len: short.len(),
                min: MIN_SECRET_LEN,
            });
        }
        let name = self.cookie_name.as_str();
        if name.is_empty() || name.len() > MAX_COOKIE_NAME_LEN || !name.bytes().all(is_token_char) {
            return Err(BuildError::InvalidCookieName);
        }
        let smallest = envelope::base64_len(envelope::overhead(self.mode) + EMPTY_PAYLOAD_LEN);
        if envelope::max_value_len(name.len(), self.attribute_allowance) < smallest {
            return Err(BuildError::NoRoomForValue {
                name_len: name.len(),
                allowance: self.attribute_allowance,
                limit: COOKIE_SIZE_LIMIT,
            });
        }
        let mut secrets = Vec::with_capacity(1 + self.previous.len());
        secrets.push(self.secret.clone());
        secrets.extend(self.previous.iter().cloned());
        let keys = keys::derive_all(&secrets, self.mode, name)?;
        Ok(CookieStore {
            codec: Arc::new(Codec::new(
                self.mode,
                keys,
                name,
                self.attribute_allowance,
                self.compression,
            )),
        })
    }
}

impl fmt::Debug for CookieStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieStoreBuilder")
            .field("mode", &self.mode)
            .field("secret", &self.secret)
            .field("previous_secrets", &self.previous.len())
            .field("cookie_name", &self.cookie_name)
            .field("attribute_allowance", &self.attribute_allowance)
            .field("compression", &self.compression)
            .finish()
    }
}

/// RFC 6265 / RFC 7230 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
