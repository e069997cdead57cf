//! Where runs' journals are kept (`crate::compliance::journal` defines an entry): the Redis hash
//! `vcon_otel:steps:{trace_id}:run` (field `{seq}`, value the entry's JSON), written by the main
//! pipeline's enrich for every record that has a `seq`, before the record moves on to assemble —
//! in the same round trip that reads back the journals of the runs this read ends;
//! so when a replica reads a run's ending record, the entries of every earlier record are there or
//! on their way from the replica that read them. It expires `compliance.step_record_ttl_secs` after
//! its last write (the safety net) and is deleted once the run's root is acknowledged
//! (`stream::done::mark`).
//!
//! The in-process demo has no Redis: [`Store::Memory`] keeps journals in a map and hands a
//! complete one over once (nothing is re-delivered there).
//!
//! Errors never fail the caller: a journal that cannot be written or read makes the run's chain
//! unknown (counted as `vcon_otel_step_record_errors_total`, the root then carries no chain).

use crate::compliance::journal::{self, Journal, JournalEntry};
use crate::stream::done::journal_key;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Journals of open runs in the demo, by trace ID.
type Memory = Arc<Mutex<HashMap<[u8; 16], Journal>>>;

/// Where journals live.
#[derive(Clone)]
pub enum Store {
    Redis { conn: ConnectionManager, ttl: Duration },
    Memory(Memory),
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(Memory::default())
    }

    /// Writes the entries (one `HSET` and one `EXPIRE` per run), then reads the journals of `asks`
    /// (trace ID, the run's ending `seq`), all in one pipelined round trip; returns those journals
    /// in order.
    pub async fn write(&self, entries: &[([u8; 16], u64, JournalEntry)], asks: &[([u8; 16], Option<u64>)]) -> Result<Vec<Option<Journal>>, redis::RedisError> {
        if entries.is_empty() && asks.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Redis { conn, ttl } => {
                let mut pipe = redis::pipe();
                let mut runs: HashMap<[u8; 16], Vec<(u64, String)>> = HashMap::new();
                for (t, seq, e) in entries {
                    runs.entry(*t).or_default().push((*seq, e.to_json()));
                }
                for (t, fields) in &runs {
                    let k = journal_key(t);
                    pipe.cmd("HSET").arg(&k).arg(fields).ignore();
                    pipe.cmd("EXPIRE").arg(&k).arg(ttl.as_secs().max(1)).ignore();
                }
                for (t, _) in asks {
                    pipe.cmd("HGETALL").arg(journal_key(t));
                }
                if asks.is_empty() {
                    return pipe.query_async::<()>(&mut conn.clone()).await.map(|_| Vec::new());
                }
                let v: Vec<Vec<(String, String)>> = pipe.query_async(&mut conn.clone()).await?;
                Ok(v.into_iter().map(|f| Some(journal::parse(f))).collect())
            }
            Store::Memory(m) => {
                {
                    let mut m = m.lock().expect("journal map");
                    for (t, seq, e) in entries {
                        m.entry(*t).or_default().insert(*seq, e.clone());
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
                let mut pipe = redis::pipe();
                for (t, _) in traces {
                    pipe.cmd("HGETALL").arg(journal_key(t));
                }
                match pipe.query_async::<Vec<Vec<(String, String)>>>(&mut conn.clone()).await {
                    Ok(v) => v.into_iter().map(|f| Some(journal::parse(f))).collect(),
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
