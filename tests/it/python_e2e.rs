//! End to end through the real producer: python/tests/conserver_sim.py calls the vcon_otel tracer
//! module and hooks exactly as vCon Server does -> Redis -> `vcon-otel run` -> OTLP receiver.

use crate::support::bridge::Bridge;
use crate::support::otlp::{Receiver, Received};
use crate::support::redis::RedisServer;
use crate::support::{env_path, wait_until};
use std::time::Duration;

fn conserver(redis: &RedisServer, scenario: &str, hooks: bool) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/conserver_sim.py");
    let mut cmd = std::process::Command::new(env_path("VCON_OTEL_PYTHON"));
    cmd.args([script, "--redis-url", &redis.url(), "--scenario", scenario]);
    if hooks {
        cmd.arg("--hooks");
    }
    let out = cmd.output().expect("run conserver_sim.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["vcon_uuid"].as_str().unwrap().to_string()
}

fn trace_of(rx: &Receiver, vcon: &str) -> Vec<Received> {
    let roots: Vec<Received> = rx.spans().into_iter().filter(|s| s.span.parent_span_id.is_empty() && s.attr("vcon.uuid").as_deref() == Some(vcon)).collect();
    assert_eq!(roots.len(), 1, "one root for the run of {vcon}");
    let t = roots[0].span.trace_id.clone();
    rx.spans().into_iter().filter(|s| s.span.trace_id == t).collect()
}

#[test]
fn python_tracer_and_hooks_give_the_documented_trees_with_compliance_hashes() {
    let redis = RedisServer::start();
    let rx = Receiver::start(vec![]);
    let cfg = format!(
        "redis: {{url: \"{}\"}}\nexport: {{endpoint: \"{}\", max_batch_delay_ms: 50}}\nstream: {{consumer: e2e, block_ms: 200}}\nruns: {{idle_timeout_secs: 1}}\n",
        redis.url(),
        rx.grpc_endpoint()
    );
    let bridge = Bridge::run(&cfg);
    let plain = conserver(&redis, "three_links", false);
    let swapped = conserver(&redis, "swap", false);
    let halted = conserver(&redis, "halt", true);
    let failed = conserver(&redis, "link_error", true);
    let lost = conserver(&redis, "link_error", false);
    // 4 + 4 + (root + 2 links) + (root + link 0 + failed link 1) + (root + link 0)
    assert!(rx.wait_for_spans(16, Duration::from_secs(20)), "{}", bridge.output());

    let t = trace_of(&rx, &plain);
    assert_eq!(t.len(), 4);
    for s in &t {
        let h = s.attr(if s.span.parent_span_id.is_empty() { "vcon.hash.final" } else { "vcon.hash.sha256" });
        assert_eq!(h.as_ref().map(String::len), Some(64), "{} carries the compliance hash", s.span.name);
    }
    let root = t.iter().find(|s| s.span.parent_span_id.is_empty()).unwrap();
    assert_ne!(root.attr("vcon.hash.entering"), root.attr("vcon.hash.final"), "the links changed the vCon");
    assert_eq!(root.attr("vcon.run.outcome").as_deref(), Some("complete"));

    let t = trace_of(&rx, &swapped);
    let swap = t.iter().find(|s| s.span.name == "link swap").unwrap();
    assert_eq!(swap.attr("vcon.uuid.before").as_deref(), Some(swapped.as_str()));
    assert!(swap.attr("vcon.uuid.after").is_some());

    let t = trace_of(&rx, &halted);
    let root = t.iter().find(|s| s.span.parent_span_id.is_empty()).unwrap();
    assert_eq!(root.span.name, "chain halt");
    assert_eq!(root.attr("vcon.run.outcome").as_deref(), Some("halted"));
    assert_eq!(root.attr("vcon.ingress_list").as_deref(), Some("halt_in"));
    assert_eq!(t.iter().find(|s| s.span.name == "link tag").unwrap().attr("vcon.link.module").as_deref(), Some("links.tag"));
    // With hooks the producer holds the halting link's record back to the chain's end, so the link
    // span says it halted the chain (not only the root).
    assert_eq!(t.iter().find(|s| s.span.name == "link halt").unwrap().attr("vcon.link.outcome").as_deref(), Some("halted"));
    assert_eq!(t.iter().find(|s| s.span.name == "link tag").unwrap().attr("vcon.link.outcome").as_deref(), Some("ok"));

    let t = trace_of(&rx, &failed);
    let boom = t.iter().find(|s| s.span.name == "link boom").unwrap();
    assert_eq!(boom.attr("error.type").as_deref(), Some("RuntimeError"));
    assert_eq!(t.iter().find(|s| s.span.parent_span_id.is_empty()).unwrap().attr("vcon.run.outcome").as_deref(), Some("failed"));

    let t = trace_of(&rx, &lost);
    assert_eq!(t.iter().find(|s| s.span.parent_span_id.is_empty()).unwrap().attr("vcon.run.outcome").as_deref(), Some("incomplete"));
    assert!(wait_until(Duration::from_secs(10), || redis.pending("vcon_otel:events", "vcon-otel") == 0));
}
