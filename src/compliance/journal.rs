//! A run's journal (`docs/compliance.md`, "Hash chain"): what every record of a run contributes to
//! the run's root span, hash chain and audit records, in a form any replica can store and read
//! back. Pure: the entry format, the completeness rule and [`seal`], which computes the chain and
//! the audit records from a complete journal. Where it is stored is `enrich::journal`.
//!
//! One [`JournalEntry`] per record, keyed by the record's `seq`. It is a function of the record and
//! its step hash only, so every replica (and every re-delivery) writes the same bytes: writes are
//! idempotent, and a chain computed from the journal is the same whichever replica computes it.
//! A journal is **complete up to** `seq = n` when it holds every `seq` from 0 to `n`: the producer
//! numbers a run's records 0, 1, 2, … without gaps (`docs/events.md`).

use super::audit_log::{AuditRecord, Terminal};
use super::{chain, StepHash};
use crate::event::{EventKind, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A chained step: what the hash chain and the audit record name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `chain_start`, `pre_chain`, `link`, `storage`, `chain_end`.
    #[serde(rename = "e")]
    pub event: String,
    #[serde(rename = "n")]
    pub name: String,
    /// Link index; −1 before the chain, −2 for storages, the link count at the chain's end.
    #[serde(rename = "i")]
    pub index: i64,
    /// The UUID whose state the step's hash describes.
    #[serde(rename = "u")]
    pub current_uuid: String,
}

/// What one record contributes (short field names: one entry per record lives in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalEntry {
    #[serde(rename = "t")]
    pub ts_ns: u64,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub run_start_ns: Option<u64>,
    /// The step's hash (`sha256hex[ s512=…][ n=P,D,A,T]`), when known.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why the step has compliance but no hash (the producer's skip reason, …), as enrich found.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// Set when the record is a chained step kind (with or without a hash).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// A tracer call after a link: the UUID the chain is on now (the root's final UUID).
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub final_uuid: Option<String>,
    /// A record held by its run (opening, `link_start`, `storage_start`): the record itself, so the
    /// replica that ends the run rebuilds what the opening said even when another replica read it.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The chain's name as enrich resolved it (held records only).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// This process's decode of `record`, when it wrote the entry: never stored (a journal read
    /// back from Redis has none, and its run's end decodes `record`).
    #[serde(skip)]
    pub decoded: Decoded,
}

/// A cache of `event::decode(record)` beside a [`JournalEntry`]'s `record`, which alone is the
/// entry's value: entries compare equal whatever their caches hold. It must hold the record as
/// decoded, before enrich added anything to it.
#[derive(Debug, Clone, Default)]
pub struct Decoded(pub Option<std::sync::Arc<Record>>);

impl PartialEq for Decoded {
    fn eq(&self, _: &Decoded) -> bool {
        true
    }
}

impl Eq for Decoded {}

impl JournalEntry {
    /// The entry of a record, with what enrich learnt of its step: its hash, or why it has none
    /// (`unknown`); `payload` is the record's bytes (kept only for held records).
    pub fn of(r: &Record, payload: &[u8], hash: Option<&StepHash>, unknown: Option<&str>, chain: Option<&str>) -> JournalEntry {
        let held = r.is_held();
        JournalEntry {
            ts_ns: r.ts_ns,
            run_start_ns: r.run_start_ns,
            hash: hash.map(StepHash::encode),
            unknown: unknown.map(str::to_string),
            step: step_of(r),
            final_uuid: (r.event == EventKind::TracerCall && r.link_index.unwrap_or(-1) >= 0).then(|| r.in_vcon_uuid.clone()).flatten(),
            record: held.then(|| String::from_utf8_lossy(payload).into_owned()),
            chain: if held { chain.map(str::to_string) } else { None },
            decoded: Decoded::default(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a journal entry always serializes")
    }

    /// `None` for a field not written by the bridge.
    pub fn from_json(s: &str) -> Option<JournalEntry> {
        serde_json::from_str(s).ok()
    }

    pub fn step_hash(&self) -> Option<StepHash> {
        self.hash.as_deref().and_then(StepHash::decode)
    }
}

/// The chained step a record is, if any (`docs/compliance.md`: the steps, in order).
pub fn step_of(r: &Record) -> Option<Step> {
    let (event, name, index) = match r.event {
        EventKind::ChainStart => ("chain_start", "chain_start".to_string(), -1),
        EventKind::TracerCall if r.link_index == Some(-1) => ("pre_chain", "pre_chain".to_string(), -1),
        EventKind::TracerCall | EventKind::LinkComplete | EventKind::LinkError => ("link", r.link_name().unwrap_or("unknown").to_string(), r.link_index.unwrap_or(0)),
        EventKind::StorageComplete | EventKind::StorageError => ("storage", r.storage.clone().unwrap_or_default(), -2),
        EventKind::ChainComplete | EventKind::ChainError => ("chain_end", "chain_end".to_string(), r.links.as_ref().map_or(0, |l| l.len() as i64)),
        EventKind::LinkStart | EventKind::StorageStart => return None,
    };
    let current = match r.event {
        EventKind::TracerCall => r.in_vcon_uuid.clone(),
        _ => r.out_vcon_uuid.clone(),
    }
    .unwrap_or_else(|| r.vcon_uuid.clone());
    Some(Step { event: event.into(), name, index, current_uuid: current })
}

/// A run's journal as read back: entries by `seq` (fields that do not parse are left out).
pub type Journal = BTreeMap<u64, JournalEntry>;

/// Parses a journal's fields (`seq` → entry JSON).
pub fn parse(fields: Vec<(String, String)>) -> Journal {
    fields.into_iter().filter_map(|(f, v)| Some((f.parse().ok()?, JournalEntry::from_json(&v)?))).collect()
}

/// Whether the journal holds every `seq` from 0 to `upto`.
pub fn complete_up_to(j: &Journal, upto: u64) -> bool {
    j.range(..=upto).count() as u64 == upto + 1
}

/// Whether the journal holds every `seq` from 0 to its largest.
pub fn gapless(j: &Journal) -> bool {
    j.last_key_value().is_some_and(|(last, _)| complete_up_to(j, *last))
}

/// What a complete journal proves about its run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// The chain value after the last hashed step; `None` when no step had a hash.
    pub chain: Option<[u8; 32]>,
    /// One audit record per hashed step, in `seq` order (when auditing).
    pub audits: Vec<AuditRecord>,
    /// The run's terminal record (when auditing).
    pub terminal: Option<AuditRecord>,
}

/// How a run ended, for [`seal`].
pub struct RunEnd<'a> {
    pub vcon_uuid: &'a str,
    pub run: &'a str,
    /// `complete`, `halted`, `failed`, `incomplete`.
    pub outcome: &'a str,
    pub end_ns: u64,
    /// The UUID the run ended on (the terminal record's `current_uuid`).
    pub final_uuid: &'a str,
    /// Write audit records with this retention policy (`None`: the chain only).
    pub retention_policy: Option<&'a str>,
}

/// Chains the journal's hashed steps in `seq` order (`chain.rs`); the caller checked completeness.
/// A step without a hash is not chained (its span says why), as a record that is no step.
pub fn seal(j: &Journal, end: &RunEnd<'_>) -> Sealed {
    let mut value = chain::genesis(end.vcon_uuid, end.run);
    let mut out = Sealed::default();
    let mut steps = 0u32;
    for (seq, e) in j {
        let (Some(step), Some(h)) = (&e.step, e.step_hash()) else { continue };
        let prev = value;
        value = chain::step(&prev, &step.name, step.index, &h.sha256_hex);
        steps += 1;
        out.chain = Some(value);
        if let Some(policy) = end.retention_policy {
            out.audits.push(AuditRecord {
                record_id: format!("{}:{seq}", end.run),
                timestamp: crate::clock::rfc3339(e.ts_ns),
                vcon_uuid: end.vcon_uuid.to_string(),
                current_uuid: step.current_uuid.clone(),
                run: end.run.to_string(),
                seq: *seq,
                event: step.event.clone(),
                step_name: step.name.clone(),
                step_index: step.index,
                content_sha256: h.sha256_hex,
                prev_chain: hex::encode(prev),
                chain: hex::encode(value),
                retention_policy: policy.to_string(),
                mac: None,
            });
        }
    }
    if let Some(policy) = end.retention_policy {
        let t = Terminal { vcon_uuid: end.vcon_uuid, current_uuid: end.final_uuid, run: end.run, outcome: end.outcome, steps, chain_after: &value, end_ns: end.end_ns, retention_policy: policy };
        out.terminal = Some(t.record());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Record {
        crate::event::decode(v.to_string().as_bytes()).expect("valid record")
    }

    fn hash(n: u64) -> StepHash {
        StepHash { sha256_hex: format!("{n:064x}"), sha512_token: None, counts: None }
    }

    fn journal(records: &[(Record, Option<StepHash>)]) -> Journal {
        let fields = records.iter().map(|(r, h)| (r.seq.unwrap().to_string(), JournalEntry::of(r, b"{}", h.as_ref(), None, None).to_json())).collect();
        parse(fields)
    }

    fn three_step_run() -> Vec<(Record, Option<StepHash>)> {
        let base = serde_json::json!({"v":1,"run":"r1","vcon_uuid":"u1","links":["a","b"],"tracer":"t","in_vcon_uuid":"u1","out_vcon_uuid":"u1"});
        let call = |seq: u64, idx: i64, ts: u64| {
            let mut v = base.clone();
            v["event"] = "tracer_call".into();
            v["seq"] = seq.into();
            v["link_index"] = idx.into();
            v["ts_ns"] = ts.into();
            rec(v)
        };
        vec![(call(0, -1, 10), Some(hash(1))), (call(1, 0, 20), Some(hash(2))), (call(2, 1, 30), Some(hash(3)))]
    }

    fn end(policy: Option<&str>) -> RunEnd<'_> {
        RunEnd { vcon_uuid: "u1", run: "r1", outcome: "complete", end_ns: 30, final_uuid: "u1", retention_policy: policy }
    }

    #[test]
    fn the_chain_commits_to_every_hashed_step_in_seq_order() {
        let j = journal(&three_step_run());
        let s = seal(&j, &end(Some("7_years")));
        let mut want = chain::genesis("u1", "r1");
        for (name, i, h) in [("pre_chain", -1, 1), ("a", 0, 2), ("b", 1, 3)] {
            want = chain::step(&want, name, i, &hash(h).sha256_hex);
        }
        assert_eq!(s.chain, Some(want));
        assert_eq!(s.audits.iter().map(|a| a.record_id.as_str()).collect::<Vec<_>>(), ["r1:0", "r1:1", "r1:2"]);
        assert_eq!(s.audits[1].prev_chain, s.audits[0].chain, "each record chains on from the one before");
        let t = s.terminal.expect("a terminal record");
        assert_eq!((t.seq, t.prev_chain.as_str()), (3, hex::encode(want).as_str()));
        assert!(seal(&j, &end(None)).audits.is_empty(), "no audit records without a policy");
    }

    #[test]
    fn a_step_without_a_hash_is_not_chained_and_a_gap_is_incomplete() {
        let mut run = three_step_run();
        run[1].1 = None;
        let j = journal(&run);
        assert_eq!(seal(&j, &end(Some("p"))).audits.len(), 2);
        assert!(complete_up_to(&j, 2) && gapless(&j));
        let mut gap = j.clone();
        gap.remove(&1);
        assert!(!complete_up_to(&gap, 2) && !gapless(&gap) && complete_up_to(&gap, 0));
    }

    #[test]
    fn an_entry_is_the_same_bytes_whoever_writes_it_and_keeps_held_records_only() {
        let run = three_step_run();
        let (r, h) = &run[0];
        let a = JournalEntry::of(r, b"{\"x\":1}", h.as_ref(), None, Some("main")).to_json();
        assert_eq!(a, JournalEntry::of(r, b"{\"x\":1}", h.as_ref(), None, Some("main")).to_json());
        let back = JournalEntry::from_json(&a).unwrap();
        assert_eq!((back.record.as_deref(), back.chain.as_deref(), back.step_hash()), (Some("{\"x\":1}"), Some("main"), h.clone()));
        let link = JournalEntry::of(&run[1].0, b"{}", None, None, Some("main"));
        assert_eq!((link.record, link.chain, link.final_uuid.as_deref()), (None, None, Some("u1")));
        assert_eq!(JournalEntry::from_json("not json"), None);
    }
}
