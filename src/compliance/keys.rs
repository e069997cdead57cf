//! The keys of the objects the streaming hasher has open, to see duplicates as a `dict` does, and
//! the table of objects that have duplicates.
//!
//! A key is held as where it stands in the document ([`KeyRef`]: the offset of its opening quote,
//! the length of its text, whether that text holds an escape); two keys are the same when their
//! decoded Python strings are (`"a"` and `"\u0061"` are one key). Two keys without escapes are
//! compared as bytes, without decoding. Objects up to [`LINEAR`] keys are searched linearly; past
//! that an object gets an index of 64-bit hashes (SipHash, randomly keyed per process, so hostile
//! keys cannot be made to collide). Memory: 16 bytes per key of each open object, plus an index of
//! about 20–40 bytes per key for objects with more than [`LINEAR`] keys; nothing for arrays,
//! nothing once an object is closed.
//!
//! [`DupTable`] records, for each object that has a duplicate key, its keys in `dict` order (first
//! position) with the offset of the occurrence whose value wins (the last): 8 bytes per key of such
//! objects, plus 32 per object.

use super::lex::Lexer;
use super::pyjson::PyStr;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Objects up to this many keys are searched linearly.
const LINEAR: usize = 16;

/// The key hashes are already random: the index uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Index = HashMap<u64, usize, BuildHasherDefault<Identity>>;

/// Where a key stands in the document.
#[derive(Clone, Copy)]
pub struct KeyRef {
    /// Offset of the opening quote.
    pub at: usize,
    /// Length of the text between the quotes (when `plain`).
    len: u32,
    /// The text holds no escape (it is the key itself) and is shorter than 4 GiB.
    plain: bool,
}

impl KeyRef {
    /// The key whose opening quote is at `at`, as `Lexer::string` read it, the cursor then at `end`.
    pub fn new(at: usize, end: usize, key: &PyStr<'_>) -> Self {
        let raw = end - at - 2;
        let plain = matches!(key, PyStr::Text(Cow::Borrowed(_))) && raw <= u32::MAX as usize;
        KeyRef { at, len: raw as u32, plain }
    }

    /// The key's text between the quotes, when it holds no escape.
    fn raw<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.plain.then(|| &text[self.at + 1..self.at + 1 + self.len as usize])
    }

    fn decoded<'t>(&self, text: &'t str) -> PyStr<'t> {
        match self.raw(text) {
            Some(r) => PyStr::Text(Cow::Borrowed(r)),
            None => key_at(text, self.at),
        }
    }

    /// Whether this key is `key` (whose place is `other`).
    fn same(&self, text: &str, other: &KeyRef, key: &PyStr<'_>) -> bool {
        match (self.plain, other.plain) {
            // Two texts without escapes: the lengths first, before either text is sliced.
            (true, true) => self.len == other.len && self.raw(text) == other.raw(text),
            (true, false) => matches!(key, PyStr::Text(t) if self.raw(text) == Some(&**t)),
            (false, _) => key_at(text, self.at) == *key,
        }
    }

    /// Whether this key is the plain string `key`.
    fn is(&self, text: &str, key: &str) -> bool {
        match self.raw(text) {
            Some(mine) => mine == key,
            None => key_at(text, self.at).is(key),
        }
    }
}

/// Keys of the open objects, innermost last.
pub struct KeyStack {
    /// Every key of every open object.
    keys: Vec<KeyRef>,
    /// Per open object: where its keys start in `keys`, and its index once it has many.
    objects: Vec<(usize, Option<Index>)>,
    state: RandomState,
}

/// What [`KeyStack::insert`] found.
pub enum Seen {
    New,
    /// The key was already in this object, at this position (0 = its first key).
    Again(usize),
}

impl KeyStack {
    pub fn new() -> Self {
        KeyStack { keys: Vec::new(), objects: Vec::new(), state: RandomState::new() }
    }

    pub fn open(&mut self) {
        self.objects.push((self.keys.len(), None));
    }

    /// Closes the innermost object; returns the offsets of its keys' winning occurrences in
    /// `dict` order (after [`KeyStack::replace`]) when `keep` is set.
    pub fn close(&mut self, keep: bool, out: &mut Vec<usize>) {
        let (base, _) = self.objects.pop().expect("an open object");
        if keep {
            out.extend(self.keys[base..].iter().map(|k| k.at));
        }
        self.keys.truncate(base);
    }

    fn hash(&self, key: &PyStr<'_>) -> u64 {
        self.state.hash_one(key)
    }

    /// Adds a key of the innermost object (`place`: where it stands in `text`, `key`: decoded).
    pub fn insert(&mut self, text: &str, key: &PyStr<'_>, place: KeyRef) -> Seen {
        let (base, index) = self.objects.last().expect("an open object");
        let n = self.keys.len() - *base;
        let h = if index.is_some() || n + 1 > LINEAR { Some(self.hash(key)) } else { None };
        let found = match h {
            Some(h) if index.is_some() => self.find_indexed(h, |k| k.same(text, &place, key)),
            _ => self.keys[*base..].iter().position(|k| k.same(text, &place, key)),
        };
        if let Some(pos) = found {
            return Seen::Again(pos);
        }
        self.keys.push(place);
        let Some(h) = h else { return Seen::New };
        let state = &self.state;
        let (base, index) = self.objects.last_mut().expect("an open object");
        match index {
            Some(ix) => {
                ix.entry(h).or_insert(n);
            }
            None => {
                let mut ix = Index::default();
                for (i, k) in self.keys[*base..].iter().enumerate() {
                    ix.entry(state.hash_one(k.decoded(text))).or_insert(i);
                }
                *index = Some(ix);
            }
        }
        Seen::New
    }

    /// The position of `key` among the innermost object's keys so far.
    pub fn position(&self, text: &str, key: &str) -> Option<usize> {
        let (base, index) = self.objects.last().expect("an open object");
        match index {
            Some(_) => self.find_indexed(self.hash(&PyStr::Text(key.into())), |k| k.is(text, key)),
            None => self.keys[*base..].iter().position(|k| k.is(text, key)),
        }
    }

    /// A repeated key's value wins: its place replaces the first occurrence's (position kept).
    pub fn replace(&mut self, pos: usize, place: KeyRef) {
        let base = self.objects.last().expect("an open object").0;
        self.keys[base + pos] = place;
    }

    /// The position of the key of hash `h` that is `same`, in an indexed object.
    fn find_indexed(&self, h: u64, same: impl Fn(&KeyRef) -> bool) -> Option<usize> {
        let (base, index) = self.objects.last().expect("an open object");
        let keys = &self.keys[*base..];
        match index.as_ref().expect("an index").get(&h) {
            None => None,
            Some(&i) if same(&keys[i]) => Some(i),
            // A 64-bit collision of different keys: look at all of them.
            Some(_) => keys.iter().position(same),
        }
    }
}

/// The decoded key whose opening quote is at `at` (already validated).
pub fn key_at(text: &str, at: usize) -> PyStr<'_> {
    let mut lx = Lexer::new(text);
    lx.i = at;
    lx.string().expect("a key validated before")
}

/// Objects with duplicate keys, by the offset of their `{`.
#[derive(Default)]
pub struct DupTable {
    /// (offset of `{`, range of its keys in `winners`, offset just after its `}`), sorted by offset.
    objects: Vec<(usize, std::ops::Range<usize>, usize)>,
    winners: Vec<usize>,
}

/// One object of the table: the offsets of its winning keys in `dict` order, and its end.
pub struct Resolved<'t> {
    pub keys: &'t [usize],
    pub end: usize,
}

impl DupTable {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Records the object that opened at `start`, whose winning keys were just appended by
    /// [`KeyStack::close`] from `from` on.
    pub fn record(&mut self, start: usize, from: usize, end: usize) {
        self.objects.push((start, from..self.winners.len(), end));
    }

    /// The buffer [`KeyStack::close`] appends to.
    pub fn winners_mut(&mut self) -> &mut Vec<usize> {
        &mut self.winners
    }

    /// Objects close inner first; lookups want them by position.
    pub fn seal(&mut self) {
        self.objects.sort_unstable_by_key(|(start, _, _)| *start);
    }

    pub fn get(&self, start: usize) -> Option<Resolved<'_>> {
        let i = self.objects.binary_search_by_key(&start, |(s, _, _)| *s).ok()?;
        let (_, range, end) = &self.objects[i];
        Some(Resolved { keys: &self.winners[range.clone()], end: *end })
    }
}
