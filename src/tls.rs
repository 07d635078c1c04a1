//! TLS plumbing shared by the gateway and the emulator: the one crypto provider (ring),
//! and reading PEM certificates and keys; [`client_crl`] checks client certificates against
//! a CRL file.

pub mod client_crl;

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

/// Inbound TLS settings (`--tls-cert`, `--tls-key`, `--client-ca`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: crate::secret::Secret,
    /// PEM CA certificates whose client certificates are accepted; `None` turns mTLS off.
    pub client_ca_pem: Option<String>,
    /// A PEM file of CRLs from those CAs; re-read when it changes (see [`crate::tls::client_crl`]).
    pub client_crl: Option<std::path::PathBuf>,
}

/// The server could not be given TLS.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// PEM material unreadable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// rustls refused it.
    #[error("inbound TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA set is unusable.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// The client CRL file is unusable.
    #[error(transparent)]
    ClientCrl(#[from] crate::tls::client_crl::CrlError),
}

/// A rustls server config: HTTP/2 and HTTP/1.1 by ALPN; client certificates verified against
/// the client CA when one is set (and against the CRL file, when one is set: this needs a
/// Tokio runtime, which watches the file), but optional, so API-key callers can use the same port.
pub fn server_config(tls: &ServerTls) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let certs = certs_from_pem(&tls.cert_pem)?;
    let key = key_from_pem(tls.key_pem.expose())?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certs_from_pem(pem)? {
                roots.add(ca)?;
            }
            let roots = Arc::new(roots);
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                match &tls.client_crl {
                    Some(path) => crate::tls::client_crl::Reloading::start(roots, path.clone())?,
                    None => crate::tls::client_crl::verifier(&roots, None)
                        .map_err(ServerTlsError::ClientCa)?,
                };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
