//! Where the simulated conserver's records go.
//!
//! - [`Sink::Channel`]: straight into the in-process pipeline (`vcon-otel demo`). The producer
//!   hashes the vCon itself and sends the hash inline (`compliance.sha256`), so the demo shows
//!   compliance hashes without any outside service.
//! - [`Sink::Redis`]: into a Redis stream (`vcon-otel demo --redis-url URL`), exactly as the Python
//!   tracer module writes (`python/vcon_otel/_emit.py`): the vCon is stored as RedisJSON under
//!   `vcon:{uuid}` (as the conserver stores it, expiring after an hour like its default
//!   `VCON_REDIS_EXPIRY`), a step's snapshot is a server-side `COPY` to
//!   `vcon_otel:snap:{run}:{seq}` (expiring after 600 s, the producer's default `snapshot_ttl`),
//!   named by the record's `compliance.snapshot`, and the record is `XADD`ed in the field `r`; the
//!   "last run of this vCon" pointers `vcon_otel:lastrun:{uuid}` are kept as the Python producer
//!   keeps them. One pipeline (one round trip) per record. A bridge reading the stream hashes the
//!   snapshots.

use crate::stream::Entry;
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Seconds a stored demo vCon lives (the conserver's default `VCON_REDIS_EXPIRY`).
const VCON_TTL_SECS: u64 = 3600;
/// Seconds a snapshot lives (the Python producer's default `snapshot_ttl`).
const SNAPSHOT_TTL_SECS: u64 = 600;
/// Seconds a last-run pointer lives (the Python producer's default `lastrun_ttl`).
const LASTRUN_TTL_SECS: u64 = 7 * 86_400;

/// The destination of the records; cheap to clone (one per simulated worker).
#[derive(Clone)]
pub enum Sink {
    Channel { tx: mpsc::Sender<Entry>, ids: Arc<AtomicU64> },
    Redis(RedisSink),
}

/// A Redis stream destination.
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    stream: String,
    /// `XADD … MAXLEN ~ n` when set (the Python producer's `maxlen` option).
    maxlen: Option<u64>,
    /// Records written so far.
    pub written: Arc<AtomicU64>,
}

/// The vCon a record snapshots: its UUID and its current document.
pub struct Snapshot<'a> {
    pub uuid: &'a str,
    pub doc: &'a Value,
}

impl Sink {
    pub fn channel(tx: mpsc::Sender<Entry>) -> Sink {
        Sink::Channel { tx, ids: Arc::new(AtomicU64::new(0)) }
    }

    /// Sends one record. `snap`: the vCon state this step is hashed over; `point`: vCon UUIDs
    /// whose last-run pointer now names this record's run. Err when the destination is gone
    /// (channel closed) or Redis refused the write (the message says why).
    pub async fn send(&mut self, mut record: Value, snap: Option<Snapshot<'_>>, point: &[&str]) -> Result<(), String> {
        match self {
            Sink::Channel { tx, ids } => {
                if let Some(s) = snap {
                    let h = crate::compliance::vcon_hash(s.doc.to_string().as_bytes()).map_err(|e| e.to_string())?;
                    record["compliance"] = json!({"sha256": h.sha256_hex});
                }
                let id = format!("demo-{}", ids.fetch_add(1, Ordering::SeqCst));
                tx.send(Entry { id, payload: Some(record.to_string().into_bytes().into()) }).await.map_err(|_| "the pipeline stopped".to_string())
            }
            Sink::Redis(r) => r.send(record, snap, point).await,
        }
    }
}

impl RedisSink {
    /// Connects and checks that the server has the JSON module (the conserver stores vCons with it).
    pub async fn connect(url: &str, stream: &str, maxlen: Option<u64>) -> Result<RedisSink, String> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| format!("--redis-url {shown}: {e}"))?;
        let mut conn = ConnectionManager::new(client).await.map_err(|e| format!("--redis-url {shown}: cannot connect: {e}"))?;
        let probe = "vcon_otel:demo:probe";
        let r: redis::RedisResult<()> = redis::cmd("JSON.SET").arg(probe).arg("$").arg("{}").query_async(&mut conn).await;
        if let Err(e) = r {
            return Err(format!(
                "--redis-url {shown}: JSON.SET failed ({e}); the demo stores vCons as RedisJSON documents like the conserver (hint: use redis-stack-server or load the RedisJSON module)"
            ));
        }
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(probe).query_async(&mut conn).await;
        Ok(RedisSink { conn, stream: stream.to_string(), maxlen, written: Arc::new(AtomicU64::new(0)) })
    }

    async fn send(&mut self, mut record: Value, snap: Option<Snapshot<'_>>, point: &[&str]) -> Result<(), String> {
        let mut p = redis::pipe();
        if let Some(s) = &snap {
            let key = format!("vcon:{}", s.uuid);
            let snap_key = format!("vcon_otel:snap:{}:{}", record["run"].as_str().unwrap_or_default(), record["seq"].as_u64().unwrap_or(0));
            // The conserver's own write of the vCon after the link, then the producer's snapshot.
            p.cmd("JSON.SET").arg(&key).arg("$").arg(s.doc.to_string()).ignore();
            p.cmd("EXPIRE").arg(&key).arg(VCON_TTL_SECS).ignore();
            p.cmd("COPY").arg(&key).arg(&snap_key).arg("REPLACE").ignore();
            p.cmd("EXPIRE").arg(&snap_key).arg(SNAPSHOT_TTL_SECS).ignore();
            record["compliance"] = json!({"snapshot": snap_key});
        }
        if !point.is_empty() {
            let run_ref = json!({"vcon_uuid": record["vcon_uuid"], "run": record["run"]}).to_string();
            for u in point {
                p.cmd("SET").arg(format!("vcon_otel:lastrun:{u}")).arg(&run_ref).arg("EX").arg(LASTRUN_TTL_SECS).ignore();
            }
        }
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&self.stream);
        if let Some(n) = self.maxlen {
            xadd.arg("MAXLEN").arg("~").arg(n);
        }
        xadd.arg("*").arg("r").arg(record.to_string());
        p.add_command(xadd).ignore();
        let r: redis::RedisResult<()> = p.query_async(&mut self.conn).await;
        r.map_err(|e| format!("cannot write to stream {}: {e}", self.stream))?;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The URL without its password, for messages (the bridge's own rule).
pub use crate::stream::connect::redact;
