//! Named record sequences and the span trees they must give.

use super::*;
use crate::compliance::StepHash;
use crate::event::decode;
use crate::ids::{self, SpanRole};
use crate::otlp::{attr_str, span, status};
use serde_json::{json, Value};

fn asm() -> Assembler {
    Assembler::new(Settings { idle_timeout: Duration::from_secs(10), max_open: 3, ..Default::default() }, Arc::new(Metrics::new(50)))
}

/// The record `v` as read from entry `id`, with the step's hash when given.
fn en(v: Value, id: &str, hash: Option<StepHash>) -> Enriched {
    let bytes = v.to_string();
    let record = decode(bytes.as_bytes()).unwrap();
    Enriched { entry: Entry { id: id.into(), payload: Some(bytes.into()) }, record, hash, unknown: None, chain: None, vcon_json: None, journal: None }
}

fn ids_of(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn call(i: i64, ts: u64, start: u64, inn: &str, out: &str) -> Value {
    json!({"v":1,"event":"tracer_call","run":"r1","vcon_uuid":"u1","ts_ns":ts,"start_ns":start,"run_start_ns":100,
           "links":["a","b","c"],"link_index":i,"tracer":"otel","in_vcon_uuid":inn,"out_vcon_uuid":out,
           "producer":{"host":"h","pid":7}})
}

/// A finished span with its span decoded into `prost`'s message, to look into.
struct Got {
    span: crate::otlp::Span,
    root_of: Option<crate::stream::done::RunDone>,
    terminal: Option<Box<AuditRecord>>,
    acks: Vec<Entry>,
}

fn spans(out: &[Output]) -> Vec<Got> {
    out.iter()
        .filter_map(|o| if let Output::Span(s) = o { Some(Got { span: s.span.to_proto(), root_of: s.root_of, terminal: s.terminal.clone(), acks: s.acks.clone() }) } else { None })
        .collect()
}

/// Feeds records; returns every output and the entry IDs acknowledged by them.
fn feed(a: &mut Assembler, records: Vec<Value>) -> (Vec<Output>, Vec<String>) {
    let now = Instant::now();
    let mut all = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let mut e = en(r, &format!("e{i}"), None);
        e.chain = e.record.chain.clone();
        all.extend(a.accept(e, now));
    }
    let acked = all
        .iter()
        .flat_map(|o| match o {
            Output::Span(s) => ids_of(&s.acks),
            Output::Ack(entries) => ids_of(entries),
            Output::Audit(_) => vec![],
        })
        .collect();
    (all, acked)
}

#[test]
fn three_link_chain_is_one_root_with_three_children_in_order() {
    let mut a = asm();
    let (out, acked) = feed(&mut a, vec![call(-1, 110, 100, "u1", "u1"), call(0, 200, 120, "u1", "u1"), call(1, 300, 210, "u1", "u1"), call(2, 400, 310, "u1", "u1")]);
    let s = spans(&out);
    assert_eq!(s.len(), 4);
    let root = &s[3];
    assert_eq!(root.span.name, "chain unknown");
    assert!(root.span.parent_span_id.is_empty());
    assert_eq!((root.span.start_time_unix_nano, root.span.end_time_unix_nano), (100, 400));
    assert_eq!(attr_str(&root.span.attributes, "vcon.run.outcome"), Some("complete"));
    assert_eq!(root.span.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["tracer.pre_chain"]);
    for (i, child) in s[..3].iter().enumerate() {
        assert_eq!(child.span.name, format!("link {}", ["a", "b", "c"][i]));
        assert_eq!(child.span.parent_span_id, root.span.span_id);
        assert_eq!(child.span.trace_id, root.span.trace_id);
        assert_eq!(child.span.start_time_unix_nano, [120, 210, 310][i]);
        assert_eq!(attr_str(&child.span.attributes, "vcon.uuid"), Some("u1"));
    }
    assert_eq!(root.span.trace_id, ids::trace_id("u1", "r1").to_vec());
    // Every entry comes back exactly once; the opener with the root.
    let mut sorted = acked.clone();
    sorted.sort();
    assert_eq!(sorted, ["e0", "e1", "e2", "e3"]);
    assert!(ids_of(&root.acks).contains(&"e0".to_string()) && ids_of(&root.acks).contains(&"e3".to_string()));
    assert_eq!(a.open_runs(), 0);
}

#[test]
fn uuid_swap_is_recorded_on_the_link_and_the_root() {
    let mut a = asm();
    let (out, _) = feed(&mut a, vec![call(-1, 110, 100, "u1", "u1"), call(0, 200, 120, "u2", "u1"), call(1, 300, 210, "u2", "u2"), call(2, 400, 310, "u2", "u2")]);
    let s = spans(&out);
    assert_eq!(attr_str(&s[0].span.attributes, "vcon.uuid.before"), Some("u1"));
    assert_eq!(attr_str(&s[0].span.attributes, "vcon.uuid.after"), Some("u2"));
    assert_eq!(attr_str(&s[1].span.attributes, "vcon.uuid"), Some("u2"));
    assert_eq!(attr_str(&s[3].span.attributes, "vcon.uuid"), Some("u1"));
    assert_eq!(attr_str(&s[3].span.attributes, "vcon.uuid.final"), Some("u2"));
}

fn hooked(event: &str, extra: Value) -> Value {
    let mut v = json!({"v":1,"event":event,"run":"r1","vcon_uuid":"u1","ts_ns":500,"chain":"main","hooks":true,"run_start_ns":100});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn halt_with_hooks_ends_the_root_as_halted_after_the_halting_link() {
    let mut a = asm();
    let mut c0 = call(0, 200, 120, "u1", "u1");
    c0["hooks"] = json!(true);
    let (out, _) = feed(&mut a, vec![hooked("chain_start", json!({"ts_ns": 100})), c0, hooked("chain_complete", json!({"outcome": "halted"}))]);
    let s = spans(&out);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].span.name, "chain main");
    assert_eq!(attr_str(&s[1].span.attributes, "vcon.run.outcome"), Some("halted"));
    assert!(s[1].span.status.is_none(), "a halt is not an error");
}

#[test]
fn link_error_marks_link_and_root_as_errors_with_exception_events() {
    let mut a = asm();
    let err = json!({"type": "ValueError", "message": "boom"});
    let (out, _) = feed(&mut a, vec![
        hooked("chain_start", json!({"ts_ns": 100})),
        hooked("link_error", json!({"link": "a", "link_index": 0, "start_ns": 120, "ts_ns": 150, "error": err})),
        hooked("chain_error", json!({"ts_ns": 160, "error": err})),
    ]);
    let s = spans(&out);
    for sp in &s {
        assert_eq!(sp.span.status.as_ref().unwrap().code, status::StatusCode::Error as i32);
        assert!(sp.span.events.iter().any(|e| e.name == "exception"));
        assert_eq!(attr_str(&sp.span.attributes, "error.type"), Some("ValueError"));
    }
    assert_eq!(attr_str(&s[1].span.attributes, "vcon.run.outcome"), Some("failed"));
}

#[test]
fn a_run_without_an_end_is_closed_incomplete_after_the_idle_timeout() {
    let mut a = asm();
    let t0 = Instant::now();
    a.accept(en(call(-1, 110, 100, "u1", "u1"), "e0", None), t0);
    let out = a.accept(en(call(0, 200, 120, "u1", "u1"), "e1", None), t0);
    assert_eq!(spans(&out).len(), 1);
    assert!(a.expire(t0 + Duration::from_secs(5)).is_empty());
    let expired = a.expire(t0 + Duration::from_secs(11));
    assert_eq!(expired.len(), 1);
    let Some(Output::Span(root)) = a.close_incomplete(expired.into_iter().next().unwrap(), None).pop() else { panic!() };
    let root = &spans(&[Output::Span(root)])[0];
    assert_eq!(attr_str(&root.span.attributes, "vcon.run.outcome"), Some("incomplete"));
    assert_eq!(ids_of(&root.acks), ["e0"]);
    assert_eq!(root.span.end_time_unix_nano, 200, "ends at the last record seen");
}

#[test]
fn too_many_open_runs_evicts_the_least_recently_active_as_incomplete() {
    let mut a = asm();
    let t0 = Instant::now();
    for (i, run) in ["r1", "r2", "r3", "r4"].iter().enumerate() {
        let mut v = call(-1, 110, 100, "u1", "u1");
        v["run"] = json!(run);
        let out = a.accept(en(v, &format!("e{i}"), None), t0 + Duration::from_millis(i as u64));
        if i == 3 {
            let s = spans(&out);
            assert_eq!(s.len(), 1);
            assert_eq!(attr_str(&s[0].span.attributes, "vcon.run.id"), Some("r1"));
        }
    }
    assert_eq!(a.open_runs(), 3);
}

#[test]
fn the_ending_record_alone_builds_the_root_on_another_replica() {
    let mut a = asm();
    let (out, acked) = feed(&mut a, vec![call(2, 400, 310, "u1", "u1")]);
    let s = spans(&out);
    assert_eq!(s.len(), 2);
    assert_eq!((s[1].span.start_time_unix_nano, s[1].span.end_time_unix_nano), (100, 400));
    assert_eq!(acked, ["e0"]);
    assert_eq!(a.open_runs(), 0);
}

#[test]
fn previous_run_and_conserver_context_become_span_links() {
    let mut a = asm();
    let mut open = hooked("chain_start", json!({"ts_ns": 100, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "prev_run": {"vcon_uuid": "u0", "run": "r0"}}));
    open["links"] = json!(["a"]);
    let (out, _) = feed(&mut a, vec![open, hooked("chain_complete", json!({}))]);
    let root = &spans(&out)[0];
    assert_eq!(root.span.links.len(), 2);
    assert_eq!(root.span.links[0].trace_id, hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
    assert_eq!(root.span.links[1].trace_id, ids::trace_id("u0", "r0").to_vec());
    assert_eq!(root.span.links[1].span_id, ids::span_id("u0", "r0", SpanRole::Root).to_vec());
}

#[test]
fn seed_model_link_start_supplies_the_start_of_link_complete() {
    let mut a = asm();
    let (out, _) = feed(&mut a, vec![
        hooked("chain_start", json!({"ts_ns": 100})),
        hooked("link_start", json!({"link": "a", "link_index": 0, "ts_ns": 130})),
        hooked("link_complete", json!({"link": "a", "link_index": 0, "ts_ns": 170})),
        hooked("storage_start", json!({"storage": "s3", "ts_ns": 180})),
        hooked("storage_complete", json!({"storage": "s3", "ts_ns": 190})),
        hooked("chain_complete", json!({"ts_ns": 195})),
    ]);
    let s = spans(&out);
    assert_eq!(s[0].span.start_time_unix_nano, 130);
    assert_eq!(s[1].span.name, "storage s3");
    assert_eq!(s[1].span.start_time_unix_nano, 180);
    assert_eq!(s[1].span.kind, span::SpanKind::Client as i32);
}

#[test]
fn rfc3339_formats_unix_nanoseconds() {
    use crate::clock::rfc3339;
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(rfc3339(1_795_363_418_808_721_631), "2026-11-22T16:03:38.808721631Z");
    assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
}

/// A tracer-only run of four hashed records (seq 0..3), as entries and as its journal.
fn journaled_run() -> (Vec<Enriched>, Journal) {
    let mut entries = Vec::new();
    let mut j = Journal::new();
    for (i, seq) in [(-1i64, 0u64), (0, 1), (1, 2), (2, 3)] {
        let mut v = call(i, 200 + i as u64 * 100, 150, "u1", "u1");
        v["seq"] = json!(seq);
        let h = StepHash { sha256_hex: format!("{:064x}", seq), sha512_token: None, counts: None };
        let e = en(v, &format!("e{seq}"), Some(h));
        j.insert(seq, crate::compliance::journal::JournalEntry::of(&e.record, e.entry.payload.as_deref().unwrap(), e.hash.as_ref(), e.unknown.as_deref(), Some("main")));
        entries.push(e);
    }
    (entries, j)
}

fn audited() -> Assembler {
    Assembler::new(Settings { audit_retention: Some("7_years".into()), ..Default::default() }, Arc::new(Metrics::new(50)))
}

#[test]
fn a_journaled_ending_gives_the_chain_and_audit_records_in_step_order() {
    let (entries, j) = journaled_run();
    let mut a = audited();
    let t0 = Instant::now();
    let mut outs = Vec::new();
    for e in entries {
        let ends = e.record.ends_run();
        outs.extend(a.accept_journaled(e, ends.then_some(&j), t0));
    }
    let audits: Vec<&AuditRecord> = outs.iter().filter_map(|o| if let Output::Audit(r) = o { Some(r.as_ref()) } else { None }).collect();
    assert_eq!(audits.iter().map(|r| r.step_index).collect::<Vec<_>>(), [-1, 0, 1, 2]);
    let mut value = crate::compliance::chain::genesis("u1", "r1");
    for r in &audits {
        assert_eq!(r.prev_chain, hex::encode(value));
        value = crate::compliance::chain::step(&value, &r.step_name, r.step_index, &r.content_sha256);
        assert_eq!(r.chain, hex::encode(value));
    }
    let root = spans(&outs).into_iter().find(|s| s.root_of.is_some()).unwrap();
    assert_eq!(attr_str(&root.span.attributes, "vcon.hash.chain"), Some(hex::encode(value).as_str()));
    assert_eq!(root.terminal.as_ref().map(|t| t.prev_chain.clone()), Some(hex::encode(value)), "the terminal record continues the chain");
    assert!(spans(&outs).iter().filter(|s| s.root_of.is_none()).all(|s| attr_str(&s.span.attributes, "vcon.hash.chain").is_none()), "link spans carry no chain value");
}

#[test]
fn a_replica_that_read_only_the_ending_builds_the_same_root_from_the_journal() {
    let (entries, j) = journaled_run();
    let t0 = Instant::now();
    let mut whole = audited();
    let mut alone = audited();
    let mut single = Vec::new();
    let mut split = Vec::new();
    for e in entries {
        let ends = e.record.ends_run();
        single.extend(whole.accept_journaled(e.clone(), ends.then_some(&j), t0));
        if ends {
            split.extend(alone.accept_journaled(e, Some(&j), t0));
        }
    }
    let root = |o: &[Output]| spans(o).into_iter().find(|s| s.root_of.is_some()).map(|s| (s.span.clone(), s.terminal.clone())).unwrap();
    let (a, b) = (root(&single), root(&split));
    assert_eq!(a, b, "the root (with its pre-chain event, times, hashes and chain) does not depend on who read what");
    assert_eq!(a.0.events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["tracer.pre_chain"]);
    let audits = |o: &[Output]| o.iter().filter_map(|x| if let Output::Audit(r) = x { Some(r.clone()) } else { None }).collect::<Vec<_>>();
    assert_eq!(audits(&single), audits(&split));
}

#[test]
fn without_a_journal_a_root_has_no_chain_and_no_audit_records() {
    let (entries, _) = journaled_run();
    let mut a = audited();
    let t0 = Instant::now();
    let out: Vec<Output> = entries.into_iter().flat_map(|e| a.accept(e, t0)).collect();
    assert!(out.iter().all(|o| !matches!(o, Output::Audit(_))));
    let root = spans(&out).into_iter().find(|s| s.root_of.is_some()).unwrap();
    assert!(attr_str(&root.span.attributes, "vcon.hash.chain").is_none() && root.terminal.is_none());
}

#[test]
fn a_skipped_opening_snapshot_makes_the_root_say_why_the_entering_hash_is_unknown() {
    let (mut entries, mut j) = journaled_run();
    entries[0].hash = None;
    entries[0].unknown = Some("budget".into());
    j.insert(0, crate::compliance::journal::JournalEntry::of(&entries[0].record, entries[0].entry.payload.as_deref().unwrap(), None, Some("budget"), Some("main")));
    let t0 = Instant::now();
    let last = entries.last().cloned().unwrap();
    let (mut local, mut replayed) = (audited(), audited());
    let here: Vec<Output> = entries.into_iter().flat_map(|e| local.accept(e, t0)).collect();
    let there = replayed.accept_journaled(last, Some(&j), t0);
    for out in [&here, &there] {
        let root = spans(out).into_iter().find(|s| s.root_of.is_some()).unwrap();
        assert_eq!(attr_str(&root.span.attributes, "vcon.hash.entering_unknown"), Some("budget"));
        assert!(attr_str(&root.span.attributes, "vcon.hash.entering").is_none());
    }
}
