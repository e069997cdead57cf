//! `Vcon.hash` against vectors whose expected values were computed by Python itself
//! (scripts/make_hash_vectors.py), and the `hash` command.

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
