//! Configuration tests: defaults, precedence, and every problem with its key path.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

#[test]
fn defaults_and_env_fill_what_the_file_leaves_out() {
    let c = validate(
        parse("service_name: conserver-prod\n").unwrap(),
        &env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=a%3Db,tenant=t1"),
            ("REDIS_URL", "redis://r:6379"),
        ]),
    )
    .unwrap();
    let e = c.export.unwrap();
    assert_eq!(e.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(e.protocol, Protocol::HttpProtobuf);
    assert_eq!(e.headers, vec![("x-api-key".into(), "a=b".into()), ("tenant".into(), "t1".into())]);
    assert_eq!(c.redis.url, "redis://r:6379");
    assert_eq!(c.stream.key, "vcon_otel:events");
}

#[test]
fn the_file_wins_over_the_environment() {
    let c = validate(
        parse("export:\n  endpoint: http://a:4317\n  compression: zstd\n").unwrap(),
        &env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4317"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
    )
    .unwrap();
    let e = c.export.unwrap();
    assert_eq!(e.endpoint, "http://a:4317");
    assert_eq!(e.compression, Compression::Zstd);
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let raw = parse("redis:\n  url: localhost\nexport:\n  endpoint: collector:4317\n  protocol: http/json\nadmin:\n  addr: nine\nhttp_ingest:\n  addr: 127.0.0.1:8080\n").unwrap();
    let err = validate(raw, &env_of(&[])).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["redis.url", "export.protocol", "export.endpoint", "admin.addr", "http_ingest.token"]);
    assert!(err.to_string().contains("hint: use grpc or http/protobuf"));
}

#[test]
fn tracers_are_configured_in_the_conservers_shape() {
    let c = validate(
        parse("tracers:\n  audit:\n    module: audit_log\n    options: {path: /var/log/vcon/audit.jsonl, retention_policy: 10_years}\n").unwrap(),
        &env_of(&[]),
    )
    .unwrap();
    let a = c.audit_log.unwrap();
    assert_eq!((a.path.to_str().unwrap(), a.retention_policy.as_str(), a.max_bytes), ("/var/log/vcon/audit.jsonl", "10_years", 100 << 20));
    let err = validate(parse("tracers:\n  j:\n    module: jlinc\n  a:\n    module: audit_log\n    options: {pth: x}\n").unwrap(), &env_of(&[])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tracers.a.options: unknown field `pth`"), "{text}");
    assert!(text.contains("tracers.j.options: missing field `data_store_api_url`"), "{text}");
}

#[test]
fn hosted_tracers_take_common_options_and_chain_lists() {
    let c = validate(
        parse("tracers:\n  hook:\n    module: webhook\n    options: {url: \"http://audit/events\", timeout_secs: 3, dlq_vcon_on_error: true}\n  s:\n    module: statsd\nchains:\n  main: {tracers: [hook]}\n").unwrap(),
        &env_of(&[]),
    )
    .unwrap();
    let hook = c.hosted.iter().find(|h| h.name == "hook").unwrap();
    let common = hook.module.common();
    assert_eq!((common.timeout(), common.dlq_vcon_on_error, hook.chains.clone()), (Duration::from_secs(3), true, vec!["main".to_string()]));
    assert!(c.hosted.iter().find(|h| h.name == "s").unwrap().chains.is_empty(), "a tracer named by no chain runs for all");
    let err = validate(parse("tracers:\n  w:\n    module: webhook\n    options: {url: x, retries: 3}\nchains:\n  main: {tracers: [nope]}\n").unwrap(), &env_of(&[])).unwrap_err().to_string();
    assert!(err.contains("chains.main.tracers: \"nope\" is not a tracer under tracers:"), "{err}");
    assert!(err.contains("tracers.w.options: unknown field `retries`"), "{err}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = parse("stream:\n  keyy: x\n").unwrap_err();
    assert!(err.to_string().contains("keyy"), "{err}");
}

#[test]
fn chains_are_named_from_the_conserver_config() {
    let (chains, modules) = conserver_naming(
        "links:\n  tag:\n    module: links.tag\nchains:\n  main:\n    links: [tag, expire]\n  other:\n    links: [tag]\n  dup:\n    links: [tag]\n",
    )
    .unwrap();
    assert_eq!(chains.get(&vec!["tag".to_string(), "expire".to_string()]).unwrap(), "main");
    assert!(!chains.contains_key(&vec!["tag".to_string()]), "ambiguous link lists name no chain");
    assert_eq!(modules["tag"], "links.tag");
}

#[test]
fn read_ahead_defaults_to_four_reads_and_holds_at_least_one() {
    let c = validate(parse("stream: {read_count: 100}\n").unwrap(), &env_of(&[])).unwrap();
    assert_eq!((c.stream.read_count, c.stream.read_ahead), (100, 400));
    let err = validate(parse("stream: {read_count: 100, read_ahead: 99}\n").unwrap(), &env_of(&[])).unwrap_err();
    assert_eq!(err.0.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["stream.read_ahead"]);
    assert!(err.to_string().contains("99 is smaller than stream.read_count (100)"), "{err}");
}
