//! Replicas sharing one consumer group, driven by the real Python producer in every install mode
//! (tracer only, tracer + hooks, hooks only; swaps, halts, raising links), with a replica SIGKILLed
//! and restarted under load: every span arrives, duplicates are identical, no run is closed
//! `incomplete`, and the group drains within seconds of the load ending — with the default
//! `runs.idle_timeout_secs` (300). What the replicas exported equals what one bridge exports for
//! the same records (every span, same IDs, same content), and `verify` proves every stored vCon
//! from the replicas' audit logs together.

use crate::support::bridge::{binary, Bridge};
use crate::support::otlp::{Receiver, Received};
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use vcon_otel::ids::{span_id, trace_id, SpanRole};

const STREAM: &str = "vcon_otel:events";
const GROUP: &str = "vcon-otel";

fn replica_config(redis: &RedisServer, rx: &Receiver, name: &str, audit: &std::path::Path) -> String {
    format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: {name}, block_ms: 200}}\ntracers:\n  audit:\n    module: audit_log\n    options: {{path: \"{}\"}}\n",
        redis.url(),
        rx.grpc_endpoint(),
        audit.join(format!("{name}.jsonl")).display()
    )
}

/// One bridge on its own group reads the same stream from the beginning (the replicas' completion
/// markers removed first, so it decides every run itself); returns what it exported.
fn single_bridge(redis: &RedisServer) -> BTreeMap<(Vec<u8>, Vec<u8>), Vec<Received>> {
    let mut conn = redis.conn();
    let marks: Vec<String> = redis::cmd("KEYS").arg("vcon_otel:done:*").query(&mut conn).unwrap();
    if !marks.is_empty() {
        let _: () = redis::cmd("DEL").arg(&marks).query(&mut conn).unwrap();
    }
    let rx = Receiver::start(vec![]);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{group: single-check, consumer: single, block_ms: 200}}\n",
        redis.url(),
        rx.grpc_endpoint()
    );
    let b = Bridge::run(&cfg);
    let drained = wait_until(Duration::from_secs(60), || redis.pending(STREAM, "single-check") == 0 && redis.lag(STREAM, "single-check") == 0);
    assert!(drained, "the single bridge did not drain: {}", b.output());
    by_id(rx.spans())
}

/// `verify` exit codes of every 8th vCon stored in Redis (in key order; each check reads every
/// log), against all the replicas' audit logs together.
fn verify_all(redis: &RedisServer, logs: &std::path::Path) -> BTreeMap<i32, usize> {
    let mut conn = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("vcon:*").query(&mut conn).unwrap();
    let mut args = vec!["verify".to_string(), "--vcon".into(), logs.join("vcon.json").display().to_string()];
    for f in std::fs::read_dir(logs).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "jsonl")) {
        args.extend(["--audit-log".to_string(), f.path().display().to_string()]);
    }
    let mut codes = BTreeMap::new();
    let mut keys: Vec<&String> = keys.iter().filter(|k| k.matches(':').count() == 1).collect();
    keys.sort();
    for k in keys.into_iter().step_by(8) {
        let doc: String = redis::cmd("JSON.GET").arg(k).query(&mut conn).unwrap();
        std::fs::write(logs.join("vcon.json"), &doc).unwrap();
        let out = std::process::Command::new(binary()).args(&args).output().unwrap();
        let code = out.status.code().unwrap();
        assert!(code == 0 || code == 1, "verify of {k} across replicas' logs: exit {code}: {}", String::from_utf8_lossy(&out.stdout));
        *codes.entry(code).or_default() += 1;
    }
    codes
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
    let audit = crate::support::temp_dir();
    let names: Vec<String> = (1..=n).map(|i| format!("rel-bridge-{i}")).collect();
    let config = |name: &str| replica_config(&redis, &rx, name, audit.path());
    let mut bridges: Vec<Bridge> = names.iter().map(|name| Bridge::run(&config(name))).collect();
    let mut producer = load(&redis, VCONS, 400);
    // Two SIGKILLs of the last replica while the load runs; each restart re-reads its own pending.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(2_000));
        let last = bridges.len() - 1;
        bridges[last].kill_hard();
        bridges[last] = Bridge::run(&config(&names[last]));
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
    let no_chain: f64 = bridges.iter().map(|b| b.metric_value(&["vcon_otel_chains_unknown_total"]).unwrap_or(0.0)).sum();
    eprintln!("{n} replicas: {} spans, {duplicates} duplicates (identical), {finished_elsewhere} runs finished by another replica, {no_chain} roots without a chain", want.len());
    let roots = got.values().filter(|c| c[0].span.parent_span_id.is_empty()).count();
    let chained = got.values().filter(|c| c[0].span.parent_span_id.is_empty() && c[0].attr("vcon.hash.chain").is_some()).count();
    assert_eq!(chained, roots, "{n} replicas: every root carries its run's hash chain");

    let codes = verify_all(&redis, audit.path());
    eprintln!("{n} replicas: verify exit codes over every 8th stored vCon, all logs together: {codes:?}");
    assert!(codes.get(&0).copied().unwrap_or(0) * 2 > codes.values().sum::<usize>(), "most vCons verify: {codes:?}");

    let single = single_bridge(&redis);
    assert_eq!(single.keys().collect::<BTreeSet<_>>(), got.keys().collect::<BTreeSet<_>>(), "{n} replicas and one bridge export the same span IDs");
    for (id, copies) in &single {
        let (a, b) = (&copies[0], &got[id][0]);
        assert!(a.span == b.span && a.resource == b.resource, "span {id:?} differs between one bridge and {n} replicas:\n{:?}\n{:?}", a.span, b.span);
    }
}

#[test]
fn two_replicas_with_kills_drain_within_seconds_and_lose_nothing() {
    replicas_drain_promptly(2);
}

#[test]
fn three_replicas_with_kills_drain_within_seconds_and_lose_nothing() {
    replicas_drain_promptly(3);
}
