//! Raw deflate for signed-mode payloads, with a bound on what inflating may produce.

/// Largest payload a deflated token may inflate to, in bytes. A 4 KiB cookie of deflate
/// could otherwise expand to megabytes (a decompression bomb); payloads larger than this
/// are never deflated, so every token this crate issues stays readable.
#[cfg(feature = "compression")]
pub(crate) const MAX_INFLATED_LEN: usize = 64 * 1024;

#[cfg(feature = "compression")]
const LEVEL: u8 = 6;

/// Deflates `plain` (raw deflate, no zlib wrapper: the tag already protects integrity).
#[cfg(feature = "compression")]
pub(crate) fn deflate(plain: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(plain, LEVEL)
}

/// Inflates `deflated`, refusing output beyond [`MAX_INFLATED_LEN`].
#[cfg(feature = "compression")]
pub(crate) fn inflate(deflated: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED_LEN).ok()
}

/// Without the `compression` feature no token is ever flagged as deflated.
#[cfg(not(feature = "compression"))]
pub(crate) fn inflate(_deflated: &[u8]) -> Option<Vec<u8>> {
    None
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let plain = b"{\"d\":{\"a\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}";
        assert_eq!(inflate(&deflate(plain)).as_deref(), Some(&plain[..]));
    }

    #[test]
    fn a_bomb_is_refused() {
        let bomb = deflate(&vec![b'a'; MAX_INFLATED_LEN + 1]);
        assert!(bomb.len() < 1024, "the test needs a small bomb");
        assert_eq!(inflate(&bomb), None);
        let fits = deflate(&vec![b'a'; MAX_INFLATED_LEN]);
        assert_eq!(inflate(&fits).map(|v| v.len()), Some(MAX_INFLATED_LEN));
    }

    #[test]
    fn garbage_does_not_inflate() {
        assert_eq!(inflate(&[0xff, 0xff, 0xff, 0x00]), None);
    }
}
