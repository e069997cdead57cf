//! Hosted tracer modules: the seeds' tracers, run by the bridge instead of inline in the conserver.
//!
//! Each configured tracer (`tracers: {NAME: {module, options}}`) runs in its own task with its own
//! **consumer group** on the event stream (`vcon-otel:tracer:{NAME}`), so the stream itself is its
//! bounded, durable queue: a slow or failing tracer only lags its own group, never the OTLP export
//! or the other tracers; an entry is acknowledged in that group only after the tracer delivered it
//! (or gave up after its retries, counted and optionally DLQ'd), so a bridge crash loses nothing —
//! the pending entries are re-read. Queue depth = the group's lag plus pending entries.
//!
//! Each invocation is measured (`vcon_otel_tracer_duration_seconds`, `vcon_otel_tracer_calls_total`
//! with `side="bridge"`), retries are counted, and its outcome is exported as a `tracer {NAME}` span,
//! a child of the link (or root) span of the step it belongs to, carrying a `tracer.outcome` event.
//!
//! Adding a module: one file with a `Config` (serde, `deny_unknown_fields`) and a type with
//! `async fn handle(&mut self, step: &Step<'_>) -> Result<Delivered, TracerError>`, one variant in
//! [`Module`], one arm in [`Module::handle`] and one in [`build`].

pub mod jlinc;
pub mod postgres;
pub mod runner;
pub mod statsd;
pub mod webhook;

use crate::assemble::StepHash;
use crate::event::Record;
use std::time::Duration;

/// What a tracer sees of one record.
pub struct Step<'a> {
    pub record: &'a Record,
    /// `Vcon.hash` of the step's vCon state, when the record carried a snapshot.
    pub hash: Option<&'a StepHash>,
    /// The stored vCon text of the snapshot (read only when the module asks for it).
    pub vcon_json: Option<&'a [u8]>,
    /// The chain name, from the record or the conserver's config.
    pub chain: Option<&'a str>,
}

/// A delivered invocation: attributes for the outcome span (e.g. the JLINC event id).
#[derive(Debug, Default)]
pub struct Delivered {
    pub attributes: Vec<(String, String)>,
    /// The module has nothing to do for this record (no span, not counted).
    pub skipped: bool,
}

/// Why an invocation failed; `Retryable` ones are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("{detail}")]
    Retryable { detail: String, delay: Option<Duration> },
    #[error("{detail}")]
    Permanent { detail: String },
}

impl TracerError {
    /// Classifies an HTTP answer: 429, 5xx → retryable (with `Retry-After`), other 4xx → permanent.
    pub fn from_status(status: u16, retry_after: Option<Duration>, what: &str) -> TracerError {
        if status == 429 || status >= 500 {
            TracerError::Retryable { detail: format!("{what}: HTTP {status}"), delay: retry_after }
        } else {
            TracerError::Permanent { detail: format!("{what}: HTTP {status}") }
        }
    }

    /// Connection failures and timeouts are retryable.
    pub fn from_reqwest(e: &reqwest::Error, what: &str) -> TracerError {
        TracerError::Retryable { detail: format!("{what}: {e}"), delay: None }
    }
}

/// `Retry-After` in seconds.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).map(Duration::from_secs)
}

/// The hosted modules.
pub enum Module {
    Webhook(webhook::Webhook),
    Statsd(statsd::Statsd),
    Jlinc(jlinc::Jlinc),
    Postgres(postgres::Postgres),
}

impl Module {
    /// One invocation for `steps`: a batch for modules that batch ([`Module::batches`]), else
    /// exactly one step.
    pub async fn handle(&mut self, steps: &[Step<'_>]) -> Result<Delivered, TracerError> {
        match self {
            Module::Webhook(t) => t.handle(steps).await,
            Module::Statsd(t) => t.handle(&steps[0]).await,
            Module::Jlinc(t) => t.handle(&steps[0]).await,
            Module::Postgres(t) => t.handle_batch(steps).await,
        }
    }

    /// Whether the module writes all the entries of one read in one invocation.
    pub fn batches(&self) -> bool {
        match self {
            Module::Postgres(_) => true,
            Module::Webhook(w) => w.batches(),
            _ => false,
        }
    }

    /// Whether the module needs the stored vCon text (not just its hash).
    pub fn needs_vcon(&self) -> bool {
        matches!(self, Module::Jlinc(j) if !j.hash_event_data())
    }

    pub fn module_name(&self) -> &'static str {
        match self {
            Module::Webhook(_) => "webhook",
            Module::Statsd(_) => "statsd",
            Module::Jlinc(_) => "jlinc",
            Module::Postgres(_) => "postgres",
        }
    }
}

/// Options every hosted tracer takes besides its module's own.
#[derive(Debug, Clone)]
pub struct Common {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts per record before giving up (retryable failures only).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// On final failure, push the vCon UUID to the conserver's `DLQ:{ingress_list}`.
    pub dlq_vcon_on_error: bool,
    /// The ingress list for DLQ pushes when the record does not name one (tracer-only producers).
    pub dlq_ingress_list: Option<String>,
}

/// A configured hosted tracer.
pub struct Hosted {
    pub name: String,
    pub module: Module,
    pub common: Common,
    /// Chains this tracer runs for; empty = every chain (as upstream).
    pub chains: Vec<String>,
}

/// Builds a module from its `options` (already validated by `config`).
pub fn build(module: &str, options: &serde_json::Value) -> Result<Module, String> {
    let opts = options.clone();
    match module {
        "webhook" => serde_json::from_value(opts).map(|c| Module::Webhook(webhook::Webhook::new(c))).map_err(|e| e.to_string()),
        "statsd" => serde_json::from_value(opts).map_err(|e| e.to_string()).and_then(|c| statsd::Statsd::new(c).map(Module::Statsd)),
        "jlinc" => serde_json::from_value(opts).map(|c| Module::Jlinc(jlinc::Jlinc::new(c))).map_err(|e| e.to_string()),
        "postgres" => serde_json::from_value(opts).map_err(|e| e.to_string()).and_then(|c| postgres::Postgres::new(c).map(Module::Postgres)),
        other => Err(format!("{other:?} is not a hosted module (available: audit_log, webhook, statsd, jlinc, postgres)")),
    }
}
