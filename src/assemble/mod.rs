//! Records -> spans. Pure: no I/O; the caller passes the clock.
//!
//! Each record that completes a step (a link, a storage, the run) becomes one span at once, built
//! from the record alone (records carry their own bounds, `docs/events.md`; [`spans`] builds them).
//! The only state is the set of **open runs** ([`run`]): what the opening records said (chain,
//! start, pre-chain span events, upstream context) and the stream entries that opened them, which
//! stay unacknowledged until the run's root span is accepted. A run ends with its ending record, or
//! with [`Assembler::expire`] after `idle_timeout`, or by eviction when `max_open` runs are open or
//! the held entries reach `max_held` (the least recently active run is closed `incomplete`).
//!
//! Acknowledgement rule: every entry handed to [`Assembler::accept`] comes back exactly once, either
//! in the `acks` of the last span it produced, or held by its run until the run's root span (or an
//! [`Output::Ack`]) carries it. The exporter sends outputs in order, so acking an entry after its
//! last span was accepted means every span it produced was accepted.

pub mod run;
pub mod spans;

use crate::compliance::audit_log::AuditRecord;
use crate::compliance::journal::{self, Journal, RunEnd};
use crate::enrich::{Enriched, Item};
use crate::event::{ChainOutcome, EventKind, Producer, Record};
use crate::metrics::Metrics;
use crate::otlp::wire::WireSpan;
use crate::stream::{Entry, EntryId};
use run::{OpenRun, RunKey, Runs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of the assembler (`runs:` in the config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Close a run as `incomplete` after this long without a record.
    pub idle_timeout: Duration,
    /// Most open runs; when full, the least recently active one is closed as `incomplete`.
    pub max_open: usize,
    /// Most entries held by open runs (they count against the reader's in-flight bound, so holding
    /// more could stall reading); past it, the least recently active runs are closed `incomplete`.
    pub max_held: usize,
    /// Emit [`Output::Audit`] records with this retention policy (the `audit_log` tracer is configured).
    pub audit_retention: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { idle_timeout: Duration::from_secs(300), max_open: 100_000, max_held: usize::MAX, audit_retention: None }
    }
}

/// How a run ended; the `vcon.run.outcome` attribute and the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Complete,
    Halted,
    Failed,
    Incomplete,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Complete => "complete",
            RunOutcome::Halted => "halted",
            RunOutcome::Failed => "failed",
            RunOutcome::Incomplete => "incomplete",
        }
    }
}

/// A span ready for export, with what to acknowledge once the collector accepted it.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    pub span: WireSpan,
    /// The producer instance: the span's resource (`service.instance.id`).
    pub producer: Option<Producer>,
    pub acks: Vec<Entry>,
    /// Set on root spans: once accepted, mark the run done so other replicas acknowledge their part.
    pub root_of: Option<crate::stream::done::RunDone>,
    /// Set on the root span of an audited run whose hash chain is whole here: the run's terminal
    /// audit record, written with the batch once the root is accepted. (Boxed, like
    /// [`Output::Audit`]'s: rare, and held inline its 300-odd bytes would be part of every span
    /// in the export queue.)
    pub terminal: Option<Box<AuditRecord>>,
}

/// What the assembler hands to the exporter, in order.
#[derive(Debug, Clone)]
pub enum Output {
    Span(FinishedSpan),
    /// Entries to acknowledge without a span (a rejected record, a run closed elsewhere).
    Ack(Vec<Entry>),
    /// A compliance record for the audit log, written (and fsynced) before the batch is acknowledged.
    Audit(Box<AuditRecord>),
}

/// What one item gave ([`Assembler::accept_item`]).
pub struct Accepted {
    pub out: Vec<Output>,
    /// The item's entry ID when an open run holds the entry now.
    pub held: Option<EntryId>,
}

/// The assembler. One per pipeline; not shared between tasks.
pub struct Assembler {
    settings: Settings,
    metrics: Arc<Metrics>,
    runs: Runs,
    /// Entries held by open runs.
    held: usize,
    unlogged_evictions: u64,
    last_eviction_log: Option<Instant>,
}

/// Evictions are logged as one summary at most this often (each one is counted).
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(10);

impl Assembler {
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Self {
        Assembler { settings, metrics, runs: Runs::default(), held: 0, unlogged_evictions: 0, last_eviction_log: None }
    }

    pub fn open_runs(&self) -> usize {
        self.runs.len()
    }

    /// Takes one enriched item; returns the outputs it completes, in order, and the ID of its
    /// entry when an open run now holds it (acknowledged with the run's root, not by an output
    /// here). `journal`: for a run's ending record, the run's journal complete up to it (the caller
    /// read it; see [`Assembler::accept_journaled`]).
    pub fn accept_item(&mut self, item: Item, journal: Option<&Journal>, now: Instant) -> Accepted {
        match item {
            Item::Record(e) => self.accept_one(*e, journal, now),
            Item::Done(entry) => Accepted { out: vec![Output::Ack(vec![entry])], held: None },
        }
    }

    /// Takes one decoded record; returns the spans it completes (no journal: a run it ends gets
    /// no hash chain).
    pub fn accept(&mut self, input: Enriched, now: Instant) -> Vec<Output> {
        self.accept_journaled(input, None, now)
    }

    /// Takes one decoded record. When it ends its run and `journal` (complete up to it) is given,
    /// the root span is built from the journal, whichever records this process read, so every
    /// replica builds the same root; the journal's hash chain goes on the root, and its audit
    /// records (when auditing) come before it.
    pub fn accept_journaled(&mut self, input: Enriched, journal: Option<&Journal>, now: Instant) -> Vec<Output> {
        self.accept_one(input, journal, now).out
    }

    fn accept_one(&mut self, input: Enriched, journal: Option<&Journal>, now: Instant) -> Accepted {
        let Enriched { entry, record: r, hash, unknown, chain, .. } = input;
        let mut out = Vec::new();
        if let Some(ns) = r.call_ns {
            let tracer = r.tracer.as_deref().unwrap_or("hooks");
            self.metrics.tracer_call(tracer, "conserver", "ok", ns as f64 / 1e9);
        }
        let key: RunKey = r.trace_id;
        // Only a record that belongs to the run's opening opens it here; any other record of a run
        // not open here (its opening was read by another replica) gives its own span and nothing else.
        if !self.runs.contains(&key) && r.is_held() {
            self.make_room(&mut out, now);
        }
        if self.runs.contains(&key) || r.is_held() {
            let run = self.runs.touch(key, &r, now);
            run.absorb(&r, chain.as_deref(), hash.as_ref());
            run.note_unknown(&r, unknown.as_deref());
            self.metrics.open_runs.set(self.runs.len() as i64);
        }
        let run_chain = self.runs.get(&key).and_then(|x| x.chain.clone());
        let chain = chain.or(run_chain);

        if r.is_held() {
            let run = self.runs.get_mut(&key).expect("opened above");
            run.hold(&r);
            let id = run.hold_entry(entry);
            self.held += 1;
            return Accepted { out, held: Some(id) };
        }

        let hashed = spans::Hashed { hash: hash.as_ref(), unknown: unknown.as_deref() };
        if let Some(s) = self.step_span(&key, &r, chain.as_deref(), hashed) {
            out.push(Output::Span(s));
        }
        if r.ends_run() {
            let outcome = match (r.event, r.outcome) {
                (EventKind::ChainError, _) => RunOutcome::Failed,
                (_, Some(ChainOutcome::Halted)) => RunOutcome::Halted,
                _ => RunOutcome::Complete,
            };
            let local = self.remove(&key);
            let run = match journal {
                Some(j) => Some(OpenRun::replay(j, &r, local.map(|l| l.held).unwrap_or_default(), now)),
                None => local,
            };
            let end = spans::End { record: &r, chain: chain.as_deref() };
            out.extend(self.seal_root(run, Some(end), outcome, r.ts_ns, journal));
        }
        // The entry is acknowledged with the last span it produced.
        match out.iter_mut().rev().find_map(|o| match o {
            Output::Span(s) => Some(s),
            Output::Ack(_) | Output::Audit(_) => None,
        }) {
            Some(last) => last.acks.push(entry),
            None => out.push(Output::Ack(vec![entry])),
        }
        Accepted { out, held: None }
    }

    /// The span of a link or storage step.
    fn step_span(&self, key: &RunKey, r: &Record, chain: Option<&str>, hash: spans::Hashed<'_>) -> Option<FinishedSpan> {
        let run = self.runs.get(key);
        let s = match r.event {
            EventKind::TracerCall | EventKind::LinkComplete | EventKind::LinkError => spans::link(r, run, chain, hash, &self.metrics),
            EventKind::StorageComplete | EventKind::StorageError => spans::storage(r, run, chain, hash, &self.metrics),
            _ => return None,
        };
        Some(s)
    }

    /// The root span of a run and, when the journal is given, its hash chain (on the root) and
    /// audit records (before it, then the terminal record with the root): `[Audit…, Span(root)]`.
    fn seal_root(&self, run: Option<OpenRun>, end: Option<spans::End<'_>>, outcome: RunOutcome, end_ns: u64, journal: Option<&Journal>) -> Vec<Output> {
        let sealed = match (journal, &run) {
            (Some(j), Some(o)) => Some(journal::seal(j, &RunEnd {
                vcon_uuid: &o.vcon_uuid,
                run: &o.run,
                outcome: outcome.as_str(),
                end_ns,
                final_uuid: o.final_uuid.as_deref().unwrap_or(&o.vcon_uuid),
                retention_policy: self.settings.audit_retention.as_deref(),
            })),
            _ => None,
        };
        let mut root = spans::root(run, end, outcome, &self.metrics);
        let mut out = Vec::new();
        if let Some(s) = sealed {
            if let Some(c) = s.chain {
                root.span.attributes.str("vcon.hash.chain", &crate::ids::hex(&c));
            }
            out.extend(s.audits.into_iter().map(|a| Output::Audit(Box::new(a))));
            root.terminal = s.terminal.map(Box::new);
        }
        out.push(Output::Span(root));
        out
    }

    /// Up to `max` open runs with no record since `cutoff`, least recently active first (the runs
    /// whose end another replica may have read).
    pub fn stale(&self, cutoff: Instant, max: usize) -> Vec<RunKey> {
        self.runs.idle_since(cutoff, max)
    }

    /// Removes a run another replica finished (its root was accepted there); returns the entries it
    /// held, to acknowledge.
    pub fn finished_elsewhere(&mut self, key: &RunKey) -> Option<Vec<Entry>> {
        self.remove(key).map(|r| r.held_entries())
    }

    /// Removes and returns the runs idle for longer than `idle_timeout`, oldest first. The caller
    /// checks whether another replica finished them, then calls [`Assembler::close_incomplete`] or
    /// acknowledges `held`.
    pub fn expire(&mut self, now: Instant) -> Vec<OpenRun> {
        let Some(cutoff) = now.checked_sub(self.settings.idle_timeout) else { return vec![] };
        let expired = self.runs.pop_idle(cutoff);
        self.forget(&expired);
        expired
    }

    /// Removes every open run. Not used on shutdown of `run` (open runs stay pending in Redis and are
    /// rebuilt on restart); the demo, which has no Redis, closes what is left with it.
    pub fn drain_all(&mut self) -> Vec<OpenRun> {
        let all = self.runs.drain();
        self.forget(&all);
        all
    }

    /// The root span of a run nobody ended: outcome `incomplete`; with the run's journal (when it
    /// has no gap), its chain and audit records as [`Assembler::accept_journaled`] gives them.
    pub fn close_incomplete(&self, run: OpenRun, journal: Option<&Journal>) -> Vec<Output> {
        let end_ns = run.last_ns;
        let journal = journal.filter(|j| journal::gapless(j));
        self.seal_root(Some(run), None, RunOutcome::Incomplete, end_ns, journal)
    }

    fn remove(&mut self, key: &RunKey) -> Option<OpenRun> {
        let run = self.runs.remove(key)?;
        self.forget(std::slice::from_ref(&run));
        Some(run)
    }

    fn forget(&mut self, gone: &[OpenRun]) {
        self.held -= gone.iter().map(|r| r.held.len()).sum::<usize>();
        self.metrics.open_runs.set(self.runs.len() as i64);
    }

    /// Closes the least recently active runs as `incomplete` while `max_open` runs are open or
    /// `max_held` entries are held (counted, and logged as one summary per sweep).
    fn make_room(&mut self, out: &mut Vec<Output>, now: Instant) {
        let mut evicted = 0u64;
        while self.runs.len() >= self.settings.max_open || self.held >= self.settings.max_held {
            let Some(run) = self.runs.pop_oldest() else { break };
            self.forget(std::slice::from_ref(&run));
            out.extend(self.close_incomplete(run, None));
            evicted += 1;
        }
        if evicted > 0 {
            self.metrics.runs_evicted.inc_by(evicted);
            self.unlogged_evictions += evicted;
            if self.last_eviction_log.is_none_or(|t| now.duration_since(t) >= EVICTION_LOG_EVERY) {
                tracing::warn!(evicted = self.unlogged_evictions, max_open = self.settings.max_open, max_held = self.settings.max_held,
                    "too many open runs: closed the least recently active ones as incomplete (raise runs.max_open or export.max_inflight)");
                self.unlogged_evictions = 0;
                self.last_eviction_log = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
