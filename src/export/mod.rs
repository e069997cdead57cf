//! The export stage: batches the assembler's outputs, sends them to the sink, retries until the
//! collector accepted them, writes the batch's audit records, then hands the acknowledgements on.
//!
//! Delivery contract: outputs are sent in the order received, one request at a time, so when a
//! batch is accepted every earlier batch was too. A retryable failure is retried with capped
//! exponential backoff (or the server's delay) **without giving up**; meanwhile the bounded input
//! channel fills and the reader upstream pauses at `export.max_inflight` unacknowledged entries, so
//! memory stays bounded through a collector outage. A permanent rejection is counted, its entries
//! are dead-lettered with their records, then acknowledged. An entry held by an open run reaches
//! this stage with its ID only (`assemble::run`): only when it is dead-lettered is its record read
//! again from the stream by ID (`XRANGE`); if the entry is gone from the stream by then (trimmed by
//! the producer's `maxlen`, deleted), it is dead-lettered with its ID and reason
//! `export_rejected_record_gone` and counted (`vcon_otel_dead_letters_without_record_total`). On shutdown, a batch still failing when
//! the grace deadline passes is left unacknowledged: its entries stay pending in Redis and are
//! exported again after a restart, with the same IDs.

pub mod client;
pub mod request;
pub mod terminal;

use crate::assemble::Output;
use crate::compliance::audit_log::{AuditLog, AuditRecord};
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel};
use crate::retry::{self, Attempts, Failure, Policy, Reason};
use crate::stream::{Ack, DeadLetter, DeadLetters, Entry};
use client::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Where spans go.
pub enum Sink {
    Otlp(Client),
    Terminal(terminal::Terminal),
    Both(Client, terminal::Terminal),
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_name: String,
    pub max_batch_spans: usize,
    pub max_batch_delay: Duration,
    pub retry: Policy,
}

/// The export stage and everything it owns.
pub struct Stage {
    pub sink: Sink,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub dead: Arc<dyn DeadLetters>,
    pub audit: Option<AuditLog>,
}

impl Stage {
    /// Runs until `rx` closes (then flushes) or `give_up` turns true while a batch is failing.
    /// The batch and its spans live in buffers kept from one batch to the next: a batch's
    /// buffers are hundreds of kilobytes, and fresh ones each time cost page faults.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Output>, acks: mpsc::Sender<Ack>, mut give_up: watch::Receiver<bool>) {
        let cap = self.settings.max_batch_spans + 1;
        let (mut batch, mut finished) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let mut audits = Vec::new();
        while let Some(open) = next_batch(&mut rx, &self.settings, &mut batch).await {
            let mut ack = Ack::default();
            for o in batch.drain(..) {
                match o {
                    Output::Span(mut s) => {
                        audits.extend(s.terminal.take().map(|t| *t));
                        finished.push(s);
                    }
                    Output::Ack(entries) => ack.ids.extend(entries.into_iter().map(|e| e.id)),
                    Output::Audit(r) => audits.push(*r),
                }
            }
            if !finished.is_empty() {
                self.metrics.export_batch_spans.observe(finished.len() as f64);
                let n = finished.len();
                let (body, entries, done) = request::build(&self.settings.service_name, &mut finished);
                if !self.deliver(&body.into(), n, &entries, &mut give_up).await {
                    tracing::warn!(spans = n, "shutdown deadline passed while the collector was failing; the entries stay pending and are exported after a restart");
                    return;
                }
                ack.ids.extend(entries.into_iter().map(|e| e.id));
                ack.done.extend(done);
            }
            if !self.write_audit(&audits, &mut give_up).await {
                return;
            }
            audits.clear();
            if !ack.is_empty() && acks.send(ack).await.is_err() {
                return;
            }
            if !open {
                break;
            }
        }
    }

    /// Sends one batch until accepted or permanently rejected; false when told to give up first.
    /// The bridge's `export` span: attempts made and how it ended (`record_outcome`).
    #[tracing::instrument(name = "export", level = "debug", skip_all, fields(otel.kind = "client", vcon_otel.export.spans = n, messaging.batch.message_count = entries.len(), vcon_otel.export.attempts = tracing::field::Empty, vcon_otel.export.outcome = tracing::field::Empty, otel.status_code = tracing::field::Empty))]
    async fn deliver(&mut self, body: &bytes::Bytes, n: usize, entries: &[Entry], give_up: &mut watch::Receiver<bool>) -> bool {
        let n = n as u64;
        let metrics = self.metrics.clone();
        let (client, term) = match &mut self.sink {
            Sink::Terminal(t) => {
                t.show(&request::decode(body));
                metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "accepted" }).inc_by(n);
                return true;
            }
            Sink::Otlp(c) => (&*c, None),
            Sink::Both(c, t) => (&*c, Some(t)),
        };
        let mut attempts = Attempts::new(self.settings.retry);
        let mut log = |attempt: u32, f: &Failure, wait: Duration| {
            metrics.export_retries.get_or_create(&ReasonLabel { reason: f.reason().as_str() }).inc();
            if retry::worth_logging(attempt) {
                tracing::warn!(attempt, error = %f, wait_ms = wait.as_millis() as u64, "export failed; retrying");
            }
        };
        let out = loop {
            let started = Instant::now();
            let r = client.send(body).await;
            let outcome = match &r {
                Ok(_) => "ok",
                Err(f) if f.reason() == Reason::Timeout => "timeout",
                Err(_) => "error",
            };
            metrics.export_duration.get_or_create(&OutcomeLabel { outcome }).observe(started.elapsed().as_secs_f64());
            if let Some(o) = attempts.judge(r, give_up, &mut log).await {
                break o;
            }
        };
        record_outcome(&out);
        match out {
            retry::Outcome::Done { value: acc, .. } => {
                let rejected = acc.rejected_spans.clamp(0, n as i64) as u64;
                metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "accepted" }).inc_by(n - rejected);
                if rejected > 0 || !acc.message.is_empty() {
                    metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "rejected" }).inc_by(rejected);
                    tracing::warn!(rejected, message = %acc.message, "collector accepted the batch partially; the rejected spans are not retried");
                }
                if let Some(t) = term {
                    t.show(&request::decode(body));
                }
                true
            }
            retry::Outcome::GaveUp { failure, .. } => {
                metrics.spans_exported.get_or_create(&OutcomeLabel { outcome: "failed" }).inc_by(n);
                tracing::error!(spans = n, error = %failure, "collector rejected the batch permanently; its entries go to the dead-letter stream");
                dead_letter(&*self.dead, entries, &failure.to_string(), give_up).await
            }
            retry::Outcome::Stopped { .. } => false,
        }
    }

    /// Appends and fsyncs the batch's audit records before its entries are acknowledged; retries
    /// (e.g. a full disk) until it works or shutdown gives up, leaving the entries pending.
    async fn write_audit(&mut self, records: &[AuditRecord], give_up: &mut watch::Receiver<bool>) -> bool {
        let Some(log) = self.audit.as_mut() else { return true };
        if records.is_empty() {
            return true;
        }
        let metrics = self.metrics.clone();
        let mut attempts = Attempts::new(AUDIT_RETRY);
        let mut on_failure = |attempt: u32, f: &Failure, _: Duration| {
            if retry::worth_logging(attempt) {
                tracing::error!(attempt, error = %f, records = records.len(), "cannot write the audit log; retrying (entries stay unacknowledged)");
            }
        };
        let out = loop {
            let r = log.append_batch(records).map_err(|e| Failure::retryable(Reason::Io, format!("audit log: {e}")));
            metrics.audit_writes.get_or_create(&OutcomeLabel { outcome: if r.is_ok() { "ok" } else { "error" } }).inc();
            if let Some(o) = attempts.judge(r, give_up, &mut on_failure).await {
                break o;
            }
        };
        matches!(out, retry::Outcome::Done { .. })
    }
}

/// Dead-letters the entries of a permanently rejected batch, each with its record (reason
/// `export_rejected`). An entry held by an open run kept only its ID, so its record is read again
/// from the stream first ([`DeadLetters::reread`]); when it is no longer there, the letter carries
/// the entry ID alone, with reason `export_rejected_record_gone` (counted by the writer, logged as
/// one warning per batch). False when told to give up first (the entries stay pending).
async fn dead_letter(dead: &dyn DeadLetters, entries: &[Entry], detail: &str, give_up: &mut watch::Receiver<bool>) -> bool {
    let held: Vec<&str> = entries.iter().filter(|e| e.payload.is_none()).map(|e| e.id.as_str()).collect();
    let Some(records) = dead.reread(&held, give_up).await else { return false };
    let mut records = records.into_iter();
    let filled: Vec<Entry> = entries
        .iter()
        .map(|e| match &e.payload {
            Some(_) => e.clone(),
            None => Entry { id: e.id.clone(), payload: records.next().flatten() },
        })
        .collect();
    let gone = filled.iter().filter(|e| e.payload.is_none()).count();
    if gone > 0 {
        tracing::warn!(entries = gone, "records of rejected entries are no longer in the stream (trimmed or deleted); their dead letters carry only the entry ID");
    }
    let gone_detail = format!("{detail}; the record was no longer in the stream when it was dead-lettered (trimmed or deleted), so this letter has only the entry ID");
    let letters: Vec<DeadLetter<'_>> = filled
        .iter()
        .map(|entry| match entry.payload {
            Some(_) => DeadLetter { stage: "export", reason: "export_rejected", detail, entry },
            None => DeadLetter { stage: "export", reason: "export_rejected_record_gone", detail: &gone_detail, entry },
        })
        .collect();
    dead.write(&letters, give_up).await
}

/// Puts the attempt count and the outcome (`accepted`, `partial`, `rejected`, `stopped`) on the
/// current `export` span; a rejection marks it failed.
fn record_outcome(out: &retry::Outcome<client::Accepted>) {
    let (attempts, outcome) = match out {
        retry::Outcome::Done { value, attempts } => (*attempts, if value.rejected_spans > 0 { "partial" } else { "accepted" }),
        retry::Outcome::GaveUp { attempts, .. } => (*attempts, "rejected"),
        retry::Outcome::Stopped { attempts, .. } => (*attempts, "stopped"),
    };
    let span = tracing::Span::current();
    span.record("vcon_otel.export.attempts", attempts).record("vcon_otel.export.outcome", outcome);
    if outcome == "rejected" {
        span.record("otel.status_code", "error");
    }
}

const AUDIT_RETRY: Policy = Policy::forever(Duration::from_millis(200), Duration::from_secs(10));

/// The next batch, into `batch` (empty on entry): up to `max_batch_spans` spans or whatever
/// arrived within `max_batch_delay` of the first output. `Some(false)` once the input closed,
/// `None` when it closed with nothing pending.
async fn next_batch(rx: &mut mpsc::Receiver<Output>, s: &Settings, batch: &mut Vec<Output>) -> Option<bool> {
    let first = rx.recv().await?;
    let mut spans = matches!(first, Output::Span(_)) as usize;
    batch.push(first);
    let deadline = tokio::time::Instant::now() + s.max_batch_delay;
    while spans < s.max_batch_spans {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(o)) => {
                spans += matches!(o, Output::Span(_)) as usize;
                batch.push(o);
            }
            Ok(None) => return Some(false),
            Err(_) => break,
        }
    }
    Some(true)
}
