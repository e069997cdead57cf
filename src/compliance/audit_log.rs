//! The `audit_log` tracer's file: append-only JSON Lines compliance records (checked offline by
//! `verify.rs`, `vcon-otel verify`).
//!
//! One line per step of a run, in step order: the content hash of the vCon at that step
//! (`Vcon.hash`), the chain value before and after the step (`chain.rs`), ids and times — never vCon
//! content or party identifiers — then one **terminal record** (`event: "run_end"`) when the run's
//! root span is exported, which chains on from the last step and counts the steps. With a key
//! (`seal.rs`) every record carries a `mac`. Delivery is at least once: after a crash a re-delivered
//! entry writes its records again, identical (same `record_id`, same content); `verify` counts an
//! identical repeat once. Durability: the export stage writes each batch's records and calls
//! `fsync` before it acknowledges the batch's stream entries, so an acknowledged step is on disk.
//! Rotation: when the file would exceed `max_bytes`, `path` becomes `path.1` (`path.1` becomes
//! `path.2`, …) and a new `path` is started; nothing is deleted.

use super::seal::{Key, KeySource};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One compliance record (one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// `{run}:{seq}`: unique per step.
    pub record_id: String,
    /// RFC 3339 UTC time of the step (from the producer's clock).
    pub timestamp: String,
    /// The UUID the run began with.
    pub vcon_uuid: String,
    /// The UUID whose state the content hash describes (differs after a swap).
    pub current_uuid: String,
    pub run: String,
    /// Record ordinal within the run, as the producer numbered it.
    pub seq: u64,
    /// `pre_chain`, `link`, `storage`, `chain_end`.
    pub event: String,
    pub step_name: String,
    pub step_index: i64,
    /// `Vcon.hash` of the vCon at this step.
    pub content_sha256: String,
    /// Chain value before this step (hex), then after it.
    pub prev_chain: String,
    pub chain: String,
    pub retention_policy: String,
    /// HMAC-SHA256 of the other fields (hex), when the log is keyed (`seal.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// `event` of a run's terminal record.
pub const TERMINAL_EVENT: &str = "run_end";

impl AuditRecord {
    /// Whether this is a run's terminal record.
    pub fn is_terminal(&self) -> bool {
        self.event == TERMINAL_EVENT
    }
}

/// What a run's terminal record says besides the run's identity.
pub struct Terminal<'a> {
    pub vcon_uuid: &'a str,
    pub current_uuid: &'a str,
    pub run: &'a str,
    /// The run's outcome (`complete`, `halted`, `failed`, `incomplete`): the record's `step_name`.
    pub outcome: &'a str,
    /// Hashed steps recorded for the run: the record's `step_index`.
    pub steps: u32,
    /// Chain value after the last step.
    pub chain_after: &'a [u8; 32],
    pub end_ns: u64,
    pub retention_policy: &'a str,
}

impl Terminal<'_> {
    /// The terminal record: `record_id` `{run}:end`, `seq` = steps, no content hash, and a chain
    /// value that commits to the outcome and the step count like any step (`chain.rs`).
    pub fn record(&self) -> AuditRecord {
        let next = super::chain::step(self.chain_after, self.outcome, self.steps as i64, "");
        AuditRecord {
            record_id: format!("{}:end", self.run),
            timestamp: crate::clock::rfc3339(self.end_ns),
            vcon_uuid: self.vcon_uuid.into(),
            current_uuid: self.current_uuid.into(),
            run: self.run.into(),
            seq: self.steps as u64,
            event: TERMINAL_EVENT.into(),
            step_name: self.outcome.into(),
            step_index: self.steps as i64,
            content_sha256: String::new(),
            prev_chain: hex::encode(self.chain_after),
            chain: hex::encode(next),
            retention_policy: self.retention_policy.into(),
            mac: None,
        }
    }
}

/// Cuts a partly written last line (a process killed while appending: that batch was never
/// acknowledged, so its records come again) back to the last newline, so the next append starts a
/// line of its own; returns the bytes removed.
fn cut_torn_tail(path: &Path) -> io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        f.set_len(end)?;
        f.sync_all()?;
    }
    Ok(len - end)
}

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub retention_policy: String,
    /// Where the MAC key comes from; `None`: records carry no `mac`.
    pub key: Option<KeySource>,
}

/// An open audit log.
pub struct AuditLog {
    settings: Settings,
    key: Option<Key>,
    file: File,
    size: u64,
}

impl AuditLog {
    /// Opens (creates) the file and loads the key; a key problem is an `InvalidInput` error whose
    /// message names its source.
    pub fn open(settings: Settings) -> io::Result<AuditLog> {
        let key = match &settings.key {
            Some(k) => Some(k.load().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?),
            None => None,
        };
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let torn = cut_torn_tail(&settings.path)?;
        if torn > 0 {
            tracing::warn!(path = %settings.path.display(), bytes = torn, "the audit log ended in a partly written line (a crash while writing); removed it: its records were not acknowledged and are written again");
        }
        let file = OpenOptions::new().create(true).append(true).open(&settings.path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog { settings, key, file, size })
    }

    /// Appends the records and fsyncs; rotates first when they would not fit.
    pub fn append_batch(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            let sealed;
            let r = match &self.key {
                Some(k) => {
                    sealed = AuditRecord { mac: Some(k.mac(r)), ..r.clone() };
                    &sealed
                }
                None => r,
            };
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.settings.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let p = &self.settings.path;
        let mut n = 1;
        while rotated(p, n).exists() {
            n += 1;
        }
        for i in (1..n).rev() {
            std::fs::rename(rotated(p, i), rotated(p, i + 1))?;
        }
        std::fs::rename(p, rotated(p, 1))?;
        self.file = OpenOptions::new().create(true).append(true).open(p)?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(p: &Path, n: usize) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The files of a log, oldest first: `path.N`, …, `path.1`, `path`.
pub fn files_in_order(path: &Path) -> Vec<PathBuf> {
    let mut n = 1;
    while rotated(path, n).exists() {
        n += 1;
    }
    let mut v: Vec<PathBuf> = (1..n).rev().map(|i| rotated(path, i)).collect();
    if path.exists() {
        v.push(path.to_path_buf());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::chain;

    fn rec(run: &str, seq: u64, name: &str, idx: i64, content: &str, prev: &[u8; 32]) -> (AuditRecord, [u8; 32]) {
        let next = chain::step(prev, name, idx, content);
        (
            AuditRecord {
                record_id: format!("{run}:{seq}"),
                timestamp: format!("2026-11-22T10:00:0{seq}Z"),
                vcon_uuid: "u1".into(),
                current_uuid: "u1".into(),
                run: run.into(),
                seq,
                event: "link".into(),
                step_name: name.into(),
                step_index: idx,
                content_sha256: content.into(),
                prev_chain: hex::encode(prev),
                chain: hex::encode(next),
                retention_policy: "7_years".into(),
                mac: None,
            },
            next,
        )
    }

    #[test]
    fn rotation_keeps_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(Settings { path: path.clone(), max_bytes: 700, retention_policy: "7_years".into(), key: None }).unwrap();
        let mut prev = chain::genesis("u1", "r1");
        for i in 0..6 {
            let (r, next) = rec("r1", i, "a", i as i64, "00", &prev);
            log.append_batch(&[r]).unwrap();
            prev = next;
        }
        let files = files_in_order(&path);
        assert!(files.len() >= 3, "{files:?}");
        let seqs: Vec<u64> = files
            .iter()
            .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(|l| serde_json::from_str::<AuditRecord>(l).unwrap().seq).collect::<Vec<_>>())
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_line_torn_by_a_crash_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let settings = || Settings { path: path.clone(), max_bytes: 1 << 20, retention_policy: "7_years".into(), key: None };
        let (first, next) = rec("r1", 0, "a", 0, "00", &chain::genesis("u1", "r1"));
        AuditLog::open(settings()).unwrap().append_batch(&[first.clone()]).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let (second, _) = rec("r1", 1, "b", 1, "11", &next);
        let mut torn = whole.clone();
        torn.extend_from_slice(&serde_json::to_vec(&second).unwrap()[..40]);
        std::fs::write(&path, &torn).unwrap();
        AuditLog::open(settings()).unwrap().append_batch(&[second.clone()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Vec<AuditRecord> = text.lines().map(|l| serde_json::from_str(l).expect("every line whole")).collect();
        assert_eq!(back, [first, second]);
        assert_eq!(cut_torn_tail(&dir.path().join("absent.jsonl")).unwrap(), 0);
    }
}
