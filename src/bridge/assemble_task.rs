//! The assemble task: the I/O around the (pure) assembler. Run endings get their journals first
//! (`ends`); once a second, open runs another replica finished are acknowledged and runs idle past
//! `runs.idle_timeout` are closed as `incomplete` (with their journals). Without Redis (the demo)
//! it closes every run still open when its input ends. An entry an open run takes is reported to
//! the in-flight bound (`stream::InFlight::held_by_run`): it no longer counts as read ahead.

use super::ends::{Ends, Ready, ASK_EVERY};
use crate::assemble::{Accepted, Assembler, Output};
use crate::enrich::journal::Store;
use crate::enrich::Item;
use crate::metrics::Metrics;
use crate::stream::{done, InFlight};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Runs quiet this long are asked about: did another replica export their root?
const QUIET: Duration = Duration::from_secs(1);
/// Most runs asked about per sweep (one pipelined round trip).
const ASK_AT_MOST: usize = 2_000;

/// What the task reads and writes besides its channels (Redis: none in the demo).
pub(super) struct Io {
    pub redis: Option<ConnectionManager>,
    pub journal: Store,
    pub inflight: Option<InFlight>,
}

pub(super) async fn run(mut asm: Assembler, mut rx: mpsc::Receiver<Vec<Item>>, tx: mpsc::Sender<Output>, io: Io, metrics: Arc<Metrics>) {
    let Io { mut redis, journal, inflight } = io;
    let inflight = inflight.as_ref();
    let mut ends = Ends::new(journal, metrics.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ask = tokio::time::interval(ASK_EVERY);
    ask.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ready = tokio::select! {
            biased;
            items = rx.recv() => {
                let Some(items) = items else { break };
                ends.prepare(items, Instant::now())
            }
            _ = ask.tick(), if ends.is_waiting() => ends.ready(Instant::now(), false).await,
            _ = tick.tick() => {
                let out = close_idle(&mut asm, redis.as_mut(), &ends, &metrics).await;
                if !send(&tx, out).await { return; }
                continue;
            }
        };
        if !accept(&mut asm, ready, &tx, inflight).await {
            return;
        }
    }
    let rest = ends.ready(Instant::now(), true).await;
    if !accept(&mut asm, rest, &tx, inflight).await {
        return;
    }
    if redis.is_none() {
        for run in asm.drain_all() {
            let j = ends.journals(&[run.trace_id()]).await.pop().flatten();
            let out = asm.close_incomplete(run, j.as_ref());
            if !send(&tx, out).await {
                return;
            }
        }
    }
}

async fn accept(asm: &mut Assembler, ready: Vec<Ready>, tx: &mpsc::Sender<Output>, inflight: Option<&InFlight>) -> bool {
    let now = Instant::now();
    for (item, journal) in ready {
        let Accepted { out, held } = asm.accept_item(item, journal.as_ref(), now);
        if let (Some(f), Some(id)) = (inflight, &held) {
            f.held_by_run(id);
        }
        if !send(tx, out).await {
            return false;
        }
    }
    true
}

async fn send(tx: &mpsc::Sender<Output>, out: Vec<Output>) -> bool {
    for o in out {
        if tx.send(o).await.is_err() {
            return false;
        }
    }
    true
}

/// Once a second: acknowledges the open runs another replica finished (their completion marker is
/// set), then closes as `incomplete` the runs idle past `runs.idle_timeout`.
async fn close_idle(asm: &mut Assembler, mut redis: Option<&mut ConnectionManager>, ends: &Ends, metrics: &Metrics) -> Vec<Output> {
    let now = Instant::now();
    let mut out = Vec::new();
    if let (Some(conn), Some(cutoff)) = (redis.as_deref_mut(), now.checked_sub(QUIET)) {
        let quiet = asm.stale(cutoff, ASK_AT_MOST);
        metrics.runs_waiting.set(quiet.len() as i64);
        let marks = done::finished(conn, &quiet).await;
        let now_ns = crate::clock::now_ns();
        for (key, end) in quiet.iter().zip(marks) {
            let Some(end_ns) = end else { continue };
            if let Some(held) = asm.finished_elsewhere(key) {
                metrics.runs_finished_elsewhere.inc();
                if end_ns > 0 {
                    let l = crate::metrics::RootLabel { root: "elsewhere" };
                    metrics.run_end_to_ack.get_or_create(&l).observe(now_ns.saturating_sub(end_ns) as f64 / 1e9);
                }
                out.push(Output::Ack(held));
            }
        }
    }
    out.extend(expire(asm, redis, ends).await);
    out
}

async fn expire(asm: &mut Assembler, redis: Option<&mut ConnectionManager>, ends: &Ends) -> Vec<Output> {
    let expired = asm.expire(Instant::now());
    if expired.is_empty() {
        return vec![];
    }
    let span = tracing::debug_span!("runs.close_idle", vcon_otel.runs.expired = expired.len());
    let traces: Vec<[u8; 16]> = expired.iter().map(|r| r.trace_id()).collect();
    let finished = match redis {
        Some(conn) => done::finished(conn, &traces).instrument(span.clone()).await.into_iter().map(|m| m.is_some()).collect(),
        None => vec![false; expired.len()],
    };
    // Only the runs closed here need their journals: a finished run's entries are acknowledged.
    let unfinished: Vec<[u8; 16]> = traces.iter().zip(&finished).filter(|(_, f)| !**f).map(|(t, _)| *t).collect();
    let mut journals = ends.journals(&unfinished).instrument(span.clone()).await.into_iter();
    let _in_span = span.enter();
    let mut out = Vec::new();
    for (run, finished) in expired.into_iter().zip(finished) {
        if finished {
            out.push(Output::Ack(run.held_entries()));
        } else {
            tracing::debug!(vcon_uuid = %run.vcon_uuid, run = %run.run, "run idle past runs.idle_timeout; closing it as incomplete");
            let journal = journals.next().flatten();
            out.extend(asm.close_incomplete(run, journal.as_ref()));
        }
    }
    out
}
