//! `SessionKey::parse` on arbitrary strings: never panics, accepts exactly 1 to
//! `MAX_KEY_LEN` cookie-octets, keeps the value as given, and derives a storage id and
//! a short form from any accepted key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{MAX_KEY_LEN, SessionKey};

fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let expected = !s.is_empty() && s.len() <= MAX_KEY_LEN && s.bytes().all(is_cookie_octet);
    match SessionKey::parse(s) {
        Ok(key) => {
            assert!(expected, "accepted {s:?}");
            assert_eq!(key.as_str(), s);
            let id = key.storage_id();
            let mut hex = [0u8; 64];
            assert_eq!(id.encode_hex(&mut hex).len(), 64);
            let _ = id.short().to_string();
            if key.is_generated_shape() {
                assert!(key.require_generated_shape().is_ok());
                assert_eq!(s.len(), 32);
            }
        }
        Err(_) => assert!(!expected, "refused {s:?}"),
    }
});
