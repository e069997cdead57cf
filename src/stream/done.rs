//! Completion markers: `vcon_otel:done:{trace_id}` is set (with a TTL, `runs.done_marker_ttl_secs`)
//! once a run's root span was accepted, so a replica that holds other entries of the same run knows
//! the run ended elsewhere and acknowledges them instead of closing the run again as incomplete.

use redis::aio::ConnectionManager;
use std::time::Duration;

/// The marker key of a run.
pub fn key(trace_id: &[u8; 16]) -> String {
    format!("vcon_otel:done:{}", hex::encode(trace_id))
}

/// Adds "mark this run done" to a pipeline.
pub fn mark(pipe: &mut redis::Pipeline, trace_id: &[u8; 16], ttl: Duration) {
    pipe.cmd("SET").arg(key(trace_id)).arg(1).arg("EX").arg(ttl.as_secs().max(1)).ignore();
}

/// Which of these runs are marked done (one round trip); all false when Redis cannot be asked.
pub async fn finished(conn: &mut ConnectionManager, trace_ids: &[[u8; 16]]) -> Vec<bool> {
    if trace_ids.is_empty() {
        return vec![];
    }
    let mut pipe = redis::pipe();
    for t in trace_ids {
        pipe.cmd("EXISTS").arg(key(t));
    }
    pipe.query_async::<Vec<bool>>(conn).await.unwrap_or_else(|_| vec![false; trace_ids.len()])
}
