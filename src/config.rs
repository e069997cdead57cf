//! Configuration: YAML in the conserver's style -> [`RawConfig`] (serde, unknown keys rejected) ->
//! [`validate`] (pure: no I/O, the environment passed in) -> [`Config`].
//!
//! Precedence for the OTLP exporter: a value in the file wins; otherwise the standard
//! `OTEL_EXPORTER_OTLP_TRACES_*` then `OTEL_EXPORTER_OTLP_*` variables; otherwise the default.
//! Secrets never need to be in the file: `redis.url` falls back to `REDIS_URL`, the ingest token to
//! `VCON_OTEL_INGEST_TOKEN`, exporter headers to `OTEL_EXPORTER_OTLP_HEADERS`.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A section left empty (only comments under it) reads as YAML null: treat it as all defaults.
fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The file as written. Every field is documented in `config/vcon-otel.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Resource `service.name` of every span (the conserver's service name).
    pub service_name: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub redis: RawRedis,
    #[serde(deserialize_with = "nullable")]
    pub stream: RawStream,
    #[serde(deserialize_with = "nullable")]
    pub runs: RawRuns,
    #[serde(deserialize_with = "nullable")]
    pub export: RawExport,
    #[serde(deserialize_with = "nullable")]
    pub admin: RawAdmin,
    #[serde(deserialize_with = "nullable")]
    pub http_ingest: RawHttpIngest,
    #[serde(deserialize_with = "nullable")]
    pub metrics: RawMetrics,
    #[serde(deserialize_with = "nullable")]
    pub conserver: RawConserver,
    #[serde(deserialize_with = "nullable")]
    pub compliance: RawCompliance,
    /// Seconds to drain and flush after SIGINT/SIGTERM before giving up (unacked entries stay pending).
    pub shutdown_grace_secs: Option<u64>,
    /// Hosted tracer modules, in the conserver's shape: `{NAME: {module: ..., options: {...}}}`.
    /// Modules: `audit_log`, `webhook`, `statsd`, `jlinc` (docs/tracers.md).
    pub tracers: BTreeMap<String, RawTracer>,
    /// Per chain, the hosted tracers that run for it (`{NAME: {tracers: [...]}}`); a tracer named
    /// by no chain runs for every chain, as upstream.
    pub chains: BTreeMap<String, RawChain>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChain {
    pub tracers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracer {
    pub module: String,
    pub options: Option<serde_json::Value>,
}

/// Options of the `audit_log` module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuditLog {
    /// JSON Lines file, appended to; rotated to `path.1`, `path.2`, … past `max_bytes`.
    path: PathBuf,
    #[serde(default)]
    max_bytes: Option<u64>,
    /// Written into every record (the seeds' compliance tracer's `retention_policy`).
    #[serde(default)]
    retention_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// `redis://[user:pass@]host:port[/db]`; default `REDIS_URL`, else `redis://127.0.0.1:6379`.
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStream {
    pub key: Option<String>,
    pub group: Option<String>,
    /// Consumer name in the group; default the host name (stable across restarts, so a restarted
    /// bridge re-reads its own pending entries at once).
    pub consumer: Option<String>,
    pub dead_letter_key: Option<String>,
    /// Entries per XREADGROUP call.
    pub read_count: Option<usize>,
    pub block_ms: Option<u64>,
    /// Entries pending this long with another consumer are reclaimed (XAUTOCLAIM).
    pub claim_idle_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuns {
    pub idle_timeout_secs: Option<u64>,
    pub max_open: Option<usize>,
    /// How long the completion marker `vcon_otel:done:{trace_id}` is kept.
    pub done_marker_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExport {
    /// `http(s)://host:port`; for `http/protobuf` the path `/v1/traces` is appended unless the
    /// endpoint came from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or already ends with it.
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    /// `none` (default), `gzip` or `zstd`.
    pub compression: Option<String>,
    pub timeout_secs: Option<u64>,
    #[serde(deserialize_with = "nullable")]
    pub tls: RawTls,
    pub max_batch_spans: Option<usize>,
    pub max_batch_delay_ms: Option<u64>,
    /// Entries read and not yet acknowledged; reading pauses at this many.
    pub max_inflight: Option<usize>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttpIngest {
    /// Listen address of `POST /v1/events`; absent = disabled.
    pub addr: Option<String>,
    /// Bearer token; default `VCON_OTEL_INGEST_TOKEN`. Required when `addr` is set.
    pub token: Option<String>,
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub max_label_values: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCompliance {
    /// Also put the vCon spec's `sha512-<base64url>` token of the canonical bytes on spans
    /// (`vcon.hash.sha512`). SHA-512 in software halves hashing throughput.
    pub sha512_token: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConserver {
    /// The conserver's own `config.yml`: names chains from their link lists, knows link modules.
    pub config_file: Option<PathBuf>,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Exporter settings after validation.
#[derive(Debug, Clone)]
pub struct Export {
    /// Full URL: for HTTP including `/v1/traces`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub compression: Compression,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub max_batch_spans: usize,
    pub max_batch_delay: Duration,
    pub max_inflight: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub key: String,
    pub group: String,
    pub consumer: String,
    pub dead_letter_key: String,
    pub read_count: usize,
    pub block: Duration,
    pub claim_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpIngest {
    pub addr: SocketAddr,
    pub token: String,
    pub max_body_bytes: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub service_name: String,
    pub redis_url: String,
    pub stream: Stream,
    pub idle_timeout: Duration,
    pub max_open_runs: usize,
    pub done_marker_ttl: Duration,
    /// `None` when no endpoint is configured anywhere (only the demo allows that).
    pub export: Option<Export>,
    pub admin_addr: SocketAddr,
    pub http_ingest: Option<HttpIngest>,
    pub max_label_values: usize,
    pub conserver_config: Option<PathBuf>,
    pub shutdown_grace: Duration,
    /// The `audit_log` tracer, when configured, and its name under `tracers:`.
    pub audit_log: Option<crate::compliance::audit_log::Settings>,
    pub audit_log_name: Option<String>,
    /// The other hosted tracers.
    pub hosted: Vec<HostedConfig>,
    /// Put the sha512 token on spans too.
    pub sha512_token: bool,
}

/// A hosted tracer after validation (built into a running module by `pipeline`).
#[derive(Debug, Clone)]
pub struct HostedConfig {
    pub name: String,
    pub module: String,
    /// The module's own options (the common ones removed).
    pub options: serde_json::Value,
    pub common: crate::tracers::Common,
    pub chains: Vec<String>,
}

/// Options every hosted tracer takes besides its module's.
const COMMON_OPTIONS: &[&str] = &["timeout_secs", "max_attempts", "initial_backoff_ms", "max_backoff_ms", "dlq_vcon_on_error", "dlq_ingress_list"];

fn hosted_options(name: &str, module: &str, options: Option<&serde_json::Value>, p: &mut Vec<Problem>) -> Option<(serde_json::Value, crate::tracers::Common)> {
    let mut opts = match options {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => {
            p.push(Problem { path: format!("tracers.{name}.options"), message: "must be a mapping".into(), hint: "write options: {key: value, ...}".into() });
            return None;
        }
    };
    let mut take_u64 = |key: &str, default: u64, p: &mut Vec<Problem>| match opts.remove(key) {
        None => default,
        Some(v) => v.as_u64().unwrap_or_else(|| {
            p.push(Problem { path: format!("tracers.{name}.options.{key}"), message: format!("{v} is not a whole number"), hint: "remove the key to use the default".into() });
            default
        }),
    };
    let timeout = take_u64("timeout_secs", 10, p);
    let max_attempts = take_u64("max_attempts", 5, p).max(1);
    let initial = take_u64("initial_backoff_ms", 200, p);
    let max = take_u64("max_backoff_ms", 30_000, p);
    let dlq = match opts.remove("dlq_vcon_on_error") {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(v) => {
            p.push(Problem { path: format!("tracers.{name}.options.dlq_vcon_on_error"), message: format!("{v} is not true or false"), hint: "write true or false".into() });
            false
        }
    };
    let dlq_ingress_list = opts.remove("dlq_ingress_list").and_then(|v| v.as_str().map(str::to_string));
    let module_opts = serde_json::Value::Object(opts);
    let check: Result<(), String> = match module {
        "webhook" => serde_json::from_value::<crate::tracers::webhook::Config>(module_opts.clone()).map(|_| ()).map_err(|e| e.to_string()),
        "statsd" => serde_json::from_value::<crate::tracers::statsd::Config>(module_opts.clone()).map(|_| ()).map_err(|e| e.to_string()),
        "jlinc" => serde_json::from_value::<crate::tracers::jlinc::Config>(module_opts.clone()).and_then(|c| {
            match c.sender_mode.as_deref() {
                None | Some("intended") | Some("upstream") => Ok(()),
                Some(other) => Err(serde::de::Error::custom(format!("sender_mode {other:?} is not intended or upstream"))),
            }
        }).map_err(|e| e.to_string()),
        "postgres" => serde_json::from_value::<crate::tracers::postgres::Config>(module_opts.clone())
            .map_err(|e| e.to_string())
            .and_then(|c| crate::tracers::postgres::check(&c)),
        _ => unreachable!("checked by the caller"),
    };
    if let Err(e) = check {
        p.push(Problem {
            path: format!("tracers.{name}.options"),
            message: e,
            hint: format!("see docs/tracers.md for the options of {module}; every hosted tracer also takes {}", COMMON_OPTIONS.join(", ")),
        });
        return None;
    }
    Some((
        module_opts,
        crate::tracers::Common {
            timeout: Duration::from_secs(timeout.max(1)),
            max_attempts: max_attempts as u32,
            initial_backoff: Duration::from_millis(initial),
            max_backoff: Duration::from_millis(max.max(initial)),
            dlq_vcon_on_error: dlq,
            dlq_ingress_list,
        },
    ))
}

/// One configuration problem: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (hint: {})", self.path, self.message, self.hint)
    }
}

/// Every problem found, so a user fixes them all in one go.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Parses YAML text. Syntax and unknown keys are reported with their location.
pub fn parse(text: &str) -> Result<RawConfig, Problems> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_saphyr::from_str(text).map_err(|e| {
        Problems(vec![Problem {
            path: "(file)".into(),
            message: e.to_string(),
            hint: "see config/vcon-otel.yml for every key with its meaning".into(),
        }])
    })
}

/// Validates and resolves defaults. `env` reads an environment variable (tests pass a map).
pub fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Problems> {
    let mut p = Vec::new();
    let mut bad = |path: &str, message: String, hint: &str| {
        p.push(Problem { path: path.into(), message, hint: hint.into() });
    };

    let redis_url = raw
        .redis
        .url
        .or_else(|| env("REDIS_URL"))
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://") || redis_url.starts_with("unix://")) {
        bad("redis.url", format!("{redis_url:?} is not a Redis URL"), "write redis://host:6379 (or rediss:// for TLS)");
    }

    let positive = |v: Option<u64>, d: u64| v.unwrap_or(d);
    let mut nonzero = |path: &str, v: u64| {
        if v == 0 {
            p.push(Problem { path: path.into(), message: "must be greater than 0".into(), hint: "remove the key to use the default".into() });
        }
    };
    let read_count = raw.stream.read_count.unwrap_or(512);
    nonzero("stream.read_count", read_count as u64);
    let idle = positive(raw.runs.idle_timeout_secs, 300);
    nonzero("runs.idle_timeout_secs", idle);
    let max_open = raw.runs.max_open.unwrap_or(100_000);
    nonzero("runs.max_open", max_open as u64);
    let claim_idle = positive(raw.stream.claim_idle_secs, 60);
    nonzero("stream.claim_idle_secs", claim_idle);
    let max_label_values = raw.metrics.max_label_values.unwrap_or(200);
    nonzero("metrics.max_label_values", max_label_values as u64);

    let consumer = raw.stream.consumer.unwrap_or_else(|| {
        env("HOSTNAME").unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    });
    let stream = Stream {
        key: raw.stream.key.unwrap_or_else(|| "vcon_otel:events".into()),
        group: raw.stream.group.unwrap_or_else(|| "vcon-otel".into()),
        consumer,
        dead_letter_key: raw.stream.dead_letter_key.unwrap_or_else(|| "vcon_otel:events:dead".into()),
        read_count,
        block: Duration::from_millis(raw.stream.block_ms.unwrap_or(1000)),
        claim_idle: Duration::from_secs(claim_idle),
    };

    let export = resolve_export(raw.export, env, &mut p);

    let admin_text = raw.admin.addr.unwrap_or_else(|| "127.0.0.1:9464".into());
    let admin_addr = parse_addr("admin.addr", &admin_text, &mut p);

    let http_ingest = match raw.http_ingest.addr {
        None => None,
        Some(a) => {
            let addr = parse_addr("http_ingest.addr", &a, &mut p);
            let token = raw.http_ingest.token.or_else(|| env("VCON_OTEL_INGEST_TOKEN"));
            match (addr, token) {
                (Some(addr), Some(token)) if token.len() >= 16 => Some(HttpIngest {
                    addr,
                    token,
                    max_body_bytes: raw.http_ingest.max_body_bytes.unwrap_or(1 << 20),
                }),
                (_, Some(_)) => {
                    p.push(Problem {
                        path: "http_ingest.token".into(),
                        message: "the bearer token is shorter than 16 characters".into(),
                        hint: "use a long random value, e.g. `openssl rand -hex 32`".into(),
                    });
                    None
                }
                (_, None) => {
                    p.push(Problem {
                        path: "http_ingest.token".into(),
                        message: "POST /v1/events is enabled but no bearer token is set".into(),
                        hint: "set VCON_OTEL_INGEST_TOKEN in the environment (or http_ingest.token)".into(),
                    });
                    None
                }
            }
        }
    };

    let mut audit_log = None;
    let mut audit_log_name = None;
    let mut hosted = Vec::new();
    for (chain, c) in &raw.chains {
        for t in &c.tracers {
            if !raw.tracers.contains_key(t) {
                p.push(Problem {
                    path: format!("chains.{chain}.tracers"),
                    message: format!("{t:?} is not a tracer under tracers:"),
                    hint: format!("define it under tracers: or remove it (defined: {})", raw.tracers.keys().cloned().collect::<Vec<_>>().join(", ")),
                });
            }
        }
    }
    for (name, t) in &raw.tracers {
        match t.module.as_str() {
            "webhook" | "statsd" | "jlinc" | "postgres" => {
                if let Some((options, common)) = hosted_options(name, &t.module, t.options.as_ref(), &mut p) {
                    let chains = raw.chains.iter().filter(|(_, c)| c.tracers.contains(name)).map(|(n, _)| n.clone()).collect();
                    hosted.push(HostedConfig { name: name.clone(), module: t.module.clone(), options, common, chains });
                }
            }
            "audit_log" | "vcon_otel.audit_log" => {
                if audit_log.is_some() {
                    p.push(Problem {
                        path: format!("tracers.{name}"),
                        message: "a second audit_log tracer".into(),
                        hint: "configure one audit_log tracer; rotate or ship its file for more copies".into(),
                    });
                    continue;
                }
                let opts = t.options.clone().unwrap_or(serde_json::Value::Null);
                match serde_json::from_value::<RawAuditLog>(opts) {
                    Ok(o) => {
                        audit_log = Some(crate::compliance::audit_log::Settings {
                            path: o.path,
                            max_bytes: o.max_bytes.unwrap_or(100 << 20),
                            retention_policy: o.retention_policy.unwrap_or_else(|| "7_years".into()),
                        });
                        audit_log_name = Some(name.clone());
                    }
                    Err(e) => p.push(Problem {
                        path: format!("tracers.{name}.options"),
                        message: e.to_string(),
                        hint: "audit_log takes path (required), max_bytes, retention_policy".into(),
                    }),
                }
            }
            other => p.push(Problem {
                path: format!("tracers.{name}.module"),
                message: format!("{other:?} is not a tracer module this bridge hosts"),
                hint: "available: audit_log, webhook, statsd, jlinc, postgres".into(),
            }),
        }
    }

    if p.is_empty() {
        Ok(Config {
            service_name: raw.service_name.unwrap_or_else(|| "conserver".into()),
            redis_url,
            stream,
            idle_timeout: Duration::from_secs(idle),
            max_open_runs: max_open,
            done_marker_ttl: Duration::from_secs(raw.runs.done_marker_ttl_secs.unwrap_or(86_400)),
            export,
            admin_addr: admin_addr.expect("checked"),
            http_ingest,
            max_label_values,
            conserver_config: raw.conserver.config_file,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
            audit_log,
            audit_log_name,
            hosted,
            sha512_token: raw.compliance.sha512_token,
        })
    } else {
        Err(Problems(p))
    }
}

fn parse_addr(path: &str, text: &str, p: &mut Vec<Problem>) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(Problem {
                path: path.into(),
                message: format!("{text:?} is not an IP:port address"),
                hint: "write e.g. 127.0.0.1:9464 or 0.0.0.0:9464".into(),
            });
            None
        }
    }
}

fn resolve_export(raw: RawExport, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Export> {
    let var = |name: &str| env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}")).or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")));
    let protocol_text = raw.protocol.or_else(|| var("PROTOCOL")).unwrap_or_else(|| "grpc".into());
    let protocol = match protocol_text.as_str() {
        "grpc" => Protocol::Grpc,
        "http/protobuf" => Protocol::HttpProtobuf,
        other => {
            p.push(Problem {
                path: "export.protocol".into(),
                message: format!("{other:?} is not supported"),
                hint: "use grpc or http/protobuf (http/json is not supported)".into(),
            });
            Protocol::Grpc
        }
    };
    let signal_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let (endpoint, exact) = match (raw.endpoint, signal_endpoint) {
        (Some(e), _) => (e, false),
        (None, Some(e)) => (e, true),
        (None, None) => (env("OTEL_EXPORTER_OTLP_ENDPOINT")?, false),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        p.push(Problem {
            path: "export.endpoint".into(),
            message: format!("{endpoint:?} has no http:// or https:// scheme"),
            hint: "write e.g. http://localhost:4317 (gRPC) or http://localhost:4318 (HTTP)".into(),
        });
    }
    let endpoint = match protocol {
        Protocol::HttpProtobuf if !exact && !endpoint.trim_end_matches('/').ends_with("/v1/traces") => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint,
    };
    let compression_text = raw.compression.or_else(|| var("COMPRESSION")).unwrap_or_else(|| "none".into());
    let compression = match compression_text.as_str() {
        "none" | "" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        other => {
            p.push(Problem {
                path: "export.compression".into(),
                message: format!("{other:?} is not supported"),
                hint: "use none, gzip or zstd".into(),
            });
            Compression::None
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    match raw.headers {
        Some(h) => headers.extend(h),
        None => {
            if let Some(text) = var("HEADERS") {
                for pair in text.split(',').filter(|s| !s.trim().is_empty()) {
                    match pair.split_once('=') {
                        Some((k, v)) => headers.push((percent_decode(k.trim()), percent_decode(v.trim()))),
                        None => p.push(Problem {
                            path: "OTEL_EXPORTER_OTLP_HEADERS".into(),
                            message: format!("{pair:?} is not key=value"),
                            hint: "write key1=value1,key2=value2 (values URL-encoded)".into(),
                        }),
                    }
                }
            }
        }
    }
    for (k, _) in &headers {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            p.push(Problem {
                path: format!("export.headers.{k}"),
                message: "is not a valid header name".into(),
                hint: "use letters, digits, '-' and '_'".into(),
            });
        }
    }
    let timeout = match raw.timeout_secs {
        Some(s) => Duration::from_secs(s),
        None => match var("TIMEOUT") {
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    p.push(Problem {
                        path: "OTEL_EXPORTER_OTLP_TIMEOUT".into(),
                        message: format!("{ms:?} is not a whole number of milliseconds"),
                        hint: "write e.g. 10000".into(),
                    });
                    Duration::from_secs(10)
                }
            },
            None => Duration::from_secs(10),
        },
    };
    let tls = RawTls {
        ca_file: raw.tls.ca_file.or_else(|| var("CERTIFICATE").map(PathBuf::from)),
        cert_file: raw.tls.cert_file.or_else(|| var("CLIENT_CERTIFICATE").map(PathBuf::from)),
        key_file: raw.tls.key_file.or_else(|| var("CLIENT_KEY").map(PathBuf::from)),
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        p.push(Problem {
            path: "export.tls".into(),
            message: "cert_file and key_file must be set together".into(),
            hint: "set both for mutual TLS, or neither".into(),
        });
    }
    let max_batch_spans = raw.max_batch_spans.unwrap_or(512);
    let max_inflight = raw.max_inflight.unwrap_or(20_000);
    if max_batch_spans == 0 || max_inflight == 0 {
        p.push(Problem {
            path: "export.max_batch_spans / export.max_inflight".into(),
            message: "must be greater than 0".into(),
            hint: "remove the key to use the default".into(),
        });
    }
    Some(Export {
        endpoint,
        protocol,
        headers,
        compression,
        timeout,
        ca_file: tls.ca_file,
        cert_file: tls.cert_file,
        key_file: tls.key_file,
        max_batch_spans,
        max_batch_delay: Duration::from_millis(raw.max_batch_delay_ms.unwrap_or(200)),
        max_inflight,
        initial_backoff: Duration::from_millis(raw.initial_backoff_ms.unwrap_or(100)),
        max_backoff: Duration::from_millis(raw.max_backoff_ms.unwrap_or(30_000)),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads chain names and link modules from the conserver's `config.yml` (`chains:` and `links:`).
pub fn conserver_naming(text: &str) -> Result<(HashMap<Vec<String>, String>, HashMap<String, String>), String> {
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut chains = HashMap::new();
    let mut ambiguous = Vec::new();
    if let Some(map) = doc.get("chains").and_then(|c| c.as_object()) {
        for (name, chain) in map {
            let links: Vec<String> = chain
                .get("links")
                .and_then(|l| l.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if chains.insert(links.clone(), name.clone()).is_some() {
                ambiguous.push(links);
            }
        }
    }
    // Two chains with the same link list cannot be told apart from tracer calls alone.
    for l in ambiguous {
        chains.remove(&l);
    }
    let mut modules = HashMap::new();
    if let Some(map) = doc.get("links").and_then(|c| c.as_object()) {
        for (name, link) in map {
            if let Some(m) = link.get("module").and_then(|m| m.as_str()) {
                modules.insert(name.clone(), m.to_string());
            }
        }
    }
    Ok((chains, modules))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.redis_url, "redis://r:6379");
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
        assert_eq!((hook.common.timeout, hook.common.dlq_vcon_on_error, hook.chains.clone()), (Duration::from_secs(3), true, vec!["main".to_string()]));
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
}
