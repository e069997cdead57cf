//! Configuration: YAML in the conserver's style -> [`RawConfig`] (serde, unknown keys rejected) ->
//! [`validate`] (pure: no I/O, the environment passed in) -> [`Config`].
//!
//! Precedence for the OTLP exporter: a value in the file wins; otherwise the standard
//! `OTEL_EXPORTER_OTLP_TRACES_*` then `OTEL_EXPORTER_OTLP_*` variables; otherwise the default.
//! Secrets never need to be in the file: `redis.url` falls back to `REDIS_URL` and the Redis password
//! comes from `redis.password_env` or `redis.password_file`, the ingest token from
//! `VCON_OTEL_INGEST_TOKEN`, exporter headers from `OTEL_EXPORTER_OTLP_HEADERS`.

mod conserver;
mod export;
mod http_ingest;
mod redis;
mod self_telemetry;
mod tracers;

pub use conserver::conserver_naming;
pub use export::{Compression, Export, Protocol, RawExport, RawTls};
pub use http_ingest::{HttpIngest, RawHttpIngest};
pub use redis::{PasswordSource, RawRedis, RawRedisTls, Redis, RedisTls, Secret};
pub use self_telemetry::{RawSelfTelemetry, SelfProtocol, SelfTelemetry};
pub use tracers::{HostedConfig, RawChain, RawTracer};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A section left empty (only comments under it) reads as YAML null: treat it as all defaults.
pub(crate) fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
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
    /// The bridge's own spans, to an endpoint of their own (`self_telemetry::RawSelfTelemetry`).
    #[serde(deserialize_with = "nullable")]
    pub self_telemetry: RawSelfTelemetry,
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
pub struct RawStream {
    pub key: Option<String>,
    pub group: Option<String>,
    /// Consumer name in the group; default the host name (stable across restarts, so a restarted
    /// bridge re-reads its own pending entries at once).
    pub consumer: Option<String>,
    pub dead_letter_key: Option<String>,
    /// Entries per XREADGROUP call.
    pub read_count: Option<usize>,
    /// Most entries moving through the stages (read, neither acknowledged nor held by an open run).
    pub read_ahead: Option<usize>,
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
pub struct RawAdmin {
    pub addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Distinct values per producer label (`chain`, `link`, `storage`, `tracer`); default 200.
    pub max_label_values: Option<usize>,
    /// Bytes per producer label value, at least 16; longer values are cut (default 64).
    pub max_label_len: Option<usize>,
    /// Label combinations per metric family with producer labels (default 200).
    pub max_series_per_family: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCompliance {
    /// Also put the vCon spec's `sha512-<base64url>` token of the canonical bytes on spans
    /// (`vcon.hash.sha512`). SHA-512 in software halves hashing throughput.
    pub sha512_token: bool,
    /// The producer's snapshot budget index (its `snapshot_index` option); default `vcon_otel:snaps`.
    pub snapshot_index: Option<String>,
    /// How long a run's step record (`vcon_otel:steps:{trace}`: each step's hash, read by hosted
    /// tracers and replicas) lives after its last write; default 900, at least the producer's
    /// `snapshot_ttl` so a consumer that can still read a snapshot can also find its hash.
    pub step_record_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConserver {
    /// The conserver's own `config.yml`: names chains from their link lists, knows link modules.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Stream {
    pub key: String,
    pub group: String,
    pub consumer: String,
    pub dead_letter_key: String,
    pub read_count: usize,
    /// Reading pauses while this many entries move through the stages (read, and neither
    /// acknowledged nor held by an open run; at most `export.max_inflight`, at least `read_count`;
    /// default 4 reads). Held entries count only against `export.max_inflight`.
    pub read_ahead: usize,
    pub block: Duration,
    pub claim_idle: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub service_name: String,
    /// `redis:`: URL, password source, TLS, start-up checks.
    pub redis: Redis,
    pub stream: Stream,
    pub idle_timeout: Duration,
    pub max_open_runs: usize,
    pub done_marker_ttl: Duration,
    /// `None` when no endpoint is configured anywhere (only the demo allows that).
    pub export: Option<Export>,
    pub admin_addr: SocketAddr,
    pub http_ingest: Option<HttpIngest>,
    /// Bounds of the producer-supplied metric labels (`metrics:`).
    pub metric_bounds: crate::metrics::Bounds,
    pub conserver_config: Option<PathBuf>,
    pub shutdown_grace: Duration,
    /// The `audit_log` tracer, when configured, and its name under `tracers:`.
    pub audit_log: Option<crate::compliance::audit_log::Settings>,
    pub audit_log_name: Option<String>,
    /// The other hosted tracers.
    pub hosted: Vec<HostedConfig>,
    /// Put the sha512 token on spans too.
    pub sha512_token: bool,
    /// `compliance.snapshot_index`.
    pub snapshot_index: String,
    /// `compliance.step_record_ttl_secs`.
    pub step_record_ttl: Duration,
    /// The bridge's own traces; `None` when disabled (the default).
    pub self_telemetry: Option<SelfTelemetry>,
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
/// Problems are collected in the order of the sections, so a user fixes them all in one go.
pub fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Problems> {
    let mut p = Vec::new();
    let redis = redis::resolve(raw.redis, env, &mut p);
    let n = Limits::resolve(&raw.stream, &raw.runs, &mut p);
    let stream = resolve_stream(raw.stream, &n, env);
    let metric_bounds = resolve_metric_bounds(&raw.metrics, &mut p);
    let export = export::resolve_export(raw.export, env, &mut p);
    let self_telemetry = self_telemetry::resolve(raw.self_telemetry, &stream.consumer, env, &mut p);
    let admin_text = raw.admin.addr.unwrap_or_else(|| "127.0.0.1:9464".into());
    let admin_addr = parse_addr("admin.addr", &admin_text, &mut p);
    let http_ingest = http_ingest::resolve(raw.http_ingest, env, &mut p);
    let (hosted, audit) = tracers::validate(&raw.tracers, &raw.chains, &mut p);
    let (audit_log_name, audit_log) = audit.unzip();
    check_inflight(export.as_ref(), n.read_count, &mut p);
    if !p.is_empty() {
        return Err(Problems(p));
    }
    Ok(Config {
        service_name: raw.service_name.unwrap_or_else(|| "conserver".into()),
        redis,
        stream,
        idle_timeout: Duration::from_secs(n.idle_timeout_secs),
        max_open_runs: n.max_open,
        done_marker_ttl: Duration::from_secs(raw.runs.done_marker_ttl_secs.unwrap_or(86_400)),
        export,
        admin_addr: admin_addr.expect("checked"),
        http_ingest,
        metric_bounds,
        conserver_config: raw.conserver.config_file,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(10)),
        audit_log,
        audit_log_name,
        hosted,
        sha512_token: raw.compliance.sha512_token,
        snapshot_index: raw.compliance.snapshot_index.unwrap_or_else(|| "vcon_otel:snaps".into()),
        step_record_ttl: Duration::from_secs(raw.compliance.step_record_ttl_secs.unwrap_or(900).max(1)),
        self_telemetry,
    })
}

/// The counts and durations that must be greater than 0, with their defaults.
struct Limits {
    read_count: usize,
    read_ahead: usize,
    idle_timeout_secs: u64,
    max_open: usize,
    claim_idle_secs: u64,
}

impl Limits {
    fn resolve(stream: &RawStream, runs: &RawRuns, p: &mut Vec<Problem>) -> Limits {
        let mut nonzero = |path: &str, v: u64| {
            if v == 0 {
                p.push(Problem {
                    path: path.into(),
                    message: "must be greater than 0".into(),
                    hint: "remove the key to use the default".into(),
                });
            }
        };
        let n = Limits {
            read_count: stream.read_count.unwrap_or(512),
            read_ahead: stream.read_ahead.unwrap_or(4 * stream.read_count.unwrap_or(512)),
            idle_timeout_secs: runs.idle_timeout_secs.unwrap_or(300),
            max_open: runs.max_open.unwrap_or(100_000),
            claim_idle_secs: stream.claim_idle_secs.unwrap_or(60),
        };
        nonzero("stream.read_count", n.read_count as u64);
        nonzero("runs.idle_timeout_secs", n.idle_timeout_secs);
        nonzero("runs.max_open", n.max_open as u64);
        nonzero("stream.claim_idle_secs", n.claim_idle_secs);
        if n.read_ahead < n.read_count {
            p.push(Problem {
                path: "stream.read_ahead".into(),
                message: format!("{} is smaller than stream.read_count ({})", n.read_ahead, n.read_count),
                hint: "raise stream.read_ahead or lower stream.read_count (or remove the key: the default is 4 × read_count)".into(),
            });
        }
        n
    }
}

/// The `metrics:` bounds of producer-supplied labels (`docs/metrics.md`, "Bounds").
fn resolve_metric_bounds(raw: &RawMetrics, p: &mut Vec<Problem>) -> crate::metrics::Bounds {
    let defaults = crate::metrics::Bounds::default();
    let b = crate::metrics::Bounds {
        max_values: raw.max_label_values.unwrap_or(defaults.max_values),
        max_len: raw.max_label_len.unwrap_or(defaults.max_len),
        max_series: raw.max_series_per_family.unwrap_or(defaults.max_series),
    };
    for (path, v) in [("metrics.max_label_values", b.max_values), ("metrics.max_series_per_family", b.max_series)] {
        if v == 0 {
            p.push(Problem { path: path.into(), message: "must be greater than 0".into(), hint: "remove the key to use the default".into() });
        }
    }
    if b.max_len < 16 {
        p.push(Problem {
            path: "metrics.max_label_len".into(),
            message: format!("{} is below 16 (a cut value keeps a prefix, `~` and 8 hex digits)", b.max_len),
            hint: "use 16 or more, or remove the key for the default 64".into(),
        });
    }
    b
}

/// The `stream:` section with its defaults; the consumer name defaults to the host name.
fn resolve_stream(raw: RawStream, n: &Limits, env: &dyn Fn(&str) -> Option<String>) -> Stream {
    let consumer = raw.consumer.unwrap_or_else(|| {
        env("HOSTNAME").unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    });
    Stream {
        key: raw.key.unwrap_or_else(|| "vcon_otel:events".into()),
        group: raw.group.unwrap_or_else(|| "vcon-otel".into()),
        consumer,
        dead_letter_key: raw.dead_letter_key.unwrap_or_else(|| "vcon_otel:events:dead".into()),
        read_count: n.read_count,
        read_ahead: n.read_ahead,
        block: Duration::from_millis(raw.block_ms.unwrap_or(1000)),
        claim_idle: Duration::from_secs(n.claim_idle_secs),
    }
}

/// `export.max_inflight` must hold at least one read's worth of entries.
fn check_inflight(export: Option<&Export>, read_count: usize, p: &mut Vec<Problem>) {
    if let Some(e) = export {
        if e.max_inflight < read_count {
            p.push(Problem {
                path: "export.max_inflight".into(),
                message: format!("{} is smaller than stream.read_count ({read_count})", e.max_inflight),
                hint: "raise export.max_inflight or lower stream.read_count".into(),
            });
        }
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

#[cfg(test)]
mod tests;
