//! Decoding of one record: bytes -> [`Record`] or a [`Rejection`] naming the field and the fix.
//!
//! Two paths, one behaviour: a valid record is decoded by the typed fast path ([`typed`]); anything
//! it does not accept is decoded again by the general path below (a JSON tree, then field by field),
//! which either accepts it too (e.g. a duplicate field) or produces the rejection with its reason and
//! message. The checks both paths apply are the functions here (`valid_run`, `valid_uuid`,
//! `valid_sha256`, `check_event_fields`, `parse_traceparent`).

mod fields;
mod typed;

use super::*;
use fields::{type_name, Fields};
use serde_json::Value;

fn reject(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection { reason, detail: detail.into() }
}

const FIELDS: &[&str] = &[
    "v", "event", "run", "vcon_uuid", "ts_ns", "start_ns", "run_start_ns", "seq", "chain", "links",
    "link_index", "link", "module", "storage", "tracer", "in_vcon_uuid", "out_vcon_uuid", "halted",
    "outcome", "hooks", "error", "call_ns", "traceparent", "producer", "ingress_list", "prev_run",
    "compliance",
];

/// Decodes one record.
pub fn decode(bytes: &[u8]) -> Result<Record, Rejection> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(reject(
            Reason::TooLarge,
            format!("record is {} bytes, the limit is {MAX_RECORD_BYTES}", bytes.len()),
        ));
    }
    if let Some(r) = typed::decode(bytes) {
        return Ok(r);
    }
    general(bytes)
}

/// The general path: a JSON tree, then field by field with a rejection naming the first problem.
fn general(bytes: &[u8]) -> Result<Record, Rejection> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| reject(Reason::NotJson, format!("record is not valid JSON: {e}")))?;
    decode_value(value)
}

/// Decodes one record already parsed as JSON. The fields are checked in one fixed order (the
/// header, the flat fields, the nested objects, then the per-event rules), so a record with
/// several problems is always rejected for the same one.
fn decode_value(value: Value) -> Result<Record, Rejection> {
    let Value::Object(mut m) = value else {
        return Err(reject(
            Reason::NotObject,
            format!("record must be a JSON object, got {}", type_name(&value)),
        ));
    };
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(reject(
            Reason::UnknownField,
            format!("field {k:?} is not part of schema v1 (see docs/events.md)"),
        ));
    }
    let mut f = Fields { m: &mut m, path: "" };
    let mut r = flat_fields(&mut f)?;
    nested_fields(&mut f, &mut r)?;
    check_event_fields(&r)?;
    Ok(r)
}

/// `v`, `event`, `run`, `vcon_uuid`, `ts_ns` and the optional scalar fields; the fields that need
/// more than a type check are left for [`nested_fields`].
fn flat_fields(f: &mut Fields<'_>) -> Result<Record, Rejection> {
    version(f)?;
    let event = event_kind(f)?;
    let run = f.req_str("run")?;
    if !valid_run(&run) {
        return Err(reject(
            Reason::BadValue,
            format!("field \"run\": expected 1-{MAX_RUN_LEN} printable ASCII characters without spaces, got {run:?}"),
        ));
    }
    let vcon_uuid = f.req_str("vcon_uuid")?;
    nonempty("vcon_uuid", &vcon_uuid)?;
    let ts_ns = f.req_u64("ts_ns")?;
    Ok(Record {
        event,
        trace_id: crate::ids::trace_id(&vcon_uuid, &run),
        run,
        vcon_uuid,
        ts_ns,
        start_ns: f.opt_u64("start_ns")?,
        run_start_ns: f.opt_u64("run_start_ns")?,
        seq: f.opt_u64("seq")?,
        chain: f.opt_str("chain")?,
        links: f.opt_str_list("links")?,
        link_index: f.opt_i64("link_index")?,
        link: f.opt_str("link")?,
        module: f.opt_str("module")?,
        storage: f.opt_str("storage")?,
        tracer: f.opt_str("tracer")?,
        in_vcon_uuid: f.opt_str("in_vcon_uuid")?,
        out_vcon_uuid: f.opt_str("out_vcon_uuid")?,
        halted: f.opt_bool("halted")?.unwrap_or(false),
        outcome: None,
        hooks: f.opt_bool("hooks")?.unwrap_or(false),
        error: None,
        call_ns: f.opt_u64("call_ns")?,
        traceparent: None,
        producer: None,
        ingress_list: f.opt_str("ingress_list")?,
        prev_run: None,
        compliance: None,
        hash_of_input: false,
    })
}

/// `"v": 1`, the only schema version this bridge reads.
fn version(f: &mut Fields<'_>) -> Result<(), Rejection> {
    match f.req("v")? {
        Value::Number(n) if n.as_u64() == Some(1) => Ok(()),
        other => Err(reject(
            Reason::UnsupportedVersion,
            format!("field \"v\": this bridge reads schema version 1, got {other}"),
        )),
    }
}

fn event_kind(f: &mut Fields<'_>) -> Result<EventKind, Rejection> {
    let event_name = f.req_str("event")?;
    EventKind::parse(&event_name).ok_or_else(|| {
        reject(
            Reason::UnknownEvent,
            format!(
                "field \"event\": {event_name:?} is not one of {}",
                EventKind::ALL.map(|k| k.as_str()).join(", ")
            ),
        )
    })
}

/// `outcome`, `traceparent` and the objects `error`, `producer`, `prev_run`, `compliance`.
fn nested_fields(f: &mut Fields<'_>, r: &mut Record) -> Result<(), Rejection> {
    if let Some(o) = f.opt_str("outcome")? {
        r.outcome = Some(match o.as_str() {
            "complete" => ChainOutcome::Complete,
            "halted" => ChainOutcome::Halted,
            _ => {
                return Err(reject(
                    Reason::BadValue,
                    format!("field \"outcome\": expected \"complete\" or \"halted\", got {o:?}"),
                ))
            }
        });
    }
    if let Some(tp) = f.opt_str("traceparent")? {
        r.traceparent = Some(parse_traceparent(&tp).ok_or_else(|| {
            reject(
                Reason::BadValue,
                format!("field \"traceparent\": expected \"00-<32 hex>-<16 hex>-<2 hex>\" with non-zero IDs, got {tp:?}"),
            )
        })?);
    }
    if let Some(mut e) = f.opt_object("error")? {
        let mut ef = Fields { m: &mut e, path: "error." };
        let error_type = ef.req_str("type")?;
        let mut message = ef.opt_str("message")?.unwrap_or_default();
        ef.deny_rest()?;
        truncate_utf8(&mut message, MAX_ERROR_MESSAGE);
        r.error = Some(ErrorInfo { error_type, message });
    }
    if let Some(mut p) = f.opt_object("producer")? {
        let mut pf = Fields { m: &mut p, path: "producer." };
        r.producer = Some(Producer {
            host: pf.req_str("host")?,
            pid: pf.req_u64("pid")?,
            thread: pf.opt_u64("thread")?,
        });
        pf.deny_rest()?;
    }
    if let Some(mut p) = f.opt_object("prev_run")? {
        let mut pf = Fields { m: &mut p, path: "prev_run." };
        r.prev_run = Some(RunRef { vcon_uuid: pf.req_str("vcon_uuid")?, run: pf.req_str("run")? });
        pf.deny_rest()?;
    }
    if let Some(mut c) = f.opt_object("compliance")? {
        let (c, input) = compliance(&mut Fields { m: &mut c, path: "compliance." })?;
        r.compliance = Some(c);
        r.hash_of_input = input;
    }
    Ok(())
}

/// The `compliance` object: exactly one of `sha256`, `snapshot`, `same_as`, `skipped`, and an
/// optional `subject` (`input` or `output`).
fn compliance(cf: &mut Fields<'_>) -> Result<(Compliance, bool), Rejection> {
    let sha = cf.opt_str("sha256")?;
    let snap = cf.opt_str("snapshot")?;
    let same = cf.opt_u64("same_as")?;
    let skipped = cf.opt_str("skipped")?;
    let subject = cf.opt_str("subject")?;
    cf.deny_rest()?;
    let input = match subject.as_deref() {
        None | Some("output") => false,
        Some("input") => true,
        Some(other) => return Err(reject(Reason::BadValue, format!("field \"compliance.subject\": expected \"input\" or \"output\", got {other:?}"))),
    };
    let c = match (sha, snap, same, skipped) {
        (Some(h), None, None, None) => {
            if !valid_sha256(&h) {
                return Err(reject(Reason::BadValue, format!("field \"compliance.sha256\": expected 64 lowercase hex digits, got {h:?}")));
            }
            Compliance::Sha256(h)
        }
        (None, Some(k), None, None) if !k.is_empty() => Compliance::Snapshot(k),
        (None, None, Some(seq), None) => Compliance::SameAs(seq),
        (None, None, None, Some(why)) if !why.is_empty() && why.len() <= 64 && why.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
            Compliance::Skipped(why)
        }
        (None, None, None, Some(why)) => {
            return Err(reject(Reason::BadValue, format!("field \"compliance.skipped\": expected a reason like \"budget\" (a-z and _), got {why:?}")))
        }
        _ => {
            return Err(reject(
                Reason::BadValue,
                "field \"compliance\": expected exactly one of sha256, snapshot (a non-empty key), same_as, skipped",
            ))
        }
    };
    Ok((c, input))
}

/// Per-event required fields (`docs/events.md`, "Events").
fn check_event_fields(r: &Record) -> Result<(), Rejection> {
    let missing = |name: &str, why: &str| {
        reject(Reason::MissingField, format!("field {name:?} is required for event {:?}: {why}", r.event.as_str()))
    };
    if let Some(i) = r.link_index {
        if i < -1 {
            return Err(reject(Reason::BadValue, format!("field \"link_index\": expected an integer >= -1, got {i}")));
        }
    }
    match r.event {
        EventKind::TracerCall => {
            let links = r.links.as_ref().ok_or_else(|| missing("links", "the chain's link names"))?;
            let i = r.link_index.ok_or_else(|| missing("link_index", "-1 before the first link, i after links[i]"))?;
            if i >= links.len() as i64 {
                return Err(reject(
                    Reason::BadValue,
                    format!("field \"link_index\": {i} is past the end of \"links\" ({} names)", links.len()),
                ));
            }
            if r.tracer.is_none() {
                return Err(missing("tracer", "the tracer instance name"));
            }
        }
        EventKind::LinkStart | EventKind::LinkComplete | EventKind::LinkError => {
            if r.link_index.is_none() {
                return Err(missing("link_index", "the link's position in the chain"));
            }
            if r.link_name().is_none() {
                return Err(missing("link", "the link name (or \"links\" with a valid \"link_index\")"));
            }
        }
        EventKind::StorageStart | EventKind::StorageComplete | EventKind::StorageError => {
            if r.storage.as_deref().is_none_or(str::is_empty) {
                return Err(missing("storage", "the storage name"));
            }
        }
        _ => {}
    }
    if matches!(r.event, EventKind::LinkError | EventKind::StorageError | EventKind::ChainError) && r.error.is_none() {
        return Err(missing("error", "an object {\"type\": ..., \"message\": ...}"));
    }
    Ok(())
}

/// `run`: 1-MAX_RUN_LEN printable ASCII characters without spaces.
fn valid_run(run: &str) -> bool {
    !run.is_empty() && run.len() <= MAX_RUN_LEN && run.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// `vcon_uuid`: 1-MAX_RUN_LEN characters.
fn valid_uuid(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_RUN_LEN
}

/// `compliance.sha256`: 64 lowercase hex digits.
pub fn valid_sha256(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nonempty(name: &str, v: &str) -> Result<(), Rejection> {
    if !valid_uuid(v) {
        return Err(reject(Reason::BadValue, format!("field {name:?}: expected 1-{MAX_RUN_LEN} characters, got {v:?}")));
    }
    Ok(())
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Parses `00-<trace id>-<span id>-<flags>`; all-zero IDs are invalid per W3C.
pub fn parse_traceparent(s: &str) -> Option<TraceParent> {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 4 || parts[0] != "00" {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut flags = [0u8; 1];
    hex::decode_to_slice(parts[1], &mut trace_id).ok()?;
    hex::decode_to_slice(parts[2], &mut span_id).ok()?;
    hex::decode_to_slice(parts[3], &mut flags).ok()?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(TraceParent { trace_id, span_id, flags: flags[0] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: i64) -> String {
        format!(
            r#"{{"v":1,"event":"tracer_call","run":"r1","vcon_uuid":"u1","ts_ns":10,"links":["a","b","c"],"link_index":{i},"tracer":"otel","in_vcon_uuid":"u1","out_vcon_uuid":"u1"}}"#
        )
    }

    #[test]
    fn decodes_a_tracer_call_and_knows_when_it_ends_the_run() {
        let r = decode(call(2).as_bytes()).unwrap();
        assert_eq!(r.event, EventKind::TracerCall);
        assert_eq!(r.link_name(), Some("c"));
        assert_eq!(r.trace_id, crate::ids::trace_id("u1", "r1"), "the run's trace ID, computed at decode");
        assert!(r.ends_run());
        assert!(!decode(call(1).as_bytes()).unwrap().ends_run());
        assert!(!decode(call(-1).as_bytes()).unwrap().ends_run());
    }

    #[test]
    fn hooks_flag_defers_the_end_to_chain_complete() {
        let s = call(2).replace("\"v\":1", "\"v\":1,\"hooks\":true");
        assert!(!decode(s.as_bytes()).unwrap().ends_run());
    }

    #[test]
    fn rejections_name_the_field_and_the_expectation() {
        let cases: &[(&str, Reason, &str)] = &[
            ("not json", Reason::NotJson, "not valid JSON"),
            ("[1]", Reason::NotObject, "got an array"),
            (r#"{"v":2}"#, Reason::UnsupportedVersion, "got 2"),
            (r#"{"v":1,"event":"tracer_call","run":"r","vcon_uuid":"u"}"#, Reason::MissingField, "\"ts_ns\" is required"),
            (r#"{"v":1,"event":"nope","run":"r","vcon_uuid":"u","ts_ns":1}"#, Reason::UnknownEvent, "\"nope\" is not one of"),
            (r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":"1"}"#, Reason::BadType, "field \"ts_ns\": expected an integer >= 0, got \"1\""),
            (r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1,"lnk":1}"#, Reason::UnknownField, "\"lnk\""),
            (r#"{"v":1,"event":"link_error","run":"r","vcon_uuid":"u","ts_ns":1,"link":"a","link_index":0}"#, Reason::MissingField, "\"error\" is required"),
            (r#"{"v":1,"event":"chain_start","run":"r s","vcon_uuid":"u","ts_ns":1}"#, Reason::BadValue, "field \"run\""),
            (r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1,"traceparent":"00-0-0-01"}"#, Reason::BadValue, "traceparent"),
            (r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1,"producer":{"host":"h","pid":1,"x":2}}"#, Reason::UnknownField, "\"producer.x\""),
        ];
        for (input, reason, needle) in cases {
            let e = decode(input.as_bytes()).unwrap_err();
            assert_eq!(e.reason, *reason, "{input}: {e}");
            assert!(e.detail.contains(needle), "{input}: {e}");
        }
        let idx = call(3);
        assert!(decode(idx.as_bytes()).unwrap_err().detail.contains("past the end"));
    }

    #[test]
    fn oversized_records_are_rejected_before_parsing() {
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(decode(&big).unwrap_err().reason, Reason::TooLarge);
    }

    #[test]
    fn traceparent_round_trip() {
        let tp = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.flags, 1);
    }
}
