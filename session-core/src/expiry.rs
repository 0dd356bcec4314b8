//! Per-session expiry policies.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How long a session lives, set per session with
/// [`Session::set_expiry`](crate::Session::set_expiry).
///
/// A session without an override follows [`SessionConfig`](crate::SessionConfig): it
/// expires `cookie_age` after it was last saved (Django's behaviour), and its cookie is a
/// browser-session cookie when `expire_at_browser_close` is on.
///
/// # Examples
///
/// ```
/// use session_core::Expiry;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let rolling = Expiry::OnInactivity(Duration::minutes(30));
/// assert_eq!(rolling.expires_at(now, Duration::weeks(2)), now + Duration::minutes(30));
/// assert!(Expiry::BrowserSession.is_browser_session());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Expiry {
    /// The cookie has no `Max-Age` and ends when the browser closes; the store keeps the
    /// session for the configured age.
    #[serde(rename = "b")]
    BrowserSession,
    /// Rolling: the session ends after this long without a request that uses it. Every
    /// request that loads the session extends it.
    #[serde(rename = "i", with = "duration_millis")]
    OnInactivity(Duration),
    /// The session ends at this instant, however it is used.
    #[serde(rename = "a", with = "time::serde::timestamp::milliseconds")]
    AtDateTime(OffsetDateTime),
}

impl Expiry {
    /// The instant a session saved at `now` under this policy expires; `default_age` is
    /// the configured age, used by [`Expiry::BrowserSession`].
    #[must_use]
    pub fn expires_at(&self, now: OffsetDateTime, default_age: Duration) -> OffsetDateTime {
        match *self {
            Self::BrowserSession => now + default_age,
            Self::OnInactivity(idle) => now + idle,
            Self::AtDateTime(at) => at,
        }
    }

    /// Whether the cookie should be a browser-session cookie (no `Max-Age`/`Expires`).
    #[must_use]
    pub fn is_browser_session(&self) -> bool {
        matches!(self, Self::BrowserSession)
    }

    /// Whether every use of the session moves its expiry forward.
    #[must_use]
    pub fn is_rolling(&self) -> bool {
        matches!(self, Self::OnInactivity(_))
    }
}

mod duration_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = i64::try_from(d.whole_milliseconds()).unwrap_or(i64::MAX);
        s.serialize_i64(ms)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        i64::deserialize(d).map(Duration::milliseconds)
    }
}
