//! The bridge's own traces (`self_telemetry:`): exported by the OpenTelemetry SDK to a receiver of
//! their own as service `vcon-otel`, never mixed into the vCon traces, never carrying the vCon
//! export's headers.

use crate::support::bridge::Bridge;
use crate::support::http::{Reply, Server};
use crate::support::otlp::{Answer, Received, Receiver};
use crate::support::redis::RedisServer;
use crate::support::wait_until;
use serde_json::json;
use std::time::Duration;

const STREAM: &str = "vcon_otel:events";
const T: Duration = Duration::from_secs(20);
/// Every span name the bridge gives its own work.
const BRIDGE_SPANS: &[&str] = &["receive vcon_otel:events", "reclaim vcon_otel:events", "enrich", "enrich.complete", "snapshot.fetch", "export", "ack vcon_otel:events", "tracer.deliver", "runs.close_idle"];
/// Set for the vCon export (or a whole deployment); none of them may reach the bridge's own spans.
const FOREIGN_ENV: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer vcon-backend"),
    ("OTEL_TRACES_SAMPLER", "always_off"),
    ("OTEL_SERVICE_NAME", "not-the-bridge"),
    ("OTEL_RESOURCE_ATTRIBUTES", "service.name=not-the-bridge"),
];

/// Writes the first `records` tracer calls of a 3-link run (link -1 first; 4 make it complete),
/// each with a stored snapshot.
fn run_with_snapshots(redis: &RedisServer, run: &str, uuid: &str, records: i64) {
    let mut conn = redis.conn();
    for (seq, i) in (-1..records - 1).enumerate() {
        let key = format!("vcon_otel:snap:{run}:{seq}");
        let doc = json!({"uuid": uuid, "vcon": "0.4.0", "parties": [], "attachments": [{"purpose": "tags", "body": [format!("step{i}")]}]});
        let _: () = redis::cmd("JSON.SET").arg(&key).arg("$").arg(doc.to_string()).query(&mut conn).unwrap();
        let ts = 2_000 + seq as u64 * 100;
        let r = json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": ts, "start_ns": ts - 50, "run_start_ns": 1_900,
            "links": ["a", "b", "c"], "link_index": i, "tracer": "otel", "in_vcon_uuid": uuid, "out_vcon_uuid": uuid, "compliance": {"snapshot": key}});
        redis.xadd(STREAM, &r.to_string());
    }
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

fn int(s: &Received, key: &str) -> i64 {
    s.attr(key).unwrap_or_else(|| panic!("span {:?} has no {key}: {:?}", s.span.name, s.span.attributes)).parse().unwrap()
}

fn sum(spans: &[&Received], key: &str) -> i64 {
    spans.iter().map(|s| int(s, key)).sum()
}

fn is_bridge_span(s: &Received) -> bool {
    BRIDGE_SPANS.contains(&s.span.name.as_str()) || s.resource_attr("service.name").as_deref() == Some("vcon-otel")
}

/// What every span on the bridge's own receiver must be: ours, from our code, with our resource.
fn assert_all_ours(own: &[Received]) {
    for s in own {
        assert!(BRIDGE_SPANS.contains(&s.span.name.as_str()), "unexpected span {:?} on the self-telemetry receiver", s.span.name);
        assert!(s.attr("target").is_some_and(|t| t.starts_with("vcon_otel")), "span {:?} from target {:?}", s.span.name, s.attr("target"));
        assert_eq!(s.resource_attr("service.name").as_deref(), Some("vcon-otel"));
        assert_eq!(s.resource_attr("service.instance.id").as_deref(), Some("test-bridge"), "the consumer name");
        assert_eq!(s.resource_attr("service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn bridge_spans_for_a_batch_reach_their_own_receiver_with_the_export_attempts_after_a_503_and_never_the_vcon_receiver() {
    let redis = RedisServer::start();
    let vcon = Receiver::start(vec![Answer::Unavailable { retry_after: None }]);
    let own = Receiver::start(vec![]);
    run_with_snapshots(&redis, "r1", "u1", 4);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", protocol: http/protobuf, initial_backoff_ms: 50, max_backoff_ms: 400, max_batch_delay_ms: 50}}\nstream: {{consumer: test-bridge, block_ms: 200}}\nself_telemetry: {{enabled: true, endpoint: \"{}\", sampler_ratio: 1.0}}\n",
        redis.url(),
        vcon.http_endpoint(),
        own.grpc_endpoint()
    );
    // The SDK would send to this signal endpoint if it read it: the vCon receiver.
    let vcon_ep = vcon.grpc_endpoint();
    let mut env = vec![("OTEL_BSP_SCHEDULE_DELAY", "200"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", vcon_ep.as_str())];
    env.extend_from_slice(FOREIGN_ENV);
    let mut bridge = Bridge::run_with_env(&cfg, &env);
    assert!(vcon.wait_for_spans(4, T), "{}", bridge.output());
    assert!(wait_until(T, || redis.pending(STREAM, "vcon-otel") == 0), "{}", bridge.output());
    let acked = || named(&own.spans(), "ack vcon_otel:events").iter().map(|s| int(s, "messaging.batch.message_count")).sum::<i64>();
    assert!(wait_until(T, || acked() == 4), "the ack span never arrived on the self-telemetry receiver:\n{}", bridge.output());
    let spans = own.spans();

    assert_eq!(vcon.answered()[..2], ["unavailable", "ok"]);
    let exports = named(&spans, "export");
    assert_eq!(exports.len(), 1, "one batch of the run's four spans");
    let e = exports[0];
    assert_eq!((int(e, "vcon_otel.export.attempts"), e.attr("vcon_otel.export.outcome").as_deref()), (2, Some("accepted")), "{:?}", e.span.attributes);
    assert_eq!((int(e, "vcon_otel.export.spans"), int(e, "messaging.batch.message_count")), (4, 4));
    assert_eq!(e.span.kind, 3, "client");

    let reads: Vec<&Received> = named(&spans, "receive vcon_otel:events").into_iter().filter(|s| int(s, "messaging.batch.message_count") > 0).collect();
    assert_eq!(sum(&reads, "messaging.batch.message_count"), 4);
    for r in &reads {
        assert_eq!(r.attr("messaging.system").as_deref(), Some("redis"));
        assert_eq!(r.attr("messaging.destination.name").as_deref(), Some(STREAM));
        assert_eq!(r.attr("messaging.consumer.group.name").as_deref(), Some("vcon-otel"));
        assert_eq!(r.attr("messaging.client.id").as_deref(), Some("test-bridge"));
        assert_eq!(r.span.kind, 5, "consumer");
    }
    let enrich = named(&spans, "enrich");
    assert_eq!(sum(&enrich, "messaging.batch.message_count"), 4);
    assert_eq!(sum(&named(&spans, "enrich.complete"), "messaging.batch.message_count"), 4, "each read's settle and journal round trip");
    let fetches = named(&spans, "snapshot.fetch");
    assert_eq!(sum(&fetches, "db.operation.batch.size"), 4);
    assert!(fetches.iter().all(|f| enrich.iter().any(|e| e.span.span_id == f.span.parent_span_id && e.span.trace_id == f.span.trace_id)), "a snapshot fetch is a child of its enrich span");
    let ack = named(&spans, "ack vcon_otel:events");
    assert!(ack.iter().all(|a| a.attr("messaging.operation.type").as_deref() == Some("settle")));
    assert_all_ours(&spans);

    let vcon_spans = vcon.spans();
    assert!(vcon_spans.iter().all(|s| !is_bridge_span(s)), "a bridge span reached the vCon receiver: {:?}", vcon_spans.iter().map(|s| &s.span.name).collect::<Vec<_>>());
    assert!(vcon_spans.iter().all(|s| s.resource_attr("service.name").as_deref() == Some("conserver")));
    let auth = |rx: &Receiver| rx.metadata("authorization");
    assert!(auth(&vcon).iter().all(|v| v.as_deref() == Some("Bearer vcon-backend")), "the variable configures the vCon export: {:?}", auth(&vcon));
    assert!(!auth(&own).is_empty() && auth(&own).iter().all(Option::is_none), "the vCon export's credentials reached the self-telemetry receiver");
    assert_eq!(bridge.terminate(), Some(0), "{}", bridge.output());
}

#[test]
fn hosted_tracer_deliveries_and_the_idle_sweep_are_spans_too_flushed_at_exit_over_http() {
    let redis = RedisServer::start();
    let vcon = Receiver::start(vec![]);
    let own = Receiver::start(vec![]);
    let hook = Server::start(|path, _| (path == "/events").then(|| Reply::json(200, json!({"ok": true}))));
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: test-bridge, block_ms: 200}}\nruns: {{idle_timeout_secs: 1}}\nself_telemetry: {{enabled: true, endpoint: \"{}\", protocol: http/protobuf, sampler_ratio: 1.0}}\ntracers:\n  hook:\n    module: webhook\n    options: {{url: \"{}/events\"}}\n",
        redis.url(),
        vcon.grpc_endpoint(),
        own.http_endpoint(),
        hook.url()
    );
    // Only the exit flush exports (the queue holds far fewer than a batch of 512 by then).
    let mut env = vec![("OTEL_BSP_SCHEDULE_DELAY", "600000")];
    env.extend_from_slice(FOREIGN_ENV);
    let mut bridge = Bridge::run_with_env(&cfg, &env);
    run_with_snapshots(&redis, "r2", "u2", 2);
    let root = |s: &Received| s.span.parent_span_id.is_empty() && s.attr("vcon.run.outcome").as_deref() == Some("incomplete");
    assert!(wait_until(T, || vcon.spans().iter().any(root)), "the idle run was never closed:\n{}", bridge.output());
    assert!(wait_until(T, || hook.requests().len() == 2), "{}", bridge.output());
    assert!(own.spans().is_empty(), "exported before the exit flush");
    assert_eq!(bridge.terminate(), Some(0), "{}", bridge.output());
    let spans = own.spans();

    let deliveries = named(&spans, "tracer.deliver");
    assert_eq!(deliveries.len(), 2, "one per record (the webhook does not batch)");
    for d in &deliveries {
        assert_eq!((d.attr("vcon_otel.tracer").as_deref(), d.attr("vcon_otel.tracer.module").as_deref()), (Some("hook"), Some("webhook")));
        assert_eq!((d.attr("vcon_otel.tracer.outcome").as_deref(), int(d, "vcon_otel.tracer.attempts")), (Some("ok"), 1));
    }
    let sweeps = named(&spans, "runs.close_idle");
    assert_eq!(sum(&sweeps, "vcon_otel.runs.expired"), 1, "sweeps run only when a run expired");
    let tracer_reads: Vec<&Received> = named(&spans, "receive vcon_otel:events").into_iter().filter(|s| s.attr("messaging.consumer.group.name").as_deref() == Some("vcon-otel:tracer:hook")).collect();
    assert_eq!(sum(&tracer_reads, "messaging.batch.message_count"), 2);
    assert_all_ours(&spans);
    assert!(own.metadata("content-encoding").iter().all(|v| v.as_deref() == Some("gzip")));
    assert!(own.metadata("authorization").iter().all(Option::is_none), "the vCon export's credentials reached the self-telemetry receiver");
    assert!(vcon.spans().iter().all(|s| !is_bridge_span(s)));
}

#[test]
fn with_self_telemetry_off_nothing_reaches_its_receiver_even_with_an_endpoint_and_the_otlp_variables_set() {
    let redis = RedisServer::start();
    let vcon = Receiver::start(vec![Answer::Unavailable { retry_after: None }]);
    let own = Receiver::start(vec![]);
    run_with_snapshots(&redis, "r3", "u3", 4);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", initial_backoff_ms: 50, max_batch_delay_ms: 50}}\nstream: {{consumer: test-bridge, block_ms: 200}}\nself_telemetry: {{enabled: false, endpoint: \"{}\", sampler_ratio: 1.0}}\n",
        redis.url(),
        vcon.grpc_endpoint(),
        own.grpc_endpoint()
    );
    // The SDK's own variables point at the second receiver too; with self-telemetry off nothing reads them.
    let own_ep = own.grpc_endpoint();
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", own_ep.as_str()), ("OTEL_TRACES_EXPORTER", "otlp")];
    let mut bridge = Bridge::run_with_env(&cfg, &env);
    assert!(vcon.wait_for_spans(4, T), "{}", bridge.output());
    assert!(wait_until(T, || redis.pending(STREAM, "vcon-otel") == 0), "{}", bridge.output());
    assert_eq!(vcon.answered()[..2], ["unavailable", "ok"]);
    assert_eq!(bridge.terminate(), Some(0), "{}", bridge.output());
    assert!(own.answered().is_empty(), "self-telemetry is off, yet its receiver got {:?}", own.answered());
    assert!(vcon.spans().iter().all(|s| !is_bridge_span(s)));
    assert!(!bridge.output().contains("self-telemetry: exporting"), "{}", bridge.output());
}
