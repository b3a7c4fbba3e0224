//! Loading a certificate/key pair, and the resolver that hands the current one to rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

const CERT: &str = "server.tls.cert_file";
const KEY: &str = "server.tls.key_file";

fn pem_error(field: &str, path: &Path, e: pem::Error) -> ConfigError {
    let what = if field == CERT {
        "PEM certificate (-----BEGIN CERTIFICATE-----)"
    } else {
        "PEM private key (-----BEGIN PRIVATE KEY-----)"
    };
    let message = match e {
        pem::Error::NoItemsFound => format!("{}: no {what} in it", path.display()),
        pem::Error::Io(io) => format!("{}: cannot read it: {io}", path.display()),
        other => format!("{}: not valid PEM: {other}", path.display()),
    };
    ConfigError::new(field, message)
}

/// Read and check a certificate chain and its private key: both parse, and the key belongs
/// to the chain's first certificate. Errors name the config field and the file.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| pem_error(CERT, cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(CERT, cert_file, e))?;
    if certs.is_empty() {
        return Err(pem_error(CERT, cert_file, pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_error(KEY, key_file, e))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| ConfigError::new("server.tls", "no TLS crypto provider is installed"))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        ConfigError::new(
            KEY,
            format!(
                "{}: this key does not fit the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            ),
        )
    })
}

/// What a file looked like when last loaded (a change in either starts a reload).
pub(super) type Stamp = Option<(SystemTime, u64)>;

pub(super) fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The certificate served by the public listener; swapped atomically on rotation.
#[derive(Debug)]
pub struct CertStore {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps at the last load attempt (so a broken pair is reported once).
    pub(super) seen: Mutex<(Stamp, Stamp)>,
}

impl CertStore {
    /// Load the pair now (a startup error when it does not load).
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Self, ConfigError> {
        let seen = (stamp(cert_file), stamp(key_file));
        let key = load_pair(cert_file, key_file)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(seen),
        })
    }

    pub(super) fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
