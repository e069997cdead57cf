//! Python's `json.loads` then `json.dumps` (default arguments), byte for byte, without Python.
//!
//! [`parse`] reads JSON text the way `json.loads` does: key order kept, integers exact at any size,
//! other numbers as IEEE doubles (`1e400` is `inf`), the literals `NaN`, `Infinity`, `-Infinity`
//! accepted, duplicate keys resolved as a `dict` does (the last value, at the first key's position),
//! escaped lone surrogates kept. [`write`] produces `json.dumps(obj)`: separators `", "` and `": "`,
//! `ensure_ascii` (`\uXXXX` in lowercase hex, characters above U+FFFF as surrogate pairs), float
//! `repr` (`1.0`, `1e-05`, `1e+16`), `NaN`/`Infinity`.
//!
//! Strings are kept as slices of the input when they hold no escape, so a multi-megabyte base64
//! body is never copied: the writer streams it straight into the hash.

use std::fmt;

/// A JSON string as Python holds it: UTF-8 text, or UTF-16 code units when it holds a lone
/// surrogate (which Rust strings cannot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PyStr<'a> {
    Text(std::borrow::Cow<'a, str>),
    Units(Vec<u16>),
}

impl PyStr<'_> {
    pub fn is(&self, s: &str) -> bool {
        matches!(self, PyStr::Text(t) if t == s)
    }
}

/// A parsed JSON value with Python's semantics.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// An integer literal, kept as its text (exact at any size), without a leading `-` on zero.
    Int(&'a str),
    Float(f64),
    Str(PyStr<'a>),
    Array(Vec<Value<'a>>),
    Object(Vec<(PyStr<'a>, Value<'a>)>),
}

/// Where and why the text is not JSON that Python would load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub expected: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at line {} column {} (byte {}): expected {}", self.line, self.column, self.offset, self.expected)
    }
}

impl std::error::Error for ParseError {}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 512;

/// Parses a whole document.
pub fn parse(text: &str) -> Result<Value<'_>, ParseError> {
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0, depth: 0 };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("end of input"));
    }
    Ok(v)
}

impl<'a> Parser<'a> {
    fn err(&self, expected: &'static str) -> ParseError {
        let before = &self.b[..self.i.min(self.b.len())];
        let line = before.iter().filter(|c| **c == b'\n').count() + 1;
        let column = self.i - before.iter().rposition(|c| *c == b'\n').map_or(0, |p| p + 1) + 1;
        ParseError { offset: self.i, line, column, expected }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value<'a>, ParseError> {
        let Some(&c) = self.b.get(self.i) else { return Err(self.err("a value")) };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Ok(Value::Str(self.string()?)),
            b'n' if self.eat("null") => Ok(Value::Null),
            b't' if self.eat("true") => Ok(Value::Bool(true)),
            b'f' if self.eat("false") => Ok(Value::Bool(false)),
            b'N' if self.eat("NaN") => Ok(Value::Float(f64::NAN)),
            b'I' if self.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            b'-' if self.b[self.i..].starts_with(b"-Infinity") => {
                self.i += 9;
                Ok(Value::Float(f64::NEG_INFINITY))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("a value")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting no deeper than 512 levels"));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<Value<'a>, ParseError> {
        self.enter()?;
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Value<'a>, ParseError> {
        self.enter()?;
        self.i += 1;
        let mut fields: Vec<(PyStr<'a>, Value<'a>)> = Vec::new();
        let mut index: Option<std::collections::HashMap<PyStr<'a>, usize>> = None;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            // A dict keeps the first position of a key and the last value given to it.
            if fields.len() >= 32 && index.is_none() {
                index = Some(fields.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
            }
            let existing = match &index {
                Some(ix) => ix.get(&key).copied(),
                None => fields.iter().position(|(k, _)| *k == key),
            };
            match existing {
                Some(pos) => fields[pos].1 = v,
                None => {
                    if let Some(ix) = index.as_mut() {
                        ix.insert(key.clone(), fields.len());
                    }
                    fields.push((key, v));
                }
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(fields));
                }
                _ => return Err(self.err("',' or '}'")),
            }
        }
    }

    fn string(&mut self) -> Result<PyStr<'a>, ParseError> {
        self.i += 1;
        let start = self.i;
        // Fast path: no escape before the closing quote (SIMD search, then one vectorized check).
        match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
            Some(n) => {
                let run = &self.b[self.i..self.i + n];
                if let Some(bad) = first_control(run) {
                    self.i += bad;
                    return Err(self.err("no raw control character in a string"));
                }
                self.i += n;
                if self.b[self.i] == b'"' {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(PyStr::Text(std::borrow::Cow::Borrowed(s)));
                }
            }
            None => {
                self.i = self.b.len();
                return Err(self.err("'\"' closing the string"));
            }
        }
        let mut units: Vec<u16> = self.s[start..self.i].encode_utf16().collect();
        loop {
            let Some(&c) = self.b.get(self.i) else { return Err(self.err("'\"' closing the string")) };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    let Some(&e) = self.b.get(self.i + 1) else { return Err(self.err("an escape")) };
                    self.i += 2;
                    let u = match e {
                        b'"' => b'"' as u16,
                        b'\\' => b'\\' as u16,
                        b'/' => b'/' as u16,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => 10,
                        b'r' => 13,
                        b't' => 9,
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("4 hex digits after \\u"))?;
                            let u = u16::from_str_radix(hex, 16).map_err(|_| self.err("4 hex digits after \\u"))?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return Err(self.err("4 hex digits after \\u"));
                            }
                            self.i += 4;
                            u
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"));
                        }
                    };
                    units.push(u);
                }
                c if c < 0x20 => return Err(self.err("no raw control character in a string")),
                _ => {
                    let run_start = self.i;
                    while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\') && self.b[self.i] >= 0x20 {
                        self.i += 1;
                    }
                    units.extend(self.s[run_start..self.i].encode_utf16());
                }
            }
        }
        Ok(match String::from_utf16(&units) {
            Ok(s) => PyStr::Text(std::borrow::Cow::Owned(s)),
            Err(_) => PyStr::Units(units),
        })
    }

    fn number(&mut self) -> Result<Value<'a>, ParseError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("a digit")),
        }
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.') && self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            self.i += 1;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                float = true;
                while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
            } else {
                // Python's scanner stops before an incomplete exponent; what follows is then an error.
                self.i = save;
            }
        }
        let text = &self.s[start..self.i];
        if float {
            Ok(Value::Float(text.parse::<f64>().map_err(|_| self.err("a number"))?))
        } else if text == "-0" {
            Ok(Value::Int("0"))
        } else {
            Ok(Value::Int(text))
        }
    }
}

/// Python's `repr(float)`, as `json.dumps` writes floats (`NaN`, `Infinity`, `-Infinity` included).
pub fn float_repr(f: f64, out: &mut String) {
    let mut b = Repr::default();
    repr_into(f, &mut b);
    out.push_str(std::str::from_utf8(b.as_bytes()).expect("ASCII"));
}

/// A float's repr, built on the stack (at most 24 bytes: sign, 17 digits, point, exponent).
struct Repr {
    b: [u8; 48],
    n: usize,
}

impl Default for Repr {
    fn default() -> Self {
        Repr { b: [0; 48], n: 0 }
    }
}

impl Repr {
    fn push(&mut self, s: &[u8]) {
        self.b[self.n..self.n + s.len()].copy_from_slice(s);
        self.n += s.len();
    }

    fn zeros(&mut self, k: usize) {
        self.b[self.n..self.n + k].fill(b'0');
        self.n += k;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

fn repr_into(f: f64, out: &mut Repr) {
    if f.is_nan() {
        return out.push(b"NaN");
    }
    if f.is_infinite() {
        return out.push(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    }
    if f.is_sign_negative() {
        out.push(b"-");
    }
    // Shortest round-trip digits with ties to even (Ryu), as Python's repr; Rust's own formatting
    // rounds exact ties up (1505058715994094.25 -> "…094.3", Python says "…094.2").
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f.abs()).as_bytes();
    let (mant, exp10) = match text.iter().position(|&c| c == b'e' || c == b'E') {
        Some(p) => (&text[..p], std::str::from_utf8(&text[p + 1..]).expect("ASCII").parse::<i32>().expect("exponent")),
        None => (text, 0),
    };
    let (int_part, frac_part) = match mant.iter().position(|&c| c == b'.') {
        Some(p) => (&mant[..p], &mant[p + 1..]),
        None => (mant, &[][..]),
    };
    let mut all = [0u8; 48];
    let len = int_part.len() + frac_part.len();
    all[..int_part.len()].copy_from_slice(int_part);
    all[int_part.len()..len].copy_from_slice(frac_part);
    let lead = all[..len].iter().take_while(|&&c| c == b'0').count();
    let rest = &all[lead..len];
    let trail = rest.iter().rev().take_while(|&&c| c == b'0').count();
    let digits: &[u8] = if trail == rest.len() { b"0" } else { &rest[..rest.len() - trail] };
    // Position of the decimal point relative to the first significant digit.
    let decpt_raw = int_part.len() as i32 - lead as i32 + exp10;
    let exp = if digits == b"0" { 0 } else { decpt_raw - 1 };
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push(b"0.");
            out.zeros((-decpt) as usize);
            out.push(digits);
        } else if (decpt as usize) < digits.len() {
            out.push(&digits[..decpt as usize]);
            out.push(b".");
            out.push(&digits[decpt as usize..]);
        } else {
            out.push(digits);
            out.zeros(decpt as usize - digits.len());
            out.push(b".0");
        }
    } else {
        out.push(&digits[..1]);
        if digits.len() > 1 {
            out.push(b".");
            out.push(&digits[1..]);
        }
        out.push(if exp < 0 { b"e-" } else { b"e+" });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b"0");
        }
        out.push(e.to_string().as_bytes());
    }
}

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

fn put_str<S: Sink>(out: &mut S, s: &PyStr<'_>) {
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

/// Offset of the first byte below 0x20, if any (branch-free over blocks so it vectorizes).
fn first_control(b: &[u8]) -> Option<usize> {
    let mut base = 0;
    for chunk in b.chunks(64) {
        if chunk.iter().fold(false, |acc, &c| acc | (c < 0x20)) {
            return chunk.iter().position(|&c| c < 0x20).map(|p| base + p);
        }
        base += chunk.len();
    }
    None
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
        Value::Float(f) => {
            let mut r = Repr::default();
            repr_into(*f, &mut r);
            out.put(r.as_bytes());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(text: &str) -> String {
        let mut out = Vec::new();
        write(&mut out, &parse(text).unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_are_spelled_as_python_repr() {
        for (input, py) in [
            ("1.0", "1.0"),
            ("1e16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("0.1", "0.1"),
            ("-0.0", "-0.0"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("123.456e3", "123456.0"),
            ("1.5e-7", "1.5e-07"),
            ("1e100", "1e+100"),
            ("18446744073709551623.0", "1.8446744073709552e+19"),
            ("2.5", "2.5"),
            // An exact tie between two shortest candidates: Python rounds half to even.
            ("1505058715994094.25", "1505058715994094.2"),
            ("0", "0"),
            ("0.0", "0.0"),
        ] {
            assert_eq!(dumps(input), py, "{input}");
        }
    }

    #[test]
    fn strings_are_escaped_as_ensure_ascii() {
        assert_eq!(dumps(r#""a\u00e9😀\ud800\n\u2028/\/""#), r#""a\u00e9\ud83d\ude00\ud800\n\u2028//""#);
        assert_eq!(dumps("\"é\""), r#""\u00e9""#);
        assert_eq!(dumps(r#""\u001f\u007f""#), r#""\u001f\u007f""#);
    }

    #[test]
    fn containers_use_python_separators_and_dict_semantics() {
        assert_eq!(dumps(r#"{"a":1,"b":[true,null,-0],"a":2}"#), r#"{"a": 2, "b": [true, null, 0]}"#);
        assert_eq!(dumps("[NaN,Infinity,-Infinity, 123456789012345678901234567890]"), "[NaN, Infinity, -Infinity, 123456789012345678901234567890]");
        assert_eq!(dumps(" { } "), "{}");
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("{\"a\":\n  [1,}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
        assert!(e.to_string().contains("expected a value"), "{e}");
        assert!(parse("01").is_err());
        assert!(parse("\"a\u{1}\"").is_err());
    }
}
