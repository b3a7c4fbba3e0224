//! HTTPS on the public listener (`[server.tls]`): the certificate and key are read from PEM
//! files into a [`CertStore`], which Pingora's rustls acceptor asks for the certificate of
//! every handshake; [`Rotation`] re-reads the files when they change, so a renewed
//! certificate (certbot, cert-manager, a mounted Kubernetes secret) is served to new
//! connections without a restart. A pair that fails to load is a startup error naming the
//! file, and at rotation time a logged error that keeps the old certificate.
//!
//! [`upstream`] holds the other direction: the roots `https://` workers are checked against.

mod certs;
mod rotate;
pub mod upstream;

pub use certs::CertStore;
pub use rotate::Rotation;

use pingora::listeners::tls::TlsSettings;

use crate::config::{ConfigError, TlsConfig};

/// The listener settings for `cfg`, serving the certificate of `store`.
pub fn listener_settings(
    cfg: &TlsConfig,
    store: std::sync::Arc<CertStore>,
) -> Result<TlsSettings, ConfigError> {
    let mut settings = TlsSettings::intermediate(&cfg.cert_file, &cfg.key_file)
        .map_err(|e| ConfigError::new("server.tls", e.to_string()))?;
    settings.set_cert_resolver(store);
    if cfg.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
