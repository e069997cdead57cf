//! Enrich: the stage between reading and working, shared by the main pipeline and every hosted
//! tracer. For each entry of a read, in order: decode the record (the one decode entry point,
//! [`crate::event::decode`]), name its chain and link module from the conserver's `config.yml`,
//! and attach the compliance hash of the step — inline from the record, or by fetching the
//! server-side snapshot and hashing it ([`snapshot`]: many `JSON.GET`s in flight, pipelined, outputs
//! in input order; large documents hashed off the async reactor).
//!
//! An entry whose record cannot be used is dead-lettered here (main pipeline only; the hosted
//! tracers skip it, the main pipeline already keeps its copy) and passed on as [`Item::Done`], so
//! its acknowledgement travels the same ordered path as every other entry's.

pub mod snapshot;

use crate::compliance::StepHash;
use crate::event::{self, Compliance, Record};
use crate::metrics::{Metrics, ReasonLabel, SourceEvent};
use crate::stream::{DeadLetter, DeadLetters, Entry};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Chain names and link modules from the conserver's `config.yml` (`conserver.config_file`):
/// tracer calls carry only the link list, not the chain's name.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub chains_by_links: HashMap<Vec<String>, String>,
    pub link_modules: HashMap<String, String>,
}

impl Naming {
    /// The record's chain name, else the chain whose link list the record carries.
    pub fn chain(&self, r: &Record) -> Option<String> {
        r.chain.clone().or_else(|| r.links.as_ref().and_then(|l| self.chains_by_links.get(l).cloned()))
    }
}

/// A usable record and what was learnt about it.
#[derive(Debug, Clone)]
pub struct Enriched {
    pub entry: Entry,
    pub record: Record,
    /// `Vcon.hash` of the vCon at this step, when the record carried a hash or a readable snapshot.
    pub hash: Option<StepHash>,
    /// Why the step has compliance but no hash (`budget`, `no_document`, `snapshot_unreadable`,
    /// `previous_step_unknown`): the span says so instead of carrying a hash.
    pub unknown: Option<String>,
    /// The chain's name, when the record or the conserver's config tells it.
    pub chain: Option<String>,
    /// The snapshot's stored JSON text, only for users that asked for content.
    pub vcon_json: Option<bytes::Bytes>,
}

/// One entry of a read, enriched.
#[derive(Debug, Clone)]
pub enum Item {
    Record(Box<Enriched>),
    /// Nothing to do but acknowledge (a rejected record, already dead-lettered where that applies).
    Done(Entry),
}

/// A bounded metric label for a producer's skip reason (anything unexpected is `other`).
fn skip_label(why: &str) -> &'static str {
    match why {
        "budget" => "budget",
        "no_document" => "no_document",
        _ => "other",
    }
}

/// Who is enriching: the main pipeline counts and dead-letters; hosted tracers do neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `source` labels `vcon_otel_events_ingested_total` (`stream`, `demo`).
    Pipeline { source: &'static str },
    Tracer,
}

/// The enrich stage of one consumer.
pub struct Enricher {
    pub role: Role,
    /// Where snapshots are read; `None` in the in-process demo (inline hashes only).
    pub redis: Option<ConnectionManager>,
    pub dead: Arc<dyn DeadLetters>,
    pub naming: Arc<Naming>,
    /// Also compute the vCon spec's sha512 token of snapshots.
    pub sha512: bool,
    /// Keep the snapshot text on [`Enriched::vcon_json`] (a tracer that sends whole vCons).
    pub keep_content: bool,
    pub metrics: Arc<Metrics>,
}

impl Enricher {
    /// Enriches one read, in order. `None` when `stop` turned true while a dead letter could not be
    /// written (the read's entries then stay pending).
    #[tracing::instrument(name = "enrich", level = "debug", skip_all, fields(messaging.batch.message_count = entries.len(), vcon_otel.enrich.rejected = tracing::field::Empty))]
    pub async fn enrich(&mut self, entries: Vec<Entry>, stop: &mut watch::Receiver<bool>) -> Option<Vec<Item>> {
        let mut decoded = Vec::with_capacity(entries.len());
        let mut rejected = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match self.decode(e) {
                Ok(r) => decoded.push((i, r)),
                Err(why) => rejected.push((i, why)),
            }
        }
        tracing::Span::current().record("vcon_otel.enrich.rejected", rejected.len());
        if !rejected.is_empty() && self.role != Role::Tracer {
            let letters: Vec<DeadLetter<'_>> = rejected
                .iter()
                .map(|(i, why)| DeadLetter { stage: "decode", reason: why.reason.as_str(), detail: &why.detail, entry: &entries[*i] })
                .collect();
            if !self.dead.write(&letters, stop).await {
                return None;
            }
        }
        let keys: Vec<Option<&str>> = decoded
            .iter()
            .map(|(_, r)| match &r.compliance {
                Some(Compliance::Snapshot(k)) => Some(k.as_str()),
                _ => None,
            })
            .collect();
        let fetched = match &self.redis {
            Some(conn) => snapshot::fetch_and_hash(conn, &keys, self.sha512, self.keep_content).await,
            None => keys.iter().map(|_| snapshot::Fetched::default()).collect(),
        };
        let mut out: Vec<Option<Item>> = vec![None; entries.len()];
        // Each entry moves into its item (no copy of its ID).
        let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let mut take = |i: usize| entries[i].take().expect("each entry goes into one item");
        for (i, _) in &rejected {
            out[*i] = Some(Item::Done(take(*i)));
        }
        // Hashes by (run, seq) within this read, for `same_as` (the hooks' pre-chain call names the
        // chain_start record it shares a snapshot with; both are written in one round trip).
        let mut by_seq: HashMap<([u8; 16], u64), StepHash> = HashMap::new();
        for ((i, mut record), f) in decoded.into_iter().zip(fetched) {
            let (hash, unknown) = match &record.compliance {
                Some(Compliance::Sha256(h)) => (Some(StepHash { sha256_hex: h.clone(), sha512_token: None, counts: None }), None),
                Some(Compliance::Snapshot(_)) => {
                    let unknown = f.hash.is_none().then(|| "snapshot_unreadable".to_string());
                    (f.hash, unknown)
                }
                Some(Compliance::SameAs(seq)) => match by_seq.get(&(crate::ids::trace_id(&record.vcon_uuid, &record.run), *seq)) {
                    Some(h) => (Some(h.clone()), None),
                    None => (None, Some("previous_step_unknown".to_string())),
                },
                Some(Compliance::Skipped(why)) => {
                    if self.role != Role::Tracer {
                        self.metrics.snapshots_skipped.get_or_create(&crate::metrics::ReasonLabel { reason: skip_label(why) }).inc();
                    }
                    (None, Some(why.clone()))
                }
                None => (None, None),
            };
            if let (Some(h), Some(seq)) = (&hash, record.seq) {
                by_seq.insert((crate::ids::trace_id(&record.vcon_uuid, &record.run), seq), h.clone());
            }
            if record.module.is_none() {
                record.module = record.link_name().and_then(|l| self.naming.link_modules.get(l).cloned());
            }
            let chain = self.naming.chain(&record);
            out[i] = Some(Item::Record(Box::new(Enriched { entry: take(i), record, hash, unknown, chain, vcon_json: f.text })));
        }
        Some(out.into_iter().map(|o| o.expect("every entry has an item")).collect())
    }

    fn decode(&self, e: &Entry) -> Result<Record, event::Rejection> {
        let result = match &e.payload {
            Some(p) => event::decode(p),
            None => Err(event::Rejection {
                reason: event::Reason::MissingPayload,
                detail: "stream entry has no field \"r\" holding the record".into(),
            }),
        };
        if let Role::Pipeline { source } = self.role {
            match &result {
                Ok(r) => self.metrics.events_ingested.get_or_create(&SourceEvent { source, event: r.event.as_str() }).inc(),
                Err(why) => {
                    tracing::debug!(entry = %e.id, reason = why.reason.as_str(), detail = %why.detail, "record rejected");
                    self.metrics.events_rejected.get_or_create(&ReasonLabel { reason: why.reason.as_str() }).inc()
                }
            };
        }
        result
    }
}
