//! The fast path of [`super::decode`]: one typed pass of `serde_json` straight into a [`Record`],
//! without building a JSON tree and a map of owned keys first.
//!
//! Contract: [`decode`] returns `Some(record)` only for input the general path accepts, and then
//! exactly the record the general path builds (same fields, same defaults, same truncation, same
//! checks). For anything else — a wrong type, a missing, unknown or duplicate field, a failed check —
//! it returns `None` and the caller decodes again with the general path, which names the problem;
//! so every rejection, with its reason and message, still comes from one place. (A duplicate field
//! the general path would accept, keeping the last value, is simply decoded there.)

use super::{check_event_fields, parse_traceparent, truncate_utf8, valid_run, valid_sha256, valid_uuid};
use crate::event::{ChainOutcome, Compliance, ErrorInfo, EventKind, Producer, Record, RunRef, MAX_ERROR_MESSAGE};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    v: u64,
    #[serde(borrow)]
    event: Cow<'a, str>,
    run: String,
    vcon_uuid: String,
    ts_ns: u64,
    start_ns: Option<u64>,
    run_start_ns: Option<u64>,
    seq: Option<u64>,
    chain: Option<String>,
    links: Option<Vec<String>>,
    link_index: Option<i64>,
    link: Option<String>,
    module: Option<String>,
    storage: Option<String>,
    tracer: Option<String>,
    in_vcon_uuid: Option<String>,
    out_vcon_uuid: Option<String>,
    halted: Option<bool>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    hooks: Option<bool>,
    error: Option<RawError>,
    call_ns: Option<u64>,
    #[serde(borrow)]
    traceparent: Option<Cow<'a, str>>,
    producer: Option<RawProducer>,
    ingress_list: Option<String>,
    prev_run: Option<RawRunRef>,
    compliance: Option<RawCompliance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawError {
    #[serde(rename = "type")]
    error_type: String,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProducer {
    host: String,
    pid: u64,
    thread: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunRef {
    vcon_uuid: String,
    run: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompliance {
    sha256: Option<String>,
    snapshot: Option<String>,
}

/// The record, when `bytes` is a valid record; `None` otherwise (see the module header).
pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).ok()?;
    if raw.v != 1 || !valid_run(&raw.run) || !valid_uuid(&raw.vcon_uuid) {
        return None;
    }
    let event = EventKind::parse(&raw.event)?;
    let outcome = match raw.outcome.as_deref() {
        None => None,
        Some("complete") => Some(ChainOutcome::Complete),
        Some("halted") => Some(ChainOutcome::Halted),
        Some(_) => return None,
    };
    let traceparent = match raw.traceparent.as_deref() {
        None => None,
        Some(tp) => Some(parse_traceparent(tp)?),
    };
    let error = raw.error.map(|e| {
        let mut message = e.message.unwrap_or_default();
        truncate_utf8(&mut message, MAX_ERROR_MESSAGE);
        ErrorInfo { error_type: e.error_type, message }
    });
    let compliance = match raw.compliance {
        None => None,
        // The other forms (`same_as`, `skipped`, `subject`) and any mix go to the general path.
        Some(RawCompliance { sha256: Some(h), snapshot: None }) if valid_sha256(&h) => Some(Compliance::Sha256(h)),
        Some(RawCompliance { sha256: None, snapshot: Some(k) }) if !k.is_empty() => Some(Compliance::Snapshot(k)),
        Some(_) => return None,
    };
    let r = Record {
        event,
        trace_id: crate::ids::trace_id(&raw.vcon_uuid, &raw.run),
        run: raw.run,
        vcon_uuid: raw.vcon_uuid,
        ts_ns: raw.ts_ns,
        start_ns: raw.start_ns,
        run_start_ns: raw.run_start_ns,
        seq: raw.seq,
        chain: raw.chain,
        links: raw.links,
        link_index: raw.link_index,
        link: raw.link,
        module: raw.module,
        storage: raw.storage,
        tracer: raw.tracer,
        in_vcon_uuid: raw.in_vcon_uuid,
        out_vcon_uuid: raw.out_vcon_uuid,
        halted: raw.halted.unwrap_or(false),
        outcome,
        hooks: raw.hooks.unwrap_or(false),
        error,
        call_ns: raw.call_ns,
        traceparent,
        producer: raw.producer.map(|p| Producer { host: p.host, pid: p.pid, thread: p.thread }),
        ingress_list: raw.ingress_list,
        prev_run: raw.prev_run.map(|p| RunRef { vcon_uuid: p.vcon_uuid, run: p.run }),
        compliance,
        hash_of_input: false,
    };
    check_event_fields(&r).ok()?;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::super::general;

    const FULL: &str = r#"{"v":1,"event":"link_error","run":"r1","vcon_uuid":"u1","ts_ns":10,"start_ns":5,"run_start_ns":1,"seq":3,"chain":"main","links":["a","b"],"link_index":1,"link":"b","module":"m","storage":"s","tracer":"otel","in_vcon_uuid":"u2","out_vcon_uuid":"u1","halted":false,"outcome":"halted","hooks":true,"error":{"type":"ValueError","message":"bad \"thing\" \u00e9"},"call_ns":7,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","producer":{"host":"h","pid":1,"thread":2},"ingress_list":"in","prev_run":{"vcon_uuid":"u0","run":"r0"},"compliance":{"snapshot":"vcon_otel:snap:r1:3"}}"#;

    /// The fast path either declines or agrees with the general path.
    fn agrees(input: &str) -> bool {
        let fast = super::decode(input.as_bytes());
        let slow = general(input.as_bytes());
        if let Some(f) = &fast {
            assert_eq!(Ok(f), slow.as_ref(), "the fast path accepted what the general path decodes otherwise: {input}");
        }
        fast.is_some()
    }

    #[test]
    fn valid_records_take_the_fast_path_and_decode_as_the_general_path_does() {
        let long = format!(r#"{{"v":1,"event":"chain_error","run":"r","vcon_uuid":"u","ts_ns":1,"error":{{"type":"E","message":"{}"}}}}"#, "é".repeat(3000));
        for input in [
            FULL,
            r#"{"v":1,"event":"tracer_call","run":"r","vcon_uuid":"u","ts_ns":1,"links":["a"],"link_index":-1,"tracer":"otel"}"#,
            r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1,"chain":null,"halted":null,"error":null}"#,
            r#" {"v":1,"event":"storage_complete","run":"r","vcon_uuid":"u\u0041","ts_ns":18446744073709551615,"storage":"pg"} "#,
            r#"{"v":1,"event":"chain_complete","run":"r","vcon_uuid":"u","ts_ns":1,"compliance":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#,
            r#"{"v":1,"event":"chain_error","run":"r","vcon_uuid":"u","ts_ns":1,"error":{"type":"E","message":null}}"#,
            &long,
        ] {
            assert!(agrees(input), "not taken by the fast path: {input}");
        }
    }

    #[test]
    fn every_field_set_to_every_kind_of_value_is_decoded_as_the_general_path_does() {
        let full: serde_json::Value = serde_json::from_str(FULL).unwrap();
        let values = [r#"null"#, "1", "-1", "-2", "0", "1.5", "1e2", r#""x""#, r#""""#, r#""complete""#, "true", "[]", r#"["a"]"#, "[1]", "{}",
            r#"{"type":"T"}"#, r#"{"host":"h","pid":1}"#, r#"{"vcon_uuid":"u","run":"r"}"#, r#"{"sha256":"00"}"#, r#"{"x":1}"#];
        let mut fast = 0;
        for key in full.as_object().unwrap().keys().chain(["unknown".to_string()].iter()) {
            for v in values {
                let mut doc = full.clone();
                doc[key.as_str()] = serde_json::from_str(v).unwrap();
                fast += agrees(&doc.to_string()) as usize;
                doc.as_object_mut().unwrap().remove(key.as_str());
                fast += agrees(&doc.to_string()) as usize;
            }
        }
        assert!(fast > 50, "the fast path took only {fast} of the variants");
        // A duplicate field: the general path keeps the last value; the fast path declines.
        assert!(!agrees(r#"{"v":1,"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1}"#));
        assert!(general(br#"{"v":1,"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1}"#).is_ok());
        for bad in ["", "{", "[]", "null", r#"{"v":1}"#, r#"{"v":1,"event":"tracer_call","run":"r","vcon_uuid":"u","ts_ns":1}"#] {
            assert!(!agrees(bad), "{bad}");
        }
    }
}
