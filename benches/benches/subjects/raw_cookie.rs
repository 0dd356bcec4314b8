//! The raw cookie codecs: JSON, then HMAC-SHA256 or AES-256-GCM, then base64.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use session_core::Data;
use sha2::Sha256;

use crate::common::{Size, in_a_day, random_id};
use crate::driver::Subject;

/// serde_json + HMAC-SHA256 (signed) or AES-256-GCM (encrypted) + base64 of the record.
pub(crate) struct RawCookie {
    encrypted: bool,
    mac_key: [u8; 32],
    aead: aes_gcm::Aes256Gcm,
    data: Data,
    expires_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CookieBody<'a> {
    d: std::borrow::Cow<'a, Data>,
    e: i64,
    v: u64,
}

impl RawCookie {
    pub(crate) fn new(encrypted: bool, size: Size) -> Self {
        use aes_gcm::KeyInit as _;
        Self {
            encrypted,
            mac_key: random_id(),
            aead: aes_gcm::Aes256Gcm::new(&random_id().into()),
            data: size.data(),
            expires_ms: session_core::unix_millis(in_a_day()),
        }
    }
    fn encode(&self, version: u64) -> String {
        let body = CookieBody {
            d: std::borrow::Cow::Borrowed(&self.data),
            e: self.expires_ms,
            v: version,
        };
        let mut bytes = serde_json::to_vec(&body).expect("json");
        if self.encrypted {
            use aes_gcm::aead::AeadInPlace as _;
            let nonce: [u8; 12] = random_id()[..12].try_into().expect("12 bytes");
            let tag = self
                .aead
                .encrypt_in_place_detached(&nonce.into(), b"sessionid", &mut bytes)
                .expect("encrypt");
            let mut out = Vec::with_capacity(12 + bytes.len() + 16);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&bytes);
            out.extend_from_slice(&tag);
            URL_SAFE_NO_PAD.encode(out)
        } else {
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("key");
            mac.update(&bytes);
            bytes.extend_from_slice(&mac.finalize().into_bytes());
            URL_SAFE_NO_PAD.encode(bytes)
        }
    }
    fn decode(&self, token: &str) -> u64 {
        let mut bytes = URL_SAFE_NO_PAD.decode(token).expect("base64");
        let json: &[u8] = if self.encrypted {
            use aes_gcm::aead::AeadInPlace as _;
            let (nonce, rest) = bytes.split_at_mut(12);
            let (body, tag) = rest.split_at_mut(rest.len() - 16);
            let nonce: [u8; 12] = (&*nonce).try_into().expect("nonce");
            let tag: [u8; 16] = (&*tag).try_into().expect("tag");
            self.aead
                .decrypt_in_place_detached(&nonce.into(), b"sessionid", body, &tag.into())
                .expect("decrypt");
            body
        } else {
            let (body, tag) = bytes.split_at(bytes.len() - 32);
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.mac_key).expect("key");
            mac.update(body);
            mac.verify_slice(tag).expect("verify");
            body
        };
        let body: CookieBody<'_> = serde_json::from_slice(json).expect("json");
        // An owned map, as a store hands out.
        let data: Data = body.d.into_owned();
        assert!(!data.is_empty());
        body.v
    }
}

impl Subject for RawCookie {
    type H = (String, u64);
    async fn create(&self) -> Self::H {
        (self.encode(1), 1)
    }
    async fn load(&self, h: &Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
    }
    async fn save(&self, h: &mut Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
        h.1 += 1;
        h.0 = self.encode(h.1);
    }
    async fn touch(&self, h: &mut Self::H) {
        assert_eq!(self.decode(&h.0), h.1);
        h.0 = self.encode(h.1);
    }
    async fn delete(&self, _h: Self::H) {}
}
