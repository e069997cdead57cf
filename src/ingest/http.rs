//! `POST /v1/events`: producers that cannot reach Redis send records over HTTP.
//!
//! The body is one record (a JSON object) or a batch (a JSON array of records). Every record is
//! decoded first; if any is malformed the whole request is answered `400` naming the index and the
//! reason, and nothing is written. Valid records are appended to the stream in one pipeline; `202`
//! is answered only once Redis accepted all of them, so an answered record is durable. Answers:
//! `202 {"accepted": n}`, `400` bad input, `401` missing or wrong bearer token (compared in constant
//! time), `413` body over `http_ingest.max_body_bytes`, `503` Redis unavailable (retry later).

use crate::config::HttpIngest;
use crate::event;
use crate::metrics::{Metrics, StatusLabel};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    token: Arc<String>,
    conn: ConnectionManager,
    stream: Arc<String>,
    metrics: Arc<Metrics>,
}

/// The router, for tests with `oneshot` and for [`serve`].
pub fn router(token: String, max_body: usize, conn: ConnectionManager, stream: String, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(AppState { token: Arc::new(token), conn, stream: Arc::new(stream), metrics })
}

/// Serves on `listener` (bound by the caller to `http_ingest.addr`) until `stop` turns true.
pub fn serve(
    listener: tokio::net::TcpListener,
    cfg: HttpIngest,
    conn: ConnectionManager,
    stream: String,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    tracing::info!(addr = %listener.local_addr()?, "POST /v1/events listening");
    let app = router(cfg.token, cfg.max_body_bytes, conn, stream, metrics);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    }))
}

fn answer(metrics: &Metrics, status: StatusCode, body: Value) -> Response {
    metrics.http_requests.get_or_create(&StatusLabel { status: status.as_u16() }).inc();
    (status, Json(body)).into_response()
}

async fn post_events(State(st): State<AppState>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(st.token.as_bytes())) {
        return answer(&st.metrics, StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token (Authorization: Bearer <token>)"}));
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return answer(&st.metrics, StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "body is larger than http_ingest.max_body_bytes; send smaller batches"}));
        }
        Err(e) => return answer(&st.metrics, StatusCode::BAD_REQUEST, json!({"error": e.body_text()})),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return answer(&st.metrics, StatusCode::BAD_REQUEST, json!({"error": format!("body is not valid JSON: {e}")})),
    };
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return answer(&st.metrics, StatusCode::BAD_REQUEST, json!({"error": "body must be a record (object) or a batch (array of records)"})),
    };
    let mut encoded = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let text = item.to_string();
        if let Err(why) = event::decode(text.as_bytes()) {
            return answer(
                &st.metrics,
                StatusCode::BAD_REQUEST,
                json!({"error": format!("record {i}: {why}"), "index": i, "reason": why.reason.as_str()}),
            );
        }
        encoded.push(text);
    }
    let mut pipe = redis::pipe();
    for r in &encoded {
        pipe.cmd("XADD").arg(st.stream.as_str()).arg("*").arg("r").arg(r).ignore();
    }
    let mut conn = st.conn.clone();
    match pipe.query_async::<()>(&mut conn).await {
        Ok(()) => answer(&st.metrics, StatusCode::ACCEPTED, json!({"accepted": encoded.len()})),
        Err(e) => {
            tracing::warn!(error = %e, "POST /v1/events: cannot append to the stream");
            answer(&st.metrics, StatusCode::SERVICE_UNAVAILABLE, json!({"error": "the event stream is unavailable; retry later"}))
        }
    }
}
