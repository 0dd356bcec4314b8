//! `CookieStore` against the conformance suite, plus the cookie-specific checks.

use session_signed_cookie::CookieStore;

const SECRET: &[u8; 32] = b"conformance-secret-0123456789abc";

fn signed(ns: &str) -> CookieStore {
    CookieStore::signed(SECRET)
        .with_cookie_name(ns)
        .build()
        .expect("valid configuration")
}

fn encrypted(ns: &str) -> CookieStore {
    CookieStore::encrypted(SECRET)
        .with_cookie_name(ns)
        .build()
        .expect("valid configuration")
}

session_core::conformance_tests!(signed_mode, |ns: String| async move { signed(&ns) });
session_core::conformance_tests!(encrypted_mode, |ns: String| async move { encrypted(&ns) });
