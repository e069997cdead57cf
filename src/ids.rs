//! Deterministic trace and span IDs (`docs/events.md`, "Identities").
//!
//! Every ID is a prefix of a SHA-256 over a domain tag, the vCon UUID the run began with, the run
//! identity and the span's role, so anyone holding `vcon_uuid` and `run` can recompute them, a
//! re-export after a crash repeats them, and a new run of the same vCon gets a new trace.

use sha2::{Digest, Sha256};

/// A map keyed by IDs: stream entry IDs (assigned by Redis) and trace IDs (SHA-256 prefixes), on
/// the hot path of every record. Its hasher (foldhash) is several times cheaper than the standard
/// SipHash and seeded per process; keys chosen by a producer (names) stay in standard maps.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Lowercase hex of `bytes` (what `hex::encode` gives, one table lookup per digit: IDs are written
/// as hex into Redis keys and exemplars for every record).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// `prefix`, the lowercase hex of `id`, then `suffix`: a Redis key of one run.
pub fn key(prefix: &str, id: &[u8], suffix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + id.len() * 2 + suffix.len());
    s.push_str(prefix);
    push_hex(&mut s, id);
    s.push_str(suffix);
    s
}

/// The span a record belongs to within its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanRole<'a> {
    Root,
    Link(i64),
    Storage(&'a str),
    /// A hosted tracer's invocation for the record with this `seq`.
    Tracer(&'a str, u64),
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p);
    }
    h.finalize().into()
}

fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|b| *b == 0) {
        id[N - 1] = 1;
    }
    id
}

/// `SHA-256("vcon-otel/v1/trace\n" + vcon_uuid + "\n" + run)[0..16]`.
pub fn trace_id(vcon_uuid: &str, run: &str) -> [u8; 16] {
    let d = digest(&[b"vcon-otel/v1/trace", vcon_uuid.as_bytes(), run.as_bytes()]);
    nonzero(d[..16].try_into().expect("16 bytes"))
}

/// `SHA-256("vcon-otel/v1/span\n" + vcon_uuid + "\n" + run + "\n" + role)[0..8]`, where role is
/// `root`, `link\n<index>` or `storage\n<name>`.
pub fn span_id(vcon_uuid: &str, run: &str, role: SpanRole<'_>) -> [u8; 8] {
    let base: [&[u8]; 3] = [b"vcon-otel/v1/span", vcon_uuid.as_bytes(), run.as_bytes()];
    let d = match role {
        SpanRole::Root => digest(&[base[0], base[1], base[2], b"root"]),
        SpanRole::Link(i) => digest(&[base[0], base[1], base[2], b"link", i.to_string().as_bytes()]),
        SpanRole::Storage(name) => digest(&[base[0], base[1], base[2], b"storage", name.as_bytes()]),
        SpanRole::Tracer(name, seq) => digest(&[base[0], base[1], base[2], b"tracer", name.as_bytes(), seq.to_string().as_bytes()]),
    };
    nonzero(d[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_the_hex_crate_writes() {
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&every), ::hex::encode(&every));
        assert_eq!(hex(&[]), "");
        let id = trace_id("u-1", "r-1");
        assert_eq!(key("vcon_otel:done:", &id, ""), format!("vcon_otel:done:{}", ::hex::encode(id)));
        assert_eq!(key("p:", &id, ":run"), format!("p:{}:run", ::hex::encode(id)));
    }

    #[test]
    fn ids_follow_the_documented_derivation() {
        let expect: [u8; 32] = Sha256::digest(b"vcon-otel/v1/trace\nu-1\nr-1").into();
        assert_eq!(trace_id("u-1", "r-1")[..], expect[..16]);
        let expect: [u8; 32] = Sha256::digest(b"vcon-otel/v1/span\nu-1\nr-1\nlink\n2").into();
        assert_eq!(span_id("u-1", "r-1", SpanRole::Link(2))[..], expect[..8]);
        let expect: [u8; 32] = Sha256::digest(b"vcon-otel/v1/span\nu-1\nr-1\nstorage\ns3").into();
        assert_eq!(span_id("u-1", "r-1", SpanRole::Storage("s3"))[..], expect[..8]);
    }

    #[test]
    fn a_new_run_gets_new_ids() {
        assert_ne!(trace_id("u", "r1"), trace_id("u", "r2"));
        assert_ne!(span_id("u", "r1", SpanRole::Root), span_id("u", "r2", SpanRole::Root));
        assert_ne!(span_id("u", "r1", SpanRole::Link(0)), span_id("u", "r1", SpanRole::Link(1)));
    }
}
