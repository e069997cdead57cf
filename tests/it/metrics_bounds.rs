//! `/metrics` stays bounded whatever producers send: hostile chain and link names (15 KB long,
//! with quotes, backslashes and newlines; 210 × 210 distinct pairs) through a real Redis stream and
//! the real bridge, scraped by a real Prometheus.

use crate::support::bridge::{metric_value, Bridge};
use crate::support::otlp::Receiver;
use crate::support::prometheus::Prometheus;
use crate::support::redis::RedisServer;
use crate::support::wait_until;
use serde_json::json;
use std::time::Duration;

const STREAM: &str = "vcon_otel:events";
/// The defaults (`metrics::Bounds::default()`), which this test holds to.
const MAX_LEN: usize = 64;
const MAX_SERIES: usize = 200;

fn link_complete(i: usize, chain: &str, link: &str) -> String {
    json!({"v": 1, "event": "link_complete", "run": format!("r{i}"), "vcon_uuid": format!("u{i}"), "ts_ns": 2_000 + i as u64,
           "start_ns": 1_000, "chain": chain, "link": link, "link_index": 0})
    .to_string()
}

fn push_all(redis: &RedisServer, records: &[String]) {
    let mut conn = redis.conn();
    for chunk in records.chunks(2_000) {
        let mut pipe = redis::pipe();
        for r in chunk {
            pipe.cmd("XADD").arg(STREAM).arg("*").arg("r").arg(r).ignore();
        }
        let _: () = pipe.query(&mut conn).unwrap();
    }
}

/// The value of each `name="…"` label in a sample line (escapes left as written).
fn label_values<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &line[start..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() && bytes[end] != b'"' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    Some(&rest[..end])
}

#[test]
fn hostile_chain_and_link_names_leave_metrics_bounded_and_counted() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50, max_batch_spans: 2048}}\nstream: {{consumer: hostile, block_ms: 200}}\n",
        redis.url(),
        rx.grpc_endpoint()
    );
    let bridge = Bridge::run(&cfg);
    let prom = Prometheus::scraping(bridge.admin_port);

    // 210 × 210 distinct short (chain, link) pairs, then 300 records whose chain and link names
    // are 15 KB each, all different, with characters the exposition format must escape.
    let mut records = Vec::new();
    for c in 0..210 {
        for l in 0..210 {
            records.push(link_complete(records.len(), &format!("c{c}"), &format!("l{l}")));
        }
    }
    let long = 300;
    for i in 0..long {
        let pad = "\"\\\n é".repeat(2_500);
        records.push(link_complete(records.len(), &format!("chain{i}-{pad}"), &format!("link{i}-{pad}")));
    }
    let total = records.len();
    push_all(&redis, &records);
    assert!(rx.wait_for_spans(total, Duration::from_secs(120)), "spans: {} of {total}\n{}", rx.spans().len(), bridge.output());

    let text = bridge.metrics_text();
    let size = text.len();
    eprintln!("/metrics after {total} hostile records: {size} bytes");
    assert!(size < 4 << 20, "/metrics is {size} bytes");
    let counts: Vec<&str> = text.lines().filter(|l| l.starts_with("vcon_otel_link_duration_seconds_count{")).collect();
    assert!(counts.len() <= MAX_SERIES + 3, "{} link series", counts.len());
    for l in &counts {
        for name in ["chain", "link"] {
            let v = label_values(l, name).unwrap();
            let unescaped = v.replace("\\\\", "\\").replace("\\\"", "\"").replace("\\n", "\n");
            assert!(unescaped.len() <= MAX_LEN, "{name} value of {} bytes: {l}", unescaped.len());
        }
    }

    // The counters say what was folded: every long name cut once per observation, values and
    // combinations past the bounds folded, and every observation counted in some series.
    let m = |parts: &[&str]| metric_value(&text, parts).unwrap_or(0.0);
    assert_eq!(m(&["vcon_otel_label_values_truncated_total{", "label=\"chain\""]), long as f64);
    assert_eq!(m(&["vcon_otel_label_values_truncated_total{", "label=\"link\""]), long as f64);
    assert!(m(&["vcon_otel_label_values_folded_total{", "label=\"chain\""]) > 0.0);
    let series_folded = m(&["vcon_otel_series_folded_total{", "family=\"vcon_otel_link_duration_seconds\""]);
    assert!(series_folded > 0.0, "{text}");
    assert_eq!(m(&["vcon_otel_link_duration_seconds_count{"]), total as f64, "every observation lands in a series");
    let other = m(&["vcon_otel_link_duration_seconds_count{", "chain=\"other\",link=\"other\""]);
    assert!(other >= series_folded, "folded combinations land in other×other ({other} < {series_folded})");

    // A real Prometheus scrapes it, and sees the same series.
    let want = counts.len() as f64;
    let seen = wait_until(Duration::from_secs(30), || {
        prom.target().is_some_and(|(h, e)| h == "up" && e.is_empty()) && prom.query_value("count(vcon_otel_link_duration_seconds_count)") == Some(want)
    });
    assert!(seen, "target {:?}, series {:?} (want {want})\n{}", prom.target(), prom.query_value("count(vcon_otel_link_duration_seconds_count)"), prom.log());
    let scrape = prom.query_value("scrape_duration_seconds").unwrap();
    eprintln!("prometheus scrape of /metrics: {scrape:.4} s, {} samples", prom.query_value("scrape_samples_scraped").unwrap_or(0.0));
}
