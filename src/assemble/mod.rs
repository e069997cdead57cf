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

use crate::compliance::audit_log::{AuditRecord, Terminal};
use crate::compliance::{chain, StepHash};
use crate::enrich::{Enriched, Item};
use crate::event::{ChainOutcome, EventKind, Producer, Record};
use crate::metrics::Metrics;
use crate::otlp::{kv_str, Span};
use crate::stream::Entry;
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
    pub span: Span,
    /// The producer instance: the span's resource (`service.instance.id`).
    pub producer: Option<Producer>,
    pub acks: Vec<Entry>,
    /// Set on root spans: once accepted, mark the run done so other replicas acknowledge their part.
    pub root_of: Option<crate::stream::done::RunDone>,
    /// Set on the root span of an audited run whose hash chain is whole here: the run's terminal
    /// audit record, written with the batch once the root is accepted.
    pub terminal: Option<AuditRecord>,
}

/// What the assembler hands to the exporter, in order.
#[derive(Debug, Clone)]
pub enum Output {
    Span(FinishedSpan),
    /// Entries to acknowledge without a span (a rejected record, a run closed elsewhere).
    Ack(Vec<Entry>),
    /// A compliance record for the audit log, written (and fsynced) before the batch is acknowledged.
    Audit(AuditRecord),
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

    /// Takes one enriched item; returns the outputs it completes, in order.
    pub fn accept_item(&mut self, item: Item, now: Instant) -> Vec<Output> {
        match item {
            Item::Record(e) => self.accept(*e, now),
            Item::Done(entry) => vec![Output::Ack(vec![entry])],
        }
    }

    /// Takes one decoded record; returns the spans it completes.
    pub fn accept(&mut self, input: Enriched, now: Instant) -> Vec<Output> {
        let Enriched { entry, record: r, hash, unknown, chain, .. } = input;
        let mut out = Vec::new();
        if let Some(ns) = r.call_ns {
            let tracer = r.tracer.as_deref().unwrap_or("hooks");
            self.metrics.tracer_call(tracer, "conserver", "ok", ns as f64 / 1e9);
        }
        let key: RunKey = crate::ids::trace_id(&r.vcon_uuid, &r.run);
        // Only a record that belongs to the run's opening opens it here; any other record of a run
        // not open here (its opening was read by another replica) gives its own span and nothing else.
        if !self.runs.contains(&key) && r.is_held() {
            self.make_room(&mut out, now);
        }
        if self.runs.contains(&key) || r.is_held() {
            let run = self.runs.touch(key, &r, now);
            run.absorb(&r, chain.as_deref(), hash.as_ref());
            if let Some(seq) = r.seq {
                if run.next_seq.is_some_and(|expected| expected != seq) && !run.chain_broken {
                    tracing::debug!(run = %r.run, seq, "a record of this run is missing here; its hash chain stops");
                    run.chain_broken = true;
                }
                run.next_seq = Some(seq + 1);
            }
            self.metrics.open_runs.set(self.runs.len() as i64);
        }
        let chain_value = match &hash {
            Some(h) => self.chain_step(&key, &r, h, &mut out),
            None => None,
        };
        let run_chain = self.runs.get(&key).and_then(|x| x.chain.clone());
        let chain = chain.or(run_chain);

        if r.is_held() {
            let run = self.runs.get_mut(&key).expect("opened above");
            match r.event {
                EventKind::LinkStart => {
                    run.link_starts.insert(r.link_index.unwrap_or(0), r.ts_ns);
                }
                EventKind::StorageStart => {
                    run.storage_starts.insert(r.storage.clone().unwrap_or_default(), r.ts_ns);
                }
                _ => run.push_event(spans::start_event(&r)),
            }
            run.hold(entry);
            self.held += 1;
            return out;
        }

        let hashed = spans::Hashed { hash: hash.as_ref(), unknown: unknown.as_deref() };
        if let Some(s) = self.step_span(&key, &r, chain.as_deref(), hashed, chain_value) {
            out.push(Output::Span(s));
        }
        if r.ends_run() {
            let run = self.remove(&key);
            let outcome = match (r.event, r.outcome) {
                (EventKind::ChainError, _) => RunOutcome::Failed,
                (_, Some(ChainOutcome::Halted)) => RunOutcome::Halted,
                _ => RunOutcome::Complete,
            };
            let terminal = run.as_ref().and_then(|o| self.terminal(o, outcome, r.ts_ns));
            let end = spans::End { record: &r, chain: chain.as_deref() };
            let mut root = spans::root(run, Some(end), outcome, &self.metrics);
            root.terminal = terminal;
            out.push(Output::Span(root));
        }
        // The entry is acknowledged with the last span it produced.
        match out.iter_mut().rev().find_map(|o| match o {
            Output::Span(s) => Some(s),
            Output::Ack(_) | Output::Audit(_) => None,
        }) {
            Some(last) => last.acks.push(entry),
            None => out.push(Output::Ack(vec![entry])),
        }
        out
    }

    /// The span of a link or storage step, with the run's hash-chain value after it when known.
    fn step_span(&self, key: &RunKey, r: &Record, chain: Option<&str>, hash: spans::Hashed<'_>, chain_value: Option<String>) -> Option<FinishedSpan> {
        let run = self.runs.get(key);
        let mut s = match r.event {
            EventKind::TracerCall | EventKind::LinkComplete | EventKind::LinkError => spans::link(r, run, chain, hash, &self.metrics),
            EventKind::StorageComplete | EventKind::StorageError => spans::storage(r, run, chain, hash, &self.metrics),
            _ => return None,
        };
        if let Some(c) = chain_value {
            s.span.attributes.push(kv_str("vcon.hash.chain", c));
        }
        Some(s)
    }

    /// Advances the run's hash chain by this record's step; pushes the audit record when auditing.
    /// Returns the chain value after the step (hex), or None when the chain cannot be continued.
    fn chain_step(&mut self, key: &RunKey, r: &Record, h: &StepHash, out: &mut Vec<Output>) -> Option<String> {
        let run = self.runs.get_mut(key)?;
        if run.chain_broken {
            return None;
        }
        let (event, name, index) = match r.event {
            EventKind::ChainStart => ("chain_start", "chain_start".to_string(), -1),
            EventKind::TracerCall if r.link_index == Some(-1) => ("pre_chain", "pre_chain".to_string(), -1),
            EventKind::TracerCall | EventKind::LinkComplete | EventKind::LinkError => {
                ("link", r.link_name().unwrap_or("unknown").to_string(), r.link_index.unwrap_or(0))
            }
            EventKind::StorageComplete | EventKind::StorageError => ("storage", r.storage.clone().unwrap_or_default(), -2),
            EventKind::ChainComplete | EventKind::ChainError => {
                ("chain_end", "chain_end".to_string(), run.links.as_ref().map_or(0, |l| l.len() as i64))
            }
            _ => return None,
        };
        let prev = run.hash_chain;
        run.hash_chain = chain::step(&prev, &name, index, &h.sha256_hex);
        run.chain_steps += 1;
        let value = hex::encode(run.hash_chain);
        if let Some(policy) = &self.settings.audit_retention {
            let current = match r.event {
                EventKind::TracerCall => r.in_vcon_uuid.clone(),
                _ => r.out_vcon_uuid.clone(),
            }
            .unwrap_or_else(|| r.vcon_uuid.clone());
            out.push(Output::Audit(AuditRecord {
                record_id: format!("{}:{}", r.run, r.seq.unwrap_or(0)),
                timestamp: crate::clock::rfc3339(r.ts_ns),
                vcon_uuid: r.vcon_uuid.clone(),
                current_uuid: current,
                run: r.run.clone(),
                seq: r.seq.unwrap_or(0),
                event: event.into(),
                step_name: name,
                step_index: index,
                content_sha256: h.sha256_hex.clone(),
                prev_chain: hex::encode(prev),
                chain: value.clone(),
                retention_policy: policy.clone(),
                mac: None,
            }));
        }
        Some(value)
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

    /// The root span of a run nobody ended: outcome `incomplete`.
    pub fn close_incomplete(&self, run: OpenRun) -> Output {
        let terminal = self.terminal(&run, RunOutcome::Incomplete, run.last_ns);
        let mut root = spans::root(Some(run), None, RunOutcome::Incomplete, &self.metrics);
        root.terminal = terminal;
        Output::Span(root)
    }

    /// The run's terminal audit record (`audit_log.rs`), when auditing and the chain is whole here
    /// (a run whose chain stopped gets none: `verify` then reports it unterminated).
    fn terminal(&self, run: &OpenRun, outcome: RunOutcome, end_ns: u64) -> Option<AuditRecord> {
        let policy = self.settings.audit_retention.as_deref()?;
        if run.chain_broken {
            return None;
        }
        let current = run.final_uuid.as_deref().unwrap_or(&run.vcon_uuid);
        let t = Terminal { vcon_uuid: &run.vcon_uuid, current_uuid: current, run: &run.run, outcome: outcome.as_str(), steps: run.chain_steps, chain_after: &run.hash_chain, end_ns, retention_policy: policy };
        Some(t.record())
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
            out.push(self.close_incomplete(run));
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
