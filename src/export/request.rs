//! One OTLP export request from a batch of finished spans: one resource per producer instance
//! (`service.instance.id` = `host:pid`), one scope (`vcon-otel`); and its protobuf encoding
//! ([`encode`]).

use crate::assemble::FinishedSpan;
use crate::otlp::{kv_int, kv_str, ExportTraceServiceRequest, InstrumentationScope, Resource, ResourceSpans, ScopeSpans};
use prost::Message;
use crate::stream::{done::RunDone, Entry};
use std::collections::BTreeMap;

/// Groups spans by producer instance into one request; returns it with the entries the spans
/// acknowledge and the runs whose root is among them.
pub fn build(service_name: &str, spans: Vec<FinishedSpan>) -> (ExportTraceServiceRequest, Vec<Entry>, Vec<RunDone>) {
    let mut acks = Vec::new();
    let mut done = Vec::new();
    let mut by_producer: BTreeMap<Option<(String, u64)>, Vec<crate::otlp::Span>> = BTreeMap::new();
    for s in spans {
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
/// but each span's length is computed once. (`prost` computes a nested message's length again at
/// every enclosing level: four times per span for the request, its resource and its scope.) The
/// outer levels are written here; every span, resource and scope is still encoded by `prost`.
pub fn encode(req: &ExportTraceServiceRequest) -> Vec<u8> {
    let ExportTraceServiceRequest { resource_spans } = req;
    let mut out = Vec::new();
    for ResourceSpans { resource, scope_spans, schema_url } in resource_spans {
        let mut rs = Vec::new();
        if let Some(r) = resource {
            message(1, r, &mut rs);
        }
        for ScopeSpans { scope, spans, schema_url } in scope_spans {
            let mut ss = Vec::with_capacity(spans.len() * 512);
            if let Some(s) = scope {
                message(1, s, &mut ss);
            }
            for span in spans {
                message(2, span, &mut ss);
            }
            bytes_field(3, schema_url.as_bytes(), &mut ss);
            delimited(2, &ss, &mut rs);
        }
        bytes_field(3, schema_url.as_bytes(), &mut rs);
        delimited(1, &rs, &mut out);
    }
    out
}

/// A length-delimited field holding a message (written even when the message is empty).
fn message(tag: u32, m: &impl Message, out: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | 2), out);
    m.encode_length_delimited(out).expect("a Vec grows as needed");
}

/// A length-delimited field holding `bytes`.
fn delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A proto3 string field: omitted when empty.
fn bytes_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        delimited(tag, bytes, out);
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
        let spans = (0..300).map(|i| finished(i, if i % 3 == 0 { None } else { p(if i % 2 == 0 { "a" } else { "b" }) })).collect();
        let (mut req, _, _) = build("svc", spans);
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
