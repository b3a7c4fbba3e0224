//! TLS to `https://` workers, for the gateway's own calls (health checks, discovery, metrics
//! scrapes, the large-body forwarding path). Pingora's connector checks the proxied requests
//! with the same roots: `[upstream] ca_file` when set, else the system's (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` honoured), so both paths accept and refuse the same workers.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ConfigError;

const CA_FILE: &str = "upstream.ca_file";

/// The roots worker certificates are checked against. A `ca_file` that cannot be read, holds
/// anything but certificates, or holds none is an error naming the field and the file —
/// checked here because Pingora's connector would panic on it.
pub fn roots(ca_file: Option<&str>) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            pingora::tls::load_ca_file_into_store(path, &mut store)
                .map_err(|e| ConfigError::new(CA_FILE, format!("{path}: {e}")))?;
            if store.is_empty() {
                return Err(ConfigError::new(
                    CA_FILE,
                    format!("{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
                ));
            }
        }
        None => match pingora::tls::load_native_certs() {
            Ok(certs) => {
                store.add_parsable_certificates(certs);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the system's CA certificates"),
        },
    }
    Ok(store)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configs for the gateway's own calls: one that verifies against `roots`, one for
/// workers configured with `insecure_skip_verify` (any certificate accepted).
pub fn client_configs(roots: RootCertStore) -> (ClientConfig, ClientConfig) {
    let builder = || {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
    };
    let verified = builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let insecure = builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    (verified, insecure)
}

/// Accepts any server certificate, still checking that the handshake is signed by its key.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_names_the_field_and_the_file() {
        let dir = std::env::temp_dir().join(format!("sagellm-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        for path in [&empty, &junk, &missing] {
            let e = roots(Some(path.to_str().unwrap())).unwrap_err();
            assert_eq!(e.field, CA_FILE);
            assert!(e.message.contains(path.to_str().unwrap()), "{}", e.message);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
