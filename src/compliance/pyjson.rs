//! Python's `json.loads` then `json.dumps` (default arguments) as an in-memory model.
//!
//! [`parse`] reads JSON text into a tree the way `json.loads` does: key order kept, integers exact
//! at any size, other numbers as IEEE doubles (`1e400` is `inf`), the literals `NaN`, `Infinity`,
//! `-Infinity` accepted, duplicate keys resolved as a `dict` does (the last value, at the first
//! key's position), escaped lone surrogates kept. [`write`] produces `json.dumps(obj)`.
//!
//! `Vcon.hash` itself does not build this tree: it streams (`super::stream`), in memory that does
//! not grow with the document. The tree is the reference model the streaming hasher is checked
//! against (unit tests, the fuzz target); it is recursive and refuses nesting deeper than
//! [`TREE_MAX_DEPTH`] levels, where the hash accepts Python's bound (`super::stream::MAX_DEPTH`).

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

/// Nesting the in-memory model accepts (it recurses; the streaming hasher does not).
pub const TREE_MAX_DEPTH: usize = 512;

pub use super::dumps::{float_repr, write, Sink};
use super::lex::{Lexer, Num};

struct Parser<'a> {
    lx: Lexer<'a>,
    depth: usize,
}

/// Parses a whole document.
pub fn parse(text: &str) -> Result<Value<'_>, ParseError> {
    let mut p = Parser { lx: Lexer::new(text), depth: 0 };
    p.lx.ws();
    let v = p.value()?;
    p.lx.ws();
    if p.lx.i != p.lx.b.len() {
        return Err(p.lx.err("end of input"));
    }
    Ok(v)
}

impl<'a> Parser<'a> {
    fn value(&mut self) -> Result<Value<'a>, ParseError> {
        let lx = &mut self.lx;
        let Some(c) = lx.peek() else { return Err(lx.err("a value")) };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Ok(Value::Str(lx.string()?)),
            b'n' if lx.eat("null") => Ok(Value::Null),
            b't' if lx.eat("true") => Ok(Value::Bool(true)),
            b'f' if lx.eat("false") => Ok(Value::Bool(false)),
            b'N' if lx.eat("NaN") => Ok(Value::Float(f64::NAN)),
            b'I' if lx.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            b'-' if lx.eat("-Infinity") => Ok(Value::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => Ok(match lx.number()? {
                Num::Int(t) => Value::Int(t),
                Num::Float(f) => Value::Float(f),
            }),
            _ => Err(lx.err("a value")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > TREE_MAX_DEPTH {
            return Err(self.lx.err("nesting no deeper than 512 levels (in-memory model)"));
        }
        self.lx.i += 1;
        self.lx.ws();
        Ok(())
    }

    fn array(&mut self) -> Result<Value<'a>, ParseError> {
        self.enter()?;
        let mut items = Vec::new();
        if self.lx.peek() == Some(b']') {
            self.lx.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.lx.ws();
            items.push(self.value()?);
            self.lx.ws();
            match self.lx.peek() {
                Some(b',') => self.lx.i += 1,
                Some(b']') => {
                    self.lx.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.lx.err("',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Value<'a>, ParseError> {
        self.enter()?;
        let mut fields: Vec<(PyStr<'a>, Value<'a>)> = Vec::new();
        let mut index: Option<std::collections::HashMap<PyStr<'a>, usize>> = None;
        if self.lx.peek() == Some(b'}') {
            self.lx.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(fields));
        }
        loop {
            self.lx.ws();
            if self.lx.peek() != Some(b'"') {
                return Err(self.lx.err("a string key"));
            }
            let key = self.lx.string()?;
            self.lx.ws();
            if self.lx.peek() != Some(b':') {
                return Err(self.lx.err("':'"));
            }
            self.lx.i += 1;
            self.lx.ws();
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
            self.lx.ws();
            match self.lx.peek() {
                Some(b',') => self.lx.i += 1,
                Some(b'}') => {
                    self.lx.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(fields));
                }
                _ => return Err(self.lx.err("',' or '}'")),
            }
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
