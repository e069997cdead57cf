//! Compliance snapshots: the producer's server-side `COPY` of `vcon:{uuid}` taken at a tracer call,
//! read back with `JSON.GET` and hashed with vCon Server's `Vcon.hash`.
//!
//! Reads are pipelined, [`CHUNK`] keys per round trip with up to [`IN_FLIGHT`] round trips at once
//! on the multiplexed connection, so at most `CHUNK × IN_FLIGHT` documents are in memory; outputs
//! keep the order of the inputs. A chunk whose documents add up to more than [`BLOCKING_BYTES`] is
//! hashed on the blocking pool, so large vCons never stall the async reactor. A snapshot that is
//! unreadable or not a vCon gives no hash (logged at WARN); one that is gone is marked `missing`
//! for the step-record fallback ([`super::steps`]).

use crate::compliance::{self, StepHash};
use futures::StreamExt;
use redis::aio::ConnectionManager;

/// Keys per pipelined round trip.
pub const CHUNK: usize = 32;
/// Round trips in flight at once.
pub const IN_FLIGHT: usize = 4;
/// A chunk with more document bytes than this is hashed off the reactor.
pub const BLOCKING_BYTES: usize = 256 * 1024;

/// What a snapshot gave.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub hash: Option<StepHash>,
    /// The stored text, when asked to keep it.
    pub text: Option<bytes::Bytes>,
    /// The key held nothing (deleted once hashed, or expired): the step record may know the hash.
    pub missing: bool,
}

/// Fetches and hashes the snapshot of each `Some` key; `None` keys give `Fetched::default()`.
pub async fn fetch_and_hash(conn: &ConnectionManager, keys: &[Option<&str>], sha512: bool, keep: bool) -> Vec<Fetched> {
    let wanted: Vec<(usize, String)> = keys.iter().enumerate().filter_map(|(i, k)| k.map(|k| (i, k.to_string()))).collect();
    let mut out = vec![Fetched::default(); keys.len()];
    if wanted.is_empty() {
        return out;
    }
    let chunks: Vec<Vec<(usize, String)>> = wanted.chunks(CHUNK).map(<[_]>::to_vec).collect();
    let mut results = futures::stream::iter(chunks).map(|chunk| fetch_chunk(conn.clone(), chunk, sha512, keep)).buffered(IN_FLIGHT);
    while let Some(done) = results.next().await {
        for (i, f) in done {
            out[i] = f;
        }
    }
    out
}

#[tracing::instrument(name = "snapshot.fetch", level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "JSON.GET", db.operation.batch.size = chunk.len()))]
async fn fetch_chunk(mut conn: ConnectionManager, chunk: Vec<(usize, String)>, sha512: bool, keep: bool) -> Vec<(usize, Fetched)> {
    let mut pipe = redis::pipe();
    for (_, k) in &chunk {
        pipe.cmd("JSON.GET").arg(k);
    }
    let texts: Vec<Option<Vec<u8>>> = match pipe.query_async(&mut conn).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, snapshots = chunk.len(), "cannot read compliance snapshots; no hash on these spans");
            return chunk.into_iter().map(|(i, _)| (i, Fetched::default())).collect();
        }
    };
    let total: usize = texts.iter().flatten().map(Vec::len).sum();
    let work = move || {
        chunk
            .into_iter()
            .zip(texts)
            .map(|((i, key), text)| (i, hash_one(&key, text, sha512, keep)))
            .collect::<Vec<_>>()
    };
    if total > BLOCKING_BYTES {
        tokio::task::spawn_blocking(work).await.expect("hashing does not panic")
    } else {
        work()
    }
}

fn hash_one(key: &str, text: Option<Vec<u8>>, sha512: bool, keep: bool) -> Fetched {
    let Some(text) = text else {
        tracing::debug!(key, "compliance snapshot gone; the step record is asked next");
        return Fetched { missing: true, ..Fetched::default() };
    };
    let hashed = if sha512 { compliance::vcon_hash_with_sha512(&text) } else { compliance::vcon_hash(&text) };
    let hash = match hashed {
        Ok(h) => Some(StepHash { sha256_hex: h.sha256_hex, sha512_token: h.sha512_token, counts: Some(h.counts) }),
        Err(e) => {
            tracing::warn!(key, error = %e, "compliance snapshot is not a valid vCon document; no hash on this span");
            None
        }
    };
    Fetched { hash, text: keep.then(|| bytes::Bytes::from(text)), missing: false }
}
