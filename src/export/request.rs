//! One OTLP export request from a batch of finished spans: one resource per producer instance
//! (`service.instance.id` = `host:pid`), one scope (`vcon-otel`).

use crate::assemble::FinishedSpan;
use crate::otlp::{kv_int, kv_str, ExportTraceServiceRequest, InstrumentationScope, Resource, ResourceSpans, ScopeSpans};
use crate::stream::Entry;
use std::collections::BTreeMap;

/// Groups spans by producer instance into one request; returns it with the entries the spans
/// acknowledge and the runs whose root is among them.
pub fn build(service_name: &str, spans: Vec<FinishedSpan>) -> (ExportTraceServiceRequest, Vec<Entry>, Vec<[u8; 16]>) {
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

