//! The Redis stream source, its acknowledger and its dead-letter writer.
//!
//! Delivery guarantee: **at least once**. Entries are read with `XREADGROUP` in a consumer group
//! and acknowledged (`XACK`) only when the export stage reports every span they produced as
//! accepted (see `assemble` for which span carries which entry). On start the reader first re-reads
//! its own pending entries (`XREADGROUP … 0`), then new ones (`>`); every `claim_idle / 2` it
//! reclaims entries left pending by crashed consumers (`XAUTOCLAIM`) and refreshes the idle time of
//! the entries it still holds (`XCLAIM … JUSTID`), so no live replica's entries are stolen.
//!
//! When the pipeline is full the reader waits on the bounded channel: nothing more is read, nothing
//! is dropped.

use crate::assemble::EntryId;
use crate::config::Stream;
use crate::event::Rejection;
use crate::export::{AckBatch, DeadLetters};
use crate::metrics::{Metrics, StageLabel};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One entry read from the stream: its ID and the bytes of field `r` (the record; None when absent).
#[derive(Debug, Default)]
pub struct Entry {
    pub id: EntryId,
    pub payload: Option<Vec<u8>>,
}

/// Entries read and not yet acknowledged by this process (shared by reader and acker).
pub type InFlight = Arc<Mutex<HashSet<EntryId>>>;

/// Creates the consumer group (from the stream's beginning, so records written before the bridge's
/// first start are not missed) and the stream if needed.
pub async fn ensure_group(conn: &mut ConnectionManager, s: &Stream) -> redis::RedisResult<()> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&s.key)
        .arg(&s.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// The entries of an XREADGROUP reply.
pub fn entries(reply: StreamReadReply) -> Vec<Entry> {
    reply.keys.into_iter().flat_map(|k| k.ids).map(to_entry).collect()
}

fn to_entry(mut id: redis::streams::StreamId) -> Entry {
    let payload = match id.map.remove("r") {
        Some(Value::BulkString(b)) => Some(b),
        Some(Value::SimpleString(s)) => Some(s.into_bytes()),
        _ => None,
    };
    Entry { id: id.id, payload }
}

/// Reads until `stop` turns true or the channel closes.
pub async fn read(
    mut conn: ConnectionManager,
    s: Stream,
    out: mpsc::Sender<Entry>,
    inflight: InFlight,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    // Our own pending entries (left by a previous life of this consumer) are re-read first, from
    // ID 0 with a cursor, until a read comes back empty; then new entries (">").
    let mut pending_cursor: Option<String> = Some("0".into());
    let mut last_claim = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if last_claim.elapsed() >= s.claim_idle / 2 {
            last_claim = tokio::time::Instant::now();
            refresh_held(&mut conn, &s, &inflight).await;
            match reclaim(&mut conn, &s).await {
                Ok(claimed) => {
                    if !send_new(claimed, &out, &inflight, &metrics).await {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "XAUTOCLAIM failed; retrying next round"),
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&s.group).arg(&s.consumer).arg("COUNT").arg(s.read_count);
        if pending_cursor.is_none() {
            cmd.arg("BLOCK").arg(s.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&s.key).arg(pending_cursor.as_deref().unwrap_or(">"));
        let reply: redis::RedisResult<Option<StreamReadReply>> = tokio::select! {
            r = cmd.query_async(&mut conn) => r,
            _ = stop.changed() => break,
        };
        match reply {
            Ok(r) => {
                backoff = Duration::from_millis(100);
                let got = r.map(entries).unwrap_or_default();
                if pending_cursor.is_some() {
                    pending_cursor = got.last().map(|e| e.id.clone());
                }
                if !send_new(got, &out, &inflight, &metrics).await {
                    return;
                }
            }
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    if let Err(e) = ensure_group(&mut conn, &s).await {
                        tracing::warn!(error = %e, "cannot recreate the consumer group");
                    }
                }
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, stream = %s.key, "XREADGROUP failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                pending_cursor = Some("0".into());
            }
        }
    }
}

/// Sends entries not already in flight here; false when the pipeline is gone.
async fn send_new(got: Vec<Entry>, out: &mpsc::Sender<Entry>, inflight: &InFlight, metrics: &Metrics) -> bool {
    for e in got {
        {
            let mut f = inflight.lock().expect("inflight poisoned");
            if !f.insert(e.id.clone()) {
                continue;
            }
            metrics.inflight_entries.set(f.len() as i64);
        }
        if out.send(e).await.is_err() {
            return false;
        }
    }
    true
}

async fn reclaim(conn: &mut ConnectionManager, s: &Stream) -> redis::RedisResult<Vec<Entry>> {
    let mut start = "0-0".to_string();
    let mut all = Vec::new();
    loop {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&s.key)
            .arg(&s.group)
            .arg(&s.consumer)
            .arg(s.claim_idle.as_millis() as u64)
            .arg(&start)
            .arg("COUNT")
            .arg(s.read_count)
            .query_async(conn)
            .await?;
        let n = reply.claimed.len();
        all.extend(reply.claimed.into_iter().map(to_entry));
        if !reply.deleted_ids.is_empty() {
            // Entries trimmed from the stream while pending: nothing left to read; ack them.
            let _: redis::RedisResult<i64> =
                redis::cmd("XACK").arg(&s.key).arg(&s.group).arg(&reply.deleted_ids).query_async(conn).await;
        }
        if reply.next_stream_id == "0-0" || n == 0 || all.len() >= 10 * s.read_count {
            break;
        }
        start = reply.next_stream_id;
    }
    if !all.is_empty() {
        tracing::info!(entries = all.len(), "reclaimed entries left pending by another consumer");
    }
    Ok(all)
}

/// Resets the idle time of every entry this process holds, so other replicas do not reclaim them.
async fn refresh_held(conn: &mut ConnectionManager, s: &Stream, inflight: &InFlight) {
    let ids: Vec<EntryId> = inflight.lock().expect("inflight poisoned").iter().cloned().collect();
    for chunk in ids.chunks(1000) {
        let r: redis::RedisResult<Value> = redis::cmd("XCLAIM")
            .arg(&s.key)
            .arg(&s.group)
            .arg(&s.consumer)
            .arg(0)
            .arg(chunk)
            .arg("JUSTID")
            .query_async(conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "XCLAIM refresh failed");
        }
    }
}

/// Acknowledges accepted entries and sets completion markers; retries Redis errors until it works
/// or `stop` turns true (unacknowledged entries are simply re-read after a restart).
pub async fn acknowledge(
    mut conn: ConnectionManager,
    s: Stream,
    done_ttl: Duration,
    mut rx: mpsc::Receiver<AckBatch>,
    inflight: InFlight,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    while let Some(batch) = rx.recv().await {
        let mut pipe = redis::pipe();
        for chunk in batch.ids.chunks(1000) {
            pipe.cmd("XACK").arg(&s.key).arg(&s.group).arg(chunk).ignore();
        }
        for t in &batch.done {
            pipe.cmd("SET").arg(done_key(t)).arg(1).arg("EX").arg(done_ttl.as_secs().max(1)).ignore();
        }
        let mut wait = Duration::from_millis(100);
        loop {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "XACK failed; retrying");
                    if *stop.borrow() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut f = inflight.lock().expect("inflight poisoned");
        for id in &batch.ids {
            f.remove(id);
        }
        metrics.inflight_entries.set(f.len() as i64);
    }
}

/// The completion marker of a run, set once its root span was accepted.
pub fn done_key(trace_id: &[u8; 16]) -> String {
    format!("vcon_otel:done:{}", hex::encode(trace_id))
}

/// Which of these runs another replica already finished.
pub async fn finished_elsewhere(conn: &mut ConnectionManager, trace_ids: &[[u8; 16]]) -> Vec<bool> {
    if trace_ids.is_empty() {
        return vec![];
    }
    let mut pipe = redis::pipe();
    for t in trace_ids {
        pipe.cmd("EXISTS").arg(done_key(t));
    }
    pipe.query_async::<Vec<bool>>(conn).await.unwrap_or_else(|_| vec![false; trace_ids.len()])
}

/// Writes rejected records to the dead-letter stream; retries until Redis takes them, so nothing is
/// acknowledged (and lost) before it is dead-lettered.
#[derive(Clone)]
pub struct RedisDeadLetters {
    pub conn: ConnectionManager,
    pub stream: Stream,
    pub metrics: Arc<Metrics>,
}

impl RedisDeadLetters {
    /// Dead-letters one record that failed to decode.
    pub async fn decode_rejected(&mut self, entry: &EntryId, payload: Option<&[u8]>, why: &Rejection) {
        self.write("decode", why.reason.as_str(), &why.detail, entry, payload.unwrap_or_default()).await;
    }

    /// Appends one dead letter (fields `stage`, `reason`, `detail`, `source_id`, `r`), retrying until
    /// Redis takes it.
    async fn write(&mut self, stage: &'static str, reason: &str, detail: &str, source_id: &str, payload: &[u8]) {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream.dead_letter_key)
            .arg("*")
            .arg("stage")
            .arg(stage)
            .arg("reason")
            .arg(reason)
            .arg("detail")
            .arg(detail)
            .arg("source_id")
            .arg(source_id)
            .arg("r")
            .arg(payload);
        let mut wait = Duration::from_millis(100);
        loop {
            match cmd.query_async::<Value>(&mut self.conn).await {
                Ok(_) => {
                    self.metrics.dead_letters.get_or_create(&StageLabel { stage }).inc();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write to the dead-letter stream; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl DeadLetters for RedisDeadLetters {
    async fn export_rejected(&mut self, ids: &[EntryId], detail: &str) {
        self.export_rejected_impl(ids, detail).await
    }
}

impl RedisDeadLetters {
    async fn export_rejected_impl(&mut self, ids: &[EntryId], detail: &str) {
        for id in ids {
            let rows: redis::RedisResult<Vec<(String, Vec<(String, Vec<u8>)>)>> =
                redis::cmd("XRANGE").arg(&self.stream.key).arg(id).arg(id).query_async(&mut self.conn).await;
            let payload = rows
                .ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|(_, fields)| fields.into_iter().find(|(k, _)| k == "r").map(|(_, v)| v))
                .unwrap_or_default();
            self.write("export", "export_rejected", detail, id, &payload).await;
        }
    }
}

/// Samples stream lag and pending count every few seconds into the gauges.
pub async fn watch_lag(mut conn: ConnectionManager, s: Stream, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let groups: redis::RedisResult<Vec<Vec<Value>>> = redis::cmd("XINFO").arg("GROUPS").arg(&s.key).query_async(&mut conn).await;
        if let Ok(groups) = groups {
            for g in groups {
                let fields = flat_map(&g);
                if fields.iter().any(|(k, v)| k == "name" && matches!(v, Value::BulkString(b) if b == s.group.as_bytes())) {
                    for (k, v) in fields {
                        let n = match v {
                            Value::Int(i) => Some(*i),
                            _ => None,
                        };
                        match (k.as_str(), n) {
                            ("lag", Some(n)) => {
                                metrics.stream_lag.set(n);
                            }
                            ("pending", Some(n)) => {
                                metrics.stream_pending.set(n);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}

fn flat_map(v: &[Value]) -> Vec<(String, &Value)> {
    v.chunks(2)
        .filter_map(|c| match (&c[0], c.get(1)) {
            (Value::BulkString(k), Some(v)) => Some((String::from_utf8_lossy(k).into_owned(), v)),
            (Value::SimpleString(k), Some(v)) => Some((k.clone(), v)),
            _ => None,
        })
        .collect()
}
