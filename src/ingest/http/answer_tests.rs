//! The answer of every case, on the router with `oneshot` and an in-memory sink (the real Redis
//! sink is exercised by the integration tests in `tests/it/http_ingest.rs`).

use super::answer::{router, Ingest};
use super::auth::Token;
use super::sink::Sink;
use crate::event::MAX_RECORD_BYTES;
use crate::health::Health;
use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef";
const GOOD: &str = r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1}"#;

#[derive(Default)]
struct Memory {
    records: Mutex<Vec<String>>,
    fail: AtomicBool,
}

impl Sink for Arc<Memory> {
    fn append<'a>(&'a self, records: &'a [&'a RawValue]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            self.records.lock().unwrap().extend(records.iter().map(|r| r.get().to_string()));
            Ok(())
        })
    }
}

struct Fixture {
    app: axum::Router,
    sink: Arc<Memory>,
    health: Arc<Health>,
}

fn fixture() -> Fixture {
    let sink = Arc::new(Memory::default());
    let health = Arc::new(Health::default());
    let ingest = Ingest {
        token: Token::new(TOKEN),
        max_body_bytes: 4 * MAX_RECORD_BYTES,
        body_timeout: Duration::from_millis(200),
        sink: Box::new(sink.clone()),
        health: health.clone(),
        metrics: Arc::new(Metrics::new(10)),
    };
    Fixture { app: router(Arc::new(ingest)), sink, health }
}

fn request(auth: Option<&str>, content_type: Option<&str>) -> axum::http::request::Builder {
    let mut b = Request::post("/v1/events");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    if let Some(c) = content_type {
        b = b.header("content-type", c);
    }
    b
}

async fn send(app: &axum::Router, auth: Option<&str>, content_type: Option<&str>, body: Body) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = request(auth, content_type).body(body).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post(app: &axum::Router, body: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {TOKEN}");
    let (s, _, v) = send(app, Some(&bearer), Some("application/json"), Body::from(body.to_string())).await;
    (s, v)
}

/// A body that records whether anyone polled it.
fn watched_body() -> (Body, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let p = polled.clone();
    let stream = futures::stream::poll_fn(move |_| {
        p.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(b"[]"))))
    });
    (Body::from_stream(stream), polled)
}

#[tokio::test]
async fn no_or_wrong_token_is_401_with_a_challenge_and_the_body_is_never_read() {
    let f = fixture();
    for auth in [None, Some("Bearer nope-nope-nope-nope"), Some("Basic 0123456789abcdef"), Some(TOKEN)] {
        let (body, polled) = watched_body();
        let (status, headers, v) = send(&f.app, auth, Some("application/json"), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{headers:?}");
        assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
        assert!(!polled.load(Ordering::SeqCst), "the body of an unauthenticated request was read ({auth:?})");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let f = fixture();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (status, _, v) = send(&f.app, Some(&format!("{scheme} {TOKEN}")), Some("application/json"), Body::from(GOOD)).await;
        assert_eq!((status, v), (StatusCode::ACCEPTED, serde_json::json!({"accepted": 1})), "{scheme}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_by_its_content_type_is_415_unread() {
    let f = fixture();
    let bearer = format!("Bearer {TOKEN}");
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let (body, polled) = watched_body();
        let (status, _, v) = send(&f.app, Some(&bearer), ct, body).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(v["error"].as_str().unwrap().contains("send Content-Type: application/json"), "{v}");
        assert!(!polled.load(Ordering::SeqCst));
    }
    let (status, _, _) = send(&f.app, Some(&bearer), Some("application/json; charset=utf-8"), Body::from(GOOD)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_declared_or_streamed_body_over_the_limit_is_413() {
    let f = fixture();
    let bearer = format!("Bearer {TOKEN}");
    let (body, polled) = watched_body();
    let req = request(Some(&bearer), Some("application/json"))
        .header("content-length", (4 * MAX_RECORD_BYTES + 1).to_string())
        .body(body)
        .unwrap();
    assert_eq!(f.app.clone().oneshot(req).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!polled.load(Ordering::SeqCst), "a body declared too large was read");
    let chunks = futures::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; MAX_RECORD_BYTES]))));
    let (status, _, v) = send(&f.app, Some(&bearer), Some("application/json"), Body::from_stream(chunks)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("http_ingest.max_body_bytes"), "{v}");
}

#[tokio::test]
async fn a_body_that_stalls_is_408_and_closes_the_connection() {
    let f = fixture();
    let stalled = futures::stream::pending::<Result<Bytes, std::io::Error>>();
    let (status, headers, v) = send(&f.app, Some(&format!("Bearer {TOKEN}")), Some("application/json"), Body::from_stream(stalled)).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(headers["connection"], "close");
    assert!(v["error"].as_str().unwrap().contains("http_ingest.body_timeout_ms"), "{v}");
}

#[tokio::test]
async fn a_bad_record_is_400_naming_its_index_and_nothing_is_written() {
    let f = fixture();
    let (status, v) = post(&f.app, &format!(r#"[{GOOD},{{"v":1,"event":"chain_start"}}]"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((v["index"].as_u64(), v["reason"].as_str()), (Some(1), Some("missing_field")), "{v}");
    let (status, v) = post(&f.app, "\"just a string\"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("got a string"), "{v}");
    assert!(f.sink.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_record_over_64_kib_is_413_naming_its_index_and_nothing_is_written() {
    let f = fixture();
    let big = GOOD.replace(r#""run":"r""#, &format!(r#""run":"{}""#, "x".repeat(MAX_RECORD_BYTES)));
    let (status, v) = post(&f.app, &format!("[{GOOD},{big}]")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!((v["index"].as_u64(), v["reason"].as_str()), (Some(1), Some("too_large")), "{v}");
    assert!(f.sink.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_empty_batch_is_accepted_as_zero_records_even_while_redis_is_down() {
    let f = fixture();
    f.sink.fail.store(true, Ordering::SeqCst);
    assert_eq!(post(&f.app, " [ ] ").await, (StatusCode::ACCEPTED, serde_json::json!({"accepted": 0})));
}

#[tokio::test]
async fn records_are_stored_with_their_own_bytes_and_redis_failures_are_503() {
    let f = fixture();
    let spaced = GOOD.replace(',', ", ");
    assert_eq!(post(&f.app, &format!("[{GOOD},\n{spaced}]")).await, (StatusCode::ACCEPTED, serde_json::json!({"accepted": 2})));
    assert_eq!(*f.sink.records.lock().unwrap(), [GOOD.to_string(), spaced]);
    f.sink.fail.store(true, Ordering::SeqCst);
    let (status, v) = post(&f.app, GOOD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["error"].as_str().unwrap().contains("retry later"), "{v}");
}

#[tokio::test]
async fn while_redis_is_known_down_the_answer_is_503_without_trying() {
    let f = fixture();
    f.health.ready.store(true, Ordering::SeqCst);
    let probe = crate::health::spawn_redis_probe(redis::Client::open("redis://127.0.0.1:1").unwrap(), f.health.clone(), Arc::new(Metrics::new(10)), tokio::sync::watch::channel(false).1);
    probe.abort();
    assert!(f.health.redis_known_down());
    let bearer = format!("Bearer {TOKEN}");
    let (status, headers, v) = send(&f.app, Some(&bearer), Some("application/json"), Body::from(GOOD)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(v["error"].as_str().unwrap().contains("Redis is unreachable"), "{v}");
    assert!(f.sink.records.lock().unwrap().is_empty(), "the sink was not called");
}
