//! The Python side of the `vcon_hash` target: one `scripts/hash/vcon_hash_oracle.py` process, started at
//! the first input, fed every input over a pipe (4-byte little-endian length, then the bytes); it
//! answers one line per input: `ok <sha256 hex>` or `err utf8|json|object|depth`, after a first
//! line `limit <deepest nesting it accepts> python <version>`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use vcon_otel::compliance::{stream::MAX_DEPTH, HashError, VconHash};

struct Oracle {
    _child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    limit: usize,
}

static ORACLE: Mutex<Option<Option<Oracle>>> = Mutex::new(None);

fn start() -> Option<Oracle> {
    let python = std::env::var("VCON_OTEL_FUZZ_PYTHON").unwrap_or_default();
    if python.is_empty() || python == "none" {
        eprintln!("vcon_hash: VCON_OTEL_FUZZ_PYTHON is unset or \"none\": comparing with the in-memory model only, not with Python");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/hash/vcon_hash_oracle.py");
    let mut child = Command::new(&python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {python} {script}: {e}"));
    let to = child.stdin.take().expect("stdin");
    let mut from = BufReader::new(child.stdout.take().expect("stdout"));
    let mut hello = String::new();
    from.read_line(&mut hello).expect("the oracle's first line");
    let limit = hello.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("oracle said {hello:?}"));
    eprintln!("vcon_hash: comparing with Python: {}", hello.trim());
    Some(Oracle { _child: child, to, from, limit })
}

fn ask(o: &mut Oracle, data: &[u8]) -> String {
    o.to.write_all(&(data.len() as u32).to_le_bytes()).and_then(|_| o.to.write_all(data)).and_then(|_| o.to.flush()).expect("write to the oracle");
    let mut line = String::new();
    o.from.read_line(&mut line).expect("read from the oracle");
    assert!(!line.is_empty(), "the oracle died");
    line.trim_end().to_string()
}

/// Panics when Rust and Python disagree (see the target's header for what "agree" means).
pub fn compare(data: &[u8], got: &Result<VconHash, HashError>) {
    let mut guard = ORACLE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(o) = guard.get_or_insert_with(start).as_mut() else { return };
    let py = ask(o, data);
    let limit = o.limit;
    let agree = match (got, py.as_str()) {
        (Ok(h), p) => p.strip_prefix("ok ") == Some(h.sha256_hex.as_str()) || (p == "err depth" && limit < MAX_DEPTH),
        (Err(HashError::NotUtf8 { .. }), "err utf8") | (Err(HashError::Json(_)), "err json") | (Err(HashError::NotAnObject), "err object") => true,
        (Err(HashError::TooDeep { .. }), "err depth") => true,
        // This Python goes deeper than our bound (CPython 3.13's): the document must really be deeper.
        (Err(HashError::TooDeep { .. }), _) if limit > MAX_DEPTH => super::depth(data) > MAX_DEPTH,
        // This Python stops earlier than our bound: nothing to compare past its own.
        (Err(_), "err depth") => limit < MAX_DEPTH && super::depth(data) > limit,
        _ => false,
    };
    assert!(agree, "Rust and Python disagree on {:?}:\n  rust:   {}\n  python: {py}", String::from_utf8_lossy(&data[..data.len().min(400)]), match got {
        Ok(h) => format!("ok {}", h.sha256_hex),
        Err(e) => format!("err {e}"),
    });
}
