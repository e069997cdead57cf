//! The audit_log tracer end to end (python producer -> bridge -> JSON Lines file) and `verify`
//! against tampering.

use crate::support::bridge::{binary, Bridge};
use crate::support::otlp::Receiver;
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use std::path::Path;
use std::time::Duration;

fn verify(vcon: &Path, log: &Path) -> (i32, String) {
    let out = std::process::Command::new(binary())
        .args(["verify", "--vcon", vcon.to_str().unwrap(), "--audit-log", log.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn audit_log_records_every_step_and_verify_catches_tampering() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let dir = crate::support::temp_dir();
    let log = dir.path().join("audit.jsonl");
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: audit, block_ms: 200}}\ncompliance: {{sha512_token: true}}\ntracers:\n  audit:\n    module: audit_log\n    options: {{path: \"{}\", retention_policy: 7_years}}\n",
        redis.url(),
        rx.grpc_endpoint(),
        log.display()
    );
    let bridge = Bridge::run(&cfg);
    let out = std::process::Command::new(env_path("VCON_OTEL_PYTHON"))
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/conserver_sim.py"), "--redis-url", &redis.url(), "--scenario", "three_links", "--hooks"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let uuid = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["vcon_uuid"].as_str().unwrap().to_string();
    assert!(rx.wait_for_spans(4, Duration::from_secs(20)), "{}", bridge.output());
    assert!(wait_until(Duration::from_secs(10), || redis.pending("vcon_otel:events", "vcon-otel") == 0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // chain_start, the pre-chain call (its hash is chain_start's: `same_as`), three links,
    // chain_complete, then the run's terminal record
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["chain_start", "pre_chain", "link", "link", "link", "chain_end", "run_end"]);
    let terminal = lines.last().unwrap();
    assert_eq!((terminal["step_name"].as_str(), terminal["step_index"].as_i64()), (Some("complete"), Some(6)), "outcome and step count");
    assert!(!text.contains("+15555550100"), "no party identifier in the audit log");
    let root = rx.spans().into_iter().find(|s| s.span.parent_span_id.is_empty()).unwrap();
    let link = rx.spans().into_iter().find(|s| s.span.name == "link tag").unwrap();
    assert!(link.attr("vcon.hash.sha512").is_some_and(|t| t.starts_with("sha512-") && t.len() == 93), "the sha512 token is on spans when configured");
    assert_eq!(root.attr("vcon.hash.chain").as_deref(), terminal["prev_chain"].as_str(), "the terminal record continues the root's chain value");

    // The vCon as stored now, as a file.
    let doc: String = redis::cmd("JSON.GET").arg(format!("vcon:{uuid}")).query(&mut redis.conn()).unwrap();
    let vcon = dir.path().join("vcon.json");
    std::fs::write(&vcon, &doc).unwrap();
    let (code, msg) = verify(&vcon, &log);
    assert_eq!(code, 0, "{msg}");
    assert!(msg.contains("not proven: the log is not keyed"), "says what an unkeyed log cannot prove: {msg}");

    // One altered byte in the vCon.
    let altered = dir.path().join("altered.json");
    std::fs::write(&altered, doc.replacen("step:tag", "step:tah", 1)).unwrap();
    assert_eq!(verify(&altered, &log).0, 1);

    let tampered = |name: &str, edit: &dyn Fn(&mut Vec<String>)| {
        let mut l: Vec<String> = text.lines().map(str::to_string).collect();
        edit(&mut l);
        let p = dir.path().join(name);
        std::fs::write(&p, l.join("\n") + "\n").unwrap();
        verify(&vcon, &p)
    };
    let (code, msg) = tampered("dropped.jsonl", &|l| {
        l.remove(3);
    });
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("dropped.jsonl:4"), "names the first broken record: {msg}");
    let (code, msg) = tampered("swapped.jsonl", &|l| l.swap(2, 3));
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("swapped.jsonl:3"), "{msg}");
    let (code, msg) = tampered("edited.jsonl", &|l| {
        l[4] = l[4].replacen("\"step_name\":\"tag3\"", "\"step_name\":\"tagX\"", 1);
        assert!(l[4].contains("tagX"), "the edit applies");
    });
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("altered"), "{msg}");
    let (code, msg) = tampered("no_terminal.jsonl", &|l| {
        l.pop();
    });
    assert_eq!(code, 4, "{msg}");
    assert!(msg.contains("no terminal record"), "{msg}");
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"uuid":"nobody"}"#).unwrap();
    assert_eq!(verify(&other, &log).0, 3);
}
