//! Completion markers: `vcon_otel:done:{trace_id}` is set (with a TTL, `runs.done_marker_ttl_secs`)
//! once a run's root span was accepted; its value is the run's end time (Unix ns). A replica that
//! holds other entries of the same run (its opening, when the run's end was read by another replica)
//! looks for the marker about a second after the run went quiet, and acknowledges them.

use redis::aio::ConnectionManager;
use std::time::Duration;

/// A run whose root span the collector accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDone {
    pub trace_id: [u8; 16],
    /// When the run ended (the root span's end), Unix ns.
    pub end_ns: u64,
}

/// The marker key of a run.
pub fn key(trace_id: &[u8; 16]) -> String {
    crate::ids::key("vcon_otel:done:", trace_id, "")
}

/// The run's journal (`enrich::journal`): its life ends with the run, so it is deleted with the
/// marker, after the run's entries are acknowledged in the same pipeline (an entry re-delivered
/// after a crash still finds it).
pub fn journal_key(trace_id: &[u8; 16]) -> String {
    crate::ids::key("vcon_otel:steps:", trace_id, ":run")
}

/// Adds "mark this run done and forget its journal" to a pipeline.
pub fn mark(pipe: &mut redis::Pipeline, d: &RunDone, ttl: Duration) {
    pipe.cmd("SET").arg(key(&d.trace_id)).arg(d.end_ns).arg("EX").arg(ttl.as_secs().max(1)).ignore();
    pipe.cmd("DEL").arg(journal_key(&d.trace_id)).ignore();
}

/// For each run, its end time when it is marked done (one round trip); all `None` when Redis cannot
/// be asked (the caller asks again later).
pub async fn finished(conn: &mut ConnectionManager, trace_ids: &[[u8; 16]]) -> Vec<Option<u64>> {
    if trace_ids.is_empty() {
        return vec![];
    }
    let mut pipe = redis::pipe();
    for t in trace_ids {
        pipe.cmd("GET").arg(key(t));
    }
    match pipe.query_async::<Vec<Option<String>>>(conn).await {
        // A marker written before markers carried the end time reads as "done, end unknown" (0).
        Ok(v) => v.into_iter().map(|m| m.map(|s| s.parse().unwrap_or(0))).collect(),
        Err(_) => vec![None; trace_ids.len()],
    }
}
