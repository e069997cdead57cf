//! Wires the stages: source -> decode + assemble -> export -> acknowledge.
//!
//! ```text
//! redis_stream::read ──Entry──▶ assemble_stage ──Output──▶ export::run ──AckBatch──▶ acknowledge
//!   (or demo::produce)    (decode, hash, assemble,        (batch, send,            (XACK, done
//!                          dead-letter, idle runs)         retry forever)           markers)
//! ```
//! Every channel is bounded; a full channel makes its sender wait, so a slow collector pauses the
//! reader instead of growing memory or dropping data. Shutdown closes the source; each stage drains
//! its input and closes its output; the exporter gives up retrying at the grace deadline, leaving
//! what it could not deliver pending in Redis.

use crate::assemble::{self, Assembler, Enriched, Output, StepHash};
use crate::config::Config;
use crate::event::{self, Compliance};
use crate::export::{self, AckBatch, DeadLetters, Sink};
use crate::ingest::redis_stream::{self, Entry, InFlight, RedisDeadLetters};
use crate::metrics::{Metrics, ReasonLabel, SourceEvent};
use redis::aio::ConnectionManager;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub use crate::health::Health;

/// Redis access of the assemble stage (absent in the demo).
pub struct RedisSide {
    pub conn: ConnectionManager,
    pub dead: RedisDeadLetters,
    /// Compute the sha512 token of snapshots too.
    pub sha512_token: bool,
}

/// Decodes, enriches and assembles; closes idle runs once a second.
pub async fn assemble_stage(
    mut rx: mpsc::Receiver<Entry>,
    tx: mpsc::Sender<Output>,
    acks: mpsc::Sender<AckBatch>,
    mut asm: Assembler,
    mut redis: Option<RedisSide>,
    source: &'static str,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            e = rx.recv() => {
                let Some(e) = e else { break };
                match decode(&e, &metrics, source) {
                    Ok(record) => {
                        let hash = match (&record.compliance, redis.as_mut()) {
                            (Some(Compliance::Snapshot(key)), Some(r)) => snapshot_hash(&mut r.conn, key, r.sha512_token).await,
                            _ => assemble::inline_hash(&record),
                        };
                        for o in asm.accept(Enriched { record, hash }, e.id, Instant::now()) {
                            if tx.send(o).await.is_err() { return; }
                        }
                    }
                    Err(why) => {
                        tracing::debug!(entry = %e.id, reason = why.reason.as_str(), detail = %why.detail, "record rejected");
                        if let Some(r) = redis.as_mut() {
                            r.dead.decode_rejected(&e.id, e.payload.as_deref(), &why).await;
                        }
                        if acks.send(AckBatch { ids: vec![e.id], done: vec![] }).await.is_err() { return; }
                    }
                }
            }
            _ = tick.tick() => {
                for o in close_idle(&mut asm, redis.as_mut()).await {
                    if tx.send(o).await.is_err() { return; }
                }
            }
        }
    }
    if redis.is_none() {
        // The demo has nowhere to keep open runs: close them so the terminal shows them.
        for run in asm.drain_all() {
            let _ = tx.send(asm.close_incomplete(run)).await;
        }
    }
}

fn decode(e: &Entry, metrics: &Metrics, source: &'static str) -> Result<event::Record, event::Rejection> {
    let result = match &e.payload {
        Some(p) => event::decode(p),
        None => Err(event::Rejection {
            reason: event::Reason::MissingPayload,
            detail: "stream entry has no field \"r\" holding the record".into(),
        }),
    };
    match &result {
        Ok(r) => {
            metrics.events_ingested.get_or_create(&SourceEvent { source, event: r.event.as_str() }).inc();
        }
        Err(why) => {
            metrics.events_rejected.get_or_create(&ReasonLabel { reason: why.reason.as_str() }).inc();
        }
    }
    result
}

async fn close_idle(asm: &mut Assembler, redis: Option<&mut RedisSide>) -> Vec<Output> {
    let expired = asm.expire(Instant::now());
    if expired.is_empty() {
        return vec![];
    }
    let done = match redis {
        Some(r) => {
            let ids: Vec<[u8; 16]> = expired.iter().map(|run| run.trace_id()).collect();
            redis_stream::finished_elsewhere(&mut r.conn, &ids).await
        }
        None => vec![false; expired.len()],
    };
    expired
        .into_iter()
        .zip(done)
        .map(|(run, done)| {
            if done {
                Output::Ack(run.held)
            } else {
                tracing::debug!(vcon_uuid = %run.vcon_uuid, run = %run.run, "run idle past runs.idle_timeout; closing it as incomplete");
                asm.close_incomplete(run)
            }
        })
        .collect()
}

/// Reads a compliance snapshot and hashes it; None (logged) when it is gone or unreadable.
async fn snapshot_hash(conn: &mut ConnectionManager, key: &str, sha512: bool) -> Option<StepHash> {
    let text: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("JSON.GET").arg(key).query_async(conn).await;
    match text {
        Ok(Some(bytes)) => match step_hash(&bytes, sha512) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(key, error = %e, "compliance snapshot is not a valid vCon document; no hash on this span");
                None
            }
        },
        Ok(None) => {
            tracing::warn!(key, "compliance snapshot expired or missing; no hash on this span");
            None
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot read compliance snapshot");
            None
        }
    }
}

/// `Vcon.hash` of a stored vCon document, as span attributes.
fn step_hash(bytes: &[u8], sha512: bool) -> Result<StepHash, crate::compliance::HashError> {
    let h = if sha512 { crate::compliance::vcon_hash_with_sha512(bytes)? } else { crate::compliance::vcon_hash(bytes)? };
    Ok(StepHash { sha256_hex: h.sha256_hex, sha512_token: h.sha512_token, counts: Some(h.counts) })
}

fn a_name(config: &Config) -> &str {
    config.audit_log_name.as_deref().unwrap_or("audit_log")
}

/// Everything `run` needs that is built before any port is bound or connection made.
pub struct Parts {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub settings: assemble::Settings,
}

/// Runs the bridge until `shutdown` resolves, then drains under the grace deadline.
pub async fn run_bridge(parts: Parts, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let Parts { config, metrics, health, settings } = parts;
    let export_cfg = config
        .export
        .clone()
        .ok_or_else(|| anyhow::anyhow!("export.endpoint: no OTLP endpoint configured (hint: set export.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)"))?;
    let client = export::client::Client::new(&export_cfg)?;
    let audit = match &config.audit_log {
        Some(a) => Some(
            crate::compliance::audit_log::AuditLog::open(a.clone())
                .map_err(|e| anyhow::anyhow!("tracers.{}.options.path={}: cannot open the audit log: {e}", a_name(&config), a.path.display()))?,
        ),
        None => None,
    };
    let redis_client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| anyhow::anyhow!("redis.url: {e} (hint: redis://host:6379)"))?;
    let probe = crate::health::spawn_redis_probe(redis_client.clone(), health.clone(), metrics.clone());
    // The reader blocks in XREADGROUP, which holds its connection: it gets a connection of its own,
    // with a response timeout longer than the block time.
    let conn = connect_with_retry(&redis_client, Duration::from_secs(10)).await;
    let reader_conn = connect_with_retry(&redis_client, config.stream.block + Duration::from_secs(10)).await;
    let mut c = conn.clone();
    loop {
        match redis_stream::ensure_group(&mut c, &config.stream).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.stream.key, "cannot create the consumer group; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    for h in &config.hosted {
        // Created before the bridge reports ready, so every record written after that reaches it.
        crate::tracers::runner::ensure_group(&mut c, &config.stream.key, &h.name).await?;
    }
    health.ready.store(true, Ordering::SeqCst);
    tracing::info!(stream = %config.stream.key, group = %config.stream.group, consumer = %config.stream.consumer,
        endpoint = %export_cfg.endpoint, protocol = ?export_cfg.protocol, "bridge running");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let inflight: InFlight = Default::default();
    let depth = (export_cfg.max_inflight / 2).max(1);
    let (entry_tx, entry_rx) = mpsc::channel::<Entry>(depth);
    let (out_tx, out_rx) = mpsc::channel::<Output>(depth);
    let (ack_tx, ack_rx) = mpsc::channel::<AckBatch>(256);

    let dead = RedisDeadLetters { conn: conn.clone(), stream: config.stream.clone(), metrics: metrics.clone() };
    let reader = tokio::spawn(redis_stream::read(reader_conn, config.stream.clone(), entry_tx.clone(), inflight.clone(), metrics.clone(), stop_rx.clone()));
    let http = match &config.http_ingest {
        Some(h) => Some(crate::ingest::http::serve(h.clone(), conn.clone(), config.stream.key.clone(), metrics.clone(), health.clone(), stop_rx.clone()).await?),
        None => None,
    };
    drop(entry_tx);
    let mut tracer_tasks = Vec::new();
    let shared = crate::tracers::runner::Shared {
        stream: config.stream.key.clone(),
        consumer: config.stream.consumer.clone(),
        chains_by_links: Arc::new(settings.chains_by_links.clone()),
        spans: out_tx.clone(),
        metrics: metrics.clone(),
    };
    for h in &config.hosted {
        let module = crate::tracers::build(&h.module, &h.options).map_err(|e| anyhow::anyhow!("tracers.{}: {e}", h.name))?;
        let hosted = crate::tracers::Hosted { name: h.name.clone(), module, common: h.common.clone(), chains: h.chains.clone() };
        let conn = connect_with_retry(&redis_client, Duration::from_secs(10)).await;
        let reader = connect_with_retry(&redis_client, Duration::from_secs(11)).await;
        tracing::info!(tracer = %h.name, module = %h.module, group = %crate::tracers::runner::group(&h.name), "hosted tracer running");
        tracer_tasks.push(tokio::spawn(crate::tracers::runner::run(hosted, conn, reader, shared.clone(), stop_rx.clone())));
    }
    drop(shared);
    let asm = Assembler::new(settings, metrics.clone());
    let stage = tokio::spawn(assemble_stage(
        entry_rx,
        out_tx,
        ack_tx.clone(),
        asm,
        Some(RedisSide { conn: conn.clone(), dead: dead.clone(), sha512_token: config.sha512_token }),
        "stream",
        metrics.clone(),
    ));
    let exporter = tokio::spawn(export::run(
        out_rx,
        Sink::Otlp(client),
        ack_tx,
        export_settings(&config),
        metrics.clone(),
        dead,
        audit,
        give_up_rx,
    ));
    let acker = tokio::spawn(redis_stream::acknowledge(conn.clone(), config.stream.clone(), config.done_marker_ttl, ack_rx, inflight, metrics.clone(), stop_rx.clone()));
    let lag = tokio::spawn(redis_stream::watch_lag(conn.clone(), config.stream.clone(), metrics.clone(), stop_rx.clone()));

    shutdown.await;
    tracing::info!(grace_secs = config.shutdown_grace.as_secs(), "shutting down: draining");
    health.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    let drain = async {
        let _ = reader.await;
        if let Some(h) = http {
            let _ = h.await;
        }
        let _ = stage.await;
        for t in tracer_tasks {
            let _ = t.await;
        }
        let _ = exporter.await;
        let _ = acker.await;
    };
    tokio::pin!(drain);
    if tokio::time::timeout_at(deadline, &mut drain).await.is_err() {
        let _ = give_up_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(2), &mut drain).await.is_err() {
            tracing::warn!("stages did not finish within the grace period; unacknowledged entries stay pending and are re-read on restart");
        }
    }
    lag.abort();
    probe.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn connect_with_retry(client: &redis::Client, response_timeout: Duration) -> ConnectionManager {
    let mut wait = Duration::from_millis(200);
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_max_delay(Duration::from_secs(5));
    loop {
        match client.get_connection_manager_with_config(config.clone()).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = wait.as_millis() as u64, "cannot connect to Redis; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

pub fn export_settings(config: &Config) -> export::Settings {
    let e = config.export.as_ref();
    export::Settings {
        service_name: config.service_name.clone(),
        max_batch_spans: e.map_or(512, |e| e.max_batch_spans),
        max_batch_delay: e.map_or(Duration::from_millis(200), |e| e.max_batch_delay),
        initial_backoff: e.map_or(Duration::from_millis(100), |e| e.initial_backoff),
        max_backoff: e.map_or(Duration::from_secs(30), |e| e.max_backoff),
    }
}

/// Runs the in-process pipeline of the demo: `source` entries -> assemble -> `sink`.
pub async fn run_local<D: DeadLetters + 'static>(
    entries: mpsc::Receiver<Entry>,
    sink: Sink,
    settings: assemble::Settings,
    export: export::Settings,
    metrics: Arc<Metrics>,
    dead: D,
) {
    let (out_tx, out_rx) = mpsc::channel::<Output>(4096);
    let (ack_tx, mut ack_rx) = mpsc::channel::<AckBatch>(256);
    let (_give_up_tx, give_up_rx) = watch::channel(false);
    let asm = Assembler::new(settings, metrics.clone());
    let stage = tokio::spawn(assemble_stage(entries, out_tx, ack_tx.clone(), asm, None, "demo", metrics.clone()));
    let exporter = tokio::spawn(export::run(out_rx, sink, ack_tx, export, metrics.clone(), dead, None, give_up_rx));
    let acks = tokio::spawn(async move { while ack_rx.recv().await.is_some() {} });
    let _ = stage.await;
    let _ = exporter.await;
    let _ = acks.await;
}
