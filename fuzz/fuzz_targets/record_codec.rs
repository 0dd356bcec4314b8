//! The record codec on arbitrary bytes: `Record::decode_payload`, `Record::decode_framed`
//! and `FrameHeader::read` never panic, and whatever decodes encodes again to something
//! that decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{FrameHeader, Record};
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    // The payload alone (data + expiry as JSON), as the SQL stores keep it.
    let at = OffsetDateTime::from_unix_timestamp(2_000_000_000).expect("in range");
    if let Ok(record) = Record::decode_payload(data, at, 7) {
        let bytes = record
            .encode_payload()
            .expect("re-encode a decoded payload");
        let again = Record::decode_payload(&bytes, at, 7).expect("decode what was encoded");
        assert_eq!(again.data, record.data);
        assert_eq!(again.expiry, record.expiry);
    }
    // The framed form (version and expires_at header, then the payload), as Redis and
    // the file store keep it.
    let header = FrameHeader::read(data).ok();
    match Record::decode_framed(data) {
        Ok(record) => {
            let header = header
                .as_ref()
                .expect("a decodable frame has a readable header");
            assert_eq!(
                (header.version, header.expires_at),
                (record.version, record.expires_at)
            );
            let bytes = record.encode_framed().expect("re-encode a decoded frame");
            let again = Record::decode_framed(&bytes).expect("decode what was encoded");
            assert_eq!(again.data, record.data);
            assert_eq!(again.version, record.version);
            assert_eq!(again.expires_at, record.expires_at);
        }
        Err(_) => {}
    }
    if let Some(header) = header {
        let mut out = Vec::new();
        header.write(&mut out);
        assert_eq!(out.len(), FrameHeader::LEN);
        let again = FrameHeader::read(&out).expect("read what was written");
        assert_eq!(
            (again.version, again.expires_at),
            (header.version, header.expires_at)
        );
    }
});
