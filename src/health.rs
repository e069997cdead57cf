//! What `/readyz` and the HTTP ingest know about the bridge's health.
//!
//! [`Health`] holds two flags: `ready` (the bridge's stages are running: set by the pipeline once its
//! consumer groups exist, cleared when shutdown starts) and `redis_up` (Redis answered the last
//! `PING`). [`probe_redis`] keeps `redis_up` true to the facts: it sends `PING` every
//! [`PROBE_INTERVAL`] with a [`PROBE_TIMEOUT`], so the flag follows Redis within about
//! `PROBE_INTERVAL + PROBE_TIMEOUT` (1.5 s) either way. One failed `PING` marks Redis down and one
//! answered `PING` marks it up again; there is no hysteresis, because a wrong "up" makes producers
//! wait on calls that fail while a wrong "down" only makes them retry a little early.
//!
//! Transitions are logged (WARN when Redis goes down, INFO when it comes back), at most one line per
//! [`LOG_EVERY`]; transitions in between are summed into the next line, so a flapping Redis cannot
//! flood the log.
//!
//! Without a probe (the demo has no Redis) readiness depends on `ready` alone.

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Time between two `PING`s.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A `PING` not answered within this time counts as Redis down (also the connect timeout).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// At most one transition log line per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shared state the admin endpoints and the HTTP ingest read.
#[derive(Default)]
pub struct Health {
    /// The bridge's stages are running (false while starting and once shutdown began).
    pub ready: AtomicBool,
    /// Redis answered the last `PING` (meaningful only while a probe runs).
    pub redis_up: AtomicBool,
    /// A probe runs: readiness then also needs `redis_up`.
    probed: AtomicBool,
    /// Why the last `PING` failed, for the `/readyz` body.
    last_error: Mutex<String>,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Starting (consumer groups not yet created) or shutting down.
    NotRunning,
    /// The probe's last `PING` failed; the text says how.
    RedisDown(String),
}

impl Health {
    /// Ready only while the bridge runs and (when probed) Redis is up.
    pub fn readiness(&self) -> Readiness {
        if !self.ready.load(Ordering::SeqCst) {
            return Readiness::NotRunning;
        }
        if self.redis_known_down() {
            let why = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
            return Readiness::RedisDown(why);
        }
        Readiness::Ready
    }

    /// True while a probe runs and its last `PING` failed (or none answered yet).
    pub fn redis_known_down(&self) -> bool {
        self.probed.load(Ordering::SeqCst) && !self.redis_up.load(Ordering::SeqCst)
    }

    fn set_redis(&self, up: bool, error: Option<String>) -> bool {
        if let (Some(e), Ok(mut last)) = (error, self.last_error.lock()) {
            *last = e;
        }
        self.redis_up.swap(up, Ordering::SeqCst) != up
    }
}

/// Starts [`probe_redis`] on its own task, which ends when `stop` turns true. Readiness needs
/// `redis_up` from this call on: until the first `PING` is answered, Redis counts as down.
pub fn spawn_redis_probe(client: redis::Client, health: Arc<Health>, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    health.probed.store(true, Ordering::SeqCst);
    health.set_redis(false, Some("no PING answered yet".into()));
    tokio::spawn(async move {
        let mut stop = stop;
        tokio::select! {
            _ = probe_redis(client, health, metrics) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    })
}

/// `PING`s Redis forever on a connection of its own (reconnecting after any failure) and keeps
/// `health.redis_up` and the `vcon_otel_redis_up` gauge current.
pub async fn probe_redis(client: redis::Client, health: Arc<Health>, metrics: Arc<Metrics>) {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(PROBE_TIMEOUT))
        .set_response_timeout(Some(PROBE_TIMEOUT));
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut log = TransitionLog::default();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = tokio::time::timeout(PROBE_TIMEOUT * 2, ping(&client, &config, &mut conn)).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("PING not answered within {} ms", (PROBE_TIMEOUT * 2).as_millis())),
        };
        if error.is_some() {
            conn = None;
        }
        let up = error.is_none();
        metrics.redis_up.set(up as i64);
        if health.set_redis(up, error.clone()) {
            log.transition(up, error.as_deref().unwrap_or(""), Instant::now());
        }
    }
}

async fn ping(
    client: &redis::Client,
    config: &redis::AsyncConnectionConfig,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(client.get_multiplexed_async_connection_with_config(config).await?);
    }
    let c = conn.as_mut().expect("connection set above");
    redis::cmd("PING").query_async::<()>(c).await
}

/// Rate-limits transition logs to one line per [`LOG_EVERY`].
#[derive(Default)]
struct TransitionLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl TransitionLog {
    /// Logs this transition unless one was logged within [`LOG_EVERY`]; returns whether it logged.
    fn transition(&mut self, up: bool, error: &str, now: Instant) -> bool {
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return false;
        }
        let earlier = std::mem::take(&mut self.suppressed);
        if up {
            tracing::info!(suppressed_transitions = earlier, "Redis answers PING again: ready");
        } else {
            tracing::warn!(error, suppressed_transitions = earlier, "Redis does not answer PING: not ready, POST /v1/events answers 503");
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_bridge_running_and_redis_up_once_probed() {
        let h = Health::default();
        assert_eq!(h.readiness(), Readiness::NotRunning);
        h.ready.store(true, Ordering::SeqCst);
        assert_eq!(h.readiness(), Readiness::Ready, "without a probe Redis is not consulted (the demo)");
        h.probed.store(true, Ordering::SeqCst);
        h.set_redis(false, Some("connection refused".into()));
        assert_eq!(h.readiness(), Readiness::RedisDown("connection refused".into()));
        assert!(h.redis_known_down());
        assert!(h.set_redis(true, None), "down -> up is a transition");
        assert!(!h.set_redis(true, None), "up -> up is not");
        assert_eq!(h.readiness(), Readiness::Ready);
    }

    #[test]
    fn transition_logs_are_rate_limited_and_count_what_they_skipped() {
        let mut log = TransitionLog::default();
        let t0 = Instant::now();
        assert!(log.transition(false, "refused", t0));
        assert!(!log.transition(true, "", t0 + Duration::from_secs(1)));
        assert!(!log.transition(false, "refused", t0 + Duration::from_secs(2)));
        assert_eq!(log.suppressed, 2);
        assert!(log.transition(true, "", t0 + LOG_EVERY));
        assert_eq!(log.suppressed, 0);
    }
}
