//! The OTLP exporter's settings: `export:` in the file, else the standard
//! `OTEL_EXPORTER_OTLP_TRACES_*` then `OTEL_EXPORTER_OTLP_*` variables, else the default.

use super::{nullable, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Entries read and not yet acknowledged (held by a semaphore released on acknowledgement);
    /// reading pauses at this many. At least `stream.read_count`.
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

/// The exporter's settings, or `None` when no endpoint is configured anywhere (only the demo
/// allows that). Problems are pushed in the order of the keys below.
pub(super) fn resolve_export(raw: RawExport, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Export> {
    let var = |name: &str| env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}")).or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")));
    let protocol = resolve_protocol(raw.protocol.or_else(|| var("PROTOCOL")), p);
    let endpoint = resolve_endpoint(raw.endpoint, protocol, env, p)?;
    let compression = resolve_compression(raw.compression.or_else(|| var("COMPRESSION")), p);
    let headers = resolve_headers(raw.headers, &var, p);
    let timeout = resolve_timeout(raw.timeout_secs, &var, p);
    let tls = resolve_tls(raw.tls, &var, p);
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

fn resolve_protocol(text: Option<String>, p: &mut Vec<Problem>) -> Protocol {
    match text.as_deref().unwrap_or("grpc") {
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
    }
}

/// `export.endpoint`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used exactly as given), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` when none is set.
fn resolve_endpoint(
    endpoint: Option<String>,
    protocol: Protocol,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Vec<Problem>,
) -> Option<String> {
    let (endpoint, exact) = match (endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
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
    Some(match protocol {
        Protocol::HttpProtobuf if !exact && !endpoint.trim_end_matches('/').ends_with("/v1/traces") => {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        }
        _ => endpoint,
    })
}

fn resolve_compression(text: Option<String>, p: &mut Vec<Problem>) -> Compression {
    match text.as_deref().unwrap_or("none") {
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
    }
}

/// `export.tls`, each file else its `OTEL_EXPORTER_OTLP_*` variable; the client certificate and
/// key come together or not at all.
fn resolve_tls(raw: RawTls, var: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> RawTls {
    let tls = RawTls {
        ca_file: raw.ca_file.or_else(|| var("CERTIFICATE").map(PathBuf::from)),
        cert_file: raw.cert_file.or_else(|| var("CLIENT_CERTIFICATE").map(PathBuf::from)),
        key_file: raw.key_file.or_else(|| var("CLIENT_KEY").map(PathBuf::from)),
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        p.push(Problem {
            path: "export.tls".into(),
            message: "cert_file and key_file must be set together".into(),
            hint: "set both for mutual TLS, or neither".into(),
        });
    }
    tls
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

/// `export.headers`, else `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (`k=v,k2=v2`, values URL-encoded).
fn resolve_headers(raw: Option<BTreeMap<String, String>>, var: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    match raw {
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
    headers
}

/// `export.timeout_secs`, else `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` (milliseconds), else 10 s.
fn resolve_timeout(raw: Option<u64>, var: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Duration {
    match raw {
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
    }
}
