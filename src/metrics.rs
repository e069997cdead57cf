//! Every metric of the bridge, on one owned registry (`docs/metrics.md` is the table of names).
//!
//! Labels that come from producers (`chain`, `link`, `storage`, `tracer`) are only ever set through
//! the methods below (`observe_*`, `tracer_call`, `*_label(s)`), which pass them through the
//! [`guard`]s: values cut to `metrics.max_label_len` bytes, at most `metrics.max_label_values`
//! values per label and `metrics.max_series_per_family` label combinations per family, the rest
//! reported as `other` and counted. The per-record observations remember each input's series
//! ([`memo`]). No metric carries a vCon UUID.

pub mod guard;
pub mod memo;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
pub use guard::{Bounds, LabelGuard, SeriesGuard, OTHER};
use memo::{Bumps, Memo};

/// A duration histogram whose observations carry their trace as exemplar.
pub type ExHistogram = HistogramWithExemplars<TraceExemplar>;

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
pub struct LabelName {
    pub label: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabel {
    pub family: &'static str,
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

/// All metric handles. Cheap to share behind an `Arc`.
pub struct Metrics {
    pub registry: Registry,
    pub events_ingested: Family<SourceEvent, Counter>,
    pub events_rejected: Family<ReasonLabel, Counter>,
    pub dead_letters: Family<StageLabel, Counter>,
    pub dead_letters_without_record: Counter,
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
    pub runs_awaiting_journal: Gauge,
    pub chains_unknown: Family<ReasonLabel, Counter>,
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
    pub labels_truncated: Family<LabelName, Counter>,
    pub labels_folded: Family<LabelName, Counter>,
    pub series_folded: Family<FamilyLabel, Counter>,
    chains: LabelGuard,
    links: LabelGuard,
    storages: LabelGuard,
    tracers: LabelGuard,
    link_series: SeriesGuard,
    storage_series: SeriesGuard,
    chain_series: SeriesGuard,
    tracer_call_series: SeriesGuard,
    tracer_series: SeriesGuard,
    tracer_failure_series: SeriesGuard,
    link_memo: Memo<ExHistogram>,
    storage_memo: Memo<ExHistogram>,
    chain_memo: Memo<(ExHistogram, Counter)>,
    tracer_call_memo: Memo<(Histogram, Counter)>,
}

impl Metrics {
    /// Every metric, with `max_label_values` values per producer label and the other bounds at
    /// their defaults.
    pub fn new(max_label_values: usize) -> Self {
        Metrics::with_bounds(Bounds { max_values: max_label_values, ..Bounds::default() })
    }

    /// Creates and registers every metric; `bounds` limit the producer-supplied labels.
    pub fn with_bounds(bounds: Bounds) -> Self {
        let (truncated, folded, series) = (Family::<LabelName, Counter>::default(), Family::<LabelName, Counter>::default(), Family::<FamilyLabel, Counter>::default());
        let label = |label: &'static str| LabelGuard::new(bounds, truncated.get_or_create(&LabelName { label }).clone(), folded.get_or_create(&LabelName { label }).clone());
        let family = |family: &'static str| SeriesGuard::new(bounds, series.get_or_create(&FamilyLabel { family }).clone());
        let mut m = Metrics {
            registry: Registry::default(),
            events_ingested: Family::default(),
            events_rejected: Family::default(),
            dead_letters: Family::default(),
            dead_letters_without_record: Counter::default(),
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
            runs_awaiting_journal: Gauge::default(),
            chains_unknown: Family::default(),
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
            chains: label("chain"),
            links: label("link"),
            storages: label("storage"),
            tracers: label("tracer"),
            link_series: family("vcon_otel_link_duration_seconds"),
            storage_series: family("vcon_otel_storage_duration_seconds"),
            chain_series: family("vcon_otel_chain_duration_seconds"),
            tracer_call_series: family("vcon_otel_tracer_duration_seconds"),
            tracer_series: family("vcon_otel_tracer_retries"),
            tracer_failure_series: family("vcon_otel_tracer_failures"),
            labels_truncated: truncated.clone(),
            labels_folded: folded.clone(),
            series_folded: series.clone(),
            link_memo: Memo::default(),
            storage_memo: Memo::default(),
            chain_memo: Memo::default(),
            tracer_call_memo: Memo::default(),
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
        r.register(
            "vcon_otel_dead_letters_without_record",
            "Dead letters written without the record: the entry had none, or it was held by an open run and was gone from the stream when re-read",
            m.dead_letters_without_record.clone(),
        );
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
        r.register("vcon_otel_runs_awaiting_journal", "Ended runs whose root waits for journal entries another replica is still writing", m.runs_awaiting_journal.clone());
        r.register("vcon_otel_chains_unknown", "Ended runs exported without a hash chain, by reason (incomplete, unreadable, full, no_seq)", m.chains_unknown.clone());
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
        r.register("vcon_otel_label_values_truncated", "Producer label values cut to metrics.max_label_len bytes, by label", m.labels_truncated.clone());
        r.register("vcon_otel_label_values_folded", "Producer label values reported as other: metrics.max_label_values values were taken, by label", m.labels_folded.clone());
        r.register("vcon_otel_series_folded", "Observations whose producer labels were reported as other: metrics.max_series_per_family combinations were taken, by family", m.series_folded.clone());
        let build = Family::<VersionLabel, Gauge>::default();
        build.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("vcon_otel_build_info", "Build information; always 1", build);
    }

    /// Records one tracer invocation (latency and outcome) under bounded labels.
    pub fn tracer_call(&self, tracer: &str, side: &'static str, outcome: &'static str, seconds: f64) {
        let (duration, calls) = self.tracer_call_memo.get(&[tracer, side, outcome], |b| {
            let tracer = fold(&self.tracer_call_series, self.tracers.admit(tracer, b), &[side, outcome], b);
            let labels = TracerLabels { tracer, side, outcome };
            (self.tracer_duration.get_or_create(&labels).clone(), self.tracer_calls.get_or_create(&labels).clone())
        });
        duration.observe(seconds);
        calls.inc();
    }

    /// Bounded labels of a hosted tracer's retries, queue depth and DLQ pushes.
    pub fn tracer_label(&self, tracer: &str) -> TracerLabel {
        let b = &mut Bumps::new();
        TracerLabel { tracer: fold(&self.tracer_series, self.tracers.admit(tracer, b), &[], b) }
    }

    /// Bounded labels of `vcon_otel_tracer_failures_total`.
    pub fn tracer_reason_labels(&self, tracer: &str, reason: &'static str) -> TracerReasonLabels {
        let b = &mut Bumps::new();
        TracerReasonLabels { tracer: fold(&self.tracer_failure_series, self.tracers.admit(tracer, b), &[reason], b), reason }
    }

    /// Observes a link span's duration on `vcon_otel_link_duration_seconds` under bounded labels,
    /// with its trace as exemplar.
    pub fn observe_link(&self, chain: &str, link: &str, outcome: &'static str, seconds: f64, trace_id: &[u8; 16]) {
        let h = self.link_memo.get(&[chain, link, outcome], |b| {
            let (chain, link) = fold2(&self.link_series, self.chains.admit(chain, b), self.links.admit(link, b), outcome, b);
            self.link_duration.get_or_create(&LinkLabels { chain, link, outcome }).clone()
        });
        h.observe(seconds, exemplar(trace_id), None);
    }

    /// Observes a storage span's duration on `vcon_otel_storage_duration_seconds`, as
    /// [`Metrics::observe_link`].
    pub fn observe_storage(&self, chain: &str, storage: &str, outcome: &'static str, seconds: f64, trace_id: &[u8; 16]) {
        let h = self.storage_memo.get(&[chain, storage, outcome], |b| {
            let (chain, storage) = fold2(&self.storage_series, self.chains.admit(chain, b), self.storages.admit(storage, b), outcome, b);
            self.storage_duration.get_or_create(&StorageLabels { chain, storage, outcome }).clone()
        });
        h.observe(seconds, exemplar(trace_id), None);
    }

    /// Observes a finished run: its duration on `vcon_otel_chain_duration_seconds` (trace as
    /// exemplar) and one on `vcon_otel_runs_total`, under the same bounded labels (one guard: the
    /// two families always carry the same label sets).
    pub fn observe_chain(&self, chain: &str, outcome: &'static str, seconds: f64, trace_id: &[u8; 16]) {
        let (duration, runs) = self.chain_memo.get(&[chain, outcome], |b| {
            let labels = ChainLabels { chain: fold(&self.chain_series, self.chains.admit(chain, b), &[outcome], b), outcome };
            (self.chain_duration.get_or_create(&labels).clone(), self.runs.get_or_create(&labels).clone())
        });
        duration.observe(seconds, exemplar(trace_id), None);
        runs.inc();
    }

    /// The exposition in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

/// `value`, or `other` when its family has no room for this combination.
fn fold(series: &SeriesGuard, value: String, fixed: &[&str], bumps: &mut Bumps) -> String {
    if series.admit(&[&value], fixed, bumps) { value } else { OTHER.to_string() }
}

fn fold2(series: &SeriesGuard, a: String, b: String, outcome: &str, bumps: &mut Bumps) -> (String, String) {
    if series.admit(&[&a, &b], &[outcome], bumps) { (a, b) } else { (OTHER.to_string(), OTHER.to_string()) }
}

/// An exemplar for a trace ID.
pub fn exemplar(trace_id: &[u8; 16]) -> Option<TraceExemplar> {
    Some(TraceExemplar { trace_id: crate::ids::hex(trace_id) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        let m = Metrics::new(2);
        for (chain, outcome) in [("a", "complete"), ("b", "complete"), ("c", "complete"), ("a", "failed"), ("c", "complete")] {
            m.observe_chain(chain, outcome, 0.1, &[1; 16]);
        }
        let text = m.encode();
        for want in ["chain=\"a\",outcome=\"complete\"} 1", "chain=\"b\",outcome=\"complete\"} 1", "chain=\"other\",outcome=\"complete\"} 2", "chain=\"a\",outcome=\"failed\"} 1"] {
            assert!(text.contains(&format!("vcon_otel_runs_total{{{want}")), "{want}: {text}");
        }
        assert!(!text.contains("chain=\"c\""), "{text}");
        assert!(text.contains("vcon_otel_label_values_folded_total{label=\"chain\"} 2"), "each folded observation is counted, remembered or not: {text}");
    }

    #[test]
    fn chain_link_combinations_past_the_family_bound_are_folded_and_counted() {
        let m = Metrics::with_bounds(Bounds { max_values: 100, max_len: 64, max_series: 10 });
        for c in 0..5 {
            for l in 0..5 {
                m.observe_link(&format!("c{c}"), &format!("l{l}"), "ok", 0.1, &[0; 16]);
            }
        }
        let text = m.encode();
        let series = text.lines().filter(|l| l.starts_with("vcon_otel_link_duration_seconds_count{")).count();
        assert_eq!(series, 11, "10 combinations and one other×other: {text}");
        assert!(text.contains("vcon_otel_link_duration_seconds_count{chain=\"other\",link=\"other\",outcome=\"ok\"} 15"), "{text}");
        assert!(text.contains("vcon_otel_series_folded_total{family=\"vcon_otel_link_duration_seconds\"} 15"), "{text}");
    }

    /// Every family with producer labels filled past its bound, every label value as long as
    /// allowed and made of characters the exposition escapes, every bucket with an exemplar.
    #[test]
    fn worst_case_exposition_stays_under_a_few_megabytes() {
        let b = Bounds::default();
        let m = Metrics::with_bounds(b);
        let name = |i: usize| format!("{i}{}", "\"".repeat(b.max_len));
        let secs = [0.0001, 0.001, 0.002, 0.004, 0.008, 0.02, 0.04, 0.08, 0.2, 0.4, 0.8, 2.0, 4.0, 8.0, 20.0, 50.0, 200.0, 900.0];
        // 25 × 21 value pairs (within max_values per label) make more than max_series combinations.
        for i in 0..b.max_series + 25 {
            let (x, y) = (name(i % 25), name(100 + i / 25));
            let trace = [i as u8; 16];
            for s in secs {
                for o in ["ok", "halted", "error"] {
                    m.observe_link(&x, &y, o, s, &trace);
                    m.observe_storage(&x, &y, o, s, &trace);
                    m.tracer_call(&name(i), "conserver", o, s);
                    m.tracer_call(&name(i), "bridge", o, s);
                }
                for o in ["complete", "halted", "failed", "incomplete"] {
                    m.observe_chain(&name(i), o, s, &trace);
                }
            }
            m.tracer_retries.get_or_create(&m.tracer_label(&name(i))).inc();
            m.tracer_queue_depth.get_or_create(&m.tracer_label(&name(i))).set(1);
            m.dlq_pushes.get_or_create(&m.tracer_label(&name(i))).inc();
        }
        let size = m.encode().len();
        eprintln!("worst-case /metrics with the default bounds: {size} bytes");
        assert!(size < 6 << 20, "{size} bytes");
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
