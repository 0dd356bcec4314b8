//! `SessionManager::lazy_from_cookie_headers` on arbitrary `Cookie` header values (the
//! input split on newlines into several headers): never panics, and a request is said to
//! carry a key only when one of the values after `sessionid=` is a well-formed key.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use session_core::{MemoryStore, SessionConfig, SessionKey, SessionManager};

static MANAGER: LazyLock<SessionManager> = LazyLock::new(|| {
    SessionManager::new(
        Arc::new(MemoryStore::new()),
        SessionConfig::builder().build().expect("default config"),
    )
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let headers: Vec<&str> = text.split('\n').collect();
    let lazy = MANAGER.lazy_from_cookie_headers(headers.iter().copied());
    if lazy.has_client_key() {
        // Some candidate value must parse as a key.
        let name = MANAGER.config().cookie_name();
        // (`trim` as the manager does: Unicode whitespace, wider than RFC 6265's SP/HTAB;
        // header values from `http` cannot carry the difference.)
        let found = headers.iter().any(|h| {
            h.split(';').any(|pair| {
                pair.split_once('=').is_some_and(|(n, v)| {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    n.trim() == name && SessionKey::parse(v).is_ok()
                })
            })
        });
        assert!(found, "a client key was taken from {headers:?}");
    }
});
