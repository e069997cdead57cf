//! The `POST /v1/events` handler: each check in order, each failure answered with its status and a
//! JSON body `{"error": "<what is wrong and how to fix it>", ...}`.
//!
//! | order | check | answer |
//! |---|---|---|
//! | 1 | `Authorization: Bearer <token>` (scheme in any case) | `401` + `WWW-Authenticate: Bearer`; the body is never read |
//! | 2 | `Content-Type: application/json` (parameters allowed) | `415`; the body is never read |
//! | 3 | `Content-Length` ≤ `max_body_bytes` | `413`; the body is never read |
//! | 4 | whole body received within `body_timeout_ms`, ≤ `max_body_bytes` | `408` (connection closed) / `413` |
//! | 5 | body is a record or a batch, every record passes `event::decode` | `400` with `index` and `reason`; `413` with `index` for a record over 64 KiB |
//! | 6 | `[]` | `202 {"accepted": 0}`, Redis not touched |
//! | 7 | Redis known down (health probe) | `503` + `Retry-After: 1` at once |
//! | 8 | append to the stream within `redis_timeout_ms` | `202 {"accepted": n}`, else `503` + `Retry-After: 1` |
//!
//! Client errors (4xx) come before the Redis check, so a producer sending bad input learns so even
//! while Redis is down; `503` means only "Redis cannot take the records now, retry". A record over
//! [`crate::event::MAX_RECORD_BYTES`] is answered `413`, not `400`: it is well-formed but larger than
//! the bridge will process (RFC 9110 §15.5.14), and the fix is the one `413` asks for (make it
//! smaller); the body names the record's `index` and `reason: "too_large"` like any record error.
//! Nothing is written unless the whole request is accepted (but see [`super::sink::RedisSink`] for
//! a 503 after a timeout).

use super::auth::{self, Token};
use super::body::{self, BodyError, ReadError};
use super::sink::Sink;
use crate::event;
use crate::health::Health;
use crate::metrics::{Metrics, StatusLabel};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Everything the handler needs.
pub struct Ingest {
    pub token: Token,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub sink: Box<dyn Sink>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

/// The router, for tests with `oneshot` and for [`super::serve`].
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().route("/v1/events", post(post_events)).with_state(ingest)
}

fn answer(st: &Ingest, status: StatusCode, body: Value) -> Response {
    st.metrics.http_requests.get_or_create(&StatusLabel { status: status.as_u16() }).inc();
    let mut r = (status, Json(body)).into_response();
    let h = r.headers_mut();
    match status {
        StatusCode::UNAUTHORIZED => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vcon-otel\""));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        StatusCode::REQUEST_TIMEOUT => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    r
}

fn error(st: &Ingest, status: StatusCode, message: impl Into<String>) -> Response {
    answer(st, status, json!({"error": message.into()}))
}

async fn post_events(State(st): State<Arc<Ingest>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !st.token.accepts(&parts.headers) {
        return error(&st, StatusCode::UNAUTHORIZED, "missing or wrong bearer token (send Authorization: Bearer <http_ingest.token>)");
    }
    if !auth::is_json(&parts.headers) {
        let got = parts.headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let got = got.map_or("no Content-Type".to_string(), |v| format!("Content-Type {v:?}"));
        return error(&st, StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{got} is not accepted; send Content-Type: application/json"));
    }
    let too_large = || {
        error(&st, StatusCode::PAYLOAD_TOO_LARGE, format!("body is larger than http_ingest.max_body_bytes ({}); send smaller batches", st.max_body_bytes))
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body_bytes as u64) {
        return too_large();
    }
    let bytes = match body::read(body, st.max_body_bytes, declared, st.body_timeout).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return too_large(),
        Err(ReadError::TimedOut) => {
            let ms = st.body_timeout.as_millis();
            return error(&st, StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within http_ingest.body_timeout_ms ({ms})"));
        }
        Err(ReadError::Broken(e)) => return error(&st, StatusCode::BAD_REQUEST, format!("the body could not be read: {e}")),
    };
    let records = match body::parse_body(&bytes) {
        Ok(r) => r,
        Err(e) => return rejected(&st, e),
    };
    if records.is_empty() {
        return answer(&st, StatusCode::ACCEPTED, json!({"accepted": 0}));
    }
    if st.health.redis_known_down() {
        return error(&st, StatusCode::SERVICE_UNAVAILABLE, "Redis is unreachable (health probe); the event stream cannot take records; retry later");
    }
    match st.sink.append(&records).await {
        Ok(()) => answer(&st, StatusCode::ACCEPTED, json!({"accepted": records.len()})),
        Err(e) => {
            tracing::warn!(error = %e, records = records.len(), "POST /v1/events: cannot append to the stream");
            error(&st, StatusCode::SERVICE_UNAVAILABLE, "the event stream is unavailable; retry later")
        }
    }
}

fn rejected(st: &Ingest, e: BodyError) -> Response {
    let message = e.to_string();
    match e {
        BodyError::Record { index, rejection } => {
            let status = if rejection.reason == event::Reason::TooLarge { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
            answer(st, status, json!({"error": message, "index": index, "reason": rejection.reason.as_str()}))
        }
        _ => error(st, StatusCode::BAD_REQUEST, message),
    }
}
