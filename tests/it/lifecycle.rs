//! The snapshot lifecycle and the hosted JLINC tracer in every install mode, through the real
//! producer (python/tests/conserver_sim.py calling vcon_otel's tracer and hooks as vCon Server
//! does): every snapshot is deleted once hashed, the budget index empties, and JLINC sends the
//! N+1 events per run that upstream sends, each with the hash of the right document.

use crate::support::bridge::Bridge;
use crate::support::otlp::{Received, Receiver};
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use crate::tracers::{jlinc_cfg, jlinc_store, produced};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Mode {
    Tracer,
    TracerAndHooks,
    HooksOnly,
}

fn sim(redis: &RedisServer, scenario: &str, mode: Mode) -> Vec<String> {
    let mut cmd = std::process::Command::new(env_path("VCON_OTEL_PYTHON"));
    cmd.args([concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/conserver_sim.py"), "--redis-url", &redis.url(), "--scenario", scenario]);
    match mode {
        Mode::Tracer => {}
        Mode::TracerAndHooks => {
            cmd.arg("--hooks");
        }
        Mode::HooksOnly => {
            cmd.args(["--hooks", "--no-tracer"]);
        }
    }
    let out = cmd.output().expect("run conserver_sim.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    match v.get("vcon_uuids").and_then(|u| u.as_array()) {
        Some(a) => a.iter().map(|u| u.as_str().unwrap().to_string()).collect(),
        None => vec![v["vcon_uuid"].as_str().unwrap().to_string()],
    }
}

fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(pattern).query(&mut redis.conn()).unwrap()
}

fn zcard(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("ZCARD").arg(key).query(&mut redis.conn()).unwrap()
}

/// The link spans of the run that starts with `vcon`, by link index, and the root.
fn run_spans(rx: &Receiver, vcon: &str) -> (Received, Vec<Received>) {
    let spans = rx.spans();
    let root = spans.iter().find(|s| s.span.parent_span_id.is_empty() && s.attr("vcon.uuid").as_deref() == Some(vcon)).expect("root").clone();
    let mut links: Vec<Received> =
        spans.into_iter().filter(|s| s.span.trace_id == root.span.trace_id && s.span.name.starts_with("link ")).collect();
    links.sort_by_key(|s| s.attr("vcon.link.index").unwrap().parse::<i64>().unwrap());
    (root, links)
}

/// What JLINC must have received for one run: the entering document's hash at -1, then each link
/// span's hash (in `upstream` mode after a swap: the document the swapping link was given).
fn expected_hashes(root: &Received, links: &[Received], upstream: bool) -> Vec<String> {
    let mut want = vec![root.attr("vcon.hash.entering").expect("entering hash")];
    for l in links {
        let own = l.attr("vcon.hash.sha256").unwrap_or_else(|| panic!("{} has a hash: {:?}", l.span.name, l.span.attributes));
        let swapped = l.attr("vcon.uuid.after").is_some() && l.attr("vcon.hash.subject").is_none();
        want.push(if upstream && swapped { want.last().unwrap().clone() } else { own });
    }
    want
}

fn check_mode(mode: Mode, sender_mode: &str) {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let store = jlinc_store();
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: lc, block_ms: 200}}\nruns: {{idle_timeout_secs: 2}}\ntracers:\n{}",
        redis.url(),
        rx.grpc_endpoint(),
        jlinc_cfg(&store, &format!(", sender_mode: {sender_mode}"))
    );
    let bridge = Bridge::run(&cfg);
    let mut sent = 0;
    // (scenario, tracer calls): halt stops after its second link, which still gets its call.
    for (scenario, calls) in [("three_links", 4), ("swap", 4), ("halt", 3)] {
        let vcons = sim(&redis, scenario, mode);
        sent += calls;
        let ctx = format!("{mode:?} {sender_mode} {scenario}");
        assert!(wait_until(T, || produced(&store).len() >= sent), "{ctx}: {} events, want {sent}\n{}", produced(&store).len(), bridge.output());
        assert!(wait_until(T, || rx.spans().iter().any(|s| s.span.parent_span_id.is_empty() && s.attr("vcon.uuid").as_deref() == Some(&vcons[0]))), "{ctx}: root");
        let (root, links) = run_spans(&rx, &vcons[0]);
        let events = produced(&store);
        let got: Vec<String> = events[sent - calls..sent].iter().map(|e| e["data"]["hash"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, expected_hashes(&root, &links, sender_mode == "upstream"), "{ctx}: JLINC hashes, step by step");
    }
    assert_eq!(produced(&store).len(), sent, "{mode:?}: N+1 events per run, no more");
    assert!(wait_until(T, || redis.pending("vcon_otel:events", "vcon-otel") == 0 && redis.pending("vcon_otel:events", "vcon-otel:tracer:jl") == 0));
    assert!(wait_until(T, || keys(&redis, "vcon_otel:snap:*").is_empty()), "{mode:?}: snapshots left: {:?}", keys(&redis, "vcon_otel:snap:*"));
    assert_eq!(zcard(&redis, "vcon_otel:snaps"), 0, "{mode:?}: the budget index empties with the snapshots");
    assert!(!keys(&redis, "vcon_otel:steps:*").is_empty(), "step records stay for their TTL");
    assert!(bridge.metric_value(&["vcon_otel_snapshots_deleted_total"]).unwrap_or(0.0) > 0.0, "{}", bridge.metrics_text());
}

#[test]
fn tracer_only_deletes_every_snapshot_and_jlinc_sends_n_plus_1_events_with_each_steps_hash() {
    check_mode(Mode::Tracer, "intended");
}

#[test]
fn tracer_and_hooks_deletes_every_snapshot_and_jlinc_sends_the_pre_chain_event_too() {
    check_mode(Mode::TracerAndHooks, "intended");
}

#[test]
fn hooks_only_deletes_every_snapshot_and_jlinc_sends_n_plus_1_events() {
    check_mode(Mode::HooksOnly, "intended");
}

#[test]
fn upstream_mode_sends_the_document_a_swapping_link_was_given_in_every_mode() {
    for mode in [Mode::Tracer, Mode::TracerAndHooks, Mode::HooksOnly] {
        check_mode(mode, "upstream");
    }
}

#[test]
fn a_jlinc_tracer_that_sends_whole_vcons_gets_them_and_deletes_them_after_use() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let store = jlinc_store();
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: lc, block_ms: 200}}\ntracers:\n{}",
        redis.url(),
        rx.grpc_endpoint(),
        jlinc_cfg(&store, ", hash_event_data: false")
    );
    let bridge = Bridge::run(&cfg);
    let vcons = sim(&redis, "three_links", Mode::Tracer);
    assert!(wait_until(T, || produced(&store).len() == 4), "{}", bridge.output());
    for e in produced(&store) {
        assert_eq!(e["data"]["uuid"].as_str(), Some(vcons[0].as_str()), "the whole vCon is sent");
    }
    assert!(wait_until(T, || rx.spans().iter().filter(|s| s.attr("vcon.hash.sha256").is_some()).count() >= 3), "the main pipeline still hashes");
    assert!(wait_until(T, || keys(&redis, "vcon_otel:snap:*").is_empty()), "snapshots left: {:?}", keys(&redis, "vcon_otel:snap:*"));
    assert_eq!(zcard(&redis, "vcon_otel:snaps"), 0);
}
