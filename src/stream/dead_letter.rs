//! Dead letters: entries that cannot be used (a record that does not decode, spans the collector
//! rejected permanently) are appended to the dead-letter stream (`stream.dead_letter_key`) with the
//! payload they were read with, *before* they are acknowledged, so nothing is acknowledged and lost
//! without a copy. Fields of a dead letter: `stage` (`decode`, `export`), `reason` (a bounded label),
//! `detail` (the message), `source_id` (the entry ID) and `r` (the original record bytes).
//!
//! Entries held by an open run keep only their ID (`assemble::run`); before such an entry is
//! dead-lettered, its record is re-read from the source stream by ID ([`DeadLetters::reread`]).

use super::Entry;
use bytes::Bytes;
use redis::streams::StreamRangeReply;
use crate::metrics::{Metrics, StageLabel};
use crate::retry::{self, Attempts, Failure, Policy, Reason};
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One entry to dead-letter, and why.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub stage: &'static str,
    pub reason: &'a str,
    pub detail: &'a str,
    pub entry: &'a Entry,
}

/// Where dead letters go. `write` returns true once every letter is stored (then the entries may be
/// acknowledged), false when `stop` turned true first (they stay pending and come back after a
/// restart).
pub trait DeadLetters: Send + Sync {
    fn write<'a>(&'a self, letters: &'a [DeadLetter<'a>], stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, bool>;

    /// The records of entries that were held without them, read again from the source stream by
    /// ID (`XRANGE id id`, one round trip for all), in the order of `ids`; `None` for an entry no
    /// longer in the stream (trimmed by `MAXLEN`, deleted) or without field `r`. Retried until Redis
    /// answers; `None` overall when `stop` turned true first. Called only for entries about to be
    /// dead-lettered.
    fn reread<'a>(&'a self, ids: &'a [&'a str], stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, Option<Vec<Option<Bytes>>>>;
}

/// Dead letters into the Redis dead-letter stream; retried until Redis takes them.
pub struct RedisDeadLetters {
    pub conn: ConnectionManager,
    pub key: String,
    /// The stream the entries were read from (`stream.key`), where held entries are re-read.
    pub source: String,
    pub metrics: Arc<Metrics>,
}

const WRITE_RETRY: Policy = Policy::forever(Duration::from_millis(100), Duration::from_secs(5));

impl DeadLetters for RedisDeadLetters {
    fn write<'a>(&'a self, letters: &'a [DeadLetter<'a>], stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if letters.is_empty() {
                return true;
            }
            let mut pipe = redis::pipe();
            for l in letters {
                pipe.cmd("XADD")
                    .arg(&self.key)
                    .arg("*")
                    .arg("stage")
                    .arg(l.stage)
                    .arg("reason")
                    .arg(l.reason)
                    .arg("detail")
                    .arg(l.detail)
                    .arg("source_id")
                    .arg(&l.entry.id)
                    .arg("r")
                    .arg(l.entry.payload.as_deref().unwrap_or_default())
                    .ignore();
            }
            let mut attempts = Attempts::new(WRITE_RETRY);
            let mut log = |attempt: u32, f: &Failure, _: Duration| {
                if retry::worth_logging(attempt) {
                    tracing::warn!(attempt, error = %f, "cannot write to the dead-letter stream; retrying");
                }
            };
            let mut conn = self.conn.clone();
            let out = loop {
                let r = pipe.query_async::<()>(&mut conn).await.map_err(|e| Failure::retryable(Reason::Transport, format!("XADD {}: {e}", self.key)));
                if let Some(o) = attempts.judge(r, stop, &mut log).await {
                    break o;
                }
            };
            if !matches!(out, retry::Outcome::Done { .. }) {
                return false;
            }
            for l in letters {
                self.metrics.dead_letters.get_or_create(&StageLabel { stage: l.stage }).inc();
                if l.entry.payload.is_none() {
                    self.metrics.dead_letters_without_record.inc();
                }
            }
            true
        })
    }

    fn reread<'a>(&'a self, ids: &'a [&'a str], stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, Option<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Some(vec![]);
            }
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.cmd("XRANGE").arg(&self.source).arg(*id).arg(*id).arg("COUNT").arg(1);
            }
            let mut attempts = Attempts::new(WRITE_RETRY);
            let mut log = |attempt: u32, f: &Failure, _: Duration| {
                if retry::worth_logging(attempt) {
                    tracing::warn!(attempt, error = %f, "cannot re-read held entries to dead-letter them; retrying");
                }
            };
            let mut conn = self.conn.clone();
            let out = loop {
                let r = pipe
                    .query_async::<Vec<StreamRangeReply>>(&mut conn)
                    .await
                    .map_err(|e| Failure::retryable(Reason::Transport, format!("XRANGE {}: {e}", self.source)));
                if let Some(o) = attempts.judge(r, stop, &mut log).await {
                    break o;
                }
            };
            match out {
                retry::Outcome::Done { value, .. } => {
                    Some(value.into_iter().map(|reply| reply.ids.into_iter().next().and_then(|id| super::group::to_entry(id).payload)).collect())
                }
                _ => None,
            }
        })
    }
}

/// No dead-letter stream (the in-process demo): letters are logged and dropped.
pub struct NoDeadLetters;

impl DeadLetters for NoDeadLetters {
    fn write<'a>(&'a self, letters: &'a [DeadLetter<'a>], _stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, bool> {
        for l in letters {
            tracing::warn!(stage = l.stage, reason = l.reason, detail = l.detail, "dropping an unusable entry (no dead-letter stream here)");
        }
        Box::pin(async { true })
    }

    /// No stream to read from: no records.
    fn reread<'a>(&'a self, ids: &'a [&'a str], _stop: &'a mut watch::Receiver<bool>) -> BoxFuture<'a, Option<Vec<Option<Bytes>>>> {
        Box::pin(async move { Some(vec![None; ids.len()]) })
    }
}
