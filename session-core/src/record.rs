//! The stored form of a session and the one payload codec every store uses.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Error, Expiry, Lookup, Result};

/// The session dictionary: string keys, JSON values (what Django's JSON serializer allows).
pub type Data = serde_json::Map<String, serde_json::Value>;

/// How deeply a session value may nest arrays and objects (a scalar has depth 0, `[1]`
/// depth 1). The stored payload wraps values in two more levels, which keeps every
/// accepted value well inside the JSON decoder's recursion limit (128): what a session
/// accepts, every store loads back. Deeper values are refused when they are set, with
/// [`Error::TooDeep`]; nesting depth is also a denial-of-service vector.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Checks that `value` nests at most [`MAX_VALUE_DEPTH`] levels, without recursion (a
/// hostile value cannot exhaust the stack here).
///
/// # Errors
///
/// [`Error::TooDeep`] for a deeper value.
pub fn check_value_depth(value: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= MAX_VALUE_DEPTH {
            return Err(Error::TooDeep {
                limit: MAX_VALUE_DEPTH,
            });
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// One stored session.
///
/// `data` is shared behind an [`Arc`]: an in-process store hands out a copy of its record
/// for the price of a reference count, and the [`Session`](crate::Session) copies the map
/// only when a request first writes to it (`Arc::make_mut`).
///
/// The payload (what [`encode_payload`](Self::encode_payload) writes) holds `data` and
/// `expiry`; `expires_at` and `version` live beside it wherever the medium can use them (a
/// column, a TTL), or in the [framed](Self::encode_framed) form where it cannot.
#[derive(Clone, PartialEq)]
pub struct Record {
    /// The dictionary.
    pub data: Arc<Data>,
    /// A per-session override of the configured expiry policy.
    pub expiry: Option<Expiry>,
    /// The absolute instant after which the record is gone. Stores keep it to at least
    /// millisecond precision.
    pub expires_at: OffsetDateTime,
    /// Optimistic-concurrency counter: 0 for a record never stored; a store sets 1 on
    /// `create` and `version + 1` on every successful `save`.
    pub version: u64,
}

impl Record {
    /// The version a successful `save` of this record stores: `version + 1`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when the version is `u64::MAX`, which no store ever writes: it
    /// can only come from corrupted or forged stored data, and such a session cannot be
    /// saved again.
    pub fn next_version(&self) -> Result<u64> {
        self.version
            .checked_add(1)
            .ok_or_else(|| Error::codec("session version overflow"))
    }

    /// A record never stored yet (version 0).
    #[must_use]
    pub fn new(data: Data, expires_at: OffsetDateTime) -> Self {
        Self {
            data: Arc::new(data),
            expiry: None,
            expires_at,
            version: 0,
        }
    }

    /// Whether the record has expired at `now` (an instant equal to `expires_at` counts as
    /// expired).
    #[must_use]
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at <= now
    }

    /// Whether the record has expired now.
    #[must_use]
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(OffsetDateTime::now_utc())
    }

    /// `expires_at` as milliseconds since the Unix epoch (what TTL-based media take).
    #[must_use]
    pub fn expires_at_millis(&self) -> i64 {
        unix_millis(self.expires_at)
    }

    /// Encodes `data` and `expiry` as the JSON payload.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if serialization fails (it cannot for a map of JSON values, but a
    /// store must not assume so).
    pub fn encode_payload(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        self.write_payload(&mut out)?;
        Ok(out)
    }

    /// Appends the JSON payload to `out` (lets a store write a header first without a copy).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if serialization fails.
    pub fn write_payload(&self, out: &mut Vec<u8>) -> Result<()> {
        let payload = PayloadRef {
            data: &self.data,
            expiry: self.expiry.as_ref(),
        };
        serde_json::to_writer(out, &payload).map_err(Error::codec)
    }

    /// Decodes a payload written by [`encode_payload`](Self::encode_payload).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for bytes that are not a payload; never a panic.
    pub fn decode_payload(bytes: &[u8], expires_at: OffsetDateTime, version: u64) -> Result<Self> {
        let payload: PayloadOwned = serde_json::from_slice(bytes).map_err(Error::codec)?;
        // A policy no session could have set (only corruption or forgery writes one) is
        // unreadable, so the record loads as absent, as an expired one does.
        if let Some(e) = &payload.expiry {
            e.check().map_err(Error::codec)?;
        }
        Ok(Self {
            data: Arc::new(payload.data),
            expiry: payload.expiry,
            expires_at,
            version,
        })
    }

    /// Encodes the whole record, header and payload, for media that keep only bytes (a
    /// file, a cache value): `"SR"`, format byte 1, version (u64, big endian), `expires_at`
    /// in Unix milliseconds (i64, big endian), then the JSON payload.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if serialization fails.
    pub fn encode_framed(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(FrameHeader::LEN + 256);
        FrameHeader {
            version: self.version,
            expires_at: self.expires_at,
        }
        .write(&mut out);
        self.write_payload(&mut out)?;
        Ok(out)
    }

    /// The framed form of an *ended marker*: a bare header with version 0 and
    /// `expires_at = remember_until`, no payload. A store that keeps bytes writes it in
    /// place of a record that [`Store::end`](crate::Store::end) ended, so that
    /// [`Lookup::decode_framed`] answers [`Lookup::Ended`] until `remember_until`.
    #[must_use]
    pub fn encode_ended_marker(remember_until: OffsetDateTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(FrameHeader::LEN);
        FrameHeader {
            version: 0,
            expires_at: remember_until,
        }
        .write(&mut out);
        out
    }

    /// Decodes bytes written by [`encode_framed`](Self::encode_framed).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for a missing or foreign header, a corrupt payload, or an
    /// [ended marker](Self::encode_ended_marker) (which holds no record).
    pub fn decode_framed(bytes: &[u8]) -> Result<Self> {
        let header = FrameHeader::read(bytes)?;
        if header.is_ended_marker() && bytes.len() == FrameHeader::LEN {
            return Err(Error::codec("an ended marker holds no record"));
        }
        Self::decode_payload(
            &bytes[FrameHeader::LEN..],
            header.expires_at,
            header.version,
        )
    }
}

impl fmt::Debug for Record {
    // Session data may hold secrets (tokens, personal data): show its shape only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("entries", &self.data.len())
            .field("expiry", &self.expiry)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish()
    }
}

/// The fixed-size header of the [framed](Record::encode_framed) form, readable without
/// decoding the payload (e.g. to find expired files cheaply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The record's version.
    pub version: u64,
    /// The record's expiry instant (millisecond precision).
    pub expires_at: OffsetDateTime,
}

impl FrameHeader {
    /// Length of the header in bytes.
    pub const LEN: usize = 19;
    const MAGIC: [u8; 3] = [b'S', b'R', 1];

    /// Reads the header at the start of `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `bytes` is shorter than a header or does not start with one.
    pub fn read(bytes: &[u8]) -> Result<Self> {
        let header = bytes
            .get(..Self::LEN)
            .ok_or_else(|| Error::codec("framed record shorter than its header"))?;
        if header[..3] != Self::MAGIC {
            return Err(Error::codec("not a framed session record"));
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&header[3..11]);
        let mut millis = [0u8; 8];
        millis.copy_from_slice(&header[11..19]);
        let expires_at = from_unix_millis(i64::from_be_bytes(millis))
            .ok_or_else(|| Error::codec("expiry out of range"))?;
        Ok(Self {
            version: u64::from_be_bytes(version),
            expires_at,
        })
    }

    /// Whether this header has the version of an [ended
    /// marker](Record::encode_ended_marker), 0: records a store writes have version 1 or
    /// more. (A marker is exactly such a header, with no payload after it.)
    #[must_use]
    pub fn is_ended_marker(&self) -> bool {
        self.version == 0
    }

    /// Appends the header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&unix_millis(self.expires_at).to_be_bytes());
    }
}

impl Lookup {
    /// What framed bytes (a [record](Record::encode_framed) or an
    /// [ended marker](Record::encode_ended_marker)) stand for at `now`: a live record, an
    /// ended session still remembered, or nothing (expired either way).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for bytes that are neither (the store logs and removes them).
    pub fn decode_framed(bytes: &[u8], now: OffsetDateTime) -> Result<Self> {
        let header = FrameHeader::read(bytes)?;
        if header.expires_at <= now {
            return Ok(Self::Absent);
        }
        if header.is_ended_marker() && bytes.len() == FrameHeader::LEN {
            return Ok(Self::Ended);
        }
        Record::decode_payload(
            &bytes[FrameHeader::LEN..],
            header.expires_at,
            header.version,
        )
        .map(Self::Live)
    }
}

/// Milliseconds since the Unix epoch, saturating at the `i64` range.
#[must_use]
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(if at.year() < 1970 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The instant `millis` milliseconds after the Unix epoch, if representable.
#[must_use]
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    #[serde(rename = "d")]
    data: &'a Data,
    #[serde(rename = "x", skip_serializing_if = "Option::is_none")]
    expiry: Option<&'a Expiry>,
}

#[derive(Deserialize)]
struct PayloadOwned {
    #[serde(rename = "d")]
    data: Data,
    #[serde(rename = "x", default)]
    expiry: Option<Expiry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn next_version_counts_up_and_refuses_to_wrap() {
        let mut r = Record::new(Data::new(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(r.next_version().ok(), Some(1));
        r.version = u64::MAX - 1;
        assert_eq!(r.next_version().ok(), Some(u64::MAX));
        r.version = u64::MAX;
        assert!(matches!(r.next_version(), Err(Error::Codec(_))));
    }

    fn sample() -> Record {
        let mut data = Data::new();
        data.insert("n".into(), json!(null));
        data.insert("b".into(), json!(true));
        data.insert("i".into(), json!(-42));
        data.insert("u".into(), json!(u64::MAX));
        data.insert("f".into(), json!(1.5));
        data.insert("s".into(), json!("héllo ☃ 𝄞"));
        data.insert("ключ".into(), json!(["a", 1, {"x": [null]}]));
        let mut r = Record::new(data, from_unix_millis(1_900_000_000_123).expect("in range"));
        r.version = 7;
        r.expiry = Some(Expiry::OnInactivity(time::Duration::minutes(5)));
        r
    }

    #[test]
    fn payload_round_trips_every_json_type() {
        let r = sample();
        let bytes = r.encode_payload().expect("encodes");
        let back = Record::decode_payload(&bytes, r.expires_at, r.version).expect("decodes");
        assert_eq!(back, r);
    }

    #[test]
    fn framed_round_trips_and_header_reads_alone() {
        let r = sample();
        let bytes = r.encode_framed().expect("encodes");
        assert_eq!(Record::decode_framed(&bytes).expect("decodes"), r);
        let h = FrameHeader::read(&bytes).expect("header");
        assert_eq!((h.version, h.expires_at), (7, r.expires_at));
    }

    #[test]
    fn every_expiry_variant_round_trips() {
        let at = from_unix_millis(1_800_000_000_000).expect("in range");
        for e in [
            Expiry::BrowserSession,
            Expiry::OnInactivity(time::Duration::seconds(90)),
            Expiry::AtDateTime(at),
        ] {
            let mut r = sample();
            r.expiry = Some(e);
            let back =
                Record::decode_framed(&r.encode_framed().expect("encodes")).expect("decodes");
            assert_eq!(back.expiry, Some(e));
        }
    }

    #[test]
    fn corrupt_bytes_are_codec_errors_not_panics() {
        let good = sample().encode_framed().expect("encodes");
        for bad in [
            &b""[..],
            b"SR",
            b"xx\x01aaaaaaaaaaaaaaaa{}",
            &good[..good.len() - 1],
            &good[..FrameHeader::LEN],
        ] {
            assert!(matches!(Record::decode_framed(bad), Err(Error::Codec(_))));
        }
        let now = OffsetDateTime::now_utc();
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"d\":1}",
            b"\xff\xfe",
            b"{\"d\":{},\"x\":\"?\"}",
        ] {
            assert!(matches!(
                Record::decode_payload(bad, now, 1),
                Err(Error::Codec(_))
            ));
        }
    }

    #[test]
    fn a_one_mib_record_round_trips() {
        let mut data = Data::new();
        data.insert("big".into(), json!("x".repeat(1 << 20)));
        let r = Record::new(data, OffsetDateTime::now_utc());
        let bytes = r.encode_framed().expect("encodes");
        assert!(bytes.len() > 1 << 20);
        assert_eq!(Record::decode_framed(&bytes).expect("decodes").data, r.data);
    }

    #[test]
    fn depth_is_counted_without_recursion_and_bounded() {
        fn nested(depth: usize) -> serde_json::Value {
            let mut v = json!(0);
            for i in 0..depth {
                v = if i % 2 == 0 {
                    json!([v])
                } else {
                    json!({ "k": v })
                };
            }
            v
        }
        assert!(check_value_depth(&json!("flat")).is_ok());
        assert!(check_value_depth(&nested(MAX_VALUE_DEPTH)).is_ok());
        assert!(matches!(
            check_value_depth(&nested(MAX_VALUE_DEPTH + 1)),
            Err(Error::TooDeep { .. })
        ));
        // Far deeper than any recursive walk would survive.
        assert!(check_value_depth(&nested(300)).is_err());
        // The deepest accepted value, wrapped as a payload, still decodes.
        let mut data = Data::new();
        data.insert("deep".into(), nested(MAX_VALUE_DEPTH));
        let r = Record::new(data, OffsetDateTime::now_utc() + time::Duration::hours(1));
        let back = Record::decode_framed(&r.encode_framed().expect("encodes")).expect("decodes");
        assert_eq!(back.data, r.data);
    }

    #[test]
    fn ended_markers_decode_as_ended_until_they_expire() {
        let now = OffsetDateTime::now_utc();
        let marker = Record::encode_ended_marker(now + time::Duration::seconds(30));
        assert!(matches!(
            Lookup::decode_framed(&marker, now),
            Ok(Lookup::Ended)
        ));
        assert!(matches!(
            Lookup::decode_framed(&marker, now + time::Duration::seconds(31)),
            Ok(Lookup::Absent)
        ));
        assert!(Record::decode_framed(&marker).is_err());
        let live = sample().encode_framed().expect("encodes");
        assert!(matches!(
            Lookup::decode_framed(&live, now),
            Ok(Lookup::Live(r)) if r.version == 7
        ));
    }

    #[test]
    fn a_stored_expiry_out_of_range_does_not_decode() {
        let mut r = sample();
        r.expiry = Some(Expiry::OnInactivity(time::Duration::days(100_000)));
        let bytes = r.encode_framed().expect("encodes");
        assert!(matches!(
            Record::decode_framed(&bytes),
            Err(Error::Codec(_))
        ));
    }

    #[test]
    fn debug_hides_values() {
        let r = sample();
        assert!(!format!("{r:?}").contains("héllo"));
    }

    #[test]
    fn millis_conversions_round_trip_and_saturate() {
        let t = from_unix_millis(1_700_000_000_999).expect("in range");
        assert_eq!(unix_millis(t), 1_700_000_000_999);
        assert!(from_unix_millis(i64::MAX).is_none());
    }
}
