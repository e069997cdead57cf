//! Request checks that need only the headers: the bearer token and the media type.
//!
//! The token is compared in constant time over fixed-length SHA-256 digests of the expected and the
//! presented token, so neither the content nor the length of the token leaks through timing. The
//! `Authorization` scheme is matched case-insensitively (RFC 9110 §11.1: `Bearer`, `bearer`, `BEARER`).

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured bearer token, kept only as its digest.
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    pub fn new(token: &str) -> Token {
        Token { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// True when `headers` carry `Authorization: Bearer <this token>` (scheme in any case).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| bearer(v.as_bytes())).unwrap_or(b"");
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // An absent token hashes like any other; the result is checked only after the comparison.
        bool::from(digest.ct_eq(&self.digest)) && !presented.is_empty()
    }
}

/// The credentials of a `Bearer` authorization value: `scheme 1*SP token`.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether a `Content-Type` names `application/json` (any case, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::CONTENT_TYPE) else { return false };
    let essence = v.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
    essence.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        let t = Token::new("0123456789abcdef");
        for ok in ["Bearer 0123456789abcdef", "bearer 0123456789abcdef", "BEARER   0123456789abcdef"] {
            assert!(t.accepts(&with(header::AUTHORIZATION, ok)), "{ok}");
        }
        for bad in ["Bearer 0123456789abcde", "Bearer 0123456789abcdef0", "Basic 0123456789abcdef", "Bearer", "Bearer ", "Bearer0123456789abcdef", "0123456789abcdef"] {
            assert!(!t.accepts(&with(header::AUTHORIZATION, bad)), "{bad}");
        }
        assert!(!t.accepts(&HeaderMap::new()));
    }

    #[test]
    fn only_application_json_is_taken_with_any_parameters() {
        for ok in ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/json;charset=UTF-8"] {
            assert!(is_json(&with(header::CONTENT_TYPE, ok)), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "application/jsonl", "application/json-seq", ""] {
            assert!(!is_json(&with(header::CONTENT_TYPE, bad)), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
