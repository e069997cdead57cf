//! TLS for the `postgres` tracer, with libpq's `sslmode` meanings, over rustls (ring provider).
//!
//! | sslmode | encryption | server certificate |
//! |---|---|---|
//! | `disable` (default) | none | — |
//! | `prefer` | TLS when the server offers it, else plain | not checked — unless a CA is given, then as `verify-ca` |
//! | `require` | TLS | not checked — unless a CA is given, then checked as `verify-ca` (as libpq does) |
//! | `verify-ca` | TLS | chain to the CA, host name not checked |
//! | `verify-full` | TLS | chain to the CA and host name (subjectAltName) |
//!
//! The CA is `ssl_ca_file` (PEM), or the system's roots when it is not given or is `system`
//! (libpq 16's `sslrootcert=system`). `sslmode` and `sslrootcert` may also be given in a
//! `postgres://` URL's query, so a managed service's connection string works as it is; giving one
//! setting in both places with different values is an error. A key=value connection string must
//! take them from the options.
//!
//! [`classify_connect`] sorts connection failures: a refused certificate, a TLS handshake the
//! server rejects, a server without TLS, authentication and `pg_hba.conf` refusals are
//! **permanent** (they do not heal by waiting); refused connections, resets and timeouts are
//! retryable. Their reasons (`vcon_otel_tracer_failures_total{reason}`): `tls` for the certificate,
//! the handshake and a server without TLS, `auth` for SQLSTATE class 28 (authentication, `pg_hba.conf`).

use crate::retry::{Failure, Reason};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!("sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the connection goes and how: the parsed connection settings and the TLS connector.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    /// The CA file named in messages ("system roots" when none).
    pub ca: String,
    /// None for `disable`.
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// The sslmode, CA and the URL without its sslmode/sslrootcert, after the rules of the module
/// header (no I/O).
fn settings(url: &str, mode_opt: Option<SslMode>, ca_opt: Option<&Path>) -> Result<(String, SslMode, Option<PathBuf>), String> {
    let (rest, url_mode, url_ca) = split_url_params(url)?;
    let mode = match (mode_opt, url_mode.as_deref().map(SslMode::parse).transpose()?) {
        (Some(a), Some(b)) if a != b => return Err(format!("sslmode is {} but the url says sslmode={}: give it in one place", a.as_str(), b.as_str())),
        (a, b) => a.or(b),
    };
    let ca: Option<PathBuf> = match (ca_opt, url_ca.as_deref()) {
        (Some(a), Some(b)) if a != Path::new(b) => return Err(format!("ssl_ca_file is {} but the url says sslrootcert={b}: give it in one place", a.display())),
        (a, b) => a.map(Path::to_path_buf).or_else(|| b.map(PathBuf::from)),
    };
    let mode = match (mode, &ca) {
        (Some(SslMode::Disable), Some(_)) => return Err("ssl_ca_file (sslrootcert) is set but sslmode is disable: set sslmode verify-full".into()),
        (None, Some(_)) => return Err("ssl_ca_file (sslrootcert) is set without sslmode: set sslmode verify-full (or verify-ca)".into()),
        (m, _) => m.unwrap_or(SslMode::Disable),
    };
    Ok((rest, mode, ca))
}

/// Checks the settings without I/O (the URL is parsed, the CA file is not read).
pub fn check(url: &str, mode_opt: Option<SslMode>, ca_opt: Option<&Path>) -> Result<(), String> {
    let (rest, _, _) = settings(url, mode_opt, ca_opt)?;
    rest.parse::<tokio_postgres::Config>().map(|_| ()).map_err(|e| format!("url: {e}"))
}

/// Builds the target from the tracer's `url` and its `sslmode` / `ssl_ca_file` options (reads
/// the CA file or the system roots).
pub fn target(url: &str, mode_opt: Option<SslMode>, ca_opt: Option<&Path>) -> Result<Target, String> {
    let (rest, mode, ca) = settings(url, mode_opt, ca_opt)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("url: {e}"))?;
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let ca_name = ca.as_ref().filter(|p| p.as_os_str() != "system").map_or("the system roots".to_string(), |p| p.display().to_string());
    let tls = if mode == SslMode::Disable { None } else { Some(tokio_postgres_rustls::MakeRustlsConnect::new(client_config(mode, ca.as_deref())?)) };
    Ok(Target { config, mode, ca: ca_name, tls })
}

/// Removes `sslmode` and `sslrootcert` from a `postgres://` URL's query (tokio-postgres knows
/// neither verify-* nor sslrootcert); refuses them in a key=value string.
fn split_url_params(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        if url.split_whitespace().any(|kv| kv.starts_with("sslmode") || kv.starts_with("sslrootcert")) {
            return Err("url: sslmode/sslrootcert in a key=value connection string: use the options sslmode and ssl_ca_file, or a postgres:// URL".into());
        }
        return Ok((url.to_string(), None, None));
    }
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), None, None)) };
    let (mut mode, mut ca, mut keep) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(percent_decode(v)),
            "sslrootcert" => ca = Some(percent_decode(v)),
            _ => keep.push(pair),
        }
    }
    let rest = if keep.is_empty() { base.to_string() } else { format!("{base}?{}", keep.join("&")) };
    Ok((rest, mode, ca))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match ca.filter(|p| p.as_os_str() != "system") {
        Some(p) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("ssl_ca_file {}: cannot read PEM certificates: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!("ssl_ca_file {}: no certificate in it", p.display()));
            }
            for c in certs {
                store.add(c).map_err(|e| format!("ssl_ca_file {}: {e}", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err("no system root certificates found: set ssl_ca_file to the CA that signed the server's certificate".into());
            }
        }
    }
    Ok(store)
}

fn client_config(mode: SslMode, ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    crate::tls::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let check_chain = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) || ca.is_some();
    let verifier: Arc<dyn ServerCertVerifier> = if check_chain {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider).build().map_err(|e| e.to_string())?;
        if mode == SslMode::VerifyFull {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        }
    } else {
        Arc::new(Unchecked(provider))
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// verify-ca (and require/prefer with a CA): the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(&self, ee: &CertificateDer<'_>, im: &[CertificateDer<'_>], name: &ServerName<'_>, ocsp: &[u8], now: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(ee, im, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// prefer / require without a CA: any certificate (as libpq), but the handshake signatures are
/// still verified, so the session is bound to the certificate the server showed.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What to change for a TLS failure, naming the option.
fn tls_fix(r: &rustls::Error, ca: &str) -> String {
    use CertificateError as C;
    match r {
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host in url: connect by a name or IP in its subjectAltName, or use sslmode verify-ca".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is outside its validity period (renew it, or check this host's clock)".into()
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate is not signed by a CA in {ca}: set ssl_ca_file (or sslrootcert in url) to the CA that signed it")
        }
        _ => "the TLS handshake failed: check the server's ssl settings (ssl_min_protocol_version, certificates)".into(),
    }
}

/// Sorts a failure to connect (see the module header); the message names the option to fix.
pub fn classify_connect(e: &tokio_postgres::Error, t: &Target) -> Failure {
    let mode = t.mode.as_str();
    let permanent = |reason: Reason, fix: String| Failure::permanent(reason, format!("connect to PostgreSQL (sslmode {mode}): {e}: {fix}"));
    if let Some(r) = crate::tls::rustls_cause(e) {
        return permanent(Reason::Tls, format!("{r}: {}", tls_fix(r, &t.ca)));
    }
    // tokio-postgres reports this one only as text (its error kinds are private).
    let text = e.to_string();
    if text.contains("server does not support TLS") {
        return permanent(Reason::Tls, "the server does not accept TLS (ssl = off): enable ssl on the server, or use sslmode prefer/disable".into());
    }
    if let Some(db) = e.as_db_error() {
        if db.code().code().starts_with("28") {
            let fix = if db.message().contains("no encryption") {
                "the server accepts this user only over TLS: set sslmode verify-full (and ssl_ca_file)".to_string()
            } else {
                "check the user, password and database in url (or url_env), and the server's pg_hba.conf".to_string()
            };
            return permanent(Reason::Auth, fix);
        }
    }
    super::classify(e, "connect to PostgreSQL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_from_the_url_query_and_removed() {
        let (rest, mode, ca) = split_url_params("postgres://u:p@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!((rest.as_str(), mode.as_deref(), ca.as_deref()), ("postgres://u:p@h:5432/db?application_name=x", Some("verify-full"), Some("/etc/ca.pem")));
        assert_eq!(split_url_params("postgres://h/db?sslmode=require").unwrap().0, "postgres://h/db");
        assert!(split_url_params("host=h sslmode=verify-full").unwrap_err().contains("use the options sslmode and ssl_ca_file"));
    }

    #[test]
    fn conflicting_or_incomplete_tls_settings_are_refused_with_the_option_named() {
        let e = |url: &str, m: Option<SslMode>, ca: Option<&str>| target(url, m, ca.map(Path::new)).err().unwrap_or_default();
        assert!(e("postgres://h/db?sslmode=require", Some(SslMode::VerifyFull), None).contains("sslmode is verify-full but the url says sslmode=require"));
        assert!(e("postgres://h/db", None, Some("/x.pem")).contains("ssl_ca_file (sslrootcert) is set without sslmode"));
        assert!(e("postgres://h/db?sslmode=disable", None, Some("/x.pem")).contains("sslmode is disable"));
        assert!(e("postgres://h/db?sslrootcert=/a.pem", Some(SslMode::VerifyCa), Some("/b.pem")).contains("give it in one place"));
        assert!(e("postgres://h/db", Some(SslMode::VerifyFull), Some("/nonexistent/ca.pem")).contains("ssl_ca_file /nonexistent/ca.pem: cannot read"));
        assert!(e("postgres://h/db?sslmode=verify_full", None, None).contains("is not one of"));
        let t = target("postgres://h/db", None, None).unwrap();
        assert!(t.mode == SslMode::Disable && t.tls.is_none());
        assert!(target("postgres://h/db", Some(SslMode::Require), None).unwrap().tls.is_some());
    }
}
