//! `Vcon.hash` against vectors whose expected values were computed by Python itself
//! (scripts/hash/make_hash_vectors.py), and the `hash` command.

use crate::support::bridge::binary;
use std::path::Path;

fn vectors() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    std::fs::read_to_string(dir.join("expected.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (h, name) = l.split_once("  ").unwrap();
            (h.to_string(), dir.join(name).to_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn vcon_hash_equals_python_on_every_vector() {
    let v = vectors();
    assert!(v.len() >= 20);
    for (expected, path) in v {
        let bytes = std::fs::read(&path).unwrap();
        let got = vcon_otel::compliance::vcon_hash(&bytes).unwrap();
        assert_eq!(got.sha256_hex, expected, "{path}");
        let both = vcon_otel::compliance::vcon_hash_with_sha512(&bytes).unwrap();
        assert_eq!(both.sha256_hex, expected);
        let token = both.sha512_token.unwrap();
        assert!(token.starts_with("sha512-") && token.len() == 7 + 86);
    }
}

#[test]
fn hash_command_prints_hash_token_and_file() {
    let (expected, path) = vectors().into_iter().next().unwrap();
    let out = std::process::Command::new(binary()).args(["hash", &path]).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("{expected}  sha512-")), "{line}");
    let bad = std::process::Command::new(binary()).args(["hash", "/nonexistent.json"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn a_broken_document_is_reported_with_its_position() {
    let e = vcon_otel::compliance::vcon_hash(b"{\"uuid\": \"u\",\n \"parties\": [1,]}").unwrap_err();
    assert_eq!(e.to_string(), "invalid JSON at line 2 column 16 (byte 29): expected a value");
    assert!(vcon_otel::compliance::vcon_hash(b"[1]").unwrap_err().to_string().contains("not a JSON object"));
}

fn nested(levels: usize) -> String {
    format!("{{\"uuid\":\"u\",\"deep\":{}{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1))
}

#[test]
fn hash_refuses_nesting_past_pythons_bound_naming_the_level_and_the_bound() {
    let bound = vcon_otel::compliance::stream::MAX_DEPTH;
    assert_eq!(bound, 9998, "the bound documented in docs/compliance.md");
    let dir = tempfile::tempdir().unwrap();
    let (ok, deep) = (dir.path().join("ok.json"), dir.path().join("deep.json"));
    std::fs::write(&ok, nested(bound)).unwrap();
    std::fs::write(&deep, nested(bound + 1)).unwrap();
    let out = std::process::Command::new(binary()).arg("hash").arg(&ok).arg(&deep).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "one file could not be hashed");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1, "the other one was");
    let err = String::from_utf8(out.stderr).unwrap();
    let at = 19 + bound - 1; // the `[` that opens level 9999
    let want = format!("nesting too deep at line 1 column {} (byte {at}): level 9999 opens there, past the 9998 levels", at + 1);
    assert!(err.contains("deep.json: ") && err.contains(&want), "{err}");
}

#[test]
fn the_deepest_document_hashes_on_a_small_stack() {
    // Tokio's worker threads have 2 MiB stacks; the hasher does not recurse, so 64 KiB is enough.
    let text = nested(vcon_otel::compliance::stream::MAX_DEPTH);
    let h = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || vcon_otel::compliance::vcon_hash(text.as_bytes())).unwrap().join().unwrap();
    assert_eq!(h.unwrap().canonical_len as usize, 22 + 2 * 9997 + 1);
}
