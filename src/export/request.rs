//! One OTLP export request from a batch of finished spans, encoded: one resource per producer
//! instance (`service.instance.id` = `host:pid`), one scope (`vcon-otel`), the spans as the
//! assembler wrote them ([`WireSpan`]).
//!
//! Contract: the bytes are exactly what `prost` writes for the equivalent
//! `ExportTraceServiceRequest` (`Message::encode_to_vec`; the tests compare them). Each level's
//! length is computed once from its parts' lengths, and the bytes are written once, into a buffer
//! of the exact size: a span's attributes, events and links are copied, not encoded again.

use crate::assemble::FinishedSpan;
use crate::otlp::wire::{field_len, header, ResourceAttrs, WireSpan};
use crate::otlp::ExportTraceServiceRequest;
use crate::stream::{done::RunDone, Entry};
use prost::Message;
use std::collections::BTreeMap;

/// The scope of every span, `InstrumentationScope { name (1), version (2) }`; the version is also
/// the resource's `telemetry.sdk.version`.
const SCOPE_NAME: &str = "vcon-otel";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Encodes the spans (draining `spans`; its capacity is kept for the next batch), grouped by
/// producer instance; returns the request's bytes with the entries the spans acknowledge and the
/// runs whose root is among them.
pub fn build(service_name: &str, spans: &mut Vec<FinishedSpan>) -> (Vec<u8>, Vec<Entry>, Vec<RunDone>) {
    let mut acks = Vec::with_capacity(spans.iter().map(|s| s.acks.len()).sum());
    let mut done = Vec::new();
    let mut by_producer: BTreeMap<Option<(String, u64)>, Vec<WireSpan>> = BTreeMap::new();
    // Most requests have one producer: a group is sized for every span left at its first one.
    let total = spans.len();
    for (i, s) in spans.drain(..).enumerate() {
        acks.extend(s.acks);
        done.extend(s.root_of);
        by_producer.entry(s.producer.map(|p| (p.host, p.pid))).or_insert_with(|| Vec::with_capacity(total - i)).push(s.span);
    }
    let groups: Vec<_> = by_producer.into_iter().map(|(p, spans)| (resource(service_name, p.as_ref()), spans)).collect();
    (encode(&groups), acks, done)
}

/// A resource's attributes: the service, the producer instance when known, the SDK.
fn resource(service_name: &str, producer: Option<&(String, u64)>) -> ResourceAttrs {
    let mut a = ResourceAttrs::default();
    a.str("service.name", service_name);
    if let Some((host, pid)) = producer {
        a.str("service.instance.id", &format!("{host}:{pid}")).str("host.name", host).int("process.pid", *pid as i64);
    }
    a.str("telemetry.sdk.name", "vcon-otel").str("telemetry.sdk.version", VERSION);
    a
}

/// `ExportTraceServiceRequest { resource_spans (1): [ResourceSpans { resource (1), scope_spans
/// (2): [ScopeSpans { scope (1), spans (2) }] }] }`, one `ResourceSpans` per group.
fn encode(groups: &[(ResourceAttrs, Vec<WireSpan>)]) -> Vec<u8> {
    let scope_len = field_len(1, SCOPE_NAME.len()) + field_len(2, VERSION.len());
    let span_lens: Vec<Vec<usize>> = groups.iter().map(|(_, spans)| spans.iter().map(WireSpan::encoded_len).collect()).collect();
    let lens: Vec<(usize, usize)> = groups
        .iter()
        .zip(&span_lens)
        .map(|((res, _), lens)| {
            let ss = field_len(1, scope_len) + lens.iter().map(|n| field_len(2, *n)).sum::<usize>();
            (field_len(1, res.as_bytes().len()) + field_len(2, ss), ss)
        })
        .collect();
    let mut out = Vec::with_capacity(lens.iter().map(|(rs, _)| field_len(1, *rs)).sum());
    for (((res, spans), lens), (rs, ss)) in groups.iter().zip(&span_lens).zip(lens) {
        header(1, rs, &mut out);
        header(1, res.as_bytes().len(), &mut out);
        out.extend_from_slice(res.as_bytes());
        header(2, ss, &mut out);
        header(1, scope_len, &mut out);
        crate::otlp::wire::bytes(1, SCOPE_NAME.as_bytes(), &mut out);
        crate::otlp::wire::bytes(2, VERSION.as_bytes(), &mut out);
        for (span, len) in spans.iter().zip(lens) {
            header(2, *len, &mut out);
            span.encode_raw(&mut out);
        }
    }
    out
}

/// A request's bytes decoded (the terminal view shows what was sent).
pub fn decode(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("build encodes a valid request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::FinishedSpan;
    use crate::event::Producer;
    use crate::otlp::{kv_int, kv_str, InstrumentationScope, Resource, ResourceSpans, ScopeSpans};

    fn finished(i: usize, producer: Option<Producer>) -> FinishedSpan {
        let mut s = WireSpan::new([i as u8; 16], [7; 8], None, "x".repeat(i * 37), Default::default());
        (s.start_time_unix_nano, s.end_time_unix_nano) = (i as u64, 1 << 40);
        (0..i % 20).for_each(|k| {
            s.attributes.str("vcon.key", &"v".repeat(k * 13));
        });
        let mut e = crate::otlp::wire::EventAttrs::default();
        e.int("n", -(i as i64));
        s.event(5, "e", &e);
        FinishedSpan { span: s, producer, acks: vec![], root_of: None, terminal: None }
    }

    /// The request `prost` would write for the same spans, built from its own message types.
    fn expected(service: &str, spans: &[FinishedSpan]) -> ExportTraceServiceRequest {
        let mut by: BTreeMap<Option<(String, u64)>, Vec<_>> = BTreeMap::new();
        for s in spans {
            by.entry(s.producer.as_ref().map(|p| (p.host.clone(), p.pid))).or_default().push(s.span.to_proto());
        }
        let resource_spans = by
            .into_iter()
            .map(|(p, spans)| {
                let mut attributes = vec![kv_str("service.name", service)];
                if let Some((host, pid)) = p {
                    attributes.extend([kv_str("service.instance.id", format!("{host}:{pid}")), kv_str("host.name", host), kv_int("process.pid", pid as i64)]);
                }
                attributes.extend([kv_str("telemetry.sdk.name", "vcon-otel"), kv_str("telemetry.sdk.version", VERSION)]);
                let scope = InstrumentationScope { name: "vcon-otel".into(), version: VERSION.into(), ..Default::default() };
                ResourceSpans {
                    resource: Some(Resource { attributes, ..Default::default() }),
                    scope_spans: vec![ScopeSpans { scope: Some(scope), spans, schema_url: String::new() }],
                    schema_url: String::new(),
                }
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    #[test]
    fn encoding_is_byte_for_byte_what_prost_writes() {
        let p = |h: &str| Some(Producer { host: h.into(), pid: 42, thread: None });
        let spans: Vec<_> = (0..300).map(|i| finished(i, if i % 3 == 0 { None } else { p(if i % 2 == 0 { "a" } else { "b" }) })).collect();
        let want = expected("svc", &spans);
        let (body, _, _) = build("svc", &mut spans.clone());
        assert_eq!(body, want.encode_to_vec());
        assert_eq!(decode(&body), want);
        assert_eq!(want.resource_spans.len(), 3);
        let (empty, _, _) = build("svc", &mut vec![]);
        assert_eq!(empty, ExportTraceServiceRequest::default().encode_to_vec());
    }
}
