//! `Vcon.hash` (`vcon_otel::compliance`) on arbitrary bytes, against two references:
//!
//! 1. In process, the in-memory model (`pyjson::parse` + `normalize_legacy_fields` + `pyjson::write`,
//!    a tree, nesting ≤ 512): the same hash, canonical bytes, counts and length, or the same error at
//!    the same byte.
//! 2. Python itself, when `VCON_OTEL_FUZZ_PYTHON` names an interpreter (`none`: skip): every input goes to
//!    `scripts/hash/vcon_hash_oracle.py` (`json.loads`, `normalize_legacy_fields`, `json.dumps`, SHA-256,
//!    as vCon Server computes it) over a pipe, and the answers must agree: the same hash, or both
//!    refusing for the same kind of reason (not UTF-8, not JSON, not an object, too deep). Nesting is
//!    compared exactly when that Python's bound is ours (CPython 3.13); a Python whose bound is lower
//!    (3.11 by default) or higher (3.11 with its recursion limit raised, as the oracle does) is
//!    compared up to the lower of the two, and a refusal past ours is checked against an independent
//!    count of the document's depth.

#![no_main]

mod oracle;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use vcon_otel::compliance::{canonical_bytes, normalize, pyjson, vcon_hash, vcon_hash_with_sha512, HashError, VconHash};

fuzz_target!(|data: &[u8]| {
    let got = vcon_hash(data);
    against_the_model(data, &got);
    if let Ok(h) = &got {
        assert_eq!(vcon_hash_with_sha512(data).expect("hashes twice").sha256_hex, h.sha256_hex);
    }
    oracle::compare(data, &got);
});

fn against_the_model(data: &[u8], got: &Result<VconHash, HashError>) {
    let text = match std::str::from_utf8(data) {
        Ok(t) => t,
        Err(e) => return assert_eq!(got, &Err(HashError::NotUtf8 { offset: e.valid_up_to() })),
    };
    let mut doc = match pyjson::parse(text) {
        Ok(d) => d,
        // The model recurses and stops at 512 levels; the hash goes on (checked against Python).
        Err(e) if e.expected.starts_with("nesting") => return,
        Err(e) => return assert_eq!(got, &Err(HashError::Json(e)), "{text:?}"),
    };
    normalize::normalize_legacy_fields(&mut doc);
    let mut bytes = Vec::new();
    pyjson::write(&mut bytes, &doc);
    assert_eq!(canonical_bytes(data).expect("canonical bytes"), bytes, "canonical bytes of {text:?}");
    if !matches!(doc, pyjson::Value::Object(_)) {
        return assert_eq!(got, &Err(HashError::NotAnObject));
    }
    let h = got.as_ref().unwrap_or_else(|e| panic!("the model hashes {text:?}, the hash says {e}"));
    assert_eq!(h.sha256_hex, hex::encode(Sha256::digest(&bytes)), "hash of {text:?}");
    assert_eq!(h.canonical_len, bytes.len() as u64);
    assert_eq!(h.counts, normalize::counts(&doc));
}

/// Deepest nesting of `[`/`{` outside strings (counted independently of the hasher).
pub fn depth(data: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in data {
        if in_str {
            (in_str, esc) = match (esc, b) {
                (true, _) => (true, false),
                (false, b'\\') => (true, true),
                (false, b'"') => (false, false),
                _ => (true, false),
            };
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}
