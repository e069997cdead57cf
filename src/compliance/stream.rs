//! `json.dumps(normalize_legacy_fields(json.loads(text)))` without building the document: the
//! canonical bytes go into the sink as the text is read.
//!
//! Memory does not grow with the document: a stack of open containers (at most [`MAX_DEPTH`]), the
//! keys of the open objects (16 bytes per key, `keys.rs`), and per normalized object (the top level,
//! each `dialog`/`analysis`/`attachments` entry) the offsets of its legacy keys. The text itself is
//! the caller's.
//!
//! Two things reorder: a renamed legacy key goes to the end of its object (its value is read where
//! it stands, unwritten, then again from its offset when the object closes, under the new name, or
//! dropped when the new name exists), and a duplicate key keeps its first position with its last
//! value. Duplicates are rare (`JSON.GET` never returns them), so the first pass assumes there are
//! none; on the first duplicate it stops, a validating pass without output records every object
//! that has one ([`DupTable`]), and a last pass writes those objects from the table.
//! `attachments` entries keep `type` when `purpose` exists anywhere in the entry: on `type`, the
//! rest of the entry is looked ahead (skipped structurally) for `purpose`.
//!
//! Errors come in document order, as `json.loads` raises them: the first invalid byte, or the
//! container that opens one level past [`MAX_DEPTH`] (Python's `RecursionError`).

use super::dumps::{put_str, Sink};
use super::float::{float_repr_of, repr_prefix, token_repr};
use super::keys::{DupTable, KeyRef, KeyStack, Resolved, Seen};
use super::lex::{Lexer, NumText};
use super::normalize::LISTS;
use super::pyjson::{ParseError, PyStr};

mod legacy;

/// The deepest nesting accepted: what CPython 3.13's `json.loads` and `json.dumps` accept when
/// called from synchronous code on Linux (measured with 3.13.0; vCon Server's chain workers are
/// synchronous). One more level is Python's `RecursionError`. `docs/compliance.md` lists the other
/// interpreters' bounds.
pub const MAX_DEPTH: usize = 9998;

/// Why the text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Json(ParseError),
    /// The container opening at this position is level `MAX_DEPTH + 1`.
    TooDeep(ParseError),
}

enum Stop {
    Fail(Fail),
    Duplicate,
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Self {
        Stop::Fail(Fail::Json(e))
    }
}

/// What the caller learns besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The document is a JSON object (else it was written as it is, not normalized).
    pub object: bool,
    /// Entries of the top-level `parties`, `dialog`, `analysis`, `attachments` arrays.
    pub counts: [u64; 4],
}

/// Writes the canonical bytes of `text` into a sink made by `sink` (twice when the document has a
/// duplicate key: the first sink's bytes are then incomplete and it is dropped).
pub fn dump<S: Sink>(text: &str, mut sink: impl FnMut() -> S) -> Result<(S, Summary), Fail> {
    let empty = DupTable::default();
    let mut m = Machine::new(text, Mode::Speculative, sink(), &empty);
    match m.run() {
        Ok(()) => return Ok(m.finish()),
        Err(Stop::Fail(f)) => return Err(f),
        Err(Stop::Duplicate) => {}
    }
    let mut scan = Machine::new(text, Mode::Scan, Discard, &empty);
    match scan.run() {
        Ok(()) => {}
        Err(Stop::Fail(f)) => return Err(f),
        Err(Stop::Duplicate) => unreachable!("the scan records duplicates"),
    }
    let mut table = std::mem::take(&mut scan.found);
    table.seal();
    let mut m = Machine::new(text, Mode::Exact, sink(), &table);
    match m.run() {
        Ok(()) => Ok(m.finish()),
        Err(Stop::Fail(f)) => Err(f),
        Err(Stop::Duplicate) => unreachable!("every object with a duplicate is in the table"),
    }
}

struct Discard;

impl Sink for Discard {
    fn put(&mut self, _: &[u8]) {}
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writes; stops at the first duplicate key.
    Speculative,
    /// Validates and records objects with duplicates; writes nothing, normalizes nothing.
    Scan,
    /// Writes, resolving the recorded objects (the text is known valid).
    Exact,
}

/// Where a value stands, which decides how it is normalized.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Plain,
    /// The document itself.
    Root,
    /// A top-level value under `LISTS[i]`.
    List(usize),
    /// An element of a normalized list (`attachments` when the flag is set).
    Entry(bool),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after the opening bracket.
    Start,
    /// After a value (or, for an object, after a value of an entry).
    Next,
    /// Writing a recorded object: its next key is the `k`-th winner.
    Winner(usize),
    /// Closed in the text; writing its `k`-th deferred (renamed) entry.
    Deferred(usize),
}

struct Array {
    slot: Slot,
    state: State,
    n: u64,
    unmute: bool,
}

struct Object<'t> {
    slot: Slot,
    state: State,
    start: usize,
    end: usize,
    written: usize,
    tracked: bool,
    dup: bool,
    unmute: bool,
    resolved: Option<Resolved<'t>>,
    /// Renamed entries: (index in the rename table, offset of the value).
    deferred: Vec<(usize, usize)>,
}

enum Frame<'t> {
    Array(Array),
    Object(Object<'t>),
}

struct Machine<'a, 't, S: Sink> {
    lx: Lexer<'a>,
    out: S,
    mute: u32,
    mode: Mode,
    stack: Vec<Frame<'t>>,
    keys: KeyStack,
    table: &'t DupTable,
    found: DupTable,
    summary: Summary,
}

impl<'a, 't, S: Sink> Machine<'a, 't, S> {
    fn new(text: &'a str, mode: Mode, out: S, table: &'t DupTable) -> Self {
        let mute = u32::from(mode == Mode::Scan);
        let summary = Summary { object: false, counts: [0; 4] };
        Machine { lx: Lexer::new(text), out, mute, mode, stack: Vec::new(), keys: KeyStack::new(), table, found: DupTable::default(), summary }
    }

    fn finish(self) -> (S, Summary) {
        (self.out, self.summary)
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.mute == 0 {
            self.out.put(bytes);
        }
    }

    /// A string the lexer read from `at` (its opening quote) to `end` (`plain`: as
    /// [`Lexer::string_plain`] found it, so the quoted text is written as it stands).
    fn put_string(&mut self, s: &PyStr<'_>, plain: bool, at: usize, end: usize) {
        if self.mute != 0 {
            return;
        }
        if plain {
            self.out.put(&self.lx.b[at..end]);
        } else {
            put_str(&mut self.out, s);
        }
    }

    /// A float token the lexer just read, as `repr` spells its double: from the text when that is
    /// exact (`super::float`), else parsed. Unwritten, it is not parsed (a valid token always is).
    fn put_float(&mut self, t: &str) -> Result<(), Stop> {
        if self.mute != 0 {
            return Ok(());
        }
        if let Some(k) = repr_prefix(t) {
            self.out.put(&t.as_bytes()[..k]);
            return Ok(());
        }
        let repr = match token_repr(t) {
            Some(r) => r,
            None => float_repr_of(self.lx.float(t)?),
        };
        self.out.put(repr.as_bytes());
        Ok(())
    }

    fn run(&mut self) -> Result<(), Stop> {
        self.lx.ws();
        self.summary.object = self.lx.peek() == Some(b'{');
        self.begin(Slot::Root, false)?;
        while let Some(top) = self.stack.last() {
            match top {
                Frame::Array(_) => self.step_array()?,
                Frame::Object(_) => self.step_object()?,
            }
        }
        self.lx.ws();
        if self.lx.i != self.lx.b.len() {
            return Err(self.lx.err("end of input").into());
        }
        Ok(())
    }

    /// Reads (and writes, unless muted) the value at the cursor: a scalar entirely, a container's
    /// opening bracket (the loop in `run` does the rest).
    fn begin(&mut self, slot: Slot, muted: bool) -> Result<(), Stop> {
        let Some(c) = self.lx.peek() else { return Err(self.lx.err("a value").into()) };
        self.mute += u32::from(muted);
        match c {
            b'{' | b'[' => return self.open(c, slot, muted),
            b'"' => {
                let at = self.lx.i;
                let (s, plain) = self.lx.string_plain()?;
                self.put_string(&s, plain, at, self.lx.i);
            }
            b'n' if self.lx.eat("null") => self.put(b"null"),
            b't' if self.lx.eat("true") => self.put(b"true"),
            b'f' if self.lx.eat("false") => self.put(b"false"),
            b'N' if self.lx.eat("NaN") => self.put(b"NaN"),
            b'I' if self.lx.eat("Infinity") => self.put(b"Infinity"),
            b'-' if self.lx.eat("-Infinity") => self.put(b"-Infinity"),
            b'-' | b'0'..=b'9' => match self.lx.number_token()? {
                NumText::Int(t) => self.put(t.as_bytes()),
                NumText::Float(t) => self.put_float(t)?,
            },
            _ => return Err(self.lx.err("a value").into()),
        }
        self.mute -= u32::from(muted);
        Ok(())
    }

    fn open(&mut self, c: u8, slot: Slot, unmute: bool) -> Result<(), Stop> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Stop::Fail(Fail::TooDeep(self.lx.err("no deeper nesting"))));
        }
        let start = self.lx.i;
        self.lx.i += 1;
        if c == b'[' {
            self.put(b"[");
            let slot = if matches!(slot, Slot::List(_)) { slot } else { Slot::Plain };
            self.stack.push(Frame::Array(Array { slot, state: State::Start, n: 0, unmute }));
            return Ok(());
        }
        self.put(b"{");
        let slot = if matches!(slot, Slot::Root | Slot::Entry(_)) { slot } else { Slot::Plain };
        let resolved = if self.table.is_empty() { None } else { self.table.get(start) };
        let tracked = match self.mode {
            Mode::Speculative | Mode::Scan => true,
            Mode::Exact => resolved.is_none() && slot != Slot::Plain,
        };
        if tracked {
            self.keys.open();
        }
        let state = if resolved.is_some() { State::Winner(0) } else { State::Start };
        let o = Object { slot, state, start, end: 0, written: 0, tracked, dup: false, unmute, resolved, deferred: Vec::new() };
        self.stack.push(Frame::Object(o));
        Ok(())
    }

    fn array(&mut self) -> &mut Array {
        match self.stack.last_mut() {
            Some(Frame::Array(a)) => a,
            _ => unreachable!("an array on top"),
        }
    }

    fn object(&mut self) -> &mut Object<'t> {
        match self.stack.last_mut() {
            Some(Frame::Object(o)) => o,
            _ => unreachable!("an object on top"),
        }
    }

    fn step_array(&mut self) -> Result<(), Stop> {
        self.lx.ws();
        let a = self.array();
        let (state, slot) = (a.state, a.slot);
        match (state, self.lx.peek()) {
            (_, Some(b']')) => {
                self.lx.i += 1;
                self.put(b"]");
                let Some(Frame::Array(a)) = self.stack.pop() else { unreachable!() };
                if let Slot::List(i) = a.slot {
                    self.summary.counts[i] = a.n;
                }
                self.mute -= u32::from(a.unmute);
                return Ok(());
            }
            (State::Start, _) => {}
            (State::Next, Some(b',')) => {
                self.lx.i += 1;
                self.put(b", ");
                self.lx.ws();
            }
            _ => return Err(self.lx.err("',' or ']'").into()),
        }
        let a = self.array();
        a.state = State::Next;
        a.n += 1;
        let child = match slot {
            Slot::List(i) if i > 0 => Slot::Entry(i == LISTS.len() - 1),
            _ => Slot::Plain,
        };
        self.begin(child, false)
    }

    fn step_object(&mut self) -> Result<(), Stop> {
        match self.object().state {
            State::Start | State::Next => {
                self.lx.ws();
                let first = self.object().state == State::Start;
                match self.lx.peek() {
                    Some(b'}') => {
                        self.lx.i += 1;
                        let end = self.lx.i;
                        self.close_entries(end);
                        Ok(())
                    }
                    Some(b',') if !first => {
                        self.lx.i += 1;
                        self.lx.ws();
                        if self.lx.peek() != Some(b'"') {
                            return Err(self.lx.err("a string key").into());
                        }
                        self.entry()
                    }
                    Some(b'"') if first => self.entry(),
                    _ if first => Err(self.lx.err("a string key").into()),
                    _ => Err(self.lx.err("',' or '}'").into()),
                }
            }
            State::Winner(k) => {
                let o = self.object();
                let r = o.resolved.as_ref().expect("a recorded object");
                let (keys, end) = (r.keys, r.end);
                if k == keys.len() {
                    self.close_entries(end);
                    return Ok(());
                }
                o.state = State::Winner(k + 1);
                self.lx.i = keys[k];
                self.entry()
            }
            State::Deferred(k) => self.deferred(k),
        }
    }

    /// An entry whose key's opening quote is at the cursor.
    fn entry(&mut self) -> Result<(), Stop> {
        let key_at = self.lx.i;
        let (key, key_plain) = self.lx.string_plain()?;
        let key_end = self.lx.i;
        let place = KeyRef::new(key_at, key_end, &key);
        self.lx.ws();
        if self.lx.peek() != Some(b':') {
            return Err(self.lx.err("':'").into());
        }
        self.lx.i += 1;
        self.lx.ws();
        let value_at = self.lx.i;
        let (mode, text) = (self.mode, self.lx.s);
        let o = self.object();
        if o.state == State::Start {
            o.state = State::Next;
        }
        let (slot, tracked) = (o.slot, o.tracked);
        if tracked {
            if let Seen::Again(pos) = self.keys.insert(text, &key, place) {
                if mode != Mode::Scan {
                    return Err(Stop::Duplicate);
                }
                self.keys.replace(pos, place);
                self.object().dup = true;
            }
        }
        if mode != Mode::Scan {
            if let Some(r) = self.legacy(slot, &key, value_at) {
                let o = self.object();
                o.deferred.push((r, value_at));
                if mode == Mode::Exact {
                    // Known valid: read only when written (a recorded object jumps to its next key).
                    if o.resolved.is_none() {
                        self.lx.skip_value();
                    }
                    return Ok(());
                }
                return self.begin(Slot::Plain, true);
            }
        }
        let o = self.object();
        o.written += 1;
        if o.written > 1 {
            self.put(b", ");
        }
        self.put_string(&key, key_plain, key_at, key_end);
        self.put(b": ");
        let child = match slot {
            Slot::Root => LISTS.iter().position(|l| key.is(l)).map_or(Slot::Plain, Slot::List),
            _ => Slot::Plain,
        };
        self.begin(child, false)
    }

    fn close_object(&mut self) {
        let Some(Frame::Object(o)) = self.stack.pop() else { unreachable!("an object on top") };
        self.put(b"}");
        if o.tracked {
            let keep = self.mode == Mode::Scan && o.dup;
            let from = self.found.winners_mut().len();
            self.keys.close(keep, self.found.winners_mut());
            if keep {
                self.found.record(o.start, from, o.end);
            }
        }
        self.mute -= u32::from(o.unmute);
    }
}
