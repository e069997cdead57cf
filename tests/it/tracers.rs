//! Hosted tracer modules against real or protocol-exact peers: a scripted webhook server, a fake
//! JLINC data store implementing the four endpoints as the JLINC API documents them (the real one
//! cannot be installed here), a real UDP socket for StatsD, a real Redis for the DLQ.

use crate::support::bridge::Bridge;
use crate::support::http::{Reply, Server};
use crate::support::otlp::Receiver;
use crate::support::redis::RedisServer;
use crate::support::{plain, wait_until};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn cfg(redis: &RedisServer, rx: &Receiver, tracers: &str) -> String {
    format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: t, block_ms: 200}}\ntracers:\n{tracers}",
        redis.url(),
        rx.grpc_endpoint()
    )
}

/// A 3-link tracer-only run whose records carry snapshots of a stored vCon.
fn run_with_snapshots(redis: &RedisServer, run: &str, uuid: &str, hooks_ingress: Option<&str>) -> Vec<String> {
    let mut conn = redis.conn();
    let mut hashes = Vec::new();
    for (seq, i) in (-1i64..3).enumerate() {
        let doc = json!({"uuid": uuid, "vcon": "0.4.0", "parties": [{"tel": "+15555550100"}], "attachments": [{"purpose": "tags", "body": [format!("step{i}")]}]});
        let key = format!("vcon_otel:snap:{run}:{seq}");
        let _: () = redis::cmd("JSON.SET").arg(&key).arg("$").arg(doc.to_string()).query(&mut conn).unwrap();
        let stored: String = redis::cmd("JSON.GET").arg(&key).query(&mut conn).unwrap();
        hashes.push(vcon_otel::compliance::vcon_hash(stored.as_bytes()).unwrap().sha256_hex);
        let mut r = json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": 2_000 + seq as u64 * 100,
            "start_ns": 1_950 + seq as u64 * 100, "run_start_ns": 1_900, "seq": seq, "links": ["Transcribe", "summarize v2", "tag"],
            "link_index": i, "tracer": "otel", "in_vcon_uuid": uuid, "out_vcon_uuid": uuid, "compliance": {"snapshot": key}});
        if let Some(list) = hooks_ingress {
            r["ingress_list"] = json!(list);
        }
        redis.xadd("vcon_otel:events", &r.to_string());
    }
    hashes
}

/// The fake JLINC data store: entities exist once created; events get increasing ids.
pub(crate) fn jlinc_store() -> Server {
    let created = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::<String>::new()));
    let events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Server::start(move |path, body| {
        let name = body.get("shortName").and_then(|v| v.as_str()).unwrap_or("").to_string();
        match path {
            "/api/v1/data/entity/domains/get" => Some(Reply::json(200, json!(["jlinc.example", "other.example"]))),
            "/api/v1/data/entity/get" => Some(Reply::json(200, if created.lock().unwrap().contains(&name) { json!({"shortName": name, "didDoc": {"id": format!("did:{name}")}}) } else { json!({"error": "not found"}) })),
            "/api/v1/data/entity/create" => {
                created.lock().unwrap().insert(name.clone());
                Some(Reply::json(200, json!({"shortName": name, "didDoc": {"id": format!("did:{name}")}})))
            }
            "/api/v1/data/event/produce" => {
                let n = events.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Some(Reply::json(200, json!({"created": {"eventId": format!("ev-{n}")}, "processed": {"auditData": {"signatures": [{"type": "JWS/JCS", "jws": "e30.e30.sig"}]}}})))
            }
            _ => None,
        }
    })
}

pub(crate) fn jlinc_cfg(store: &Server, extra: &str) -> String {
    format!(
        "  jl:\n    module: jlinc\n    options: {{data_store_api_url: \"{}\", data_store_api_key: dskey, archive_api_url: \"http://archive\", archive_api_key: akey, system_prefix: \"VCON Test\", max_attempts: 3, initial_backoff_ms: 20{extra}}}\n",
        store.url()
    )
}

pub(crate) fn produced(store: &Server) -> Vec<Value> {
    store.requests().into_iter().filter(|r| r.path.ends_with("event/produce") && r.status == 200).map(|r| r.body).collect()
}

#[test]
fn jlinc_speaks_the_data_store_api_as_upstream_in_both_sender_modes() {
    for (mode, senders) in [
        ("intended", ["system", "transcribe", "summarize_v2", "tag"]),
        ("upstream", ["system", "tag", "transcribe", "summarize_v2"]),
    ] {
        let redis = RedisServer::start();
        let rx = Receiver::start(vec![]);
        let store = jlinc_store();
        // A 500, then an answer slower than timeout_secs, on the first event: both retried, the
        // event is delivered once.
        store.script(
            "/api/v1/data/event/produce",
            vec![Reply::json(500, json!({"error": "busy"})), Reply { delay: Duration::from_secs(3), ..Reply::json(200, json!({"created": {"eventId": "late"}})) }],
        );
        let bridge = Bridge::run(&cfg(&redis, &rx, &jlinc_cfg(&store, &format!(", sender_mode: {mode}, timeout_secs: 1"))));
        let hashes = run_with_snapshots(&redis, "r1", "u1", None);
        // The late answer counts as a request the server saw (status 200) but the tracer gave up on.
        assert!(wait_until(T, || produced(&store).len() == 5), "{mode}: {}", bridge.output());
        let mut events = produced(&store);
        assert_eq!(events[0], events[1], "the timed-out event is sent again unchanged");
        events.remove(0);
        assert!(bridge.metric_value(&["vcon_otel_tracer_calls_total{", "tracer=\"jl\"", "outcome=\"timeout\""]) == Some(1.0), "{}", bridge.metrics_text());
        let ent = |s: &str| format!("vcon_test-{s}@jlinc.example");
        let recipients = ["transcribe", "summarize_v2", "tag", "system"];
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e,
                &json!({"type": "data", "senderShortName": ent(senders[i]), "recipientShortName": ent(recipients[i]),
                        "agreementId": "00000000-0000-0000-0000-000000000000", "data": {"hash": hashes[i]},
                        "meta": {"in_vcon_uuid": "u1", "out_vcon_uuid": "u1"}, "archive": {"url": "http://archive", "key": "akey"}}),
                "{mode} event {i}"
            );
        }
        let reqs = store.requests();
        assert!(reqs.iter().all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer dskey")));
        let creates: Vec<String> = reqs.iter().filter(|r| r.path.ends_with("entity/create")).map(|r| r.body["shortName"].as_str().unwrap().to_string()).collect();
        let mut unique = creates.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(creates.len(), unique.len(), "each entity is created once: {creates:?}");
        assert_eq!(unique.len(), 4);
        assert_eq!(reqs.iter().filter(|r| r.path.ends_with("domains/get")).count(), 1, "the domain is fetched once");
        // The outcome is a span under the link span, with the JLINC event id.
        assert!(wait_until(T, || rx.spans().iter().filter(|s| s.span.name == "tracer jl").count() == 4));
        let linked = rx.spans().into_iter().find(|s| s.span.name == "tracer jl" && s.attr("jlinc.event_id").is_some_and(|e| e.starts_with("ev-"))).unwrap();
        assert_eq!(linked.attr("jlinc.signature_type").as_deref(), Some("JWS/JCS"));
        assert_eq!(linked.attr("vcon.tracer.outcome").as_deref(), Some("ok"));
    }
}

#[test]
fn jlinc_failures_are_retried_then_dlq_the_vcon_when_asked() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let store = Server::start(|path, _| if path.ends_with("domains/get") { Some(Reply::json(200, json!(["d"]))) } else { Some(Reply::json(503, json!({}))) });
    let bridge = Bridge::run(&cfg(&redis, &rx, &jlinc_cfg(&store, ", dlq_vcon_on_error: true")));
    run_with_snapshots(&redis, "r1", "u7", Some("main_in"));
    let dlq_len = || redis::cmd("LLEN").arg("DLQ:main_in").query::<i64>(&mut redis.conn()).unwrap();
    assert!(wait_until(T, || dlq_len() == 4), "{}", bridge.output());
    let pushed: Vec<String> = redis::cmd("LRANGE").arg("DLQ:main_in").arg(0).arg(-1).query(&mut redis.conn()).unwrap();
    assert!(pushed.iter().all(|u| u == "u7"));
    assert_eq!(bridge.metric_value(&["vcon_otel_dlq_pushes_total{", "tracer=\"jl\""]), Some(4.0));
    assert!(bridge.metric_value(&["vcon_otel_tracer_retries_total{", "tracer=\"jl\""]).unwrap_or(0.0) >= 8.0, "{}", bridge.metrics_text());
    assert!(wait_until(T, || rx.spans().iter().filter(|s| s.span.name == "tracer jl").count() == 4));
    let failed = rx.spans().into_iter().filter(|s| s.span.name == "tracer jl").collect::<Vec<_>>();
    assert!(failed.iter().all(|s| s.span.status.as_ref().is_some_and(|st| st.code == 2)));
}

#[test]
fn webhook_retries_503_503_then_delivers_each_record_exactly_once() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let hook = Server::start(|path, _| (path == "/events").then(|| Reply::json(200, json!({"ok": true}))));
    hook.script("/events", vec![Reply { retry_after: Some(1), ..Reply::json(503, json!({})) }, Reply::json(503, json!({}))]);
    let tracers = format!("  audit_hook:\n    module: webhook\n    options: {{url: \"{}/events\", api_key: k123, system_id: sys1, initial_backoff_ms: 20}}\n", hook.url());
    let bridge = Bridge::run(&cfg(&redis, &rx, &tracers));
    run_with_snapshots(&redis, "r1", "u1", None);
    assert!(wait_until(T, || hook.requests().iter().filter(|r| r.status == 200).count() == 4), "{}", bridge.output());
    let reqs = hook.requests();
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 503, 200, 200, 200, 200]);
    let delivered: Vec<&Value> = reqs.iter().filter(|r| r.status == 200).map(|r| &r.body).collect();
    assert_eq!(delivered.iter().map(|b| b["event_type"].as_str().unwrap()).collect::<Vec<_>>(), ["chain_start", "link_complete", "link_complete", "link_complete"]);
    assert_eq!(delivered.iter().map(|b| b["link_index"].as_i64().unwrap()).collect::<Vec<_>>(), [-1, 0, 1, 2], "each record once, in order");
    assert!(delivered.iter().all(|b| b["system_id"] == "sys1" && b["entity_id"] == "u1" && b["hashes"]["vcon_sha256"].as_str().unwrap().len() == 64));
    assert!(reqs.iter().all(|r| r.headers["authorization"] == "Bearer k123"));
    assert!(!reqs.iter().any(|r| r.body.to_string().contains("+15555550100")), "no party identifier leaves the bridge");
}

#[test]
fn statsd_sends_counters_and_timings_over_udp() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let bridge = Bridge::run(&cfg(&redis, &rx, &format!("  m:\n    module: statsd\n    options: {{host: 127.0.0.1, port: {port}, prefix: vc}}\n")));
    run_with_snapshots(&redis, "r1", "u1", None);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    let end = std::time::Instant::now() + T;
    while lines.len() < 9 && std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            lines.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
    }
    let _ = bridge;
    assert_eq!(lines.iter().filter(|l| *l == "vc.events.chain_start:1|c").count(), 1, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| *l == "vc.events.link_complete:1|c").count(), 3, "{lines:?}");
    assert!(lines.contains(&"vc.duration.link:0.000|ms".to_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l == "vc.duration.chain:0.000|ms"), "{lines:?}");
}

#[test]
fn a_tracer_answering_after_5_s_does_not_hold_back_span_export() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let slow = Server::start(|_, _| Some(Reply { delay: Duration::from_secs(5), ..Reply::json(200, json!({})) }));
    let tracers = format!("  slow:\n    module: webhook\n    options: {{url: \"{}/events\", timeout_secs: 30}}\n", slow.url());
    let bridge = Bridge::run(&cfg(&redis, &rx, &tracers));
    run_with_snapshots(&redis, "r1", "u1", None);
    assert!(wait_until(Duration::from_secs(40), || rx.spans().iter().any(|s| s.span.name == "tracer slow")), "{}", bridge.output());
    let names: Vec<String> = rx.spans().into_iter().map(|s| s.span.name).collect();
    let first_tracer = names.iter().position(|n| n == "tracer slow").unwrap();
    let root = names.iter().position(|n| n.starts_with("chain ")).unwrap();
    assert!(root < first_tracer, "the whole trace was exported before the slow tracer's first answer: {names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("link ")).count(), 3);
}

#[test]
fn postgres_audit_trail_survives_a_server_restart_with_nothing_lost() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let pg = crate::support::postgres::Postgres::start();
    let tracers = format!("  db:\n    module: postgres\n    options: {{url: \"{}\", table: audit.vcon_events_test, initial_backoff_ms: 100, max_backoff_ms: 500, max_attempts: 1000}}\n", pg.url());
    // The schema must exist; the table is created by the tracer.
    pg.execute("CREATE SCHEMA audit");
    let bridge = Bridge::run(&cfg(&redis, &rx, &tracers));
    let count = || pg.query_count("SELECT count(*) FROM audit.vcon_events_test");
    run_with_snapshots(&redis, "r1", "u1", None);
    assert!(wait_until(T, || count() == 4), "{}", bridge.output());
    pg.restart();
    run_with_snapshots(&redis, "r2", "u2", None);
    assert!(wait_until(T, || count() == 8), "{}", bridge.output());
    assert_eq!(pg.query_count("SELECT count(DISTINCT record_id) FROM audit.vcon_events_test"), 8);
    assert_eq!(pg.query_count("SELECT count(*) FROM audit.vcon_events_test WHERE content_sha256 IS NOT NULL AND event = 'link_complete'"), 6);
    assert!(wait_until(T, || bridge.metric_value(&["vcon_otel_tracer_calls_total{", "tracer=\"db\"", "outcome=\"ok\""]).unwrap_or(0.0) >= 2.0));
}

#[test]
fn a_table_name_that_is_not_an_identifier_is_refused_by_check_config() {
    let dir = crate::support::temp_dir();
    let f = dir.path().join("c.yml");
    std::fs::write(&f, "export: {endpoint: \"http://x:4317\"}\ntracers:\n  db:\n    module: postgres\n    options: {url: \"postgres://x\", table: \"t; DROP TABLE x\"}\n").unwrap();
    let out = std::process::Command::new(crate::support::bridge::binary()).args(["check-config", f.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tracers.db.options: table \"t; DROP TABLE x\" is not an identifier"));
}

#[test]
fn postgres_tls_settings_are_checked_by_check_config() {
    let dir = crate::support::temp_dir();
    let f = dir.path().join("c.yml");
    for (opts, expected) in [
        ("{url: \"postgres://x/db?sslmode=require\", sslmode: verify-full}", "tracers.db.options: sslmode is verify-full but the url says sslmode=require: give it in one place"),
        ("{url: \"postgres://x/db\", ssl_ca_file: /etc/ca.pem}", "ssl_ca_file (sslrootcert) is set without sslmode: set sslmode verify-full"),
        ("{url: \"postgres://x/db\", sslmode: verify_full}", "unknown variant `verify_full`, expected one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"),
    ] {
        std::fs::write(&f, format!("export: {{endpoint: \"http://x:4317\"}}\ntracers:\n  db:\n    module: postgres\n    options: {opts}\n")).unwrap();
        let out = std::process::Command::new(crate::support::bridge::binary()).args(["check-config", f.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{opts}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{opts}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn webhook_batching_sends_an_array_per_read() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let hook = Server::start(|path, _| (path == "/batch").then(|| Reply::json(200, json!({}))));
    let bridge = Bridge::run(&cfg(&redis, &rx, &format!("  b:\n    module: webhook\n    options: {{url: \"{}/batch\", batch: true}}\n", hook.url())));
    // Written in one pipeline, so a read sees several of them at once.
    let mut conn = redis.conn();
    let mut pipe = redis::pipe();
    for (i, seq) in (-1i64..3).zip(0u64..) {
        let r = json!({"v": 1, "event": "tracer_call", "run": "r1", "vcon_uuid": "u1", "ts_ns": 2000 + seq, "seq": seq,
            "links": ["a", "b", "c"], "link_index": i, "tracer": "otel", "in_vcon_uuid": "u1", "out_vcon_uuid": "u1"});
        pipe.cmd("XADD").arg("vcon_otel:events").arg("*").arg("r").arg(r.to_string()).ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    assert!(wait_until(T, || hook.requests().iter().map(|r| r.body.as_array().map_or(0, Vec::len)).sum::<usize>() == 4), "{}", bridge.output());
    let reqs = hook.requests();
    assert!(reqs.len() < 4, "records were batched: {} requests", reqs.len());
    let indexes: Vec<i64> = reqs.iter().flat_map(|r| r.body.as_array().unwrap().iter().map(|b| b["link_index"].as_i64().unwrap())).collect();
    assert_eq!(indexes, [-1, 0, 1, 2]);
}

#[test]
fn a_collector_outage_never_stops_a_hosted_tracer_and_loses_no_pipeline_span() {
    // More outcome spans than the export queue holds, with the collector down throughout: before
    // the tracers offered their spans without waiting, this stalled every hosted delivery.
    const RUNS: usize = 1_500;
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    rx.set_down(true);
    let hook = Server::start(|path, _| (path == "/events").then(|| Reply::json(200, json!({"ok": true}))));
    let config = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50, max_inflight: 1000, max_backoff_ms: 500}}\nstream: {{consumer: t, block_ms: 200}}\ntracers:\n  audit_hook:\n    module: webhook\n    options: {{url: \"{}/events\"}}\n",
        redis.url(),
        rx.grpc_endpoint(),
        hook.url()
    );
    let bridge = Bridge::run(&config);
    let mut conn = redis.conn();
    let mut pipe = redis::pipe();
    for n in 0..RUNS {
        let (run, uuid) = (format!("r{n}"), format!("u{n}"));
        for (seq, i) in (-1i64..3).enumerate() {
            let r = json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": 2_000 + seq as u64 * 100,
                "start_ns": 1_950 + seq as u64 * 100, "run_start_ns": 1_900, "seq": seq, "links": ["a", "b", "c"],
                "link_index": i, "tracer": "otel", "in_vcon_uuid": uuid, "out_vcon_uuid": uuid});
            pipe.cmd("XADD").arg("vcon_otel:events").arg("*").arg("r").arg(r.to_string()).ignore();
        }
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let delivered = || hook.requests().iter().filter(|r| r.status == 200).count();
    assert!(wait_until(Duration::from_secs(90), || delivered() == RUNS * 4), "webhook delivered {} of {} while the collector was down:\n{}", delivered(), RUNS * 4, bridge.output());
    assert!(rx.spans().is_empty(), "the collector was down the whole time");
    let dropped = bridge.metric_value(&["vcon_otel_spans_dropped_total{", "reason=\"export_queue_full\""]).unwrap_or(0.0);
    assert!(dropped > 0.0, "the export queue filled, and outcome spans were dropped instead of waited on:\n{}", bridge.metrics_text());
    rx.set_down(false);
    let pipeline_spans = || {
        let mut ids: Vec<(Vec<u8>, Vec<u8>)> =
            rx.spans().into_iter().filter(|s| !s.span.name.starts_with("tracer ")).map(|s| (s.span.trace_id, s.span.span_id)).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    // Per run: three link spans and the root.
    assert!(wait_until(Duration::from_secs(90), || pipeline_spans() == RUNS * 4), "{} of {} pipeline spans after recovery", pipeline_spans(), RUNS * 4);
    assert!(wait_until(T, || redis.pending("vcon_otel:events", "vcon-otel") == 0));
}

/// Options of a postgres tracer named `name` writing to `table` on `url`, plus `extra` options.
fn pg_tracer(name: &str, url: &str, table: &str, extra: &str) -> String {
    format!("  {name}:\n    module: postgres\n    options: {{url: \"{url}\", table: {table}, initial_backoff_ms: 50, max_backoff_ms: 200, max_attempts: 1000{extra}}}\n")
}

#[test]
fn postgres_writes_through_tls_with_verify_full_and_refuses_plain_connections() {
    let dir = crate::support::temp_dir();
    let (ca, cert, key) = crate::support::otlp::make_tls_files(dir.path());
    let pg = crate::support::postgres::Postgres::start_tls(&cert, &key);
    let (redis, rx) = (RedisServer::start(), Receiver::start(vec![]));
    let (base, ca) = (format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port), ca.display().to_string());
    let tracers = [
        pg_tracer("full", &base, "tls_options", &format!(", sslmode: verify-full, ssl_ca_file: \"{ca}\"")),
        pg_tracer("in_url", &format!("{base}?sslmode=verify-full&sslrootcert={ca}"), "tls_url", ""),
        // The certificate names 127.0.0.1 only: verify-ca checks the chain, not the name.
        pg_tracer("ca_only", &format!("postgres://postgres@localhost:{}/postgres", pg.port), "tls_ca", &format!(", sslmode: verify-ca, ssl_ca_file: \"{ca}\"")),
        // Encryption without certificate checks, as libpq's require and prefer.
        pg_tracer("encrypt_only", &base, "tls_require", ", sslmode: require"),
        pg_tracer("if_offered", &base, "tls_prefer", ", sslmode: prefer"),
        pg_tracer("plain", &base, "never", ""),
    ]
    .concat();
    let bridge = Bridge::run(&cfg(&redis, &rx, &tracers));
    run_with_snapshots(&redis, "r1", "u1", None);
    for table in ["tls_options", "tls_url", "tls_ca", "tls_require", "tls_prefer"] {
        assert!(wait_until(T, || pg.query_count(&format!("SELECT count(*) FROM {table}")) == 4), "{table}: {}", bridge.output());
    }
    // The server's own view: the tracers' TCP connections are encrypted.
    assert!(pg.query_count("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.client_addr IS NOT NULL") >= 5);
    // Without sslmode the server refuses the connection: permanent, with the fix named, not retried.
    assert!(wait_until(T, || plain(&bridge.output()).contains("the server accepts this user only over TLS: set sslmode verify-full")), "{}", bridge.output());
    assert_eq!(pg.query_count("SELECT count(*) FROM pg_tables WHERE tablename = 'never'"), 0);
    assert_eq!(bridge.metric_value(&["vcon_otel_tracer_retries_total{", "tracer=\"plain\""]).unwrap_or(0.0), 0.0);
}

#[test]
fn postgres_with_a_wrong_ca_is_a_permanent_error_reported_once() {
    let (dir, other) = (crate::support::temp_dir(), crate::support::temp_dir());
    let (ca, cert, key) = crate::support::otlp::make_tls_files(dir.path());
    // A CA of another name that signed nothing the server uses.
    let other_ca = other.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=another CA"])
        .current_dir(other.path())
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let pg = crate::support::postgres::Postgres::start_tls(&cert, &key);
    let (redis, rx) = (RedisServer::start(), Receiver::start(vec![]));
    let tracers = [
        pg_tracer("bad_ca", &format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port), "t1", &format!(", sslmode: verify-full, ssl_ca_file: \"{}\"", other_ca.display())),
        pg_tracer("bad_name", &format!("postgres://postgres@localhost:{}/postgres", pg.port), "t2", &format!(", sslmode: verify-full, ssl_ca_file: \"{}\"", ca.display())),
    ]
    .concat();
    let bridge = Bridge::run(&cfg(&redis, &rx, &tracers));
    run_with_snapshots(&redis, "r1", "u1", None);
    run_with_snapshots(&redis, "r2", "u2", None);
    let gave_up = |t: &str| bridge.metric_value(&["vcon_otel_tracer_failures_total{", &format!("tracer=\"{t}\""), "reason=\"tls\""]).unwrap_or(0.0);
    assert!(wait_until(T, || gave_up("bad_ca") == 8.0 && gave_up("bad_name") == 8.0), "{}\n{}", bridge.metrics_text(), bridge.output());
    let out = plain(&bridge.output());
    let reports = |tracer: &str, needle: &str| {
        out.lines().filter(|l| l.contains("ERROR") && l.contains("target refuses permanently") && l.contains(&format!("tracer={tracer}")) && l.contains(needle)).count()
    };
    assert_eq!(reports("bad_ca", &format!("invalid peer certificate: UnknownIssuer: the server's certificate is not signed by a CA in {}: set ssl_ca_file", other_ca.display())), 1, "{out}");
    assert_eq!(reports("bad_name", "does not name the host in url"), 1, "{out}");
    assert!(!out.lines().any(|l| l.contains("WARN") && l.contains("tracer=bad_")), "a permanent error is not an outage (no WARN):\n{out}");
    for t in ["bad_ca", "bad_name"] {
        assert_eq!(bridge.metric_value(&["vcon_otel_tracer_retries_total{", &format!("tracer=\"{t}\"")]).unwrap_or(0.0), 0.0, "{t} was retried");
        assert!(bridge.metric_value(&["vcon_otel_tracer_calls_total{", &format!("tracer=\"{t}\""), "outcome=\"error\""]).unwrap_or(0.0) >= 1.0);
    }
    assert_eq!(pg.query_count("SELECT count(*) FROM pg_tables WHERE tablename IN ('t1', 't2')"), 0);
}
