//! Python's `repr(float)`, as `json.dumps` writes floats: from a double ([`float_repr`], shortest
//! round-trip digits by Ryu with ties to even, as Python's `repr`), or straight from the number's
//! JSON text when that is exact ([`token_repr`]), without parsing it.
//!
//! Layout (CPython's `float_repr_style = 'short'`): the shortest digits `d₁d₂…dₙ` with the decimal
//! point after `decpt` of them; fixed notation when `-4 < decpt <= 16` (`0.0001`, `123.5`, `1e15` as
//! `1000000000000000.0`, `.0` added to integral values), else `d₁.d₂…dₙe±XX` with at least two
//! exponent digits (`1e-05`, `1.5e+16`). `NaN`, `Infinity`, `-Infinity` as `json.dumps` spells them.
//!
//! The text path: a decimal with at most 15 significant digits whose value lies well inside the
//! normal range (a decimal exponent from -290 to 300) converts to a double that no other decimal of at most 15
//! digits converts to (15 is `DBL_DIG`: such decimals survive the round trip through a double), so
//! the shortest digits that read back as that double are the decimal's own digits, leading and
//! trailing zeros removed. Any other text (16 or more significant digits, an exponent outside that
//! range) is left to the parse and Ryu. Zero (any spelling, `-0.0`, `0e5`) is `0.0` or `-0.0`.

/// A float as `repr` spells it (at most 24 bytes), on the stack.
pub struct Repr {
    b: [u8; 32],
    n: usize,
}

impl Repr {
    fn new() -> Self {
        Repr { b: [0; 32], n: 0 }
    }

    fn push(&mut self, c: u8) {
        self.b[self.n] = c;
        self.n += 1;
    }

    fn extend(&mut self, s: &[u8]) {
        self.b[self.n..self.n + s.len()].copy_from_slice(s);
        self.n += s.len();
    }

    fn zeros(&mut self, k: usize) {
        self.b[self.n..self.n + k].fill(b'0');
        self.n += k;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

/// The significant digits of a decimal text and where its point is.
struct Decimal {
    neg: bool,
    /// The digits without leading or trailing zeros; `0` alone for zero.
    digits: [u8; 17],
    n: usize,
    /// The value is `0.d₁d₂…dₙ × 10^decpt` (1 for zero).
    decpt: i64,
}

/// Reads `-?\d+(\.\d+)?([eE][+-]?\d+)?` (a JSON number, or Ryu's output); `None` when it has more
/// than `max_digits` significant digits (at most 17) or an exponent of more than 6 digits.
fn decimal(text: &[u8], max_digits: usize) -> Option<Decimal> {
    let mut d = Decimal { neg: false, digits: [b'0'; 17], n: 0, decpt: 0 };
    let mut i = 0;
    if text.first() == Some(&b'-') {
        d.neg = true;
        i = 1;
    }
    let (mut pending, mut point) = (0usize, false);
    while let Some(&c) = text.get(i) {
        match c {
            b'0' if d.n == 0 => {
                if point {
                    d.decpt -= 1;
                }
            }
            b'0'..=b'9' => {
                if !point {
                    d.decpt += 1;
                }
                if c == b'0' {
                    pending += 1;
                } else {
                    if d.n + pending + 1 > max_digits {
                        return None;
                    }
                    d.digits[d.n..d.n + pending].fill(b'0');
                    d.n += pending;
                    pending = 0;
                    d.digits[d.n] = c;
                    d.n += 1;
                }
            }
            b'.' => point = true,
            _ => break,
        }
        i += 1;
    }
    if d.n == 0 {
        d.n = 1;
        d.decpt = 1;
        return Some(d);
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        let neg = match text.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp = &text[i..];
        let first = exp.iter().position(|&c| c != b'0').unwrap_or(exp.len());
        if exp.len() - first > 6 {
            return None;
        }
        let e = exp.iter().fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'));
        d.decpt += if neg { -e } else { e };
    }
    Some(d)
}

/// Lays out `repr` from the significant digits.
fn layout(d: &Decimal) -> Repr {
    let mut out = Repr::new();
    let digits = &d.digits[..d.n];
    if d.neg {
        out.push(b'-');
    }
    let decpt = d.decpt;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.extend(b"0.");
            out.zeros((-decpt) as usize);
            out.extend(digits);
        } else if (decpt as usize) < digits.len() {
            out.extend(&digits[..decpt as usize]);
            out.push(b'.');
            out.extend(&digits[decpt as usize..]);
        } else {
            out.extend(digits);
            out.zeros(decpt as usize - digits.len());
            out.extend(b".0");
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend(&digits[1..]);
        }
        let exp = decpt - 1;
        out.extend(if exp < 0 { b"e-" } else { b"e+" });
        let e = exp.unsigned_abs();
        if e >= 100 {
            out.push(b'0' + (e / 100) as u8);
        }
        out.push(b'0' + (e / 10 % 10) as u8);
        out.push(b'0' + (e % 10) as u8);
    }
    out
}

/// How much of a float token is its own `repr`, for the common spelling `-?\d+\.\d+` that `repr`
/// writes unchanged up to trailing zeros (`2.50` → `2.5`, `7.00` → `7.0`): at most 15 significant
/// digits, in fixed notation (at most 16 integer digits, or `0.` and at most 3 zeros before the
/// first significant digit). `None` for anything else.
pub fn repr_prefix(token: &str) -> Option<usize> {
    let b = token.as_bytes();
    let sign = usize::from(b.first() == Some(&b'-'));
    let point = sign + b[sign..].iter().position(|&c| c == b'.')?;
    let frac = &b[point + 1..];
    if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let kept = frac.iter().rposition(|&c| c != b'0').map_or(0, |p| p + 1);
    let int_len = point - sign;
    let significant = if b[sign] == b'0' {
        let lead = frac.iter().position(|&c| c != b'0').unwrap_or(kept);
        if lead > 3 {
            return None;
        }
        kept - lead
    } else {
        if int_len > 16 {
            return None;
        }
        let int = &b[sign..point];
        if kept > 0 {
            int_len + kept
        } else {
            int_len - int.iter().rev().take_while(|&&c| c == b'0').count()
        }
    };
    (significant <= 15).then_some(point + 1 + kept.max(1))
}

/// `repr` of the double a JSON number token with a fraction or exponent reads as, from the token's
/// text alone; `None` when the text is not exact that way (the caller parses it and uses
/// [`float_repr_of`]).
pub fn token_repr(token: &str) -> Option<Repr> {
    let d = decimal(token.as_bytes(), 15)?;
    // The decimal exponent (of `d₁.d₂…`) from -290 to 300: far from subnormals and from overflow.
    if !(-290..=300).contains(&(d.decpt - 1)) {
        return None;
    }
    Some(layout(&d))
}

/// Python's `repr(float)` (`NaN`, `Infinity`, `-Infinity` as `json.dumps` writes them).
pub fn float_repr_of(f: f64) -> Repr {
    let mut out = Repr::new();
    if f.is_nan() {
        out.extend(b"NaN");
    } else if f.is_infinite() {
        out.extend(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        // Shortest round-trip digits with ties to even (Ryu), as Python's repr; Rust's own
        // formatting rounds exact ties up (1505058715994094.25 -> "…094.3", Python says "…094.2").
        let mut buf = ryu::Buffer::new();
        let mut d = decimal(buf.format_finite(f.abs()).as_bytes(), 17).expect("Ryu writes at most 17 digits");
        d.neg = f.is_sign_negative();
        out = layout(&d);
    }
    out
}

/// [`float_repr_of`] appended to a `String`.
pub fn float_repr(f: f64, out: &mut String) {
    out.push_str(std::str::from_utf8(float_repr_of(f).as_bytes()).expect("ASCII"));
}

#[cfg(test)]
#[path = "float_tests.rs"]
mod tests;
