//! The compliance hash of each step of one read, whatever form the producer sent
//! (`docs/events.md`, "Compliance"): inline `sha256`; a `snapshot` read and hashed here or found in
//! the run's step record ([`super::steps`]); `same_as` an earlier record (in this read, else the
//! step record); `skipped` with the producer's reason.
//!
//! Order of the sources for a snapshot: a consumer that needs only the hash and is not the main
//! pipeline (a hosted tracer) asks the step record first and reads the snapshot only when the
//! record does not know the step yet; the main pipeline (usually first) and content users read the
//! snapshot first and ask the step record only when the copy is gone. Every snapshot hashed here is
//! settled ([`steps::settle`]): its step record written, the copy deleted when this consumer is
//! the one to delete it — here for hosted tracers; for the main pipeline ([`Resolver::unsettled`])
//! later, by the caller, with the hashes noted in [`steps::Unsettled`] meanwhile.

use super::snapshot::{self, Fetched};
use super::steps::{self, Lifecycle, Settled, StepId};
use super::Role;
use crate::compliance::StepHash;
use crate::event::{Compliance, Record};
use crate::metrics::{Metrics, ReasonLabel};
use redis::aio::ConnectionManager;
use std::collections::HashMap;

/// What is known of one step's hash.
#[derive(Debug, Default)]
pub struct Resolved {
    pub hash: Option<StepHash>,
    /// Why there is none although the record has compliance.
    pub unknown: Option<String>,
    /// The snapshot's text, for content users.
    pub text: Option<bytes::Bytes>,
}

/// Who resolves, and with what.
pub struct Resolver<'a> {
    pub role: Role,
    pub redis: Option<&'a ConnectionManager>,
    pub lifecycle: &'a Lifecycle,
    pub sha512: bool,
    pub keep_content: bool,
    pub metrics: &'a Metrics,
    /// Settle later: the hashed snapshots are returned (and noted here) instead of settled.
    pub unsettled: Option<&'a steps::Unsettled>,
}

fn step_of(r: &Record) -> Option<StepId> {
    r.seq.map(|s| (r.trace_id, s))
}

impl Resolver<'_> {
    /// One [`Resolved`] per record, in order, and the snapshots left to settle (only with
    /// [`Resolver::unsettled`]).
    pub async fn resolve(&self, records: &[&Record]) -> (Vec<Resolved>, Vec<Settled>) {
        let mut out: Vec<Resolved> = records.iter().map(|_| Resolved::default()).collect();
        let settle = self.snapshots(records, &mut out).await;
        for (r, o) in records.iter().zip(out.iter_mut()) {
            match &r.compliance {
                Some(Compliance::Sha256(h)) => o.hash = Some(StepHash { sha256_hex: h.clone(), sha512_token: None, counts: None }),
                Some(Compliance::Skipped(why)) => {
                    if self.role != Role::Tracer {
                        self.metrics.snapshots_skipped.get_or_create(&ReasonLabel { reason: skip_label(why) }).inc();
                    }
                    o.unknown = Some(why.clone());
                }
                _ => {}
            }
        }
        self.same_as(records, &mut out).await;
        (out, settle)
    }

    /// `snapshot` records: hash from the step record or the copy, per the module header's order.
    /// Returns what is left to settle.
    async fn snapshots(&self, records: &[&Record], out: &mut [Resolved]) -> Vec<Settled> {
        let wanted: Vec<usize> = (0..records.len()).filter(|i| matches!(records[*i].compliance, Some(Compliance::Snapshot(_)))).collect();
        let Some(conn) = self.redis else {
            for i in wanted {
                out[i].unknown = Some("snapshot_unreadable".into());
            }
            return Vec::new();
        };
        let record_first = self.role == Role::Tracer && !self.keep_content;
        let mut to_read = wanted.clone();
        if record_first {
            to_read = self.from_step_records(conn, records, &wanted, out).await;
        }
        let keys: Vec<Option<&str>> = to_read.iter().map(|i| snapshot_key(records[*i])).collect();
        let fetched = snapshot::fetch_and_hash(conn, &keys, self.sha512, self.keep_content).await;
        let (mut gone, mut hashed) = (Vec::new(), Vec::new());
        for (i, f) in to_read.iter().copied().zip(fetched) {
            let Fetched { hash, text, missing } = f;
            if missing {
                gone.push(i);
            } else if hash.is_some() {
                hashed.push(i);
            }
            out[i] = Resolved { hash, unknown: None, text };
        }
        // Gone: deleted once hashed by another consumer (also between a record-first consumer's
        // two reads), or expired.
        self.from_step_records(conn, records, &gone, out).await;
        let done: Vec<Settled> = hashed
            .iter()
            .filter_map(|i| Some(Settled { step: step_of(records[*i])?, snapshot: snapshot_key(records[*i])?.to_string(), hash: out[*i].hash.clone()? }))
            .collect();
        for i in wanted {
            if out[i].hash.is_none() {
                out[i].unknown = Some("snapshot_unreadable".into());
            }
        }
        match self.unsettled {
            Some(u) => {
                u.note(&done);
                done
            }
            None => {
                settle(conn, self.lifecycle, &done, self.keep_content, self.metrics).await;
                Vec::new()
            }
        }
    }

    /// Fills hashes the step records know; returns the indexes still unknown.
    async fn from_step_records(&self, conn: &ConnectionManager, records: &[&Record], idx: &[usize], out: &mut [Resolved]) -> Vec<usize> {
        let with_step: Vec<(usize, StepId)> = idx.iter().filter_map(|i| step_of(records[*i]).map(|s| (*i, s))).collect();
        let ids: Vec<StepId> = with_step.iter().map(|(_, s)| *s).collect();
        let found = steps::lookup(conn, self.unsettled, &ids).await;
        let mut known = std::collections::HashSet::new();
        for ((i, _), h) in with_step.into_iter().zip(found) {
            if let Some(h) = h {
                out[i].hash = Some(h);
                known.insert(i);
            }
        }
        idx.iter().copied().filter(|i| !known.contains(i)).collect()
    }

    /// `same_as` records: the earlier record's hash, from this read or the step record.
    async fn same_as(&self, records: &[&Record], out: &mut [Resolved]) {
        let mut by_step: HashMap<StepId, StepHash> = HashMap::new();
        let mut ask = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if let Some(Compliance::SameAs(seq)) = r.compliance {
                let step = (r.trace_id, seq);
                match by_step.get(&step) {
                    Some(h) => out[i].hash = Some(h.clone()),
                    None => ask.push((i, step)),
                }
            }
            if let (Some(h), Some(step)) = (&out[i].hash, step_of(r)) {
                by_step.insert(step, h.clone());
            }
        }
        let found = match self.redis {
            Some(conn) => steps::lookup(conn, self.unsettled, &ask.iter().map(|(_, s)| *s).collect::<Vec<_>>()).await,
            None => vec![None; ask.len()],
        };
        for ((i, _), h) in ask.into_iter().zip(found) {
            match h {
                Some(h) => out[i].hash = Some(h),
                None => out[i].unknown = Some("previous_step_unknown".into()),
            }
        }
    }
}

/// Step records and deletions for snapshots hashed from their copy (`content_user`: this consumer
/// used the content); a failure is counted and logged, never the caller's.
pub async fn settle(conn: &ConnectionManager, lc: &Lifecycle, done: &[Settled], content_user: bool, metrics: &Metrics) {
    match steps::settle(conn, lc, done, content_user).await {
        Ok(n) => {
            metrics.snapshots_deleted.inc_by(n as u64);
        }
        Err(e) => {
            metrics.step_record_errors.inc();
            tracing::warn!(error = %e, snapshots = done.len(), "cannot write step records or delete snapshots; they live until their TTL");
        }
    }
}

/// A bounded metric label for a producer's skip reason (anything unexpected is `other`).
fn skip_label(why: &str) -> &'static str {
    match why {
        "budget" => "budget",
        "no_document" => "no_document",
        _ => "other",
    }
}

fn snapshot_key(r: &Record) -> Option<&str> {
    match &r.compliance {
        Some(Compliance::Snapshot(k)) => Some(k.as_str()),
        _ => None,
    }
}
