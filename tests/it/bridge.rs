//! The bridge end to end: records in a real Redis stream -> `vcon-otel run` -> a real OTLP receiver.

use crate::support::bridge::{binary, http_get, Bridge};
use crate::support::otlp::{Answer, Receiver, Received};
use crate::support::redis::RedisServer;
use crate::support::rotel::Rotel;
use crate::support::{free_port, wait_until};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const STREAM: &str = "vcon_otel:events";
const GROUP: &str = "vcon-otel";
const T: Duration = Duration::from_secs(20);

fn config(redis: &RedisServer, endpoint: &str, protocol: &str, extra: &str) -> String {
    config_with(redis, endpoint, protocol, "max_batch_delay_ms: 50", extra)
}

/// `export_extra` goes inside the `export:` mapping, `extra` at the top level.
fn config_with(redis: &RedisServer, endpoint: &str, protocol: &str, export_extra: &str, extra: &str) -> String {
    format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{endpoint}\", protocol: \"{protocol}\", initial_backoff_ms: 50, max_backoff_ms: 400, {export_extra}}}\nstream: {{consumer: test-bridge, block_ms: 200}}\n{extra}",
        redis.url()
    )
}

/// A tracer call exactly as the conserver makes it, for run `run` of vCon `uuid` with links a, b, c.
fn call(run: &str, uuid: &str, i: i64, inn: &str, out: &str, ts: u64) -> Value {
    json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": ts, "start_ns": ts - 40,
           "run_start_ns": 1_000, "links": ["a", "b", "c"], "link_index": i, "tracer": "otel",
           "in_vcon_uuid": inn, "out_vcon_uuid": out, "call_ns": 50_000, "producer": {"host": "w1", "pid": 42}})
}

fn push(redis: &RedisServer, records: &[Value]) {
    for r in records {
        redis.xadd(STREAM, &r.to_string());
    }
}

fn three_link_run(run: &str, uuid: &str) -> Vec<Value> {
    vec![call(run, uuid, -1, uuid, uuid, 1_010), call(run, uuid, 0, uuid, uuid, 1_100), call(run, uuid, 1, uuid, uuid, 1_200), call(run, uuid, 2, uuid, uuid, 1_300)]
}

fn by_name<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    spans.iter().find(|s| s.span.name == name).unwrap_or_else(|| panic!("no span {name:?} in {:?}", spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()))
}

fn drained(redis: &RedisServer) -> bool {
    redis.pending(STREAM, GROUP) == 0
}

#[test]
fn three_link_chain_arrives_as_one_root_with_three_children_in_order() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    push(&redis, &three_link_run("r1", "u1"));
    let bridge = Bridge::run(&config(&redis, &rx.grpc_endpoint(), "grpc", "service_name: conserver-test\n"));
    assert!(rx.wait_for_spans(4, T), "{}", bridge.output());
    let spans = rx.spans();
    assert_eq!(spans.len(), 4);
    let roots: Vec<_> = spans.iter().filter(|s| s.span.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "exactly one root");
    let root = roots[0];
    assert_eq!(root.span.name, "chain unknown");
    assert_eq!((root.span.start_time_unix_nano, root.span.end_time_unix_nano), (1_000, 1_300));
    assert_eq!(root.attr("vcon.run.outcome").as_deref(), Some("complete"));
    assert_eq!(root.resource_attr("service.name").as_deref(), Some("conserver-test"));
    assert_eq!(root.resource_attr("service.instance.id").as_deref(), Some("w1:42"));
    let mut children: Vec<_> = spans.iter().filter(|s| !s.span.parent_span_id.is_empty()).collect();
    children.sort_by_key(|s| s.span.start_time_unix_nano);
    let names: Vec<_> = children.iter().map(|s| s.span.name.as_str()).collect();
    assert_eq!(names, ["link a", "link b", "link c"]);
    for (i, c) in children.iter().enumerate() {
        assert_eq!(c.span.parent_span_id, root.span.span_id);
        assert_eq!(c.span.trace_id, root.span.trace_id);
        assert_eq!(c.span.end_time_unix_nano, [1_100, 1_200, 1_300][i]);
        assert_eq!(c.span.start_time_unix_nano, [1_060, 1_160, 1_260][i]);
        assert_eq!(c.attr("vcon.link.index"), Some(i.to_string()));
        assert_eq!(c.attr("vcon.uuid").as_deref(), Some("u1"));
        assert!(c.span.events.iter().any(|e| e.name == "tracer.call"));
    }
    assert_eq!(hex::encode(&root.span.trace_id), hex::encode(vcon_otel::ids::trace_id("u1", "r1")));
    assert!(wait_until(T, || drained(&redis)), "entries left pending");
    assert!(wait_until(T, || bridge.metric_value(&["vcon_otel_runs_total{", "outcome=\"complete\""]) == Some(1.0)), "{}", bridge.metrics_text());
}

#[test]
fn swap_halt_link_error_and_incomplete_runs_give_their_documented_trees() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    // UUID swap at link 1 (tracer only).
    let mut swap = three_link_run("swap", "u1");
    swap[2] = call("swap", "u1", 1, "u2", "u1", 1_200);
    swap[3] = call("swap", "u1", 2, "u2", "u2", 1_300);
    push(&redis, &swap);
    // Halt at link 0, with hooks: the tracer call, then chain_complete with outcome halted.
    let hooks = |event: &str, ts: u64, extra: Value| {
        let mut v = json!({"v": 1, "event": event, "run": "halt", "vcon_uuid": "u3", "ts_ns": ts, "run_start_ns": 1_000,
                           "chain": "main", "hooks": true, "links": ["a", "b", "c"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let mut halted_call = call("halt", "u3", 0, "u3", "u3", 1_100);
    halted_call["hooks"] = json!(true);
    push(&redis, &[hooks("chain_start", 1_000, json!({})), halted_call, hooks("chain_complete", 1_150, json!({"outcome": "halted"}))]);
    // Link error at link 1, with hooks.
    let err = json!({"type": "RuntimeError", "message": "transcription failed"});
    let mut e_call = call("err", "u4", 0, "u4", "u4", 1_100);
    e_call["hooks"] = json!(true);
    let errs = |event: &str, ts: u64, extra: Value| {
        let mut v = hooks(event, ts, extra);
        v["run"] = json!("err");
        v["vcon_uuid"] = json!("u4");
        v
    };
    push(&redis, &[
        errs("chain_start", 1_000, json!({})),
        e_call,
        errs("link_error", 1_180, json!({"link": "b", "link_index": 1, "start_ns": 1_110, "error": err})),
        errs("chain_error", 1_190, json!({"error": err})),
    ]);
    // Tracer only, link 1 raised: no more calls, so the run is closed by the idle timeout.
    push(&redis, &three_link_run("lost", "u5")[..2]);

    let bridge = Bridge::run(&config(&redis, &rx.grpc_endpoint(), "grpc", "runs: {idle_timeout_secs: 1}\n"));
    // swap 4 + halt 2 + error 3 + incomplete 2
    assert!(rx.wait_for_spans(11, T), "{}", bridge.output());
    let spans = rx.spans();
    let trace = |uuid: &str, run: &str| -> Vec<Received> {
        let t = vcon_otel::ids::trace_id(uuid, run).to_vec();
        spans.iter().filter(|s| s.span.trace_id == t).cloned().collect()
    };
    let s = trace("u1", "swap");
    assert_eq!(s.len(), 4);
    let b = by_name(&s, "link b");
    assert_eq!((b.attr("vcon.uuid.before").as_deref(), b.attr("vcon.uuid.after").as_deref()), (Some("u1"), Some("u2")));
    assert_eq!(by_name(&s, "link c").attr("vcon.uuid").as_deref(), Some("u2"));
    assert_eq!(by_name(&s, "chain unknown").attr("vcon.uuid.final").as_deref(), Some("u2"));

    let h = trace("u3", "halt");
    assert_eq!(h.len(), 2);
    let root = by_name(&h, "chain main");
    assert_eq!(root.attr("vcon.run.outcome").as_deref(), Some("halted"));
    assert!(root.span.status.as_ref().is_none_or(|s| s.code == 0), "a halt is not an error");

    let e = trace("u4", "err");
    assert_eq!(e.len(), 3);
    let failed = by_name(&e, "link b");
    assert_eq!(failed.span.status.as_ref().unwrap().code, 2);
    assert_eq!(failed.attr("error.type").as_deref(), Some("RuntimeError"));
    assert!(failed.span.events.iter().any(|ev| ev.name == "exception"));
    let root = by_name(&e, "chain main");
    assert_eq!(root.attr("vcon.run.outcome").as_deref(), Some("failed"));
    assert_eq!(root.span.status.as_ref().unwrap().code, 2);

    let l = trace("u5", "lost");
    assert_eq!(l.len(), 2);
    assert_eq!(by_name(&l, "chain unknown").attr("vcon.run.outcome").as_deref(), Some("incomplete"));
    assert!(wait_until(T, || drained(&redis)));
    assert!(wait_until(T, || bridge.metric_value(&["vcon_otel_runs_total{", "outcome=\"incomplete\""]) == Some(1.0)));
}

#[test]
fn collector_answering_503_for_a_while_loses_nothing_and_acks_nothing_early() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![
        Answer::Unavailable { retry_after: None },
        Answer::Unavailable { retry_after: Some(Duration::from_secs(1)) },
        Answer::Throttled,
        Answer::Unavailable { retry_after: None },
    ]);
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend(three_link_run(&format!("r{i}"), &format!("u{i}")));
    }
    push(&redis, &all);
    let bridge = Bridge::run(&config_with(&redis, &rx.http_endpoint(), "http/protobuf", "max_batch_delay_ms: 50, compression: gzip", ""));
    assert!(wait_until(T, || rx.answered().len() >= 3), "{}", bridge.output());
    // While the collector refused everything, every entry is still pending.
    let pending = redis.pending(STREAM, GROUP);
    if rx.spans().is_empty() {
        assert_eq!(pending, 40, "an entry was acknowledged before the collector accepted its spans");
    }
    assert!(rx.wait_for_spans(40, T), "{}", bridge.output());
    assert!(wait_until(T, || drained(&redis)));
    let mut ids: Vec<_> = rx.spans().iter().map(|s| (s.span.trace_id.clone(), s.span.span_id.clone())).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every span arrived");
    assert_eq!(&rx.answered()[..4], ["unavailable", "unavailable", "throttled", "unavailable"]);
    assert!(bridge.metric_value(&["vcon_otel_export_retries_total{"]).unwrap_or(0.0) >= 4.0, "{}", bridge.metrics_text());
}

#[test]
fn partial_success_is_acked_and_the_rejected_spans_counted() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![Answer::Partial { rejected: 1, message: "span too large".into() }]);
    push(&redis, &three_link_run("r1", "u1"));
    let bridge = Bridge::run(&config(&redis, &rx.grpc_endpoint(), "grpc", ""));
    assert!(wait_until(T, || drained(&redis)), "{}", bridge.output());
    assert!(wait_until(T, || bridge.metric_value(&["vcon_otel_spans_exported_total{", "rejected"]) == Some(1.0)), "{}", bridge.metrics_text());
    assert!(bridge.output().contains("span too large"));
}

#[test]
fn permanent_rejection_dead_letters_the_entries_and_acks_them() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![Answer::Permanent]);
    push(&redis, &three_link_run("r1", "u1"));
    let bridge = Bridge::run(&config_with(&redis, &rx.grpc_endpoint(), "grpc", "max_batch_delay_ms: 1000", ""));
    assert!(wait_until(T, || drained(&redis)), "{}", bridge.output());
    let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE").arg("vcon_otel:events:dead").arg("-").arg("+").query(&mut redis.conn()).unwrap();
    assert_eq!(dead.len(), 4, "each entry of the rejected batch is dead-lettered");
    assert!(dead.iter().all(|(_, f)| f.iter().any(|(k, v)| k == "stage" && v == "export")));
    assert!(dead.iter().all(|(_, f)| f.iter().any(|(k, v)| k == "r" && v.contains("tracer_call"))));
    assert_eq!(bridge.metric_value(&["vcon_otel_spans_exported_total{", "failed"]), Some(4.0));
}

#[test]
fn a_rejected_held_entry_gone_from_the_stream_is_dead_lettered_with_its_id_and_counted() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![Answer::Permanent]);
    let run = three_link_run("r1", "u1");
    let opening = redis.xadd(STREAM, &run[0].to_string());
    let bridge = Bridge::run(&config_with(&redis, &rx.grpc_endpoint(), "grpc", "max_batch_delay_ms: 1000", ""));
    // The opening is read and held by its open run (pending, with its ID only); then it leaves the
    // stream (a producer's MAXLEN trim would do the same).
    assert!(wait_until(T, || redis.pending(STREAM, GROUP) == 1), "{}", bridge.output());
    let _: i64 = redis::cmd("XDEL").arg(STREAM).arg(&opening).query(&mut redis.conn()).unwrap();
    push(&redis, &run[1..]);
    assert!(wait_until(T, || drained(&redis)), "{}", bridge.output());
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE").arg("vcon_otel:events:dead").arg("-").arg("+").query(&mut redis.conn()).unwrap();
    assert_eq!(dead.len(), 4, "each entry of the rejected batch is dead-lettered: {dead:?}");
    let (gone, kept): (Vec<_>, Vec<_>) = dead.iter().map(|(_, f)| f).partition(|f| f["reason"] == "export_rejected_record_gone");
    assert_eq!(gone.len(), 1, "{dead:?}");
    assert_eq!((gone[0]["source_id"].as_str(), gone[0]["r"].as_str(), gone[0]["stage"].as_str()), (opening.as_str(), "", "export"));
    assert!(gone[0]["detail"].contains("no longer in the stream"), "{:?}", gone[0]);
    assert!(kept.iter().all(|f| f["reason"] == "export_rejected" && f["r"].contains("tracer_call")), "{kept:?}");
    assert_eq!(bridge.metric_value(&["vcon_otel_dead_letters_without_record_total"]), Some(1.0), "{}", bridge.metrics_text());
}

#[test]
fn malformed_records_are_rejected_with_reasons_while_good_ones_behind_them_flow() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let good = three_link_run("r1", "u1");
    redis.xadd(STREAM, "{not json");
    push(&redis, &good[..2]);
    redis.xadd(STREAM, r#"{"v":1,"event":"tracer_call","run":"r9","vcon_uuid":"u9","ts_ns":"soon"}"#);
    redis.xadd(STREAM, r#"{"v":7}"#);
    let _: String = redis::cmd("XADD").arg(STREAM).arg("*").arg("other").arg("x").query(&mut redis.conn()).unwrap();
    push(&redis, &good[2..]);
    let bridge = Bridge::run(&config(&redis, &rx.grpc_endpoint(), "grpc", ""));
    assert!(rx.wait_for_spans(4, T), "{}", bridge.output());
    assert!(wait_until(T, || drained(&redis)));
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE").arg("vcon_otel:events:dead").arg("-").arg("+").query(&mut redis.conn()).unwrap();
    let reasons: Vec<&str> = dead.iter().map(|(_, f)| f["reason"].as_str()).collect();
    assert_eq!(reasons, ["not_json", "bad_type", "unsupported_version", "missing_payload"]);
    assert!(dead[1].1["detail"].contains("field \"ts_ns\": expected an integer >= 0, got \"soon\""), "{:?}", dead[1].1);
    assert_eq!(dead[0].1["r"], "{not json");
    for reason in ["not_json", "bad_type", "unsupported_version", "missing_payload"] {
        assert_eq!(bridge.metric_value(&["vcon_otel_events_rejected_total{", &format!("reason=\"{reason}\"")]), Some(1.0), "{reason}");
    }
}

#[test]
fn a_bridge_killed_mid_stream_and_restarted_delivers_every_span_with_the_same_ids() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let runs = 3000;
    let mut conn = redis.conn();
    let mut pipe = redis::pipe();
    for i in 0..runs {
        for r in three_link_run(&format!("r{i}"), &format!("u{i}")) {
            pipe.cmd("XADD").arg(STREAM).arg("*").arg("r").arg(r.to_string()).ignore();
        }
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let cfg = config_with(&redis, &rx.grpc_endpoint(), "grpc", "max_batch_delay_ms: 50, max_batch_spans: 64", "");
    let mut bridge = Bridge::run(&cfg);
    assert!(rx.wait_for_spans(1, T));
    bridge.kill_hard();
    let before = rx.spans().len();
    assert!(before < runs * 4, "the bridge finished before it could be killed; the test proves nothing");
    let bridge = Bridge::run(&cfg);
    assert!(wait_until(Duration::from_secs(60), || drained(&redis) && rx.spans().len() >= runs * 4), "{}", bridge.output());
    let mut seen: HashMap<(Vec<u8>, Vec<u8>), Received> = HashMap::new();
    for s in rx.spans() {
        let key = (s.span.trace_id.clone(), s.span.span_id.clone());
        if let Some(prev) = seen.get(&key) {
            assert_eq!(prev.span.name, s.span.name, "a duplicate carries the same content");
            assert_eq!(prev.span.start_time_unix_nano, s.span.start_time_unix_nano);
            assert_eq!(prev.span.end_time_unix_nano, s.span.end_time_unix_nano);
        }
        seen.insert(key, s);
    }
    assert_eq!(seen.len(), runs * 4, "every span delivered at least once");
    for i in 0..runs {
        let t = vcon_otel::ids::trace_id(&format!("u{i}"), &format!("r{i}")).to_vec();
        let root = vcon_otel::ids::span_id(&format!("u{i}"), &format!("r{i}"), vcon_otel::ids::SpanRole::Root).to_vec();
        assert!(seen.contains_key(&(t, root)), "root of run {i} missing");
    }
}

#[test]
fn rotel_receives_the_same_tree_over_grpc_and_over_http() {
    let redis = RedisServer::start();
    let rotel = Rotel::start();
    push(&redis, &three_link_run("g1", "ug"));
    let mut b1 = Bridge::run(&config(&redis, &format!("http://127.0.0.1:{}", rotel.grpc_port), "grpc", ""));
    assert!(wait_until(T, || rotel.spans().len() >= 4), "{}\n{}", b1.output(), rotel.output());
    b1.terminate();
    let mut swap = three_link_run("h1", "uh");
    swap[2] = call("h1", "uh", 1, "uh2", "uh", 1_200);
    swap[3] = call("h1", "uh", 2, "uh2", "uh2", 1_300);
    push(&redis, &swap);
    let b2 = Bridge::run(&config(&redis, &format!("http://127.0.0.1:{}", rotel.http_port), "http/protobuf", ""));
    assert!(wait_until(T, || rotel.spans().len() >= 8), "{}\n{}", b2.output(), rotel.output());
    let spans = rotel.spans();
    for (uuid, run) in [("ug", "g1"), ("uh", "h1")] {
        let t = hex::encode(vcon_otel::ids::trace_id(uuid, run));
        let tree: Vec<_> = spans.iter().filter(|s| s.trace_id == t).collect();
        assert_eq!(tree.len(), 4, "trace {t}: {tree:?}");
        let root = tree.iter().find(|s| s.parent_id.is_empty()).expect("root");
        assert_eq!(root.attributes.get("vcon.run.outcome").map(String::as_str), Some("complete"));
        assert_eq!(root.kind, "SPAN_KIND_CONSUMER");
        let mut names: Vec<_> = tree.iter().filter(|s| s.parent_id == root.span_id).map(|s| s.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["link a", "link b", "link c"]);
    }
    let b = spans.iter().find(|s| s.name == "link b" && s.attributes.get("vcon.uuid.after").map(String::as_str) == Some("uh2"));
    assert!(b.is_some(), "the swap is visible through rotel");
}

fn post(port: u16, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "POST /v1/events HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    (buf.split_whitespace().nth(1).unwrap().parse().unwrap(), buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

#[test]
fn http_ingest_checks_the_token_and_the_records_then_makes_them_durable() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let port = free_port();
    let token = "0123456789abcdef-test-token";
    let bridge = Bridge::run(&config(&redis, &rx.grpc_endpoint(), "grpc", &format!("http_ingest: {{addr: \"127.0.0.1:{port}\", token: \"{token}\", max_body_bytes: 4096}}\n")));
    let batch = Value::Array(three_link_run("h1", "u1")).to_string();
    assert_eq!(post(port, None, &batch).0, 401);
    assert_eq!(post(port, Some("wrong-token-wrong-token"), &batch).0, 401);
    let (status, body) = post(port, Some(token), r#"[{"v":1,"event":"chain_start","run":"x","vcon_uuid":"u","ts_ns":1},{"v":1,"event":"chain_start","run":"x"}]"#);
    assert_eq!(status, 400);
    assert!(body.contains("record 1: missing_field: field \\\"vcon_uuid\\\" is required"), "{body}");
    let (status, _) = post(port, Some(token), &"x".repeat(5000));
    assert_eq!(status, 413);
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut redis.conn()).unwrap();
    assert_eq!(len, 0, "nothing from rejected requests was written");
    let (status, body) = post(port, Some(token), &batch);
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":4}"#));
    assert!(rx.wait_for_spans(4, T), "{}", bridge.output());
    assert_eq!(bridge.metric_value(&["vcon_otel_http_requests_total{", "status=\"401\""]), Some(2.0));
    // Redis gone: the records cannot be made durable, so the answer is 503, not 202.
    let mut redis = redis;
    redis.stop();
    let (status, body) = post(port, Some(token), &batch);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("retry later"), "{body}");
}

#[test]
fn check_config_names_every_problem_and_exits_78() {
    let dir = crate::support::temp_dir();
    let f = dir.path().join("bad.yml");
    std::fs::write(&f, "export:\n  endpoint: collector:4317\n  compression: brotli\nadmin:\n  addr: nowhere\n").unwrap();
    let out = std::process::Command::new(binary()).args(["check-config", f.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["export.endpoint: \"collector:4317\" has no http:// or https:// scheme", "export.compression: \"brotli\" is not supported (hint: use none, gzip or zstd)", "admin.addr: \"nowhere\" is not an IP:port address"] {
        assert!(err.contains(needle), "{err}");
    }
    let good = std::process::Command::new(binary())
        .args(["check-config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/vcon-otel.yml")])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
        .output()
        .unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));
}

#[test]
fn demo_runs_without_outside_services_and_serves_metrics() {
    let port = free_port();
    let child = std::process::Command::new(binary())
        .args(["demo", "--vcons", "6", "--workers", "2", "--pace-ms", "5", "--admin-addr", &format!("127.0.0.1:{port}")])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(T, || http_get(port, "/metrics").is_some_and(|(_, b)| b.contains("vcon_otel_runs_total"))));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("\ntrace ").count() + text.starts_with("trace ") as usize >= 6, "{text}");
    assert!(text.contains("chain transcription") && text.contains("link transcribe"), "{text}");
}

#[test]
fn export_over_tls_with_a_private_ca_and_custom_headers() {
    let redis = RedisServer::start();
    let dir = crate::support::temp_dir();
    let (ca, cert, key) = crate::support::otlp::make_tls_files(dir.path());
    let rx = Receiver::start_tls(&cert, &key);
    push(&redis, &three_link_run("t1", "u1"));
    let cfg = config_with(&redis, &rx.grpcs_endpoint(), "grpc", &format!("max_batch_delay_ms: 50, tls: {{ca_file: \"{}\"}}, headers: {{x-scope-orgid: tenant-1}}", ca.display()), "");
    let bridge = Bridge::run(&cfg);
    assert!(rx.wait_for_spans(4, T), "{}", bridge.output());
    assert!(wait_until(T, || drained(&redis)));
    let md = rx.metadata("x-scope-orgid");
    assert!(!md.is_empty() && md.iter().all(|v| v.as_deref() == Some("tenant-1")), "{md:?}");
}

#[test]
fn two_replicas_sharing_the_group_give_each_run_one_root_and_no_false_incomplete() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let mut all = Vec::new();
    for i in 0..100 {
        all.extend(three_link_run(&format!("r{i}"), &format!("u{i}")));
    }
    let cfg = |consumer: &str| {
        config_with(&redis, &rx.grpc_endpoint(), "grpc", "max_batch_delay_ms: 20", "runs: {idle_timeout_secs: 1}\n")
            .replace("consumer: test-bridge, block_ms: 200", &format!("consumer: {consumer}, block_ms: 200, read_count: 3"))
    };
    let a = Bridge::run(&cfg("replica-a"));
    let b = Bridge::run(&cfg("replica-b"));
    push(&redis, &all);
    assert!(wait_until(T, || drained(&redis)), "{}\n{}", a.output(), b.output());
    // Past the idle timeout: a replica holding a run's opener but not its end must not close it.
    std::thread::sleep(Duration::from_secs(3));
    let spans = rx.spans();
    let roots: Vec<_> = spans.iter().filter(|s| s.span.parent_span_id.is_empty()).collect();
    let mut by_trace: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for r in &roots {
        by_trace.entry(r.span.trace_id.clone()).or_default().push(r.attr("vcon.run.outcome").unwrap_or_default());
    }
    assert_eq!(by_trace.len(), 100, "every run has a root");
    assert!(by_trace.values().all(|o| o.iter().all(|x| x == "complete")), "no run closed as incomplete: {by_trace:?}");
    let (ra, rb) = (a.metric_value(&["vcon_otel_events_ingested_total{"]).unwrap_or(0.0), b.metric_value(&["vcon_otel_events_ingested_total{"]).unwrap_or(0.0));
    assert_eq!(ra + rb, 400.0);
    assert!(ra > 0.0 && rb > 0.0, "both replicas took records: {ra} {rb}");
}

#[test]
fn the_bridge_runs_in_process_on_port_zero_and_drains_cleanly() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    push(&redis, &three_link_run("r1", "u1"));
    let text = config(&redis, &rx.grpc_endpoint(), "grpc", "");
    let cfg = vcon_otel::config::validate(vcon_otel::config::parse(&text).unwrap(), &|_| None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (run, port) = rt.block_on(async {
        let bridge = vcon_otel::Bridge::build(cfg).unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = admin.local_addr().unwrap().port();
        let run = tokio::spawn(bridge.run(vcon_otel::Listeners { admin: Some(admin), ingest: None }, async {
            let _ = stop_rx.await;
        }));
        (run, port)
    });
    assert!(wait_until(T, || http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)));
    assert!(rx.wait_for_spans(4, T), "{:?}", rx.spans());
    stop_tx.send(()).unwrap();
    let report = rt.block_on(run).unwrap().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(wait_until(T, || drained(&redis)));
    assert!(http_get(port, "/readyz").is_none_or(|(s, _)| s != 200), "not ready after shutdown");
}
