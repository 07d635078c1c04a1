//! Caller identity: who is asking. An API key (`Authorization: Bearer <key>`, what Graph
//! SDKs send; [`api_key`]), a verified client certificate ([`mtls`]), or a JWT from an issuer
//! the policy trusts (`Authorization: Bearer <token>`; [`jwt`]). Exactly one per request.
//! [`stated`] reads the person and the reason a request is made for.

pub mod api_key;
pub mod jwt;
pub mod mtls;
pub mod stated;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::policy::Policy;
pub use api_key::api_key_sha256;
pub use jwt::{TokenIssuers, TokenRefusal, Verified};
pub use mtls::PeerCertificate;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer API key.
    ApiKey,
    /// A client certificate on a mutual-TLS connection.
    Mtls,
    /// A bearer JWT from a trusted issuer.
    Jwt,
}

impl AuthMethod {
    /// Name recorded in audit and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Jwt => "jwt",
        }
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

/// A caller, and what its token said when it presented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The caller.
    pub id: CallerId,
    /// The verified token (issuer, subject, fingerprint, delegated user), for JWT callers.
    pub token: Option<Verified>,
}

/// Why a request carries no usable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error(
        "the request carries no credentials: send 'Authorization: Bearer <api key or token>' or a client certificate"
    )]
    Missing,
    /// Not a bearer credential, or several of them.
    #[error("the Authorization header must be a single 'Bearer <api key or token>'")]
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
    /// A certificate and a bearer credential: a request carries exactly one identity.
    #[error(
        "the request carries both a client certificate and an Authorization header; send exactly one"
    )]
    Ambiguous,
    /// A token that does not verify or names no caller.
    #[error(transparent)]
    Token(#[from] TokenRefusal),
}

impl AuthError {
    /// The `WWW-Authenticate` challenge for this refusal (RFC 6750: `invalid_token` for a
    /// token that was presented and refused).
    pub fn challenge(self) -> &'static str {
        match self {
            AuthError::Token(_) => r#"Bearer realm="graphgate", error="invalid_token""#,
            _ => r#"Bearer realm="graphgate""#,
        }
    }
}

/// What a request presents to prove who it is, not yet checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'r> {
    /// A bearer value that is not shaped like a JWT.
    ApiKey(&'r str),
    /// A verified client certificate.
    Certificate(&'r PeerCertificate),
    /// A bearer JWT.
    Token(&'r str),
}

/// The one credential a request presents: one `Authorization: Bearer` value (a JWT if it
/// is shaped like one, an API key otherwise) or a client certificate, never both.
pub fn credential<'r>(
    headers: &'r HeaderMap,
    peer: Option<&'r PeerCertificate>,
) -> Result<Credential<'r>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = match (header, peer) {
        (Some(_), Some(_)) => return Err(AuthError::Ambiguous),
        (None, None) => return Err(AuthError::Missing),
        (None, Some(cert)) => return Ok(Credential::Certificate(cert)),
        (Some(value), None) => value.to_str().map_err(|_| AuthError::Malformed)?,
    };
    let (scheme, secret) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(if jwt::looks_like_jwt(secret) {
        Credential::Token(secret)
    } else {
        Credential::ApiKey(secret)
    })
}

/// Identifies the caller of a request from its headers and its connection's certificate.
/// A token is verified against `issuers`' keys (fetched if needed and allowed).
pub async fn authenticate(
    policy: &Policy,
    issuers: &TokenIssuers,
    headers: &HeaderMap,
    peer: Option<&PeerCertificate>,
) -> Result<Authenticated, AuthError> {
    let plain = |id| Authenticated { id, token: None };
    match credential(headers, peer)? {
        Credential::ApiKey(key) => api_key::caller(policy, key).map(plain),
        Credential::Certificate(cert) => mtls::caller(policy, cert).map(plain),
        Credential::Token(token) => {
            let verified = jwt::authenticate(policy, issuers, token, jwt::unix_now()).await?;
            Ok(Authenticated {
                id: CallerId {
                    index: verified.caller,
                    method: AuthMethod::Jwt,
                },
                token: Some(verified),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The API-key and certificate paths never wait: their future is ready when first polled.
    fn authenticate(
        policy: &Policy,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
    ) -> Result<CallerId, AuthError> {
        let issuers = TokenIssuers::default();
        let mut fut = std::pin::pin!(super::authenticate(policy, &issuers, headers, peer));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => result.map(|a| a.id),
            std::task::Poll::Pending => panic!("an API key or certificate must not wait"),
        }
    }

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
