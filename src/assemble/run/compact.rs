//! The compact forms an open run keeps (`run`): step hashes as bytes, start times allocated on
//! first use, vectors grown exactly, and the table that shares link lists and producers between
//! runs.

use crate::compliance::StepHash;
use crate::event::Producer;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// A step's SHA-256 as the root shows it (`vcon.hash.entering`, `vcon.hash.final`): its 32 bytes,
/// written back as the same 64 lowercase hex digits; any other text is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Bytes([u8; 32]),
    Text(Box<str>),
}

impl Digest {
    pub fn of(h: &StepHash) -> Digest {
        let mut b = [0u8; 32];
        if crate::event::valid_sha256(&h.sha256_hex) && hex::decode_to_slice(&h.sha256_hex, &mut b).is_ok() {
            Digest::Bytes(b)
        } else {
            Digest::Text(h.sha256_hex.as_str().into())
        }
    }

    pub fn hex(&self) -> String {
        match self {
            Digest::Bytes(b) => crate::ids::hex(b),
            Digest::Text(t) => t.to_string(),
        }
    }
}

/// Start times of a run's steps whose start record was held (`link_start`, `storage_start`), by
/// step; nothing is allocated until the first one.
#[derive(Debug)]
pub struct Starts<K>(Option<Box<HashMap<K, u64>>>);

impl<K> Default for Starts<K> {
    fn default() -> Self {
        Starts(None)
    }
}

impl<K: Eq + Hash> Starts<K> {
    /// Remembers that step `k` started at `ts_ns`; returns the start it replaces.
    pub fn insert(&mut self, k: K, ts_ns: u64) -> Option<u64> {
        self.0.get_or_insert_with(Default::default).insert(k, ts_ns)
    }

    pub fn get<Q: Eq + Hash + ?Sized>(&self, k: &Q) -> Option<u64>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.0.as_ref()?.get(k).copied()
    }
}

/// Pushes onto `v`, growing it exactly (1, 2, 4, … elements) instead of to at least 4.
pub(super) fn push_exact<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().max(1));
    }
    v.push(x);
}

/// The link lists and producers of open runs, shared between the runs that carry the same ones (a
/// deployment has a few chains and worker threads, and every run's records repeat them). Bounded:
/// at [`MAX_SHARED`] values of one kind its table is emptied and fills again; runs keep the values
/// they have, so sharing only restarts.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) links: HashSet<Arc<[String]>>,
    pub(super) producers: HashSet<Arc<Producer>>,
}

/// Most distinct link lists, and most distinct producers, shared at once.
pub const MAX_SHARED: usize = 1024;

impl Shared {
    pub(super) fn links(&mut self, l: &[String]) -> Arc<[String]> {
        intern(&mut self.links, l, |l| l.into())
    }

    pub(super) fn producer(&mut self, p: &Producer) -> Arc<Producer> {
        intern(&mut self.producers, p, |p| Arc::new(p.clone()))
    }
}

fn intern<T: ?Sized + Eq + Hash>(set: &mut HashSet<Arc<T>>, v: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
    if let Some(a) = set.get(v) {
        return a.clone();
    }
    if set.len() >= MAX_SHARED {
        set.clear();
    }
    let a = make(v);
    set.insert(a.clone());
    a
}
