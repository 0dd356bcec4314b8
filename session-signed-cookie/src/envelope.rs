//! The cookie format: sealing a record into a token and opening a token again.
//!
//! ```text
//! signed:    format(1) ‖ mode(1) ‖ key id(4) ‖ body ‖ HMAC-SHA256 tag(32)
//! encrypted: format(1) ‖ mode(1) ‖ key id(4) ‖ nonce(12) ‖ AES-256-GCM(body) ‖ tag(16)
//! body:      version(u64 BE) ‖ expires_at(i64 BE, Unix ms) ‖ payload
//! AD:        format ‖ mode ‖ key id ‖ len(cookie name)(u16 BE) ‖ cookie name
//! ```
//!
//! The HMAC covers `AD ‖ body`; AES-GCM takes `AD` as its associated data. The whole
//! token is base64url without padding.

use std::ops::Range;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use session_core::{Error, Record, Result, SessionKey, from_unix_millis, unix_millis};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::Mode;
use crate::keys::{KEY_ID_LEN, Key, Material};

/// The format byte every token starts with.
pub(crate) const FORMAT: u8 = 1;
/// Mode byte of a signed token.
pub(crate) const MODE_SIGNED: u8 = 0x01;
/// Mode byte of an encrypted token.
pub(crate) const MODE_ENCRYPTED: u8 = 0x02;
/// Flag in the mode byte: the payload is raw deflate (signed mode only).
pub(crate) const FLAG_DEFLATE: u8 = 0x10;

pub(crate) const HEADER_LEN: usize = 2 + KEY_ID_LEN;
/// Characters of a token that encode exactly its header (format, mode, key id): the
/// header is a whole number of base64 groups, so it decodes on its own.
const HEADER_B64_LEN: usize = base64_len(HEADER_LEN);
const _: () = assert!(
    HEADER_LEN.is_multiple_of(3),
    "the header must be whole base64 groups"
);
pub(crate) const NONCE_LEN: usize = 12;
const BODY_HEADER_LEN: usize = 16;
const MAC_LEN: usize = 32;
const GCM_TAG_LEN: usize = 16;

/// Where the session is refused: browsers keep at most this many bytes of a cookie's
/// name, value and attributes (RFC 6265, section 6.1).
pub const COOKIE_SIZE_LIMIT: usize = 4096;

/// Payloads this short are not worth a compression attempt.
#[cfg(feature = "compression")]
const COMPRESS_MIN_LEN: usize = 128;

/// The payload a new token carries.
pub(crate) enum Payload<'a> {
    /// Encode this record's data and expiry.
    Record(&'a Record),
    /// Carry the payload bytes of an opened token over as they are (`touch`).
    Stored { bytes: &'a [u8], deflated: bool },
}

/// Where the nonce of an encrypted token comes from.
#[derive(Clone, Copy)]
pub(crate) enum NonceSource {
    /// The OS CSPRNG: the only source outside tests.
    Random,
    /// A fixed nonce, so known-answer tests can pin the encrypted format.
    #[cfg(test)]
    Fixed([u8; NONCE_LEN]),
}

/// A token whose tag verified and whose expiry has not passed.
pub(crate) struct Opened {
    raw: Vec<u8>,
    payload: Range<usize>,
    deflated: bool,
    pub(crate) version: u64,
    pub(crate) expires_at: OffsetDateTime,
}

impl Opened {
    /// The payload as it travels in the token (possibly deflated).
    pub(crate) fn stored_payload(&self) -> (&[u8], bool) {
        (&self.raw[self.payload.clone()], self.deflated)
    }

    /// Decodes the record.
    pub(crate) fn into_record(self) -> Result<Record> {
        let stored = &self.raw[self.payload.clone()];
        if self.deflated {
            let inflated = crate::compression::inflate(stored)
                .ok_or_else(|| Error::codec("a deflated session payload does not inflate"))?;
            Record::decode_payload(&inflated, self.expires_at, self.version)
        } else {
            Record::decode_payload(stored, self.expires_at, self.version)
        }
    }
}

/// Seals and opens the tokens of one store (one mode, one cookie name, its keys).
pub(crate) struct Codec {
    mode: Mode,
    /// `keys[0]` seals; all of them open.
    keys: Vec<Key>,
    /// `len(cookie name) (u16 BE) ‖ cookie name`: the tail of the associated data.
    name_block: Box<[u8]>,
    /// The whole associated data of an unflagged token under `keys[i]`, computed once:
    /// the encrypted mode passes it to AES-GCM as it is.
    associated_data: Vec<Box<[u8]>>,
    cookie_name: Box<str>,
    attribute_allowance: usize,
    /// Longest token this codec can have issued; anything longer is refused unread.
    max_token_len: usize,
    /// Shortest token this codec can have issued.
    min_token_len: usize,
    compression: bool,
}

impl Codec {
    /// `keys` is non-empty; the builder checked that the name and allowance leave room.
    pub(crate) fn new(
        mode: Mode,
        keys: Vec<Key>,
        cookie_name: &str,
        attribute_allowance: usize,
        compression: bool,
    ) -> Self {
        let mut name_block = Vec::with_capacity(2 + cookie_name.len());
        // The builder limits names to 256 bytes.
        let name_len = u16::try_from(cookie_name.len()).unwrap_or(u16::MAX);
        name_block.extend_from_slice(&name_len.to_be_bytes());
        name_block.extend_from_slice(cookie_name.as_bytes());
        let associated_data = keys
            .iter()
            .map(|k| {
                let mut ad = Vec::with_capacity(HEADER_LEN + name_block.len());
                ad.extend_from_slice(&[FORMAT, mode.byte()]);
                ad.extend_from_slice(&k.id);
                ad.extend_from_slice(&name_block);
                ad.into_boxed_slice()
            })
            .collect();
        Self {
            associated_data,
            mode,
            keys,
            name_block: name_block.into_boxed_slice(),
            cookie_name: cookie_name.into(),
            attribute_allowance,
            max_token_len: max_value_len(cookie_name.len(), attribute_allowance),
            min_token_len: base64_len(overhead(mode)),
            compression: compression && mode == Mode::Signed,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(crate) fn attribute_allowance(&self) -> usize {
        self.attribute_allowance
    }

    pub(crate) fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    pub(crate) fn compression(&self) -> bool {
        self.compression
    }

    /// Seals a token under the current key.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when `name=value` plus the attribute allowance exceeds
    /// [`COOKIE_SIZE_LIMIT`]; [`Error::Backend`] when the OS CSPRNG fails;
    /// [`Error::Codec`] when the payload does not encode.
    pub(crate) fn seal(
        &self,
        version: u64,
        expires_at: OffsetDateTime,
        payload: Payload<'_>,
        nonce: NonceSource,
    ) -> Result<SessionKey> {
        let (Some(key), Some(key_ad)) = (self.keys.first(), self.associated_data.first()) else {
            return Err(Error::codec("the cookie store has no key"));
        };
        let prefix = prefix_len(self.mode);
        // Room for the largest cookie that fits: one allocation for every session that can
        // be issued at all.
        let capacity = match &payload {
            Payload::Record(_) => self.max_token_len / 4 * 3 + 3,
            Payload::Stored { bytes, .. } => overhead(self.mode) + bytes.len(),
        };
        let mut raw = Vec::with_capacity(capacity);
        raw.push(FORMAT);
        raw.push(self.mode.byte());
        raw.extend_from_slice(&key.id);
        if self.mode == Mode::Encrypted {
            let mut n = [0u8; NONCE_LEN];
            match nonce {
                NonceSource::Random => {
                    getrandom::fill(&mut n).map_err(|e| Error::backend("signed-cookie", e))?;
                }
                #[cfg(test)]
                NonceSource::Fixed(fixed) => n = fixed,
            }
            raw.extend_from_slice(&n);
        }
        raw.extend_from_slice(&version.to_be_bytes());
        raw.extend_from_slice(&unix_millis(expires_at).to_be_bytes());
        let payload_start = raw.len();
        match payload {
            Payload::Record(record) => {
                record.write_payload(&mut raw)?;
                if self.compression {
                    self.maybe_deflate(&mut raw, payload_start);
                }
            }
            Payload::Stored { bytes, deflated } => {
                raw.extend_from_slice(bytes);
                if deflated && self.mode == Mode::Signed {
                    raw[1] |= FLAG_DEFLATE;
                }
            }
        }

        let tag_len = tag_len(self.mode);
        let size =
            self.cookie_name.len() + 1 + base64_len(raw.len() + tag_len) + self.attribute_allowance;
        if size > COOKIE_SIZE_LIMIT {
            return Err(Error::TooLarge {
                size,
                limit: COOKIE_SIZE_LIMIT,
            });
        }

        match &key.material {
            Material::Mac(k) => {
                let mut mac = new_mac(k).ok_or_else(|| Error::codec("HMAC key refused"))?;
                mac.update(&raw[..HEADER_LEN]);
                mac.update(&self.name_block);
                mac.update(&raw[prefix..]);
                raw.extend_from_slice(&mac.finalize().into_bytes());
            }
            Material::Aead(cipher) => {
                let (head, body) = raw.split_at_mut(prefix);
                let nonce = Nonce::from_slice(&head[HEADER_LEN..]);
                let tag = seal_gcm(cipher, nonce, key_ad, body)?;
                raw.extend_from_slice(&tag);
            }
        }
        SessionKey::parse_owned(URL_SAFE_NO_PAD.encode(&raw))
    }

    /// Whether `token` could be a token of this codec, judged by its shape alone: a
    /// length it can have issued, canonical unpadded base64url, and a header (format, mode,
    /// key id) it writes. No MAC or cipher work and no allocation: the 8 characters of
    /// the header are all that is decoded. A `true` proves nothing (the tag is not
    /// checked); a `false` means [`open`](Self::open) refuses the token whatever `now` is.
    pub(crate) fn recognizes(&self, token: &str) -> bool {
        let chars = token.as_bytes();
        if chars.len() > self.max_token_len
            || chars.len() < self.min_token_len
            || !is_canonical_base64url(chars)
        {
            return false;
        }
        let mut header = [0u8; HEADER_LEN];
        match URL_SAFE_NO_PAD.decode_slice(&chars[..HEADER_B64_LEN], &mut header) {
            Ok(HEADER_LEN) => {}
            _ => return false,
        }
        header[0] == FORMAT
            && self.payload_deflated(header[1]).is_some()
            && self.key_index(&header[2..]).is_some()
    }

    /// Whether a token whose mode byte is `byte` carries a deflated payload; `None` for a
    /// mode byte this codec never writes.
    fn payload_deflated(&self, byte: u8) -> Option<bool> {
        match (self.mode, byte) {
            (Mode::Signed, MODE_SIGNED) | (Mode::Encrypted, MODE_ENCRYPTED) => Some(false),
            (Mode::Signed, b)
                if b == MODE_SIGNED | FLAG_DEFLATE && cfg!(feature = "compression") =>
            {
                Some(true)
            }
            _ => None,
        }
    }

    /// The position of the key whose id is `id`, if this codec has it. Key ids are
    /// public (they travel in the cookie): an ordinary comparison is fine.
    fn key_index(&self, id: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| id == k.id)
    }

    /// Opens a token: `None` for anything this store did not issue, anything tampered
    /// with, and anything expired at `now`. Which check failed is not told.
    pub(crate) fn open(&self, token: &str, now: OffsetDateTime) -> Option<Opened> {
        // Before any decoding: only lengths we can have issued.
        if token.len() > self.max_token_len || token.len() < self.min_token_len {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < overhead(self.mode) || raw[0] != FORMAT {
            return None;
        }
        let deflated = self.payload_deflated(raw[1])?;
        let index = self.key_index(&raw[2..HEADER_LEN])?;
        let key = &self.keys[index];
        let prefix = prefix_len(self.mode);
        let tag_at = raw.len() - tag_len(self.mode);
        match &key.material {
            Material::Mac(k) => {
                let mut mac = new_mac(k)?;
                mac.update(&raw[..HEADER_LEN]);
                mac.update(&self.name_block);
                mac.update(&raw[prefix..tag_at]);
                mac.verify_slice(&raw[tag_at..]).ok()?;
            }
            Material::Aead(cipher) => {
                let (head, rest) = raw.split_at_mut(prefix);
                let (body, tag) = rest.split_at_mut(tag_at - prefix);
                // The header was checked to be exactly this key's: format, mode, key id.
                let aad = &self.associated_data[index];
                let nonce = Nonce::from_slice(&head[HEADER_LEN..]);
                cipher
                    .decrypt_in_place_detached(nonce, aad, body, (&*tag).into())
                    .ok()?;
            }
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&raw[prefix..prefix + 8]);
        let mut millis = [0u8; 8];
        millis.copy_from_slice(&raw[prefix + 8..prefix + BODY_HEADER_LEN]);
        let expires_at = from_unix_millis(i64::from_be_bytes(millis))?;
        if expires_at <= now {
            return None;
        }
        Some(Opened {
            payload: prefix + BODY_HEADER_LEN..tag_at,
            raw,
            deflated,
            version: u64::from_be_bytes(version),
            expires_at,
        })
    }

    /// Replaces the payload at `raw[start..]` with its deflated form when that is
    /// smaller, and flags it in the mode byte.
    #[cfg(feature = "compression")]
    fn maybe_deflate(&self, raw: &mut Vec<u8>, start: usize) {
        let plain = &raw[start..];
        if plain.len() < COMPRESS_MIN_LEN || plain.len() > crate::compression::MAX_INFLATED_LEN {
            return;
        }
        let deflated = crate::compression::deflate(plain);
        if deflated.len() < plain.len() {
            raw.truncate(start);
            raw.extend_from_slice(&deflated);
            raw[1] |= FLAG_DEFLATE;
        }
    }

    #[cfg(not(feature = "compression"))]
    fn maybe_deflate(&self, _raw: &mut Vec<u8>, _start: usize) {}
}

/// HMAC takes keys of any length: this is never `None`.
fn new_mac(key: &[u8; 32]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).ok()
}

fn seal_gcm(
    cipher: &Aes256Gcm,
    nonce: &Nonce<aes_gcm::aead::consts::U12>,
    aad: &[u8],
    body: &mut [u8],
) -> Result<[u8; GCM_TAG_LEN]> {
    let tag = cipher
        .encrypt_in_place_detached(nonce, aad, body)
        .map_err(|_| Error::codec("AES-GCM refused the session payload"))?;
    Ok(tag.into())
}

/// Bytes a token of `mode` carries besides its payload.
pub(crate) const fn overhead(mode: Mode) -> usize {
    prefix_len(mode) + BODY_HEADER_LEN + tag_len(mode)
}

/// Bytes before the body: header, and the nonce in encrypted mode.
const fn prefix_len(mode: Mode) -> usize {
    match mode {
        Mode::Signed => HEADER_LEN,
        Mode::Encrypted => HEADER_LEN + NONCE_LEN,
    }
}

const fn tag_len(mode: Mode) -> usize {
    match mode {
        Mode::Signed => MAC_LEN,
        Mode::Encrypted => GCM_TAG_LEN,
    }
}

/// The value of one base64url character, `None` outside the alphabet.
const fn base64url_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Whether `chars` is what `URL_SAFE_NO_PAD` encodes: only the base64url alphabet, no
/// padding, a length that is not one more than a multiple of 4, and no bits set in the
/// last character beyond the encoded bytes (the decoder refuses those too).
fn is_canonical_base64url(chars: &[u8]) -> bool {
    let mut last = 0;
    for &c in chars {
        match base64url_value(c) {
            Some(v) => last = v,
            None => return false,
        }
    }
    match chars.len() % 4 {
        0 => true,
        2 => last & 0x0f == 0,
        3 => last & 0x03 == 0,
        _ => false,
    }
}

/// Length of the unpadded base64 form of `n` bytes.
pub(crate) const fn base64_len(n: usize) -> usize {
    n / 3 * 4 + [0, 2, 3][n % 3]
}

/// The longest cookie value that fits beside a name of `name_len` bytes, `=` and the
/// attribute allowance.
pub(crate) const fn max_value_len(name_len: usize, allowance: usize) -> usize {
    COOKIE_SIZE_LIMIT.saturating_sub(name_len + 1 + allowance)
}

#[cfg(test)]
mod tests {
    use session_core::{Data, Expiry};

    use super::*;
    use crate::CookieStore;

    const SECRET: &[u8; 32] = b"known-answer-test-secret-32bytes";
    const NONCE: [u8; NONCE_LEN] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    /// Pinned: an encrypted token of [`record`] under [`SECRET`], cookie `sessionid`,
    /// nonce [`NONCE`]. If this changes, every encrypted cookie in the wild breaks.
    const ENCRYPTED_TOKEN: &str = "AQLsfrZ-AAECAwQFBgcICQoLTVi85b6ClqR3YHHx8J96mXX_pMdHovnhMh33gEzJESEzf1ZONB4w5_yewWuz0p83IY4-Reo-cz7nrf8gtqf7GsRjDx-U6ZCJgwiVAQ";

    fn record() -> Record {
        let mut data = Data::new();
        data.insert("user".into(), "ada".into());
        data.insert("n".into(), 1.into());
        let mut r = Record::new(data, from_unix_millis(4_102_444_800_000).expect("in range"));
        r.expiry = Some(Expiry::OnInactivity(time::Duration::minutes(30)));
        r
    }

    fn store(mode: Mode) -> CookieStore {
        CookieStore::builder(mode, SECRET)
            .build()
            .expect("valid configuration")
    }

    #[test]
    fn encrypted_known_answer() {
        let store = store(Mode::Encrypted);
        let r = record();
        let token = store
            .codec()
            .seal(
                1,
                r.expires_at,
                Payload::Record(&r),
                NonceSource::Fixed(NONCE),
            )
            .expect("seals");
        assert_eq!(token.as_str(), ENCRYPTED_TOKEN);
        let opened = store
            .codec()
            .open(token.as_str(), OffsetDateTime::now_utc())
            .expect("opens");
        let mut want = r;
        want.version = 1;
        assert_eq!(opened.into_record().expect("decodes"), want);
    }

    #[test]
    fn layout_is_header_nonce_body_tag() {
        for mode in [Mode::Signed, Mode::Encrypted] {
            let store = store(mode);
            let r = record();
            let payload = r.encode_payload().expect("encodes");
            let token = store
                .codec()
                .seal(
                    7,
                    r.expires_at,
                    Payload::Record(&r),
                    NonceSource::Fixed(NONCE),
                )
                .expect("seals");
            let raw = URL_SAFE_NO_PAD.decode(token.as_str()).expect("base64url");
            assert_eq!(raw.len(), overhead(mode) + payload.len());
            assert_eq!(raw[..2], [FORMAT, mode.byte()]);
            assert_eq!(raw[2..HEADER_LEN], store.codec().keys()[0].id);
            assert_eq!(token.as_str().len(), base64_len(raw.len()));
            if mode == Mode::Signed {
                assert_eq!(raw[HEADER_LEN..HEADER_LEN + 8], 7u64.to_be_bytes());
                assert_eq!(raw[HEADER_LEN + 16..raw.len() - MAC_LEN], payload[..]);
            } else {
                assert_eq!(raw[HEADER_LEN..HEADER_LEN + NONCE_LEN], NONCE);
                assert!(
                    !raw.windows(3).any(|w| w == b"ada"),
                    "plaintext in the cookie"
                );
            }
        }
    }

    #[test]
    fn the_canonical_base64url_check_agrees_with_the_decoder() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // Every last character after every short prefix length: the check accepts
        // exactly what the decoder accepts.
        for prefix in ["", "A", "AA", "AAA", "AAAA", "AAAAA", "AAAAAA"] {
            for c in ALPHABET.iter().chain(b"=+/.~!") {
                let s = format!("{prefix}{}", char::from(*c));
                assert_eq!(
                    is_canonical_base64url(s.as_bytes()),
                    URL_SAFE_NO_PAD.decode(&s).is_ok(),
                    "{s}"
                );
            }
        }
        assert!(is_canonical_base64url(b""));
    }

    #[test]
    fn recognizes_what_it_opens_and_not_what_no_key_can_open() {
        for mode in [Mode::Signed, Mode::Encrypted] {
            let store = store(mode);
            let r = record();
            let token = store
                .codec()
                .seal(1, r.expires_at, Payload::Record(&r), NonceSource::Random)
                .expect("seals");
            assert!(store.codec().recognizes(token.as_str()));
            // A broken tag is still recognized: no MAC or cipher work is done.
            let mut raw = URL_SAFE_NO_PAD.decode(token.as_str()).expect("base64url");
            let last = raw.len() - 1;
            raw[last] ^= 1;
            let broken = URL_SAFE_NO_PAD.encode(&raw);
            assert!(store.codec().recognizes(&broken));
            assert!(
                store
                    .codec()
                    .open(&broken, OffsetDateTime::now_utc())
                    .is_none()
            );
            // A header this codec never writes is not.
            for (at, value) in [(0, FORMAT + 1), (1, 0x7f), (2, raw[2] ^ 0x80)] {
                let mut bad = raw.clone();
                bad[at] = value;
                assert!(!store.codec().recognizes(&URL_SAFE_NO_PAD.encode(&bad)));
            }
        }
    }

    #[test]
    fn base64_lengths() {
        for n in 0..100 {
            assert_eq!(base64_len(n), URL_SAFE_NO_PAD.encode(vec![0u8; n]).len());
        }
    }
}
