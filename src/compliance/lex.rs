//! The tokens of Python's `json.loads`, shared by the in-memory model (`pyjson::parse`) and the
//! streaming hasher (`stream`): whitespace, strings, numbers, literals, and where an error is.
//!
//! Strings come back as [`PyStr`]: a slice of the input when they hold no escape (a multi-megabyte
//! base64 body is never copied), decoded UTF-8 otherwise, UTF-16 code units when they hold a lone
//! surrogate. Numbers follow Python's scanner: an integer literal stays text (exact at any size),
//! anything with a fraction or exponent is an IEEE double (`1e400` is `inf`); an incomplete
//! fraction or exponent ends the number there (what follows is then an error).
//! [`Lexer::skip_value`] is a structural skip for look-ahead only: it does not validate.

use super::pyjson::{ParseError, PyStr};
use std::borrow::Cow;

/// A number as Python's scanner reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num<'a> {
    /// An integer literal, without a leading `-` on zero.
    Int(&'a str),
    Float(f64),
}

/// A number as its text: an integer as [`Num::Int`], or a float's token to parse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumText<'a> {
    Int(&'a str),
    Float(&'a str),
}

/// A cursor over the document text.
pub struct Lexer<'a> {
    pub s: &'a str,
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(s: &'a str) -> Self {
        Lexer { s, b: s.as_bytes(), i: 0 }
    }

    /// An error at the cursor, with its line and column (computed only now).
    pub fn err(&self, expected: &'static str) -> ParseError {
        self.err_at(self.i, expected)
    }

    pub fn err_at(&self, at: usize, expected: &'static str) -> ParseError {
        let (line, column) = line_column(self.b, at);
        ParseError { offset: at, line, column, expected }
    }

    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    pub fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// A string; the cursor is on its opening quote.
    pub fn string(&mut self) -> Result<PyStr<'a>, ParseError> {
        self.string_plain().map(|(s, _)| s)
    }

    /// A string, and whether it is plain: printable ASCII (U+0020 to U+007E) without `"` or `\\`,
    /// which `json.dumps` writes as it stands. The cursor is on its opening quote.
    pub fn string_plain(&mut self) -> Result<(PyStr<'a>, bool), ParseError> {
        self.i += 1;
        let start = self.i;
        // Fast path: no escape before the closing quote (the first 32 bytes eight at a time, the
        // rest by a SIMD search, then one vectorized check).
        match plain_run(&self.b[self.i..]) {
            Some(Ok((n, ascii))) => {
                self.i += n;
                if self.b[self.i] == b'"' {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok((PyStr::Text(Cow::Borrowed(s)), ascii));
                }
            }
            Some(Err(bad)) => {
                self.i += bad;
                return Err(self.err("no raw control character in a string"));
            }
            None => {
                self.i = self.b.len();
                return Err(self.err("'\"' closing the string"));
            }
        }
        let mut units: Vec<u16> = self.s[start..self.i].encode_utf16().collect();
        loop {
            let Some(c) = self.peek() else { return Err(self.err("'\"' closing the string")) };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => units.push(self.escape()?),
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
        Ok((
            match String::from_utf16(&units) {
                Ok(s) => PyStr::Text(Cow::Owned(s)),
                Err(_) => PyStr::Units(units),
            },
            false,
        ))
    }

    fn escape(&mut self) -> Result<u16, ParseError> {
        let Some(&e) = self.b.get(self.i + 1) else { return Err(self.err("an escape")) };
        self.i += 2;
        Ok(match e {
            b'"' => b'"' as u16,
            b'\\' => b'\\' as u16,
            b'/' => b'/' as u16,
            b'b' => 8,
            b'f' => 12,
            b'n' => 10,
            b'r' => 13,
            b't' => 9,
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else { return Err(self.err("4 hex digits after \\u")) };
                let u = hex.iter().fold(0u16, |acc, &h| acc << 4 | (h as char).to_digit(16).expect("hex digit") as u16);
                self.i += 4;
                u
            }
            _ => {
                self.i -= 1;
                return Err(self.err("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"));
            }
        })
    }

    /// A number; the cursor is on `-` or a digit.
    pub fn number(&mut self) -> Result<Num<'a>, ParseError> {
        Ok(match self.number_token()? {
            NumText::Int(t) => Num::Int(t),
            NumText::Float(t) => Num::Float(self.float(t)?),
        })
    }

    /// A number as its text, unparsed; the cursor is on `-` or a digit.
    pub fn number_token(&mut self) -> Result<NumText<'a>, ParseError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("a digit")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') && self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            self.i += 1;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                float = true;
                self.digits();
            } else {
                // Python's scanner stops before an incomplete exponent; what follows is then an error.
                self.i = save;
            }
        }
        let text = &self.s[start..self.i];
        Ok(if float {
            NumText::Float(text)
        } else if text == "-0" {
            NumText::Int("0")
        } else {
            NumText::Int(text)
        })
    }

    /// The double of a float token [`Lexer::number_token`] just read (the cursor right after it).
    pub fn float(&self, text: &str) -> Result<f64, ParseError> {
        text.parse::<f64>().map_err(|_| self.err_at(self.i - text.len(), "a number"))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// Moves past one value without validating it (look-ahead only); `None` when the text ends
    /// first. The cursor is on the value's first byte.
    pub fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match *self.b.get(self.i)? {
                b'"' => self.skip_string()?,
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                _ if depth > 0 => self.i += 1,
                _ => {
                    while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        self.i += 1;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }

    /// Whether an entry of the object being read, after the value at the cursor, has `key`
    /// (look-ahead: structural, `false` where the text is not as expected).
    pub fn later_key(mut self, key: &str) -> bool {
        loop {
            if self.skip_value().is_none() {
                return false;
            }
            self.ws();
            if self.peek() != Some(b',') {
                return false;
            }
            self.i += 1;
            self.ws();
            if self.peek() != Some(b'"') {
                return false;
            }
            match self.string() {
                Ok(k) if k.is(key) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            self.ws();
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            self.ws();
        }
    }

    fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let n = memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
            self.i += n;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(());
            }
            self.i += 2;
        }
    }
}

fn line_column(b: &[u8], at: usize) -> (usize, usize) {
    let before = &b[..at.min(b.len())];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let column = at - memchr::memrchr(b'\n', before).map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// The length of the text before the first `"` or `\\` (`None`: there is none) and whether it is
/// printable ASCII, or the offset of the first byte below 0x20 before it.
fn plain_run(b: &[u8]) -> Option<Result<(usize, bool), usize>> {
    const SHORT: usize = 32;
    let mut ascii = true;
    let mut k = 0;
    // Eight bytes at a time while eight remain (the word's lowest flagged byte is exact, see
    // `below`), then byte by byte.
    while k < SHORT && k + 8 <= b.len() {
        let w = u64::from_le_bytes(b[k..k + 8].try_into().expect("eight bytes"));
        let stop = below(w ^ (LO * u64::from(b'"')), 1) | below(w ^ (LO * u64::from(b'\\')), 1) | below(w, 0x20);
        let odd = (w & HI) | below(w ^ (LO * 0x7f), 1);
        if stop == 0 {
            ascii &= odd == 0;
            k += 8;
            continue;
        }
        let at = stop.trailing_zeros() as usize / 8;
        ascii &= odd & ((1u64 << (8 * at)) - 1) == 0;
        return stopped(b, k + at, ascii);
    }
    while k < SHORT && k < b.len() {
        let c = b[k];
        if c == b'"' || c == b'\\' || c < 0x20 {
            return stopped(b, k, ascii);
        }
        ascii &= c < 0x7f;
        k += 1;
    }
    let n = k + memchr::memchr2(b'"', b'\\', &b[k..])?;
    Some(scan_plain(&b[k..n]).map(|rest| (n, ascii && rest)).map_err(|p| k + p))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` below `n` (n <= 0x80). Exact for the lowest such byte; a byte
/// above it may be flagged falsely (the subtraction's borrow), so only the lowest flag is read.
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * u64::from(n)) & !w & HI
}

/// The run ends at `b[k]`: a quote or backslash (a plain run of `k` bytes), or a raw control
/// character (an error, unless the string never closes: then that is reported).
fn stopped(b: &[u8], k: usize, ascii: bool) -> Option<Result<(usize, bool), usize>> {
    if b[k] < 0x20 {
        return memchr::memchr2(b'"', b'\\', &b[k..]).map(|_| Err(k));
    }
    Some(Ok((k, ascii)))
}

/// Whether every byte is printable ASCII, or the offset of the first byte below 0x20 (branch-free
/// over blocks so it vectorizes).
fn scan_plain(b: &[u8]) -> Result<bool, usize> {
    let mut base = 0;
    for chunk in b.chunks(64) {
        if chunk.iter().fold(false, |acc, &c| acc | !(0x20..0x7f).contains(&c)) {
            return first_control(&b[base..]).map_or(Ok(false), |p| Err(base + p));
        }
        base += chunk.len();
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::plain_run;

    /// `plain_run` byte by byte, as its contract reads.
    fn reference(b: &[u8]) -> Option<Result<(usize, bool), usize>> {
        let end = b.iter().position(|&c| c == b'"' || c == b'\\')?;
        if let Some(bad) = b[..end].iter().position(|&c| c < 0x20) {
            return Some(Err(bad));
        }
        Some(Ok((end, b[..end].iter().all(|&c| (0x20..0x7f).contains(&c)))))
    }

    /// Every stop and every non-plain byte at every offset of the word scan and past it.
    #[test]
    fn the_word_scan_agrees_with_the_byte_scan() {
        const BYTES: [u8; 12] = [b'a', b'a', b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xc3];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..200_000 {
            let len = (next() % 80) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| b'x').collect();
            // A few special bytes at random places over a plain background.
            for _ in 0..(case % 4) {
                if len > 0 {
                    let at = (next() % len as u64) as usize;
                    b[at] = BYTES[(next() % BYTES.len() as u64) as usize];
                }
            }
            assert_eq!(plain_run(&b), reference(&b), "bytes {b:?}");
        }
    }
}
