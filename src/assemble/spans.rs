//! Span building, in one place: the link, storage and root spans of a run, and the outcome span of
//! a hosted tracer's invocation. Every span's IDs come from `ids` (deterministic), every duration
//! is also observed on its metric (with the trace ID as exemplar), and no span carries vCon content
//! or party details — only identities, names, times, outcomes and hashes.

use super::run::OpenRun;
use super::{FinishedSpan, RunOutcome};
use crate::compliance::StepHash;
use crate::event::{EventKind, Record, RunRef, TraceParent};
use crate::ids::{self, SpanRole};
use crate::metrics::Metrics;
use crate::otlp::wire::{EventAttrs, LinkAttrs, SpanAttrs, WireSpan};
use crate::otlp::{span, status};
use crate::stream::done::RunDone;
use std::sync::Arc;

/// What is known of a step's compliance hash.
#[derive(Clone, Copy, Default)]
pub struct Hashed<'a> {
    pub hash: Option<&'a StepHash>,
    /// Why there is none although the step has compliance.
    pub unknown: Option<&'a str>,
}

/// The span of a link, from the record that completed it.
pub fn link(r: &Record, run: Option<&OpenRun>, chain: Option<&str>, hash: Hashed<'_>, m: &Metrics) -> FinishedSpan {
    let index = r.link_index.unwrap_or(0);
    let name = r.link_name().unwrap_or("unknown");
    let start = step_start(r, || run.and_then(|x| x.link_starts.get(&index)));
    let mut attrs = common_attrs(r.out_vcon_uuid.as_deref().unwrap_or(&r.vcon_uuid), &r.run, chain);
    attrs.str("vcon.link.name", name).int("vcon.link.index", index);
    if let Some(module) = &r.module {
        attrs.str("vcon.link.module", module);
    }
    if let (Some(i), Some(o)) = (&r.in_vcon_uuid, &r.out_vcon_uuid) {
        if i != o {
            attrs.str("vcon.uuid.before", o).str("vcon.uuid.after", i);
        }
    }
    let outcome = if r.event == EventKind::LinkError {
        "error"
    } else if r.halted {
        "halted"
    } else {
        "ok"
    };
    attrs.str("vcon.link.outcome", outcome);
    let step = Step { role: SpanRole::Link(index), title: format!("link {name}"), kind: span::SpanKind::Internal };
    let (trace_id, mut s) = step_span(r, run, step, start, attrs, hash);
    if r.event == EventKind::TracerCall {
        add_run_event(&mut s, &RunEvent::of(r), &r.vcon_uuid, &mut EventAttrs::default());
    }
    apply_error(&mut s, r);
    add_traceparent_link(&mut s, r.traceparent.as_ref());
    m.observe_link(chain.unwrap_or("unknown"), name, outcome, secs(start.0, r.ts_ns), &trace_id);
    step_finished(s, r, run)
}

/// The span of a storage, from the record that completed it.
pub fn storage(r: &Record, run: Option<&OpenRun>, chain: Option<&str>, hash: Hashed<'_>, m: &Metrics) -> FinishedSpan {
    let name = r.storage.as_deref().unwrap_or_default();
    let start = step_start(r, || run.and_then(|x| x.storage_starts.get(name)));
    let mut attrs = common_attrs(r.out_vcon_uuid.as_deref().unwrap_or(&r.vcon_uuid), &r.run, chain);
    attrs.str("vcon.storage.name", name);
    if let Some(module) = &r.module {
        attrs.str("vcon.storage.module", module);
    }
    let step = Step { role: SpanRole::Storage(name), title: format!("storage {name}"), kind: span::SpanKind::Client };
    let (trace_id, mut s) = step_span(r, run, step, start, attrs, hash);
    apply_error(&mut s, r);
    add_traceparent_link(&mut s, r.traceparent.as_ref());
    let outcome = if r.event == EventKind::StorageError { "error" } else { "ok" };
    m.observe_storage(chain.unwrap_or("unknown"), name, outcome, secs(start.0, r.ts_ns), &trace_id);
    step_finished(s, r, run)
}

/// When a step began: the record's own `start_ns`, else the start its run remembered (never after
/// the record's time), with `true`; unknown: the record's time, with `false`.
fn step_start(r: &Record, remembered: impl FnOnce() -> Option<u64>) -> (u64, bool) {
    match r.start_ns.or_else(remembered) {
        Some(s) => (s.min(r.ts_ns), true),
        None => (r.ts_ns, false),
    }
}

/// A link or storage span, a child of the run's root (its ID from the open run, when there is
/// one), from `start` to the record's time, with its attributes completed by the unknown-start
/// marker and the step's hash; and its trace ID.
fn step_span(r: &Record, run: Option<&OpenRun>, step: Step<'_>, (start, start_known): (u64, bool), mut attrs: SpanAttrs, hash: Hashed<'_>) -> ([u8; 16], WireSpan) {
    let Step { role, title, kind } = step;
    if !start_known {
        attrs.bool("vcon_otel.start_unknown", true);
    }
    add_hash_attrs(&mut attrs, hash, r.hash_of_input);
    let trace_id = r.trace_id;
    let root = run.map_or_else(|| ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Root), |o| o.root_span_id);
    let mut s = new_span(trace_id, ids::span_id(&r.vcon_uuid, &r.run, role), Some(root), title, kind, start, r.ts_ns);
    s.attributes = attrs;
    (trace_id, s)
}

/// Which step span: its role (for its ID), name and kind.
struct Step<'a> {
    role: SpanRole<'a>,
    title: String,
    kind: span::SpanKind,
}

/// A step's span as finished: its producer is the record's, else the one its run opened with.
fn step_finished(span: WireSpan, r: &Record, run: Option<&OpenRun>) -> FinishedSpan {
    let producer = r.producer.clone().or_else(|| run.and_then(|x| x.producer.as_deref().cloned()));
    FinishedSpan { span, producer, acks: vec![], root_of: None, terminal: None }
}

/// The record that ended a run, with its chain name.
pub struct End<'a> {
    pub record: &'a Record,
    pub chain: Option<&'a str>,
}

/// The root span from what the run gathered and/or the record that ended it. The run's held
/// entries are acknowledged with it.
pub fn root(run: Option<OpenRun>, end: Option<End<'_>>, outcome: RunOutcome, m: &Metrics) -> FinishedSpan {
    let end_r = end.as_ref().map(|e| e.record);
    // The trace ID is the ending record's (computed at decode) when there is one: the run was
    // found by it, so it is the run's too.
    let (vcon_uuid, run_id, trace_id) = match (&run, end_r) {
        (Some(o), r) => (o.vcon_uuid.clone(), o.run.clone(), r.map_or_else(|| o.trace_id(), |r| r.trace_id)),
        (None, Some(r)) => (r.vcon_uuid.clone(), r.run.clone(), r.trace_id),
        (None, None) => unreachable!("a root needs a run or an ending record"),
    };
    let links = end_r.and_then(|r| r.links.as_deref()).or_else(|| run.as_ref().and_then(|o| o.links.as_deref()));
    let chain = end.as_ref().and_then(|e| e.chain).map(str::to_string).or_else(|| run.as_ref().and_then(|o| o.chain.clone()));
    let start = run
        .as_ref()
        .map(|o| o.start_ns)
        .or_else(|| end_r.and_then(|r| r.run_start_ns.or(r.start_ns)))
        .unwrap_or_else(|| end_r.map(|r| r.ts_ns).unwrap_or(0));
    let end_ns = match end_r {
        Some(r) => r.ts_ns,
        None => run.as_ref().map(|o| o.last_ns).unwrap_or(start),
    }
    .max(start);
    let name = match &chain {
        Some(c) => format!("chain {c}"),
        None => "chain unknown".to_string(),
    };
    let root_id = run.as_ref().map_or_else(|| ids::span_id(&vcon_uuid, &run_id, SpanRole::Root), |o| o.root_span_id);
    let mut s = new_span(trace_id, root_id, None, name, span::SpanKind::Consumer, start, end_ns);
    let mut attrs = common_attrs(&vcon_uuid, &run_id, chain.as_deref());
    attrs.str("vcon.run.outcome", outcome.as_str());
    if let Some(l) = links {
        attrs.str("vcon.chain.links", &l.join(",")).int("vcon.chain.link_count", l.len() as i64);
    }
    run_attrs(&mut attrs, &vcon_uuid, run.as_ref(), end_r);
    s.attributes = attrs;
    let mut acks = Vec::new();
    let mut producer = end_r.and_then(|r| r.producer.clone());
    if let Some(o) = run {
        o.add_span_events(&mut s);
        add_traceparent_link(&mut s, o.traceparent());
        add_prev_run_link(&mut s, o.prev_run());
        s.dropped_events_count = o.dropped_events;
        acks = o.held_entries();
        producer = producer.or_else(|| o.producer.map(Arc::unwrap_or_clone));
    }
    if let Some(r) = end_r {
        if r.event == EventKind::ChainError {
            apply_error(&mut s, r);
        }
        if !s.has_links() {
            add_traceparent_link(&mut s, r.traceparent.as_ref());
            add_prev_run_link(&mut s, r.prev_run.as_ref());
        }
    }
    if outcome == RunOutcome::Incomplete {
        let mut a = EventAttrs::default();
        a.str("reason", "no ending record before runs.idle_timeout");
        s.event(end_ns, "vcon_otel.run.incomplete", &a);
    }
    m.observe_chain(chain.as_deref().unwrap_or("unknown"), outcome.as_str(), secs(start, end_ns), &trace_id);
    FinishedSpan { span: s, producer, acks, root_of: Some(RunDone { trace_id, end_ns }), terminal: None }
}

/// The root's attributes from the run as a whole: final UUID, ingress list, entering/final hashes
/// (the hash-chain value is added by the assembler, from the run's journal).
fn run_attrs(attrs: &mut SpanAttrs, vcon_uuid: &str, run: Option<&OpenRun>, end: Option<&Record>) {
    let final_uuid = end
        .and_then(|r| if r.event == EventKind::TracerCall { r.in_vcon_uuid.clone() } else { r.out_vcon_uuid.clone() })
        .or_else(|| run.and_then(|o| o.final_uuid.as_deref().map(str::to_string)));
    if let Some(f) = final_uuid.filter(|f| f != vcon_uuid) {
        attrs.str("vcon.uuid.final", &f);
    }
    if let Some(i) = end.and_then(|r| r.ingress_list.as_deref()).or_else(|| run.and_then(|o| o.ingress_list.as_deref())) {
        attrs.str("vcon.ingress_list", i);
    }
    if let Some(h) = run.and_then(|o| o.entering_hash.as_ref()) {
        attrs.str("vcon.hash.entering", &h.hex());
    } else if let Some(why) = run.and_then(|o| o.entering_unknown()) {
        attrs.str("vcon.hash.entering_unknown", why);
    }
    if let Some(h) = run.and_then(|o| o.last_hash.as_ref()) {
        attrs.str("vcon.hash.final", &h.hex());
    }
}

/// What a hosted tracer's invocation for one record gave.
pub struct TracerOutcome<'a> {
    pub tracer: &'a str,
    pub module: &'a str,
    /// `ok`, `error`, `timeout`.
    pub outcome: &'static str,
    pub attempts: u32,
    /// Module attributes on success (e.g. the JLINC event id), the error text on failure.
    pub attributes: &'a [(String, String)],
    pub error: Option<&'a str>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The `tracer {NAME}` span of one invocation, a child of the span of the step it belongs to.
pub fn tracer_outcome(r: &Record, t: &TracerOutcome<'_>) -> FinishedSpan {
    let parent = match r.event {
        EventKind::TracerCall if r.link_index.unwrap_or(-1) >= 0 => SpanRole::Link(r.link_index.unwrap_or(0)),
        EventKind::LinkComplete | EventKind::LinkError => SpanRole::Link(r.link_index.unwrap_or(0)),
        EventKind::StorageComplete | EventKind::StorageError => SpanRole::Storage(r.storage.as_deref().unwrap_or("")),
        _ => SpanRole::Root,
    };
    let seq = r.seq.unwrap_or(r.ts_ns);
    let end = t.end_ns.max(t.start_ns);
    let mut attrs = common_attrs(&r.vcon_uuid, &r.run, None);
    attrs.str("vcon.tracer.name", t.tracer);
    attrs.str("vcon.tracer.module", t.module).str("vcon.tracer.outcome", t.outcome).int("vcon.tracer.attempts", t.attempts as i64);
    let mut event_attrs = EventAttrs::default();
    event_attrs.str("outcome", t.outcome);
    for (k, v) in t.attributes {
        attrs.str(k, v);
        event_attrs.str(k, v);
    }
    let mut st = None;
    if let Some(e) = t.error {
        st = Some((status::StatusCode::Error, e.to_string()));
        event_attrs.str("error", e);
    }
    let trace_id = r.trace_id;
    let mut s = new_span(
        trace_id,
        ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Tracer(t.tracer, seq)),
        Some(ids::span_id(&r.vcon_uuid, &r.run, parent)),
        format!("tracer {}", t.tracer),
        span::SpanKind::Client,
        t.start_ns,
        end,
    );
    s.attributes = attrs;
    s.event(end, "tracer.outcome", &event_attrs);
    s.status = st;
    FinishedSpan { span: s, producer: r.producer.clone(), acks: vec![], root_of: None, terminal: None }
}

/// The span event of a record that opens a run (a pre-chain tracer call, a `chain_start`), kept by
/// its run until the root is built.
pub fn start_event(r: &Record) -> RunEvent {
    RunEvent::of(r)
}

/// What a record's span event is built from ([`run_event`]): the event of a tracer call
/// (`tracer.pre_chain`, `tracer.call`), or the event named after the record's kind with its
/// ingress list. Kept by open runs, so kept small: numbers without `Option` wrappers,
/// and a tracer call's UUIDs not copied when they are the run's vCon UUID (the usual case; any
/// other goes in `swapped`).
#[derive(Debug)]
pub struct RunEvent {
    ts_ns: u64,
    /// The record's `call_ns` and `link_index`, when `has_call_ns` / `has_link_index`.
    call_ns: u64,
    link_index: i64,
    /// The tracer name, or (for other kinds) the ingress list.
    text: Option<Box<str>>,
    /// `in_vcon_uuid`, `out_vcon_uuid` when present and not the record's `vcon_uuid`.
    swapped: Option<Box<[Option<String>; 2]>>,
    kind: EventKind,
    has_call_ns: bool,
    has_link_index: bool,
    /// `in_vcon_uuid` / `out_vcon_uuid` is the record's `vcon_uuid`.
    in_is_run: bool,
    out_is_run: bool,
}

impl RunEvent {
    pub fn of(r: &Record) -> RunEvent {
        let tracer = r.event == EventKind::TracerCall;
        let is_run = |u: &Option<String>| tracer && u.as_deref() == Some(r.vcon_uuid.as_str());
        let other = |u: &Option<String>| u.clone().filter(|u| tracer && *u != r.vcon_uuid);
        let swapped = [other(&r.in_vcon_uuid), other(&r.out_vcon_uuid)];
        RunEvent {
            ts_ns: r.ts_ns,
            call_ns: r.call_ns.unwrap_or(0),
            link_index: r.link_index.unwrap_or(0),
            text: if tracer { r.tracer.as_deref() } else { r.ingress_list.as_deref() }.map(Box::from),
            swapped: if swapped.iter().any(Option::is_some) { Some(Box::new(swapped)) } else { None },
            kind: r.event,
            has_call_ns: r.call_ns.is_some(),
            has_link_index: r.link_index.is_some(),
            in_is_run: is_run(&r.in_vcon_uuid),
            out_is_run: is_run(&r.out_vcon_uuid),
        }
    }

    fn uuid<'a>(&'a self, is_run: bool, which: usize, vcon_uuid: &'a str) -> Option<&'a str> {
        if is_run {
            return Some(vcon_uuid);
        }
        self.swapped.as_ref()?[which].as_deref()
    }
}

/// Adds the span event of `e`, a record of the run of vCon `vcon_uuid`, to `s`; `attrs` is a
/// scratch buffer (cleared here), kept by a caller that adds many.
pub fn add_run_event(s: &mut WireSpan, e: &RunEvent, vcon_uuid: &str, attrs: &mut EventAttrs) {
    attrs.clear();
    if e.kind != EventKind::TracerCall {
        if let Some(i) = &e.text {
            attrs.str("vcon.ingress_list", i);
        }
        return s.event(e.ts_ns, e.kind.as_str(), attrs);
    }
    let link_index = Some(e.link_index).filter(|_| e.has_link_index);
    attrs.str("vcon.tracer.name", e.text.as_deref().unwrap_or_default()).int("vcon.link.index", link_index.unwrap_or(-1));
    if let Some(i) = e.uuid(e.in_is_run, 0, vcon_uuid) {
        attrs.str("vcon.tracer.in_vcon_uuid", i);
    }
    if let Some(o) = e.uuid(e.out_is_run, 1, vcon_uuid) {
        attrs.str("vcon.tracer.out_vcon_uuid", o);
    }
    if e.has_call_ns {
        attrs.int("vcon.tracer.call_ns", e.call_ns as i64);
    }
    let name = if link_index == Some(-1) { "tracer.pre_chain" } else { "tracer.call" };
    s.event(e.ts_ns, name, attrs)
}

fn secs(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e9
}

fn new_span(trace_id: [u8; 16], span_id: [u8; 8], parent: Option<[u8; 8]>, name: String, kind: span::SpanKind, start: u64, end: u64) -> WireSpan {
    let mut s = WireSpan::new(trace_id, span_id, parent, name, kind);
    // The W3C sampled flag; bit 8 says whether the parent is remote (it is not).
    s.flags = 0x100 | 0x01;
    (s.start_time_unix_nano, s.end_time_unix_nano) = (start, end.max(start));
    s
}

/// Room for a span's usual attributes (about 10, mostly UUIDs and hashes), so they rarely grow.
const ATTRS_BYTES: usize = 512;

/// The attributes every span starts with: the vCon, the run and (when known) the chain.
fn common_attrs(vcon_uuid: &str, run: &str, chain: Option<&str>) -> SpanAttrs {
    let mut a = SpanAttrs::with_capacity(ATTRS_BYTES);
    a.str("vcon.uuid", vcon_uuid).str("vcon.run.id", run);
    if let Some(c) = chain {
        a.str("vcon.chain.name", c);
    }
    a
}

fn add_hash_attrs(attrs: &mut SpanAttrs, hashed: Hashed<'_>, of_input: bool) {
    let Some(h) = hashed.hash else {
        if let Some(why) = hashed.unknown {
            attrs.str("vcon.hash.unknown", why);
        }
        return;
    };
    attrs.str("vcon.hash.sha256", &h.sha256_hex);
    if of_input {
        attrs.str("vcon.hash.subject", "input");
    }
    if let Some(t) = &h.sha512_token {
        attrs.str("vcon.hash.sha512", t);
    }
    if let Some([p, d, an, at]) = h.counts {
        attrs.int("vcon.parties.count", p as i64).int("vcon.dialogs.count", d as i64);
        attrs.int("vcon.analyses.count", an as i64).int("vcon.attachments.count", at as i64);
    }
}

fn apply_error(s: &mut WireSpan, r: &Record) {
    let Some(e) = &r.error else { return };
    s.status = Some((status::StatusCode::Error, e.message.clone()));
    s.attributes.str("error.type", &e.error_type);
    let mut a = EventAttrs::default();
    a.str("exception.type", &e.error_type).str("exception.message", &e.message);
    s.event(r.ts_ns, "exception", &a);
}

fn add_traceparent_link(s: &mut WireSpan, tp: Option<&TraceParent>) {
    let Some(tp) = tp else { return };
    let mut a = LinkAttrs::default();
    a.str("vcon_otel.link.type", "conserver_span");
    s.link(&tp.trace_id, &tp.span_id, tp.flags as u32 | 0x100 | 0x200, &a);
}

fn add_prev_run_link(s: &mut WireSpan, prev: Option<&RunRef>) {
    let Some(p) = prev else { return };
    let mut a = LinkAttrs::default();
    a.str("vcon_otel.link.type", "previous_run").str("vcon.run.id", &p.run);
    s.link(&ids::trace_id(&p.vcon_uuid, &p.run), &ids::span_id(&p.vcon_uuid, &p.run, SpanRole::Root), 0x100 | 0x01, &a);
}
