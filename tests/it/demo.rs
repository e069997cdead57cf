//! `vcon-otel demo --redis-url`: the simulated conserver writing into a real Redis (with RedisJSON)
//! the records the Python producer writes, with server-side snapshots, exported by a real bridge.

use crate::support::bridge::{binary, Bridge};
use crate::support::otlp::Receiver;
use crate::support::redis::RedisServer;
use crate::support::wait_until;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const STREAM: &str = "vcon_otel:events";

fn entries(redis: &RedisServer) -> Vec<Vec<u8>> {
    let v: Vec<(String, Vec<(String, Vec<u8>)>)> = redis::cmd("XRANGE").arg(STREAM).arg("-").arg("+").query(&mut redis.conn()).expect("XRANGE");
    v.into_iter().filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "r").map(|(_, p)| p)).collect()
}

#[test]
fn demo_into_redis_writes_records_with_snapshots_that_the_bridge_exports_with_their_hashes() {
    let redis = RedisServer::start();
    let out = std::process::Command::new(binary())
        .args(["demo", "--redis-url", &redis.url(), "--vcons", "4", "--workers", "2", "--pace-ms", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let payloads = entries(&redis);
    assert!(payloads.len() >= 12, "{} records", payloads.len());
    // Every record decodes with the bridge's own schema, except the demo's deliberately malformed
    // ones; every snapshot it names is a stored vCon, hashed here as the bridge will hash it.
    let mut snapshot_hashes = HashSet::new();
    let mut decoded = 0;
    for p in &payloads {
        let rec: Value = serde_json::from_slice(p).unwrap();
        if rec["run"] == "bad" {
            assert!(vcon_otel::event::decode(p).is_err());
            continue;
        }
        vcon_otel::event::decode(p).unwrap_or_else(|e| panic!("{}: {:?}", String::from_utf8_lossy(p), e.detail));
        decoded += 1;
        if let Some(key) = rec["compliance"]["snapshot"].as_str() {
            let doc: String = redis::cmd("JSON.GET").arg(key).query(&mut redis.conn()).unwrap_or_else(|e| panic!("snapshot {key}: {e}"));
            let stored: Value = serde_json::from_str(&doc).unwrap();
            let snapped = if rec["event"] == "tracer_call" { &rec["in_vcon_uuid"] } else { &rec["out_vcon_uuid"] };
            assert_eq!(&stored["uuid"], snapped, "snapshot {key} holds the vCon the record names");
            let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut redis.conn()).unwrap();
            assert!(ttl > 0 && ttl <= 600, "snapshot {key} expires (ttl {ttl})");
            snapshot_hashes.insert(vcon_otel::compliance::vcon_hash(doc.as_bytes()).unwrap().sha256_hex);
        }
    }
    assert!(decoded >= 12 && !snapshot_hashes.is_empty());

    let rx = Receiver::start(vec![]);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", protocol: grpc, max_batch_delay_ms: 50}}\nstream: {{consumer: test-bridge, block_ms: 200}}\nruns: {{idle_timeout_secs: 1}}\n",
        redis.url(),
        rx.grpc_endpoint()
    );
    let bridge = Bridge::run(&cfg);
    assert!(wait_until(Duration::from_secs(30), || rx.spans().iter().filter(|s| s.span.parent_span_id.is_empty()).count() >= 4), "{}", bridge.output());
    let spans = rx.spans();
    let ok_links: Vec<_> = spans.iter().filter(|s| s.attr("vcon.link.outcome").as_deref() == Some("ok")).collect();
    assert!(!ok_links.is_empty());
    for s in &ok_links {
        let h = s.attr("vcon.hash.sha256").unwrap_or_else(|| panic!("link {} has no hash:\n{}", s.span.name, bridge.output()));
        assert!(snapshot_hashes.contains(&h), "link {} hash {h} is not the hash of a stored snapshot", s.span.name);
    }
    assert!(spans.iter().any(|s| s.attr("vcon.hash.final").is_some()), "a root carries the final hash");
}

#[test]
fn demo_into_redis_without_the_json_module_fails_with_a_hint() {
    // A plain Redis without RedisJSON is not what the conserver uses: say so, naming the URL.
    let port = crate::support::free_port();
    let mut child = std::process::Command::new(crate::support::env_path("VCON_OTEL_REDIS_SERVER"))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(5), || redis::Client::open(url.as_str()).and_then(|c| c.get_connection()).is_ok()));
    let out = std::process::Command::new(binary()).args(["demo", "--redis-url", &url, "--vcons", "1"]).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url) && err.contains("JSON.SET failed") && err.contains("hint: use redis-stack-server"), "{err}");
}

#[test]
fn demo_in_process_prints_each_links_short_hash_and_each_runs_outcome() {
    let port = crate::support::free_port();
    let out = std::process::Command::new(binary())
        .args(["demo", "--vcons", "4", "--workers", "2", "--pace-ms", "1", "--admin-addr", &format!("127.0.0.1:{port}")])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let traces = text.lines().filter(|l| l.starts_with("trace ")).count();
    let outcomes: Vec<&str> = text.lines().filter(|l| l.starts_with("  = ")).collect();
    assert!(traces >= 4 && outcomes.len() == traces, "one outcome line per trace:\n{text}");
    let short_hash = |l: &str| l.split("vcon.hash.sha256=").nth(1).is_some_and(|h| h.chars().take(12).all(|c| c.is_ascii_hexdigit()) && h[12..].starts_with('…'));
    let ok_links: Vec<&str> = text.lines().filter(|l| l.contains("─ link ") && l.contains("] ok ")).collect();
    assert!(!ok_links.is_empty() && ok_links.iter().all(|l| short_hash(l)), "{text}");
    assert!(outcomes.iter().all(|l| l.contains(" · vCon ") && l.contains(" → ")), "{text}");
}
