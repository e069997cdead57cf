//! The audit log's optional key: each record's `mac` is HMAC-SHA256 over every other field of the
//! record (`docs/compliance.md`, "Keyed chain"). Because each record's `chain` commits to every
//! earlier step of its run, the MACs make the chain a keyed one: rewriting a record and recomputing
//! every later chain value consistently needs the key.
//!
//! ```text
//! mac = HMAC-SHA256(key, "vcon-otel/v1/audit/mac" || lp(record_id) || lp(timestamp) || lp(vcon_uuid)
//!       || lp(current_uuid) || lp(run) || be64(seq) || lp(event) || lp(step_name) || be64(step_index)
//!       || lp(content_sha256) || lp(prev_chain) || lp(chain) || lp(retention_policy))
//! ```
//! with `lp(x)` = 8-byte big-endian length of `x`, then `x` (as in `chain.rs`).

use super::audit_log::AuditRecord;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::path::PathBuf;

/// Fewest key bytes accepted (128 bits).
pub const MIN_KEY_BYTES: usize = 16;

/// Where the key comes from (the `audit_log` tracer's `hmac_key_env` / `hmac_key_file`, or
/// `vcon-otel verify --hmac-key-env / --hmac-key-file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum KeySource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file.
    File(PathBuf),
}

/// A loaded key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl KeySource {
    /// Reads the key: the variable's value or the file's contents, surrounding whitespace removed,
    /// at least [`MIN_KEY_BYTES`] bytes. The error names the source and the fix, never the key.
    pub fn load(&self) -> Result<Key, String> {
        let (what, raw) = match self {
            KeySource::Env(var) => (format!("hmac_key_env={var}"), std::env::var(var).map_err(|e| format!("hmac_key_env={var}: {e}; set the variable to the key"))?.into_bytes()),
            KeySource::File(p) => (format!("hmac_key_file={}", p.display()), std::fs::read(p).map_err(|e| format!("hmac_key_file={}: cannot read: {e}", p.display()))?),
        };
        Key::new(raw.trim_ascii()).map_err(|e| format!("{what}: {e}"))
    }
}

impl Key {
    pub fn new(bytes: &[u8]) -> Result<Key, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("the key has {} bytes, fewer than {MIN_KEY_BYTES}; use e.g. `openssl rand -hex 32`", bytes.len()));
        }
        Ok(Key(bytes.to_vec()))
    }

    /// The record's MAC (lowercase hex), over every field but `mac`.
    pub fn mac(&self, r: &AuditRecord) -> String {
        hex::encode(self.hmac(r).finalize().into_bytes())
    }

    /// Whether `r.mac` is the record's MAC under this key (constant-time comparison).
    pub fn verifies(&self, r: &AuditRecord) -> bool {
        let Some(Ok(tag)) = r.mac.as_deref().map(hex::decode) else { return false };
        self.hmac(r).verify_slice(&tag).is_ok()
    }

    fn hmac(&self, r: &AuditRecord) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        m.update(b"vcon-otel/v1/audit/mac");
        for s in [&r.record_id, &r.timestamp, &r.vcon_uuid, &r.current_uuid, &r.run] {
            lp(&mut m, s);
        }
        m.update(&r.seq.to_be_bytes());
        lp(&mut m, &r.event);
        lp(&mut m, &r.step_name);
        m.update(&r.step_index.to_be_bytes());
        for s in [&r.content_sha256, &r.prev_chain, &r.chain, &r.retention_policy] {
            lp(&mut m, s);
        }
        m
    }
}

fn lp(m: &mut Hmac<Sha256>, s: &str) {
    m.update(&(s.len() as u64).to_be_bytes());
    m.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            record_id: "r:1".into(),
            timestamp: "2026-11-22T10:00:00Z".into(),
            vcon_uuid: "u".into(),
            current_uuid: "u".into(),
            run: "r".into(),
            seq: 1,
            event: "link".into(),
            step_name: "a".into(),
            step_index: 0,
            content_sha256: "00".into(),
            prev_chain: "11".into(),
            chain: "22".into(),
            retention_policy: "p".into(),
            mac: None,
        }
    }

    #[test]
    fn the_mac_covers_every_field_and_needs_the_key() {
        let k = Key::new(b"0123456789abcdef").unwrap();
        let mut r = record();
        r.mac = Some(k.mac(&r));
        assert!(k.verifies(&r));
        assert!(!Key::new(b"0123456789abcdeX").unwrap().verifies(&r), "another key");
        for edit in [|r: &mut AuditRecord| r.seq = 2, |r: &mut AuditRecord| r.chain = "23".into(), |r: &mut AuditRecord| r.timestamp.push('0')] {
            let mut t = r.clone();
            edit(&mut t);
            assert!(!k.verifies(&t));
        }
        r.mac = None;
        assert!(!k.verifies(&r), "a record without a MAC does not verify");
    }

    #[test]
    fn short_or_missing_keys_are_refused_with_the_source_named() {
        assert!(Key::new(b"short").unwrap_err().contains("fewer than 16"));
        let e = KeySource::Env("VCON_OTEL_TEST_SURELY_UNSET_KEY".into()).load().unwrap_err();
        assert!(e.starts_with("hmac_key_env=VCON_OTEL_TEST_SURELY_UNSET_KEY:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        assert!(KeySource::File(p).load().is_ok(), "a trailing newline is not part of the key");
    }
}
