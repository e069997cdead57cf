//! The bridge as one value: [`Bridge::build`] validates and builds everything that needs no port
//! and no connection (exporter client, hosted tracer modules, the audit log file, chain naming);
//! [`Bridge::run`] takes already-bound listeners, connects, runs every stage until `shutdown`
//! resolves, drains under `shutdown_grace_secs` and returns a [`DrainReport`] naming any stage that
//! missed the deadline. Tests run it in-process on `127.0.0.1:0` listeners or as a child process.
//!
//! The stages (`stages`), each a task joined by bounded channels:
//! ```text
//! stream::Group::read ─Vec<Entry>─▶ enrich ─Vec<Item>─▶ assemble ─Output─▶ export::Stage ─Ack─▶ stream::Acker
//!   (max_inflight)      (decode, hash,       (spans, open    (batch, send,     (XACK, done
//!                        dead letters)        runs, idle)     retry, audit)     markers)
//! hosted tracers: stream::Group::read ─▶ enrich ─▶ deliver ─▶ stream::Acker   (one group each;
//!                 outcome spans offered to export::Stage without waiting)
//! ```
//! The main pipeline's enrich is two tasks (`Enricher::prepare`, then `Enricher::complete`: the
//! settle and journal round trip, in read order) with one read between them, so one read's journal
//! write overlaps the next read's snapshot reads.
//!
//! Every channel is bounded; the reader stops reading at `export.max_inflight` unacknowledged
//! entries, so a slow collector pauses reading instead of growing memory or dropping data.

mod assemble_task;
mod drain;
mod ends;
pub mod preflight;
mod stages;

pub use drain::DrainReport;

use crate::assemble;
use crate::compliance::audit_log::AuditLog;
use crate::config::Config;
use crate::enrich::Naming;
use crate::export::{self, client::Client, terminal::Terminal, Sink};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::retry::Policy;
use crate::stream::Entry;
use crate::tracers::{Built, Hosted};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Where records come from.
pub enum Source {
    /// The Redis stream of `stream.key`, with the consumer group, acks and dead letters.
    Redis,
    /// An in-process channel (the demo): no acknowledgements, no hosted tracers.
    Local(mpsc::Receiver<Entry>),
}

/// Listeners bound by the caller (so tests can pass `127.0.0.1:0`).
#[derive(Default)]
pub struct Listeners {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: Option<TcpListener>,
    /// `POST /v1/events` (when `http_ingest` is configured).
    pub ingest: Option<TcpListener>,
}

/// Everything built, nothing connected.
pub struct Bridge {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Arc<Health>,
    pub(crate) naming: Arc<Naming>,
    pub(crate) assemble: assemble::Settings,
    pub(crate) export: export::Settings,
    pub(crate) sink: Sink,
    pub(crate) audit: Option<AuditLog>,
    pub(crate) hosted: Vec<Hosted>,
    pub(crate) source: Source,
}

impl Bridge {
    /// Builds the bridge for `run` from a validated config. Errors name the config key.
    pub fn build(config: Config) -> anyhow::Result<Bridge> {
        let export_cfg = config
            .export
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("export.endpoint: no OTLP endpoint configured (hint: set export.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)"))?;
        let sink = Sink::Otlp(Client::new(export_cfg)?);
        let mut b = Bridge::with_sink(config, sink)?;
        b.audit = match &b.config.audit_log {
            Some(a) => Some(AuditLog::open(a.clone()).map_err(|e| {
                let name = b.config.audit_log_name.as_deref().unwrap_or("audit_log");
                match e.kind() {
                    std::io::ErrorKind::InvalidInput => anyhow::anyhow!("tracers.{name}.options.{e}"),
                    _ => anyhow::anyhow!("tracers.{name}.options.path={}: cannot open the audit log: {e}", a.path.display()),
                }
            })?),
            None => None,
        };
        for h in b.config.hosted.clone() {
            let common = h.module.common().clone();
            let module = h.module.module();
            match h.module.build().map_err(|e| anyhow::anyhow!("tracers.{}: {e}", h.name))? {
                Built::Consumer(tracer) => b.hosted.push(Hosted { name: h.name, module, tracer, common, chains: h.chains }),
                Built::AuditLog(_) => unreachable!("config keeps the audit log apart"),
            }
        }
        Ok(b)
    }

    /// The in-process demo: records from `rx`, spans to `terminal` (none: not shown) and to OTLP
    /// when configured (with neither, spans are shown to a discarding terminal).
    pub fn demo(config: Config, rx: mpsc::Receiver<Entry>, terminal: Option<Terminal>, naming: Naming) -> anyhow::Result<Bridge> {
        let sink = match (&config.export, terminal) {
            (Some(e), Some(t)) => Sink::Both(Client::new(e)?, t),
            (Some(e), None) => Sink::Otlp(Client::new(e)?),
            (None, t) => Sink::Terminal(t.unwrap_or_else(|| Terminal::new(Box::new(std::io::sink())))),
        };
        let mut b = Bridge::with_sink(config, sink)?;
        b.naming = Arc::new(naming);
        b.export.max_batch_delay = Duration::from_millis(100);
        b.source = Source::Local(rx);
        Ok(b)
    }

    fn with_sink(config: Config, sink: Sink) -> anyhow::Result<Bridge> {
        let naming = match &config.conserver_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("conserver.config_file: cannot read {}: {e}", path.display()))?;
                let (chains_by_links, link_modules) = crate::config::conserver_naming(&text)
                    .map_err(|e| anyhow::anyhow!("conserver.config_file: {} is not a conserver config.yml: {e}", path.display()))?;
                Naming { chains_by_links, link_modules }
            }
            None => Naming::default(),
        };
        let e = config.export.as_ref();
        let max_inflight = e.map_or(20_000, |e| e.max_inflight);
        let assemble = assemble::Settings {
            idle_timeout: config.idle_timeout,
            max_open: config.max_open_runs,
            max_held: (max_inflight / 2).max(1),
            audit_retention: config.audit_log.as_ref().map(|a| a.retention_policy.clone()),
        };
        let export = export::Settings {
            service_name: config.service_name.clone(),
            max_batch_spans: e.map_or(512, |e| e.max_batch_spans),
            max_batch_delay: e.map_or(Duration::from_millis(200), |e| e.max_batch_delay),
            retry: Policy::forever(e.map_or(Duration::from_millis(100), |e| e.initial_backoff), e.map_or(Duration::from_secs(30), |e| e.max_backoff)),
        };
        let metrics = Arc::new(Metrics::with_bounds(config.metric_bounds));
        Ok(Bridge {
            config,
            metrics,
            health: Arc::new(Health::default()),
            naming: Arc::new(naming),
            assemble,
            export,
            sink,
            audit: None,
            hosted: Vec::new(),
            source: Source::Redis,
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs until `shutdown` resolves (or a local source ends), then drains.
    pub async fn run(self, listeners: Listeners, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<DrainReport> {
        if let Some(l) = listeners.admin {
            tracing::info!(addr = %l.local_addr()?, "admin listener: /metrics /healthz /readyz");
            crate::admin::spawn(l, self.metrics.clone(), self.health.clone());
        }
        stages::run(self, listeners.ingest, shutdown).await
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
