//! The producer's snapshot budget with the bridge away, end to end: the real Python producer
//! (`python/tests/chain_load.py`, calling `vcon_otel.tracer` as vCon Server's chain loop does, with
//! `snapshot_budget` low) writes many more tracer calls than the budget while no bridge runs; the
//! live snapshots never exceed the budget and Redis memory stays under the budget's worth of copies;
//! then the bridge starts, drains, and the spans of the skipped steps say `vcon.hash.unknown =
//! budget` while the others carry their hashes, and `/metrics` counts the skips.

use crate::support::bridge::Bridge;
use crate::support::otlp::{Received, Receiver};
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const BUDGET: usize = 50;
const VCONS: usize = 100;
/// The chain's links (`--links tag,tag2,tag3`): each vCon makes LINKS + 1 tracer calls.
const LINKS: usize = 3;
const CALLS: usize = VCONS * (LINKS + 1);

/// A vCon of about 100 KB of stored JSON, its bulk a transcript of 2,400 small word objects: the
/// costliest kind to copy in RedisJSON (node structure, not shared strings), so the budget matters.
fn transcript_vcon(uuid: &str) -> serde_json::Value {
    let vocab = ["yes", "the", "account", "number", "is", "thank", "you", "for", "calling"];
    let at = |i: usize, d: f64| ((i as f64 * 0.29 + d) * 100.0).round() / 100.0;
    let words: Vec<serde_json::Value> = (0..2400).map(|i| serde_json::json!({"word": vocab[i % vocab.len()], "start": at(i, 0.0), "end": at(i, 0.25)})).collect();
    serde_json::json!({"uuid": uuid, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00", "parties": [{"tel": "+15555550100"}],
        "dialog": [], "analysis": [{"type": "transcript", "dialog": 0, "vendor": "test", "encoding": "json", "body": {"words": words}}], "attachments": []})
}

fn used_memory(c: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).expect("used_memory")
}

fn live_snapshots(c: &mut redis::Connection) -> usize {
    redis::cmd("KEYS").arg("vcon_otel:snap:*").query::<Vec<String>>(c).unwrap().len()
}

fn zcard(c: &mut redis::Connection) -> usize {
    redis::cmd("ZCARD").arg("vcon_otel:snaps").query(c).unwrap()
}

/// Redis memory taken by one server-side copy of `vcon`: `used_memory` over [`BUDGET`] `COPY`s (the
/// producer's own operation), the copies deleted again.
fn per_copy_cost(c: &mut redis::Connection, vcon: &str) -> i64 {
    let before = used_memory(c);
    for i in 0..BUDGET {
        let _: i64 = redis::cmd("COPY").arg(format!("vcon:{vcon}")).arg(format!("calibrate:{i}")).query(c).unwrap();
    }
    let cost = (used_memory(c) - before) / BUDGET as i64;
    for i in 0..BUDGET {
        let _: i64 = redis::cmd("DEL").arg(format!("calibrate:{i}")).query(c).unwrap();
    }
    cost
}

/// Highest (index members, live snapshot keys, used_memory) seen while `run` runs, polled on a
/// connection of its own.
fn watch_while(redis: &RedisServer, run: impl FnOnce()) -> (usize, usize, i64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut c = redis.conn();
    let s = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut peak = (0, 0, 0);
        loop {
            let done = s.load(Ordering::SeqCst);
            peak = (peak.0.max(zcard(&mut c)), peak.1.max(live_snapshots(&mut c)), peak.2.max(used_memory(&mut c)));
            if done {
                return peak;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    run();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap()
}

fn produce(redis: &RedisServer, vcons: &[String]) {
    let out = std::process::Command::new(env_path("VCON_OTEL_PYTHON"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/chain_load.py"))
        .args(["--redis-url", &redis.url(), "--links", "tag,tag2,tag3", "--options", &format!("{{\"snapshot_budget\": {BUDGET}}}")])
        .args(vcons)
        .output()
        .expect("run chain_load.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["errors"].as_array().unwrap().iter().all(|e| e.is_null()), "{v}");
}

/// The producer's records, in stream order.
fn records(redis: &RedisServer) -> Vec<serde_json::Value> {
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE").arg("vcon_otel:events").arg("-").arg("+").query(&mut redis.conn()).unwrap();
    entries.into_iter().map(|(_, f)| serde_json::from_str(&f["r"]).unwrap()).collect()
}

/// What the producer put in `compliance`: `budget` for a skipped copy, `snapshot` for a copy.
fn form(r: &serde_json::Value) -> &'static str {
    match (&r["compliance"]["skipped"], &r["compliance"]["snapshot"]) {
        (serde_json::Value::String(s), _) if s == "budget" => "budget",
        (_, serde_json::Value::String(_)) => "snapshot",
        _ => panic!("unexpected compliance in {r}"),
    }
}

fn span_of<'a>(spans: &'a [Received], rec: &serde_json::Value) -> &'a Received {
    let run = rec["run"].as_str().unwrap();
    let index = rec["link_index"].as_i64().unwrap();
    spans
        .iter()
        .find(|s| {
            s.attr("vcon.run.id").as_deref() == Some(run)
                && if index < 0 { s.span.parent_span_id.is_empty() } else { s.attr("vcon.link.index") == Some(index.to_string()) && s.span.name.starts_with("link ") }
        })
        .unwrap_or_else(|| panic!("no span for {rec}"))
}

/// A copied step's span carries its hash; a skipped link step's span says `vcon.hash.unknown =
/// budget` and no hash. A pre-chain call (`link_index -1`) has no span of its own: its hash is the
/// root's `vcon.hash.entering`; when the call was skipped the root says
/// `vcon.hash.entering_unknown = budget` instead.
fn check_step(spans: &[Received], rec: &serde_json::Value) {
    let s = span_of(spans, rec);
    let pre_chain = rec["link_index"].as_i64().unwrap() < 0;
    let (hash, unknown) = if pre_chain { (s.attr("vcon.hash.entering"), s.attr("vcon.hash.entering_unknown")) } else { (s.attr("vcon.hash.sha256"), s.attr("vcon.hash.unknown")) };
    match form(rec) {
        "budget" if pre_chain => assert_eq!((hash, unknown.as_deref()), (None, Some("budget")), "root of run {}: no entering hash without a copy, and why", rec["run"]),
        "budget" => assert_eq!((hash, unknown.as_deref()), (None, Some("budget")), "{} of run {}: a skipped step says why", s.span.name, rec["run"]),
        _ => {
            let h = hash.unwrap_or_else(|| panic!("{} carries the hash of its copy: {:?}", s.span.name, s.span.attributes));
            assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
            assert_eq!(unknown, None, "{}", s.span.name);
        }
    }
}

#[test]
fn past_the_budget_the_producer_skips_redis_stays_bounded_and_spans_say_hash_unknown_budget() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    let vcons: Vec<String> = (0..VCONS).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for u in &vcons {
        let _: () = redis::cmd("JSON.SET").arg(format!("vcon:{u}")).arg("$").arg(transcript_vcon(u).to_string()).query(&mut c).unwrap();
    }
    let per_copy = per_copy_cost(&mut c, &vcons[0]);
    assert!(per_copy > 50_000, "a copy of a transcript-heavy vCon costs its node structure: {per_copy} B");

    // The bridge is not running: nothing hashes or deletes the copies.
    let baseline = used_memory(&mut c);
    let (peak_index, peak_live, peak_memory) = watch_while(&redis, || produce(&redis, &vcons));
    let recs = records(&redis);
    assert_eq!(recs.len(), CALLS, "one record per tracer call");
    assert!(peak_index <= BUDGET && peak_live <= BUDGET, "live snapshots over the budget: index {peak_index}, keys {peak_live}");
    assert_eq!((zcard(&mut c), live_snapshots(&mut c)), (BUDGET, BUDGET), "the budget is used up, no more");
    // The bound: the budget's copies, plus the stream's records, the links' tags, the last-run
    // pointers and the clients' buffers: 1 KiB per call and 1 MiB (measured: about 0.6 MB in all).
    let bound = BUDGET as i64 * per_copy + CALLS as i64 * 1024 + (1 << 20);
    let grown = peak_memory.max(used_memory(&mut c)) - baseline;
    assert!(grown < bound, "used_memory grew {grown} B, over the bound {bound} B ({BUDGET} copies of {per_copy} B + margin)");
    assert!((CALLS as i64) * per_copy > 4 * bound, "without the budget the copies alone would be far over the bound");

    let forms: Vec<&str> = recs.iter().map(form).collect();
    let skipped = forms.iter().filter(|f| **f == "budget").count();
    assert_eq!(skipped, CALLS - BUDGET, "the producer skipped every call past the budget");
    assert!(forms[..BUDGET].iter().all(|f| *f == "snapshot"), "the first {BUDGET} calls got their copies: {forms:?}");

    let rx = Receiver::start(vec![]);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: budget, block_ms: 200}}\n",
        redis.url(),
        rx.grpc_endpoint()
    );
    let bridge = Bridge::run(&cfg);
    assert!(rx.wait_for_spans(VCONS * (LINKS + 1), T), "spans: {} of {}\n{}", rx.spans().len(), VCONS * (LINKS + 1), bridge.output());
    assert!(wait_until(T, || redis.lag("vcon_otel:events", "vcon-otel") == 0 && redis.pending("vcon_otel:events", "vcon-otel") == 0));
    let spans = rx.spans();
    for rec in &recs {
        check_step(&spans, rec);
    }
    // A copied last step hashes the document as it is now (nothing changed it since).
    let last_copied = recs.iter().rfind(|r| form(r) == "snapshot" && r["link_index"] == LINKS as i64 - 1).expect("a copied last link");
    let stored: String = redis::cmd("JSON.GET").arg(format!("vcon:{}", last_copied["vcon_uuid"].as_str().unwrap())).query(&mut c).unwrap();
    let want = vcon_otel::compliance::vcon_hash(stored.as_bytes()).unwrap().sha256_hex;
    assert_eq!(span_of(&spans, last_copied).attr("vcon.hash.sha256"), Some(want));

    let metric = bridge.metric_value(&["vcon_otel_snapshots_skipped_total{", "reason=\"budget\""]);
    assert_eq!(metric, Some(skipped as f64), "{}", bridge.metrics_text());
    assert!(wait_until(T, || live_snapshots(&mut c) == 0 && zcard(&mut c) == 0), "the copies are deleted once hashed");
    assert_eq!(bridge.metric_value(&["vcon_otel_snapshots_deleted_total"]), Some(BUDGET as f64));
}
