//! Run endings and their journals: a run's ending record reaches the assembler with the run's
//! journal (`enrich::journal`, read back by enrich in the round trip that journaled the read), so
//! the root span and the hash chain come from every record of the run, whichever replica read it.
//!
//! An ending whose journal is not yet complete up to it (another replica read an earlier record
//! of the run and has not journaled it yet — usually milliseconds) **waits** here, up to
//! [`WAIT_AT_MOST`], asked again every [`ASK_EVERY`]; the rest of the read goes on meanwhile.
//! Past the wait, or when the journal cannot be read, the ending is taken without a journal: its
//! root carries no hash chain and no audit records are written for the run (counted in
//! `vcon_otel_chains_unknown_total{reason}`; `verify` then reports the run as not proven).
//! At most [`MAX_WAITING`] endings wait; when full, a new one is taken at once without a journal
//! (`reason="full"`). A record without `seq` cannot be journaled (`reason="no_seq"`).

use crate::compliance::journal::{self, Journal};
use crate::enrich::journal::Store;
use crate::enrich::{Enriched, Item};
use crate::metrics::{Metrics, ReasonLabel};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest an ending waits for its journal.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(5);
/// How often waiting endings ask again.
pub const ASK_EVERY: Duration = Duration::from_millis(100);
/// Most endings waiting at once.
pub const MAX_WAITING: usize = 10_000;

/// An item ready for the assembler, with its run's journal when it is an ending that has one.
pub type Ready = (Item, Option<Journal>);

struct Waiting {
    item: Box<Enriched>,
    since: Instant,
}

/// The endings of one pipeline.
pub struct Ends {
    store: Store,
    waiting: VecDeque<Waiting>,
    metrics: Arc<Metrics>,
}

fn trace(e: &Enriched) -> ([u8; 16], Option<u64>) {
    (e.record.trace_id, e.record.seq)
}

impl Ends {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Ends {
        Ends { store, waiting: VecDeque::new(), metrics }
    }

    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn unknown(&self, reason: &'static str) {
        self.metrics.chains_unknown.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The read's items in order, each ending with its journal (enrich read it); endings whose
    /// journal is not complete yet are kept back (module header).
    pub fn prepare(&mut self, items: Vec<Item>, now: Instant) -> Vec<Ready> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Item::Record(mut e) = item else {
                out.push((item, None));
                continue;
            };
            if !e.record.ends_run() {
                out.push((Item::Record(e), None));
                continue;
            }
            let Some(seq) = e.record.seq else {
                self.unknown("no_seq");
                out.push((Item::Record(e), None));
                continue;
            };
            match e.journal.take() {
                Some(j) if journal::complete_up_to(&j, seq) => out.push((Item::Record(e), Some(j))),
                None => {
                    self.unknown("unreadable");
                    out.push((Item::Record(e), None));
                }
                Some(_) if self.waiting.len() >= MAX_WAITING => {
                    self.unknown("full");
                    out.push((Item::Record(e), None));
                }
                Some(_) => self.waiting.push_back(Waiting { item: e, since: now }),
            }
        }
        self.metrics.runs_awaiting_journal.set(self.waiting.len() as i64);
        out
    }

    /// Waiting endings that are ready now: journal complete, or waited [`WAIT_AT_MOST`] (then
    /// without a journal); `flush`: all of them (the input ended).
    pub async fn ready(&mut self, now: Instant, flush: bool) -> Vec<Ready> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let asks: Vec<_> = self.waiting.iter().map(|w| trace(&w.item)).collect();
        let journals = self.store.read(&asks).await;
        let mut out = Vec::new();
        let mut still = VecDeque::new();
        for (w, j) in std::mem::take(&mut self.waiting).into_iter().zip(journals) {
            let seq = w.item.record.seq.unwrap_or(0);
            match j {
                Some(j) if journal::complete_up_to(&j, seq) => out.push((Item::Record(w.item), Some(j))),
                _ if flush || now.duration_since(w.since) >= WAIT_AT_MOST => {
                    self.unknown("incomplete");
                    tracing::debug!(run = %w.item.record.run, seq, "a run's journal is still missing records; its root goes without a hash chain");
                    out.push((Item::Record(w.item), None));
                }
                _ => still.push_back(w),
            }
        }
        self.waiting = still;
        self.metrics.runs_awaiting_journal.set(self.waiting.len() as i64);
        out
    }

    /// The journals of runs about to be closed as `incomplete` (in order; `None`: unknown).
    pub async fn journals(&self, traces: &[[u8; 16]]) -> Vec<Option<Journal>> {
        self.store.read(&traces.iter().map(|t| (*t, None)).collect::<Vec<_>>()).await
    }
}
