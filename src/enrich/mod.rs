//! Enrich: the stage between reading and working, shared by the main pipeline and every hosted
//! tracer. For each entry of a read, in order: decode the record (the one decode entry point,
//! [`crate::event::decode`]), name its chain and link module from the conserver's `config.yml`,
//! and attach the compliance hash of the step ([`hashes`]): inline from the record, from the run's
//! step record ([`steps`], which also deletes snapshots once hashed), or by fetching the server-side
//! snapshot and hashing it ([`snapshot`]: many `JSON.GET`s in flight, pipelined, outputs in input
//! order; large documents hashed off the async reactor).
//!
//! The main pipeline also journals every record that has a `seq` ([`journal`]) before passing the
//! read on, so whichever replica reads a run's end can build its root and hash chain.
//!
//! A read is enriched in two steps: [`Enricher::prepare`] (decode, dead letters, hashes: the
//! snapshot reads) and [`Enricher::complete`] (the main pipeline's one round trip of settling the
//! snapshots and writing the journal, then attaching the journals of ending runs). The bridge runs
//! them as two tasks, so one read's journal round trip overlaps the next read's snapshot reads;
//! journal writes stay in read order. [`Enricher::enrich`] does both, for hosted tracers and tests.
//!
//! An entry whose record cannot be used is dead-lettered here (main pipeline only; the hosted
//! tracers skip it, the main pipeline already keeps its copy) and passed on as [`Item::Done`], so
//! its acknowledgement travels the same ordered path as every other entry's.

mod hashes;
pub mod journal;
pub mod snapshot;
pub mod steps;

use crate::compliance::journal::{Decoded, Journal, JournalEntry};
use crate::compliance::StepHash;
use crate::event::{self, Record};
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
    /// A run's ending record (main pipeline): the run's journal as read right after this read was
    /// journaled; `None` when unreadable or not an ending.
    pub journal: Option<Journal>,
}

/// One entry of a read, enriched.
#[derive(Debug, Clone)]
pub enum Item {
    Record(Box<Enriched>),
    /// Nothing to do but acknowledge (a rejected record, already dead-lettered where that applies).
    Done(Entry),
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
    /// Step records and snapshot deletion ([`steps`]).
    pub lifecycle: steps::Lifecycle,
    /// Where the main pipeline journals every record ([`journal`]); `None` for hosted tracers.
    pub journal: Option<journal::Store>,
    /// Main pipeline: snapshots are settled in [`Enricher::complete`], their hashes waiting here
    /// meanwhile; `None`: settled while the read is prepared (hosted tracers).
    pub unsettled: Option<steps::Unsettled>,
    pub metrics: Arc<Metrics>,
}

/// A read between [`Enricher::prepare`] and [`Enricher::complete`].
pub struct Prepared {
    items: Vec<Item>,
    journaled: Vec<([u8; 16], u64, JournalEntry)>,
    /// Item index and (trace ID, ending `seq`) of each run this read ends.
    endings: Vec<(usize, ([u8; 16], Option<u64>))>,
    settle: Vec<steps::Settled>,
}

impl Enricher {
    /// Enriches one read, in order: [`Enricher::prepare`] then [`Enricher::complete`].
    pub async fn enrich(&self, entries: Vec<Entry>, stop: &mut watch::Receiver<bool>) -> Option<Vec<Item>> {
        let p = self.prepare(entries, stop).await?;
        Some(self.complete(p).await)
    }

    /// Decodes, dead-letters and hashes one read, in order. `None` when `stop` turned true while a
    /// dead letter could not be written (the read's entries then stay pending).
    #[tracing::instrument(name = "enrich", level = "debug", skip_all, fields(messaging.batch.message_count = entries.len(), vcon_otel.enrich.rejected = tracing::field::Empty))]
    pub async fn prepare(&self, entries: Vec<Entry>, stop: &mut watch::Receiver<bool>) -> Option<Prepared> {
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
        let resolver = hashes::Resolver {
            role: self.role,
            redis: self.redis.as_ref(),
            lifecycle: &self.lifecycle,
            sha512: self.sha512,
            keep_content: self.keep_content,
            metrics: &self.metrics,
            unsettled: self.unsettled.as_ref(),
        };
        let (resolved, settle) = resolver.resolve(&decoded.iter().map(|(_, r)| r).collect::<Vec<_>>()).await;
        let mut out: Vec<Option<Item>> = vec![None; entries.len()];
        // Each entry moves into its item (no copy of its ID).
        let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let mut take = |i: usize| entries[i].take().expect("each entry goes into one item");
        for (i, _) in &rejected {
            out[*i] = Some(Item::Done(take(*i)));
        }
        let mut journaled = Vec::with_capacity(if self.journal.is_some() { decoded.len() } else { 0 });
        let mut endings = Vec::new();
        for ((i, mut record), h) in decoded.into_iter().zip(resolved) {
            // A held record's journal entry keeps its decode for the run's end (`OpenRun::replay`).
            let pristine = (record.is_held() && record.seq.is_some() && self.journal.is_some()).then(|| Arc::new(record.clone()));
            if record.module.is_none() {
                record.module = record.link_name().and_then(|l| self.naming.link_modules.get(l).cloned());
            }
            let chain = self.naming.chain(&record);
            let entry = take(i);
            if let (Some(seq), Some(_)) = (record.seq, &self.journal) {
                let payload = entry.payload.as_deref().unwrap_or_default();
                let mut je = JournalEntry::of(&record, payload, h.hash.as_ref(), h.unknown.as_deref(), chain.as_deref());
                je.decoded = Decoded(pristine);
                journaled.push((record.trace_id, seq, je));
            }
            if record.ends_run() && record.seq.is_some() && self.journal.is_some() {
                endings.push((i, (record.trace_id, record.seq)));
            }
            let e = Enriched { entry, record, hash: h.hash, unknown: h.unknown, chain, vcon_json: h.text, journal: None };
            out[i] = Some(Item::Record(Box::new(e)));
        }
        let items = out.into_iter().map(|o| o.expect("every entry has an item")).collect();
        Some(Prepared { items, journaled, endings, settle })
    }

    /// Settles the read's snapshots and writes its journal entries (at once, on the multiplexed
    /// connection), then gives the journals of the runs it ends to their ending items. Errors are
    /// counted and logged; the items always come back.
    #[tracing::instrument(name = "enrich.complete", level = "debug", skip_all, fields(messaging.batch.message_count = p.items.len()))]
    pub async fn complete(&self, p: Prepared) -> Vec<Item> {
        let Prepared { mut items, journaled, endings, settle } = p;
        let settling = async {
            if let (Some(conn), false) = (&self.redis, settle.is_empty()) {
                hashes::settle(conn, &self.lifecycle, &settle, self.keep_content, &self.metrics).await;
            }
            if let Some(u) = &self.unsettled {
                u.forget(&settle);
            }
        };
        let journaling = async {
            let store = self.journal.as_ref()?;
            let asks: Vec<_> = endings.iter().map(|(_, a)| *a).collect();
            let records = journaled.len();
            match store.write(journaled, &asks).await {
                Ok(journals) => Some(journals),
                Err(e) => {
                    self.metrics.step_record_errors.inc();
                    tracing::warn!(error = %e, records, "cannot journal these records; their runs' chains will be unknown");
                    None
                }
            }
        };
        let ((), journals) = tokio::join!(settling, journaling);
        for ((i, _), j) in endings.iter().zip(journals.unwrap_or_default()) {
            if let Item::Record(e) = &mut items[*i] {
                e.journal = j;
            }
        }
        items
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_record_s_journal_entry_keeps_its_decode_as_read_before_naming() {
        let naming = Naming { link_modules: [("a".to_string(), "mod_a".to_string())].into(), ..Naming::default() };
        let metrics = Arc::new(Metrics::new(50));
        let enricher = Enricher {
            role: Role::Pipeline { source: "stream" },
            redis: None,
            dead: Arc::new(crate::stream::NoDeadLetters),
            naming: Arc::new(naming),
            sha512: false,
            keep_content: false,
            lifecycle: steps::Lifecycle::default(),
            journal: Some(journal::Store::memory()),
            unsettled: None,
            metrics,
        };
        let held = r#"{"v":1,"event":"link_start","run":"r1","vcon_uuid":"u1","ts_ns":500,"chain":"main","hooks":true,"run_start_ns":100,"seq":1,"link":"a","link_index":0}"#;
        let done = r#"{"v":1,"event":"link_complete","run":"r1","vcon_uuid":"u1","ts_ns":600,"chain":"main","hooks":true,"run_start_ns":100,"seq":2,"link":"a","link_index":0}"#;
        let entries = [held, done].iter().enumerate().map(|(i, p)| Entry { id: format!("1-{i}"), payload: Some(bytes::Bytes::from_static(p.as_bytes())) }).collect();
        let (_tx, mut stop) = watch::channel(false);
        let p = enricher.prepare(entries, &mut stop).await.expect("no dead letters");
        let Item::Record(e) = &p.items[0] else { panic!("the held record is usable") };
        assert_eq!(e.record.module.as_deref(), Some("mod_a"), "naming filled the module on the item");
        let kept = p.journaled[0].2.decoded.0.as_deref().expect("a held record keeps its decode");
        assert_eq!(kept, &event::decode(held.as_bytes()).unwrap(), "the decode of the bytes, not the named record");
        assert!(p.journaled[1].2.decoded.0.is_none(), "a record that is not held keeps none");
    }
}
