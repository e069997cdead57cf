//! Shutdown under a deadline: sources stop first, then each stage drains its input and closes its
//! output, in flow order. Past the deadline the exporter is told to give up retrying (what it could
//! not deliver stays pending in Redis) and every stage gets two more seconds; whatever is still
//! running then is named in the report.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a drain left behind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Stages still running when the grace period (plus two seconds) ended, in flow order.
    pub missed: Vec<String>,
}

impl DrainReport {
    pub fn is_clean(&self) -> bool {
        self.missed.is_empty()
    }
}

/// A running stage, by name.
pub(super) struct Task {
    pub name: String,
    pub handle: JoinHandle<()>,
}

/// Waits for `tasks` in order until `deadline`; then signals `give_up` and waits 2 s more.
pub(super) async fn drain(tasks: Vec<Task>, grace: Duration, give_up: watch::Sender<bool>) -> DrainReport {
    let deadline = tokio::time::Instant::now() + grace;
    let mut pending = Vec::new();
    for t in tasks {
        if pending.is_empty() {
            let mut handle = t.handle;
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(_) => continue,
                Err(_) => pending.push(Task { name: t.name, handle }),
            }
        } else {
            pending.push(t);
        }
    }
    if pending.is_empty() {
        return DrainReport::default();
    }
    let _ = give_up.send(true);
    let late = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut missed = Vec::new();
    for mut t in pending {
        if tokio::time::timeout_at(late, &mut t.handle).await.is_err() {
            t.handle.abort();
            missed.push(t.name);
        }
    }
    if !missed.is_empty() {
        tracing::warn!(stages = ?missed, "stages did not finish within the grace period; unacknowledged entries stay pending and are re-read on restart");
    }
    DrainReport { missed }
}
