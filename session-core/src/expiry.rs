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
    /// The longest inactivity window: 400 days, the longest `Max-Age` a browser keeps
    /// (and the longest [`cookie_age`](crate::SessionConfig::cookie_age)).
    pub const MAX_WINDOW: Duration = Duration::days(400);

    /// The latest instant an [`Expiry::AtDateTime`] may name: the end of year 9999, the
    /// last instant every medium of the family stores (SQL `DATETIME`, Unix milliseconds).
    pub const LATEST: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);

    /// Checks that the policy is one a session can hold: an inactivity window of more
    /// than zero and at most [`MAX_WINDOW`](Self::MAX_WINDOW), an instant between the
    /// Unix epoch and [`LATEST`](Self::LATEST).
    ///
    /// [`Session::set_expiry`](crate::Session::set_expiry) refuses anything else, and a
    /// stored record carrying anything else does not decode (it loads as absent, as an
    /// expired one does).
    ///
    /// # Errors
    ///
    /// [`Error::ExpiryOutOfRange`](crate::Error::ExpiryOutOfRange) naming the rule broken.
    pub fn check(&self) -> crate::Result<()> {
        match *self {
            Self::BrowserSession => Ok(()),
            Self::OnInactivity(idle) if idle <= Duration::ZERO => Err(
                crate::Error::ExpiryOutOfRange("an inactivity window must be longer than zero"),
            ),
            Self::OnInactivity(idle) if idle > Self::MAX_WINDOW => Err(
                crate::Error::ExpiryOutOfRange("an inactivity window is at most 400 days"),
            ),
            Self::OnInactivity(_) => Ok(()),
            Self::AtDateTime(at) if at < OffsetDateTime::UNIX_EPOCH || at > Self::LATEST => {
                Err(crate::Error::ExpiryOutOfRange(
                    "an expiry instant lies between 1970 and the end of 9999",
                ))
            }
            Self::AtDateTime(_) => Ok(()),
        }
    }

    /// The instant a session saved at `now` under this policy expires; `default_age` is
    /// the configured age, used by [`Expiry::BrowserSession`].
    ///
    /// Never panics: a sum past the representable range saturates at
    /// [`LATEST`](Self::LATEST) (only an unchecked policy or a clock set far in the future
    /// gets there).
    #[must_use]
    pub fn expires_at(&self, now: OffsetDateTime, default_age: Duration) -> OffsetDateTime {
        match *self {
            Self::BrowserSession => add_saturating(now, default_age),
            Self::OnInactivity(idle) => add_saturating(now, idle),
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

/// `at + d`, clamped to `[UNIX_EPOCH, LATEST]` instead of panicking out of range.
pub(crate) fn add_saturating(at: OffsetDateTime, d: Duration) -> OffsetDateTime {
    match at.checked_add(d) {
        Some(t) => t.clamp(OffsetDateTime::UNIX_EPOCH, Expiry::LATEST),
        None if d.is_negative() => OffsetDateTime::UNIX_EPOCH,
        None => Expiry::LATEST,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_what_no_session_can_hold() {
        for bad in [
            Expiry::OnInactivity(Duration::ZERO),
            Expiry::OnInactivity(Duration::seconds(-1)),
            Expiry::OnInactivity(Duration::MIN),
            Expiry::OnInactivity(Duration::MAX),
            Expiry::OnInactivity(Expiry::MAX_WINDOW + Duration::milliseconds(1)),
            Expiry::AtDateTime(OffsetDateTime::UNIX_EPOCH - Duration::seconds(1)),
            Expiry::AtDateTime(Expiry::LATEST + Duration::nanoseconds(1)),
        ] {
            assert!(
                matches!(bad.check(), Err(crate::Error::ExpiryOutOfRange(_))),
                "{bad:?} accepted"
            );
        }
        for good in [
            Expiry::BrowserSession,
            Expiry::OnInactivity(Duration::milliseconds(1)),
            Expiry::OnInactivity(Expiry::MAX_WINDOW),
            Expiry::AtDateTime(OffsetDateTime::UNIX_EPOCH),
            Expiry::AtDateTime(Expiry::LATEST),
        ] {
            assert!(good.check().is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn expires_at_saturates_instead_of_panicking() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            Expiry::OnInactivity(Duration::MAX).expires_at(now, Duration::weeks(2)),
            Expiry::LATEST
        );
        assert_eq!(
            Expiry::OnInactivity(Duration::MIN).expires_at(now, Duration::weeks(2)),
            OffsetDateTime::UNIX_EPOCH
        );
        assert_eq!(
            Expiry::BrowserSession.expires_at(Expiry::LATEST, Duration::weeks(2)),
            Expiry::LATEST
        );
    }
}
