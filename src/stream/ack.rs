//! Acknowledgement: `XACK` of entries a user is done with, and the completion markers of runs whose
//! root span was accepted, in one round trip. Retried until Redis takes it or the process stops
//! (an unacknowledged entry is only re-read after a restart: a duplicate, never a loss).

use super::{done, Ack, InFlight};
use crate::metrics::RootLabel;
use crate::retry::{self, Attempts, Failure, Policy, Reason};
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::watch;

/// Acknowledges in one group; cheap to clone.
#[derive(Clone)]
pub struct Acker {
    /// Observes how long after a run's end its entries were acknowledged (main group only).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    conn: ConnectionManager,
    stream: String,
    group: String,
    inflight: InFlight,
    done_ttl: Duration,
}

const ACK_RETRY: Policy = Policy::forever(Duration::from_millis(100), Duration::from_secs(5));

impl Acker {
    pub fn new(conn: ConnectionManager, stream: String, group: String, inflight: InFlight, done_ttl: Duration) -> Acker {
        Acker { metrics: None, conn, stream, group, inflight, done_ttl }
    }

    /// Acknowledges `ack`; true once Redis took it, false when `stop` turned true first.
    #[tracing::instrument(name = "ack", level = "debug", skip_all, fields(otel.name = %format_args!("ack {}", self.stream), otel.kind = "client", messaging.system = "redis", messaging.operation.type = "settle", messaging.operation.name = "ack", messaging.destination.name = %self.stream, messaging.consumer.group.name = %self.group, messaging.batch.message_count = ack.ids.len(), vcon_otel.done_markers = ack.done.len()))]
    pub async fn ack(&mut self, ack: &Ack, stop: &mut watch::Receiver<bool>) -> bool {
        if ack.is_empty() {
            return true;
        }
        let mut pipe = redis::pipe();
        for chunk in ack.ids.chunks(1000) {
            pipe.cmd("XACK").arg(&self.stream).arg(&self.group).arg(chunk).ignore();
        }
        for d in &ack.done {
            done::mark(&mut pipe, d, self.done_ttl);
        }
        let mut attempts = Attempts::new(ACK_RETRY);
        let mut log = |attempt: u32, f: &Failure, _: Duration| {
            if retry::worth_logging(attempt) {
                tracing::warn!(attempt, error = %f, "cannot acknowledge; retrying");
            }
        };
        let out = loop {
            let r = pipe.query_async::<()>(&mut self.conn).await.map_err(|e| Failure::retryable(Reason::Transport, format!("XACK: {e}")));
            if let Some(o) = attempts.judge(r, stop, &mut log).await {
                break o;
            }
        };
        let ok = matches!(out, retry::Outcome::Done { .. });
        if ok {
            self.inflight.release(&ack.ids);
            if let Some(m) = &self.metrics {
                let now = crate::clock::now_ns();
                for d in ack.done.iter().filter(|d| d.end_ns > 0) {
                    m.run_end_to_ack.get_or_create(&RootLabel { root: "here" }).observe(now.saturating_sub(d.end_ns) as f64 / 1e9);
                }
            }
        }
        ok
    }
}
