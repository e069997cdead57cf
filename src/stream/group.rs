//! One consumer group of the event stream, as one consumer sees it: created if missing, read own
//! pending entries first and new ones after, entries of dead consumers reclaimed, held entries kept
//! fresh, depth reported. See the module header of [`crate::stream`] for the guarantee.

use super::{Entry, EntryId, InFlight};
use crate::retry::{self, Attempts, Failure, Policy, Reason};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a group created by [`Group::ensure`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the stream's first entry (`0`): the main pipeline misses nothing written before its
    /// first start.
    Beginning,
    /// At the stream's end (`$`): a hosted tracer added later does not replay history.
    End,
}

/// What one consumer of one group needs to know.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The stream key (`stream.key`).
    pub stream: String,
    pub group: String,
    /// This consumer's name; stable across restarts so a restart re-reads its own pending entries.
    pub consumer: String,
    pub start: Start,
    /// Entries per `XREADGROUP`/`XAUTOCLAIM` call.
    pub read_count: usize,
    /// How long one `XREADGROUP` waits for new entries.
    pub block: Duration,
    /// Entries pending this long with another consumer are taken over.
    pub claim_idle: Duration,
}

/// A group's backlog: entries not yet delivered to it (`lag`, unknown when Redis cannot tell) and
/// delivered but not acknowledged (`pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub lag: Option<i64>,
    pub pending: i64,
}

impl Depth {
    /// Lag plus pending (lag counted as 0 when unknown).
    pub fn total(&self) -> i64 {
        self.lag.unwrap_or(0) + self.pending
    }
}

/// A reading consumer of one group.
pub struct Group {
    s: GroupSettings,
    /// Blocks in `XREADGROUP`, so it is nobody else's.
    reader: ConnectionManager,
    /// Claims and group management.
    conn: ConnectionManager,
    inflight: InFlight,
    /// Next own-pending ID to re-read from; `None` once the own pending list was read through.
    cursor: Option<EntryId>,
    last_claim: Option<Instant>,
}

const READ_RETRY: Policy = Policy::forever(Duration::from_millis(100), Duration::from_secs(5));

impl Group {
    /// `reader` must have a response timeout longer than `s.block`.
    pub fn new(s: GroupSettings, reader: ConnectionManager, conn: ConnectionManager, inflight: InFlight) -> Group {
        Group { s, reader, conn, inflight, cursor: Some("0".into()), last_claim: None }
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.s
    }

    pub fn inflight(&self) -> &InFlight {
        &self.inflight
    }

    /// A connection for commands other than the blocking read (shared, multiplexed).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Creates the group (and the stream) if missing.
    pub async fn ensure(&mut self) -> redis::RedisResult<()> {
        ensure(&mut self.conn, &self.s.stream, &self.s.group, self.s.start).await
    }

    /// The next entries for this consumer: reclaimed or own pending ones first, then new ones
    /// (waiting up to `block`; empty when none came). Waits while `max_inflight` entries are held.
    /// Redis errors are retried with backoff (logged sparsely); `None` once `stop` turns true.
    pub async fn read(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Vec<Entry>> {
        let reserved = tokio::select! {
            r = self.inflight.reserve(self.s.read_count) => r,
            _ = stop.wait_for(|s| *s) => return None,
        };
        if self.last_claim.is_none_or(|t| t.elapsed() >= self.s.claim_idle / 2) {
            self.last_claim = Some(Instant::now());
            self.refresh_held().await;
            match self.reclaim().await {
                Ok(claimed) if !claimed.is_empty() => return Some(self.inflight.admit(reserved, claimed, |e| &e.id)),
                Ok(_) => {}
                Err(e) => tracing::warn!(group = %self.s.group, error = %e, "XAUTOCLAIM failed; retrying next round"),
            }
        }
        let s = &self.s;
        let mut attempts = Attempts::new(READ_RETRY);
        let mut log = |attempt: u32, f: &Failure, wait: Duration| {
            if retry::worth_logging(attempt) {
                tracing::warn!(group = %s.group, attempt, error = %f, retry_ms = wait.as_millis() as u64, "cannot read the stream; retrying");
            }
        };
        let out = loop {
            let r = match read_once(&mut self.reader, s, self.cursor.as_deref()).await {
                Ok(got) => Ok(got),
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        let _ = ensure(&mut self.conn, &s.stream, &s.group, s.start).await;
                    }
                    Err(Failure::retryable(Reason::Transport, format!("XREADGROUP {}: {e}", s.stream)))
                }
            };
            if let Some(o) = attempts.judge(r, stop, &mut log).await {
                break o;
            }
        };
        match out {
            retry::Outcome::Done { value: got, attempts } => {
                if attempts > 1 {
                    // After an outage our own pending list is read through again.
                    self.cursor = Some("0".into());
                    return Some(Vec::new());
                }
                if self.cursor.is_some() {
                    self.cursor = got.last().map(|e| e.id.clone());
                }
                Some(self.inflight.admit(reserved, got, |e| &e.id))
            }
            _ => None,
        }
    }

    /// Takes over entries pending longer than `claim_idle` with other consumers (at most one read's
    /// worth); acknowledges those trimmed from the stream meanwhile (nothing is left to read).
    #[tracing::instrument(name = "reclaim", level = "debug", skip_all, fields(otel.name = %format_args!("reclaim {}", self.s.stream), otel.kind = "consumer", messaging.system = "redis", messaging.operation.type = "receive", messaging.operation.name = "reclaim", messaging.destination.name = %self.s.stream, messaging.consumer.group.name = %self.s.group, messaging.client.id = %self.s.consumer, messaging.batch.message_count = tracing::field::Empty))]
    async fn reclaim(&mut self) -> redis::RedisResult<Vec<Entry>> {
        let mut start = "0-0".to_string();
        let mut all = Vec::new();
        while all.len() < self.s.read_count {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.s.stream)
                .arg(&self.s.group)
                .arg(&self.s.consumer)
                .arg(self.s.claim_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(self.s.read_count - all.len())
                .query_async(&mut self.conn)
                .await?;
            let n = reply.claimed.len();
            all.extend(reply.claimed.into_iter().map(to_entry));
            if !reply.deleted_ids.is_empty() {
                let _: redis::RedisResult<i64> =
                    redis::cmd("XACK").arg(&self.s.stream).arg(&self.s.group).arg(&reply.deleted_ids).query_async(&mut self.conn).await;
            }
            if reply.next_stream_id == "0-0" || n == 0 {
                break;
            }
            start = reply.next_stream_id;
        }
        if !all.is_empty() {
            tracing::info!(group = %self.s.group, entries = all.len(), "reclaimed entries left pending by another consumer");
        }
        tracing::Span::current().record("messaging.batch.message_count", all.len());
        Ok(all)
    }

    /// Resets the idle time of every entry this consumer holds, so other replicas do not take them.
    async fn refresh_held(&mut self) {
        let ids = self.inflight.snapshot();
        for chunk in ids.chunks(1000) {
            let r: redis::RedisResult<Value> = redis::cmd("XCLAIM")
                .arg(&self.s.stream)
                .arg(&self.s.group)
                .arg(&self.s.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(&mut self.conn)
                .await;
            if let Err(e) = r {
                tracing::warn!(group = %self.s.group, error = %e, "XCLAIM refresh failed");
            }
        }
    }

    /// The group's lag and pending count (`XINFO GROUPS`); `None` when Redis cannot be asked.
    pub async fn depth(&mut self) -> Option<Depth> {
        depth(&mut self.conn, &self.s.stream, &self.s.group).await
    }
}

/// Creates `group` on `stream` (and the stream) if missing.
pub async fn ensure(conn: &mut ConnectionManager, stream: &str, group: &str, start: Start) -> redis::RedisResult<()> {
    let from = match start {
        Start::Beginning => "0",
        Start::End => "$",
    };
    let r: redis::RedisResult<()> = redis::cmd("XGROUP").arg("CREATE").arg(stream).arg(group).arg(from).arg("MKSTREAM").query_async(conn).await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// One `XREADGROUP` (blocking up to `block` for new entries; at once for own pending ones): the
/// bridge's `receive {stream}` span.
#[tracing::instrument(name = "receive", level = "debug", skip_all, fields(otel.name = %format_args!("receive {}", s.stream), otel.kind = "consumer", messaging.system = "redis", messaging.operation.type = "receive", messaging.operation.name = "receive", messaging.destination.name = %s.stream, messaging.consumer.group.name = %s.group, messaging.client.id = %s.consumer, vcon_otel.pending_only = cursor.is_some(), messaging.batch.message_count = tracing::field::Empty))]
async fn read_once(reader: &mut ConnectionManager, s: &GroupSettings, cursor: Option<&str>) -> redis::RedisResult<Vec<Entry>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(&s.group).arg(&s.consumer).arg("COUNT").arg(s.read_count);
    if cursor.is_none() {
        cmd.arg("BLOCK").arg(s.block.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&s.stream).arg(cursor.unwrap_or(">"));
    let reply: Option<StreamReadReply> = cmd.query_async(reader).await?;
    let got = reply.map(entries).unwrap_or_default();
    tracing::Span::current().record("messaging.batch.message_count", got.len());
    Ok(got)
}

/// The entries of an `XREADGROUP` reply.
pub fn entries(reply: StreamReadReply) -> Vec<Entry> {
    reply.keys.into_iter().flat_map(|k| k.ids).map(to_entry).collect()
}

fn to_entry(mut id: StreamId) -> Entry {
    let payload = match id.map.remove("r") {
        Some(Value::BulkString(b)) => Some(bytes::Bytes::from(b)),
        Some(Value::SimpleString(s)) => Some(bytes::Bytes::from(s.into_bytes())),
        _ => None,
    };
    Entry { id: id.id, payload }
}

/// Lag and pending of one group (`XINFO GROUPS`).
pub async fn depth(conn: &mut ConnectionManager, stream: &str, group: &str) -> Option<Depth> {
    let groups: Vec<Vec<Value>> = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await.ok()?;
    for g in groups {
        let fields: Vec<(String, &Value)> = g
            .chunks(2)
            .filter_map(|c| match (&c[0], c.get(1)) {
                (Value::BulkString(k), Some(v)) => Some((String::from_utf8_lossy(k).into_owned(), v)),
                (Value::SimpleString(k), Some(v)) => Some((k.clone(), v)),
                _ => None,
            })
            .collect();
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        if !matches!(field("name"), Some(Value::BulkString(b)) if b == group.as_bytes()) {
            continue;
        }
        let int = |name: &str| match field(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        return Some(Depth { lag: int("lag"), pending: int("pending").unwrap_or(0) });
    }
    None
}
