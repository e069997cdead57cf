//! Step records and the snapshot lifecycle (`docs/events.md`, "Snapshot lifecycle"): the one home
//! of where a step's compliance hash is kept once known, and of when a snapshot is deleted.
//!
//! A step record is the Redis hash `vcon_otel:steps:{trace_id}` (32 lowercase hex), one field per
//! step: `{seq}` → [`StepHash::encode`]d hash. It expires [`Lifecycle::ttl`] after its last write
//! (the safety net for consumers that are down longer are the producer's snapshots, same TTL class).
//!
//! Who writes and who deletes, after hashing a snapshot it read itself ([`settle`]):
//! - every consumer writes the step's field (idempotent: the same document gives the same hash);
//! - with no hosted tracer that needs a snapshot's *content* ([`Lifecycle::content_users`] = 0),
//!   the same atomic pipeline deletes the snapshot and removes it from the producer's budget index
//!   (`ZREM`); the field is written first, so a consumer that finds the copy gone finds the hash;
//! - otherwise only content users delete: each counts its use (`HINCRBY` field `{seq}:used`) and
//!   the one that reaches `content_users` deletes.
//!
//! The main pipeline settles a read's snapshots after the read has moved on (together with its
//! journal write, `super::Enricher::complete`), so the next read's snapshots are fetched meanwhile;
//! until then the hashes wait in [`Unsettled`], which [`lookup`] asks before Redis.
//!
//! Readers ([`lookup`], [`previous`]) never fail the caller: a Redis error is logged and the step
//! is treated as unknown (the span then says why).

use crate::compliance::StepHash;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the lifecycle is run; the same on every replica (from `compliance:` in the config).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// The producer's budget index (`snapshot_index`, default `vcon_otel:snaps`).
    pub index_key: String,
    /// How long a step record lives after its last write.
    pub ttl: Duration,
    /// Hosted tracers that need snapshot content (`jlinc` with `hash_event_data: false`).
    pub content_users: u32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { index_key: "vcon_otel:snaps".into(), ttl: Duration::from_secs(900), content_users: 0 }
    }
}

/// One step: the run's trace ID and the record's `seq`.
pub type StepId = ([u8; 16], u64);

/// The step record of a run.
pub fn key(trace: &[u8; 16]) -> String {
    crate::ids::key("vcon_otel:steps:", trace, "")
}

/// Hashes whose step records are on their way (hashed, settle not yet done): a step is in here
/// from the moment its read leaves enrich until its settle's round trip ended (written or failed),
/// so at most the snapshots of the reads between enrich and its completion (bounded channel).
#[derive(Debug, Clone, Default)]
pub struct Unsettled(Arc<Mutex<HashMap<StepId, StepHash>>>);

impl Unsettled {
    pub fn note(&self, done: &[Settled]) {
        let mut m = self.0.lock().expect("unsettled map");
        m.extend(done.iter().map(|s| (s.step, s.hash.clone())));
    }

    pub fn forget(&self, done: &[Settled]) {
        let mut m = self.0.lock().expect("unsettled map");
        for s in done {
            m.remove(&s.step);
        }
    }

    fn get(&self, step: &StepId) -> Option<StepHash> {
        self.0.lock().expect("unsettled map").get(step).cloned()
    }
}

/// The known hashes of these steps, in order: from `unsettled` when there, else the step records
/// (one pipelined round trip).
pub async fn lookup(conn: &ConnectionManager, unsettled: Option<&Unsettled>, steps: &[StepId]) -> Vec<Option<StepHash>> {
    let mut out: Vec<Option<StepHash>> = steps.iter().map(|s| unsettled.and_then(|u| u.get(s))).collect();
    let ask: Vec<usize> = (0..steps.len()).filter(|i| out[*i].is_none()).collect();
    if ask.is_empty() {
        return out;
    }
    let mut pipe = redis::pipe();
    for i in &ask {
        let (t, seq) = &steps[*i];
        pipe.cmd("HGET").arg(key(t)).arg(seq);
    }
    match pipe.query_async::<Vec<Option<String>>>(&mut conn.clone()).await {
        Ok(v) => {
            for (i, s) in ask.into_iter().zip(v) {
                out[i] = s.as_deref().and_then(StepHash::decode);
            }
        }
        Err(e) => tracing::warn!(error = %e, steps = ask.len(), "cannot read step records; these steps have no hash"),
    }
    out
}

/// The hash of the latest step of the run before `seq` (the document a step was given).
pub async fn previous(conn: &ConnectionManager, trace: &[u8; 16], seq: u64) -> Option<StepHash> {
    let all: Vec<(String, String)> = match redis::cmd("HGETALL").arg(key(trace)).query_async(&mut conn.clone()).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a step record; the previous step's hash is unknown");
            return None;
        }
    };
    all.into_iter()
        .filter_map(|(f, v)| Some((f.parse::<u64>().ok()?, v)))
        .filter(|(s, _)| *s < seq)
        .max_by_key(|(s, _)| *s)
        .and_then(|(_, v)| StepHash::decode(&v))
}

/// A snapshot this consumer read and hashed.
#[derive(Debug, Clone)]
pub struct Settled {
    pub step: StepId,
    pub snapshot: String,
    pub hash: StepHash,
}

/// Writes the step records of these hashed snapshots and deletes the snapshots this consumer is
/// the one to delete (module header). `content_user`: this consumer used the snapshots' content.
/// Returns how many snapshots it deleted.
pub async fn settle(conn: &ConnectionManager, lc: &Lifecycle, done: &[Settled], content_user: bool) -> Result<usize, redis::RedisError> {
    if done.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    write_per_run(&mut pipe, done.iter().map(|s| (s.step.0, s.step.1, s.hash.encode())), key, lc.ttl);
    if lc.content_users == 0 {
        delete(&mut pipe, lc, &done.iter().map(|s| s.snapshot.as_str()).collect::<Vec<_>>());
    } else if content_user {
        for s in done {
            pipe.cmd("HINCRBY").arg(key(&s.step.0)).arg(format!("{}:used", s.step.1)).arg(1);
        }
    }
    let mut c = conn.clone();
    if lc.content_users == 0 {
        pipe.query_async::<()>(&mut c).await?;
        return Ok(done.len());
    }
    let used: Vec<i64> = if content_user { pipe.query_async(&mut c).await? } else { pipe.query_async::<()>(&mut c).await.map(|_| Vec::new())? };
    let last: Vec<&str> = done.iter().zip(&used).filter(|(_, n)| **n >= i64::from(lc.content_users)).map(|(s, _)| s.snapshot.as_str()).collect();
    if last.is_empty() {
        return Ok(0);
    }
    let mut del = redis::pipe();
    del.atomic();
    delete(&mut del, lc, &last);
    del.query_async::<()>(&mut c).await?;
    Ok(last.len())
}

/// Adds one `HSET` of every field and one `EXPIRE` per run's hash (`key` of the trace ID) for
/// `fields` (trace ID, `seq`, value): the step records and the run journals are written so, in a
/// fraction of Redis's per-command work of a command per step.
pub(super) fn write_per_run(pipe: &mut redis::Pipeline, fields: impl IntoIterator<Item = ([u8; 16], u64, String)>, key: fn(&[u8; 16]) -> String, ttl: Duration) {
    let mut runs: crate::ids::IdMap<[u8; 16], Vec<(u64, String)>> = Default::default();
    for (trace, seq, value) in fields {
        runs.entry(trace).or_default().push((seq, value));
    }
    for (trace, fields) in &runs {
        let k = key(trace);
        pipe.cmd("HSET").arg(&k).arg(fields).ignore();
        pipe.cmd("EXPIRE").arg(&k).arg(ttl.as_secs().max(1)).ignore();
    }
}

/// Adds the deletion of these snapshots and their removal from the producer's budget index (one
/// `DEL`, one `ZREM`).
fn delete(pipe: &mut redis::Pipeline, lc: &Lifecycle, snapshots: &[&str]) {
    pipe.cmd("DEL").arg(snapshots).ignore();
    pipe.cmd("ZREM").arg(&lc.index_key).arg(snapshots).ignore();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_hash_survives_its_encoding() {
        let full = StepHash { sha256_hex: "ab".repeat(32), sha512_token: Some("sha512-AbC_-".into()), counts: Some([1, 2, 0, 7]) };
        let bare = StepHash { sha256_hex: "0f".repeat(32), sha512_token: None, counts: None };
        for h in [full, bare] {
            assert_eq!(StepHash::decode(&h.encode()), Some(h));
        }
        assert_eq!(StepHash::decode("not a hash"), None);
        assert_eq!(StepHash::decode(&format!("{} n=1,2", "ab".repeat(32))), None, "four counts or none");
    }
}
