//! Redis connections, made in one place. [`Redis::open`] builds the client from [`Options`] (the
//! URL, the password from wherever it came, TLS files) and reads those files; it connects to nothing.
//! Every connection the bridge makes comes from that client, so the same TLS settings and
//! credentials apply to all of them: the pipeline's, the hosted tracers', the HTTP ingest's and the
//! health probe's. `CLIENT SETINFO` is never sent, so an ACL user needs no rule for it.
//!
//! Failures are judged by type, never by message text ([`Redis::refusal`]): a refused password
//! (`AuthenticationFailed`, `NOAUTH`, `WRONGPASS`), a command refused by an ACL (`NOPERM`), a TLS
//! failure (a `rustls::Error` anywhere in the error's sources: certificate check, handshake, an
//! alert from the server) and a client-side configuration error are [`Refusal`]s, which no retry
//! can fix; everything else (refused, reset, timed out, loading) is transient. [`Redis::manager`]
//! retries transient failures with backoff and returns at once on a refusal. Connections reconnect
//! by themselves afterwards (`ConnectionManager`).

use crate::retry::{self, Attempts, Failure, Policy, Reason};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// How to reach the server: `redis.url`, the password's source, `redis.tls`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub url: String,
    /// Replaces the URL's password (for the URL's user, else `default`).
    pub password: Option<Password>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// A password and where it came from (named in messages; the value never is).
#[derive(Clone)]
pub struct Password {
    pub value: String,
    /// E.g. `redis.password_env (VCON_OTEL_REDIS_PASSWORD)`.
    pub from: String,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password(*** from {})", self.from)
    }
}

/// The kinds of permanent failure; each has its exit code (`vcon-otel run --help`, README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The settings cannot work (unreadable file, bad PEM, bad URL, a key of the wrong type): 78.
    Config,
    /// The server refused the credentials, or wants some and got none: 77.
    Auth,
    /// The server's ACL refused a command or key the bridge uses: 77.
    Acl,
    /// The TLS handshake or a certificate check failed: 76.
    Tls,
    /// A module the configuration needs (RedisJSON) is not loaded: 69.
    Module,
    /// Not reachable within the time allowed (`check-config --connect` only): 75.
    Unreachable,
}

impl Class {
    /// The process exit code for this class (sysexits.h).
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Config => 78,
            Class::Auth | Class::Acl => 77,
            Class::Tls => 76,
            Class::Unreachable => 75,
            Class::Module => 69,
        }
    }
}

/// A failure no retry fixes: its class and a message naming the config key, what the server said
/// and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub class: Class,
    pub message: String,
}

impl Refusal {
    pub fn new(class: Class, message: impl Into<String>) -> Refusal {
        Refusal { class, message: message.into() }
    }
}

/// Why no connection could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Refused(Refusal),
    /// Shutdown began before a connection was made.
    #[error("stopped before Redis could be reached")]
    Stopped,
}

/// A Redis server the bridge talks to.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    /// The same server without credentials, to hear what it says to `AUTH` (see [`Redis::auth_reply`]).
    bare: redis::Client,
    shown: String,
    user: Option<String>,
    password: Option<Password>,
    tls: bool,
    opts: Options,
}

const CONNECT_RETRY: Policy = Policy::forever(Duration::from_millis(200), Duration::from_secs(5));

fn config_refusal(message: String) -> Refusal {
    Refusal::new(Class::Config, message)
}

impl Redis {
    /// Builds the client; reads the TLS files. No network I/O.
    pub fn open(o: &Options) -> Result<Redis, Refusal> {
        crate::tls::install_crypto_provider();
        let shown = redact(&o.url);
        let info = o.url.as_str().into_connection_info().map_err(|e| config_refusal(format!("redis.url: {shown}: {e} (fix: write redis://[user@]host:6379[/db], or rediss://… for TLS)")))?;
        let (tls, addr) = match info.addr().clone() {
            ConnectionAddr::TcpTls { insecure: true, .. } if !o.insecure_skip_verify => {
                return Err(config_refusal(format!("redis.url: {shown}: the #insecure fragment turns certificate checks off (fix: remove it; redis.tls.insecure_skip_verify: true is the one way to do that)")));
            }
            ConnectionAddr::TcpTls { host, port, .. } => (true, ConnectionAddr::TcpTls { host, port, insecure: o.insecure_skip_verify, tls_params: None }),
            other => (false, other),
        };
        let user = info.redis_settings().username().map(str::to_string);
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        let password = match &o.password {
            Some(p) => {
                settings = settings.set_password(&p.value);
                Some(p.clone())
            }
            None => info.redis_settings().password().map(|v| Password { value: v.to_string(), from: "redis.url".into() }),
        };
        let bare_settings = redis::RedisConnectionInfo::default().set_db(settings.db()).set_skip_set_lib_name();
        let info = info.set_addr(addr).set_redis_settings(settings);
        let bare = info.clone().set_redis_settings(bare_settings);
        let certs = if tls { certificates(o)? } else { None };
        let build = |i: redis::ConnectionInfo| match &certs {
            Some(c) => redis::Client::build_with_tls(i, c.clone()),
            None => redis::Client::open(i),
        };
        let client = build(info).map_err(|e| config_refusal(format!("redis.tls: {e}")))?;
        let bare = build(bare).map_err(|e| config_refusal(format!("redis.tls: {e}")))?;
        Ok(Redis { client, bare, shown, user, password, tls, opts: o.clone() })
    }

    /// The client (for a connection of someone else's, e.g. the health probe's).
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The URL without its password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The ACL user of the URL (`default` when none is named).
    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("default")
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// One connection attempt, bounded by `timeout` (connect, TLS handshake, `AUTH`).
    pub async fn connection(&self, timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let c = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        self.client.get_multiplexed_async_connection_with_config(&c).await
    }

    /// What the server answers to `AUTH` with these credentials, sent on a connection without
    /// them (the client library keeps only "authentication failed"); `None` if that cannot be heard.
    pub async fn auth_reply(&self) -> Option<String> {
        let pw = self.password.as_ref()?;
        let c = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(Duration::from_secs(2))).set_response_timeout(Some(Duration::from_secs(2)));
        let mut conn = self.bare.get_multiplexed_async_connection_with_config(&c).await.ok()?;
        let mut cmd = redis::cmd("AUTH");
        if let Some(u) = &self.user {
            cmd.arg(u);
        }
        match cmd.arg(&pw.value).query_async::<()>(&mut conn).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        }
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
        let mut refused = None;
        let out = loop {
            let r = self.client.get_connection_manager_with_config(config.clone()).await.map_err(|e| {
                refused = self.refusal(&e, "connect");
                self.classify(&e)
            });
            if let Some(o) = attempts.judge(r, stop, &mut log).await {
                break o;
            }
        };
        match out {
            retry::Outcome::Done { value, .. } => Ok(value),
            retry::Outcome::GaveUp { failure, .. } => Err(ConnectError::Refused(refused.unwrap_or_else(|| config_refusal(failure.to_string())))),
            retry::Outcome::Stopped { .. } => Err(ConnectError::Stopped),
        }
    }

    /// Classifies an error as a [`Failure`]: permanent when it is a [`Refusal`], else retryable.
    pub fn classify(&self, e: &redis::RedisError) -> Failure {
        match self.refusal(e, "run a command") {
            Some(r) => Failure::permanent(
                match r.class {
                    Class::Auth => Reason::Auth,
                    Class::Tls => Reason::Tls,
                    _ => Reason::Rejected,
                },
                r.message,
            ),
            None if e.is_timeout() => Failure::retryable(Reason::Timeout, format!("{}: {e}", self.shown)),
            None => Failure::retryable(Reason::Transport, format!("{}: {e}", self.shown)),
        }
    }

    /// The [`Refusal`] `e` amounts to, or `None` when it is transient. `doing` names what failed
    /// (`connect`, `run XAUTOCLAIM on vcon_otel:events`), for the message.
    pub fn refusal(&self, e: &redis::RedisError, doing: &str) -> Option<Refusal> {
        let shown = &self.shown;
        if let Some(t) = crate::tls::rustls_cause(e) {
            return Some(Refusal::new(Class::Tls, self.tls_message(t)));
        }
        if e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS")) {
            return Some(self.auth_refusal(&e.to_string()));
        }
        if e.code() == Some("NOAUTH") {
            return Some(Refusal::new(
                Class::Auth,
                format!("redis.url: {shown} requires a password and none was given: the server said {e} (fix: set redis.password_env or redis.password_file)"),
            ));
        }
        if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoPerm) {
            return Some(Refusal::new(
                Class::Acl,
                format!(
                    "redis.url: the ACL of {shown} does not let user '{}' {doing}: the server said {e} (fix: give the user the rules of config/redis-acl/bridge.acl; docs/operations.md, \"Redis ACL rules\")",
                    self.user()
                ),
            ));
        }
        if e.kind() == ErrorKind::InvalidClientConfig {
            return Some(config_refusal(format!("redis.url: {shown}: {e}")));
        }
        None
    }

    /// As [`Redis::refusal`], but a refused password is reported in the server's own words
    /// ([`Redis::auth_reply`]); for start-up, where one more round trip does not matter.
    pub async fn refusal_heard(&self, e: &redis::RedisError, doing: &str) -> Option<Refusal> {
        if e.kind() == ErrorKind::AuthenticationFailed {
            if let Some(said) = self.auth_reply().await {
                return Some(self.auth_refusal(&format!("the server said {said}")));
            }
        }
        self.refusal(e, doing)
    }

    fn auth_refusal(&self, said: &str) -> Refusal {
        let from = self.password.as_ref().map_or("no password".to_string(), |p| format!("the password from {}", p.from));
        Refusal::new(
            Class::Auth,
            format!("redis.url: {} refused user '{}' with {from}: {said} (fix: correct that password, or the user name in redis.url)", self.shown, self.user()),
        )
    }

    /// What a TLS failure means here, with the key to fix.
    fn tls_message(&self, t: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C};
        let shown = &self.shown;
        let ca = match &self.opts.ca_file {
            Some(p) => format!("the CA in redis.tls.ca_file ({})", p.display()),
            None => "a system root CA (redis.tls.ca_file is not set)".into(),
        };
        let what = match t {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!("the server's certificate is not signed by {ca} (fix: set redis.tls.ca_file to the CA that signed it)"),
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                "the server's certificate does not name the host in redis.url (fix: connect by a name or IP in its subjectAltName)".into()
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. }) => {
                "the server's certificate is expired or not yet valid (fix: renew it, or check this machine's clock)".into()
            }
            rustls::Error::InvalidCertificate(_) => format!("the server's certificate was refused (fix: check it against {ca})"),
            rustls::Error::AlertReceived(A::CertificateRequired | A::HandshakeFailure) if self.opts.cert_file.is_none() => {
                "the server requires a client certificate (tls-auth-clients yes) (fix: set redis.tls.cert_file and redis.tls.key_file)".into()
            }
            rustls::Error::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::CertificateExpired | A::AccessDenied | A::CertificateRequired) => {
                "the server refused the client certificate in redis.tls.cert_file (fix: use a certificate signed by a CA the server trusts, tls-ca-cert-file)".into()
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } | rustls::Error::InappropriateHandshakeMessage { .. } => {
                "no TLS handshake with the server (fix: is the port in redis.url its tls-port? for a plain port use redis://)".into()
            }
            _ => "the TLS handshake failed (fix: check redis.tls and the server's tls-* settings)".into(),
        };
        format!("redis.tls: {shown}: {what}; TLS said: {t}")
    }
}

/// The PEM contents of `redis.tls`, checked to hold what they should; `None` without files.
fn certificates(o: &Options) -> Result<Option<redis::TlsCertificates>, Refusal> {
    let read = |key: &str, p: &Path| std::fs::read(p).map_err(|e| config_refusal(format!("redis.tls.{key}: cannot read {}: {e}", p.display())));
    let certs_in = |key: &str, p: &Path, bytes: &[u8]| -> Result<(), Refusal> {
        let n = CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>().map_err(|e| config_refusal(format!("redis.tls.{key}: {}: {e}", p.display())))?.len();
        if n == 0 {
            return Err(config_refusal(format!("redis.tls.{key}: {} holds no PEM certificate (fix: name a file with -----BEGIN CERTIFICATE-----)", p.display())));
        }
        Ok(())
    };
    let root_cert = match &o.ca_file {
        Some(p) => {
            let b = read("ca_file", p)?;
            certs_in("ca_file", p, &b)?;
            Some(b)
        }
        None => None,
    };
    let client_tls = match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => {
            let (cert, key) = (read("cert_file", c)?, read("key_file", k)?);
            certs_in("cert_file", c, &cert)?;
            PrivateKeyDer::from_pem_slice(&key).map_err(|e| config_refusal(format!("redis.tls.key_file: {} holds no PEM private key: {e}", k.display())))?;
            Some(redis::ClientTlsConfig { client_cert: cert, client_key: key })
        }
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
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
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("redis://bridge:s3cret@r:6379/0"), "redis://bridge:***@r:6379/0");
        assert_eq!(redact("rediss://:s3cret@r:6380"), "rediss://:***@r:6380");
        assert_eq!(redact("redis://r:6379"), "redis://r:6379");
        let p = Password { value: "s3cret".into(), from: "redis.password_env (PW)".into() };
        assert!(!format!("{:?}", Options { password: Some(p), ..Options::default() }).contains("s3cret"));
    }

    #[test]
    fn bad_tls_files_and_insecure_urls_are_configuration_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let o = |ca: &Path| Options { url: "rediss://127.0.0.1:6380".into(), ca_file: Some(ca.to_path_buf()), ..Options::default() };
        let e = Redis::open(&o(&empty)).err().unwrap();
        assert_eq!(e.class, Class::Config);
        assert!(e.message.starts_with("redis.tls.ca_file: ") && e.message.contains("holds no PEM certificate"), "{e}");
        let e = Redis::open(&o(&dir.path().join("missing.pem"))).err().unwrap();
        assert!(e.message.starts_with("redis.tls.ca_file: cannot read "), "{e}");
        let e = Redis::open(&Options { url: "rediss://127.0.0.1:6380/#insecure".into(), ..Options::default() }).err().unwrap();
        assert!(e.message.contains("#insecure fragment"), "{e}");
        let r = Redis::open(&Options { url: "rediss://bridge@127.0.0.1:6380".into(), insecure_skip_verify: true, ..Options::default() }).unwrap();
        assert!(r.is_tls());
        assert_eq!(r.user(), "bridge");
    }
}
