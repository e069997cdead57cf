//! TLS set-up shared by every client the bridge makes (OTLP, the HTTP-speaking hosted tracers):
//! rustls with the ring provider, installed once (reqwest is built without a default provider).

/// Installs rustls' ring provider as the process default, once.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
