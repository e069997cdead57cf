//! Python's `json.dumps` with default arguments, as bytes into a [`Sink`]: separators `", "` and
//! `": "`, `ensure_ascii` (`\uXXXX` in lowercase hex, characters above U+FFFF as surrogate pairs,
//! `\" \\ \n \r \t \b \f`, `/` unescaped, DEL escaped), float `repr` (`1.0`, `1e-05`, `1e+16`),
//! `NaN`/`Infinity` (`super::float`), integers as their digits. Used by the streaming hasher piece by piece and by
//! [`write`] for a whole in-memory [`Value`].

pub use super::float::float_repr;
use super::float::float_repr_of;
use super::pyjson::{PyStr, Value};

/// A sink for the serialized bytes (a hasher, a buffer).
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_unit<S: Sink>(out: &mut S, u: u16) {
    match u {
        0x22 => out.put(b"\\\""),
        0x5c => out.put(b"\\\\"),
        0x0a => out.put(b"\\n"),
        0x0d => out.put(b"\\r"),
        0x09 => out.put(b"\\t"),
        0x08 => out.put(b"\\b"),
        0x0c => out.put(b"\\f"),
        0x20..=0x7e => out.put(&[u as u8]),
        _ => out.put(&[
            b'\\',
            b'u',
            HEX[(u >> 12) as usize & 15],
            HEX[(u >> 8) as usize & 15],
            HEX[(u >> 4) as usize & 15],
            HEX[u as usize & 15],
        ]),
    }
}

pub fn put_str<S: Sink>(out: &mut S, s: &PyStr<'_>) {
    out.put(b"\"");
    match s {
        PyStr::Text(t) if all_plain(t.as_bytes()) => out.put(t.as_bytes()),
        PyStr::Text(t) => {
            let b = t.as_bytes();
            let mut start = 0;
            // Runs of printable ASCII go out as they are; everything else unit by unit.
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
                    i += 1;
                    continue;
                }
                out.put(&b[start..i]);
                if c < 0x80 {
                    put_unit(out, c as u16);
                    i += 1;
                } else {
                    let ch_len = utf8_len(c);
                    let ch = t[i..i + ch_len].chars().next().expect("a char");
                    let mut buf = [0u16; 2];
                    for u in ch.encode_utf16(&mut buf) {
                        put_unit(out, *u);
                    }
                    i += ch_len;
                }
                start = i;
            }
            out.put(&b[start..]);
        }
        PyStr::Units(units) => {
            for u in units {
                put_unit(out, *u);
            }
        }
    }
    out.put(b"\"");
}

/// Whether every byte is printable ASCII other than `"` and `\\` (goes out unescaped).
fn all_plain(b: &[u8]) -> bool {
    b.chunks(64).all(|chunk| !chunk.iter().fold(false, |acc, &c| acc | !(0x20..0x7f).contains(&c) | (c == b'"') | (c == b'\\')))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

/// Writes `json.dumps(value)`.
pub fn write<S: Sink>(out: &mut S, v: &Value<'_>) {
    match v {
        Value::Null => out.put(b"null"),
        Value::Bool(true) => out.put(b"true"),
        Value::Bool(false) => out.put(b"false"),
        Value::Int(t) => out.put(t.as_bytes()),
        Value::Float(f) => out.put(float_repr_of(*f).as_bytes()),
        Value::Str(s) => put_str(out, s),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b", ");
                }
                write(out, item);
            }
            out.put(b"]");
        }
        Value::Object(fields) => {
            out.put(b"{");
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.put(b", ");
                }
                put_str(out, k);
                out.put(b": ");
                write(out, item);
            }
            out.put(b"}");
        }
    }
}

