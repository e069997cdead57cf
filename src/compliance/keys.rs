//! The keys of the objects the streaming hasher has open, to see duplicates as a `dict` does, and
//! the table of objects that have duplicates.
//!
//! A key is held as its offset in the document plus a 64-bit hash (SipHash, randomly keyed per
//! process, so hostile keys cannot be made to collide); two keys are the same when their decoded
//! Python strings are (`"a"` and `"\u0061"` are one key). Memory: 16 bytes per key of each open
//! object, plus an index of about 20–40 bytes per key for objects with more than [`LINEAR`] keys;
//! nothing for arrays, nothing once an object is closed.
//!
//! [`DupTable`] records, for each object that has a duplicate key, its keys in `dict` order (first
//! position) with the offset of the occurrence whose value wins (the last): 8 bytes per key of such
//! objects, plus 32 per object.

use super::lex::Lexer;
use super::pyjson::PyStr;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Objects up to this many keys are searched linearly.
const LINEAR: usize = 8;

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

/// Keys of the open objects, innermost last.
pub struct KeyStack {
    /// (hash, offset of the key's opening quote) for every key of every open object.
    keys: Vec<(u64, usize)>,
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
            out.extend(self.keys[base..].iter().map(|(_, off)| *off));
        }
        self.keys.truncate(base);
    }

    fn hash(&self, key: &PyStr<'_>) -> u64 {
        self.state.hash_one(key)
    }

    /// Adds a key of the innermost object (`at`: offset of its opening quote in `text`).
    pub fn insert(&mut self, text: &str, key: &PyStr<'_>, at: usize) -> Seen {
        let h = self.hash(key);
        if let Some(pos) = self.find(text, key, h) {
            return Seen::Again(pos);
        }
        let (base, index) = self.objects.last_mut().expect("an open object");
        let pos = self.keys.len() - *base;
        self.keys.push((h, at));
        if let Some(ix) = index.as_mut() {
            ix.entry(h).or_insert(pos);
        } else if pos + 1 > LINEAR {
            let mut ix = Index::default();
            for (i, (kh, _)) in self.keys[*base..].iter().enumerate() {
                ix.entry(*kh).or_insert(i);
            }
            *index = Some(ix);
        }
        Seen::New
    }

    /// The position of `key` among the innermost object's keys so far.
    pub fn position(&self, text: &str, key: &str) -> Option<usize> {
        let key = PyStr::Text(key.into());
        self.find(text, &key, self.hash(&key))
    }

    /// A repeated key's value wins: its offset replaces the first occurrence's (position kept).
    pub fn replace(&mut self, pos: usize, at: usize) {
        let base = self.objects.last().expect("an open object").0;
        self.keys[base + pos].1 = at;
    }

    fn find(&self, text: &str, key: &PyStr<'_>, h: u64) -> Option<usize> {
        let (base, index) = self.objects.last().expect("an open object");
        let keys = &self.keys[*base..];
        let same = |i: usize| keys[i].0 == h && key_at(text, keys[i].1) == *key;
        if let Some(ix) = index {
            match ix.get(&h) {
                None => return None,
                Some(&i) if same(i) => return Some(i),
                // A 64-bit collision of different keys: look at all of them.
                Some(_) => {}
            }
        }
        (0..keys.len()).find(|&i| same(i))
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
