//! `POST /v1/events`: producers that cannot reach Redis send records over HTTP/1.1.
//!
//! The body is one record (a JSON object) or a batch (a JSON array of records). `202` is answered
//! only once Redis accepted every record, so an answered record is durable; any bad record rejects
//! the whole request and nothing is written. The checks and their answers, in order, are in
//! [`answer`]; the body format in [`body`]; the token and media type in [`auth`].
//!
//! Bounds (all under `http_ingest:` in the configuration):
//! - `max_body_bytes` (1 MiB): larger bodies are answered `413` without being read.
//! - `header_timeout_ms` (10 s): a connection must send a request's headers within this, and a
//!   keep-alive connection its next request; otherwise it is closed without an answer.
//! - `body_timeout_ms` (30 s): the whole body must arrive within this after the headers; otherwise
//!   `408` and the connection is closed.
//! - `max_connections` (256): connections served at once. **When full**, the listener stops
//!   accepting: new connections wait, handshake done, in the kernel's listen backlog
//!   ([`LISTEN_BACKLOG`] = 1024, capped by `net.core.somaxconn`) and are served in order as slots
//!   free up. Once the backlog is full too, the kernel drops further connection attempts (the
//!   client's TCP retries them and reports a connect timeout if no slot frees). Nothing is answered
//!   `503` for being full, and no accepted connection is dropped for it. A WARN (at most one per
//!   10 s) says when the cap is reached; `vcon_otel_http_connections` shows the open connections.
//! - `redis_timeout_ms` (2 s): bound on the append to the stream, then `503`.
//!
//! Memory: a connection holds at most a [`READ_BUFFER_BYTES`] read buffer (request heads larger
//! than that are answered `431`) plus, once authenticated, the body it is receiving (at most
//! `max_body_bytes`): at most `max_connections × (64 KiB + max_body_bytes)` in all, about 272 MiB
//! with the defaults, and only authenticated producers can go beyond the 16 MiB of read buffers.
//!
//! Unauthenticated requests are answered `401` before any byte of their body is read; hyper then
//! closes the connection instead of draining the body, so a tokenless client holds no memory.

pub mod answer;
pub mod auth;
pub mod body;
pub mod sink;

#[cfg(test)]
mod answer_tests;

pub use body::{parse_body, BodyError};

use crate::config::HttpIngest;
use crate::health::Health;
use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Connections the kernel holds, handshake done, while every slot is taken (Linux caps it at
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 1024;

/// A connection's read buffer at most, and so the largest request head (hyper answers `431` beyond).
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// At most one "connection cap reached" or accept-error WARN per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves on `listener` (from [`bind`], to `http_ingest.addr`) until `stop` turns true; the
/// returned task ends once every open connection finished its request (each bounded by the body and
/// Redis timeouts).
pub fn serve(
    listener: TcpListener,
    cfg: HttpIngest,
    conn: ConnectionManager,
    stream: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    tracing::info!(addr = %listener.local_addr()?, max_connections = cfg.max_connections, "POST /v1/events listening");
    let ingest = answer::Ingest {
        token: auth::Token::new(&cfg.token),
        max_body_bytes: cfg.max_body_bytes,
        body_timeout: cfg.body_timeout,
        sink: Box::new(sink::RedisSink { conn, stream, timeout: cfg.redis_timeout }),
        health,
        metrics: metrics.clone(),
    };
    let app = answer::router(Arc::new(ingest));
    Ok(tokio::spawn(accept_loop(listener, app, cfg.header_timeout, cfg.max_connections, metrics, stop)))
}

/// A listener for [`serve`] with a [`LISTEN_BACKLOG`] backlog (the standard library's and tokio's
/// `bind` use only 128). Call it within a tokio runtime.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts while a connection slot is free; each connection runs on its own task holding a slot.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(READ_BUFFER_BYTES);
    let mut last_warn: Option<Instant> = None;
    let mut warn = |message: &str, detail: String| {
        if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(max_connections, detail, "{message}");
            last_warn = Some(Instant::now());
        }
    };
    loop {
        if slots.available_permits() == 0 {
            warn("POST /v1/events: connection cap reached; new connections wait in the listen backlog", String::new());
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    warn("POST /v1/events: accept failed", e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
        let slot = Slot::new(permit, metrics.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            match result {
                Err(e) if e.is_timeout() => tracing::debug!("POST /v1/events: connection closed: headers not received within http_ingest.header_timeout_ms"),
                Err(e) => tracing::debug!(error = %e, "POST /v1/events: connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
    drop(listener);
    // Every slot back means every connection finished.
    let _ = slots.acquire_many(max_connections as u32).await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A connection's hold on its slot, counted in `vcon_otel_http_connections` while it lives.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Slot {
        metrics.http_connections.inc();
        Slot { _permit: permit, metrics }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.http_connections.dec();
    }
}
