//! Records -> spans. Pure: no I/O; the caller passes the clock.
//!
//! Each record that completes a step (a link, a storage, the run) becomes one span at once, built
//! from the record alone (records carry their own bounds, `docs/events.md`). The only state is the
//! set of **open runs**: what the opening records said (chain, start, pre-chain span events, upstream
//! context) and the stream entries that opened them, which stay unacknowledged until the run's root
//! span is accepted. A run ends with its ending record, or with [`Assembler::expire`] after
//! `idle_timeout`, or by eviction when `max_open` runs are open (the oldest is closed `incomplete`).
//!
//! Acknowledgement rule: every entry handed to [`Assembler::accept`] comes back exactly once, either
//! in the `acks` of the last span it produced, or held by its run until the run's root span (or an
//! [`Output::Ack`]) carries it. The exporter sends outputs in order, so acking an entry after its
//! last span was accepted means every span it produced was accepted.

use crate::compliance::audit_log::AuditRecord;
use crate::compliance::chain;
use crate::event::{ChainOutcome, Compliance, EventKind, Producer, Record, RunRef, TraceParent};
use crate::ids::{self, SpanRole};
use crate::metrics::{self, ChainLabels, LinkLabels, Metrics, StorageLabels};
use crate::otlp::{kv_bool, kv_int, kv_str, span, status, KeyValue, Span, Status};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opaque identity of an input entry (a Redis stream ID, or a sequence number in the demo).
pub type EntryId = String;

/// Most span events kept on one open run (pre-chain calls, starts); the rest are counted as dropped.
pub const MAX_RUN_EVENTS: usize = 64;

/// Settings of the assembler (`runs:` and `conserver:` in the config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Close a run as `incomplete` after this long without a record.
    pub idle_timeout: Duration,
    /// Most open runs; when full, the least recently active one is closed as `incomplete`.
    pub max_open: usize,
    /// Chain names by their link list, from the conserver's `config.yml` (tracer calls carry links only).
    pub chains_by_links: HashMap<Vec<String>, String>,
    /// Link modules by link name, from the conserver's `config.yml`.
    pub link_modules: HashMap<String, String>,
    /// Emit [`Output::Audit`] records with this retention policy (the `audit_log` tracer is configured).
    pub audit_retention: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_timeout: Duration::from_secs(300),
            max_open: 100_000,
            chains_by_links: HashMap::new(),
            link_modules: HashMap::new(),
            audit_retention: None,
        }
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
    pub acks: Vec<EntryId>,
    /// Set on root spans: once accepted, mark the run done so other replicas do not close it again.
    pub root_of: Option<[u8; 16]>,
}

/// What the assembler hands to the exporter, in order.
#[derive(Debug, Clone)]
pub enum Output {
    Span(FinishedSpan),
    /// Entries to acknowledge without a span (a run closed elsewhere).
    Ack(Vec<EntryId>),
    /// A compliance record for the audit log, written (and fsynced) before the batch is acknowledged.
    Audit(AuditRecord),
}

/// A record plus what the pipeline learnt about it before assembly.
#[derive(Debug, Clone)]
pub struct Enriched {
    pub record: Record,
    /// `Vcon.hash` of the step's vCon state and the privacy-safe counts, when known.
    pub hash: Option<StepHash>,
}

/// The compliance hash of the vCon state at a step (`docs/compliance.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepHash {
    pub sha256_hex: String,
    pub sha512_token: Option<String>,
    pub counts: Option<[u64; 4]>,
}

/// A run that has opened and not ended.
#[derive(Debug)]
pub struct OpenRun {
    pub vcon_uuid: String,
    pub run: String,
    chain: Option<String>,
    links: Option<Vec<String>>,
    start_ns: u64,
    last_ns: u64,
    last_seen: Instant,
    producer: Option<Producer>,
    traceparent: Option<TraceParent>,
    prev_run: Option<RunRef>,
    ingress_list: Option<String>,
    final_uuid: Option<String>,
    entering_hash: Option<StepHash>,
    last_hash: Option<StepHash>,
    events: Vec<span::Event>,
    dropped_events: u32,
    link_starts: HashMap<i64, u64>,
    storage_starts: HashMap<String, u64>,
    /// Hash-chain value after the last step (genesis before the first).
    hash_chain: [u8; 32],
    /// The chain cannot be continued: a record is missing (sequence gap) or the run's opening was
    /// not seen by this process.
    chain_broken: bool,
    next_seq: Option<u64>,
    /// Entries that opened or fed the run and produced no span of their own.
    pub held: Vec<EntryId>,
}

impl OpenRun {
    pub fn trace_id(&self) -> [u8; 16] {
        ids::trace_id(&self.vcon_uuid, &self.run)
    }
}

/// The assembler. One per pipeline; not shared between tasks.
pub struct Assembler {
    settings: Settings,
    metrics: Arc<Metrics>,
    runs: HashMap<(String, String), OpenRun>,
}

impl Assembler {
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Self {
        Assembler { settings, metrics, runs: HashMap::new() }
    }

    pub fn open_runs(&self) -> usize {
        self.runs.len()
    }

    /// Takes one decoded record read from `entry`; returns the spans it completes.
    pub fn accept(&mut self, input: Enriched, entry: EntryId, now: Instant) -> Vec<Output> {
        let Enriched { record: r, hash } = input;
        let mut out = Vec::new();
        if let Some(ns) = r.call_ns {
            let tracer = r.tracer.as_deref().unwrap_or("hooks");
            self.metrics.tracer_call(tracer, "conserver", "ok", ns as f64 / 1e9);
        }
        let key = (r.vcon_uuid.clone(), r.run.clone());
        let opens = matches!(r.event, EventKind::ChainStart | EventKind::LinkStart | EventKind::StorageStart)
            || (r.event == EventKind::TracerCall && r.link_index == Some(-1));
        if !self.runs.contains_key(&key) && !r.ends_run() {
            if let Some(evicted) = self.make_room() {
                out.push(evicted);
            }
            self.runs.insert(key.clone(), OpenRun::new(&r, now));
            self.metrics.open_runs.set(self.runs.len() as i64);
        }
        if let Some(run) = self.runs.get_mut(&key) {
            run.absorb(&r, hash.as_ref(), now);
        }
        if let (Some(run), Some(seq)) = (self.runs.get_mut(&key), r.seq) {
            if run.next_seq.is_some_and(|expected| expected != seq) && !run.chain_broken {
                tracing::warn!(run = %r.run, seq, "a record of this run is missing here; its hash chain stops");
                run.chain_broken = true;
            }
            run.next_seq = Some(seq + 1);
        }
        let chain_value = match &hash {
            Some(h) => self.chain_step(&key, &r, h, &mut out),
            None => None,
        };

        let mut entry = Some(entry);
        if opens {
            let run = self.runs.get_mut(&key).expect("opened above");
            match r.event {
                EventKind::LinkStart => {
                    run.link_starts.insert(r.link_index.unwrap_or(0), r.ts_ns);
                }
                EventKind::StorageStart => {
                    run.storage_starts.insert(r.storage.clone().unwrap_or_default(), r.ts_ns);
                }
                _ => run.push_event(start_event(&r)),
            }
            run.held.push(entry.take().expect("entry"));
            return out;
        }

        match r.event {
            EventKind::TracerCall | EventKind::LinkComplete | EventKind::LinkError => {
                let mut s = self.link_span(&r, hash.as_ref());
                if let Some(c) = &chain_value {
                    s.span.attributes.push(kv_str("vcon.hash.chain", c.clone()));
                }
                out.push(Output::Span(s));
            }
            EventKind::StorageComplete | EventKind::StorageError => {
                let mut s = self.storage_span(&r, hash.as_ref());
                if let Some(c) = &chain_value {
                    s.span.attributes.push(kv_str("vcon.hash.chain", c.clone()));
                }
                out.push(Output::Span(s));
            }
            _ => {}
        }
        if r.ends_run() {
            let run = self.runs.remove(&key);
            self.metrics.open_runs.set(self.runs.len() as i64);
            let outcome = match (r.event, r.outcome) {
                (EventKind::ChainError, _) => RunOutcome::Failed,
                (_, Some(ChainOutcome::Halted)) => RunOutcome::Halted,
                _ => RunOutcome::Complete,
            };
            out.push(Output::Span(self.root_span(run, Some(&r), outcome)));
        }
        // The entry is acknowledged with the last span it produced.
        match out.iter_mut().rev().find_map(|o| match o {
            Output::Span(s) => Some(s),
            Output::Ack(_) | Output::Audit(_) => None,
        }) {
            Some(last) => last.acks.push(entry.take().expect("entry")),
            None => out.push(Output::Ack(vec![entry.take().expect("entry")])),
        }
        out
    }

    /// Advances the run's hash chain by this record's step; pushes the audit record when auditing.
    /// Returns the chain value after the step (hex), or None when the chain cannot be continued.
    fn chain_step(&mut self, key: &(String, String), r: &Record, h: &StepHash, out: &mut Vec<Output>) -> Option<String> {
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
        let value = hex::encode(run.hash_chain);
        if let Some(policy) = &self.settings.audit_retention {
            let current = match r.event {
                EventKind::TracerCall => r.in_vcon_uuid.clone(),
                _ => r.out_vcon_uuid.clone(),
            }
            .unwrap_or_else(|| r.vcon_uuid.clone());
            out.push(Output::Audit(AuditRecord {
                record_id: format!("{}:{}", r.run, r.seq.unwrap_or(0)),
                timestamp: rfc3339(r.ts_ns),
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
            }));
        }
        Some(value)
    }

    /// Removes and returns the runs idle for longer than `idle_timeout`. The caller checks whether
    /// another replica finished them, then calls [`Assembler::close_incomplete`] or acks `held`.
    pub fn expire(&mut self, now: Instant) -> Vec<OpenRun> {
        let timeout = self.settings.idle_timeout;
        let idle: Vec<_> = self
            .runs
            .iter()
            .filter(|(_, r)| now.duration_since(r.last_seen) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let expired: Vec<OpenRun> = idle.into_iter().filter_map(|k| self.runs.remove(&k)).collect();
        self.metrics.open_runs.set(self.runs.len() as i64);
        expired
    }

    /// Removes every open run. Not used on shutdown of `run` (open runs stay pending in Redis and are
    /// rebuilt on restart); the demo, which has no Redis, closes what is left with it.
    pub fn drain_all(&mut self) -> Vec<OpenRun> {
        let all: Vec<OpenRun> = self.runs.drain().map(|(_, r)| r).collect();
        self.metrics.open_runs.set(0);
        all
    }

    /// The root span of a run nobody ended: outcome `incomplete`.
    pub fn close_incomplete(&self, run: OpenRun) -> Output {
        Output::Span(self.root_span(Some(run), None, RunOutcome::Incomplete))
    }

    fn make_room(&mut self) -> Option<Output> {
        if self.runs.len() < self.settings.max_open {
            return None;
        }
        let oldest = self.runs.iter().min_by_key(|(_, r)| r.last_seen).map(|(k, _)| k.clone())?;
        let run = self.runs.remove(&oldest)?;
        tracing::warn!(vcon_uuid = %run.vcon_uuid, run = %run.run, max_open = self.settings.max_open,
            "too many open runs: closing the least recently active one as incomplete (raise runs.max_open)");
        Some(self.close_incomplete(run))
    }

    fn chain_name(&self, chain: Option<&str>, links: Option<&Vec<String>>) -> Option<String> {
        chain.map(str::to_string).or_else(|| links.and_then(|l| self.settings.chains_by_links.get(l).cloned()))
    }

    fn link_span(&self, r: &Record, hash: Option<&StepHash>) -> FinishedSpan {
        let run = self.runs.get(&(r.vcon_uuid.clone(), r.run.clone()));
        let index = r.link_index.unwrap_or(0);
        let name = r.link_name().unwrap_or("unknown").to_string();
        let chain = self.chain_name(r.chain.as_deref().or(run.and_then(|x| x.chain.as_deref())), r.links.as_ref().or(run.and_then(|x| x.links.as_ref())));
        let (start, start_known) = match r.start_ns.or_else(|| run.and_then(|x| x.link_starts.get(&index).copied())) {
            Some(s) => (s.min(r.ts_ns), true),
            None => (r.ts_ns, false),
        };
        let module = r.module.clone().or_else(|| self.settings.link_modules.get(&name).cloned());
        let mut attrs = common_attrs(r, r.out_vcon_uuid.as_deref().unwrap_or(&r.vcon_uuid), chain.as_deref());
        attrs.push(kv_str("vcon.link.name", name.clone()));
        attrs.push(kv_int("vcon.link.index", index));
        if let Some(m) = &module {
            attrs.push(kv_str("vcon.link.module", m.clone()));
        }
        if let (Some(i), Some(o)) = (&r.in_vcon_uuid, &r.out_vcon_uuid) {
            if i != o {
                attrs.push(kv_str("vcon.uuid.before", o.clone()));
                attrs.push(kv_str("vcon.uuid.after", i.clone()));
            }
        }
        let outcome = if r.event == EventKind::LinkError {
            "error"
        } else if r.halted {
            "halted"
        } else {
            "ok"
        };
        attrs.push(kv_str("vcon.link.outcome", outcome));
        if !start_known {
            attrs.push(kv_bool("vcon_otel.start_unknown", true));
        }
        add_hash_attrs(&mut attrs, hash, "vcon.hash");
        let mut events = Vec::new();
        if r.event == EventKind::TracerCall {
            events.push(tracer_event(r));
        }
        let trace_id = ids::trace_id(&r.vcon_uuid, &r.run);
        let mut s = new_span(
            trace_id,
            ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Link(index)),
            Some(ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Root)),
            format!("link {name}"),
            span::SpanKind::Internal,
            start,
            r.ts_ns,
        );
        s.attributes = attrs;
        s.events = events;
        apply_error(&mut s, r);
        add_traceparent_link(&mut s, r.traceparent.as_ref());
        let chain_label = self.metrics.chains.admit(chain.as_deref().unwrap_or("unknown"));
        self.metrics
            .link_duration
            .get_or_create(&LinkLabels { chain: chain_label, link: self.metrics.links.admit(&name), outcome })
            .observe(secs(start, r.ts_ns), metrics::exemplar(&trace_id), None);
        FinishedSpan { span: s, producer: r.producer.clone().or(run.and_then(|x| x.producer.clone())), acks: vec![], root_of: None }
    }

    fn storage_span(&self, r: &Record, hash: Option<&StepHash>) -> FinishedSpan {
        let run = self.runs.get(&(r.vcon_uuid.clone(), r.run.clone()));
        let name = r.storage.clone().unwrap_or_default();
        let chain = self.chain_name(r.chain.as_deref().or(run.and_then(|x| x.chain.as_deref())), r.links.as_ref().or(run.and_then(|x| x.links.as_ref())));
        let (start, start_known) = match r.start_ns.or_else(|| run.and_then(|x| x.storage_starts.get(&name).copied())) {
            Some(s) => (s.min(r.ts_ns), true),
            None => (r.ts_ns, false),
        };
        let mut attrs = common_attrs(r, r.out_vcon_uuid.as_deref().unwrap_or(&r.vcon_uuid), chain.as_deref());
        attrs.push(kv_str("vcon.storage.name", name.clone()));
        if let Some(m) = &r.module {
            attrs.push(kv_str("vcon.storage.module", m.clone()));
        }
        if !start_known {
            attrs.push(kv_bool("vcon_otel.start_unknown", true));
        }
        add_hash_attrs(&mut attrs, hash, "vcon.hash");
        let trace_id = ids::trace_id(&r.vcon_uuid, &r.run);
        let mut s = new_span(
            trace_id,
            ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Storage(&name)),
            Some(ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Root)),
            format!("storage {name}"),
            span::SpanKind::Client,
            start,
            r.ts_ns,
        );
        s.attributes = attrs;
        apply_error(&mut s, r);
        add_traceparent_link(&mut s, r.traceparent.as_ref());
        let outcome = if r.event == EventKind::StorageError { "error" } else { "ok" };
        self.metrics
            .storage_duration
            .get_or_create(&StorageLabels {
                chain: self.metrics.chains.admit(chain.as_deref().unwrap_or("unknown")),
                storage: self.metrics.storages.admit(&name),
                outcome,
            })
            .observe(secs(start, r.ts_ns), metrics::exemplar(&trace_id), None);
        FinishedSpan { span: s, producer: r.producer.clone().or(run.and_then(|x| x.producer.clone())), acks: vec![], root_of: None }
    }

    /// The root span from what the run gathered and/or the record that ended it.
    fn root_span(&self, run: Option<OpenRun>, end: Option<&Record>, outcome: RunOutcome) -> FinishedSpan {
        let (vcon_uuid, run_id) = match (&run, end) {
            (Some(o), _) => (o.vcon_uuid.clone(), o.run.clone()),
            (None, Some(r)) => (r.vcon_uuid.clone(), r.run.clone()),
            (None, None) => unreachable!("a root needs a run or an ending record"),
        };
        let links = end.and_then(|r| r.links.clone()).or_else(|| run.as_ref().and_then(|o| o.links.clone()));
        let chain = self.chain_name(
            end.and_then(|r| r.chain.as_deref()).or(run.as_ref().and_then(|o| o.chain.as_deref())),
            links.as_ref(),
        );
        let start = run
            .as_ref()
            .map(|o| o.start_ns)
            .or_else(|| end.and_then(|r| r.run_start_ns.or(r.start_ns)))
            .unwrap_or_else(|| end.map(|r| r.ts_ns).unwrap_or(0));
        let end_ns = match end {
            Some(r) => r.ts_ns,
            None => run.as_ref().map(|o| o.last_ns).unwrap_or(start),
        }
        .max(start);
        let trace_id = ids::trace_id(&vcon_uuid, &run_id);
        let name = match &chain {
            Some(c) => format!("chain {c}"),
            None => "chain unknown".to_string(),
        };
        let mut s = new_span(
            trace_id,
            ids::span_id(&vcon_uuid, &run_id, SpanRole::Root),
            None,
            name,
            span::SpanKind::Consumer,
            start,
            end_ns,
        );
        let mut attrs = vec![kv_str("vcon.uuid", vcon_uuid.clone()), kv_str("vcon.run.id", run_id.clone())];
        if let Some(c) = &chain {
            attrs.push(kv_str("vcon.chain.name", c.clone()));
        }
        attrs.push(kv_str("vcon.run.outcome", outcome.as_str()));
        if let Some(l) = &links {
            attrs.push(kv_str("vcon.chain.links", l.join(",")));
            attrs.push(kv_int("vcon.chain.link_count", l.len() as i64));
        }
        let final_uuid = end
            .and_then(|r| if r.event == EventKind::TracerCall { r.in_vcon_uuid.clone() } else { r.out_vcon_uuid.clone() })
            .or_else(|| run.as_ref().and_then(|o| o.final_uuid.clone()));
        if let Some(f) = final_uuid.filter(|f| *f != vcon_uuid) {
            attrs.push(kv_str("vcon.uuid.final", f));
        }
        let ingress = end.and_then(|r| r.ingress_list.clone()).or_else(|| run.as_ref().and_then(|o| o.ingress_list.clone()));
        if let Some(i) = ingress {
            attrs.push(kv_str("vcon.ingress_list", i));
        }
        if let Some(h) = run.as_ref().and_then(|o| o.entering_hash.as_ref()) {
            attrs.push(kv_str("vcon.hash.entering", h.sha256_hex.clone()));
        }
        if let Some(h) = run.as_ref().and_then(|o| o.last_hash.as_ref()) {
            attrs.push(kv_str("vcon.hash.final", h.sha256_hex.clone()));
        }
        if let Some(o) = run.as_ref().filter(|o| !o.chain_broken && o.last_hash.is_some()) {
            attrs.push(kv_str("vcon.hash.chain", hex::encode(o.hash_chain)));
        }
        s.attributes = attrs;
        let mut acks = Vec::new();
        let mut producer = end.and_then(|r| r.producer.clone());
        if let Some(o) = run {
            producer = producer.or(o.producer);
            s.events = o.events;
            s.dropped_events_count = o.dropped_events;
            acks = o.held;
            add_traceparent_link(&mut s, o.traceparent.as_ref());
            add_prev_run_link(&mut s, o.prev_run.as_ref());
        }
        if let Some(r) = end {
            if r.event == EventKind::ChainError {
                apply_error(&mut s, r);
            }
            if s.links.is_empty() {
                add_traceparent_link(&mut s, r.traceparent.as_ref());
                add_prev_run_link(&mut s, r.prev_run.as_ref());
            }
        }
        if outcome == RunOutcome::Incomplete {
            s.events.push(span::Event {
                time_unix_nano: end_ns,
                name: "vcon_otel.run.incomplete".into(),
                attributes: vec![kv_str("reason", "no ending record before runs.idle_timeout")],
                dropped_attributes_count: 0,
            });
        }
        let chain_label = self.metrics.chains.admit(chain.as_deref().unwrap_or("unknown"));
        let labels = ChainLabels { chain: chain_label, outcome: outcome.as_str() };
        self.metrics.chain_duration.get_or_create(&labels).observe(secs(start, end_ns), metrics::exemplar(&trace_id), None);
        self.metrics.runs.get_or_create(&labels).inc();
        FinishedSpan { span: s, producer, acks, root_of: Some(trace_id) }
    }
}

impl OpenRun {
    fn new(r: &Record, now: Instant) -> Self {
        OpenRun {
            vcon_uuid: r.vcon_uuid.clone(),
            run: r.run.clone(),
            chain: None,
            links: None,
            start_ns: r.run_start_ns.unwrap_or(r.ts_ns),
            last_ns: r.ts_ns,
            last_seen: now,
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
            hash_chain: chain::genesis(&r.vcon_uuid, &r.run),
            chain_broken: !(r.event == EventKind::ChainStart || r.link_index == Some(-1)),
            next_seq: None,
            held: Vec::new(),
        }
    }

    fn absorb(&mut self, r: &Record, hash: Option<&StepHash>, now: Instant) {
        self.last_seen = now;
        self.last_ns = self.last_ns.max(r.ts_ns);
        if let Some(s) = r.run_start_ns {
            self.start_ns = self.start_ns.min(s);
        }
        self.start_ns = self.start_ns.min(r.ts_ns);
        if self.chain.is_none() {
            self.chain = r.chain.clone();
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
        let opening = matches!(r.event, EventKind::ChainStart) || r.link_index == Some(-1);
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

    fn push_event(&mut self, e: span::Event) {
        if self.events.len() < MAX_RUN_EVENTS {
            self.events.push(e);
        } else {
            self.dropped_events += 1;
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` from Unix nanoseconds (UTC, proleptic Gregorian).
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem / 60 % 60, rem % 60, ns % 1_000_000_000)
}

fn secs(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e9
}

fn new_span(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: span::SpanKind,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        // W3C sampled flag; bit 8 says whether the parent is remote (it is not).
        flags: 0x100 | 0x01,
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        ..Default::default()
    }
}

fn common_attrs(r: &Record, vcon_uuid: &str, chain: Option<&str>) -> Vec<KeyValue> {
    let mut a = vec![kv_str("vcon.uuid", vcon_uuid.to_string()), kv_str("vcon.run.id", r.run.clone())];
    if let Some(c) = chain {
        a.push(kv_str("vcon.chain.name", c.to_string()));
    }
    a
}

fn add_hash_attrs(attrs: &mut Vec<KeyValue>, hash: Option<&StepHash>, prefix: &str) {
    let Some(h) = hash else { return };
    attrs.push(kv_str(&format!("{prefix}.sha256"), h.sha256_hex.clone()));
    if let Some(t) = &h.sha512_token {
        attrs.push(kv_str(&format!("{prefix}.sha512"), t.clone()));
    }
    if let Some([p, d, an, at]) = h.counts {
        attrs.push(kv_int("vcon.parties.count", p as i64));
        attrs.push(kv_int("vcon.dialogs.count", d as i64));
        attrs.push(kv_int("vcon.analyses.count", an as i64));
        attrs.push(kv_int("vcon.attachments.count", at as i64));
    }
}

fn tracer_event(r: &Record) -> span::Event {
    let mut attrs = vec![
        kv_str("vcon.tracer.name", r.tracer.clone().unwrap_or_default()),
        kv_int("vcon.link.index", r.link_index.unwrap_or(-1)),
    ];
    if let Some(i) = &r.in_vcon_uuid {
        attrs.push(kv_str("vcon.tracer.in_vcon_uuid", i.clone()));
    }
    if let Some(o) = &r.out_vcon_uuid {
        attrs.push(kv_str("vcon.tracer.out_vcon_uuid", o.clone()));
    }
    if let Some(ns) = r.call_ns {
        attrs.push(kv_int("vcon.tracer.call_ns", ns as i64));
    }
    let name = if r.link_index == Some(-1) { "tracer.pre_chain" } else { "tracer.call" };
    span::Event { time_unix_nano: r.ts_ns, name: name.into(), attributes: attrs, dropped_attributes_count: 0 }
}

fn start_event(r: &Record) -> span::Event {
    if r.event == EventKind::TracerCall {
        return tracer_event(r);
    }
    let mut attrs = Vec::new();
    if let Some(i) = &r.ingress_list {
        attrs.push(kv_str("vcon.ingress_list", i.clone()));
    }
    span::Event { time_unix_nano: r.ts_ns, name: r.event.as_str().into(), attributes: attrs, dropped_attributes_count: 0 }
}

fn apply_error(s: &mut Span, r: &Record) {
    let Some(e) = &r.error else { return };
    s.status = Some(Status { code: status::StatusCode::Error as i32, message: e.message.clone() });
    s.attributes.push(kv_str("error.type", e.error_type.clone()));
    s.events.push(span::Event {
        time_unix_nano: r.ts_ns,
        name: "exception".into(),
        attributes: vec![kv_str("exception.type", e.error_type.clone()), kv_str("exception.message", e.message.clone())],
        dropped_attributes_count: 0,
    });
}

fn add_traceparent_link(s: &mut Span, tp: Option<&TraceParent>) {
    let Some(tp) = tp else { return };
    s.links.push(span::Link {
        trace_id: tp.trace_id.to_vec(),
        span_id: tp.span_id.to_vec(),
        trace_state: String::new(),
        attributes: vec![kv_str("vcon_otel.link.type", "conserver_span")],
        dropped_attributes_count: 0,
        flags: tp.flags as u32 | 0x100 | 0x200,
    });
}

fn add_prev_run_link(s: &mut Span, prev: Option<&RunRef>) {
    let Some(p) = prev else { return };
    s.links.push(span::Link {
        trace_id: ids::trace_id(&p.vcon_uuid, &p.run).to_vec(),
        span_id: ids::span_id(&p.vcon_uuid, &p.run, SpanRole::Root).to_vec(),
        trace_state: String::new(),
        attributes: vec![kv_str("vcon_otel.link.type", "previous_run"), kv_str("vcon.run.id", p.run.clone())],
        dropped_attributes_count: 0,
        flags: 0x100 | 0x01,
    });
}

/// Convenience for records whose compliance hash the producer sent inline.
pub fn inline_hash(r: &Record) -> Option<StepHash> {
    match &r.compliance {
        Some(Compliance::Sha256(h)) => Some(StepHash { sha256_hex: h.clone(), sha512_token: None, counts: None }),
        _ => None,
    }
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
