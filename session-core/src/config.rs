//! Cookie and lifecycle settings (Django's `SESSION_*` settings).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::Duration;

use crate::ConfigError;

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent with same-site requests only.
    Strict,
    /// Sent with same-site requests and top-level navigations (Django's default).
    #[default]
    Lax,
    /// Sent with every request; requires `Secure`.
    None,
}

impl SameSite {
    fn to_cookie(self) -> cookie::SameSite {
        match self {
            Self::Strict => cookie::SameSite::Strict,
            Self::Lax => cookie::SameSite::Lax,
            Self::None => cookie::SameSite::None,
        }
    }
}

/// Validated session settings, with Django's names and defaults except where security
/// asks for better (`Secure` is on by default).
///
/// | setting | Django | default |
/// |---|---|---|
/// | [`cookie_name`](Self::cookie_name) | `SESSION_COOKIE_NAME` | `sessionid` |
/// | [`cookie_age`](Self::cookie_age) | `SESSION_COOKIE_AGE` | 1,209,600 s (two weeks) |
/// | [`cookie_domain`](Self::cookie_domain) | `SESSION_COOKIE_DOMAIN` | none |
/// | [`cookie_path`](Self::cookie_path) | `SESSION_COOKIE_PATH` | `/` |
/// | [`cookie_secure`](Self::cookie_secure) | `SESSION_COOKIE_SECURE` | **on** (Django: off) |
/// | [`cookie_httponly`](Self::cookie_httponly) | `SESSION_COOKIE_HTTPONLY` | on |
/// | [`cookie_samesite`](Self::cookie_samesite) | `SESSION_COOKIE_SAMESITE` | `Lax` |
/// | [`expire_at_browser_close`](Self::expire_at_browser_close) | `SESSION_EXPIRE_AT_BROWSER_CLOSE` | off |
/// | [`save_every_request`](Self::save_every_request) | `SESSION_SAVE_EVERY_REQUEST` | off |
/// | [`conflict_retries`](Self::conflict_retries) | – | 8 |
/// | [`ended_grace`](Self::ended_grace) | – | 60 s |
/// | [`override_public_cache_control`](Self::override_public_cache_control) | – | off (warn) |
///
/// Every value is checked when the configuration is built, so a cookie attribute can
/// never inject a header: see [`SessionConfigBuilder::build`].
///
/// # Examples
///
/// ```
/// use session_core::{SameSite, SessionConfig};
/// use time::Duration;
///
/// let config = SessionConfig::builder()
///     .with_cookie_name("__Host-session")
///     .with_cookie_age(Duration::hours(8))
///     .with_cookie_samesite(SameSite::Strict)
///     .build()?;
/// assert_eq!(config.cookie_name(), "__Host-session");
///
/// assert!(SessionConfig::builder().with_cookie_path("/; Domain=evil.example").build().is_err());
/// # Ok::<(), session_core::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    cookie_name: String,
    cookie_age: Duration,
    cookie_domain: Option<String>,
    cookie_path: String,
    cookie_secure: bool,
    cookie_httponly: bool,
    cookie_samesite: SameSite,
    expire_at_browser_close: bool,
    save_every_request: bool,
    conflict_retries: u32,
    ended_grace: Duration,
    override_public_cache_control: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_age: Duration::seconds(1_209_600),
            cookie_domain: None,
            cookie_path: "/".into(),
            cookie_secure: true,
            cookie_httponly: true,
            cookie_samesite: SameSite::Lax,
            expire_at_browser_close: false,
            save_every_request: false,
            conflict_retries: 8,
            ended_grace: Duration::seconds(60),
            override_public_cache_control: false,
        }
    }
}

impl SessionConfig {
    /// A builder starting from the defaults.
    #[must_use]
    pub fn builder() -> SessionConfigBuilder {
        SessionConfigBuilder::default()
    }

    /// The cookie's name.
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// How long a session lives after it was last saved, unless overridden per session.
    #[must_use]
    pub fn cookie_age(&self) -> Duration {
        self.cookie_age
    }

    /// The cookie's `Domain` attribute.
    #[must_use]
    pub fn cookie_domain(&self) -> Option<&str> {
        self.cookie_domain.as_deref()
    }

    /// The cookie's `Path` attribute.
    #[must_use]
    pub fn cookie_path(&self) -> &str {
        &self.cookie_path
    }

    /// Whether the cookie has the `Secure` attribute.
    #[must_use]
    pub fn cookie_secure(&self) -> bool {
        self.cookie_secure
    }

    /// Whether the cookie has the `HttpOnly` attribute.
    #[must_use]
    pub fn cookie_httponly(&self) -> bool {
        self.cookie_httponly
    }

    /// The cookie's `SameSite` attribute.
    #[must_use]
    pub fn cookie_samesite(&self) -> SameSite {
        self.cookie_samesite
    }

    /// Whether sessions without an expiry override get a browser-session cookie.
    #[must_use]
    pub fn expire_at_browser_close(&self) -> bool {
        self.expire_at_browser_close
    }

    /// Whether every request that has a session saves it (refreshing its expiry).
    #[must_use]
    pub fn save_every_request(&self) -> bool {
        self.save_every_request
    }

    /// How often a commit reloads and re-applies its changes after a `Conflict`.
    #[must_use]
    pub fn conflict_retries(&self) -> u32 {
        self.conflict_retries
    }

    /// The `Set-Cookie` value that gives the client `value`, with every configured
    /// attribute; no `Max-Age`/`Expires` when `expires` is `None` (browser session).
    /// How long a key that was rotated or logged out stays recognised as *ended moments
    /// ago* (default 60 s; at most a day). A request still holding it in that window (a
    /// second tab, an XHR in flight during login) reads no data, writes nothing and sends no
    /// `Set-Cookie`, so it can neither resurrect the session nor overwrite the cookie the
    /// concurrent request just set. After it, the key is simply unknown and its cookie is
    /// removed. Zero turns the grace off.
    #[must_use]
    pub fn ended_grace(&self) -> Duration {
        self.ended_grace
    }

    /// What the layer does when the application marked a response that sets or removes
    /// the session cookie as storable by shared caches (`Cache-Control: public`,
    /// `s-maxage`): off (the default), it logs a warning and leaves the header; on, it
    /// replaces the header by `private`. A response without `Cache-Control` always gets
    /// `private`.
    #[must_use]
    pub fn override_public_cache_control(&self) -> bool {
        self.override_public_cache_control
    }

    pub(crate) fn set_cookie(&self, value: &str, expires: Option<time::OffsetDateTime>) -> String {
        let mut c = self.base_cookie(value.to_owned());
        if let Some(at) = expires {
            // Rounded, so a session saved just now shows its whole configured age.
            let millis = (at - time::OffsetDateTime::now_utc()).whole_milliseconds();
            let secs = i64::try_from((millis + 500) / 1000).unwrap_or(i64::MAX);
            c.set_max_age(Duration::seconds(secs.max(0)));
            c.set_expires(at);
        }
        c.to_string()
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub(crate) fn removal_cookie(&self) -> String {
        let mut c = self.base_cookie(String::new());
        c.set_max_age(Duration::ZERO);
        c.set_expires(time::OffsetDateTime::UNIX_EPOCH);
        c.to_string()
    }

    fn base_cookie(&self, value: String) -> cookie::Cookie<'static> {
        let mut c = cookie::Cookie::new(self.cookie_name.clone(), value);
        c.set_path(self.cookie_path.clone());
        if let Some(d) = &self.cookie_domain {
            c.set_domain(d.clone());
        }
        c.set_secure(self.cookie_secure);
        c.set_http_only(self.cookie_httponly);
        c.set_same_site(self.cookie_samesite.to_cookie());
        c
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_age", &self.cookie_age)
            .field("cookie_domain", &self.cookie_domain)
            .field("cookie_path", &self.cookie_path)
            .field("cookie_secure", &self.cookie_secure)
            .field("cookie_httponly", &self.cookie_httponly)
            .field("cookie_samesite", &self.cookie_samesite)
            .field("expire_at_browser_close", &self.expire_at_browser_close)
            .field("save_every_request", &self.save_every_request)
            .field("conflict_retries", &self.conflict_retries)
            .field("ended_grace", &self.ended_grace)
            .field(
                "override_public_cache_control",
                &self.override_public_cache_control,
            )
            .finish()
    }
}

/// Builds a [`SessionConfig`]; deserializes from configuration files with every field
/// optional (`cookie_age` in seconds).
///
/// ```
/// let builder: session_core::SessionConfigBuilder =
///     serde_json::from_str(r#"{"cookie_name": "sid", "cookie_age": 3600}"#).unwrap();
/// assert_eq!(builder.build().unwrap().cookie_age().whole_seconds(), 3600);
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfigBuilder {
    cookie_name: Option<String>,
    cookie_age: Option<i64>,
    cookie_domain: Option<String>,
    cookie_path: Option<String>,
    cookie_secure: Option<bool>,
    cookie_httponly: Option<bool>,
    cookie_samesite: Option<SameSite>,
    expire_at_browser_close: Option<bool>,
    save_every_request: Option<bool>,
    conflict_retries: Option<u32>,
    /// In milliseconds.
    ended_grace: Option<i64>,
    override_public_cache_control: Option<bool>,
}

impl SessionConfigBuilder {
    /// Sets the cookie's name (an RFC 6265 token; `__Host-` and `__Secure-` prefixes are
    /// checked against the other attributes).
    #[must_use]
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = Some(name.into());
        self
    }

    /// Sets how long a session lives (more than zero; at most 400 days, what browsers keep).
    #[must_use]
    pub fn with_cookie_age(mut self, age: Duration) -> Self {
        self.cookie_age = Some(age.whole_seconds());
        self
    }

    /// Sets the cookie's `Domain` attribute.
    #[must_use]
    pub fn with_cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie_domain = Some(domain.into());
        self
    }

    /// Sets the cookie's `Path` attribute (starts with `/`).
    #[must_use]
    pub fn with_cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie_path = Some(path.into());
        self
    }

    /// Sets whether the cookie has `Secure` (turn off only for plain-HTTP development).
    #[must_use]
    pub fn with_cookie_secure(mut self, yes: bool) -> Self {
        self.cookie_secure = Some(yes);
        self
    }

    /// Sets whether the cookie has `HttpOnly`.
    #[must_use]
    pub fn with_cookie_httponly(mut self, yes: bool) -> Self {
        self.cookie_httponly = Some(yes);
        self
    }

    /// Sets the cookie's `SameSite` attribute (`None` requires `Secure`).
    #[must_use]
    pub fn with_cookie_samesite(mut self, same_site: SameSite) -> Self {
        self.cookie_samesite = Some(same_site);
        self
    }

    /// Sets whether sessions without an override get a browser-session cookie.
    #[must_use]
    pub fn with_expire_at_browser_close(mut self, yes: bool) -> Self {
        self.expire_at_browser_close = Some(yes);
        self
    }

    /// Sets whether every request with a session saves it.
    #[must_use]
    pub fn with_save_every_request(mut self, yes: bool) -> Self {
        self.save_every_request = Some(yes);
        self
    }

    /// Sets how often a commit retries after a `Conflict` (at most 100).
    #[must_use]
    pub fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = Some(retries);
        self
    }

    /// Sets how long a rotated or logged-out key stays recognised (see
    /// [`SessionConfig::ended_grace`]; zero to at most one day).
    #[must_use]
    pub fn with_ended_grace(mut self, grace: Duration) -> Self {
        self.ended_grace = Some(i64::try_from(grace.whole_milliseconds()).unwrap_or(i64::MAX));
        self
    }

    /// Sets whether a `public` `Cache-Control` on a response that sets the session cookie
    /// is replaced by `private` (see [`SessionConfig::override_public_cache_control`]).
    #[must_use]
    pub fn with_override_public_cache_control(mut self, yes: bool) -> Self {
        self.override_public_cache_control = Some(yes);
        self
    }

    /// Checks every value and builds the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting when a value could break the `Set-Cookie`
    /// header (separators, control characters, `;`), a cookie prefix rule is broken, the
    /// age is out of range, or `SameSite=None` comes without `Secure`.
    pub fn build(self) -> Result<SessionConfig, ConfigError> {
        let d = SessionConfig::default();
        let c = SessionConfig {
            cookie_name: self.cookie_name.unwrap_or(d.cookie_name),
            cookie_age: self.cookie_age.map_or(d.cookie_age, Duration::seconds),
            cookie_domain: self.cookie_domain,
            cookie_path: self.cookie_path.unwrap_or(d.cookie_path),
            cookie_secure: self.cookie_secure.unwrap_or(d.cookie_secure),
            cookie_httponly: self.cookie_httponly.unwrap_or(d.cookie_httponly),
            cookie_samesite: self.cookie_samesite.unwrap_or(d.cookie_samesite),
            expire_at_browser_close: self
                .expire_at_browser_close
                .unwrap_or(d.expire_at_browser_close),
            save_every_request: self.save_every_request.unwrap_or(d.save_every_request),
            conflict_retries: self.conflict_retries.unwrap_or(d.conflict_retries),
            ended_grace: self
                .ended_grace
                .map_or(d.ended_grace, Duration::milliseconds),
            override_public_cache_control: self
                .override_public_cache_control
                .unwrap_or(d.override_public_cache_control),
        };
        validate(&c)?;
        Ok(c)
    }
}

fn validate(c: &SessionConfig) -> Result<(), ConfigError> {
    let name = &c.cookie_name;
    if name.is_empty() || name.len() > 256 || !name.bytes().all(is_token_char) {
        return Err(ConfigError::new(
            "cookie_name",
            "must be 1 to 256 characters of an RFC 6265 token (no spaces, separators or control characters)",
        ));
    }
    if !(c.cookie_path.starts_with('/')
        && c.cookie_path.len() <= 1024
        && c.cookie_path.bytes().all(is_attribute_char))
    {
        return Err(ConfigError::new(
            "cookie_path",
            "must start with `/` and hold no `;` or control characters",
        ));
    }
    if let Some(domain) = &c.cookie_domain {
        let host = domain.strip_prefix('.').unwrap_or(domain);
        if host.is_empty()
            || host.len() > 253
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ConfigError::new(
                "cookie_domain",
                "must be a host name of letters, digits, `-` and `.`",
            ));
        }
    }
    if c.cookie_age <= Duration::ZERO || c.cookie_age > Duration::days(400) {
        return Err(ConfigError::new(
            "cookie_age",
            "must be more than zero and at most 400 days",
        ));
    }
    if c.cookie_samesite == SameSite::None && !c.cookie_secure {
        return Err(ConfigError::new(
            "cookie_samesite",
            "SameSite=None requires cookie_secure (browsers reject it otherwise)",
        ));
    }
    if name.starts_with("__Secure-") && !c.cookie_secure {
        return Err(ConfigError::new(
            "cookie_name",
            "a `__Secure-` cookie requires cookie_secure",
        ));
    }
    if name.starts_with("__Host-")
        && (!c.cookie_secure || c.cookie_domain.is_some() || c.cookie_path != "/")
    {
        return Err(ConfigError::new(
            "cookie_name",
            "a `__Host-` cookie requires cookie_secure, no domain and path `/`",
        ));
    }
    if c.ended_grace < Duration::ZERO || c.ended_grace > Duration::days(1) {
        return Err(ConfigError::new(
            "ended_grace",
            "must be between zero and one day",
        ));
    }
    if c.conflict_retries > 100 {
        return Err(ConfigError::new("conflict_retries", "must be at most 100"));
    }
    Ok(())
}

/// RFC 7230 `tchar`, which RFC 6265 uses for cookie names.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Printable ASCII other than `;` (RFC 6265 `av-octet`).
fn is_attribute_char(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b';'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_djangos_with_secure_on() {
        let c = SessionConfig::default();
        assert_eq!(c.cookie_name(), "sessionid");
        assert_eq!(c.cookie_age(), Duration::seconds(1_209_600));
        assert_eq!((c.cookie_path(), c.cookie_domain()), ("/", None));
        assert!(c.cookie_secure() && c.cookie_httponly());
        assert_eq!(c.cookie_samesite(), SameSite::Lax);
        assert!(!c.expire_at_browser_close() && !c.save_every_request());
        assert_eq!(SessionConfig::builder().build(), Ok(c));
    }

    #[test]
    fn header_injection_is_refused_at_build_time() {
        let b = SessionConfig::builder;
        let bad = [
            b().with_cookie_name("sid\r\nSet-Cookie: x=1"),
            b().with_cookie_name("a=b"),
            b().with_cookie_name("a;b"),
            b().with_cookie_name(""),
            b().with_cookie_name("a b"),
            b().with_cookie_path("/; Domain=evil.example"),
            b().with_cookie_path("/\n"),
            b().with_cookie_path("relative"),
            b().with_cookie_domain("example.com; Secure"),
            b().with_cookie_domain("exa mple.com"),
            b().with_cookie_domain(""),
            b().with_cookie_age(Duration::ZERO),
            b().with_cookie_age(Duration::days(401)),
            b().with_cookie_samesite(SameSite::None)
                .with_cookie_secure(false),
            b().with_cookie_name("__Host-x").with_cookie_path("/app"),
            b().with_cookie_name("__Host-x")
                .with_cookie_domain("example.com"),
            b().with_cookie_name("__Secure-x").with_cookie_secure(false),
            b().with_conflict_retries(1000),
        ];
        for builder in bad {
            let shown = format!("{builder:?}");
            assert!(builder.build().is_err(), "accepted {shown}");
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let e = SessionConfig::builder()
            .with_cookie_path("x")
            .build()
            .expect_err("refused");
        assert_eq!(e.setting(), "cookie_path");
        assert!(e.to_string().contains("cookie_path"));
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let c = SessionConfig::builder()
            .with_cookie_domain("example.com")
            .with_cookie_path("/app")
            .with_cookie_samesite(SameSite::Strict)
            .build()
            .expect("valid");
        let at = time::OffsetDateTime::now_utc() + Duration::hours(1);
        let header = c.set_cookie("abc", Some(at));
        for part in [
            "sessionid=abc",
            "Path=/app",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=",
            "Expires=",
        ] {
            assert!(header.contains(part), "{header} lacks {part}");
        }
        let browser = c.set_cookie("abc", None);
        assert!(!browser.contains("Max-Age") && !browser.contains("Expires"));
        let removal = c.removal_cookie();
        assert!(removal.starts_with("sessionid=;") && removal.contains("Max-Age=0"));
    }

    #[test]
    fn builder_deserializes_and_refuses_unknown_fields() {
        let b: SessionConfigBuilder =
            serde_json::from_str(r#"{"cookie_secure": false, "cookie_samesite": "Strict"}"#)
                .expect("parses");
        let c = b.build().expect("valid");
        assert!(!c.cookie_secure());
        assert!(serde_json::from_str::<SessionConfigBuilder>(r#"{"cookie_nam": "x"}"#).is_err());
    }
}
