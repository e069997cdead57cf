//! The spine: Redis stream consumer groups and the delivery contract, written once. The main
//! pipeline and every hosted tracer are users of it with the same loop shape:
//! read ([`Group::read`]) → enrich → work → acknowledge ([`Acker::ack`]).
//!
//! # The guarantee: at least once
//! An entry is acknowledged (`XACK`) in a group only after its user is done with it: for the main
//! pipeline, after the collector accepted every span it produced (or after it was dead-lettered);
//! for a hosted tracer, after the tracer delivered it (or gave up, counted). Until then it stays in
//! the group's pending list, and:
//! - a restarted process re-reads its **own** pending entries first (`XREADGROUP … 0` with a cursor),
//!   then new ones (`>`), so a consumer with a stable name loses nothing across a crash;
//! - entries left pending by a consumer that is gone are taken over after `stream.claim_idle_secs`
//!   (`XAUTOCLAIM`); a live consumer refreshes the idle time of everything it holds every
//!   `claim_idle / 2` (`XCLAIM … JUSTID`), so no live replica's entries are stolen;
//! - a re-delivered entry produces the same spans with the same IDs (`ids`), so the only effect of
//!   a crash is a duplicate, never a gap.
//!
//! # Bounds
//! Each group's reader holds at most `max_inflight` entries read and not yet acknowledged
//! ([`InFlight`]); at that many, reading pauses until acknowledgements free room. The stream itself
//! is the durable queue of everything not yet read.
//!
//! Files: [`group`] (read, reclaim, refresh, depth), [`ack`] (acknowledge + completion markers),
//! [`dead_letter`] (rejected entries, with the payload they were read with), [`done`] (completion
//! markers), [`connect`] (Redis connections).

pub mod ack;
pub mod connect;
pub mod dead_letter;
pub mod done;
pub mod group;
mod inflight;

pub use ack::Acker;
pub use dead_letter::{DeadLetter, DeadLetters, NoDeadLetters, RedisDeadLetters};
pub use group::{Depth, Group, GroupSettings, Start};
pub use inflight::InFlight;

/// A stream entry ID (`1700000000000-0`), or a sequence number for in-process sources.
pub type EntryId = String;

/// One entry as read: its ID and the bytes of field `r` (the record; `None` when absent). The
/// payload travels with the entry until it is acknowledged, so a dead letter can always carry it,
/// except for an entry held by an open run (`assemble::run`): that one keeps only its ID
/// ([`HeldId`]) and comes back without payload, and the export stage re-reads its record from the
/// stream when it has to dead-letter it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub id: EntryId,
    pub payload: Option<bytes::Bytes>,
}

/// What an entry held by an open run keeps of itself (`assemble::run`): its ID in 16 bytes when it
/// is a stream ID as Redis writes it (`<ms>-<seq>`, decimal, no leading zeros), else the text.
/// It becomes an [`Entry`] without payload again ([`HeldId::entry`]) with the very same ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldId {
    Stream { ms: u64, seq: u64 },
    Other(Box<str>),
}

impl HeldId {
    pub fn of(id: &str) -> HeldId {
        match id.split_once('-').and_then(|(ms, seq)| Some((decimal(ms)?, decimal(seq)?))) {
            Some((ms, seq)) => HeldId::Stream { ms, seq },
            None => HeldId::Other(id.into()),
        }
    }

    pub fn entry(&self) -> Entry {
        let id = match self {
            HeldId::Stream { ms, seq } => format!("{ms}-{seq}"),
            HeldId::Other(id) => id.to_string(),
        };
        Entry { id, payload: None }
    }
}

/// `s` as a u64 if it is written the one way Redis writes one (so it prints back the same).
fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse().ok().filter(|_| canonical)
}

/// What to acknowledge in one go: entry IDs, and the runs whose root span the collector accepted
/// (their completion markers are set in the same round trip, `done`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ack {
    pub ids: Vec<EntryId>,
    pub done: Vec<done::RunDone>,
}

impl Ack {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.done.is_empty()
    }
}
