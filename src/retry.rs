//! Retries, written once: the failure classification every network call returns, the backoff, and
//! the loop that honours a stop signal. The OTLP exporter, every hosted tracer, the stream's reads,
//! acks and dead letters, and Redis connection set-up all go through [`run`].
//!
//! Classification is by type, never by matching message text: a client maps its own errors to
//! [`Failure`] where it sees them (an HTTP status, a gRPC code, a timeout it set itself).
//! - [`Failure::Retryable`]: try again after our own capped exponential backoff (±25 % jitter).
//! - [`Failure::Throttled`]: try again after the server's delay when it gave one, else our backoff.
//! - [`Failure::Permanent`]: sending the same thing again fails again; the caller dead-letters,
//!   counts or reports it, and never loops on it.

use std::time::Duration;
use tokio::sync::watch;

/// Why an attempt failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No answer within the attempt's deadline (ours, or the server's DEADLINE_EXCEEDED).
    Timeout,
    /// The peer answered that it cannot take the request now (HTTP 502/503/504, gRPC UNAVAILABLE, …).
    Unavailable,
    /// The connection could not be made or broke.
    Transport,
    /// The peer asked us to slow down (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    Throttled,
    /// The peer refused the request itself (4xx other than 401/403, a bad answer, an ACL).
    Rejected,
    /// The peer refused our credentials (HTTP 401/403, a wrong password).
    Auth,
    /// The TLS handshake or a certificate check failed.
    Tls,
    /// A local resource failed (a file, the disk).
    Io,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::Transport => "transport",
            Reason::Throttled => "throttled",
            Reason::Rejected => "rejected",
            Reason::Auth => "auth",
            Reason::Tls => "tls",
            Reason::Io => "io",
        }
    }
}

/// A failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("{detail}")]
    Retryable { reason: Reason, detail: String },
    #[error("{detail}")]
    Throttled { delay: Option<Duration>, detail: String },
    #[error("{detail}")]
    Permanent { reason: Reason, detail: String },
}

impl Failure {
    pub fn retryable(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure::Retryable { reason, detail: detail.into() }
    }

    pub fn permanent(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure::Permanent { reason, detail: detail.into() }
    }

    /// The attempt timed out after `after`.
    pub fn timeout(what: &str, after: Duration) -> Failure {
        Failure::Retryable { reason: Reason::Timeout, detail: format!("{what}: no answer within {after:?}") }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Failure::Retryable { reason, .. } | Failure::Permanent { reason, .. } => *reason,
            Failure::Throttled { .. } => Reason::Throttled,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent { .. })
    }

    /// Classifies an HTTP status of a non-OTLP peer: 429 throttled, 408/5xx retryable, 401/403
    /// permanent ([`Reason::Auth`]), other 4xx permanent. `retry_after` is the server's
    /// `Retry-After`, when it sent one.
    pub fn from_http_status(status: u16, retry_after: Option<Duration>, what: &str) -> Failure {
        let detail = format!("{what}: HTTP {status}");
        match status {
            429 => Failure::Throttled { delay: retry_after, detail },
            408 | 500..=599 => match retry_after {
                Some(_) => Failure::Throttled { delay: retry_after, detail },
                None => Failure::Retryable { reason: Reason::Unavailable, detail },
            },
            401 | 403 => Failure::Permanent { reason: Reason::Auth, detail: format!("{detail} (the credentials were refused)") },
            _ => Failure::Permanent { reason: Reason::Rejected, detail },
        }
    }

    /// Classifies a `reqwest` transport error (no HTTP answer): timeouts and connection failures
    /// are retryable.
    pub fn from_reqwest(e: &reqwest::Error, what: &str) -> Failure {
        let reason = if e.is_timeout() { Reason::Timeout } else { Reason::Transport };
        Failure::Retryable { reason, detail: format!("{what}: {e}") }
    }

    /// As [`Failure::from_reqwest`], for a hosted tracer's target: a TLS failure (certificate
    /// refused, handshake failed; a `rustls::Error` among the sources) is permanent, since waiting
    /// does not fix it. (The OTLP exporter keeps retrying those: it holds the pipeline's spans.)
    pub fn from_reqwest_target(e: &reqwest::Error, what: &str) -> Failure {
        match crate::tls::rustls_cause(e) {
            Some(t) => Failure::Permanent { reason: Reason::Tls, detail: format!("{what}: TLS failed: {t}") },
            None => Failure::from_reqwest(e, what),
        }
    }
}

/// `Retry-After` in whole seconds (the HTTP-date form is not used by the peers we talk to).
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).map(Duration::from_secs)
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts before giving up on retryable failures; `None` = until stopped.
    pub max_attempts: Option<u32>,
}

impl Policy {
    /// Retries until stopped, from `initial` up to `max` between attempts.
    pub const fn forever(initial: Duration, max: Duration) -> Policy {
        Policy { initial, max, max_attempts: None }
    }

    /// The wait before attempt `attempt + 1` (0-based), capped, with ±25 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        base.mul_f64(rand::random_range(0.75..1.25)).min(self.max)
    }

    /// The wait after `failure` on attempt `attempt`: the server's delay wins when it gave one.
    pub fn wait_after(&self, attempt: u32, failure: &Failure) -> Duration {
        match failure {
            Failure::Throttled { delay: Some(d), .. } => *d,
            _ => self.backoff(attempt),
        }
    }
}

/// How a retried operation ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It worked on attempt `attempts`.
    Done { value: T, attempts: u32 },
    /// A permanent failure, or the last allowed attempt failed.
    GaveUp { failure: Failure, attempts: u32 },
    /// `stop` turned true before it worked; `last` is the last failure seen, if any.
    Stopped { last: Option<Failure>, attempts: u32 },
}

/// The retry decision for one operation, for loops that make their attempts themselves:
/// `loop { let r = attempt().await; if let Some(o) = attempts.judge(r, stop, log).await { break o } }`.
pub struct Attempts {
    policy: Policy,
    n: u32,
}

impl Attempts {
    pub fn new(policy: Policy) -> Attempts {
        Attempts { policy, n: 0 }
    }

    /// Judges one attempt's result. `Some` ends the operation (it worked, failed for good, or `stop`
    /// turned true — checked before and during the wait); `None` means the wait is over and the
    /// next attempt is due. `on_failure(attempt, failure, wait)` sees every failure that is retried.
    pub async fn judge<T>(
        &mut self,
        result: Result<T, Failure>,
        stop: &mut watch::Receiver<bool>,
        on_failure: &mut impl FnMut(u32, &Failure, Duration),
    ) -> Option<Outcome<T>> {
        self.n = self.n.saturating_add(1);
        let n = self.n;
        let failure = match result {
            Ok(value) => return Some(Outcome::Done { value, attempts: n }),
            Err(f) => f,
        };
        if failure.is_permanent() || self.policy.max_attempts.is_some_and(|m| n >= m) {
            return Some(Outcome::GaveUp { failure, attempts: n });
        }
        if *stop.borrow() {
            return Some(Outcome::Stopped { last: Some(failure), attempts: n });
        }
        let wait = self.policy.wait_after(n - 1, &failure);
        on_failure(n, &failure, wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => None,
            _ = stop.wait_for(|s| *s) => Some(Outcome::Stopped { last: Some(failure), attempts: n }),
        }
    }
}

/// Runs `attempt` until it works, fails permanently, runs out of attempts, or `stop` turns true
/// (checked before each wait and during it). `on_failure(attempt_number, failure, wait)` is called
/// for every failure that will be retried (to count and log it); attempts are numbered from 1.
pub async fn run<T, F, Fut>(policy: Policy, stop: &mut watch::Receiver<bool>, mut attempt: F, mut on_failure: impl FnMut(u32, &Failure, Duration)) -> Outcome<T>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut a = Attempts::new(policy);
    loop {
        let r = attempt(a.n + 1).await;
        if let Some(o) = a.judge(r, stop, &mut on_failure).await {
            return o;
        }
    }
}

/// Logs a failure on attempts 1, 2, 4, 8, … only, so an outage of hours writes a few dozen lines.
pub fn worth_logging(attempt: u32) -> bool {
    attempt.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Policy::forever(Duration::from_millis(100), Duration::from_secs(5));
        assert!(p.backoff(0) <= Duration::from_millis(125));
        assert!(p.backoff(3) >= Duration::from_millis(600));
        assert!(p.backoff(30) <= Duration::from_secs(5));
    }

    #[test]
    fn http_statuses_are_classified() {
        let d = Some(Duration::from_secs(2));
        assert_eq!(Failure::from_http_status(429, d, "x"), Failure::Throttled { delay: d, detail: "x: HTTP 429".into() });
        assert_eq!(Failure::from_http_status(503, None, "x").reason(), Reason::Unavailable);
        assert!(Failure::from_http_status(404, None, "x").is_permanent());
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_stops_on_permanent() {
        let (_tx, mut stop) = watch::channel(false);
        let p = Policy { initial: Duration::from_millis(1), max: Duration::from_millis(2), max_attempts: Some(3) };
        let mut seen = 0;
        let out: Outcome<()> = run(p, &mut stop, |_| async { Err(Failure::retryable(Reason::Transport, "down")) }, |_, _, _| seen += 1).await;
        assert!(matches!(out, Outcome::GaveUp { attempts: 3, .. }));
        assert_eq!(seen, 2, "the last failure is not retried");
        let out: Outcome<()> = run(p, &mut stop, |_| async { Err(Failure::permanent(Reason::Rejected, "no")) }, |_, _, _| {}).await;
        assert!(matches!(out, Outcome::GaveUp { attempts: 1, .. }));
    }

    #[tokio::test]
    async fn a_stop_signal_ends_the_wait() {
        let (tx, mut stop) = watch::channel(false);
        let p = Policy::forever(Duration::from_secs(60), Duration::from_secs(60));
        let task = tokio::spawn(async move {
            run::<(), _, _>(p, &mut stop, |_| async { Err(Failure::retryable(Reason::Unavailable, "503")) }, |_, _, _| {}).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(true).unwrap();
        let out = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stopped promptly").unwrap();
        assert!(matches!(out, Outcome::Stopped { attempts: 1, .. }));
    }
}
