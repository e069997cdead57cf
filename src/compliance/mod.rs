//! Compliance hashing: vCon Server's `Vcon.hash`, byte for byte (`docs/compliance.md`).
//!
//! `Vcon.hash` is the lowercase hex SHA-256 of Python's default `json.dumps(vcon_dict)`, where
//! `vcon_dict` is the document read back from Redis (`JSON.GET`, parsed by `json.loads`) after
//! `normalize_legacy_fields`. [`vcon_hash`] computes it from the stored JSON text, together with
//! the vCon spec's `sha512-<base64url>` token of the same bytes and privacy-safe counts.
//!
//! It streams (`stream`): the canonical bytes go into the hash as the text is read, so memory does
//! not grow with the document (the text itself is the caller's). Nesting deeper than
//! [`stream::MAX_DEPTH`] levels is refused as Python refuses it ([`HashError::TooDeep`]).

pub mod audit_log;
pub mod chain;
pub mod dumps;
pub mod float;
pub mod journal;
mod keys;
pub mod lex;
pub mod normalize;
pub mod pyjson;
pub mod seal;
pub mod stream;
#[cfg(test)]
mod stream_tests;
pub mod verify;
#[cfg(test)]
mod verify_tests;

use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// The hashes of one vCon state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VconHash {
    /// `Vcon.hash`: lowercase hex SHA-256 of the canonical bytes.
    pub sha256_hex: String,
    /// The vCon spec's content-hash token of the same bytes: `sha512-<base64url, no padding>`,
    /// when asked for ([`vcon_hash_with_sha512`]); SHA-512 in software halves the throughput.
    pub sha512_token: Option<String>,
    /// Entries in `parties`, `dialog`, `analysis`, `attachments` (no content, no identifiers).
    pub counts: [u64; 4],
    /// Length of the canonical bytes.
    pub canonical_len: u64,
}

/// The compliance hash of the vCon at one step of a run, as the spans carry it
/// (`docs/compliance.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHash {
    pub sha256_hex: String,
    pub sha512_token: Option<String>,
    /// Entries in `parties`, `dialog`, `analysis`, `attachments`, when the document was seen.
    pub counts: Option<[u64; 4]>,
}

impl StepHash {
    /// `sha256hex` then optional ` s512=TOKEN` and ` n=P,D,A,T` (parties, dialog, analysis, attachments).
    pub fn encode(&self) -> String {
        let mut s = self.sha256_hex.clone();
        if let Some(t) = &self.sha512_token {
            s.push_str(" s512=");
            s.push_str(t);
        }
        if let Some([p, d, a, t]) = self.counts {
            s.push_str(&format!(" n={p},{d},{a},{t}"));
        }
        s
    }

    /// The inverse of [`StepHash::encode`]; `None` for anything else (a field not written by the bridge).
    pub fn decode(s: &str) -> Option<StepHash> {
        let mut parts = s.split(' ');
        let sha = parts.next().filter(|h| crate::event::valid_sha256(h))?;
        let mut h = StepHash { sha256_hex: sha.to_string(), sha512_token: None, counts: None };
        for p in parts {
            if let Some(t) = p.strip_prefix("s512=") {
                h.sha512_token = Some(t.to_string());
            } else if let Some(n) = p.strip_prefix("n=") {
                let v: Vec<u64> = n.split(',').map(str::parse).collect::<Result<_, _>>().ok()?;
                h.counts = Some(v.try_into().ok()?);
            } else {
                return None;
            }
        }
        Some(h)
    }
}

/// Why a stored document cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    NotUtf8 { offset: usize },
    Json(pyjson::ParseError),
    NotAnObject,
    /// A container opens at this position one level deeper than [`stream::MAX_DEPTH`]: Python's
    /// `json.loads` raises `RecursionError` there, so vCon Server has no `Vcon.hash` for it.
    TooDeep { offset: usize, line: usize, column: usize },
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::NotUtf8 { offset } => write!(f, "the document is not UTF-8 text (first bad byte at offset {offset})"),
            HashError::Json(e) => write!(f, "{e}"),
            HashError::NotAnObject => write!(f, "the document is not a JSON object, so it is not a vCon"),
            HashError::TooDeep { offset, line, column } => write!(
                f,
                "nesting too deep at line {line} column {column} (byte {offset}): level {} opens there, past the {} levels Python's json accepts \
                 (CPython 3.13 raises RecursionError), so vCon Server has no Vcon.hash for this document",
                stream::MAX_DEPTH + 1,
                stream::MAX_DEPTH
            ),
        }
    }
}

impl std::error::Error for HashError {}

struct DualHasher {
    a: Sha256,
    b: Option<Sha512>,
    buf: Vec<u8>,
    len: u64,
}

impl DualHasher {
    fn update(&mut self, bytes: &[u8]) {
        self.a.update(bytes);
        if let Some(b) = self.b.as_mut() {
            b.update(bytes);
        }
    }

    fn flush(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.update(&buf);
        self.buf = buf;
        self.buf.clear();
    }
}

impl pyjson::Sink for DualHasher {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if bytes.len() > 4096 {
            self.flush();
            self.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
            if self.buf.len() >= 16 * 1024 {
                self.flush();
            }
        }
    }
}

/// `Vcon.hash` of a stored vCon document (the text `JSON.GET vcon:{uuid}` returns, or a file).
pub fn vcon_hash(stored_json: &[u8]) -> Result<VconHash, HashError> {
    hash_impl(stored_json, false)
}

/// [`vcon_hash`] plus the `sha512-…` token of the same canonical bytes.
pub fn vcon_hash_with_sha512(stored_json: &[u8]) -> Result<VconHash, HashError> {
    hash_impl(stored_json, true)
}

fn hash_impl(stored_json: &[u8], sha512: bool) -> Result<VconHash, HashError> {
    let text = std::str::from_utf8(stored_json).map_err(|e| HashError::NotUtf8 { offset: e.valid_up_to() })?;
    let hasher = || DualHasher { a: Sha256::new(), b: sha512.then(Sha512::new), buf: Vec::with_capacity(32 * 1024), len: 0 };
    let (mut h, summary) = stream::dump(text, hasher).map_err(HashError::from)?;
    if !summary.object {
        return Err(HashError::NotAnObject);
    }
    h.flush();
    use base64::Engine;
    Ok(VconHash {
        sha256_hex: hex::encode(h.a.finalize()),
        sha512_token: h.b.map(|b| format!("sha512-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b.finalize()))),
        counts: summary.counts,
        canonical_len: h.len,
    })
}

impl From<stream::Fail> for HashError {
    fn from(f: stream::Fail) -> Self {
        match f {
            stream::Fail::Json(e) => HashError::Json(e),
            stream::Fail::TooDeep(e) => HashError::TooDeep { offset: e.offset, line: e.line, column: e.column },
        }
    }
}

/// The canonical bytes themselves (`json.dumps` of the normalized document), for inspection. A
/// document that is not an object is written as it is.
pub fn canonical_bytes(stored_json: &[u8]) -> Result<Vec<u8>, HashError> {
    let text = std::str::from_utf8(stored_json).map_err(|e| HashError::NotUtf8 { offset: e.valid_up_to() })?;
    Ok(stream::dump(text, Vec::new)?.0)
}
