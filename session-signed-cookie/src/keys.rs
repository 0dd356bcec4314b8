//! Per-purpose keys derived from master secrets, and their key ids.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{BuildError, Mode};

/// The shortest master secret a [`CookieStore`](crate::CookieStore) accepts, in bytes.
///
/// 32 random bytes carry 256 bits: as much as the derived HMAC-SHA256 and AES-256 keys
/// can use.
pub const MIN_SECRET_LEN: usize = 32;

/// Length of a key id in the cookie, in bytes.
pub(crate) const KEY_ID_LEN: usize = 4;

const DERIVED_KEY_LEN: usize = 32;

/// HKDF salt: separates this crate's keys from anything else derived from the same secret.
const HKDF_SALT: &[u8] = b"session-signed-cookie/v1";

/// Prefix of the key-id hash, so the id is never a prefix of any other hash of the key.
const KEY_ID_DOMAIN: &[u8] = b"session-signed-cookie/v1 key id\0";

/// A copy of a master secret, wiped from memory when dropped.
#[derive(Clone)]
pub(crate) struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One derived key of a store: the current one or one kept for rotation.
pub(crate) struct Key {
    /// A short fingerprint of the derived key; travels in the cookie so that
    /// verification goes straight to the right key.
    pub(crate) id: [u8; KEY_ID_LEN],
    pub(crate) material: Material,
}

/// The key itself, in the form its algorithm uses. Both forms wipe themselves on drop
/// (`Zeroizing`; the `zeroize` features of `aes`, `ghash` and `polyval`).
pub(crate) enum Material {
    Mac(Zeroizing<[u8; DERIVED_KEY_LEN]>),
    Aead(Box<Aes256Gcm>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &hex(&self.id))
            .finish_non_exhaustive()
    }
}

/// The key id in hex, as `Debug` shows it.
pub(crate) fn hex(id: &[u8; KEY_ID_LEN]) -> String {
    hex::encode(id)
}

/// Derives the keys of one store: `secrets[0]` is the current secret, the rest still
/// verify. Identical secrets collapse into one key.
///
/// # Errors
///
/// [`BuildError::KeyIdCollision`] when two different secrets give one key id.
pub(crate) fn derive_all(
    secrets: &[Secret],
    mode: Mode,
    cookie_name: &str,
) -> Result<Vec<Key>, BuildError> {
    let mut raw: Vec<(Zeroizing<[u8; DERIVED_KEY_LEN]>, [u8; KEY_ID_LEN])> = Vec::new();
    for secret in secrets {
        let (key, id) = derive(&secret.0, mode, cookie_name);
        match raw.iter().find(|(_, other)| *other == id) {
            Some((same, _)) if bool::from(same[..].ct_eq(&key[..])) => {}
            Some(_) => return Err(BuildError::KeyIdCollision),
            None => raw.push((key, id)),
        }
    }
    Ok(raw
        .into_iter()
        .map(|(key, id)| {
            let material = match mode {
                Mode::Signed => Material::Mac(key),
                Mode::Encrypted => Material::Aead(Box::new(Aes256Gcm::new((&*key).into()))),
            };
            Key { id, material }
        })
        .collect())
}

/// HKDF-SHA256 over the master secret with a fixed salt; the info names the algorithm
/// and the cookie name, so signing and encryption keys differ, and so do the keys of two
/// cookie names. The key id is the first bytes of a domain-separated SHA-256 of the
/// derived key.
fn derive(
    secret: &[u8],
    mode: Mode,
    cookie_name: &str,
) -> (Zeroizing<[u8; DERIVED_KEY_LEN]>, [u8; KEY_ID_LEN]) {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
    let mut key = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
    let expanded = hkdf.expand_multi_info(
        &[mode.key_label(), b"\0", cookie_name.as_bytes()],
        &mut key[..],
    );
    // HKDF-SHA256 refuses only outputs longer than 255 * 32 bytes.
    debug_assert!(expanded.is_ok());
    let digest = Sha256::new()
        .chain_update(KEY_ID_DOMAIN)
        .chain_update(&key[..])
        .finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    (key, id)
}

const _: () = assert!(
    DERIVED_KEY_LEN == 32,
    "AES-256 and the HMAC key take 32 bytes"
);
const _: () = assert!(KEY_ID_LEN <= 32);

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a unit-test secret of 32 bytes!!";

    #[test]
    fn keys_differ_per_mode_and_per_cookie_name() {
        let (signing, signing_id) = derive(SECRET, Mode::Signed, "sessionid");
        let (encryption, encryption_id) = derive(SECRET, Mode::Encrypted, "sessionid");
        let (other_name, other_id) = derive(SECRET, Mode::Signed, "other");
        assert_ne!(signing[..], encryption[..]);
        assert_ne!(signing[..], other_name[..]);
        assert_ne!(signing_id, encryption_id);
        assert_ne!(signing_id, other_id);
        // Never the raw secret.
        assert_ne!(&signing[..], SECRET);
        // Deterministic.
        assert_eq!(derive(SECRET, Mode::Signed, "sessionid").1, signing_id);
    }

    #[test]
    fn duplicate_secrets_collapse() {
        let secrets = [
            Secret::new(SECRET),
            Secret::new(SECRET),
            Secret::new(&[1; 32]),
        ];
        let keys = derive_all(&secrets, Mode::Signed, "sessionid").expect("no collision");
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn debug_shows_no_material() {
        let keys = derive_all(&[Secret::new(SECRET)], Mode::Signed, "sessionid").expect("ok");
        let shown = format!("{:?} {:?}", keys[0], Secret::new(SECRET));
        let Material::Mac(k) = &keys[0].material else {
            panic!("signed mode has an HMAC key");
        };
        let hex_key: String = k.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex_key[..8]), "{shown}");
        assert!(!shown.contains("unit-test"), "{shown}");
        assert!(shown.contains(&hex(&keys[0].id)));
    }
}
