//! Client-certificate revocation (`--client-crl`): the client verifier checks each client
//! certificate against the CRLs in a PEM file, and the file is re-read when it changes, so a
//! revoked workload is refused from its next handshake on without a restart. A changed file
//! that cannot be used keeps the CRLs in force (with an error in the log).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use sha2::{Digest, Sha256};

/// How often the CRL file is checked for changes.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// A CRL file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("client CRL file {path}: {reason}")]
pub struct CrlError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Builds a client verifier for `roots` with the CRLs in `crl_pem` (client certificates
/// optional, so API-key callers can share the port).
pub fn verifier(
    roots: &Arc<RootCertStore>,
    crl_pem: Option<&[u8]>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::clone(roots),
        crate::tls::provider(),
    )
    .allow_unauthenticated();
    let builder = match crl_pem {
        None => builder,
        Some(pem) => {
            let crls = CertificateRevocationListDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if crls.is_empty() {
                return Err("holds no PEM X509 CRL".into());
            }
            // The issuing CA's CRL decides about each client certificate; a certificate from
            // a CA with no CRL in the file is refused (its status is unknown).
            builder.with_crls(crls).only_check_end_entity_revocation()
        }
    };
    builder.build().map_err(|e| e.to_string())
}

/// A client verifier whose CRLs follow a file.
#[derive(Debug)]
pub struct Reloading {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
}

impl Reloading {
    /// A verifier for `roots` with the CRLs of `path`, and a task that reloads them on change
    /// (spawned on the current Tokio runtime; it ends when the verifier is dropped).
    pub fn start(roots: Arc<RootCertStore>, path: PathBuf) -> Result<Arc<Self>, CrlError> {
        let fail = |reason: String| CrlError {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let first = verifier(&roots, Some(&pem)).map_err(fail)?;
        let this = Arc::new(Reloading {
            hints: first.root_hint_subjects().to_vec(),
            current: ArcSwap::from_pointee(first),
        });
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| fail("watching the file needs a Tokio runtime".into()))?;
        let digest = Sha256::digest(&pem).to_vec();
        handle.spawn(watch(Arc::downgrade(&this), roots, path, digest));
        Ok(this)
    }

    fn inner(&self) -> Arc<Arc<dyn ClientCertVerifier>> {
        self.current.load_full()
    }
}

/// Re-reads `path` every [`CHECK_INTERVAL`]; a changed, usable file replaces the CRLs.
async fn watch(
    verifier: Weak<Reloading>,
    roots: Arc<RootCertStore>,
    path: PathBuf,
    mut digest: Vec<u8>,
) {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(verifier) = verifier.upgrade() else {
            return;
        };
        if let Some((new, new_digest)) = reread(&roots, &path, &digest) {
            verifier.current.store(Arc::new(new));
            digest = new_digest;
            tracing::info!(path = %path.display(), "client CRL file reloaded");
        }
    }
}

/// The new verifier when the file's content changed and is usable.
fn reread(
    roots: &Arc<RootCertStore>,
    path: &Path,
    digest: &[u8],
) -> Option<(Arc<dyn ClientCertVerifier>, Vec<u8>)> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the client CRL file; the CRLs in force stay");
            return None;
        }
    };
    let new_digest = Sha256::digest(&pem).to_vec();
    if new_digest == digest {
        return None;
    }
    match verifier(roots, Some(&pem)) {
        Ok(v) => Some((v, new_digest)),
        Err(e) => {
            // Not remembered as seen: the next check tries again (an editor may still be writing).
            tracing::error!(path = %path.display(), error = %e, "the changed client CRL file cannot be used; the CRLs in force stay");
            None
        }
    }
}

impl ClientCertVerifier for Reloading {
    fn offer_client_auth(&self) -> bool {
        self.inner().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, Arc<RootCertStore>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        (rcgen::Issuer::new(params, key), Arc::new(roots))
    }

    fn crl(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, number: u64) -> Vec<u8> {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(issuer)
            .unwrap()
            .pem()
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn only_a_changed_usable_file_replaces_the_crls() {
        let (issuer, roots) = ca();
        let path = std::env::temp_dir().join(format!("graphgate-crl-{}", uuid::Uuid::new_v4()));
        let first = crl(&issuer, 1);
        std::fs::write(&path, &first).unwrap();
        let seen = Sha256::digest(&first).to_vec();
        assert!(reread(&roots, &path, &seen).is_none(), "unchanged");
        std::fs::write(&path, "not a CRL").unwrap();
        assert!(
            reread(&roots, &path, &seen).is_none(),
            "unusable: the old CRLs stay"
        );
        std::fs::write(&path, crl(&issuer, 2)).unwrap();
        let (_, digest) = reread(&roots, &path, &seen).expect("a new CRL");
        assert_ne!(digest, seen);
        std::fs::remove_file(&path).unwrap();
        assert!(
            reread(&roots, &path, &digest).is_none(),
            "a vanished file keeps them too"
        );
    }

    #[test]
    fn a_file_without_crls_is_refused_at_start() {
        let (_, roots) = ca();
        assert!(
            verifier(&roots, Some(b""))
                .unwrap_err()
                .contains("no PEM X509 CRL")
        );
    }
}
