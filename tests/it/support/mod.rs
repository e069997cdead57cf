//! Test harness: real servers on free loopback ports, the bridge as a child process, and an OTLP
//! receiver with scripted answers. Paths of installed servers come from the environment that
//! `scripts/install-test-deps.sh` writes (`$CACHE/env.sh`); `scripts/test.sh` sources it.

#![allow(dead_code)]

pub mod bridge;
pub mod http;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod rotel;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1, and never handed out before in this test
/// process: the tests run in parallel, and the kernel may give two of them the same ephemeral port
/// between the moment one is found free and the moment its server binds it. (Another process can
/// still take it meanwhile; the servers the tests start fail then with "address in use".)
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `f` every 25 ms until it is true; false after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// An installed program's path from the environment, or a panic that says how to get it.
pub fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("{var} is not set: run the tests with scripts/test.sh, which installs the servers and sets it"),
    }
}

/// A fresh temporary directory, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A log without terminal colour codes (ANSI escape sequences), so tests can match its text.
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut it = log.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            it.by_ref().find(|d| d.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}
