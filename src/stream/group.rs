//! One consumer group of the event stream, as one consumer sees it: created if missing, read own
//! pending entries first and new ones after, entries of dead consumers reclaimed, held entries kept
//! fresh, depth reported. See the module header of [`crate::stream`] for the guarantee.

use super::{Entry, EntryId, InFlight};
use crate::retry::{self, Attempts, Failure, Policy, Reason};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId};
use redis::{FromRedisValue, ParsingError, Value};
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
                let next = crate::clock::rfc3339(crate::clock::now_ns() + wait.as_nanos() as u64);
                tracing::warn!(group = %s.group, attempt, error = %f, retry_ms = wait.as_millis() as u64, next_attempt_at = %next,
                    "cannot read the stream; not ready, retrying (logged on attempts 1, 2, 4, 8, ...)");
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
    let reply: ReadReply = cmd.query_async(reader).await?;
    tracing::Span::current().record("messaging.batch.message_count", reply.0.len());
    Ok(reply.0)
}

/// The entries of an `XREADGROUP` reply, taken apart in place: the reply's buffers become the
/// entries' IDs and payloads without copies. Accepts RESP2 (arrays) and RESP3 (maps) replies, `nil`
/// (nothing to read) and entries whose fields are `nil` (deleted from the stream while pending: no
/// payload). When an entry has field `r` more than once, the last one counts.
struct ReadReply(Vec<Entry>);

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut out = Vec::new();
        match v {
            Value::Nil => {}
            Value::Array(streams) => {
                for s in streams {
                    match s {
                        Value::Array(mut pair) if pair.len() == 2 => stream_entries(pair.pop().expect("two items"), &mut out)?,
                        other => return Err(unexpected("[stream, entries]", &other)),
                    }
                }
            }
            Value::Map(streams) => {
                for (_, entries) in streams {
                    stream_entries(entries, &mut out)?;
                }
            }
            other => return Err(unexpected("an array of streams", &other)),
        }
        Ok(ReadReply(out))
    }
}

fn stream_entries(v: Value, out: &mut Vec<Entry>) -> Result<(), ParsingError> {
    let items = match v {
        Value::Nil => return Ok(()),
        Value::Array(items) => items,
        other => return Err(unexpected("an array of entries", &other)),
    };
    out.reserve(items.len());
    for item in items {
        let Value::Array(mut pair) = item else { return Err(unexpected("[id, fields]", &item)) };
        if pair.len() < 2 {
            return Err(unexpected("[id, fields]", &Value::Array(pair)));
        }
        pair.truncate(2);
        let fields = pair.pop().expect("two items");
        let id = match pair.pop().expect("two items") {
            Value::BulkString(b) => String::from_utf8(b)?,
            Value::SimpleString(s) => s,
            other => return Err(unexpected("an entry ID", &other)),
        };
        out.push(Entry { id, payload: payload(fields) });
    }
    Ok(())
}

/// The value of field `r` (the last one), as bytes.
fn payload(fields: Value) -> Option<bytes::Bytes> {
    let value = match fields {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut found = None;
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if is_r(&k) {
                    found = Some(v);
                }
            }
            found
        }
        Value::Map(pairs) => pairs.into_iter().filter(|(k, _)| is_r(k)).map(|(_, v)| v).last(),
        _ => None,
    };
    match value? {
        Value::BulkString(b) => Some(bytes::Bytes::from(b)),
        Value::SimpleString(s) => Some(bytes::Bytes::from(s.into_bytes())),
        _ => None,
    }
}

fn is_r(k: &Value) -> bool {
    match k {
        Value::BulkString(b) => b == b"r",
        Value::SimpleString(s) => s == "r",
        _ => false,
    }
}

fn unexpected(what: &str, got: &Value) -> ParsingError {
    let kind = match got {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) => "a string",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "another type",
    };
    format!("XREADGROUP reply: expected {what}, got {kind}").into()
}

pub(super) fn to_entry(mut id: StreamId) -> Entry {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: Value) -> Value {
        Value::Array(vec![bulk(id), fields])
    }

    #[test]
    fn a_read_reply_is_taken_apart_into_entries_in_order() {
        let entries = Value::Array(vec![
            entry("1-0", Value::Array(vec![bulk("r"), bulk("{\"a\":1}")])),
            entry("1-1", Value::Array(vec![bulk("other"), bulk("x")])),
            entry("1-2", Value::Nil),
            entry("1-3", Value::Array(vec![bulk("r"), bulk("first"), bulk("x"), bulk("y"), bulk("r"), bulk("last")])),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("vcon_otel:events"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("vcon_otel:events"), entries)]);
        for reply in [resp2, resp3] {
            let got = ReadReply::from_redis_value(reply).unwrap().0;
            let want = vec![
                Entry { id: "1-0".into(), payload: Some(bytes::Bytes::from_static(b"{\"a\":1}")) },
                Entry { id: "1-1".into(), payload: None },
                Entry { id: "1-2".into(), payload: None },
                Entry { id: "1-3".into(), payload: Some(bytes::Bytes::from_static(b"last")) },
            ];
            assert_eq!(got, want);
        }
        assert!(ReadReply::from_redis_value(Value::Nil).unwrap().0.is_empty());
        let err = ReadReply::from_redis_value(Value::Int(3)).err().expect("an integer is no read reply");
        assert!(err.to_string().contains("expected an array of streams, got an integer"), "{err}");
    }
}
