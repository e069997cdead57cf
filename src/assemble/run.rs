//! Open runs: what the opening records of a run said, the entries they came from (held
//! unacknowledged until the run's root span is accepted), and an index ordered by last activity, so
//! the idle sweep and eviction at `runs.max_open` take the least recently active runs in O(log n)
//! without scanning every open run.
//!
//! # Memory
//! An open run is kept small, because `runs.max_open` of them may wait for their ends (measured in
//! `docs/benchmarks.md`, "Memory per open run"):
//! - the map holds a `Box<OpenRun>`, so its spare slots cost a pointer, not a whole run;
//! - a held entry keeps its ID, not its record bytes (the export stage re-reads the record from the
//!   stream in the rare case it has to dead-letter it, `export`);
//! - the link list and the producer are shared between runs that carry the same ones (`Shared`);
//! - the opening's span events are kept as the few fields they are built from ([`spans::RunEvent`]),
//!   and built at the root;
//! - the entering and final step hashes are kept as 32 bytes ([`Digest`]);
//! - what few runs have (upstream trace context, previous run, held step starts) is allocated only
//!   when a run has it;
//! - vectors grow exactly (most runs hold one or two entries and events).

mod compact;

use super::spans::{self, RunEvent};
use compact::{push_exact, Shared};
pub use compact::{Digest, Starts, MAX_SHARED};
use crate::compliance::journal::{Journal, JournalEntry};
use crate::compliance::StepHash;
use crate::event::{EventKind, Producer, Record, RunRef, TraceParent};
use crate::ids::{self, IdMap};
use crate::stream::{Entry, EntryId, HeldId};
use std::collections::BTreeSet;
use std::sync::Arc;
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
    /// The root span's ID (`ids::span_id` of the run's `Root`), the parent of every step span:
    /// computed once per run.
    pub(super) root_span_id: [u8; 8],
    pub(super) chain: Option<String>,
    /// Shared with the other open runs carrying the same list (`Shared`).
    pub(super) links: Option<Arc<[String]>>,
    pub(super) start_ns: u64,
    pub(super) last_ns: u64,
    last_seen: Instant,
    /// Tie-breaker of the activity index (runs touched in the same instant).
    tick: u64,
    /// Shared with the other open runs of the same producer (`Shared`).
    pub(super) producer: Option<Arc<Producer>>,
    pub(super) ingress_list: Option<Box<str>>,
    /// The UUID the last link returned (`in_vcon_uuid` of its tracer call), only when it differs
    /// from `vcon_uuid` (equal, it says nothing the root would show).
    pub(super) final_uuid: Option<Box<str>>,
    pub(super) entering_hash: Option<Digest>,
    pub(super) last_hash: Option<Digest>,
    pub(super) events: Vec<RunEvent>,
    pub(super) dropped_events: u32,
    pub(super) link_starts: Starts<i64>,
    pub(super) storage_starts: Starts<String>,
    /// Upstream trace context and previous run, for the runs that have them.
    pub(super) context: Option<Box<Context>>,
    /// Entries that opened or fed the run and produced no span of their own: their IDs
    /// ([`OpenRun::hold_entry`]).
    pub held: Vec<HeldId>,
}

/// What a run's opening said about where it comes from: the root span's links.
#[derive(Debug, Default)]
pub struct Context {
    pub(super) traceparent: Option<TraceParent>,
    pub(super) prev_run: Option<RunRef>,
    /// Why the entering hash is unknown: the opening had compliance but no hash (e.g. `budget`).
    pub(super) entering_unknown: Option<Box<str>>,
}

impl OpenRun {
    pub fn trace_id(&self) -> [u8; 16] {
        ids::trace_id(&self.vcon_uuid, &self.run)
    }

    fn new(r: &Record, now: Instant, tick: u64) -> Self {
        OpenRun {
            vcon_uuid: r.vcon_uuid.clone(),
            run: r.run.clone(),
            root_span_id: ids::span_id(&r.vcon_uuid, &r.run, ids::SpanRole::Root),
            chain: None,
            links: None,
            start_ns: r.run_start_ns.unwrap_or(r.ts_ns),
            last_ns: r.ts_ns,
            last_seen: now,
            tick,
            producer: None,
            ingress_list: None,
            final_uuid: None,
            entering_hash: None,
            last_hash: None,
            events: Vec::new(),
            dropped_events: 0,
            link_starts: Starts::default(),
            storage_starts: Starts::default(),
            context: None,
            held: Vec::new(),
        }
    }

    /// Folds what a record says about its run into the run. (An open run got its link list and
    /// producer from [`Runs::touch`] already, shared with other runs.)
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
            self.links = r.links.as_deref().map(Arc::from);
        }
        if self.producer.is_none() {
            self.producer = r.producer.clone().map(Arc::new);
        }
        if self.ingress_list.is_none() {
            self.ingress_list = r.ingress_list.as_deref().map(Box::from);
        }
        let opening = r.opens_run_with_context();
        if opening && self.traceparent().is_none() && r.traceparent.is_some() {
            self.context.get_or_insert_with(Default::default).traceparent = r.traceparent;
        }
        if self.prev_run().is_none() && r.prev_run.is_some() {
            self.context.get_or_insert_with(Default::default).prev_run = r.prev_run.clone();
        }
        if r.event == EventKind::TracerCall && r.link_index.unwrap_or(-1) >= 0 {
            self.final_uuid = r.in_vcon_uuid.as_deref().filter(|u| *u != self.vcon_uuid).map(Box::from);
        }
        if let Some(h) = hash {
            if opening && self.entering_hash.is_none() {
                self.entering_hash = Some(Digest::of(h));
            }
            self.last_hash = Some(Digest::of(h));
        }
    }

    /// Notes why an opening record has no hash (the root then says so instead of an entering hash).
    pub(super) fn note_unknown(&mut self, r: &Record, unknown: Option<&str>) {
        if let (true, None, Some(why)) = (r.opens_run_with_context(), &self.entering_hash, unknown) {
            let c = self.context.get_or_insert_with(Default::default);
            c.entering_unknown.get_or_insert_with(|| Box::from(why));
        }
    }

    pub(super) fn entering_unknown(&self) -> Option<&str> {
        self.context.as_ref()?.entering_unknown.as_deref()
    }

    pub(super) fn traceparent(&self) -> Option<&TraceParent> {
        self.context.as_ref()?.traceparent.as_ref()
    }

    pub(super) fn prev_run(&self) -> Option<&RunRef> {
        self.context.as_ref()?.prev_run.as_ref()
    }

    pub(super) fn push_event(&mut self, e: RunEvent) {
        if self.events.len() < MAX_RUN_EVENTS {
            push_exact(&mut self.events, e);
        } else {
            self.dropped_events += 1;
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
            _ => self.push_event(spans::start_event(r)),
        }
    }

    /// Holds the entry of a held record until the root span is accepted, by its ID only: the run
    /// has what it needs of the record, and a dead letter re-reads the record from the stream
    /// (`export`). Gives the ID back.
    pub(super) fn hold_entry(&mut self, e: Entry) -> EntryId {
        push_exact(&mut self.held, HeldId::of(&e.id));
        e.id
    }

    /// The run as its journal (complete up to `end`, the ending record) tells it, holding `held`:
    /// each held record is folded in as if read here, every other record by what its entry keeps
    /// (time, hash, final UUID), in `seq` order. The same journal gives the same run on every
    /// replica. A held record whose bytes no longer decode is left out (counted by the caller's
    /// decode metrics when it was read; it cannot be here unless the journal was edited). An entry
    /// this process wrote carries its record's decode (`JournalEntry::decoded`), used instead of
    /// decoding the bytes again.
    pub fn replay(j: &Journal, end: &Record, held: Vec<HeldId>, now: Instant) -> OpenRun {
        let mut run = OpenRun::new(end, now, 0);
        for e in j.values() {
            let hash = e.step_hash();
            let fresh;
            let r = match (&e.decoded.0, e.record.as_deref()) {
                (Some(r), _) => r.as_ref(),
                (None, Some(t)) => match crate::event::decode(t.as_bytes()) {
                    Ok(r) => {
                        fresh = r;
                        &fresh
                    }
                    Err(_) => continue,
                },
                (None, None) => {
                    run.absorb_entry(e, hash);
                    continue;
                }
            };
            run.absorb(r, e.chain.as_deref(), hash.as_ref());
            run.note_unknown(r, e.unknown.as_deref());
            run.hold(r);
        }
        run.held = held;
        run
    }

    /// Folds in a non-held record of the run from its journal entry.
    fn absorb_entry(&mut self, e: &JournalEntry, hash: Option<StepHash>) {
        self.last_ns = self.last_ns.max(e.ts_ns);
        self.start_ns = self.start_ns.min(e.ts_ns).min(e.run_start_ns.unwrap_or(u64::MAX));
        if let Some(f) = &e.final_uuid {
            self.final_uuid = Some(f.as_str()).filter(|f| *f != self.vcon_uuid).map(Box::from);
        }
        if let Some(h) = &hash {
            self.last_hash = Some(Digest::of(h));
        }
    }

    /// The held entries, to acknowledge (without payload: see [`Entry`]).
    pub fn held_entries(&self) -> Vec<Entry> {
        self.held.iter().map(HeldId::entry).collect()
    }

    /// Adds the span events of the opening to `s` (the root).
    pub(super) fn add_span_events(&self, s: &mut crate::otlp::wire::WireSpan) {
        let mut scratch = crate::otlp::wire::EventAttrs::default();
        self.events.iter().for_each(|e| spans::add_run_event(s, e, &self.vcon_uuid, &mut scratch));
    }
}

/// The open runs, by key and by last activity.
#[derive(Default)]
pub struct Runs {
    by_key: IdMap<RunKey, Box<OpenRun>>,
    by_activity: BTreeSet<(Instant, u64, RunKey)>,
    ticks: u64,
    shared: Shared,
}

impl Runs {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, k: &RunKey) -> Option<&OpenRun> {
        self.by_key.get(k).map(Box::as_ref)
    }

    pub fn contains(&self, k: &RunKey) -> bool {
        self.by_key.contains_key(k)
    }

    /// The run, marked active at `now`; opened from `r` when it is not open. Takes the run's link
    /// list and producer from `r` when it has none yet (shared with other runs, `Shared`).
    pub fn touch(&mut self, k: RunKey, r: &Record, now: Instant) -> &mut OpenRun {
        self.ticks += 1;
        let tick = self.ticks;
        let run = match self.by_key.entry(k) {
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
                v.insert(Box::new(OpenRun::new(r, now, tick)))
            }
        };
        if run.links.is_none() {
            run.links = r.links.as_deref().map(|l| self.shared.links(l));
        }
        if run.producer.is_none() {
            run.producer = r.producer.as_ref().map(|p| self.shared.producer(p));
        }
        run
    }

    pub fn get_mut(&mut self, k: &RunKey) -> Option<&mut OpenRun> {
        self.by_key.get_mut(k).map(Box::as_mut)
    }

    pub fn remove(&mut self, k: &RunKey) -> Option<OpenRun> {
        let run = self.by_key.remove(k)?;
        self.by_activity.remove(&(run.last_seen, run.tick, *k));
        Some(*run)
    }

    /// Up to `max` keys of runs last active at or before `cutoff`, oldest first.
    pub fn idle_since(&self, cutoff: Instant, max: usize) -> Vec<RunKey> {
        self.by_activity.iter().take_while(|(seen, _, _)| *seen <= cutoff).take(max).map(|(_, _, k)| *k).collect()
    }

    /// Removes and returns the least recently active run.
    pub fn pop_oldest(&mut self) -> Option<OpenRun> {
        let (_, _, k) = self.by_activity.pop_first()?;
        self.by_key.remove(&k).map(|r| *r)
    }

    /// Removes and returns every run last active at or before `cutoff`, oldest first.
    pub fn pop_idle(&mut self, cutoff: Instant) -> Vec<OpenRun> {
        let mut out = Vec::new();
        while let Some(&(seen, _, k)) = self.by_activity.first() {
            if seen > cutoff {
                break;
            }
            self.by_activity.pop_first();
            out.extend(self.by_key.remove(&k).map(|r| *r));
        }
        out
    }

    /// Removes every run.
    pub fn drain(&mut self) -> Vec<OpenRun> {
        self.by_activity.clear();
        self.by_key.drain().map(|(_, r)| *r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opening(run: &str, links: &[&str], host: &str) -> Record {
        let v = json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": "u1", "ts_ns": 10, "links": links, "link_index": -1,
            "tracer": "otel", "in_vcon_uuid": "u1", "out_vcon_uuid": "u1", "producer": {"host": host, "pid": 7}});
        crate::event::decode(v.to_string().as_bytes()).unwrap()
    }

    fn key(run: &str) -> RunKey {
        ids::trace_id("u1", run)
    }

    #[test]
    fn a_held_entry_keeps_its_id_and_not_its_record() {
        let mut runs = Runs::default();
        let run = runs.touch(key("r1"), &opening("r1", &["a"], "h"), Instant::now());
        run.hold_entry(Entry { id: "1700000000000-12".into(), payload: Some(bytes::Bytes::from_static(b"{\"v\":1}")) });
        run.hold_entry(Entry { id: "e1".into(), payload: Some(bytes::Bytes::from_static(b"{\"v\":1}")) });
        assert_eq!(run.held, [HeldId::Stream { ms: 1_700_000_000_000, seq: 12 }, HeldId::Other("e1".into())]);
        assert_eq!(run.held.capacity(), 2, "grown exactly");
        assert_eq!(run.held_entries(), [Entry { id: "1700000000000-12".into(), payload: None }, Entry { id: "e1".into(), payload: None }]);
    }

    #[test]
    fn a_held_id_prints_back_exactly_as_it_came() {
        for id in ["0-0", "1-0", "18446744073709551615-18446744073709551615", "01-0", "1-01", "1-", "-1", "1-+2", "1-2-3", "demo-7", "e0", ""] {
            assert_eq!(HeldId::of(id).entry().id, id);
        }
        assert!(matches!(HeldId::of("01-0"), HeldId::Other(_)));
        assert_eq!(HeldId::of("5-6"), HeldId::Stream { ms: 5, seq: 6 });
    }

    #[test]
    fn runs_with_the_same_links_and_producer_share_one_copy() {
        let mut runs = Runs::default();
        let now = Instant::now();
        runs.touch(key("r1"), &opening("r1", &["a", "b"], "h"), now);
        runs.touch(key("r2"), &opening("r2", &["a", "b"], "h"), now);
        runs.touch(key("r3"), &opening("r3", &["a", "c"], "h2"), now);
        let (r1, r2, r3) = (runs.get(&key("r1")).unwrap(), runs.get(&key("r2")).unwrap(), runs.get(&key("r3")).unwrap());
        assert!(Arc::ptr_eq(r1.links.as_ref().unwrap(), r2.links.as_ref().unwrap()));
        assert!(Arc::ptr_eq(r1.producer.as_ref().unwrap(), r2.producer.as_ref().unwrap()));
        assert_eq!(r3.links.as_deref(), Some(&["a".to_string(), "c".to_string()][..]));
        assert_eq!(r3.producer.as_ref().unwrap().host, "h2");
    }

    #[test]
    fn the_shared_table_is_emptied_at_its_bound_and_runs_keep_their_values() {
        let mut runs = Runs::default();
        let now = Instant::now();
        for i in 0..=MAX_SHARED {
            let name = format!("l{i}");
            runs.touch(key(&format!("r{i}")), &opening(&format!("r{i}"), &[&name], "h"), now);
        }
        assert_eq!(runs.shared.links.len(), 1, "emptied at MAX_SHARED, then the new list");
        for i in [0, MAX_SHARED] {
            assert_eq!(runs.get(&key(&format!("r{i}"))).unwrap().links.as_deref(), Some(&[format!("l{i}")][..]));
        }
    }

    #[test]
    fn a_digest_writes_back_the_hex_it_was_given() {
        let h = |s: &str| StepHash { sha256_hex: s.into(), sha512_token: None, counts: None };
        let hex = "0123456789abcdef".repeat(4);
        assert!(matches!(Digest::of(&h(&hex)), Digest::Bytes(_)));
        assert_eq!(Digest::of(&h(&hex)).hex(), hex);
        assert_eq!(Digest::of(&h("ABCD")).hex(), "ABCD", "other text is kept as it came");
    }
}
