//! Cookie decoding in both modes (`CookieStore::load`, signed and encrypted) on arbitrary
//! token strings, and on real tokens with fuzzer-chosen damage: never panics, and a
//! token that was changed never loads as a session.
//!
//! Input: byte 0 picks the mode and the case; the rest is either the token itself, or
//! (damage case) a list of (position, xor) pairs applied to a freshly issued token.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use session_core::{Record, SessionKey, Store};
use session_signed_cookie::CookieStore;
use time::{Duration, OffsetDateTime};

const SECRET: &[u8] = b"fuzzing secret: 0123456789abcdef0123456789abcdef";

struct Fixture {
    rt: tokio::runtime::Runtime,
    stores: [CookieStore; 2],
    tokens: [SessionKey; 2],
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let stores = [
        CookieStore::signed(SECRET).build().expect("signed store"),
        CookieStore::encrypted(SECRET)
            .build()
            .expect("encrypted store"),
    ];
    let mut data = session_core::Data::new();
    data.insert("user".into(), "alice".into());
    data.insert("n".into(), 42.into());
    let record = Record::new(data, OffsetDateTime::now_utc() + Duration::days(3650));
    let tokens = rt.block_on(async {
        [
            stores[0]
                .create(&record)
                .await
                .expect("issue a signed token"),
            stores[1]
                .create(&record)
                .await
                .expect("issue an encrypted token"),
        ]
    });
    Fixture { rt, stores, tokens }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fx = &*FIXTURE;
    let mode = usize::from(selector & 1);
    let store = &fx.stores[mode];
    if selector & 2 == 0 {
        // An arbitrary token.
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(key) = SessionKey::parse(text) else {
            return;
        };
        let loaded = fx.rt.block_on(store.load(&key));
        assert!(loaded.is_ok(), "load of a token never fails: {loaded:?}");
        if key != fx.tokens[mode] && loaded.as_ref().is_ok_and(Option::is_some) {
            // Only a token this store issued can load; the fuzzer cannot forge one.
            panic!("a token that was never issued loaded: {text:?}");
        }
    } else {
        // A real token with damage at fuzzer-chosen places.
        let mut bytes = fx.tokens[mode].as_str().as_bytes().to_vec();
        for pair in rest.chunks_exact(3) {
            let pos = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % bytes.len();
            bytes[pos] ^= pair[2];
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return;
        };
        let Ok(key) = SessionKey::parse(&text) else {
            return;
        };
        let loaded = fx.rt.block_on(store.load(&key)).expect("load never fails");
        if key != fx.tokens[mode] {
            assert!(loaded.is_none(), "a damaged token loaded: {text:?}");
        }
    }
});
