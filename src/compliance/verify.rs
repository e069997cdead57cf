//! `vcon-otel verify`: checks an audit log (`audit_log.rs`) against a vCon document, offline.
//!
//! For every run that names the vCon (`vcon_uuid` or `current_uuid`), in file order (rotated files
//! oldest first): an **identical repeat** of a record (same `record_id`, every field equal — what a
//! re-delivered entry writes after a crash) counts once; a *different* record under an id already
//! seen is a tamper. Each remaining record must chain on from the one before it (`chain.rs`, from
//! the run's genesis). The run's **terminal record** must chain on from its last step and count the
//! steps; nothing but repeats may follow it. With a key (`seal.rs`) every record must carry a valid
//! `mac`. Finally the vCon's `Vcon.hash` must equal the content hash of the most recent step.
//! `docs/compliance.md` says what this proves and what it cannot.

use super::audit_log::{files_in_order, AuditRecord};
use super::chain;
use super::seal::Key;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::PathBuf;

/// Whether record MACs were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keying {
    /// A key was given and every record's MAC verified.
    Checked,
    /// Records carry MACs but no key was given: not checked.
    NotChecked,
    /// No record carries a MAC (the log is not keyed).
    Unkeyed,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every chain intact and terminated; the vCon matches the last recorded step.
    Ok { runs: usize, steps: usize, repeats: usize, keying: Keying },
    /// Chains intact but the vCon's hash is not the last recorded content hash.
    VconMismatch { expected: String, actual: String, record: String },
    /// The first record that shows tampering (or a record that is missing).
    ChainBroken { at: String, record_id: String, why: String },
    /// Chains intact, but a run's end is not proven: no terminal record covers its last steps.
    Unterminated { run: String, steps: usize, covered: Option<usize>, last: String },
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
            Verdict::Unterminated { .. } => 4,
        }
    }
}

/// A record and where it was read (`file:line`).
type Located = (String, AuditRecord);

/// What one run's records prove.
struct RunCheck {
    steps: usize,
    repeats: usize,
    /// Steps the terminal record covers (`None`: no terminal record).
    covered: Option<usize>,
    /// The last step record.
    last: Option<Located>,
}

/// Checks every run of the vCon in the given log files (each expanded to its rotated files) and
/// the vCon document against the last recorded step. `key`: check every record's MAC.
pub fn verify(vcon_json: &[u8], logs: &[PathBuf], vcon_uuid: Option<&str>, key: Option<&Key>) -> io::Result<Verdict> {
    let hash = super::vcon_hash(vcon_json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the vCon: {e}")))?;
    let uuid = match vcon_uuid {
        Some(u) => u.to_string(),
        None => document_uuid(vcon_json)?,
    };
    let runs = match read_runs(logs, &uuid)? {
        Ok(runs) => runs,
        Err(broken) => return Ok(broken),
    };
    if runs.is_empty() {
        return Ok(Verdict::NoRecords);
    }
    let mut checks = Vec::new();
    for recs in &runs {
        match check_run(recs, key) {
            Ok(c) => checks.push(c),
            Err(broken) => return Ok(broken),
        }
    }
    Ok(conclude(&runs, &checks, &hash.sha256_hex, keying(&runs, key)))
}

fn document_uuid(vcon_json: &[u8]) -> io::Result<String> {
    serde_json::from_slice::<serde_json::Value>(vcon_json)
        .ok()
        .and_then(|v| v.get("uuid").and_then(|u| u.as_str()).map(str::to_string))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the vCon has no \"uuid\"; pass --vcon-uuid"))
}

/// The records of each run touching `uuid`, in file order; `Err`: an unreadable line names it.
fn read_runs(logs: &[PathBuf], uuid: &str) -> io::Result<Result<Vec<Vec<Located>>, Verdict>> {
    let mut runs: Vec<Vec<Located>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for log in logs {
        for f in files_in_order(log) {
            for (i, line) in io::BufReader::new(File::open(&f)?).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let at = format!("{}:{}", f.display(), i + 1);
                let rec: AuditRecord = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    Err(e) if line.contains(uuid) => return Ok(Err(Verdict::ChainBroken { at, record_id: String::new(), why: format!("unreadable record: {e}") })),
                    Err(_) => continue,
                };
                let n = *index.entry(rec.run.clone()).or_insert_with(|| {
                    runs.push(Vec::new());
                    runs.len() - 1
                });
                runs[n].push((at, rec));
            }
        }
    }
    Ok(Ok(runs.into_iter().filter(|recs| recs.iter().any(|(_, r)| r.vcon_uuid == uuid || r.current_uuid == uuid)).collect()))
}

fn broken(at: &str, r: &AuditRecord, why: impl Into<String>) -> Verdict {
    Verdict::ChainBroken { at: at.to_string(), record_id: r.record_id.clone(), why: why.into() }
}

/// Checks one run's records: repeats, MACs, the chain from genesis, the terminal record.
fn check_run(recs: &[Located], key: Option<&Key>) -> Result<RunCheck, Verdict> {
    let first = &recs[0].1;
    // values[k]: the chain value after k steps.
    let mut values = vec![chain::genesis(&first.vcon_uuid, &first.run)];
    let mut seen: HashMap<&str, &Located> = HashMap::new();
    let mut check = RunCheck { steps: 0, repeats: 0, covered: None, last: None };
    for located in recs {
        let (at, r) = located;
        if let Some((first_at, prev)) = seen.get(r.record_id.as_str()) {
            if prev != r {
                return Err(broken(at, r, format!("a different record with the same record_id was read at {first_at} (a record was altered, or written twice with different content)")));
            }
            check.repeats += 1;
            continue;
        }
        seen.insert(&r.record_id, located);
        check_mac(at, r, key)?;
        if check.covered.is_some() {
            return Err(broken(at, r, "a record follows the run's terminal record"));
        }
        if r.is_terminal() {
            check.covered = Some(check_terminal(at, r, &values)?);
            continue;
        }
        let value = *values.last().expect("genesis");
        if r.prev_chain != hex::encode(value) {
            return Err(broken(at, r, "prev_chain does not equal the chain value after the previous step (a step is missing, reordered or altered)"));
        }
        let next = chain::step(&value, &r.step_name, r.step_index, &r.content_sha256);
        if r.chain != hex::encode(next) {
            return Err(broken(at, r, "chain does not commit to this record's step name, index and content hash (the record was altered)"));
        }
        values.push(next);
        check.steps += 1;
        check.last = Some(located.clone());
    }
    Ok(check)
}

fn check_mac(at: &str, r: &AuditRecord, key: Option<&Key>) -> Result<(), Verdict> {
    match key {
        Some(_) if r.mac.is_none() => Err(broken(at, r, "the record has no mac but a key was given (the MAC was removed, or the record was written before the log was keyed)")),
        Some(k) if !k.verifies(r) => Err(broken(at, r, "the mac does not match the record under this key (the record was altered or rewritten, or the key is another)")),
        _ => Ok(()),
    }
}

/// The number of steps a terminal record covers: its `step_index`, which must be a step count seen
/// and whose chain value it must continue. A terminal may cover fewer steps than the log holds
/// (reported as unterminated, not as tampering): a process that ended the run after a crash may
/// not have seen the steps an earlier process recorded.
fn check_terminal(at: &str, r: &AuditRecord, values: &[[u8; 32]]) -> Result<usize, Verdict> {
    let steps = values.len() - 1;
    let n = usize::try_from(r.step_index).ok().filter(|n| *n <= steps).ok_or_else(|| {
        broken(at, r, format!("the terminal record counts {} steps but {steps} precede it (the run's last steps are missing)", r.step_index))
    })?;
    if r.prev_chain != hex::encode(values[n]) {
        return Err(broken(at, r, "the terminal record's prev_chain is not the chain value after the steps it counts (a step is missing or altered)"));
    }
    if r.chain != hex::encode(chain::step(&values[n], &r.step_name, r.step_index, &r.content_sha256)) {
        return Err(broken(at, r, "the terminal record's chain does not commit to its outcome and step count (the record was altered)"));
    }
    Ok(n)
}

fn keying(runs: &[Vec<Located>], key: Option<&Key>) -> Keying {
    if key.is_some() {
        Keying::Checked
    } else if runs.iter().flatten().any(|(_, r)| r.mac.is_some()) {
        Keying::NotChecked
    } else {
        Keying::Unkeyed
    }
}

/// The vCon against the most recent step, then every run's end.
fn conclude(runs: &[Vec<Located>], checks: &[RunCheck], vcon_sha256: &str, keying: Keying) -> Verdict {
    let latest = checks.iter().filter_map(|c| c.last.as_ref()).reduce(|a, b| if b.1.timestamp >= a.1.timestamp { b } else { a });
    if let Some((at, l)) = latest {
        if l.content_sha256 != vcon_sha256 {
            return Verdict::VconMismatch { expected: l.content_sha256.clone(), actual: vcon_sha256.to_string(), record: format!("{at} ({})", l.record_id) };
        }
    }
    for (recs, c) in runs.iter().zip(checks) {
        if c.covered != Some(c.steps) {
            let last = recs.last().map(|(at, r)| format!("{at} ({})", r.record_id)).unwrap_or_default();
            return Verdict::Unterminated { run: recs[0].1.run.clone(), steps: c.steps, covered: c.covered, last };
        }
    }
    Verdict::Ok { runs: runs.len(), steps: checks.iter().map(|c| c.steps).sum(), repeats: checks.iter().map(|c| c.repeats).sum(), keying }
}
