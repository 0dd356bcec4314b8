//! The commit decision: what a finished request does to the store and to the cookie,
//! computed from the session's state alone. Every rule lives here once; the manager only
//! performs the I/O a plan names.

use time::{Duration, OffsetDateTime};

use crate::session::State;
use crate::{Expiry, Record, SessionConfig, SessionKey};

/// What to do at commit.
#[derive(Debug)]
pub(crate) enum Plan {
    /// No store I/O. `remove_cookie`: the request's cookie names nothing this store holds
    /// (and nothing new was saved), so it is removed.
    Nothing { remove_cookie: bool },
    /// The session was ended or rotated by a concurrent request of the same browser: no
    /// I/O, no cookie; `dropped` says whether this request had writes that are lost.
    EndedElsewhere { dropped: bool },
    /// A new session: store `record` under a fresh key.
    Create(Record),
    /// Compare-and-set `record` (at `record.version`) under `key`.
    Save { key: SessionKey, record: Record },
    /// A rolling session that was only read: move its expiry.
    Touch {
        key: SessionKey,
        expires_at: OffsetDateTime,
    },
    /// `cycle_key`: store `record` under a fresh key, then end `old` at `version`.
    Cycle {
        old: SessionKey,
        version: u64,
        record: Record,
    },
    /// Logout, or a session left empty: end `key` at `version`, then store `then` under a
    /// fresh key if the request put data in a new session after a `flush`.
    End {
        key: SessionKey,
        version: u64,
        then: Option<Record>,
    },
}

impl Plan {
    /// The plan for `st` at `now` under `config`.
    pub(crate) fn of(st: &State, config: &SessionConfig, now: OffsetDateTime) -> Self {
        if st.ended_elsewhere {
            return Self::EndedElsewhere {
                dropped: st.modified,
            };
        }
        let record = |version| Record {
            data: st.data.clone(),
            expiry: st.expiry,
            expires_at: st.expires_at_if_saved_now(now),
            version,
        };
        if let Some((key, version)) = &st.flushed {
            return Self::End {
                key: key.clone(),
                version: *version,
                then: (!st.data.is_empty()).then(|| record(0)),
            };
        }
        match &st.key {
            Some(key) if st.data.is_empty() => Self::End {
                key: key.clone(),
                version: st.version,
                then: None,
            },
            None if st.data.is_empty() => Self::Nothing {
                remove_cookie: st.stale_cookie,
            },
            None => Self::Create(record(0)),
            Some(old) if st.cycle => Self::Cycle {
                old: old.clone(),
                version: st.version,
                record: record(0),
            },
            Some(key) if st.modified || config.save_every_request() => Self::Save {
                key: key.clone(),
                record: record(st.version),
            },
            Some(key) => match st.expiry {
                Some(Expiry::OnInactivity(idle)) => {
                    let expires_at = st.expires_at_if_saved_now(now);
                    if touch_due(st.expires_at, expires_at, idle) {
                        Self::Touch {
                            key: key.clone(),
                            expires_at,
                        }
                    } else {
                        Self::Nothing {
                            remove_cookie: false,
                        }
                    }
                }
                _ => Self::Nothing {
                    remove_cookie: false,
                },
            },
        }
    }
}

/// A rolling session needs a touch once its expiry would move by more than a hundredth of
/// its window (at most a minute), so a burst of reads costs one write.
fn touch_due(stored: Option<OffsetDateTime>, next: OffsetDateTime, idle: Duration) -> bool {
    let threshold = (idle / 100_i32).min(Duration::minutes(1));
    stored.is_none_or(|prev| next - prev >= threshold)
}

/// The instant a cookie for `record` expires, or `None` for a browser-session cookie.
pub(crate) fn cookie_expiry(record: &Record, config: &SessionConfig) -> Option<OffsetDateTime> {
    let browser = match record.expiry {
        Some(e) => e.is_browser_session(),
        None => config.expire_at_browser_close(),
    };
    (!browser).then_some(record.expires_at)
}

/// Whether a cookie set to expire at `held` must be sent again for `record`, saved under
/// the same key: a browser-session cookie never (it has no expiry), otherwise once the
/// expiry moved by the rule of [`touch_due`] (a hundredth of the remaining window, at most
/// a minute), so a burst of saves sends one cookie.
pub(crate) fn cookie_refresh_due(
    held: OffsetDateTime,
    record: &Record,
    config: &SessionConfig,
) -> bool {
    if cookie_expiry(record, config).is_none() {
        return false;
    }
    let window = record.expires_at - OffsetDateTime::now_utc();
    touch_due(Some(held), record.expires_at, window) || record.expires_at < held
}
