//! Open runs: what the opening records of a run said, the entries they came from (held
//! unacknowledged until the run's root span is accepted), and an index ordered by last activity, so
//! the idle sweep and eviction at `runs.max_open` take the least recently active runs in O(log n)
//! without scanning every open run.

use crate::compliance::journal::{Journal, JournalEntry};
use crate::compliance::StepHash;
use crate::event::{EventKind, Producer, Record, RunRef, TraceParent};
use crate::ids;
use crate::otlp::span;
use crate::stream::Entry;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Most span events kept on one open run (pre-chain calls, starts); the rest are counted as dropped.
pub const MAX_RUN_EVENTS: usize = 64;

/// A run's identity inside the assembler: its trace ID (a hash of the vCon UUID and the run).
pub type RunKey = [u8; 16];

/// A run whose opening was read here and whose end was not (yet).
#[derive(Debug)]
pub struct OpenRun {
    pub vcon_uuid: String,
    pub run: String,
    pub(super) chain: Option<String>,
    pub(super) links: Option<Vec<String>>,
    pub(super) start_ns: u64,
    pub(super) last_ns: u64,
    last_seen: Instant,
    /// Tie-breaker of the activity index (runs touched in the same instant).
    tick: u64,
    pub(super) producer: Option<Producer>,
    pub(super) traceparent: Option<TraceParent>,
    pub(super) prev_run: Option<RunRef>,
    pub(super) ingress_list: Option<String>,
    pub(super) final_uuid: Option<String>,
    pub(super) entering_hash: Option<StepHash>,
    pub(super) last_hash: Option<StepHash>,
    pub(super) events: Vec<span::Event>,
    pub(super) dropped_events: u32,
    pub(super) link_starts: HashMap<i64, u64>,
    pub(super) storage_starts: HashMap<String, u64>,
    /// Entries that opened or fed the run and produced no span of their own.
    pub held: Vec<Entry>,
}

impl OpenRun {
    pub fn trace_id(&self) -> [u8; 16] {
        ids::trace_id(&self.vcon_uuid, &self.run)
    }

    fn new(r: &Record, now: Instant, tick: u64) -> Self {
        OpenRun {
            vcon_uuid: r.vcon_uuid.clone(),
            run: r.run.clone(),
            chain: None,
            links: None,
            start_ns: r.run_start_ns.unwrap_or(r.ts_ns),
            last_ns: r.ts_ns,
            last_seen: now,
            tick,
            producer: None,
            traceparent: None,
            prev_run: None,
            ingress_list: None,
            final_uuid: None,
            entering_hash: None,
            last_hash: None,
            events: Vec::new(),
            dropped_events: 0,
            link_starts: HashMap::new(),
            storage_starts: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// Folds what a record says about its run into the run.
    pub(super) fn absorb(&mut self, r: &Record, chain: Option<&str>, hash: Option<&StepHash>) {
        self.last_ns = self.last_ns.max(r.ts_ns);
        if let Some(s) = r.run_start_ns {
            self.start_ns = self.start_ns.min(s);
        }
        self.start_ns = self.start_ns.min(r.ts_ns);
        if self.chain.is_none() {
            self.chain = chain.map(str::to_string);
        }
        if self.links.is_none() {
            self.links = r.links.clone();
        }
        if self.producer.is_none() {
            self.producer = r.producer.clone();
        }
        if self.ingress_list.is_none() {
            self.ingress_list = r.ingress_list.clone();
        }
        let opening = r.opens_run_with_context();
        if opening && self.traceparent.is_none() {
            self.traceparent = r.traceparent;
        }
        if self.prev_run.is_none() {
            self.prev_run = r.prev_run.clone();
        }
        if r.event == EventKind::TracerCall && r.link_index.unwrap_or(-1) >= 0 {
            self.final_uuid = r.in_vcon_uuid.clone();
        }
        if let Some(h) = hash {
            if opening && self.entering_hash.is_none() {
                self.entering_hash = Some(h.clone());
            }
            self.last_hash = Some(h.clone());
        }
    }

    /// Keeps what a held record (an opening, a `link_start`, a `storage_start`) says for later
    /// spans: a start time, or a span event for the root.
    pub(super) fn hold(&mut self, r: &Record) {
        match r.event {
            EventKind::LinkStart => {
                self.link_starts.insert(r.link_index.unwrap_or(0), r.ts_ns);
            }
            EventKind::StorageStart => {
                self.storage_starts.insert(r.storage.clone().unwrap_or_default(), r.ts_ns);
            }
            _ => self.push_event(super::spans::start_event(r)),
        }
    }

    /// The run as its journal (complete up to `end`, the ending record) tells it, holding `held`:
    /// each held record is folded in as if read here, every other record by what its entry keeps
    /// (time, hash, final UUID), in `seq` order. The same journal gives the same run on every
    /// replica. A held record whose bytes no longer decode is left out (counted by the caller's
    /// decode metrics when it was read; it cannot be here unless the journal was edited).
    pub fn replay(j: &Journal, end: &Record, held: Vec<Entry>, now: Instant) -> OpenRun {
        let mut run = OpenRun::new(end, now, 0);
        for e in j.values() {
            let hash = e.step_hash();
            match e.record.as_deref().map(|t| crate::event::decode(t.as_bytes())) {
                Some(Ok(r)) => {
                    run.absorb(&r, e.chain.as_deref(), hash.as_ref());
                    run.hold(&r);
                }
                Some(Err(_)) => {}
                None => run.absorb_entry(e, hash),
            }
        }
        run.held = held;
        run
    }

    /// Folds in a non-held record of the run from its journal entry.
    fn absorb_entry(&mut self, e: &JournalEntry, hash: Option<StepHash>) {
        self.last_ns = self.last_ns.max(e.ts_ns);
        self.start_ns = self.start_ns.min(e.ts_ns).min(e.run_start_ns.unwrap_or(u64::MAX));
        if let Some(f) = &e.final_uuid {
            self.final_uuid = Some(f.clone());
        }
        if hash.is_some() {
            self.last_hash = hash;
        }
    }

    pub(super) fn push_event(&mut self, e: span::Event) {
        if self.events.len() < MAX_RUN_EVENTS {
            self.events.push(e);
        } else {
            self.dropped_events += 1;
        }
    }
}

/// The open runs, by key and by last activity.
#[derive(Default)]
pub struct Runs {
    by_key: HashMap<RunKey, OpenRun>,
    by_activity: BTreeSet<(Instant, u64, RunKey)>,
    ticks: u64,
}

impl Runs {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, k: &RunKey) -> Option<&OpenRun> {
        self.by_key.get(k)
    }

    pub fn contains(&self, k: &RunKey) -> bool {
        self.by_key.contains_key(k)
    }

    /// The run, marked active at `now`; opened from `r` when it is not open.
    pub fn touch(&mut self, k: RunKey, r: &Record, now: Instant) -> &mut OpenRun {
        self.ticks += 1;
        let tick = self.ticks;
        match self.by_key.entry(k) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let run = o.into_mut();
                self.by_activity.remove(&(run.last_seen, run.tick, k));
                run.last_seen = now;
                run.tick = tick;
                self.by_activity.insert((now, tick, k));
                run
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                self.by_activity.insert((now, tick, k));
                v.insert(OpenRun::new(r, now, tick))
            }
        }
    }

    pub fn get_mut(&mut self, k: &RunKey) -> Option<&mut OpenRun> {
        self.by_key.get_mut(k)
    }

    pub fn remove(&mut self, k: &RunKey) -> Option<OpenRun> {
        let run = self.by_key.remove(k)?;
        self.by_activity.remove(&(run.last_seen, run.tick, *k));
        Some(run)
    }

    /// Up to `max` keys of runs last active at or before `cutoff`, oldest first.
    pub fn idle_since(&self, cutoff: Instant, max: usize) -> Vec<RunKey> {
        self.by_activity.iter().take_while(|(seen, _, _)| *seen <= cutoff).take(max).map(|(_, _, k)| *k).collect()
    }

    /// Removes and returns the least recently active run.
    pub fn pop_oldest(&mut self) -> Option<OpenRun> {
        let (_, _, k) = self.by_activity.pop_first()?;
        self.by_key.remove(&k)
    }

    /// Removes and returns every run last active at or before `cutoff`, oldest first.
    pub fn pop_idle(&mut self, cutoff: Instant) -> Vec<OpenRun> {
        let mut out = Vec::new();
        while let Some(&(seen, _, k)) = self.by_activity.first() {
            if seen > cutoff {
                break;
            }
            self.by_activity.pop_first();
            out.extend(self.by_key.remove(&k));
        }
        out
    }

    /// Removes every run.
    pub fn drain(&mut self) -> Vec<OpenRun> {
        self.by_activity.clear();
        self.by_key.drain().map(|(_, r)| r).collect()
    }
}
