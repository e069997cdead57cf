//! The legacy-key part of the streaming machine (`super`): which keys of a normalized object are
//! renamed or dropped, looked up on the open object, and written under their new names when the
//! object closes.

use super::{Frame, Lexer, Machine, Slot, State, Stop};
use super::super::dumps::Sink;
use super::super::keys::key_at;
use super::super::normalize::{ENTRY_RENAMES, ROOT_RENAMES, TYPE_TO_PURPOSE};
use super::super::pyjson::PyStr;

impl<S: Sink> Machine<'_, '_, S> {
    /// Whether this key of a normalized object is renamed (deferred to the end): its rename index.
    pub(super) fn legacy(&self, slot: Slot, key: &PyStr<'_>, value_at: usize) -> Option<usize> {
        match slot {
            Slot::Root => ROOT_RENAMES.iter().position(|(old, _)| key.is(old)),
            Slot::Entry(attachment) => {
                let r = ENTRY_RENAMES.iter().position(|(old, _)| key.is(old))?;
                if r != TYPE_TO_PURPOSE {
                    return Some(r);
                }
                let purpose = ENTRY_RENAMES[r].1;
                (attachment && !self.has_key(purpose) && !self.later_key(value_at, purpose)).then_some(r)
            }
            _ => None,
        }
    }

    /// Whether the object on top has `key` (a recorded object: anywhere; else: so far).
    pub(super) fn has_key(&self, key: &str) -> bool {
        let Some(Frame::Object(o)) = self.stack.last() else { unreachable!("an object on top") };
        match &o.resolved {
            Some(r) => r.keys.iter().any(|&at| key_at(self.lx.s, at).is(key)),
            None => self.keys.position(self.lx.s, key).is_some(),
        }
    }

    /// Whether an entry after the value at `from` has `key` (look-ahead; not for recorded objects,
    /// whose keys `has_key` sees whole).
    pub(super) fn later_key(&self, from: usize, key: &str) -> bool {
        let Some(Frame::Object(o)) = self.stack.last() else { unreachable!("an object on top") };
        o.resolved.is_none() && Lexer { s: self.lx.s, b: self.lx.b, i: from }.later_key(key)
    }

    /// The text of the object on top has ended at `end`: write its deferred entries, then close.
    pub(super) fn close_entries(&mut self, end: usize) {
        let o = self.object();
        o.end = end;
        if o.deferred.is_empty() {
            self.lx.i = end;
            self.close_object();
        } else {
            o.deferred.sort_unstable();
            o.state = State::Deferred(0);
        }
    }

    pub(super) fn deferred(&mut self, k: usize) -> Result<(), Stop> {
        let o = self.object();
        let (next, end) = (o.deferred.get(k).copied(), o.end);
        let Some((r, value_at)) = next else {
            self.lx.i = end;
            self.close_object();
            return Ok(());
        };
        let o = self.object();
        o.state = State::Deferred(k + 1);
        let new = if o.slot == Slot::Root { ROOT_RENAMES[r].1 } else { ENTRY_RENAMES[r].1 };
        if self.has_key(new) {
            return Ok(()); // both names: the legacy entry is dropped
        }
        let o = self.object();
        o.written += 1;
        if o.written > 1 {
            self.put(b", ");
        }
        self.put(b"\"");
        self.put(new.as_bytes());
        self.put(b"\": ");
        self.lx.i = value_at;
        self.begin(Slot::Plain, false)
    }
}
