//! TLS plumbing shared by the gateway and the emulator: the one crypto provider (ring),
//! and reading PEM certificates and keys.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider every rustls config here is built with (ring, per the design card).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reading PEM material failed.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read or parsed.
    #[error("cannot read PEM from {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file held no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
}

/// All certificates in a PEM file.
pub fn certs_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let read_err = |reason: String| PemError::Read {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// All certificates in a PEM string.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Read {
            path: "(inline)".into(),
            reason: e.to_string(),
        })
}

/// The first private key in a PEM string.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PemError::Read {
        path: "(inline)".into(),
        reason: e.to_string(),
    })
}
