//! The admin listener: `/metrics` (OpenMetrics), `/healthz` (the process is up), `/readyz` (200
//! `ready` only while the bridge's stages run and Redis answers the health probe's `PING`; otherwise
//! 503 with a body saying which: `not ready: starting or shutting down` or
//! `not ready: Redis is unreachable: <error>`). See [`crate::health`] for how fast it follows Redis.

use crate::health::{Health, Readiness};
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The admin router (tests call it with `oneshot`).
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState { metrics, health })
}

/// Serves the admin router on an already-bound listener until the process exits.
pub fn spawn(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(metrics, health)).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    })
}

async fn metrics_text(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        s.metrics.encode(),
    )
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    match s.health.readiness() {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_string()),
        Readiness::NotRunning => (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n".to_string()),
        Readiness::RedisDown(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: Redis is unreachable: {why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt;

    async fn readyz(health: &Arc<Health>) -> (StatusCode, String) {
        let app = router(Arc::new(Metrics::new(10)), health.clone());
        let r = app.oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_says_why_it_is_not_ready() {
        let h = Arc::new(Health::default());
        assert_eq!(readyz(&h).await, (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n".into()));
        h.ready.store(true, Ordering::SeqCst);
        assert_eq!(readyz(&h).await, (StatusCode::OK, "ready\n".into()));
        let probe = crate::health::spawn_redis_probe(redis::Client::open("redis://127.0.0.1:1").unwrap(), h.clone(), Arc::new(Metrics::new(10)), tokio::sync::watch::channel(false).1);
        probe.abort();
        let (status, body) = readyz(&h).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("not ready: Redis is unreachable: "), "{body}");
    }
}
