//! Session keys: the bearer secret a browser holds in its cookie.

use std::fmt;
use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// Length of a generated key, in characters.
pub const GENERATED_KEY_LEN: usize = 32;

/// Longest value [`SessionKey::parse`] accepts, in bytes (a browser keeps at most 4096
/// bytes per cookie, name and attributes included).
pub const MAX_KEY_LEN: usize = 4096;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The value a client holds in its session cookie.
///
/// For server-side stores it is 32 characters of `[a-z0-9]` drawn from the operating
/// system's CSPRNG (about 165 bits); a client-side store may use any cookie-safe token of
/// at most [`MAX_KEY_LEN`] bytes. The key is a bearer secret:
///
/// - `Debug` and `Display` print a short prefix only;
/// - equality is constant-time;
/// - stores persist [`storage_id`](Self::storage_id) (its SHA-256) instead of the key.
///
/// # Examples
///
/// ```
/// use session_core::SessionKey;
///
/// let key = SessionKey::generate();
/// assert!(key.is_generated_shape());
/// assert_eq!(key.as_str().len(), 32);
/// // Never the whole key in logs:
/// assert!(!format!("{key:?}").contains(key.as_str()));
///
/// assert!(SessionKey::parse("abc;def").is_err());
/// ```
#[derive(Clone)]
pub struct SessionKey(Box<str>);

impl SessionKey {
    /// Draws a new key of 32 `[a-z0-9]` characters from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes: issuing a predictable
    /// session key would be worse than failing the request.
    #[must_use]
    pub fn generate() -> Self {
        #[cfg(feature = "conformance")]
        if let Some(key) = crate::conformance::forced_key() {
            return key;
        }
        let mut out = [0u8; GENERATED_KEY_LEN];
        let mut filled = 0;
        // Rejection sampling keeps the distribution uniform: 252 = 7 * 36.
        let mut pool = [0u8; 48];
        while filled < GENERATED_KEY_LEN {
            #[allow(clippy::expect_used)] // documented panic: no secure randomness, no key
            getrandom::fill(&mut pool).expect("the OS CSPRNG is unavailable");
            for &b in &pool {
                if b < 252 && filled < GENERATED_KEY_LEN {
                    out[filled] = ALPHABET[usize::from(b % 36)];
                    filled += 1;
                }
            }
        }
        let s: String = out.iter().map(|&b| char::from(b)).collect();
        Self(s.into_boxed_str())
    }

    /// Accepts a key sent by a client: 1 to 4096 bytes of cookie-value characters
    /// (RFC 6265 `cookie-octet`: printable ASCII except space, `"`, `,`, `;` and `\`).
    ///
    /// This says nothing about whether any store knows the key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for empty, over-long or non-cookie-safe input.
    pub fn parse(value: &str) -> Result<Self> {
        check_cookie_value(value)?;
        Ok(Self(value.into()))
    }

    /// Like [`parse`](Self::parse), keeping `value`'s allocation (for a store that has just
    /// built a token, such as a cookie store).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for empty, over-long or non-cookie-safe input.
    pub fn parse_owned(value: String) -> Result<Self> {
        check_cookie_value(&value)?;
        Ok(Self(value.into_boxed_str()))
    }

    /// Whether the key has the shape [`generate`](Self::generate) produces: exactly 32
    /// characters of `[a-z0-9]`.
    ///
    /// Server-side stores refuse every other key before any I/O; this is what keeps a key
    /// from naming a path outside a session directory or costing a database round trip.
    #[must_use]
    pub fn is_generated_shape(&self) -> bool {
        self.0.len() == GENERATED_KEY_LEN
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    /// The 32 bytes of a key of the generated shape, `None` for any other key.
    ///
    /// For stores that keep sessions only in this process's memory: they may index by the
    /// key itself (nothing is persisted, and hashing it would cost more than the lookup).
    /// Stores that persist anything use [`storage_id`](Self::storage_id).
    #[must_use]
    pub fn generated_bytes(&self) -> Option<[u8; GENERATED_KEY_LEN]> {
        if self.is_generated_shape() {
            self.0.as_bytes().try_into().ok()
        } else {
            None
        }
    }

    /// Returns `Ok(())` for a key of the generated shape.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] otherwise.
    pub fn require_generated_shape(&self) -> Result<()> {
        if self.is_generated_shape() {
            Ok(())
        } else {
            Err(Error::InvalidKey)
        }
    }

    /// The whole key, for the cookie value. Treat it as a secret.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the key: what server-side stores persist and look up instead of the
    /// key, so a leaked table, directory or cache dump holds nothing a browser could present.
    #[must_use]
    pub fn storage_id(&self) -> StorageId {
        StorageId(Sha256::digest(self.0.as_bytes()).into())
    }
}

/// RFC 6265 `cookie-octet`, as a table: a cookie store validates kilobyte tokens on every
/// request.
const COOKIE_OCTET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        b += 1;
    }
    table
};

fn check_cookie_value(value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > MAX_KEY_LEN
        || !value.bytes().all(|b| COOKIE_OCTET[usize::from(b)])
    {
        return Err(Error::InvalidKey);
    }
    Ok(())
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        // Length is not secret (generated keys all have the same length).
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for SessionKey {}

impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({self})")
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.get(..4).unwrap_or("");
        write!(f, "{prefix}…")
    }
}

/// The SHA-256 of a [`SessionKey`]: the identifier server-side stores persist.
///
/// It is not a secret (it cannot be turned back into a key), so `Display` prints the whole
/// 64-character lower-case hex form; use [`short`](Self::short) to correlate sessions in
/// logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageId([u8; 32]);

impl StorageId {
    /// Length of the hex form, in characters.
    pub const HEX_LEN: usize = 64;

    /// The 32 raw digest bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lower-case hex form, as stored in a table, file name or cache key.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Writes the hex form into `buf` without allocating and returns it as a `&str`.
    pub fn encode_hex<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        // Encoding 32 bytes into exactly 64 always succeeds, and hex is ASCII.
        if hex::encode_to_slice(self.0, buf).is_err() {
            return "";
        }
        std::str::from_utf8(buf).unwrap_or("")
    }

    /// Parses the hex form back (for stores that list their medium, e.g. a directory).
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        if s.len() != Self::HEX_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// The first eight hex characters, to correlate a session across log lines.
    #[must_use]
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageId({})", self.short())
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        f.write_str(self.encode_hex(&mut buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_shape_and_differ() {
        let a = SessionKey::generate();
        let b = SessionKey::generate();
        assert!(a.is_generated_shape());
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn generated_keys_use_the_whole_alphabet() {
        let mut seen = [false; 256];
        for _ in 0..200 {
            for b in SessionKey::generate().as_str().bytes() {
                seen[usize::from(b)] = true;
            }
        }
        for &c in ALPHABET {
            assert!(seen[usize::from(c)], "never drew {:?}", char::from(c));
        }
    }

    #[test]
    fn parse_refuses_unsafe_input() {
        for bad in ["", "a b", "a;b", "a,b", "a\"b", "a\\b", "a\0b", "é", "a\nb"] {
            assert!(SessionKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(SessionKey::parse(&"a".repeat(MAX_KEY_LEN)).is_ok());
        assert!(SessionKey::parse(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(SessionKey::parse_owned("a;b".to_owned()).is_err());
        let owned = SessionKey::parse_owned("tok-EN_1".to_owned()).expect("valid");
        assert_eq!(owned.as_str(), "tok-EN_1");
    }

    #[test]
    fn the_octet_table_is_rfc_6265() {
        for b in 0u8..=255 {
            let rfc = b == 0x21
                || (0x23..=0x2B).contains(&b)
                || (0x2D..=0x3A).contains(&b)
                || (0x3C..=0x5B).contains(&b)
                || (0x5D..=0x7E).contains(&b);
            assert_eq!(COOKIE_OCTET[usize::from(b)], rfc, "byte {b:#x}");
        }
    }

    #[test]
    fn generated_bytes_only_for_the_generated_shape() {
        let k = SessionKey::generate();
        assert_eq!(
            k.generated_bytes().map(|b| b.to_vec()),
            Some(k.as_str().as_bytes().to_vec())
        );
        assert_eq!(
            SessionKey::parse("abc").expect("valid").generated_bytes(),
            None
        );
    }

    #[test]
    fn shape_check_refuses_traversal_and_case() {
        for odd in [
            "../../etc/passwd",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            "abc",
            "a.b",
        ] {
            let k = SessionKey::parse(odd).expect("cookie-safe");
            assert!(!k.is_generated_shape(), "{odd}");
            assert!(matches!(
                k.require_generated_shape(),
                Err(Error::InvalidKey)
            ));
        }
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let k = SessionKey::generate();
        let shown = format!("{k} {k:?}");
        assert!(!shown.contains(k.as_str()));
        assert!(shown.contains(&k.as_str()[..4]));
    }

    #[test]
    fn storage_id_is_sha256_hex() {
        let k = SessionKey::parse("abc").expect("valid");
        assert_eq!(
            k.storage_id().to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let id = k.storage_id();
        assert_eq!(StorageId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(StorageId::from_hex("zz"), None);
        assert_eq!(id.short(), "ba7816bf");
        assert_eq!(id.to_string(), id.to_hex());
    }
}
