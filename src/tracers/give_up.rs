//! How a hosted tracer reports the records it gave up on, so a target that refuses for good (wrong
//! credentials, a TLS certificate it does not accept, a 404 on the API path) reads as what it is and
//! not as an outage: every record given up is counted in
//! `vcon_otel_tracer_failures_total{tracer, reason}` (`reason` from [`crate::retry::Reason`], a
//! bounded set), and the log gets at most one line per [`REPORT_EVERY`] for each kind — an ERROR
//! saying "permanent" for a permanent failure, a WARN for retries that ran out — with the number of
//! records given up since the previous line. Each record is also logged at DEBUG. The records are
//! acknowledged like delivered ones, so the tracer's queue keeps moving.

use crate::metrics::Metrics;
use crate::retry::Failure;
use std::time::{Duration, Instant};

/// At most one line per kind per this interval.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The report state of one hosted tracer.
pub struct GiveUps {
    tracer: String,
    module: &'static str,
    permanent: Window,
    exhausted: Window,
}

#[derive(Default)]
struct Window {
    last: Option<Instant>,
    /// Records given up since the last line.
    since: u64,
}

impl Window {
    /// Adds `records`; true (and the count to log) when a line is due at `now`.
    fn due(&mut self, records: u64, now: Instant) -> Option<u64> {
        self.since += records;
        if self.last.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

impl GiveUps {
    pub fn new(tracer: &str, module: &'static str) -> GiveUps {
        GiveUps { tracer: tracer.to_string(), module, permanent: Window::default(), exhausted: Window::default() }
    }

    /// Counts `records` given up after `attempts` with `failure`, and logs when a line is due.
    /// Returns whether it logged.
    pub fn record(&mut self, failure: &Failure, records: usize, attempts: u32, metrics: &Metrics, now: Instant) -> bool {
        let reason = failure.reason().as_str();
        let labels = metrics.tracer_reason_labels(&self.tracer, reason);
        metrics.tracer_failures.get_or_create(&labels).inc_by(records as u64);
        let (tracer, module) = (&self.tracer, self.module);
        if failure.is_permanent() {
            let Some(n) = self.permanent.due(records as u64, now) else { return false };
            tracing::error!(tracer = %tracer, module, reason, error = %failure, records_given_up = n,
                "hosted tracer's target refuses permanently: records are given up without retrying until it is fixed (not an outage; logged at most once a minute)");
        } else {
            let Some(n) = self.exhausted.due(records as u64, now) else { return false };
            tracing::warn!(tracer = %tracer, module, reason, attempts, error = %failure, records_given_up = n,
                "hosted tracer gave up on records after its retries (logged at most once a minute)");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Reason;

    #[test]
    fn one_line_per_interval_and_kind_while_every_record_is_counted() {
        let m = Metrics::new(10);
        let mut g = GiveUps::new("hook", "webhook");
        let t0 = Instant::now();
        let auth = Failure::permanent(Reason::Auth, "POST http://h/events: HTTP 401");
        assert!(g.record(&auth, 1, 1, &m, t0));
        assert!(!g.record(&auth, 3, 1, &m, t0 + Duration::from_secs(1)));
        assert!(g.record(&Failure::retryable(Reason::Unavailable, "503"), 1, 5, &m, t0 + Duration::from_secs(2)), "the other kind has its own window");
        assert_eq!(g.permanent.since, 3);
        assert!(g.record(&auth, 1, 1, &m, t0 + REPORT_EVERY));
        assert_eq!(g.permanent.since, 0);
        let text = m.encode();
        assert!(text.contains("vcon_otel_tracer_failures_total{tracer=\"hook\",reason=\"auth\"} 5"), "{text}");
        assert!(text.contains("vcon_otel_tracer_failures_total{tracer=\"hook\",reason=\"unavailable\"} 1"), "{text}");
    }
}
