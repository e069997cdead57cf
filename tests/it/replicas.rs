//! Replicas sharing one consumer group, driven by the real Python producer in every install mode
//! (tracer only, tracer + hooks, hooks only; swaps, halts, raising links), with a replica SIGKILLed
//! and restarted under load: every span arrives, duplicates are identical, no run is closed
//! `incomplete`, and the group drains within seconds of the load ending — with the default
//! `runs.idle_timeout_secs` (300).

use crate::support::bridge::Bridge;
use crate::support::otlp::{Receiver, Received};
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use vcon_otel::ids::{span_id, trace_id, SpanRole};

const STREAM: &str = "vcon_otel:events";
const GROUP: &str = "vcon-otel";

fn replica_config(redis: &RedisServer, rx: &Receiver, name: &str) -> String {
    format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: {name}, block_ms: 200}}\n",
        redis.url(),
        rx.grpc_endpoint()
    )
}

/// Starts the paced producer (`python/tests/load_mix.py`) in the background.
fn load(redis: &RedisServer, vcons: usize, rate: u32) -> std::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/load_mix.py");
    std::process::Command::new(env_path("VCON_OTEL_PYTHON"))
        .args([script, "--redis-url", &redis.url(), "--vcons", &vcons.to_string(), "--rate", &rate.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run load_mix.py")
}

/// The spans a bridge must export for the records in the stream: one root per run, one link span
/// per record that completes a link, one storage span per completed storage.
fn expected(redis: &RedisServer) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    let mut conn = redis.conn();
    let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE").arg(STREAM).arg("-").arg("+").query(&mut conn).unwrap();
    let mut out = BTreeSet::new();
    for (_, fields) in rows {
        let r: serde_json::Value = serde_json::from_str(&fields.iter().find(|(k, _)| k == "r").unwrap().1).unwrap();
        let (u, run) = (r["vcon_uuid"].as_str().unwrap(), r["run"].as_str().unwrap());
        let t = trace_id(u, run).to_vec();
        out.insert((t.clone(), span_id(u, run, SpanRole::Root).to_vec()));
        let i = r["link_index"].as_i64().unwrap_or(-1);
        match r["event"].as_str().unwrap() {
            "tracer_call" | "link_complete" | "link_error" if i >= 0 => {
                out.insert((t, span_id(u, run, SpanRole::Link(i)).to_vec()));
            }
            "storage_complete" | "storage_error" => {
                out.insert((t, span_id(u, run, SpanRole::Storage(r["storage"].as_str().unwrap())).to_vec()));
            }
            _ => {}
        }
    }
    out
}

fn by_id(spans: Vec<Received>) -> BTreeMap<(Vec<u8>, Vec<u8>), Vec<Received>> {
    let mut m: BTreeMap<_, Vec<Received>> = BTreeMap::new();
    for s in spans {
        m.entry((s.span.trace_id.clone(), s.span.span_id.clone())).or_default().push(s);
    }
    m
}

fn replicas_drain_promptly(n: usize) {
    const VCONS: usize = 3_000;
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let names: Vec<String> = (1..=n).map(|i| format!("rel-bridge-{i}")).collect();
    let mut bridges: Vec<Bridge> = names.iter().map(|name| Bridge::run(&replica_config(&redis, &rx, name))).collect();
    let mut producer = load(&redis, VCONS, 400);
    // Two SIGKILLs of the last replica while the load runs; each restart re-reads its own pending.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(2_000));
        let last = bridges.len() - 1;
        bridges[last].kill_hard();
        bridges[last] = Bridge::run(&replica_config(&redis, &rx, &names[last]));
    }
    let status = producer.wait().unwrap();
    assert!(status.success(), "the producer failed");
    let stopped = Instant::now();
    let drained = wait_until(Duration::from_secs(10), || redis.pending(STREAM, GROUP) == 0 && redis.lag(STREAM, GROUP) == 0);
    let took = stopped.elapsed();
    assert!(drained, "{n} replicas: {} entries still pending 10 s after the load stopped", redis.pending(STREAM, GROUP));
    eprintln!("{n} replicas: group drained {:.1} s after the load stopped", took.as_secs_f64());
    let want = expected(&redis);
    assert!(wait_until(Duration::from_secs(10), || by_id(rx.spans()).keys().cloned().collect::<BTreeSet<_>>().is_superset(&want)));
    let got = by_id(rx.spans());
    let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "{n} replicas: {} of {} expected spans missing", missing.len(), want.len());
    let mut duplicates = 0;
    for (id, copies) in &got {
        assert!(copies.windows(2).all(|w| w[0].span == w[1].span && w[0].resource == w[1].resource), "copies of span {id:?} differ");
        duplicates += copies.len() - 1;
    }
    let incomplete = got.values().filter(|c| c[0].attr("vcon.run.outcome").as_deref() == Some("incomplete")).count();
    assert_eq!(incomplete, 0, "{n} replicas: runs closed incomplete");
    let finished_elsewhere: f64 = bridges.iter().map(|b| b.metric_value(&["vcon_otel_runs_finished_elsewhere_total"]).unwrap_or(0.0)).sum();
    eprintln!("{n} replicas: {} spans, {duplicates} duplicates (identical), {finished_elsewhere} runs finished by another replica", want.len());
}

#[test]
fn two_replicas_with_kills_drain_within_seconds_and_lose_nothing() {
    replicas_drain_promptly(2);
}

#[test]
fn three_replicas_with_kills_drain_within_seconds_and_lose_nothing() {
    replicas_drain_promptly(3);
}
