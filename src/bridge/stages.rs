//! The bridge's tasks and how they are joined (see the diagram in `bridge`).

use super::drain::{drain, Task};
use super::{Bridge, DrainReport, Source};
use crate::assemble::{Assembler, Output};
use crate::enrich::{Enricher, Item, Prepared, Role};
use crate::export::Stage;
use crate::retry::{self, Attempts, Policy};
use crate::stream::connect::{ConnectError, Redis};
use crate::stream::{group, Ack, Acker, DeadLetters, Entry, Group, GroupSettings, InFlight, NoDeadLetters, RedisDeadLetters, Start};
use crate::tracers::runner::{self, Runner};
use redis::aio::ConnectionManager;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Batches of entries between the reader and enrich, and of items between enrich and assemble.
const BATCHES_IN_FLIGHT: usize = 2;
/// Hosted tracers read this many entries at a time.
const TRACER_READ_COUNT: usize = 64;

pub(super) async fn run(b: Bridge, ingest: Option<TcpListener>, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<DrainReport> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop_tx, stop) = watch::channel(false);
    let (give_up_tx, give_up) = watch::channel(false);
    let grace = b.config.shutdown_grace;
    let health = b.health.clone();
    let local = matches!(b.source, Source::Local(_));
    let tasks = tokio::select! {
        t = start(b, ingest, stop.clone(), give_up) => t?,
        _ = &mut shutdown => return Ok(DrainReport::default()),
    };
    health.ready.store(true, Ordering::SeqCst);
    if local {
        // The demo also ends when its producer does (then the stages drain on their own).
        let export_done = async {
            while !tasks.iter().all(|t| t.name != "export" || t.handle.is_finished()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = &mut shutdown => {}
            _ = export_done => {}
        }
    } else {
        shutdown.await;
    }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining");
    health.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let report = drain(tasks, grace, give_up_tx).await;
    tracing::info!("stopped");
    Ok(report)
}

/// What a source contributes to the wiring.
struct Wiring {
    sources: Vec<Task>,
    tracers: Vec<Task>,
    ack: Task,
    redis: Option<ConnectionManager>,
    dead: Arc<dyn DeadLetters>,
    source: &'static str,
    /// The snapshot lifecycle every consumer of this bridge follows.
    lifecycle: crate::enrich::steps::Lifecycle,
    /// Where the main pipeline journals runs.
    journal: crate::enrich::journal::Store,
    /// The main group's in-flight bound (none in the demo).
    inflight: Option<InFlight>,
}

/// The channels between the stages, all bounded.
struct Channels {
    entries: (mpsc::Sender<Vec<Entry>>, mpsc::Receiver<Vec<Entry>>),
    items: (mpsc::Sender<Vec<Item>>, mpsc::Receiver<Vec<Item>>),
    out: (mpsc::Sender<Output>, mpsc::Receiver<Output>),
    acks: (mpsc::Sender<Ack>, mpsc::Receiver<Ack>),
}

/// Connects (Redis source), creates the groups and spawns every stage, in flow order.
async fn start(b: Bridge, ingest: Option<TcpListener>, stop: watch::Receiver<bool>, give_up: watch::Receiver<bool>) -> anyhow::Result<Vec<Task>> {
    let Bridge { config, metrics, health, naming, assemble, export, sink, audit, hosted, source } = b;
    // The exporter's queue: the assembler's outputs (at most `stream.read_ahead` entries' worth are
    // moving) and hosted tracers' outcome spans (offered, dropped when full). Kept shallow: a deep
    // queue only keeps more of the stages' data out of cache (`docs/benchmarks.md`).
    let out_depth = (config.export.as_ref().map_or(512, |e| e.max_batch_spans) * 2).max(1024);
    let c = Channels {
        entries: mpsc::channel(BATCHES_IN_FLIGHT),
        items: mpsc::channel(BATCHES_IN_FLIGHT),
        out: mpsc::channel(out_depth),
        acks: mpsc::channel(256),
    };
    let (entry_tx, entry_rx) = c.entries;
    let (item_tx, item_rx) = c.items;
    let (out_tx, out_rx) = c.out;
    let (ack_tx, ack_rx) = c.acks;
    let w = match source {
        Source::Local(rx) => Wiring {
            sources: vec![task("reader", read_local(rx, entry_tx, config.stream.read_count, stop.clone()))],
            tracers: vec![],
            ack: task("ack", async move {
                let mut rx = ack_rx;
                while rx.recv().await.is_some() {}
            }),
            redis: None,
            dead: Arc::new(NoDeadLetters),
            source: "demo",
            lifecycle: lifecycle(&config, 0),
            journal: crate::enrich::journal::Store::memory(),
            inflight: None,
        },
        Source::Redis => {
            let parts = RedisParts { config: &config, metrics: &metrics, health: &health, naming: &naming, hosted, ingest, entry_tx, out_tx: &out_tx, ack_rx };
            wire_redis(parts, &stop).await?
        }
    };
    let enricher = Enricher {
        role: Role::Pipeline { source: w.source },
        redis: w.redis.clone(),
        dead: w.dead.clone(),
        naming,
        sha512: config.sha512_token,
        keep_content: false,
        lifecycle: w.lifecycle.clone(),
        journal: Some(w.journal.clone()),
        unsettled: w.redis.as_ref().map(|_| crate::enrich::steps::Unsettled::default()),
        metrics: metrics.clone(),
    };
    let enricher = Arc::new(enricher);
    // One prepared read waits between the two enrich tasks (when full: `prepare` waits).
    let (prepared_tx, prepared_rx) = mpsc::channel(1);
    let asm = Assembler::new(assemble, metrics.clone());
    let stage = Stage { sink, settings: export, metrics: metrics.clone(), dead: w.dead, audit };
    // In flow order: the drain waits for each before the next.
    let mut tasks = w.sources;
    tasks.push(task("enrich", prepare(enricher.clone(), entry_rx, prepared_tx, stop.clone())));
    tasks.push(task("journal", complete(enricher, prepared_rx, item_tx)));
    tasks.extend(w.tracers);
    let io = super::assemble_task::Io { redis: w.redis, journal: w.journal, inflight: w.inflight };
    tasks.push(task("assemble", super::assemble_task::run(asm, item_rx, out_tx, io, metrics.clone())));
    tasks.push(task("export", stage.run(out_rx, ack_tx, give_up)));
    tasks.push(w.ack);
    Ok(tasks)
}

/// The snapshot lifecycle, the same for every consumer of this bridge (and every replica with the
/// same config): content users are the hosted tracers that send whole vCons.
fn lifecycle(config: &crate::config::Config, content_users: u32) -> crate::enrich::steps::Lifecycle {
    crate::enrich::steps::Lifecycle { index_key: config.snapshot_index.clone(), ttl: config.step_record_ttl, content_users }
}

/// What the Redis side is wired from.
struct RedisParts<'a> {
    config: &'a crate::config::Config,
    metrics: &'a Arc<crate::metrics::Metrics>,
    health: &'a Arc<crate::health::Health>,
    naming: &'a Arc<crate::enrich::Naming>,
    hosted: Vec<crate::tracers::Hosted>,
    ingest: Option<TcpListener>,
    /// The reader's output, the exporter's input (for tracers' outcome spans), the acker's input.
    entry_tx: mpsc::Sender<Vec<Entry>>,
    out_tx: &'a mpsc::Sender<Output>,
    ack_rx: mpsc::Receiver<Ack>,
}

/// The Redis side: connections, the main group's reader and acker, the HTTP ingest, and one
/// runner per hosted tracer (each group created before the bridge reports ready, so every record
/// written after that reaches it).
async fn wire_redis(p: RedisParts<'_>, stop: &watch::Receiver<bool>) -> anyhow::Result<Wiring> {
    let RedisParts { config, metrics, health, naming, hosted, ingest, entry_tx, out_tx, ack_rx } = p;
    // Start-up waits for Redis until it works; shutdown meanwhile is handled by `run`'s select.
    let (_never_tx, mut never) = watch::channel(false);
    let redis = super::preflight::check(&super::preflight::Plan::of(config), &mut never, None).await.map_err(connect_error)?;
    crate::health::spawn_redis_probe(redis.client(), health.clone(), metrics.clone(), stop.clone());
    let conn = redis.manager(Duration::from_secs(10), &mut never).await.map_err(connect_error)?;
    let reader = redis.manager(config.stream.block + Duration::from_secs(10), &mut never).await.map_err(connect_error)?;
    let s = &config.stream;
    let settings = GroupSettings {
        stream: s.key.clone(),
        group: s.group.clone(),
        consumer: s.consumer.clone(),
        start: Start::Beginning,
        read_count: s.read_count,
        block: s.block,
        claim_idle: s.claim_idle,
    };
    let max_inflight = config.export.as_ref().map_or(20_000, |e| e.max_inflight);
    let inflight = InFlight::with_read_ahead(max_inflight, s.read_ahead, Some(metrics.inflight_entries.clone()));
    let mut main = Group::new(settings.clone(), reader, conn.clone(), inflight.clone());
    ensure(&mut main, &redis).await?;
    let lifecycle = lifecycle(config, hosted.iter().filter(|h| h.tracer.needs_vcon()).count() as u32);
    let mut tracers = Vec::new();
    for h in hosted {
        let reader = redis.manager(Duration::from_secs(11), &mut never).await.map_err(connect_error)?;
        let gs = GroupSettings { group: runner::group(&h.name), start: Start::End, read_count: TRACER_READ_COUNT, block: Duration::from_secs(1), ..settings.clone() };
        let held = InFlight::new(TRACER_READ_COUNT, None);
        let mut group = Group::new(gs.clone(), reader, conn.clone(), held.clone());
        ensure(&mut group, &redis).await?;
        tracing::info!(tracer = %h.name, module = h.module, group = %gs.group, "hosted tracer running");
        let enricher = Enricher {
            role: Role::Tracer,
            redis: Some(conn.clone()),
            dead: Arc::new(NoDeadLetters),
            naming: naming.clone(),
            sha512: false,
            keep_content: h.tracer.needs_vcon(),
            lifecycle: lifecycle.clone(),
            journal: None,
            unsettled: None,
            metrics: metrics.clone(),
        };
        let acker = Acker::new(conn.clone(), gs.stream.clone(), gs.group.clone(), held, config.done_marker_ttl);
        let name = format!("tracer {}", h.name);
        let r = Runner { hosted: h, group, acker, enricher, spans: out_tx.clone(), conn: conn.clone(), metrics: metrics.clone() };
        tracers.push(task(&name, r.run(stop.clone())));
    }
    tracing::info!(stream = %s.key, group = %s.group, consumer = %s.consumer, max_inflight, "bridge running");
    let mut sources = vec![task("reader", read(main, entry_tx, stop.clone()))];
    if let (Some(cfg), Some(l)) = (&config.http_ingest, ingest) {
        let h = crate::ingest::http::serve(l, cfg.clone(), conn.clone(), s.key.clone(), metrics.clone(), health.clone(), stop.clone())?;
        sources.push(Task { name: "http ingest".into(), handle: h });
    }
    let mut acker = Acker::new(conn.clone(), s.key.clone(), s.group.clone(), inflight.clone(), config.done_marker_ttl);
    acker.metrics = Some(metrics.clone());
    tokio::spawn(watch_depth(conn.clone(), s.key.clone(), s.group.clone(), config.snapshot_index.clone(), metrics.clone(), stop.clone()));
    let dead = RedisDeadLetters { conn: conn.clone(), key: s.dead_letter_key.clone(), source: s.key.clone(), metrics: metrics.clone() };
    let journal = crate::enrich::journal::Store::redis(conn.clone(), config.step_record_ttl);
    Ok(Wiring { sources, tracers, ack: task("ack", acknowledge(acker, ack_rx, stop.clone())), redis: Some(conn), dead: Arc::new(dead), source: "stream", lifecycle, journal, inflight: Some(inflight) })
}

fn task(name: &str, f: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
    Task { name: name.to_string(), handle: tokio::spawn(f) }
}

/// Keeps a refusal's type, so `main` can exit with its class's code.
fn connect_error(e: ConnectError) -> anyhow::Error {
    match e {
        ConnectError::Refused(r) => r.into(),
        ConnectError::Stopped => anyhow::anyhow!("{e}"),
    }
}

/// Creates the group, retrying transient errors; a permanent one (an ACL refusal) ends start-up.
async fn ensure(g: &mut Group, redis: &Redis) -> anyhow::Result<()> {
    let (_never_tx, mut never) = watch::channel(false);
    let name = g.settings().group.clone();
    let mut attempts = Attempts::new(Policy::forever(Duration::from_millis(200), Duration::from_secs(5)));
    let mut log = |attempt: u32, f: &retry::Failure, _: Duration| {
        if retry::worth_logging(attempt) {
            tracing::warn!(group = %name, error = %f, "cannot create the consumer group; retrying");
        }
    };
    let out = loop {
        let r = g.ensure().await.map_err(|e| redis.classify(&e));
        if let Some(o) = attempts.judge(r, &mut never, &mut log).await {
            break o;
        }
    };
    match out {
        retry::Outcome::Done { .. } => Ok(()),
        retry::Outcome::GaveUp { failure, .. } => Err(anyhow::anyhow!("stream.group={name}: {failure}")),
        retry::Outcome::Stopped { .. } => Err(anyhow::anyhow!("stopped")),
    }
}

/// The main group's reader: reads until stopped, hands each read on whole.
async fn read(mut group: Group, tx: mpsc::Sender<Vec<Entry>>, mut stop: watch::Receiver<bool>) {
    while let Some(entries) = group.read(&mut stop).await {
        if !entries.is_empty() && tx.send(entries).await.is_err() {
            return;
        }
    }
}

/// The demo's reader: batches what the channel holds, up to `max` entries.
async fn read_local(mut rx: mpsc::Receiver<Entry>, tx: mpsc::Sender<Vec<Entry>>, max: usize, mut stop: watch::Receiver<bool>) {
    loop {
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if tx.send(batch).await.is_err() {
            return;
        }
    }
}

/// Enrich's first task: decode, dead letters, snapshot reads and hashes.
async fn prepare(e: Arc<Enricher>, mut rx: mpsc::Receiver<Vec<Entry>>, tx: mpsc::Sender<Prepared>, mut stop: watch::Receiver<bool>) {
    while let Some(batch) = rx.recv().await {
        let Some(p) = e.prepare(batch, &mut stop).await else { return };
        if tx.send(p).await.is_err() {
            return;
        }
    }
}

/// Enrich's second task: each read's settle and journal round trip, in read order.
async fn complete(e: Arc<Enricher>, mut rx: mpsc::Receiver<Prepared>, tx: mpsc::Sender<Vec<Item>>) {
    while let Some(p) = rx.recv().await {
        if tx.send(e.complete(p).await).await.is_err() {
            return;
        }
    }
}

async fn acknowledge(mut acker: Acker, mut rx: mpsc::Receiver<Ack>, mut stop: watch::Receiver<bool>) {
    while let Some(a) = rx.recv().await {
        if !acker.ack(&a, &mut stop).await {
            return;
        }
    }
}

/// Samples the main group's lag and pending count every two seconds.
async fn watch_depth(mut conn: ConnectionManager, stream: String, group_name: String, snapshot_index: String, metrics: Arc<crate::metrics::Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Some(d) = group::depth(&mut conn, &stream, &group_name).await {
            if let Some(l) = d.lag {
                metrics.stream_lag.set(l);
            }
            metrics.stream_pending.set(d.pending);
        }
        if let Ok(n) = redis::cmd("ZCARD").arg(&snapshot_index).query_async::<i64>(&mut conn).await {
            metrics.snapshots_live.set(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
