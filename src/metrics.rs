//! Every metric of the bridge, on one owned registry (`docs/metrics.md` is the table of names).
//!
//! Labels that come from producers (`chain`, `link`, `storage`, `tracer`) pass through a
//! [`LabelGuard`] that keeps at most `max_label_values` distinct values per label and reports the
//! rest as `other`, so no producer can blow up the series count. No metric carries a vCon UUID.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceEvent {
    pub source: &'static str,
    pub event: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TracerLabels {
    pub tracer: String,
    pub side: &'static str,
    pub outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TracerLabel {
    pub tracer: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TracerReasonLabels {
    pub tracer: String,
    pub reason: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    pub chain: String,
    pub link: String,
    pub outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub chain: String,
    pub storage: String,
    pub outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    pub chain: String,
    pub outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RootLabel {
    /// `here`: this replica exported the run's root; `elsewhere`: another replica did.
    pub root: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: &'static str,
}
/// Exemplar labels: the trace a latency observation belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

fn duration_buckets() -> std::vec::IntoIter<f64> {
    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]
        .into_iter()
}

fn ex_histogram() -> HistogramWithExemplars<TraceExemplar> {
    HistogramWithExemplars::new(duration_buckets())
}

fn histogram() -> Histogram {
    Histogram::new(duration_buckets())
}

/// Keeps a label's distinct values bounded.
pub struct LabelGuard {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelGuard {
    fn new(max: usize) -> Self {
        LabelGuard { max, seen: Mutex::new(HashSet::new()) }
    }

    /// The value to use as a label: `value` while fewer than `max` values were seen, else `other`.
    pub fn admit(&self, value: &str) -> String {
        let mut seen = self.seen.lock().expect("label guard poisoned");
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value.to_string();
        }
        "other".to_string()
    }
}

/// All metric handles. Cheap to share behind an `Arc`.
pub struct Metrics {
    pub registry: Registry,
    pub events_ingested: Family<SourceEvent, Counter>,
    pub events_rejected: Family<ReasonLabel, Counter>,
    pub dead_letters: Family<StageLabel, Counter>,
    pub http_requests: Family<StatusLabel, Counter>,
    pub spans_exported: Family<OutcomeLabel, Counter>,
    pub spans_dropped: Family<ReasonLabel, Counter>,
    pub snapshots_skipped: Family<ReasonLabel, Counter>,
    pub snapshots_deleted: Counter,
    pub snapshots_live: Gauge,
    pub step_record_errors: Counter,
    pub export_retries: Family<ReasonLabel, Counter>,
    pub export_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    pub audit_writes: Family<OutcomeLabel, Counter>,
    pub runs_evicted: Counter,
    pub runs_waiting: Gauge,
    pub runs_finished_elsewhere: Counter,
    pub run_end_to_ack: Family<RootLabel, Histogram, fn() -> Histogram>,
    pub export_batch_spans: Histogram,
    pub tracer_duration: Family<TracerLabels, Histogram, fn() -> Histogram>,
    pub tracer_calls: Family<TracerLabels, Counter>,
    pub tracer_retries: Family<TracerLabel, Counter>,
    pub tracer_queue_depth: Family<TracerLabel, Gauge>,
    /// Records a hosted tracer gave up on, by `retry::Reason`.
    pub tracer_failures: Family<TracerReasonLabels, Counter>,
    pub dlq_pushes: Family<TracerLabel, Counter>,
    pub link_duration: Family<LinkLabels, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>,
    pub storage_duration: Family<StorageLabels, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>,
    pub chain_duration: Family<ChainLabels, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>,
    pub runs: Family<ChainLabels, Counter>,
    pub open_runs: Gauge,
    pub stream_lag: Gauge,
    pub stream_pending: Gauge,
    pub inflight_entries: Gauge,
    pub redis_up: Gauge,
    pub http_connections: Gauge,
    pub chains: LabelGuard,
    pub links: LabelGuard,
    pub storages: LabelGuard,
    pub tracers: LabelGuard,
}

impl Metrics {
    /// Creates and registers every metric; `max_label_values` bounds each producer-supplied label.
    pub fn new(max_label_values: usize) -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            events_ingested: Family::default(),
            events_rejected: Family::default(),
            dead_letters: Family::default(),
            http_requests: Family::default(),
            spans_exported: Family::default(),
            spans_dropped: Family::default(),
            snapshots_skipped: Family::default(),
            snapshots_deleted: Counter::default(),
            snapshots_live: Gauge::default(),
            step_record_errors: Counter::default(),
            export_retries: Family::default(),
            export_duration: Family::new_with_constructor(histogram),
            audit_writes: Family::default(),
            runs_evicted: Counter::default(),
            runs_waiting: Gauge::default(),
            runs_finished_elsewhere: Counter::default(),
            run_end_to_ack: Family::new_with_constructor(histogram),
            export_batch_spans: Histogram::new([1.0, 8.0, 32.0, 128.0, 512.0, 2048.0, 8192.0].into_iter()),
            tracer_duration: Family::new_with_constructor(histogram),
            tracer_calls: Family::default(),
            tracer_retries: Family::default(),
            tracer_queue_depth: Family::default(),
            tracer_failures: Family::default(),
            dlq_pushes: Family::default(),
            link_duration: Family::new_with_constructor(ex_histogram),
            storage_duration: Family::new_with_constructor(ex_histogram),
            chain_duration: Family::new_with_constructor(ex_histogram),
            runs: Family::default(),
            open_runs: Gauge::default(),
            stream_lag: Gauge::default(),
            stream_pending: Gauge::default(),
            inflight_entries: Gauge::default(),
            redis_up: Gauge::default(),
            http_connections: Gauge::default(),
            chains: LabelGuard::new(max_label_values),
            links: LabelGuard::new(max_label_values),
            storages: LabelGuard::new(max_label_values),
            tracers: LabelGuard::new(max_label_values),
        };
        m.register_all();
        m
    }

    /// Registers every handle under its name and help text (`docs/metrics.md`).
    fn register_all(&mut self) {
        let m = self;
        let r = &mut m.registry;
        r.register("vcon_otel_events_ingested", "Records decoded successfully", m.events_ingested.clone());
        r.register("vcon_otel_events_rejected", "Records rejected and dead-lettered, by reason", m.events_rejected.clone());
        r.register("vcon_otel_dead_letters", "Entries written to the dead-letter stream, by stage", m.dead_letters.clone());
        r.register("vcon_otel_http_requests", "POST /v1/events answers by status code", m.http_requests.clone());
        r.register("vcon_otel_spans_exported", "Spans by export outcome", m.spans_exported.clone());
        r.register("vcon_otel_spans_dropped", "Spans not offered to the exporter because its queue was full (tracer outcome spans only), by reason", m.spans_dropped.clone());
        r.register("vcon_otel_snapshots_deleted", "Compliance snapshots deleted by the bridge once hashed (and used by every content tracer)", m.snapshots_deleted.clone());
        r.register("vcon_otel_snapshots_live", "Live compliance snapshots in the producer's budget index (ZCARD of compliance.snapshot_index)", m.snapshots_live.clone());
        r.register("vcon_otel_step_record_errors", "Failed writes of step records or snapshot deletions (the snapshot then lives until its TTL)", m.step_record_errors.clone());
        r.register("vcon_otel_snapshots_skipped", "Steps whose producer took no compliance snapshot, by reason (budget: snapshot_budget reached)", m.snapshots_skipped.clone());
        r.register("vcon_otel_export_retries", "Retried OTLP export attempts, by reason", m.export_retries.clone());
        r.register("vcon_otel_export_duration_seconds", "Time of one OTLP export request, by outcome", m.export_duration.clone());
        r.register("vcon_otel_audit_log_writes", "Audit log batch writes (append + fsync), by outcome", m.audit_writes.clone());
        r.register("vcon_otel_runs_waiting", "Open runs quiet for a second or more: a slow link, or a run whose end another replica read", m.runs_waiting.clone());
        r.register("vcon_otel_runs_finished_elsewhere", "Open runs acknowledged because another replica exported their root", m.runs_finished_elsewhere.clone());
        r.register("vcon_otel_run_end_to_ack_seconds", "From a run's end to the acknowledgement of this replica's entries of it", m.run_end_to_ack.clone());
        r.register("vcon_otel_runs_evicted", "Open runs closed as incomplete to stay within runs.max_open or the held-entry bound", m.runs_evicted.clone());
        r.register("vcon_otel_export_batch_spans", "Spans per OTLP export request", m.export_batch_spans.clone());
        r.register("vcon_otel_tracer_duration_seconds", "Time of one tracer invocation", m.tracer_duration.clone());
        r.register("vcon_otel_tracer_calls", "Tracer invocations by outcome", m.tracer_calls.clone());
        r.register("vcon_otel_tracer_retries", "Retries of hosted tracers", m.tracer_retries.clone());
        r.register("vcon_otel_tracer_queue_depth", "Items waiting in a hosted tracer's queue", m.tracer_queue_depth.clone());
        r.register("vcon_otel_tracer_failures", "Records a hosted tracer gave up on (permanent failure or retries exhausted), by reason", m.tracer_failures.clone());
        r.register("vcon_otel_dlq_pushes", "vCon UUIDs pushed to a conserver DLQ by a hosted tracer", m.dlq_pushes.clone());
        r.register("vcon_otel_link_duration_seconds", "Link span durations", m.link_duration.clone());
        r.register("vcon_otel_storage_duration_seconds", "Storage span durations", m.storage_duration.clone());
        r.register("vcon_otel_chain_duration_seconds", "Chain run (root span) durations", m.chain_duration.clone());
        r.register("vcon_otel_runs", "Finished chain runs by outcome", m.runs.clone());
        r.register("vcon_otel_open_runs", "Runs opened and not yet closed", m.open_runs.clone());
        r.register("vcon_otel_stream_lag", "Stream entries not yet delivered to the consumer group", m.stream_lag.clone());
        r.register("vcon_otel_stream_pending", "Entries delivered to the group and not yet acknowledged", m.stream_pending.clone());
        r.register("vcon_otel_inflight_entries", "Entries read by this bridge and not yet acknowledged", m.inflight_entries.clone());
        r.register("vcon_otel_redis_up", "1 while Redis answers the health probe's PING, else 0", m.redis_up.clone());
        r.register("vcon_otel_http_connections", "Open connections of the POST /v1/events listener", m.http_connections.clone());
        let build = Family::<VersionLabel, Gauge>::default();
        build.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("vcon_otel_build_info", "Build information; always 1", build);
    }

    /// Records one tracer invocation (latency and outcome) under bounded labels.
    pub fn tracer_call(&self, tracer: &str, side: &'static str, outcome: &'static str, seconds: f64) {
        let labels = TracerLabels { tracer: self.tracers.admit(tracer), side, outcome };
        self.tracer_duration.get_or_create(&labels).observe(seconds);
        self.tracer_calls.get_or_create(&labels).inc();
    }

    /// The exposition in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

/// An exemplar for a trace ID.
pub fn exemplar(trace_id: &[u8; 16]) -> Option<TraceExemplar> {
    Some(TraceExemplar { trace_id: hex::encode(trace_id) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        let m = Metrics::new(2);
        assert_eq!(m.chains.admit("a"), "a");
        assert_eq!(m.chains.admit("b"), "b");
        assert_eq!(m.chains.admit("c"), "other");
        assert_eq!(m.chains.admit("a"), "a");
    }

    #[test]
    fn exposition_has_suffixes_and_exemplars() {
        let m = Metrics::new(10);
        m.link_duration
            .get_or_create(&LinkLabels { chain: "c".into(), link: "l".into(), outcome: "ok" })
            .observe(0.2, exemplar(&[7; 16]), None);
        m.events_ingested.get_or_create(&SourceEvent { source: "stream", event: "tracer_call" }).inc();
        let text = m.encode();
        assert!(text.contains("vcon_otel_events_ingested_total{source=\"stream\",event=\"tracer_call\"} 1"), "{text}");
        assert!(text.contains("trace_id=\"07070707070707070707070707070707\""), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
