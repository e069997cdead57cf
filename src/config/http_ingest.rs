//! `http_ingest:`: the `POST /v1/events` listener, its token and its bounds (each bound's "when
//! exceeded" answer is in `src/ingest/http/mod.rs` and `docs/events.md`).

use super::{parse_addr, Problem};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttpIngest {
    /// Listen address of `POST /v1/events`; absent = disabled.
    pub addr: Option<String>,
    /// Bearer token; default `VCON_OTEL_INGEST_TOKEN`. Required when `addr` is set.
    pub token: Option<String>,
    /// Larger bodies are answered 413 without being read (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Time a connection may take to send a request's headers, and may stay idle between
    /// keep-alive requests; then it is closed without an answer (default 10 000).
    pub header_timeout_ms: Option<u64>,
    /// Time allowed to receive a whole body once the headers are in; then 408 (default 30 000).
    pub body_timeout_ms: Option<u64>,
    /// Open connections at most; when full, new connections wait in the kernel's listen backlog
    /// until one closes (default 256).
    pub max_connections: Option<usize>,
    /// Time the append to the stream may take before the request is answered 503 (default 2 000).
    pub redis_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct HttpIngest {
    pub addr: SocketAddr,
    pub token: String,
    pub max_body_bytes: usize,
    /// Headers must arrive (and keep-alive connections must send their next request) within this.
    pub header_timeout: Duration,
    /// The whole body must arrive within this once the headers are in.
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Bound on the stream append of one request.
    pub redis_timeout: Duration,
}

/// `http_ingest:` -> [`HttpIngest`]; `None` when disabled (no `addr`) or invalid (problems pushed).
pub(super) fn resolve(raw: RawHttpIngest, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<HttpIngest> {
    let a = raw.addr?;
    let addr = parse_addr("http_ingest.addr", &a, p);
    let mut positive = |key: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 {
            p.push(Problem {
                path: format!("http_ingest.{key}"),
                message: "must be greater than 0".into(),
                hint: "remove the key to use the default".into(),
            });
        }
        v
    };
    let max_body_bytes = positive("max_body_bytes", raw.max_body_bytes.map(|v| v as u64), 1 << 20) as usize;
    let header_timeout = Duration::from_millis(positive("header_timeout_ms", raw.header_timeout_ms, 10_000));
    let body_timeout = Duration::from_millis(positive("body_timeout_ms", raw.body_timeout_ms, 30_000));
    let max_connections = positive("max_connections", raw.max_connections.map(|v| v as u64), 256) as usize;
    let redis_timeout = Duration::from_millis(positive("redis_timeout_ms", raw.redis_timeout_ms, 2_000));
    let token = raw.token.or_else(|| env("VCON_OTEL_INGEST_TOKEN"));
    match (addr, token) {
        (Some(addr), Some(token)) if token.len() >= 16 => {
            Some(HttpIngest { addr, token, max_body_bytes, header_timeout, body_timeout, max_connections, redis_timeout })
        }
        // The address problem is already reported.
        (None, Some(t)) if t.len() >= 16 => None,
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

#[cfg(test)]
mod tests {
    use super::super::{parse, validate};
    use std::time::Duration;

    fn token(k: &str) -> Option<String> {
        (k == "VCON_OTEL_INGEST_TOKEN").then(|| "0123456789abcdef".to_string())
    }

    #[test]
    fn http_ingest_has_bounded_timeouts_and_connections_by_default() {
        let h = validate(parse("http_ingest:\n  addr: 127.0.0.1:4319\n").unwrap(), &token).unwrap().http_ingest.unwrap();
        assert_eq!(
            (h.max_body_bytes, h.header_timeout, h.body_timeout, h.max_connections, h.redis_timeout),
            (1 << 20, Duration::from_secs(10), Duration::from_secs(30), 256, Duration::from_secs(2))
        );
        let err = validate(parse("http_ingest: {addr: \"127.0.0.1:4319\", header_timeout_ms: 0, max_connections: 0}\n").unwrap(), &token).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["http_ingest.header_timeout_ms", "http_ingest.max_connections"]);
        let err = validate(parse("http_ingest: {addr: nowhere}\n").unwrap(), &token).unwrap_err();
        assert_eq!(err.0.len(), 1, "a bad address is not also reported as a short token: {err}");
    }
}
