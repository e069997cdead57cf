//! The `audit_log` tracer's file: append-only JSON Lines compliance records, and their offline
//! verification (`vcon-otel verify`).
//!
//! One line per step of a run, in step order: the content hash of the vCon at that step
//! (`Vcon.hash`), the chain value before and after the step (`chain.rs`), ids and times — never vCon
//! content or party identifiers. Durability: the export stage writes each batch's records and calls
//! `fsync` before it acknowledges the batch's stream entries, so an acknowledged step is on disk.
//! Rotation: when the file would exceed `max_bytes`, `path` becomes `path.1` (`path.1` becomes
//! `path.2`, …) and a new `path` is started; nothing is deleted.

use super::chain;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
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
}

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub retention_policy: String,
}

/// An open audit log.
pub struct AuditLog {
    settings: Settings,
    file: File,
    size: u64,
}

impl AuditLog {
    pub fn open(settings: Settings) -> io::Result<AuditLog> {
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&settings.path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog { settings, file, size })
    }

    /// Appends the records and fsyncs; rotates first when they would not fit.
    pub fn append_batch(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
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

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Chain intact and the vCon matches the last recorded step.
    Ok { runs: usize, steps: usize },
    /// Chain intact but the vCon's hash is not the last recorded content hash.
    VconMismatch { expected: String, actual: String, record: String },
    /// The first record whose chain does not follow.
    ChainBroken { at: String, record_id: String, why: String },
    /// No record names this vCon.
    NoRecords,
}

impl Verdict {
    /// Exit code of `vcon-otel verify` (docs/compliance.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Ok { .. } => 0,
            Verdict::VconMismatch { .. } => 1,
            Verdict::ChainBroken { .. } => 2,
            Verdict::NoRecords => 3,
        }
    }
}

/// Checks every run of `vcon_uuid` in the given log files (each expanded to its rotated files) and
/// the vCon document against the last recorded step.
pub fn verify(vcon_json: &[u8], logs: &[PathBuf], vcon_uuid: Option<&str>) -> io::Result<Verdict> {
    let hash = super::vcon_hash(vcon_json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the vCon: {e}")))?;
    let uuid = match vcon_uuid {
        Some(u) => u.to_string(),
        None => serde_json::from_slice::<serde_json::Value>(vcon_json)
            .ok()
            .and_then(|v| v.get("uuid").and_then(|u| u.as_str()).map(str::to_string))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the vCon has no \"uuid\"; pass --vcon-uuid"))?,
    };
    // Runs touching this vCon, in file order, with where each record came from.
    let mut runs: Vec<(String, Vec<(String, AuditRecord)>)> = Vec::new();
    for log in logs {
        for f in files_in_order(log) {
            let reader = io::BufReader::new(File::open(&f)?);
            for (i, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let at = format!("{}:{}", f.display(), i + 1);
                let rec: AuditRecord = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        if line.contains(&uuid) {
                            return Ok(Verdict::ChainBroken { at, record_id: String::new(), why: format!("unreadable record: {e}") });
                        }
                        continue;
                    }
                };
                match runs.iter_mut().find(|(r, _)| *r == rec.run) {
                    Some((_, recs)) => recs.push((at, rec)),
                    None => runs.push((rec.run.clone(), vec![(at, rec)])),
                }
            }
        }
    }
    runs.retain(|(_, recs)| recs.iter().any(|(_, r)| r.vcon_uuid == uuid || r.current_uuid == uuid));
    if runs.is_empty() {
        return Ok(Verdict::NoRecords);
    }
    let mut steps = 0;
    let mut last: Option<(String, AuditRecord)> = None;
    for (_, recs) in &runs {
        let first = &recs[0].1;
        let mut value = chain::genesis(&first.vcon_uuid, &first.run);
        for (at, r) in recs {
            let why = if r.prev_chain != hex::encode(value) {
                Some("prev_chain does not equal the chain value after the previous step (a step is missing, reordered or altered)")
            } else {
                let next = chain::step(&value, &r.step_name, r.step_index, &r.content_sha256);
                if r.chain != hex::encode(next) {
                    Some("chain does not commit to this record's step name, index and content hash (the record was altered)")
                } else {
                    value = next;
                    None
                }
            };
            if let Some(why) = why {
                return Ok(Verdict::ChainBroken { at: at.clone(), record_id: r.record_id.clone(), why: why.into() });
            }
            steps += 1;
        }
        let candidate = recs.last().cloned().expect("non-empty run");
        if last.as_ref().is_none_or(|(_, l)| candidate.1.timestamp >= l.timestamp) {
            last = Some(candidate);
        }
    }
    let (at, l) = last.expect("at least one run");
    if l.content_sha256 != hash.sha256_hex {
        return Ok(Verdict::VconMismatch { expected: l.content_sha256, actual: hash.sha256_hex, record: format!("{at} ({})", l.record_id) });
    }
    Ok(Verdict::Ok { runs: runs.len(), steps })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            },
            next,
        )
    }

    #[test]
    fn rotation_keeps_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(Settings { path: path.clone(), max_bytes: 700, retention_policy: "7_years".into() }).unwrap();
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
}
