//! `audit_log`: the append-only JSON Lines compliance log (`crate::compliance::audit_log`). Not a
//! consumer of its own group: the main pipeline writes a batch's records and fsyncs them before it
//! acknowledges the batch, because each record carries the hash chain the assembler computes.

use super::{Build, Built};
use serde::Deserialize;
use std::path::PathBuf;

/// Options of the `audit_log` module.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// JSON Lines file, appended to; rotated to `path.1`, `path.2`, … past `max_bytes`.
    pub path: PathBuf,
    /// Rotate past this size (default 100 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Written into every record (the seeds' compliance tracer's `retention_policy`).
    #[serde(default = "default_retention")]
    pub retention_policy: String,
}

fn default_max_bytes() -> u64 {
    100 << 20
}
fn default_retention() -> String {
    "7_years".into()
}

impl Build for Config {
    fn build(self) -> Result<Built, String> {
        Ok(Built::AuditLog(crate::compliance::audit_log::Settings { path: self.path, max_bytes: self.max_bytes, retention_policy: self.retention_policy }))
    }
}
