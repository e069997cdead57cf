//! The event record (schema v1, `docs/events.md`): its types here, its decoding in [`decode`].
//!
//! [`decode()`] turns the bytes of one record into a [`Record`] or a [`Rejection`] that names the
//! field, what was expected and what arrived. It is the one entry point for every source (the
//! stream, `POST /v1/events`), so no source can skip a check another applies. Decoding is pure: no
//! I/O, no clock. Unknown fields are rejected so that a misspelt field never passes silently.

mod decode;

pub use decode::{decode, parse_traceparent, valid_sha256};
use std::fmt;

/// Largest record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest `run` identity accepted.
pub const MAX_RUN_LEN: usize = 128;
const MAX_ERROR_MESSAGE: usize = 4096;

/// What happened, as named by the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The conserver's `run(in, out, tracer_name, links, link_index, opts)` call.
    TracerCall,
    ChainStart,
    LinkStart,
    LinkComplete,
    LinkError,
    StorageStart,
    StorageComplete,
    StorageError,
    ChainComplete,
    ChainError,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::TracerCall,
        EventKind::ChainStart,
        EventKind::LinkStart,
        EventKind::LinkComplete,
        EventKind::LinkError,
        EventKind::StorageStart,
        EventKind::StorageComplete,
        EventKind::StorageError,
        EventKind::ChainComplete,
        EventKind::ChainError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TracerCall => "tracer_call",
            EventKind::ChainStart => "chain_start",
            EventKind::LinkStart => "link_start",
            EventKind::LinkComplete => "link_complete",
            EventKind::LinkError => "link_error",
            EventKind::StorageStart => "storage_start",
            EventKind::StorageComplete => "storage_complete",
            EventKind::StorageError => "storage_error",
            EventKind::ChainComplete => "chain_complete",
            EventKind::ChainError => "chain_error",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a chain run ended, as reported by a `chain_complete` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainOutcome {
    Complete,
    Halted,
}

/// An exception raised by a link, storage or chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub error_type: String,
    pub message: String,
}

/// The producer instance (a conserver worker process).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Producer {
    pub host: String,
    pub pid: u64,
    pub thread: Option<u64>,
}

/// A W3C trace context, parsed from `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// Reference to another run of a vCon (`prev_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    pub vcon_uuid: String,
    pub run: String,
}

/// Where the compliance hash of the step comes from (`docs/events.md`, "Compliance").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compliance {
    /// The producer computed `Vcon.hash` itself (64 lowercase hex).
    Sha256(String),
    /// A Redis key holding a RedisJSON copy of the vCon taken at the call.
    Snapshot(String),
    /// The document is unchanged since the record with this `seq` of the same run.
    SameAs(u64),
    /// No snapshot was taken, and why (`budget`, `no_document`, …).
    Skipped(String),
}

/// One decoded record. Field meanings are in `docs/events.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub event: EventKind,
    pub run: String,
    pub vcon_uuid: String,
    /// The run's trace ID, [`crate::ids::trace_id`] of `vcon_uuid` and `run`, computed once by
    /// [`decode`] (every stage keys the run by it; it is a SHA-256).
    pub trace_id: [u8; 16],
    pub ts_ns: u64,
    pub start_ns: Option<u64>,
    pub run_start_ns: Option<u64>,
    pub seq: Option<u64>,
    pub chain: Option<String>,
    pub links: Option<Vec<String>>,
    pub link_index: Option<i64>,
    pub link: Option<String>,
    pub module: Option<String>,
    pub storage: Option<String>,
    pub tracer: Option<String>,
    pub in_vcon_uuid: Option<String>,
    pub out_vcon_uuid: Option<String>,
    pub halted: bool,
    pub outcome: Option<ChainOutcome>,
    pub hooks: bool,
    pub error: Option<ErrorInfo>,
    pub call_ns: Option<u64>,
    pub traceparent: Option<TraceParent>,
    pub producer: Option<Producer>,
    pub ingress_list: Option<String>,
    pub prev_run: Option<RunRef>,
    pub compliance: Option<Compliance>,
    /// `compliance.subject = input`: the hash describes the document the step was given.
    pub hash_of_input: bool,
}

impl Record {
    /// The link name of a link-level record: `link`, else `links[link_index]`.
    pub fn link_name(&self) -> Option<&str> {
        if let Some(l) = &self.link {
            return Some(l);
        }
        let i = usize::try_from(self.link_index?).ok()?;
        self.links.as_ref()?.get(i).map(String::as_str)
    }

    /// Whether the record opens its run with the run's context: a `chain_start`, or the pre-chain
    /// tracer call (`link_index` -1); it carries the upstream trace context and previous run.
    pub fn opens_run_with_context(&self) -> bool {
        self.event == EventKind::ChainStart || self.link_index == Some(-1)
    }

    /// Whether the record produces no span of its own and is held by its open run until the root
    /// is accepted: an opening record, a `link_start` or a `storage_start`.
    pub fn is_held(&self) -> bool {
        matches!(self.event, EventKind::ChainStart | EventKind::LinkStart | EventKind::StorageStart)
            || (self.event == EventKind::TracerCall && self.link_index == Some(-1))
    }

    /// Whether this record ends its run: a `chain_*` end, or the tracer call after the last link
    /// when no hooks will send the end.
    pub fn ends_run(&self) -> bool {
        match self.event {
            EventKind::ChainComplete | EventKind::ChainError => true,
            EventKind::TracerCall => {
                !self.hooks
                    && match (&self.links, self.link_index) {
                        (Some(links), Some(i)) => i >= 0 && i as usize + 1 == links.len(),
                        _ => false,
                    }
            }
            _ => false,
        }
    }
}

/// Why a record was rejected; the label of `vcon_otel_events_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NotJson,
    NotObject,
    MissingField,
    BadType,
    BadValue,
    UnknownField,
    UnknownEvent,
    UnsupportedVersion,
    TooLarge,
    MissingPayload,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NotJson,
        Reason::NotObject,
        Reason::MissingField,
        Reason::BadType,
        Reason::BadValue,
        Reason::UnknownField,
        Reason::UnknownEvent,
        Reason::UnsupportedVersion,
        Reason::TooLarge,
        Reason::MissingPayload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingField => "missing_field",
            Reason::BadType => "bad_type",
            Reason::BadValue => "bad_value",
            Reason::UnknownField => "unknown_field",
            Reason::UnknownEvent => "unknown_event",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::TooLarge => "too_large",
            Reason::MissingPayload => "missing_payload",
        }
    }
}

/// A record that cannot be used, with a message naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for Rejection {}

