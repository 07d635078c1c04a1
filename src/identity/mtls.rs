//! Callers with a client certificate (verified by rustls on an mTLS listener): identified by
//! their URI SANs (a SPIFFE id) or, without one, their subject CN.

use super::{AuthError, AuthMethod, CallerId};
use crate::policy::Policy;

/// What a verified client certificate says about its holder (set per connection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// URI subject-alternative names (SPIFFE ids and the like).
    pub uri_sans: Vec<String>,
    /// The subject's common name (the first, when [`Self::several_cns`]).
    pub subject_cn: Option<String>,
    /// The subject holds more than one common name: such a certificate identifies nobody.
    pub several_cns: bool,
}

impl PeerCertificate {
    /// Reads the identity fields of a DER certificate (already verified by rustls).
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let uri_sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut cns = cert.subject().iter_common_name();
        let subject_cn = cns
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let several_cns = cns.next().is_some();
        Some(PeerCertificate {
            uri_sans,
            subject_cn,
            several_cns,
        })
    }
}

/// A certificate's caller. One with a URI SAN is matched on its URI SANs only: its CN may
/// name another workload (a CA issuing SPIFFE ids need not police CNs). One with several CNs
/// is refused rather than matched on whichever comes first.
pub(super) fn caller(policy: &Policy, cert: &PeerCertificate) -> Result<CallerId, AuthError> {
    if cert.several_cns {
        return Err(AuthError::SeveralCommonNames);
    }
    let cn = match cert.uri_sans.is_empty() {
        true => cert.subject_cn.as_deref(),
        false => None,
    };
    policy
        .mtls_caller(cert.uri_sans.iter().map(String::as_str), cn)
        .map(|index| CallerId {
            index,
            method: AuthMethod::Mtls,
        })
        .ok_or(AuthError::UnknownCertificate)
}
