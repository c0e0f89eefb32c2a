//! Comparing secrets: a token, a signature or a key checked against the one expected.

use sha2::Digest;
use subtle::ConstantTimeEq;

/// Compares two secrets in time that does not depend on where they differ, nor on their
/// lengths: their digests are compared.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_match_and_others_do_not() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-and-more"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
