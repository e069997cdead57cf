//! The per-run hash chain (`docs/compliance.md`, "Hash chain").
//!
//! ```text
//! c0 = SHA-256("vcon-otel/v1/chain/genesis" || lp(vcon_uuid) || lp(run))
//! ci = SHA-256("vcon-otel/v1/chain/step" || c(i-1) || lp(step name) || be64(step index) || lp(content sha256 hex))
//! ```
//! where `lp(x)` is the 8-byte big-endian length of `x` followed by its bytes, so no two different
//! inputs encode alike. Each value commits to every step before it: a missing, reordered or altered
//! step changes every later value.

use sha2::{Digest, Sha256};

fn lp(h: &mut Sha256, x: &[u8]) {
    h.update((x.len() as u64).to_be_bytes());
    h.update(x);
}

/// The chain value before the first step of a run.
pub fn genesis(vcon_uuid: &str, run: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vcon-otel/v1/chain/genesis");
    lp(&mut h, vcon_uuid.as_bytes());
    lp(&mut h, run.as_bytes());
    h.finalize().into()
}

/// The chain value after a step.
pub fn step(prev: &[u8; 32], step_name: &str, step_index: i64, content_sha256_hex: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vcon-otel/v1/chain/step");
    h.update(prev);
    lp(&mut h, step_name.as_bytes());
    h.update(step_index.to_be_bytes());
    lp(&mut h, content_sha256_hex.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_commits_to_the_ones_before() {
        let g = genesis("u", "r");
        let a = step(&g, "a", 0, "00");
        let b = step(&a, "b", 1, "11");
        let b_swapped = step(&step(&g, "b", 1, "11"), "a", 0, "00");
        assert_ne!(b, b_swapped);
        assert_ne!(step(&g, "ab", 0, ""), step(&g, "a", 0, "b"), "length prefixes keep fields apart");
    }
}
