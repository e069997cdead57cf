//! `repr` from the text and from the double against the writer's earlier, allocating
//! implementation (kept here as the reference; the vectors and the property test tie it to Python).

use super::{float_repr, float_repr_of, repr_prefix, token_repr};

/// The earlier `float_repr`, unchanged.
fn reference(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f.abs());
    let (mant, exp10) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().expect("exponent")),
        None => (text, 0),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    let all = format!("{int_part}{frac_part}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let decpt_raw = int_part.len() as i32 - lead as i32 + exp10;
    let exp = if digits == "0" { 0 } else { decpt_raw - 1 };
    let digits = digits.to_string();
    let decpt = exp + 1;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if (decpt as usize) < digits.len() {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', decpt as usize - digits.len()));
            out.push_str(".0");
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    }
}

fn want(f: f64) -> String {
    let mut s = String::new();
    reference(f, &mut s);
    s
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, s: &mut String, n: u64, zero_heavy: bool) {
        for _ in 0..n {
            let d = if zero_heavy && self.below(3) == 0 { 0 } else { self.below(10) };
            s.push((b'0' + d as u8) as char);
        }
    }
}

/// A JSON number token with a fraction or an exponent (or both).
fn token(r: &mut Rng) -> String {
    let mut s = String::new();
    if r.below(3) == 0 {
        s.push('-');
    }
    if r.below(3) == 0 {
        s.push('0');
    } else {
        s.push((b'1' + r.below(9) as u8) as char);
        let n = r.below(20);
        r.digits(&mut s, n, true);
    }
    let (frac, exp) = match r.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    if frac {
        s.push('.');
        let n = 1 + r.below(20);
        r.digits(&mut s, n, true);
    }
    if exp {
        s.push(if r.below(2) == 0 { 'e' } else { 'E' });
        match r.below(3) {
            0 => s.push('-'),
            1 => s.push('+'),
            _ => {}
        }
        for _ in 0..r.below(3) {
            s.push('0');
        }
        let e = match r.below(4) {
            0 => r.below(10),
            1 => r.below(40),
            2 => r.below(340),
            _ => r.below(100_000),
        };
        s.push_str(&e.to_string());
    }
    s
}

#[track_caller]
fn same_as_parsed(tok: &str) -> bool {
    let f: f64 = tok.parse().expect("a number");
    let slow = float_repr_of(f);
    assert_eq!(std::str::from_utf8(slow.as_bytes()).unwrap(), want(f), "repr of {tok}");
    if let Some(k) = repr_prefix(tok) {
        assert_eq!(&tok[..k], want(f), "prefix of {tok}");
        assert!(token_repr(tok).is_some(), "{tok}: the text path covers the prefix path");
    }
    match token_repr(tok) {
        Some(fast) => {
            assert_eq!(std::str::from_utf8(fast.as_bytes()).unwrap(), want(f), "text path for {tok}");
            true
        }
        None => false,
    }
}

#[test]
fn text_path_agrees_with_the_parsed_double_on_named_tokens() {
    let fast = [
        "-0.0", "0.0", "0e0", "-0E-0", "0.000e99999999", "1E5", "1e-5", "1e-05", "0.0001", "0.00001", "1e16", "1e15", "123456789012345.0",
        "12345678901234.5e1", "1.23456789012345e-7", "0.000100", "100.000", "100.5", "2.5", "4.9", "0.1", "1.0", "7.50", "1e-290", "1e300",
        "9.99999999999999e300", "999999999999999e285", "1e0000000000000000000000005", "-1.5E+16", "1234567890.12345", "0.3",
    ];
    for tok in fast {
        assert!(same_as_parsed(tok), "{tok} takes the text path");
    }
    for tok in ["2.5", "-0.0", "0.0", "7.00", "100.500", "0.0001", "-0.000120", "123456789012345.0", "1000000000000000.0", "0.123456789012345"] {
        assert!(repr_prefix(tok).is_some(), "{tok} is its own repr");
    }
    for tok in ["0.00001", "1e5", "1.5e3", "1234567890123456.0", "10000000000000000.0", "0.1234567890123456", "-0.000012"] {
        assert!(repr_prefix(tok).is_none(), "{tok} is not its own repr");
    }
    let slow = [
        "1234567890123456.0", "0.30000000000000004", "1e-291", "1e301", "5e-324", "1e400", "-1e400", "2.2250738585072014e-308",
        "1505058715994094.25", "18446744073709551623.0", "1e-1000000", "0.1234567890123456",
    ];
    for tok in slow {
        assert!(!same_as_parsed(tok), "{tok} is parsed");
    }
}

#[test]
fn text_path_agrees_with_the_parsed_double_on_generated_tokens() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut taken = 0;
    for _ in 0..300_000 {
        taken += usize::from(same_as_parsed(&token(&mut r)));
    }
    // Both paths are exercised.
    assert!((30_000..270_000).contains(&taken), "{taken}");
}

#[test]
fn repr_of_doubles_is_the_references() {
    let mut r = Rng(7);
    let specials = [0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, f64::MAX, f64::MIN, 5e-324, 1e16, 1e15, 1e-4, 1e-5, 0.1, 2.5];
    let mut s = String::new();
    for f in specials.into_iter().chain((0..300_000).map(|_| f64::from_bits(r.next()))).chain((0..100_000).map(|i| i as f64 * 2.5 + 2.4)) {
        s.clear();
        float_repr(f, &mut s);
        assert_eq!(s, want(f), "{f:e}");
    }
}
