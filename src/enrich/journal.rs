//! Where runs' journals are kept (`crate::compliance::journal` defines an entry): the Redis hash
//! `vcon_otel:steps:{trace_id}:run` (field `{seq}`, value the entry's JSON), written by the main
//! pipeline's enrich for every record that has a `seq`, before the record moves on to assemble —
//! in the same round trip that reads back the journals of the runs this read ends;
//! so when a replica reads a run's ending record, the entries of every earlier record are there or
//! on their way from the replica that read them. It expires `compliance.step_record_ttl_secs` after
//! its last write (the safety net) and is deleted once the run's root is acknowledged
//! (`stream::done::mark`).
//!
//! A run's ending needs its journal back. When every entry of the run up to its ending was
//! written by this process, the journal comes from [`Local`] (what this process wrote: an entry is
//! a function of its record and hash, so the same bytes Redis holds) and is not read back;
//! otherwise it is read with `HGETALL`.
//!
//! The in-process demo has no Redis: [`Store::Memory`] keeps journals in a map and hands a
//! complete one over once (nothing is re-delivered there).
//!
//! Errors never fail the caller: a journal that cannot be written or read makes the run's chain
//! unknown (counted as `vcon_otel_step_record_errors_total`, the root then carries no chain).

use crate::compliance::journal::{self, Journal, JournalEntry};
use crate::stream::done::journal_key;
use redis::aio::ConnectionManager;
use crate::ids::IdMap;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Journals of open runs in the demo, by trace ID.
type Memory = Arc<Mutex<HashMap<[u8; 16], Journal>>>;

/// Most runs whose written entries [`Local`] keeps.
pub const LOCAL_RUNS: usize = 8_192;

/// The entries this process wrote, by run, until the run's ending takes them. Bounded: at most
/// [`LOCAL_RUNS`] runs, the oldest written forgotten first (a forgotten run, or one that another
/// replica also journaled, is read back from Redis: nothing is lost, only the read is not saved).
#[derive(Debug, Default)]
pub struct Local {
    runs: IdMap<[u8; 16], Journal>,
    /// Runs in the order of their first write (a taken run's slot ages out with the rest).
    order: VecDeque<[u8; 16]>,
}

impl Local {
    fn add(&mut self, t: [u8; 16], seq: u64, e: JournalEntry) {
        let j = self.runs.entry(t).or_insert_with(|| {
            self.order.push_back(t);
            Journal::new()
        });
        j.insert(seq, e);
        while self.order.len() > LOCAL_RUNS {
            if let Some(old) = self.order.pop_front() {
                self.runs.remove(&old);
            }
        }
    }

    /// The run's journal when it is complete up to `upto`; the run is forgotten either way.
    fn take(&mut self, t: &[u8; 16], upto: Option<u64>) -> Option<Journal> {
        let j = self.runs.remove(t)?;
        upto.is_some_and(|u| journal::complete_up_to(&j, u)).then_some(j)
    }
}

/// Where journals live.
#[derive(Clone)]
pub enum Store {
    Redis { conn: ConnectionManager, ttl: Duration, local: Arc<Mutex<Local>> },
    Memory(Memory),
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(Memory::default())
    }

    pub fn redis(conn: ConnectionManager, ttl: Duration) -> Store {
        Store::Redis { conn, ttl, local: Arc::default() }
    }

    /// Writes the entries (one `HSET` and one `EXPIRE` per run), then reads the journals of `asks`
    /// (trace ID, the run's ending `seq`) that [`Local`] does not have complete, all in one
    /// pipelined round trip; returns those journals in order. The entries are kept by [`Local`].
    pub async fn write(&self, entries: Vec<([u8; 16], u64, JournalEntry)>, asks: &[([u8; 16], Option<u64>)]) -> Result<Vec<Option<Journal>>, redis::RedisError> {
        if entries.is_empty() && asks.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Redis { conn, ttl, local } => {
                let mut pipe = redis::pipe();
                super::steps::write_per_run(&mut pipe, entries.iter().map(|(t, seq, e)| (*t, *seq, e.to_json())), journal_key, *ttl);
                let mut out: Vec<Option<Journal>> = {
                    let mut l = local.lock().expect("local journals");
                    for (t, seq, e) in entries {
                        l.add(t, seq, e);
                    }
                    asks.iter().map(|(t, upto)| l.take(t, *upto)).collect()
                };
                let missing: Vec<usize> = (0..asks.len()).filter(|i| out[*i].is_none()).collect();
                if missing.is_empty() {
                    return pipe.query_async::<()>(&mut conn.clone()).await.map(|_| out);
                }
                let read = read_back(&mut pipe, missing.iter().map(|i| &asks[*i].0), conn).await?;
                for (i, j) in missing.into_iter().zip(read) {
                    out[i] = Some(j);
                }
                Ok(out)
            }
            Store::Memory(m) => {
                {
                    let mut m = m.lock().expect("journal map");
                    for (t, seq, e) in entries {
                        m.entry(t).or_default().insert(seq, e);
                    }
                }
                Ok(self.read(asks).await)
            }
        }
    }

    /// The journals of these runs (trace ID, the run's ending `seq` when known), in order (one
    /// pipelined round trip); `None` when unreadable. In the demo a journal complete up to the
    /// ending `seq` is removed as it is read.
    pub async fn read(&self, traces: &[([u8; 16], Option<u64>)]) -> Vec<Option<Journal>> {
        if traces.is_empty() {
            return Vec::new();
        }
        match self {
            Store::Redis { conn, .. } => {
                match read_back(&mut redis::pipe(), traces.iter().map(|(t, _)| t), conn).await {
                    Ok(v) => v.into_iter().map(Some).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, runs = traces.len(), "cannot read run journals; these runs' chains are unknown");
                        vec![None; traces.len()]
                    }
                }
            }
            Store::Memory(m) => {
                let mut m = m.lock().expect("journal map");
                traces
                    .iter()
                    .map(|(t, upto)| {
                        let done = m.get(t).is_some_and(|j| upto.is_some_and(|u| journal::complete_up_to(j, u)));
                        Some(if done { m.remove(t).unwrap_or_default() } else { m.get(t).cloned().unwrap_or_default() })
                    })
                    .collect()
            }
        }
    }
}

/// Sends `pipe` (whatever it holds already, with no replies wanted) followed by one `HGETALL` per
/// run, in one round trip; returns those journals in order. Both reads of journals go through it.
async fn read_back<'a>(pipe: &mut redis::Pipeline, traces: impl Iterator<Item = &'a [u8; 16]>, conn: &ConnectionManager) -> Result<Vec<Journal>, redis::RedisError> {
    for t in traces {
        pipe.cmd("HGETALL").arg(journal_key(t));
    }
    let v: Vec<Vec<(String, String)>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(v.into_iter().map(journal::parse).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts_ns: u64) -> JournalEntry {
        JournalEntry { ts_ns, ..JournalEntry::default() }
    }

    #[test]
    fn a_run_written_here_up_to_its_ending_is_taken_once_without_a_read() {
        let mut l = Local::default();
        for seq in 0..4 {
            l.add([1; 16], seq, entry(seq));
        }
        assert_eq!(l.take(&[1; 16], Some(3)).map(|j| j.len()), Some(4));
        assert!(l.take(&[1; 16], Some(3)).is_none(), "taken: the next ask reads Redis");
    }

    #[test]
    fn a_run_with_a_gap_here_is_read_back_and_forgotten() {
        let mut l = Local::default();
        l.add([2; 16], 0, entry(0));
        l.add([2; 16], 2, entry(2));
        assert!(l.take(&[2; 16], Some(2)).is_none(), "seq 1 was journaled elsewhere");
        assert!(l.runs.is_empty());
        l.add([3; 16], 0, entry(0));
        assert!(l.take(&[3; 16], None).is_none(), "no ending seq: never complete");
    }

    #[test]
    fn the_oldest_runs_are_forgotten_past_the_bound() {
        let mut l = Local::default();
        for i in 0..LOCAL_RUNS + 10 {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&(i as u64).to_le_bytes());
            l.add(t, 0, entry(0));
        }
        assert_eq!(l.runs.len(), LOCAL_RUNS);
        assert_eq!(l.order.len(), LOCAL_RUNS);
        assert!(l.take(&[0; 16], Some(0)).is_none(), "the first run was forgotten");
    }
}
