//! `verify` on hand-built logs: repeats after a crash, tampering, the terminal record and the key.

use super::audit_log::{AuditRecord, Terminal};
use super::chain;
use super::seal::Key;
use super::verify::{verify, Keying, Verdict};
use std::path::{Path, PathBuf};

const VCON: &[u8] = br#"{"uuid":"u1","vcon":"0.0.1"}"#;
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn content() -> String {
    super::vcon_hash(VCON).unwrap().sha256_hex
}

/// A run of `n` link steps (the last one with the vCon's hash) and its terminal record.
fn run(name: &str, n: u64) -> Vec<AuditRecord> {
    let mut value = chain::genesis("u1", name);
    let mut out = Vec::new();
    for seq in 0..n {
        let c = if seq + 1 == n { content() } else { format!("{seq:02}") };
        let next = chain::step(&value, "a", seq as i64, &c);
        out.push(AuditRecord {
            record_id: format!("{name}:{seq}"),
            timestamp: format!("2026-11-22T10:00:0{seq}Z"),
            vcon_uuid: "u1".into(),
            current_uuid: "u1".into(),
            run: name.into(),
            seq,
            event: "link".into(),
            step_name: "a".into(),
            step_index: seq as i64,
            content_sha256: c,
            prev_chain: hex::encode(value),
            chain: hex::encode(next),
            retention_policy: "p".into(),
            mac: None,
        });
        value = next;
    }
    let t = Terminal { vcon_uuid: "u1", current_uuid: "u1", run: name, outcome: "complete", steps: n as u32, chain_after: &value, end_ns: 9, retention_policy: "p" };
    out.push(t.record());
    out
}

fn seal(recs: &mut [AuditRecord]) {
    let k = Key::new(KEY).unwrap();
    for r in recs {
        r.mac = None;
        r.mac = Some(k.mac(r));
    }
}

fn check(dir: &Path, recs: &[AuditRecord], key: Option<&[u8]>) -> Verdict {
    let p: PathBuf = dir.join(format!("log{}.jsonl", rand_suffix()));
    let text: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    std::fs::write(&p, text).unwrap();
    let key = key.map(|k| Key::new(k).unwrap());
    verify(VCON, &[p], None, key.as_ref()).unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn why(v: &Verdict) -> &str {
    match v {
        Verdict::ChainBroken { why, .. } => why,
        other => panic!("expected BROKEN, got {other:?}"),
    }
}

#[test]
fn identical_repeats_after_a_crash_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = run("r1", 3);
    // The first process wrote two steps and crashed before acknowledging; the second wrote the run again.
    let log = [&r[..2], &r[..]].concat();
    assert_eq!(check(dir.path(), &log, None), Verdict::Ok { runs: 1, steps: 3, repeats: 2, keying: Keying::Unkeyed });
    let twice = [&r[..], &r[..1]].concat();
    assert!(matches!(check(dir.path(), &twice, None), Verdict::Ok { repeats: 1, .. }), "a repeat after the terminal record is still a repeat");
}

#[test]
fn a_different_record_under_a_seen_record_id_is_a_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let r = run("r1", 3);
    let mut other = r[1].clone();
    other.timestamp = "2026-11-22T11:00:00Z".into();
    let log = [&r[..2], &[other], &r[2..]].concat();
    assert!(why(&check(dir.path(), &log, None)).contains("different record with the same record_id"));
}

#[test]
fn a_deleted_last_step_is_caught_by_the_terminal_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = run("r1", 3);
    r.remove(2);
    assert!(why(&check(dir.path(), &r, None)).contains("counts 3 steps but 2 precede it"));
}

#[test]
fn a_run_without_its_terminal_record_is_unterminated() {
    let dir = tempfile::tempdir().unwrap();
    let r = run("r1", 3);
    // Last step and terminal record deleted: the vCon no longer matches the last recorded step.
    assert!(matches!(check(dir.path(), &r[..2], None), Verdict::VconMismatch { .. }));
    // Only the terminal record deleted (or the run is still open).
    let v = check(dir.path(), &r[..3], None);
    assert!(matches!(&v, Verdict::Unterminated { steps: 3, covered: None, .. }), "{v:?}");
    assert_eq!(v.exit_code(), 4);
}

#[test]
fn a_terminal_record_written_after_a_crash_may_cover_fewer_steps() {
    let dir = tempfile::tempdir().unwrap();
    let r = run("r1", 3);
    // The chain value after step 0, as a process that saw only the run's first record computed it.
    let after0: [u8; 32] = hex::decode(&r[0].chain).unwrap().try_into().unwrap();
    let t = Terminal { vcon_uuid: "u1", current_uuid: "u1", run: "r1", outcome: "incomplete", steps: 1, chain_after: &after0, end_ns: 9, retention_policy: "p" };
    let short = t.record();
    let v = check(dir.path(), &[&r[..3], &[short]].concat(), None);
    assert!(matches!(v, Verdict::Unterminated { steps: 3, covered: Some(1), .. }), "{v:?}");
}

#[test]
fn a_consistently_rewritten_chain_passes_without_a_key_and_fails_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let honest = {
        let mut r = run("r1", 3);
        seal(&mut r);
        r
    };
    assert!(matches!(check(dir.path(), &honest, Some(KEY)), Verdict::Ok { keying: Keying::Checked, .. }));
    assert!(matches!(check(dir.path(), &honest, None), Verdict::Ok { keying: Keying::NotChecked, .. }));
    // Rewrite step 0's content and recompute every later chain value and the terminal record.
    let mut forged = run("r1", 3);
    forged[0].content_sha256 = "ff".into();
    let mut value = chain::genesis("u1", "r1");
    for r in forged.iter_mut() {
        r.prev_chain = hex::encode(value);
        value = chain::step(&value, &r.step_name, r.step_index, &r.content_sha256);
        r.chain = hex::encode(value);
    }
    assert!(matches!(check(dir.path(), &forged, None), Verdict::Ok { .. }), "without a key a consistent rewrite cannot be told apart");
    for (i, r) in forged.iter_mut().enumerate() {
        r.mac = honest[i].mac.clone();
    }
    assert!(why(&check(dir.path(), &forged, Some(KEY))).contains("mac does not match"));
    let mut stripped = honest.clone();
    stripped[1].mac = None;
    assert!(why(&check(dir.path(), &stripped, Some(KEY))).contains("has no mac"));
}

#[test]
fn a_record_after_the_terminal_record_is_a_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = run("r1", 3);
    let mut extra = r[2].clone();
    extra.record_id = "r1:9".into();
    r.push(extra);
    assert!(why(&check(dir.path(), &r, None)).contains("follows the run's terminal record"));
}
