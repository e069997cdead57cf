//! The export stage: batches assembler outputs, sends them to the sink, retries until accepted, then
//! hands the acknowledgements on.
//!
//! Delivery contract: outputs are sent in the order received, one request at a time, so when a
//! batch is accepted every earlier batch was too. A retryable failure is retried with capped
//! exponential backoff (or the server's delay) **without giving up**; meanwhile the bounded input
//! channel fills and the reader upstream pauses, so memory stays bounded through a collector
//! outage. A permanent rejection is counted, its entries are dead-lettered, then acknowledged. On
//! shutdown, a batch still failing when the grace deadline passes is left unacknowledged: its
//! entries stay pending in Redis and are exported again after a restart, with the same IDs.

pub mod client;
pub mod terminal;

use crate::assemble::{EntryId, FinishedSpan, Output};
use crate::compliance::audit_log::{AuditLog, AuditRecord};
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel};
use crate::otlp::{kv_int, kv_str, ExportTraceServiceRequest, InstrumentationScope, Resource, ResourceSpans, ScopeSpans};
use client::{Client, SendError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What the export stage acknowledges after the collector accepted a batch.
#[derive(Debug, Default)]
pub struct AckBatch {
    pub ids: Vec<EntryId>,
    /// Trace IDs of runs whose root span was accepted (their completion markers are set).
    pub done: Vec<[u8; 16]>,
}

/// Where spans go.
pub enum Sink {
    Otlp(Client),
    Terminal(terminal::Terminal),
    Both(Client, terminal::Terminal),
}

/// Writes the entries of a permanently rejected batch to the dead-letter stream.
pub trait DeadLetters: Send {
    fn export_rejected(&mut self, ids: &[EntryId], detail: &str) -> impl std::future::Future<Output = ()> + Send;
}

/// No dead-letter stream (the demo).
pub struct NoDeadLetters;
impl DeadLetters for NoDeadLetters {
    async fn export_rejected(&mut self, _ids: &[EntryId], _detail: &str) {}
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_name: String,
    pub max_batch_spans: usize,
    pub max_batch_delay: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Runs until `rx` closes (then flushes) or `give_up` turns true while a batch is failing.
#[allow(clippy::too_many_arguments)]
pub async fn run<D: DeadLetters>(
    mut rx: mpsc::Receiver<Output>,
    mut sink: Sink,
    acks: mpsc::Sender<AckBatch>,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut dead: D,
    mut audit: Option<AuditLog>,
    mut give_up: watch::Receiver<bool>,
) {
    let mut open = true;
    while open {
        let mut batch: Vec<Output> = Vec::new();
        let mut spans = 0usize;
        match rx.recv().await {
            Some(o) => {
                spans += matches!(o, Output::Span(_)) as usize;
                batch.push(o);
            }
            None => break,
        }
        let deadline = tokio::time::Instant::now() + settings.max_batch_delay;
        while spans < settings.max_batch_spans {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(o)) => {
                    spans += matches!(o, Output::Span(_)) as usize;
                    batch.push(o);
                }
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut ack = AckBatch::default();
        let mut finished: Vec<FinishedSpan> = Vec::with_capacity(spans);
        let mut audits = Vec::new();
        for o in batch {
            match o {
                Output::Span(s) => finished.push(s),
                Output::Ack(ids) => ack.ids.extend(ids),
                Output::Audit(r) => audits.push(r),
            }
        }
        if !finished.is_empty() {
            metrics.export_batch_spans.observe(finished.len() as f64);
            let n = finished.len();
            let (req, span_acks) = build_request(&settings.service_name, finished);
            if !deliver(&mut sink, &req, n, &span_acks, &settings, &metrics, &mut dead, &mut give_up).await {
                tracing::warn!(spans = n, "shutdown deadline passed while the collector was failing; the entries stay pending and are exported after a restart");
                return;
            }
            ack.ids.extend(span_acks.ids);
            ack.done.extend(span_acks.done);
        }
        if let Some(log) = audit.as_mut() {
            if !write_audit(log, &audits, &metrics, &mut give_up).await {
                return;
            }
        }
        if !ack.ids.is_empty() && acks.send(ack).await.is_err() {
            return;
        }
    }
}

/// Sends one batch until accepted or permanently rejected; false when told to give up first.
async fn deliver<D: DeadLetters>(
    sink: &mut Sink,
    req: &ExportTraceServiceRequest,
    n: usize,
    span_acks: &AckBatch,
    settings: &Settings,
    metrics: &Metrics,
    dead: &mut D,
    give_up: &mut watch::Receiver<bool>,
) -> bool {
    let n = n as u64;
    let (client, term) = match sink {
        Sink::Terminal(t) => {
            t.show(req);
            metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "accepted" }).inc_by(n);
            return true;
        }
        Sink::Otlp(c) => (c, None),
        Sink::Both(c, t) => (c, Some(t)),
    };
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let result = client.send(req).await;
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(acc) => {
                metrics.tracer_call("otlp_export", "bridge", "ok", took);
                let rejected = acc.rejected_spans.clamp(0, n as i64) as u64;
                metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "accepted" }).inc_by(n - rejected);
                if rejected > 0 || !acc.message.is_empty() {
                    metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "rejected" }).inc_by(rejected);
                    tracing::warn!(rejected, message = %acc.message, "collector accepted the batch partially; the rejected spans are not retried");
                }
                if let Some(t) = term {
                    t.show(req);
                }
                return true;
            }
            Err(SendError::Permanent { detail }) => {
                metrics.tracer_call("otlp_export", "bridge", "error", took);
                metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "failed" }).inc_by(n);
                tracing::error!(spans = n, error = %detail, "collector rejected the batch permanently; its entries go to the dead-letter stream");
                dead.export_rejected(&span_acks.ids, &detail).await;
                return true;
            }
            Err(SendError::Retryable { reason, delay, detail }) => {
                let outcome = if reason == "timeout" { "timeout" } else { "error" };
                metrics.tracer_call("otlp_export", "bridge", outcome, took);
                metrics.export_retries.get_or_create(&ReasonLabel { reason }).inc();
                let backoff = backoff(attempt, settings.initial_backoff, settings.max_backoff);
                // The server's delay, when it gave one, wins over our own backoff.
                let wait = delay.unwrap_or(backoff);
                if attempt == 0 || attempt.is_power_of_two() {
                    tracing::warn!(attempt, error = %detail, wait_ms = wait.as_millis() as u64, "export failed; retrying");
                }
                attempt = attempt.saturating_add(1);
                if *give_up.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = give_up.changed() => return false,
                }
            }
        }
    }
}

/// Appends and fsyncs the batch's audit records before its entries are acknowledged; retries
/// (e.g. a full disk) until it works or shutdown gives up, leaving the entries pending.
async fn write_audit(log: &mut AuditLog, records: &[AuditRecord], metrics: &Metrics, give_up: &mut watch::Receiver<bool>) -> bool {
    if records.is_empty() {
        return true;
    }
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        match log.append_batch(records) {
            Ok(()) => {
                metrics.tracer_call("audit_log", "bridge", "ok", started.elapsed().as_secs_f64());
                return true;
            }
            Err(e) => {
                metrics.tracer_call("audit_log", "bridge", "error", started.elapsed().as_secs_f64());
                metrics.tracer_retries.get_or_create(&crate::metrics::TracerLabel { tracer: "audit_log".into() }).inc();
                tracing::error!(error = %e, records = records.len(), "cannot write the audit log; retrying (entries stay unacknowledged)");
                let wait = backoff(attempt, Duration::from_millis(200), Duration::from_secs(10));
                attempt += 1;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = give_up.changed() => return false,
                }
            }
        }
    }
}

/// Capped exponential backoff with ±25 % jitter.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let base = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    let jitter = rand::random_range(0.75..1.25);
    base.mul_f64(jitter).min(max)
}

/// Groups spans by producer instance into one request; returns it with the spans' acknowledgements.
pub fn build_request(service_name: &str, spans: Vec<FinishedSpan>) -> (ExportTraceServiceRequest, AckBatch) {
    let mut acks = AckBatch::default();
    let mut by_producer: BTreeMap<Option<(String, u64)>, Vec<crate::otlp::Span>> = BTreeMap::new();
    for s in spans {
        acks.ids.extend(s.acks);
        acks.done.extend(s.root_of);
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
    (ExportTraceServiceRequest { resource_spans }, acks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        assert!(backoff(0, i, m) <= Duration::from_millis(125));
        assert!(backoff(3, i, m) >= Duration::from_millis(600));
        assert!(backoff(30, i, m) <= m);
    }
}
