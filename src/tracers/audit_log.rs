//! `audit_log`: the append-only JSON Lines compliance log (`crate::compliance::audit_log`). Not a
//! consumer of its own group: the main pipeline writes a batch's records and fsyncs them before it
//! acknowledges the batch, because each record carries the hash chain the assembler computes.

use super::{Build, Built};
use crate::compliance::seal::KeySource;
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
    /// Key every record with HMAC-SHA256 (`docs/compliance.md`, "Keyed chain"): the name of an
    /// environment variable holding the key (at least 16 bytes). Without a key, `verify` cannot
    /// detect a consistently rewritten chain.
    #[serde(default)]
    pub hmac_key_env: Option<String>,
    /// The same, from a file (its contents, surrounding whitespace removed). At most one of the two.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
}

impl Config {
    /// The audit log's settings (the key is read when the log is opened).
    pub fn settings(self) -> crate::compliance::audit_log::Settings {
        let key = match (self.hmac_key_env, self.hmac_key_file) {
            (Some(v), _) => Some(KeySource::Env(v)),
            (None, Some(f)) => Some(KeySource::File(f)),
            (None, None) => None,
        };
        crate::compliance::audit_log::Settings { path: self.path, max_bytes: self.max_bytes, retention_policy: self.retention_policy, key }
    }
}

fn default_max_bytes() -> u64 {
    100 << 20
}
fn default_retention() -> String {
    "7_years".into()
}

impl Build for Config {
    fn check(&self) -> Result<(), String> {
        if self.hmac_key_env.is_some() && self.hmac_key_file.is_some() {
            return Err("hmac_key_env and hmac_key_file are both set; keep one".into());
        }
        Ok(())
    }

    fn build(self) -> Result<Built, String> {
        Ok(Built::AuditLog(self.settings()))
    }
}
