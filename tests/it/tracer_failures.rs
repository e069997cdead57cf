//! Hosted tracers whose target refuses for good: a webhook answering 401 (credentials), a JLINC
//! data store answering 404 on its API path (a wrong URL), a webhook behind a TLS certificate the
//! bridge does not trust. Each record is given up at once (no retries), counted in
//! `vcon_otel_tracer_failures_total{tracer, reason}`, acknowledged (the queue keeps moving), and the
//! log gets one ERROR saying "permanent" per tracer and interval, not a WARN per record.

use crate::support::bridge::Bridge;
use crate::support::http::{Reply, Server};
use crate::support::otlp::{make_tls_files, Receiver};
use crate::support::redis::RedisServer;
use crate::support::{plain, temp_dir, wait_until};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const STREAM: &str = "vcon_otel:events";

/// Two tracer-only runs of four records each.
fn two_runs(redis: &RedisServer) {
    for (run, uuid) in [("r1", "u1"), ("r2", "u2")] {
        for (seq, i) in (-1i64..3).enumerate() {
            let ts = 2_000 + seq as u64 * 100;
            let r = json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": ts, "start_ns": ts - 50, "run_start_ns": 1_900,
                "seq": seq, "links": ["a", "b", "c"], "link_index": i, "tracer": "otel", "in_vcon_uuid": uuid, "out_vcon_uuid": uuid});
            redis.xadd(STREAM, &r.to_string());
        }
    }
}

#[test]
fn permanent_refusals_of_hosted_tracers_are_reported_once_per_interval_and_counted_by_reason() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let hook = Server::start(|path, _| (path == "/events").then(|| Reply::json(401, json!({"error": "bad key"}))));
    let store = Server::start(|_, _| Some(Reply::json(404, json!({"error": "no such route"}))));
    // An HTTPS peer whose certificate is signed by a CA the bridge was not told about.
    let dir = temp_dir();
    let (_ca, cert, key) = make_tls_files(dir.path());
    let tls_peer = Receiver::start_tls(&cert, &key);
    let backoff = "initial_backoff_ms: 20, max_attempts: 5";
    let tracers = format!(
        "tracers:\n  hook:\n    module: webhook\n    options: {{url: \"{}/events\", api_key: wrong, system_id: s1, {backoff}}}\n  \
         jl:\n    module: jlinc\n    options: {{data_store_api_url: \"{}/wrong-prefix\", data_store_api_key: k, system_prefix: p, {backoff}}}\n  \
         tls_hook:\n    module: webhook\n    options: {{url: \"{}/events\", system_id: s1, {backoff}}}\n",
        hook.url(),
        store.url(),
        tls_peer.grpcs_endpoint()
    );
    let bridge = Bridge::run(&format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: t, block_ms: 200}}\n{tracers}",
        redis.url(),
        rx.grpc_endpoint()
    ));
    two_runs(&redis);
    let failures = |t: &str, reason: &str| bridge.metric_value(&["vcon_otel_tracer_failures_total{", &format!("tracer=\"{t}\""), &format!("reason=\"{reason}\"")]).unwrap_or(0.0);
    let all = || failures("hook", "auth") == 8.0 && failures("jl", "rejected") == 8.0 && failures("tls_hook", "tls") == 8.0;
    assert!(wait_until(T, all), "{}\n{}", bridge.metrics_text(), bridge.output());
    assert_eq!(hook.requests().len(), 8, "each record tried once: a 401 is not retried");
    assert_eq!(store.requests().len(), 8, "each record tried once: a 404 is not retried");
    for t in ["hook", "jl", "tls_hook"] {
        assert_eq!(bridge.metric_value(&["vcon_otel_tracer_retries_total{", &format!("tracer=\"{t}\"")]).unwrap_or(0.0), 0.0, "{t} was retried");
        // Given up and acknowledged: the tracer's queue keeps moving (it is not an outage).
        assert!(wait_until(T, || redis.pending(STREAM, &format!("vcon-otel:tracer:{t}")) == 0), "{t}: {}", bridge.output());
    }
    let out = plain(&bridge.output());
    let reports = |t: &str| out.lines().filter(|l| l.contains("refuses permanently") && l.contains(&format!("tracer={t} "))).map(str::to_string).collect::<Vec<_>>();
    for (t, reason, said) in [("hook", "auth", "HTTP 401 (the credentials were refused)"), ("jl", "rejected", "/wrong-prefix/api/v1/data/entity/domains/get: HTTP 404"), ("tls_hook", "tls", "TLS failed: invalid peer certificate: UnknownIssuer")] {
        let r = reports(t);
        assert_eq!(r.len(), 1, "{t}: one line per interval, not per record:\n{out}");
        assert!(r[0].contains("ERROR") && r[0].contains(&format!("reason=\"{reason}\"")) && r[0].contains(said) && r[0].contains("records_given_up=1"), "{t}: {}", r[0]);
    }
    assert!(!out.lines().any(|l| l.contains("WARN") && l.contains("gave up")), "no WARN for a permanent refusal:\n{out}");
}
