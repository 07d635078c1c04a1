//! Caller identity: who is asking. Either an API key (`Authorization: Bearer <key>`, what
//! Graph SDKs send; only SHA-256 hashes are kept, looked up by the key's hash and confirmed
//! in constant time) or a verified client certificate (its URI SAN or subject CN). Never both.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::policy::Policy;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer API key.
    ApiKey,
    /// A client certificate on a mutual-TLS connection.
    Mtls,
}

impl AuthMethod {
    /// Name recorded in audit and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Mtls => "mtls",
        }
    }
}

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

/// An authenticated caller: an index into the policy's callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerId {
    /// Index into [`Policy::callers`].
    pub index: usize,
    /// How it authenticated.
    pub method: AuthMethod,
}

/// Why a request carries no usable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error(
        "the request carries no credentials: send 'Authorization: Bearer <api key>' or a client certificate"
    )]
    Missing,
    /// Not a bearer credential, or several of them.
    #[error("the Authorization header must be a single 'Bearer <api key>'")]
    Malformed,
    /// A key no caller has.
    #[error("the API key is not valid")]
    UnknownKey,
    /// A certificate (from a trusted CA) that names no caller.
    #[error("the client certificate does not identify any caller")]
    UnknownCertificate,
    /// A certificate with several subject CNs: which one names the holder is ambiguous.
    #[error(
        "the client certificate holds several subject common names (CN); use a certificate with one CN or a URI SAN"
    )]
    SeveralCommonNames,
    /// Both a certificate and an API key: a request carries exactly one identity.
    #[error("the request carries both a client certificate and an API key; send exactly one")]
    Ambiguous,
}

/// Identifies the caller of a request from its headers and its connection's certificate.
pub fn authenticate(
    policy: &Policy,
    headers: &HeaderMap,
    peer: Option<&PeerCertificate>,
) -> Result<CallerId, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    match (header, peer) {
        (Some(_), Some(_)) => Err(AuthError::Ambiguous),
        (None, None) => Err(AuthError::Missing),
        (None, Some(cert)) => by_certificate(policy, cert),
        (Some(value), None) => {
            by_api_key(policy, value.to_str().map_err(|_| AuthError::Malformed)?)
        }
    }
}

/// A certificate's caller. One with a URI SAN is matched on its URI SANs only: its CN may
/// name another workload (a CA issuing SPIFFE ids need not police CNs). One with several CNs
/// is refused rather than matched on whichever comes first.
fn by_certificate(policy: &Policy, cert: &PeerCertificate) -> Result<CallerId, AuthError> {
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

fn by_api_key(policy: &Policy, header: &str) -> Result<CallerId, AuthError> {
    let (scheme, key) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(AuthError::Malformed);
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    // One hash-map lookup by the digest, whatever the number of callers. Its timing depends
    // on the digest, not on the key: a client cannot choose the bits of a SHA-256 output,
    // and learning how far its digest agrees with a stored one gives no way to a key that
    // hashes to it. The found caller's hash is then compared in full, in constant time, so
    // the answer never rests on the map's own equality test.
    policy
        .api_key_caller(&digest)
        .filter(|&index| {
            policy
                .callers
                .get(index)
                .and_then(|c| c.key_sha256.as_ref())
                .is_some_and(|hash| bool::from(hash.ct_eq(&digest)))
        })
        .map(|index| CallerId {
            index,
            method: AuthMethod::ApiKey,
        })
        .ok_or(AuthError::UnknownKey)
}

/// Hex SHA-256 of an API key: what goes in `api_key_sha256`.
pub fn api_key_sha256(key: &str) -> String {
    crate::policy::hex(&Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy() -> Policy {
        let text = format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{}\"\n  - name: b\n    api_key_sha256: \"{}\"\n  - name: svc\n    mtls:\n      uri_san: spiffe://corp/ns/x/sa/svc\n  - name: legacy\n    mtls:\n      subject_cn: legacy.corp\n",
            api_key_sha256("key-a"),
            api_key_sha256("key-b")
        );
        Policy::from_yaml(&text, "t").unwrap()
    }

    fn auth(value: Option<&str>, peer: Option<&PeerCertificate>) -> Result<CallerId, AuthError> {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        authenticate(&policy(), &h, peer)
    }

    #[test]
    fn keys_map_to_callers() {
        assert_eq!(auth(Some("Bearer key-b"), None).unwrap().index, 1);
        assert_eq!(auth(Some("bearer key-a"), None).unwrap().index, 0);
        assert_eq!(auth(None, None), Err(AuthError::Missing));
        assert_eq!(
            auth(Some("Basic a2V5LWE="), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(auth(Some("Bearer "), None), Err(AuthError::Malformed));
        assert_eq!(auth(Some("Bearer key-c"), None), Err(AuthError::UnknownKey));
    }

    #[test]
    fn certificates_map_to_callers_and_never_combine_with_keys() {
        let spiffe = PeerCertificate {
            uri_sans: vec!["spiffe://corp/ns/x/sa/svc".into()],
            subject_cn: Some("whatever".into()),
            ..Default::default()
        };
        assert_eq!(
            auth(None, Some(&spiffe)),
            Ok(CallerId {
                index: 2,
                method: AuthMethod::Mtls
            })
        );
        let cn = PeerCertificate {
            uri_sans: vec![],
            subject_cn: Some("legacy.corp".into()),
            ..Default::default()
        };
        assert_eq!(auth(None, Some(&cn)).unwrap().index, 3);
        let stranger = PeerCertificate {
            uri_sans: vec!["spiffe://corp/ns/x/sa/other".into()],
            subject_cn: Some("svc".into()),
            ..Default::default()
        };
        assert_eq!(
            auth(None, Some(&stranger)),
            Err(AuthError::UnknownCertificate)
        );
        assert_eq!(
            auth(Some("Bearer key-a"), Some(&spiffe)),
            Err(AuthError::Ambiguous)
        );
    }

    #[test]
    fn certificates_map_to_their_caller_among_many() {
        let mut text = String::from("version: 1\ncallers:\n");
        for i in 0..1_000 {
            text.push_str(&format!(
                "  - name: c{i}\n    mtls:\n      uri_san: spiffe://corp/sa/c{i}\n"
            ));
        }
        // A later caller by CN: a certificate may satisfy both it and a URI-SAN caller.
        text.push_str("  - name: by-cn\n    mtls:\n      subject_cn: host.corp\n");
        let p = Policy::from_yaml(&text, "t").unwrap();
        let cert = |uris: &[&str], cn: Option<&str>| PeerCertificate {
            uri_sans: uris.iter().map(|u| (*u).to_owned()).collect(),
            subject_cn: cn.map(str::to_owned),
            ..Default::default()
        };
        let who = |c: &PeerCertificate| {
            authenticate(&p, &HeaderMap::new(), Some(c)).map(|id| p.callers[id.index].name.clone())
        };
        assert_eq!(
            who(&cert(&["spiffe://corp/sa/c999"], None)),
            Ok("c999".into())
        );
        assert_eq!(who(&cert(&[], Some("host.corp"))), Ok("by-cn".into()));
        assert_eq!(
            who(&cert(&["spiffe://corp/sa/c500"], Some("host.corp"))),
            Ok("c500".into()),
            "a certificate with a URI SAN is matched on it, not on its CN"
        );
        assert_eq!(
            who(&cert(&["spiffe://corp/sa/nobody"], Some("other.corp"))),
            Err(AuthError::UnknownCertificate)
        );
    }

    #[test]
    fn keys_map_to_the_right_caller_among_many() {
        let n = 2_000;
        let mut text = String::from("version: 1\ncallers:\n");
        for i in 0..n {
            if i % 3 == 0 {
                text.push_str(&format!(
                    "  - name: c{i}\n    mtls:\n      subject_cn: c{i}.corp\n"
                ));
            } else {
                text.push_str(&format!(
                    "  - name: c{i}\n    api_key_sha256: \"{}\"\n",
                    api_key_sha256(&format!("key-{i}"))
                ));
            }
        }
        let p = Policy::from_yaml(&text, "t").unwrap();
        for i in 0..n {
            let mut h = HeaderMap::new();
            let value = format!("Bearer key-{i}");
            h.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
            let got = authenticate(&p, &h, None);
            if i % 3 == 0 {
                assert_eq!(got, Err(AuthError::UnknownKey), "c{i} has no key");
            } else {
                assert_eq!(
                    got,
                    Ok(CallerId {
                        index: i,
                        method: AuthMethod::ApiKey
                    }),
                    "c{i}"
                );
                assert_eq!(p.callers[i].name, format!("c{i}"));
            }
        }
        let cn = PeerCertificate {
            uri_sans: vec![],
            subject_cn: Some("c1500.corp".into()),
            ..Default::default()
        };
        assert_eq!(
            authenticate(&p, &HeaderMap::new(), Some(&cn))
                .unwrap()
                .index,
            1500
        );
    }

    #[test]
    fn a_uri_san_certificate_never_matches_on_its_cn_and_several_cns_match_nobody() {
        let named_elsewhere = PeerCertificate {
            uri_sans: vec!["spiffe://corp/ns/x/sa/unknown".into()],
            subject_cn: Some("legacy.corp".into()),
            ..Default::default()
        };
        assert_eq!(
            auth(None, Some(&named_elsewhere)),
            Err(AuthError::UnknownCertificate),
            "its CN names the CN caller 'legacy', but its URI SAN names another workload"
        );
        let several = PeerCertificate {
            subject_cn: Some("legacy.corp".into()),
            several_cns: true,
            ..Default::default()
        };
        assert_eq!(
            auth(None, Some(&several)),
            Err(AuthError::SeveralCommonNames)
        );
    }

    #[test]
    fn a_certificate_identity_given_to_two_callers_is_refused_at_load() {
        let text = "version: 1\ncallers:\n  - name: first\n    mtls:\n      uri_san: spiffe://corp/sa/x\n  - name: second\n    mtls:\n      uri_san: spiffe://corp/sa/x\n";
        let err = Policy::from_yaml(text, "t").unwrap_err().to_string();
        assert!(err.contains("also caller \"first\"'s"), "{err}");
    }

    #[test]
    fn a_key_hash_given_to_two_callers_is_refused_at_load() {
        let text = format!(
            "version: 1\ncallers:\n  - name: first\n    api_key_sha256: \"{0}\"\n  - name: second\n    api_key_sha256: \"{0}\"\n",
            api_key_sha256("shared")
        );
        let err = Policy::from_yaml(&text, "t").unwrap_err().to_string();
        assert!(err.contains("also caller \"first\"'s"), "{err}");
        assert!(
            err.contains("t:6:"),
            "names the second caller's key line: {err}"
        );
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer key-a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer key-b"));
        assert_eq!(authenticate(&policy(), &h, None), Err(AuthError::Malformed));
    }

    #[test]
    fn reads_uri_san_and_cn_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["svc.corp".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://corp/ns/x/sa/svc".try_into().unwrap(),
        ));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "svc-cn");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let peer = PeerCertificate::from_der(cert.der()).unwrap();
        assert_eq!(peer.uri_sans, vec!["spiffe://corp/ns/x/sa/svc"]);
        assert_eq!(peer.subject_cn.as_deref(), Some("svc-cn"));
    }
}
