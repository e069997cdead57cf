//! `vcon-otel demo`: an in-process simulated conserver feeding the real pipeline.
//!
//! Several workers run vCons through three chains, calling the tracer exactly as vCon Server's chain
//! loop does (a pre-chain call, then one call after each link, `in`/`out` named the conserver's way)
//! and, for the chains marked `hooks`, the lifecycle hooks too — producing the same records as the
//! Python integration in `python/`. The scenarios cover UUID swaps, halts, link errors (which, in
//! tracer-only mode, leave the run to be closed as `incomplete`), slow links and egress into a
//! second chain (joined to the first run by `prev_run`). Records go through the same decode,
//! assemble and export stages as in `run`; only the Redis stream is replaced by a channel.

use crate::stream::Entry;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
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
    Chain { name: "analysis", links: &["classify", "sentiment_filter"], hooks: true, egress_to: None },
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

/// Produces records into `tx` until `opts.vcons` vCons were processed or `tx` closes.
pub async fn produce(tx: mpsc::Sender<Entry>, opts: Options) {
    let ids = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..opts.workers.max(1) {
        let (tx, ids, started, opts) = (tx.clone(), ids.clone(), started.clone(), opts.clone());
        workers.push(tokio::spawn(async move {
            let mut sim = Worker { tx, ids, w: w as u64, rng: rand::rngs::StdRng::from_os_rng() };
            loop {
                let n = started.fetch_add(1, Ordering::SeqCst);
                if opts.vcons != 0 && n >= opts.vcons {
                    return;
                }
                if !sim.vcon().await {
                    return;
                }
                tokio::time::sleep(opts.pace).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}


struct Worker {
    tx: mpsc::Sender<Entry>,
    ids: Arc<AtomicU64>,
    w: u64,
    rng: rand::rngs::StdRng,
}

impl Worker {
    async fn emit(&self, record: Value) -> bool {
        let id = format!("demo-{}", self.ids.fetch_add(1, Ordering::SeqCst));
        self.tx.send(Entry { id, payload: Some(record.to_string().into_bytes().into()) }).await.is_ok()
    }

    /// One vCon through its chains; false when the pipeline is gone. Now and then a misbehaving
    /// producer also writes a malformed record, which the bridge rejects and counts.
    async fn vcon(&mut self) -> bool {
        if self.rng.random_bool(0.04) {
            let bad = json!({"v": 1, "event": "tracer_call", "run": "bad", "vcon_uuid": "bad", "ts_ns": "yesterday"});
            if !self.emit(bad).await {
                return false;
            }
        }
        let mut uuid = uuid::Uuid::new_v4().to_string();
        let mut prev: Option<(String, String)> = None;
        let mut chain = 0usize;
        loop {
            let c = &CHAINS[chain];
            let run = uuid::Uuid::new_v4().simple().to_string();
            let Some(outcome) = self.chain(c, &uuid, &run, prev.as_ref()).await else { return false };
            match outcome {
                Some(new_uuid) => {
                    prev = Some((uuid.clone(), run));
                    uuid = new_uuid;
                }
                None => return true,
            }
            match c.egress_to {
                Some(next) => chain = next,
                None => return true,
            }
        }
    }

    /// Runs one chain like the conserver's `VconChainRequest.process`; returns the UUID after the
    /// chain when it completed (None when it halted or failed), or None when the pipeline is gone.
    async fn chain(&mut self, c: &Chain, start_uuid: &str, run: &str, prev: Option<&(String, String)>) -> Option<Option<String>> {
        let links: Vec<Value> = c.links.iter().map(|l| json!(l)).collect();
        let producer = json!({"host": "demo-conserver", "pid": 1000 + self.w, "thread": self.w});
        let run_start = now_ns();
        let mut seq = 0u64;
        let mut base = |event: &str, ts: u64| {
            let mut r = json!({"v": 1, "event": event, "run": run, "vcon_uuid": start_uuid, "ts_ns": ts,
                "run_start_ns": run_start, "seq": seq, "links": links.clone(), "producer": producer.clone()});
            seq += 1;
            if c.hooks {
                r["hooks"] = json!(true);
                r["chain"] = json!(c.name);
            }
            r
        };
        if c.hooks {
            let mut r = base("chain_start", now_ns());
            r["ingress_list"] = json!(format!("{}_ingress", c.name));
            if let Some((pu, pr)) = prev {
                r["prev_run"] = json!({"vcon_uuid": pu, "run": pr});
            }
            if !self.emit(r).await {
                return None;
            }
        }
        let mut current = start_uuid.to_string();
        // Pre-chain tracer call (link_index -1).
        let call_start = now_ns();
        let mut r = base("tracer_call", call_start);
        r["link_index"] = json!(-1);
        r["tracer"] = json!("otel");
        r["in_vcon_uuid"] = json!(current);
        r["out_vcon_uuid"] = json!(current);
        r["call_ns"] = json!(self.rng.random_range(40_000..160_000u64));
        if !c.hooks {
            if let Some((pu, pr)) = prev {
                r["prev_run"] = json!({"vcon_uuid": pu, "run": pr});
            }
        }
        if !self.emit(r).await {
            return None;
        }
        let mut last_return = now_ns();
        for (i, link) in c.links.iter().enumerate() {
            let slow = self.rng.random_bool(0.05);
            let ms = if slow { self.rng.random_range(200..600) } else { self.rng.random_range(2..30) };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let fails = *link == "transcribe" && self.rng.random_bool(0.08) || *link == "redact" && self.rng.random_bool(0.05);
            if fails {
                // The conserver calls after_link("error") and re-raises: no tracer call follows.
                if c.hooks {
                    let mut r = base("link_error", now_ns());
                    r["link_index"] = json!(i);
                    r["link"] = json!(link);
                    r["start_ns"] = json!(last_return);
                    r["error"] = json!({"type": "TimeoutError", "message": format!("{link}: upstream API timed out")});
                    r["out_vcon_uuid"] = json!(current);
                    let mut e = base("chain_error", now_ns());
                    e["error"] = json!({"type": "TimeoutError", "message": format!("{link}: upstream API timed out")});
                    e["ingress_list"] = json!(format!("{}_ingress", c.name));
                    if !(self.emit(r).await && self.emit(e).await) {
                        return None;
                    }
                }
                return Some(None);
            }
            let halts = *link == "sentiment_filter" && self.rng.random_bool(0.3);
            let returned = if *link == "redact" { uuid::Uuid::new_v4().to_string() } else { current.clone() };
            let mut r = base("tracer_call", now_ns());
            r["link_index"] = json!(i);
            r["tracer"] = json!("otel");
            r["start_ns"] = json!(last_return);
            // After a link the conserver passes (returned UUID, UUID before the link).
            r["in_vcon_uuid"] = json!(if halts { current.clone() } else { returned.clone() });
            r["out_vcon_uuid"] = json!(current);
            r["call_ns"] = json!(self.rng.random_range(40_000..160_000u64));
            if c.hooks {
                // What after_link saw, merged into the one record of this link.
                r["module"] = json!(format!("links.{link}"));
            }
            if !self.emit(r).await {
                return None;
            }
            last_return = now_ns();
            if halts {
                if c.hooks {
                    let mut e = base("chain_complete", now_ns());
                    e["outcome"] = json!("halted");
                    if !self.emit(e).await {
                        return None;
                    }
                }
                return Some(None);
            }
            current = returned;
        }
        if c.hooks {
            let e = base("chain_complete", now_ns());
            if !self.emit(e).await {
                return None;
            }
        }
        Some(Some(current))
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
    let terminal = if quiet { Terminal::new(Box::new(std::io::sink())) } else { Terminal::default() };
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
