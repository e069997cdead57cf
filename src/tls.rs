//! TLS set-up shared by every client the bridge makes (OTLP, Redis, the HTTP-speaking hosted
//! tracers): rustls with the ring provider, installed once (reqwest and redis are built without a
//! default provider). [`rustls_cause`] recognises a TLS failure by its type wherever a client
//! wrapped it, so callers never match message text.

use std::error::Error;
use std::sync::Arc;

/// Installs rustls' ring provider as the process default, once.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The rustls error somewhere in `e`'s source chain, if any. Looks inside `std::io::Error`s (whose
/// own `source()` skips the error they wrap) and shared `Arc<dyn Error>`s (as redis wraps them).
pub fn rustls_cause<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = unwrap_one(err) {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// `err` itself as a rustls error, or the one inside it when it is an `io::Error` or an `Arc`.
fn unwrap_one<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = err.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(shared) = err.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
        let inner: &'a (dyn Error + 'static) = &**shared;
        return unwrap_one(inner);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        let inner: &'a (dyn Error + 'static) = io.get_ref()?;
        return rustls_cause(inner);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_io_and_shared_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        assert_eq!(rustls_cause(&io), Some(&tls));
        let shared: Arc<dyn Error + Send + Sync> = Arc::new(io);
        assert_eq!(rustls_cause(&shared), Some(&tls));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(rustls_cause(&refused), None);
    }
}
