//! One OTLP export request from a batch of finished spans: one resource per producer instance
//! (`service.instance.id` = `host:pid`), one scope (`vcon-otel`); and its protobuf encoding
//! ([`encode`]).

use crate::assemble::FinishedSpan;
use crate::otlp::{kv_int, kv_str, ExportTraceServiceRequest, InstrumentationScope, Resource, ResourceSpans, ScopeSpans};
use prost::Message;
use crate::stream::{done::RunDone, Entry};
use std::collections::BTreeMap;

/// Groups spans by producer instance into one request, draining `spans` (its capacity is kept for
/// the next batch); returns the request with the entries the spans acknowledge and the runs whose
/// root is among them.
pub fn build(service_name: &str, spans: &mut Vec<FinishedSpan>) -> (ExportTraceServiceRequest, Vec<Entry>, Vec<RunDone>) {
    let mut acks = Vec::with_capacity(spans.iter().map(|s| s.acks.len()).sum());
    let mut done = Vec::new();
    let mut by_producer: BTreeMap<Option<(String, u64)>, Vec<crate::otlp::Span>> = BTreeMap::new();
    for s in spans.drain(..) {
        acks.extend(s.acks);
        done.extend(s.root_of);
        by_producer.entry(s.producer.map(|p| (p.host, p.pid))).or_default().push(s.span);
    }
    let resource_spans = by_producer
        .into_iter()
        .map(|(producer, spans)| {
            let mut attributes = vec![kv_str("service.name", service_name)];
            if let Some((host, pid)) = producer {
                attributes.push(kv_str("service.instance.id", format!("{host}:{pid}")));
                attributes.push(kv_str("host.name", host));
                attributes.push(kv_int("process.pid", pid as i64));
            }
            attributes.push(kv_str("telemetry.sdk.name", "vcon-otel"));
            attributes.push(kv_str("telemetry.sdk.version", env!("CARGO_PKG_VERSION")));
            ResourceSpans {
                resource: Some(Resource { attributes, ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "vcon-otel".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    (ExportTraceServiceRequest { resource_spans }, acks, done)
}

/// The request's protobuf encoding: byte for byte what `prost` writes (`Message::encode_to_vec`),
/// but each span's length is computed once and the bytes are written once, into a buffer of the
/// exact size. (`prost` computes a nested message's length again at every enclosing level, four
/// times per span for the request, its resource and its scope; here a resource's and a scope's
/// own fields, one each per producer, are measured twice.) The outer levels are written
/// here; every span, resource and scope is encoded by `prost` (`encode_raw`: the message's fields
/// without its length, which is written here).
pub fn encode(req: &ExportTraceServiceRequest) -> Vec<u8> {
    // Pass 1: lengths (each span's once, kept in order), from the innermost level out.
    let mut span_lens = Vec::new();
    let mut scope_lens = Vec::new();
    let mut resource_lens = Vec::new();
    for ResourceSpans { resource, scope_spans, schema_url } in &req.resource_spans {
        let mut rs = resource.as_ref().map_or(0, |r| field_len(r.encoded_len())) + string_len(schema_url);
        for ScopeSpans { scope, spans, schema_url } in scope_spans {
            let mut ss = scope.as_ref().map_or(0, |s| field_len(s.encoded_len())) + string_len(schema_url);
            for span in spans {
                let n = span.encoded_len();
                span_lens.push(n);
                ss += field_len(n);
            }
            scope_lens.push(ss);
            rs += field_len(ss);
        }
        resource_lens.push(rs);
    }
    // Pass 2: the bytes, in field order.
    let mut out = Vec::with_capacity(resource_lens.iter().map(|n| field_len(*n)).sum());
    let (mut span_len, mut scope_len) = (span_lens.into_iter(), scope_lens.into_iter());
    for (ResourceSpans { resource, scope_spans, schema_url }, rs) in req.resource_spans.iter().zip(resource_lens) {
        header(1, rs, &mut out);
        if let Some(r) = resource {
            message(1, r, r.encoded_len(), &mut out);
        }
        for ScopeSpans { scope, spans, schema_url } in scope_spans {
            header(2, scope_len.next().expect("one length per scope"), &mut out);
            if let Some(s) = scope {
                message(1, s, s.encoded_len(), &mut out);
            }
            for span in spans {
                message(2, span, span_len.next().expect("one length per span"), &mut out);
            }
            string(3, schema_url, &mut out);
        }
        string(3, schema_url, &mut out);
    }
    out
}

/// The bytes of a length-delimited field whose content is `len` bytes (tag numbers here are < 16).
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// A proto3 string field's bytes: none when empty.
fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

/// The tag and length of a length-delimited field.
fn header(tag: u32, len: usize, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(u64::from(tag << 3 | 2), out);
    prost::encoding::encode_varint(len as u64, out);
}

/// A length-delimited field holding a message of `len` bytes (written even when empty).
fn message(tag: u32, m: &impl Message, len: usize, out: &mut Vec<u8>) {
    header(tag, len, out);
    m.encode_raw(out);
}

/// A proto3 string field: omitted when empty.
fn string(tag: u32, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        header(tag, s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::FinishedSpan;
    use crate::event::Producer;
    use crate::otlp::{kv_int, kv_str, span, Span};

    fn finished(i: usize, producer: Option<Producer>) -> FinishedSpan {
        let mut s = Span {
            trace_id: vec![i as u8; 16],
            span_id: vec![7; 8],
            name: "x".repeat(i * 37),
            start_time_unix_nano: i as u64,
            end_time_unix_nano: 1 << 40,
            attributes: (0..i % 20).map(|k| kv_str("vcon.key", "v".repeat(k * 13))).collect(),
            ..Default::default()
        };
        s.events.push(span::Event { time_unix_nano: 5, name: "e".into(), attributes: vec![kv_int("n", -(i as i64))], dropped_attributes_count: 0 });
        FinishedSpan { span: s, producer, acks: vec![], root_of: None, terminal: None }
    }

    #[test]
    fn encoding_is_byte_for_byte_what_prost_writes() {
        let p = |h: &str| Some(Producer { host: h.into(), pid: 42, thread: None });
        let mut spans: Vec<_> = (0..300).map(|i| finished(i, if i % 3 == 0 { None } else { p(if i % 2 == 0 { "a" } else { "b" }) })).collect();
        let (mut req, _, _) = build("svc", &mut spans);
        assert_eq!(encode(&req), req.encode_to_vec());
        req.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
        req.resource_spans[1].scope_spans[0].schema_url = "s".repeat(300);
        req.resource_spans[1].resource = Some(Default::default());
        req.resource_spans[2].scope_spans[0].scope = None;
        req.resource_spans[2].scope_spans.push(Default::default());
        req.resource_spans.push(Default::default());
        assert_eq!(encode(&req), req.encode_to_vec());
        let empty = ExportTraceServiceRequest::default();
        assert_eq!(encode(&empty), empty.encode_to_vec());
    }
}
