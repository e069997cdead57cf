//! The keyed audit log under SIGKILL re-delivery, driven by the real Python producer in every
//! install mode: the repeats a restarted bridge writes pass `verify`; tampering with a terminated
//! run (changed content, deleted last record, a chain rewritten consistently) still fails it.

use crate::support::bridge::{binary, Bridge};
use crate::support::otlp::Receiver;
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use vcon_otel::compliance::chain;

const STREAM: &str = "vcon_otel:events";
const GROUP: &str = "vcon-otel";
const KEY: &str = "3f1c9a7e5b2d4c6a8e0f1a3b5c7d9e2f";

fn verify(vcon: &Path, log: &Path, key: Option<&Path>) -> (i32, String) {
    let mut c = std::process::Command::new(binary());
    c.args(["verify", "--vcon", vcon.to_str().unwrap(), "--audit-log", log.to_str().unwrap()]);
    if let Some(k) = key {
        c.args(["--hmac-key-file", k.to_str().unwrap()]);
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Record ids written more than once.
fn repeated(log: &Path) -> usize {
    let mut n: HashMap<String, usize> = HashMap::new();
    for l in lines(log) {
        *n.entry(l["record_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    n.values().filter(|c| **c > 1).count()
}

/// The log with `edit` applied to the lines of one run, written next to it.
fn tampered(log: &Path, name: &str, edit: impl Fn(&mut Vec<Value>)) -> std::path::PathBuf {
    let mut l = lines(log);
    edit(&mut l);
    let p = log.with_file_name(name);
    std::fs::write(&p, l.iter().map(|v| v.to_string() + "\n").collect::<String>()).unwrap();
    p
}

/// The group has read every entry of the stream and acknowledged them all (`lag` alone reads 0
/// while Redis cannot tell it yet, e.g. before the group's first read).
fn all_read_and_acked(redis: &RedisServer) -> bool {
    let mut conn = redis.conn();
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut conn).unwrap_or(0);
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO").arg("GROUPS").arg(STREAM).query(&mut conn).unwrap_or_default();
    let read = groups.iter().find_map(|g| match g.get("entries-read") {
        Some(redis::Value::Int(n)) => Some(*n),
        _ => None,
    });
    read == Some(len) && redis.pending(STREAM, GROUP) == 0
}

#[test]
fn sigkill_redelivery_repeats_pass_verify_and_tampering_still_fails() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let dir = crate::support::temp_dir();
    let (log, key) = (dir.path().join("audit.jsonl"), dir.path().join("audit.key"));
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 20, max_batch_spans: 64}}\nstream: {{consumer: audit, block_ms: 200, read_count: 64}}\ntracers:\n  audit:\n    module: audit_log\n    options: {{path: \"{}\", hmac_key_file: \"{}\"}}\n",
        redis.url(),
        rx.grpc_endpoint(),
        log.display(),
        key.display()
    );
    // A backlog first, so every kill lands while batches are being written and acknowledged.
    let out = std::process::Command::new(env_path("VCON_OTEL_PYTHON"))
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/load_mix.py"), "--redis-url", &redis.url(), "--vcons", "1500", "--rate", "5000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut bridge = Bridge::run(&cfg);
    let mut kills = 0;
    while kills < 12 && !(kills >= 3 && repeated(&log) > 0) {
        let seen = rx.spans().len();
        wait_until(Duration::from_secs(10), || rx.spans().len() >= seen + 100 || all_read_and_acked(&redis));
        bridge.kill_hard();
        kills += 1;
        bridge = Bridge::run(&cfg);
    }
    assert!(wait_until(Duration::from_secs(60), || redis.pending(STREAM, GROUP) == 0 && redis.lag(STREAM, GROUP) == 0), "{}", bridge.output());
    let repeats = repeated(&log);
    assert!(repeats > 0, "{kills} kills left no re-delivered record in the log; the test proves nothing");

    // Every vCon still stored, checked with the key: no false tamper alarm.
    let mut conn = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("vcon:*").query(&mut conn).unwrap();
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    let mut proven = None;
    for k in keys.iter().filter(|k| k.matches(':').count() == 1) {
        let doc: String = redis::cmd("JSON.GET").arg(k).query(&mut conn).unwrap();
        let vcon = dir.path().join("vcon.json");
        std::fs::write(&vcon, &doc).unwrap();
        let (code, msg) = verify(&vcon, &log, Some(&key));
        assert_ne!(code, 2, "a false tamper alarm for {k} after {kills} kills: {msg}");
        *codes.entry(code).or_default() += 1;
        if code == 0 && proven.is_none() {
            let keep = dir.path().join("proven.json");
            std::fs::rename(&vcon, &keep).unwrap();
            proven = Some((keep, k["vcon:".len()..].to_string()));
        }
    }
    eprintln!("{kills} SIGKILLs, {repeats} record ids written more than once; verify exit codes over {} vCons: {codes:?}", keys.len());
    assert!(codes.get(&0).copied().unwrap_or(0) * 2 > keys.len(), "most vCons verify: {codes:?}");
    // Every run's chain comes from its journal, whichever process read which record: every run
    // is terminated and whole (no exit 4 "not proven", no exit 3 "no record").
    assert!(!codes.contains_key(&3) && !codes.contains_key(&4), "every run proven across {kills} kills: {codes:?}");

    // Tampering with a proven vCon's runs still fails, repeats or not.
    let (vcon, uuid) = proven.expect("a vCon that verifies");
    let ours = |v: &Value| v["vcon_uuid"] == uuid.as_str() || v["current_uuid"] == uuid.as_str();
    let last_step = |l: &Vec<Value>| l.iter().rposition(|v| ours(v) && v["event"] != "run_end").unwrap();
    let changed = tampered(&log, "changed.jsonl", |l| {
        let i = last_step(l);
        l[i]["content_sha256"] = Value::from("0".repeat(64));
    });
    assert_eq!(verify(&vcon, &changed, Some(&key)).0, 2, "changed content");
    let deleted = tampered(&log, "deleted.jsonl", |l| {
        let (i, id) = (last_step(l), l[last_step(l)]["record_id"].clone());
        l.remove(i);
        l.retain(|v| v["record_id"] != id);
    });
    let (code, msg) = verify(&vcon, &deleted, Some(&key));
    assert_eq!(code, 2, "deleted last step: {msg}");
    assert!(msg.contains("the run's last steps are missing"), "{msg}");
    // The chain rewritten consistently from the first step on: passes unkeyed, fails with the key.
    let rewritten = tampered(&log, "rewritten.jsonl", |l| {
        let run = l[last_step(l)]["run"].clone();
        let first = l.iter().position(|v| v["run"] == run).unwrap();
        let mut value = chain::genesis(l[first]["vcon_uuid"].as_str().unwrap(), run.as_str().unwrap());
        let mut done = std::collections::HashSet::new();
        for (n, v) in l.iter_mut().enumerate().filter(|(_, v)| v["run"] == run) {
            if !done.insert(v["record_id"].to_string()) {
                continue;
            }
            if n == first {
                v["content_sha256"] = Value::from("f".repeat(64));
            }
            v["prev_chain"] = Value::from(hex::encode(value));
            value = chain::step(&value, v["step_name"].as_str().unwrap(), v["step_index"].as_i64().unwrap(), v["content_sha256"].as_str().unwrap());
            v["chain"] = Value::from(hex::encode(value));
        }
        // Repeats of the rewritten records would now differ from them: drop them, as a forger would.
        let mut seen = std::collections::HashSet::new();
        l.retain(|v| v["run"] != run || seen.insert(v["record_id"].to_string()));
    });
    let (code, msg) = verify(&vcon, &rewritten, None);
    assert_eq!(code, 0, "without the key a consistent rewrite is not detected: {msg}");
    assert!(msg.contains("not proven"), "verify says what it could not check: {msg}");
    let (code, msg) = verify(&vcon, &rewritten, Some(&key));
    assert_eq!(code, 2, "with the key the rewrite fails: {msg}");
    assert!(msg.contains("mac does not match"), "{msg}");
}
