//! vcon-otel: makes vCon Server's tracer system observable with OpenTelemetry and Prometheus.
//!
//! # Layout
//! The data path reads top to bottom:
//! - [`config`]     YAML configuration: serde types -> `validate()` (pure) -> [`config::Config`].
//! - [`ingest`]     sources: the Redis stream consumer group and `POST /v1/events`.
//! - [`event`]      the event record schema (v1) and its decoding, with precise rejection reasons.
//! - [`ids`]        deterministic trace and span IDs derived from the vCon UUID and the run.
//! - [`assemble`]   records -> spans; holds the open runs and closes idle ones.
//! - [`export`]     OTLP/gRPC and OTLP/HTTP clients with batching, retries and acknowledgement;
//!   the terminal view of span trees.
//! - [`compliance`] vCon Server's `Vcon.hash`, the per-run hash chain, the audit log.
//! - [`tracers`]    hosted tracer modules (JLINC, webhook, StatsD), each on its own consumer group.
//! - [`metrics`]    every metric in one place, on an owned registry.
//! - [`admin`]      `/metrics`, `/healthz`, `/readyz`.
//! - [`health`]     readiness: the bridge running and a Redis `PING` probe.
//! - [`pipeline`]   wires the stages together.
//! - [`demo`]       an in-process simulated conserver producing the same records as `python/`.
//! - [`otlp`]       builders for OTLP protobuf values.

pub mod admin;
pub mod assemble;
pub mod compliance;
pub mod config;
pub mod demo;
pub mod event;
pub mod export;
pub mod health;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod tracers;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Installs rustls' ring provider once (reqwest is built without a default provider).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the assembler settings, reading the conserver's `config.yml` when configured.
pub fn assemble_settings(cfg: &config::Config) -> Result<assemble::Settings, String> {
    let mut s = assemble::Settings {
        idle_timeout: cfg.idle_timeout,
        max_open: cfg.max_open_runs,
        audit_retention: cfg.audit_log.as_ref().map(|a| a.retention_policy.clone()),
        ..Default::default()
    };
    if let Some(path) = &cfg.conserver_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("conserver.config_file: cannot read {}: {e}", path.display()))?;
        let (chains, modules) = config::conserver_naming(&text)
            .map_err(|e| format!("conserver.config_file: {} is not a conserver config.yml: {e}", path.display()))?;
        s.chains_by_links = chains;
        s.link_modules = modules;
    }
    Ok(s)
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

/// `vcon-otel demo`: the simulated conserver through the real pipeline.
pub async fn run_demo(admin_addr: SocketAddr, opts: demo::Options, idle_timeout_secs: u64, quiet: bool) -> ExitCode {
    let metrics = Arc::new(metrics::Metrics::new(200));
    let health = Arc::new(pipeline::Health::default());
    health.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let listener = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("--admin-addr {admin_addr}: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %admin_addr, "admin listener: /metrics /healthz /readyz");
    admin::spawn(listener, metrics.clone(), health);
    let cfg = match config::validate(config::RawConfig::default(), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{p}");
            return ExitCode::from(78);
        }
    };
    let terminal = if quiet {
        export::terminal::Terminal::new(Box::new(std::io::sink()))
    } else {
        export::terminal::Terminal::default()
    };
    let sink = match &cfg.export {
        Some(e) => match export::client::Client::new(e) {
            Ok(c) => {
                tracing::info!(endpoint = %e.endpoint, "also exporting over OTLP");
                export::Sink::Both(c, terminal)
            }
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::from(78);
            }
        },
        None => export::Sink::Terminal(terminal),
    };
    // As if the user had pointed `conserver.config_file` at the simulated conserver's config.yml.
    let settings = assemble::Settings {
        idle_timeout: Duration::from_secs(idle_timeout_secs.max(1)),
        chains_by_links: demo::chains_by_links(),
        ..Default::default()
    };
    let mut export_settings = pipeline::export_settings(&cfg);
    export_settings.max_batch_delay = Duration::from_millis(100);
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let producer = tokio::spawn(demo::produce(tx, opts));
    let pipeline = tokio::spawn(pipeline::run_local(rx, sink, settings, export_settings, metrics, export::NoDeadLetters));
    tokio::pin!(pipeline);
    tokio::select! {
        _ = shutdown_signal() => {
            // Stopping the producer closes the channel; the pipeline drains and flushes.
            producer.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut pipeline).await;
        }
        _ = &mut pipeline => {}
    }
    ExitCode::SUCCESS
}
