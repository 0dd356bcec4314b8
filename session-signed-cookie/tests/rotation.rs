//! Rotating the master secret across several instances (a rolling deploy), in both modes.
//!
//! Each `CookieStore` here stands for one instance of the application with its secret
//! configuration. During a rolling deploy instances with the old and the new configuration
//! serve the same browsers side by side, so at every moment every instance must read every
//! cookie any instance issues: by `create`, and by re-issuing in `save` and `touch` a
//! cookie another instance made. The two-phase procedure of the crate documentation
//! (`SECURITY.md`, "Rotating the cookie-store secret") keeps that true; the naive
//! one-step rotation does not, and the last test shows where it breaks.

use serde_json::json;
use session_core::{Data, Error, Record, SessionKey, Store, from_unix_millis, unix_millis};
use session_signed_cookie::{CookieStore, Mode};
use time::OffsetDateTime;

const OLD: &[u8; 32] = b"old-secret-of-the-rotation-tests";
const NEW: &[u8; 32] = b"new-secret-of-the-rotation-tests";

const MODES: [Mode; 2] = [Mode::Signed, Mode::Encrypted];

/// One instance: issues under `current`, also reads `previous`.
fn instance(mode: Mode, current: &[u8], previous: &[&[u8]]) -> CookieStore {
    previous
        .iter()
        .fold(CookieStore::builder(mode, current), |b, p| {
            b.with_previous_secret(p)
        })
        .build()
        .expect("valid configuration")
}

/// Before the rotation: the old secret alone.
fn before(mode: Mode) -> CookieStore {
    instance(mode, OLD, &[])
}

/// Phase 1: the new secret is known everywhere, but only to verify.
fn phase_1(mode: Mode) -> CookieStore {
    instance(mode, OLD, &[NEW])
}

/// Phase 2: the new secret is current, the old one verifies.
fn phase_2(mode: Mode) -> CookieStore {
    instance(mode, NEW, &[OLD])
}

/// Phase 3: the old secret is dropped.
fn phase_3(mode: Mode) -> CookieStore {
    instance(mode, NEW, &[])
}

fn in_an_hour() -> OffsetDateTime {
    // Whole milliseconds, so a loaded record compares equal.
    from_unix_millis(unix_millis(OffsetDateTime::now_utc()) + 3_600_000).expect("in range")
}

fn record(who: &str) -> Record {
    let mut data = Data::new();
    data.insert("user".into(), json!(who));
    data.insert("cart".into(), json!([1, 2, 3]));
    Record::new(data, in_an_hour())
}

/// Every way `issuer` hands a browser a cookie: a new session, and the re-issue by `save`
/// and by `touch` of a cookie that `origin` made. Labelled for the failure messages.
async fn cookies_issued_by(
    issuer: (&str, &CookieStore),
    origin: (&str, &CookieStore),
) -> Vec<(String, SessionKey, Record)> {
    let (name, store) = issuer;
    let mut out = Vec::new();
    let r = record(name);
    let created = store.create(&r).await.expect("create");
    out.push((
        format!("{name} created"),
        created,
        Record { version: 1, ..r },
    ));

    let from = origin
        .1
        .create(&record(origin.0))
        .await
        .expect("create at the origin");
    let loaded = store
        .load(&from)
        .await
        .expect("load")
        .unwrap_or_else(|| panic!("{name} cannot read a cookie {} made", origin.0));
    let saved = store.save(&from, &loaded).await.expect("save");
    out.push((
        format!("{name} saved a cookie {} made", origin.0),
        saved,
        Record {
            version: 2,
            ..loaded.clone()
        },
    ));
    let at = in_an_hour() + time::Duration::minutes(5);
    let touched = store.touch(&from, at).await.expect("touch");
    out.push((
        format!("{name} touched a cookie {} made", origin.0),
        touched,
        Record {
            expires_at: at,
            ..loaded
        },
    ));
    out
}

/// Asserts that every instance of `fleet` reads every cookie any instance of it issues,
/// however it was issued and whichever instance made the cookie it re-issued.
async fn every_instance_reads_every_cookie(phase: &str, fleet: &[(&str, &CookieStore)]) {
    for &issuer in fleet {
        for &origin in fleet {
            for (how, cookie, want) in cookies_issued_by(issuer, origin).await {
                for &(reader, store) in fleet {
                    let got = store.load(&cookie).await.expect("load never fails");
                    assert_eq!(
                        got.as_ref(),
                        Some(&want),
                        "{phase}: {reader} cannot read the cookie that {how}"
                    );
                    let saved = store.save(&cookie, &want).await;
                    assert!(
                        saved.is_ok(),
                        "{phase}: {reader} cannot save the cookie that {how}: {saved:?}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_two_phase_rotation_keeps_every_cookie_readable_on_every_instance() {
    for mode in MODES {
        let (before, p1, p2, p3) = (before(mode), phase_1(mode), phase_2(mode), phase_3(mode));

        // Phase 1 rolls out: some instances know the new secret, none issues under it.
        every_instance_reads_every_cookie(
            &format!("{mode:?}, phase 1 rolling out"),
            &[
                ("a not yet updated instance", &before),
                ("an updated instance", &p1),
            ],
        )
        .await;
        // Phase 2 rolls out once every instance runs phase 1: updated instances issue
        // under the new secret, which the others already read.
        every_instance_reads_every_cookie(
            &format!("{mode:?}, phase 2 rolling out"),
            &[("a phase-1 instance", &p1), ("a phase-2 instance", &p2)],
        )
        .await;
        // Phase 3 rolls out later: everybody issues under the new secret already.
        every_instance_reads_every_cookie(
            &format!("{mode:?}, phase 3 rolling out"),
            &[("a phase-2 instance", &p2), ("a phase-3 instance", &p3)],
        )
        .await;

        // Sessions that started before the rotation survive it: a cookie made before
        // phase 1 loads all through phase 2, and a phase-2 instance re-issues it under
        // the new secret, which phase 3 reads.
        let old_cookie = before.create(&record("early")).await.expect("create");
        for (phase, store) in [("phase 1", &p1), ("phase 2", &p2)] {
            assert!(
                store.load(&old_cookie).await.expect("load").is_some(),
                "{mode:?}: a cookie made before the rotation stopped loading in {phase}"
            );
        }
        let moved = p2.touch(&old_cookie, in_an_hour()).await.expect("touch");
        assert!(p3.load(&moved).await.expect("load").is_some());
        // Once the old secret is dropped, a cookie never re-issued stops loading: what
        // step 3 waits out the longest session lifetime for.
        assert!(p3.load(&old_cookie).await.expect("load").is_none());
    }
}

#[tokio::test]
async fn the_one_step_rotation_logs_users_out_on_instances_not_yet_updated() {
    for mode in MODES {
        let old_instance = before(mode);
        // The naive step: the new secret current at once, the old one previous.
        let updated = phase_2(mode);

        // One direction works: the updated instance reads the old instance's cookies...
        let from_old = old_instance.create(&record("ada")).await.expect("create");
        let loaded = updated
            .load(&from_old)
            .await
            .expect("load")
            .expect("the updated instance reads old cookies");

        // ...but everything it issues, even by re-issuing a session the old instance
        // made, is unreadable on an instance not yet updated: the next request that
        // lands there finds no session (the user is logged out) and cannot save.
        let created = updated.create(&record("bob")).await.expect("create");
        let saved = updated.save(&from_old, &loaded).await.expect("save");
        let touched = updated.touch(&from_old, in_an_hour()).await.expect("touch");
        for (how, cookie) in [
            ("created", &created),
            ("saved", &saved),
            ("touched", &touched),
        ] {
            assert!(
                old_instance.load(cookie).await.expect("load").is_none(),
                "{mode:?}: an old instance read a cookie the updated one {how}"
            );
            let mut r = record("x");
            r.version = 1;
            assert!(
                matches!(old_instance.save(cookie, &r).await, Err(Error::NotFound)),
                "{mode:?}: an old instance saved a cookie the updated one {how}"
            );
            assert!(
                matches!(
                    old_instance.touch(cookie, in_an_hour()).await,
                    Err(Error::NotFound)
                ),
                "{mode:?}: an old instance touched a cookie the updated one {how}"
            );
            // The same cookie reads fine on an instance of phase 1: that is what the
            // first phase is for.
            assert!(
                phase_1(mode).load(cookie).await.expect("load").is_some(),
                "{mode:?}: a phase-1 instance cannot read a cookie the updated one {how}"
            );
        }
    }
}
