//! Redis connections. [`Redis::open`] only parses (no I/O); [`Redis::manager`] connects, retrying
//! transient failures (refused, timed out, loading) with backoff, and returns at once on permanent
//! ones (wrong password, a command refused by an ACL, a bad URL), which no retry can fix.
//! Connections reconnect by themselves afterwards (`ConnectionManager`).

use crate::retry::{self, Attempts, Failure, Policy, Reason};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::ErrorKind;
use std::time::Duration;
use tokio::sync::watch;

/// Why no connection could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The server or the URL says no; the message names the key to fix.
    #[error("{0}")]
    Permanent(String),
    /// Shutdown began before a connection was made.
    #[error("stopped before Redis could be reached")]
    Stopped,
}

/// A Redis server the bridge talks to.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    /// Where the URL came from (`redis.url`), for messages.
    key: &'static str,
    shown: String,
}

const CONNECT_RETRY: Policy = Policy::forever(Duration::from_millis(200), Duration::from_secs(5));

impl Redis {
    /// Parses `url`; no I/O.
    pub fn open(url: &str, key: &'static str) -> Result<Redis, ConnectError> {
        let client = redis::Client::open(url).map_err(|e| ConnectError::Permanent(format!("{key}: {e} (hint: redis://[user:password@]host:6379[/db])")))?;
        Ok(Redis { client, key, shown: redact(url) })
    }

    /// The client (for a connection of someone else's, e.g. the health probe's).
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// A connection whose commands time out after `response_timeout` (blocking readers need more
    /// than their block time). Retries transient failures until `stop`.
    pub async fn manager(&self, response_timeout: Duration, stop: &mut watch::Receiver<bool>) -> Result<ConnectionManager, ConnectError> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_max_delay(Duration::from_secs(5));
        let mut attempts = Attempts::new(CONNECT_RETRY);
        let mut log = |attempt: u32, f: &Failure, wait: Duration| {
            if retry::worth_logging(attempt) {
                tracing::warn!(redis = %self.shown, attempt, error = %f, retry_ms = wait.as_millis() as u64, "cannot connect to Redis; retrying");
            }
        };
        let out = loop {
            let r = self.client.get_connection_manager_with_config(config.clone()).await.map_err(|e| self.classify(&e));
            if let Some(o) = attempts.judge(r, stop, &mut log).await {
                break o;
            }
        };
        match out {
            retry::Outcome::Done { value, .. } => Ok(value),
            retry::Outcome::GaveUp { failure, .. } => Err(ConnectError::Permanent(failure.to_string())),
            retry::Outcome::Stopped { .. } => Err(ConnectError::Stopped),
        }
    }

    /// Classifies a connection error by its kind.
    pub fn classify(&self, e: &redis::RedisError) -> Failure {
        let key = self.key;
        let shown = &self.shown;
        match e.kind() {
            ErrorKind::AuthenticationFailed => Failure::permanent(
                Reason::Rejected,
                format!("{key}: {shown} refused the credentials: {e} (hint: check the user and password in {key} or its password source)"),
            ),
            ErrorKind::InvalidClientConfig => Failure::permanent(Reason::Rejected, format!("{key}: {shown}: {e}")),
            ErrorKind::Server(redis::ServerErrorKind::NoPerm) => Failure::permanent(
                Reason::Rejected,
                format!("{key}: {shown}: a command was refused by the server's ACL: {e} (hint: grant the rules in docs/operations.md)"),
            ),
            _ => Failure::retryable(Reason::Transport, format!("{shown}: {e}")),
        }
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(super::redact("redis://bridge:s3cret@r:6379/0"), "redis://bridge:***@r:6379/0");
        assert_eq!(super::redact("rediss://:s3cret@r:6380"), "rediss://:***@r:6380");
        assert_eq!(super::redact("redis://r:6379"), "redis://r:6379");
    }
}
