//! Compliance snapshots: the producer's server-side `COPY` of `vcon:{uuid}` taken at a tracer call,
//! read back with `JSON.GET` and hashed with vCon Server's `Vcon.hash`.
//!
//! Reads are pipelined on the multiplexed connection: up to [`CHUNK`] keys per round trip and up
//! to [`IN_FLIGHT`] round trips at once. A chunk whose documents add up to at most
//! [`BLOCKING_BYTES`] is hashed as its reply is polled. A larger one is hashed on the blocking
//! pool (large vCons never stall the async reactor), one chunk at a time in launch order, and its
//! round trip is replaced as soon as its reply arrives, so Redis has the next chunks queued while
//! this process hashes (drains were 1.16x faster at 100 KB and 1.47x at 2 MB than when a large
//! chunk's hash held its round trip's slot: `docs/benchmarks.md`). Memory is bounded in bytes,
//! not documents: chunks are sized and launched so that the documents launched and not yet
//! hashed stay under [`BYTES_IN_FLIGHT`], estimated from the mean size of the documents last read (the process's
//! `MEAN`, shared by every consumer; it starts at 1 MiB, so the first chunks are small). Only a
//! read of documents much larger than the ones before it can exceed the bound, until its first
//! reply. Outputs keep the order of the inputs. A snapshot that is unreadable or not a vCon gives
//! no hash (logged at WARN); one that is gone is marked `missing` for the step-record fallback
//! ([`super::steps`]).

use crate::compliance::{self, StepHash};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most keys per pipelined round trip.
pub const CHUNK: usize = 32;
/// Most round trips in flight at once.
pub const IN_FLIGHT: usize = 16;
/// The (estimated) document bytes in flight, at most; one round trip is always allowed.
pub const BYTES_IN_FLIGHT: usize = 16 << 20;
/// A round trip brings this many document bytes at most (estimated): 4 in flight at the bound.
const CHUNK_BYTES: usize = BYTES_IN_FLIGHT / 4;
/// The mean size of the documents last read: the estimate chunks are sized by.
static MEAN: AtomicUsize = AtomicUsize::new(1 << 20);
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
///
/// Round trips are launched whenever the bounds allow. A small chunk is hashed as its reply is
/// polled; a large one is handed to the blocking pool, one chunk at a time in launch order, and
/// its round trip is replaced as soon as its reply arrives, not when its hash is done, so Redis
/// has the next chunks queued while this process hashes.
pub async fn fetch_and_hash(conn: &ConnectionManager, keys: &[Option<&str>], sha512: bool, keep: bool) -> Vec<Fetched> {
    let wanted: Vec<(usize, String)> = keys.iter().enumerate().filter_map(|(i, k)| k.map(|k| (i, k.to_string()))).collect();
    let mut out = vec![Fetched::default(); keys.len()];
    let mut next = 0;
    // Estimated bytes launched and not yet hashed (in flight, waiting, being hashed).
    let mut held = 0;
    let mut flight = FuturesOrdered::new();
    let mut waiting: VecDeque<Texts> = VecDeque::new();
    let mut hashing: Option<tokio::task::JoinHandle<Hashed>> = None;
    let store = |h: Hashed, out: &mut Vec<Fetched>| {
        h.done.into_iter().for_each(|(i, f)| out[i] = f);
        h.est
    };
    loop {
        loop {
            let held_chunks = flight.len() + waiting.len() + usize::from(hashing.is_some());
            let Some((n, est)) = next_chunk(MEAN.load(Ordering::Relaxed), wanted.len() - next, held, held_chunks, flight.len()) else { break };
            held += est;
            flight.push_back(fetch_chunk(conn.clone(), wanted[next..next + n].to_vec(), est, sha512, keep));
            next += n;
        }
        if hashing.is_none() {
            if let Some(texts) = waiting.pop_front() {
                hashing = Some(tokio::task::spawn_blocking(move || texts.hash(sha512, keep)));
            }
        }
        if flight.is_empty() && hashing.is_none() {
            return out;
        }
        let est = tokio::select! {
            Some(reply) = flight.next(), if !flight.is_empty() => match reply {
                Reply::Hashed(h) => store(h, &mut out),
                Reply::Texts(t) => {
                    waiting.push_back(t);
                    continue;
                }
            },
            done = async { hashing.as_mut().expect("guarded").await }, if hashing.is_some() => {
                hashing = None;
                store(done.expect("hashing does not panic"), &mut out)
            }
        };
        held -= est;
    }
}

/// The next round trip, given the mean document size, the keys left, the estimated bytes and
/// chunks launched and not yet hashed, and the round trips in flight: `Some((keys, estimated
/// bytes))`, or `None` to wait for a reply or a hash first. One chunk is always allowed when
/// nothing is held.
fn next_chunk(mean: usize, left: usize, held: usize, held_chunks: usize, in_flight: usize) -> Option<(usize, usize)> {
    let mean = mean.max(1);
    let n = (CHUNK_BYTES / mean).clamp(1, CHUNK).min(left);
    let est = n * mean;
    let room = held_chunks == 0 || (in_flight < IN_FLIGHT && held + est <= BYTES_IN_FLIGHT);
    (n > 0 && room).then_some((n, est))
}

/// A chunk's hashes, with their input indexes, and the estimate it was launched with.
struct Hashed {
    done: Vec<(usize, Fetched)>,
    est: usize,
}

/// One round trip's reply: hashed already, or documents for the blocking pool.
enum Reply {
    Hashed(Hashed),
    Texts(Texts),
}

/// A chunk's keys (with their input indexes), its documents, and its launch estimate.
struct Texts {
    chunk: Vec<(usize, String)>,
    texts: Vec<Option<Vec<u8>>>,
    est: usize,
}

impl Texts {
    fn hash(self, sha512: bool, keep: bool) -> Hashed {
        let done = self.chunk.into_iter().zip(self.texts).map(|((i, key), text)| (i, hash_one(&key, text, sha512, keep))).collect();
        Hashed { done, est: self.est }
    }
}

#[tracing::instrument(name = "snapshot.fetch", level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis", db.operation.name = "JSON.GET", db.operation.batch.size = chunk.len()))]
async fn fetch_chunk(mut conn: ConnectionManager, chunk: Vec<(usize, String)>, est: usize, sha512: bool, keep: bool) -> Reply {
    let mut pipe = redis::pipe();
    for (_, k) in &chunk {
        pipe.cmd("JSON.GET").arg(k);
    }
    let texts: Vec<Option<Vec<u8>>> = match pipe.query_async(&mut conn).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, snapshots = chunk.len(), "cannot read compliance snapshots; no hash on these spans");
            // No text and not `missing`: these steps get no hash.
            return Reply::Hashed(Hashed { done: Vec::new(), est });
        }
    };
    let bytes: usize = texts.iter().flatten().map(Vec::len).sum();
    if let Some(mean) = bytes.checked_div(texts.iter().flatten().count()) {
        MEAN.store(mean, Ordering::Relaxed);
    }
    let texts = Texts { chunk, texts, est };
    if bytes > BLOCKING_BYTES {
        Reply::Texts(texts)
    } else {
        Reply::Hashed(texts.hash(sha512, keep))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Launches round trips for `keys` documents of `size` bytes until one must wait.
    fn launch(size: usize, keys: usize) -> (Vec<usize>, usize) {
        let (mut chunks, mut estimated, mut left) = (Vec::new(), 0, keys);
        while let Some((n, est)) = next_chunk(size, left, estimated, chunks.len(), chunks.len()) {
            chunks.push(n);
            estimated += est;
            left -= n;
        }
        (chunks, estimated)
    }

    #[test]
    fn small_documents_fill_every_round_trip_and_the_round_trips_in_flight() {
        let (chunks, bytes) = launch(5_000, 10_000);
        assert_eq!(chunks, vec![CHUNK; IN_FLIGHT]);
        assert_eq!(bytes, 5_000 * CHUNK * IN_FLIGHT);
    }

    #[test]
    fn large_documents_are_bounded_by_bytes_not_by_round_trips() {
        let (chunks, bytes) = launch(2 << 20, 10_000);
        assert_eq!(chunks, vec![2; 4], "2 MiB documents: 2 per round trip, 16 MiB in flight");
        assert!(bytes <= BYTES_IN_FLIGHT);
        let (chunks, bytes) = launch(100 << 20, 10_000);
        assert_eq!(chunks, vec![1], "a document larger than the bound goes alone");
        assert_eq!(bytes, 100 << 20);
    }

    #[test]
    fn replies_waiting_for_the_hasher_count_against_the_bound() {
        // Nothing in flight at Redis, but 16 MiB of replies not yet hashed: wait.
        assert_eq!(next_chunk(2 << 20, 100, BYTES_IN_FLIGHT, 8, 0), None);
        // Nothing held at all: one round trip, however large.
        assert_eq!(next_chunk(100 << 20, 100, 0, 0, 0), Some((1, 100 << 20)));
    }

    #[test]
    fn the_last_round_trip_takes_what_is_left() {
        assert_eq!(launch(5_000, 40).0, vec![32, 8]);
        assert_eq!(next_chunk(5_000, 0, 0, 0, 0), None);
    }
}
