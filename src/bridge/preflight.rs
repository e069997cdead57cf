//! The start-up checks against Redis, one module for both callers: `vcon-otel run` runs them before
//! any stage starts, `vcon-otel check-config --connect` runs them and stops. They connect (TLS and
//! `AUTH` as configured), `PING`, check that RedisJSON is loaded when snapshots can arrive
//! (`redis.snapshots`, by `COMMAND INFO JSON.GET`), and that the ACL lets the bridge's user run
//! every command it uses on the keys it uses them on — each tried in a form the server refuses
//! after its ACL check and before doing anything (an invalid ID, an invalid idle time, `SET … XX`
//! on a key that does not exist, …), so nothing is written, no group or consumer is created:
//!
//! | probe | rule it checks |
//! |---|---|
//! | `XGROUP CREATE {stream.key} … x MKSTREAM` | `+xgroup\|create` (also: `stream.key` is a stream, if it exists) |
//! | `XREADGROUP GROUP {group} {consumer} … STREAMS {stream.key} x` | `+xreadgroup` |
//! | `XAUTOCLAIM`, `XCLAIM` with the idle time `x` | `+xautoclaim`, `+xclaim` |
//! | `XACK {stream.key} {group} 0-0`, `XINFO GROUPS {stream.key}` | `+xack`, `+xinfo\|groups` |
//! | `XRANGE {stream.key} x x` | `+xrange` (a held entry's record, re-read to dead-letter it) |
//! | `XADD {stream.key} 0-0 …`, `XADD {stream.dead_letter_key} 0-0 …` | `+xadd` on both keys |
//! | `SET vcon_otel:done:… 1 XX EX 1`, `GET vcon_otel:done:…` | `+set`, `+get` on the markers |
//! | `COMMAND INFO JSON.GET`, `JSON.GET vcon_otel:snap:…` | the module, `+command\|info`, `+json.get` |
//! | `DEL vcon_otel:snap:…`, `ZREM`/`ZCARD {compliance.snapshot_index}` | `+del`, `+zrem`, `+zcard` and the index key |
//! | `HSET`, `HINCRBY`, `HGET`, `HGETALL`, `EXPIRE`, `DEL` on a `vcon_otel:steps:…` probe key | the step-record rules |
//!
//! `RPUSH` (hosted tracers with `dlq_vcon_on_error`) has no such harmless form and is not checked.
//!
//! A [`Refusal`] (wrong credentials, TLS or certificate failure, missing module, a rule missing,
//! unreadable files) ends the checks at once with its class (exit codes: `Class::exit_code`).
//! Anything else (refused, reset, timed out, loading) is transient: retried with backoff until it
//! works, `stop` turns true, or `give_up_after` passes; logged at WARN on attempts 1, 2, 4, 8, …
//! with the time of the next attempt. Meanwhile `/readyz` answers 503 (the stages have not started).

use crate::config::{PasswordSource, Redis as RedisConfig};
use crate::retry::{self, Policy};
use crate::stream::connect::{Class, ConnectError, Options, Password, Redis, Refusal};
use redis::{RetryMethod, Value};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One attempt's connect and command timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Policy = Policy::forever(Duration::from_millis(200), Duration::from_secs(5));
/// Keys the probes name; none exists (and if one did, the probes leave it as it is).
const PROBE_GROUP: &str = "vcon-otel:start-up-check";
const PROBE_MARKER: &str = "vcon_otel:done:start-up-check";
const PROBE_SNAPSHOT: &str = "vcon_otel:snap:start-up-check";
const PROBE_STEPS: &str = "vcon_otel:steps:start-up-check";

/// `redis:` as connection options; reads `redis.password_file`.
pub fn options(c: &RedisConfig) -> Result<Options, Refusal> {
    let password = match &c.password {
        None => None,
        Some(PasswordSource::Env { var, value }) => Some(Password { value: value.0.clone(), from: format!("redis.password_env ({var})") }),
        Some(PasswordSource::File(p)) => {
            let text = std::fs::read_to_string(p).map_err(|e| Refusal::new(Class::Config, format!("redis.password_file: cannot read {}: {e}", p.display())))?;
            let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string();
            if value.is_empty() {
                return Err(Refusal::new(Class::Config, format!("redis.password_file: {} is empty (fix: put the password in it)", p.display())));
            }
            Some(Password { value, from: format!("redis.password_file ({})", p.display()) })
        }
    };
    Ok(Options {
        url: c.url.clone(),
        password,
        ca_file: c.tls.ca_file.clone(),
        cert_file: c.tls.cert_file.clone(),
        key_file: c.tls.key_file.clone(),
        insecure_skip_verify: c.tls.insecure_skip_verify,
    })
}

/// What the checks need to know of the configuration.
pub struct Plan<'a> {
    pub redis: &'a RedisConfig,
    pub stream: &'a crate::config::Stream,
    /// `compliance.snapshot_index`.
    pub snapshot_index: &'a str,
}

impl<'a> Plan<'a> {
    pub fn of(c: &'a crate::config::Config) -> Plan<'a> {
        Plan { redis: &c.redis, stream: &c.stream, snapshot_index: &c.snapshot_index }
    }
}

/// Opens the client (every connection of the bridge is made from it) and runs every check.
pub async fn check(plan: &Plan<'_>, stop: &mut watch::Receiver<bool>, give_up_after: Option<Duration>) -> Result<Redis, ConnectError> {
    let redis = Redis::open(&options(plan.redis).map_err(ConnectError::Refused)?).map_err(ConnectError::Refused)?;
    if plan.redis.tls.insecure_skip_verify {
        tracing::error!(redis = %redis.shown(), "redis.tls.insecure_skip_verify is true: the Redis server's certificate is NOT checked, so anyone on the network path can read and change the stream; use it for tests only");
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match attempt_once(&redis, plan).await {
            Ok(()) => return Ok(redis),
            Err(Attempt::Refused(r)) => return Err(ConnectError::Refused(r)),
            Err(Attempt::Transient(e)) => e,
        };
        let wait = RETRY.backoff(attempt - 1);
        if give_up_after.is_some_and(|limit| started.elapsed() + wait > limit) {
            let msg = format!("redis.url: {} is not reachable: {error} (fix: check the host and port, and that Redis runs)", redis.shown());
            return Err(ConnectError::Refused(Refusal::new(Class::Unreachable, msg)));
        }
        if retry::worth_logging(attempt) {
            let next = crate::clock::rfc3339(crate::clock::now_ns() + wait.as_nanos() as u64);
            tracing::warn!(redis = %redis.shown(), attempt, error = %error, retry_in_ms = wait.as_millis() as u64, next_attempt_at = %next,
                "Redis is not reachable; not ready, retrying (logged on attempts 1, 2, 4, 8, ...)");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Ok(_) = stop.wait_for(|s| *s) => return Err(ConnectError::Stopped),
        }
    }
}

/// How one round of checks ended, if not well.
enum Attempt {
    Refused(Refusal),
    /// Worth another try; the text says what happened (`cannot connect: …`).
    Transient(String),
}

/// One connection and every probe on it.
async fn attempt_once(redis: &Redis, plan: &Plan<'_>) -> Result<(), Attempt> {
    let mut conn = match redis.connection(ATTEMPT_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return Err(judge(redis, &e, "connect").await),
    };
    for p in probes(plan) {
        let r = tokio::time::timeout(ATTEMPT_TIMEOUT, p.cmd.query_async::<Value>(&mut conn)).await;
        match r {
            Err(_) => return Err(Attempt::Transient(format!("{} not answered within {ATTEMPT_TIMEOUT:?}", p.what))),
            Ok(Ok(v)) => check_answer(&p, &v)?,
            Ok(Err(e)) => expected_error(redis, &p, &e).await?,
        }
    }
    Ok(())
}

/// A probe: a command and what it is for (named in messages).
struct Probe {
    what: String,
    cmd: redis::Cmd,
    /// `COMMAND INFO`: a nil entry means the command does not exist.
    module: bool,
}

fn probe(what: impl Into<String>, args: &[&str]) -> Probe {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    Probe { what: what.into(), cmd, module: false }
}

/// Every probe, in the order of the table in the module header.
fn probes(plan: &Plan<'_>) -> Vec<Probe> {
    let s = plan.stream;
    let (k, g, c, dead) = (s.key.as_str(), s.group.as_str(), s.consumer.as_str(), s.dead_letter_key.as_str());
    let mut v = vec![
        probe("PING", &["PING"]),
        probe(format!("XGROUP CREATE on {k}"), &["XGROUP", "CREATE", k, PROBE_GROUP, "x", "MKSTREAM"]),
        probe(format!("XREADGROUP on {k}"), &["XREADGROUP", "GROUP", g, c, "COUNT", "1", "STREAMS", k, "x"]),
        probe(format!("XAUTOCLAIM on {k}"), &["XAUTOCLAIM", k, g, c, "x", "0-0", "JUSTID"]),
        probe(format!("XCLAIM on {k}"), &["XCLAIM", k, g, c, "x", "0-0", "JUSTID"]),
        probe(format!("XACK on {k}"), &["XACK", k, g, "0-0"]),
        probe(format!("XRANGE on {k}"), &["XRANGE", k, "x", "x"]),
        probe(format!("XINFO GROUPS on {k}"), &["XINFO", "GROUPS", k]),
        probe(format!("XADD on {k}"), &["XADD", k, "0-0", "r", "x"]),
        probe(format!("XADD on {dead}"), &["XADD", dead, "0-0", "r", "x"]),
        probe("SET on vcon_otel:done:*", &["SET", PROBE_MARKER, "1", "XX", "EX", "1"]),
        probe("GET on vcon_otel:done:*", &["GET", PROBE_MARKER]),
    ];
    if plan.redis.snapshots {
        v.push(Probe { module: true, ..probe("COMMAND INFO JSON.GET", &["COMMAND", "INFO", "JSON.GET"]) });
        v.push(probe("JSON.GET on vcon_otel:snap:*", &["JSON.GET", PROBE_SNAPSHOT]));
        let index = plan.snapshot_index;
        v.extend([
            probe("DEL on vcon_otel:snap:*", &["DEL", PROBE_SNAPSHOT]),
            probe(format!("ZREM on {index}"), &["ZREM", index, PROBE_SNAPSHOT]),
            probe(format!("ZCARD on {index}"), &["ZCARD", index]),
            probe("HSET on vcon_otel:steps:*", &["HSET", PROBE_STEPS, "0", "x"]),
            probe("HINCRBY on vcon_otel:steps:*", &["HINCRBY", PROBE_STEPS, "0:used", "1"]),
            probe("HGET on vcon_otel:steps:*", &["HGET", PROBE_STEPS, "0"]),
            probe("HGETALL on vcon_otel:steps:*", &["HGETALL", PROBE_STEPS]),
            probe("EXPIRE on vcon_otel:steps:*", &["EXPIRE", PROBE_STEPS, "1"]),
            probe("DEL on vcon_otel:steps:*", &["DEL", PROBE_STEPS]),
        ]);
    }
    v
}

/// A successful answer is fine, except `COMMAND INFO` saying the command does not exist.
fn check_answer(p: &Probe, v: &Value) -> Result<(), Attempt> {
    let missing = matches!(v, Value::Array(entries) if entries.first().is_none_or(|e| matches!(e, Value::Nil)));
    if p.module && missing {
        return Err(Attempt::Refused(Refusal::new(
            Class::Module,
            "redis.snapshots: the RedisJSON module is not loaded: the server does not know JSON.GET, which reads compliance snapshots (fix: load RedisJSON (loadmodule), or set redis.snapshots: false if no producer sends snapshots)",
        )));
    }
    Ok(())
}

/// A probe's error: the refusal it is, a transient failure, or the expected answer of a command
/// that passed the ACL check (then `Ok`).
async fn expected_error(redis: &Redis, p: &Probe, e: &redis::RedisError) -> Result<(), Attempt> {
    if e.code() == Some("WRONGTYPE") {
        return Err(Attempt::Refused(Refusal::new(
            Class::Config,
            format!("stream.key: {}: the key exists and is not a stream: the server said {e} (fix: name another key in stream.key, or remove that one)", p.what),
        )));
    }
    match judge(redis, e, &format!("run {}", p.what)).await {
        Attempt::Refused(r) => Err(Attempt::Refused(r)),
        Attempt::Transient(t) if transient(e) => Err(Attempt::Transient(t)),
        Attempt::Transient(_) => Ok(()),
    }
}

/// Whether an error is worth another attempt (I/O, timeouts, a server busy loading).
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// A refusal (with the server's own words for a refused password), else transient.
async fn judge(redis: &Redis, e: &redis::RedisError, doing: &str) -> Attempt {
    match redis.refusal_heard(e, doing).await {
        Some(r) => Attempt::Refused(r),
        // A TLS client talking to a plain port gets no answer at all.
        None if redis.is_tls() && e.is_timeout() => Attempt::Transient(format!("cannot {doing}: {e} (if that port is not a tls-port, use redis://)")),
        None => Attempt::Transient(format!("cannot {doing}: {e}")),
    }
}
