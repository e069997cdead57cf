//! `vcon-otel demo`: a simulated conserver producing exactly the records of the Python integration.
//!
//! Several workers run vCons through three chains, calling the tracer exactly as vCon Server's chain
//! loop does (a pre-chain call, then one call after each link, `in`/`out` named the conserver's way)
//! and, for the chains marked `hooks`, the lifecycle hooks too — the same records, field for field,
//! as `python/vcon_otel` writes. The scenarios cover UUID swaps, halts, link errors (which, in
//! tracer-only mode, leave the run to be closed as `incomplete`), slow links and egress into a
//! second chain (joined to the first run by `prev_run`). Every link changes the vCon document
//! ([`vcon`]), so every step has its own compliance hash.
//!
//! Records go to a [`sink::Sink`]: in process, into the same decode, assemble and export stages as
//! `run` (only the Redis stream is replaced by a channel, and the producer sends each step's hash
//! inline); or, with `--redis-url`, into a Redis stream with server-side vCon snapshots, for a
//! bridge (`vcon-otel run`) to read, hash and export.

pub mod sink;
pub mod vcon;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sink::{Sink, Snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One simulated chain.
struct Chain {
    name: &'static str,
    links: &'static [&'static str],
    /// The conserver runs with the vcon_otel hooks installed.
    hooks: bool,
    /// Where the vCon goes next (egress list feeding another chain).
    egress_to: Option<usize>,
}

const CHAINS: &[Chain] = &[
    Chain { name: "intake", links: &["deidentify", "redact", "tag"], hooks: false, egress_to: Some(1) },
    Chain { name: "transcription", links: &["transcribe", "summarize", "tag"], hooks: true, egress_to: Some(2) },
    // A halt happens before the last link (sentiment_filter first), as the hooks can only tell a
    // halt from a completed chain when links were left unrun.
    Chain { name: "analysis", links: &["sentiment_filter", "classify"], hooks: true, egress_to: None },
];

/// The chain names by link list, as the conserver's `config.yml` would give them.
pub fn chains_by_links() -> std::collections::HashMap<Vec<String>, String> {
    CHAINS.iter().map(|c| (c.links.iter().map(|l| l.to_string()).collect(), c.name.to_string())).collect()
}

use crate::clock::now_ns;

/// Settings of the simulation.
#[derive(Debug, Clone)]
pub struct Options {
    /// vCons to start (each goes through up to three chains); 0 = until stopped.
    pub vcons: u64,
    /// Concurrent simulated workers.
    pub workers: usize,
    /// Pause between vCons of one worker.
    pub pace: Duration,
}

/// Produces records into `tx` (the in-process pipeline) until `opts.vcons` vCons were processed
/// or `tx` closes.
pub async fn produce(tx: mpsc::Sender<Entry>, opts: Options) {
    let _ = produce_into(Sink::channel(tx), opts).await;
}

use crate::stream::Entry;

/// `vcon-otel demo --redis-url URL`: writes the simulation into the Redis stream `stream` (as the
/// Python producer does) until `opts.vcons` vCons were processed or Ctrl-C. Exit 0 when done, 1
/// when Redis cannot be reached or refuses a write (the message names the URL, without its
/// password, and the reason).
pub async fn run_into_redis(url: &str, stream: &str, maxlen: Option<u64>, opts: Options) -> std::process::ExitCode {
    let redis = match sink::RedisSink::connect(url, stream, maxlen).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let written = redis.written.clone();
    tracing::info!(redis = %sink::redact(url), stream, "demo: writing simulated conserver records into the stream");
    let progress = tokio::spawn({
        let written = written.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                tracing::info!(records = written.load(Ordering::Relaxed), "demo: records written so far");
            }
        }
    });
    let result = tokio::select! {
        r = produce_into(Sink::Redis(redis), opts) => r,
        _ = crate::bridge::shutdown_signal() => Ok(()),
    };
    progress.abort();
    let n = written.load(Ordering::Relaxed);
    match result {
        Ok(()) => {
            println!("demo: wrote {n} records to stream {stream} at {}", sink::redact(url));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: --redis-url {}: {e} (after {n} records)", sink::redact(url));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the workers against `sink`; Err with the first write failure.
async fn produce_into(sink: Sink, opts: Options) -> Result<(), String> {
    let started = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..opts.workers.max(1) {
        let (sink, started, opts) = (sink.clone(), started.clone(), opts.clone());
        workers.push(tokio::spawn(async move {
            let mut sim = Worker { sink, w: w as u64, rng: rand::rngs::StdRng::from_os_rng() };
            loop {
                let n = started.fetch_add(1, Ordering::SeqCst);
                if opts.vcons != 0 && n >= opts.vcons {
                    return Ok(());
                }
                sim.vcon().await?;
                tokio::time::sleep(opts.pace).await;
            }
        }));
    }
    let mut first_err = Ok(());
    for w in workers {
        if let Ok(Err(e)) = w.await {
            if first_err.is_ok() {
                first_err = Err(e);
            }
        }
    }
    first_err
}

/// One simulated conserver worker (one thread of the conserver).
struct Worker {
    sink: Sink,
    w: u64,
    rng: rand::rngs::StdRng,
}

/// The state of one chain run, as the Python producer keeps it per thread (`_state.Run`).
struct Run<'c> {
    c: &'c Chain,
    id: String,
    vcon_uuid: String,
    start_ns: u64,
    seq: u64,
    producer: Value,
}

impl Run<'_> {
    /// The fields every record of the run carries (`_state.Run.base`).
    fn base(&mut self, event: &str, ts: u64) -> Value {
        let mut r = json!({"v": 1, "event": event, "run": self.id, "vcon_uuid": self.vcon_uuid, "ts_ns": ts,
            "run_start_ns": self.start_ns, "seq": self.seq, "links": self.c.links, "producer": self.producer});
        self.seq += 1;
        if self.c.hooks {
            r["chain"] = json!(self.c.name);
            r["hooks"] = json!(true);
            r["ingress_list"] = json!(format!("{}_ingress", self.c.name));
        }
        r
    }
}

/// How a chain ended.
enum Ended {
    /// Every link ran; the vCon goes on (egress) under this UUID.
    Complete(String),
    /// Halted or failed: the vCon goes no further.
    Stopped,
}

impl Worker {
    /// One vCon through its chains. Now and then a misbehaving producer also writes a malformed
    /// record, which the bridge rejects, counts and dead-letters.
    async fn vcon(&mut self) -> Result<(), String> {
        if self.rng.random_bool(0.04) {
            let bad = json!({"v": 1, "event": "tracer_call", "run": "bad", "vcon_uuid": "bad", "ts_ns": "yesterday"});
            self.sink.send(bad, None, &[]).await?;
        }
        let mut uuid = uuid::Uuid::new_v4().to_string();
        let mut doc = vcon::new_vcon(&uuid, &mut self.rng);
        let mut prev: Option<(String, String)> = None;
        let mut chain = 0usize;
        loop {
            let c = &CHAINS[chain];
            let run = uuid::Uuid::new_v4().simple().to_string();
            match self.chain(c, &uuid, &run, prev.as_ref(), &mut doc).await? {
                Ended::Complete(new_uuid) => {
                    prev = Some((uuid.clone(), run));
                    uuid = new_uuid;
                }
                Ended::Stopped => return Ok(()),
            }
            match c.egress_to {
                Some(next) => chain = next,
                None => return Ok(()),
            }
        }
    }

    /// Runs one chain like the conserver's `VconChainRequest.process`.
    async fn chain(&mut self, c: &Chain, start_uuid: &str, run: &str, prev: Option<&(String, String)>, doc: &mut Value) -> Result<Ended, String> {
        let producer = json!({"host": "demo-conserver", "pid": 1000 + self.w, "thread": self.w});
        let mut r = Run { c, id: run.to_string(), vcon_uuid: start_uuid.to_string(), start_ns: now_ns(), seq: 0, producer };
        let prev_run = prev.map(|(u, r)| json!({"vcon_uuid": u, "run": r}));
        if c.hooks {
            // hooks.before_processing: opens the run, with the snapshot of the entering vCon.
            let mut rec = r.base("chain_start", r.start_ns);
            rec["out_vcon_uuid"] = json!(start_uuid);
            if let Some(p) = &prev_run {
                rec["prev_run"] = p.clone();
            }
            self.sink.send(rec, Some(Snapshot { uuid: start_uuid, doc }), &[start_uuid]).await?;
        }
        // The pre-chain tracer call (link_index -1); it opens the run in tracer-only mode.
        let mut rec = r.base("tracer_call", now_ns());
        rec["link_index"] = json!(-1);
        self.tracer_fields(&mut rec, start_uuid, start_uuid);
        if c.hooks {
            // before_processing already took the snapshot and swapped the last-run pointer.
            self.sink.send(rec, None, &[]).await?;
        } else {
            if let Some(p) = &prev_run {
                rec["prev_run"] = p.clone();
            }
            self.sink.send(rec, Some(Snapshot { uuid: start_uuid, doc }), &[start_uuid]).await?;
        }
        let mut current = start_uuid.to_string();
        let mut last_return = now_ns();
        for (i, link) in c.links.iter().enumerate() {
            match self.link(&mut r, i, link, &mut current, last_return, doc).await? {
                Some(ended) => return Ok(ended),
                None => last_return = now_ns(),
            }
        }
        if c.hooks {
            // hooks.after_processing, with the snapshot of the vCon leaving the chain.
            let mut rec = r.base("chain_complete", now_ns());
            rec["outcome"] = json!("complete");
            rec["out_vcon_uuid"] = json!(current);
            self.sink.send(rec, Some(Snapshot { uuid: &current, doc }), &[]).await?;
        }
        Ok(Ended::Complete(current))
    }

    fn tracer_fields(&mut self, rec: &mut Value, inn: &str, out: &str) {
        rec["tracer"] = json!("otel");
        rec["in_vcon_uuid"] = json!(inn);
        rec["out_vcon_uuid"] = json!(out);
        rec["call_ns"] = json!(self.rng.random_range(40_000..160_000u64));
    }

    /// Runs link `i`; Some when the chain ended there (error or halt), None to go on.
    async fn link(&mut self, r: &mut Run<'_>, i: usize, link: &str, current: &mut String, started: u64, doc: &mut Value) -> Result<Option<Ended>, String> {
        let slow = self.rng.random_bool(0.05);
        let ms = if slow { self.rng.random_range(200..600) } else { self.rng.random_range(2..30) };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let fails = link == "transcribe" && self.rng.random_bool(0.08) || link == "redact" && self.rng.random_bool(0.05);
        if fails {
            // The conserver calls after_link("error") and re-raises: no tracer call follows.
            if r.c.hooks {
                let error = json!({"type": "TimeoutError", "message": format!("{link}: upstream API timed out")});
                let mut rec = r.base("link_error", now_ns());
                rec["link"] = json!(link);
                rec["link_index"] = json!(i);
                rec["start_ns"] = json!(started);
                rec["error"] = error.clone();
                rec["out_vcon_uuid"] = json!(current);
                rec["module"] = json!(format!("links.{link}"));
                self.sink.send(rec, None, &[]).await?;
                let mut rec = r.base("chain_error", now_ns());
                rec["error"] = error;
                rec["out_vcon_uuid"] = json!(current);
                self.sink.send(rec, Some(Snapshot { uuid: current, doc }), &[]).await?;
            }
            return Ok(Some(Ended::Stopped));
        }
        let halts = link == "sentiment_filter" && self.rng.random_bool(0.3);
        let returned = match vcon::apply_link(doc, link, &mut self.rng) {
            vcon::Effect::Swapped(new) => new,
            vcon::Effect::Changed => current.clone(),
        };
        let mut rec = r.base("tracer_call", now_ns());
        rec["link_index"] = json!(i);
        rec["start_ns"] = json!(started);
        // After a link the conserver passes (returned UUID, UUID before the link); on a halt both
        // are the current UUID.
        let inn = if halts { current.clone() } else { returned.clone() };
        self.tracer_fields(&mut rec, &inn, current);
        if r.c.hooks {
            // What after_link("success") saw, merged into the one record of this link.
            rec["module"] = json!(format!("links.{link}"));
        }
        let point: Vec<&str> = if inn != *current { vec![inn.as_str()] } else { vec![] };
        self.sink.send(rec, Some(Snapshot { uuid: &inn, doc }), &point).await?;
        if halts {
            if r.c.hooks {
                let mut rec = r.base("chain_complete", now_ns());
                rec["outcome"] = json!("halted");
                rec["out_vcon_uuid"] = json!(current);
                self.sink.send(rec, Some(Snapshot { uuid: current, doc }), &[]).await?;
            }
            return Ok(Some(Ended::Stopped));
        }
        *current = returned;
        Ok(None)
    }
}

/// `vcon-otel demo`: the simulated conserver through the same `Bridge::run` as `vcon-otel run`,
/// with an in-process source instead of the Redis stream.
pub async fn run(admin_addr: std::net::SocketAddr, opts: Options, idle_timeout_secs: u64, quiet: bool) -> std::process::ExitCode {
    use crate::export::terminal::Terminal;
    let mut cfg = match crate::config::validate(crate::config::RawConfig::default(), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{p}");
            return std::process::ExitCode::from(78);
        }
    };
    cfg.idle_timeout = Duration::from_secs(idle_timeout_secs.max(1));
    if let Some(e) = &cfg.export {
        tracing::info!(endpoint = %e.endpoint, "also exporting over OTLP");
    }
    let terminal = (!quiet).then(Terminal::default);
    let (tx, rx) = mpsc::channel(4096);
    // As if the user had pointed `conserver.config_file` at the simulated conserver's config.yml.
    let naming = crate::enrich::Naming { chains_by_links: chains_by_links(), ..Default::default() };
    let bridge = match crate::Bridge::demo(cfg, rx, terminal, naming) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(78);
        }
    };
    let admin = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("--admin-addr {admin_addr}: cannot listen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let producer = tokio::spawn(produce(tx, opts));
    let result = bridge.run(crate::Listeners { admin: Some(admin), ingest: None }, crate::bridge::shutdown_signal()).await;
    producer.abort();
    match result {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
