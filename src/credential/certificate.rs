//! The certificate credential (graph-facts §2b): a PEM file holding the app's certificate
//! (and optionally its chain) and RSA private key, and the client assertion signed with it:
//! PS256 with `x5t#S256` first, RS256 with the SHA-1 `x5t` as the fallback, `aud` the token
//! endpoint, a fresh `jti`, a five-minute lifetime, `x5c` on request.
//!
//! The file is read again for every token request; when its contents change the new
//! certificate is used, and a file that no longer parses keeps the last good one in use.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::entra::{ClientAuth, request_token};
use super::{IssuedToken, TokenError};
use crate::secret::Secret;
use crate::upstream::HttpClient;

/// How long a client assertion is valid (Entra wants at most 10 minutes).
pub const ASSERTION_LIFETIME_SECS: u64 = 300;
/// AADSTS700027: the assertion failed signature validation.
const SIGNATURE_VALIDATION_FAILED: u32 = 700027;

/// The assertion's signature algorithm and thumbprint header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSASSA-PSS with SHA-256 and `x5t#S256` (Entra's current recommendation).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and the SHA-1 `x5t` (the older format).
    Rs256,
}

impl std::str::FromStr for AssertionAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PS256" => Ok(AssertionAlg::Ps256),
            "RS256" => Ok(AssertionAlg::Rs256),
            other => Err(format!(
                "GRAPHGATE_CLIENT_ASSERTION_ALG {other:?}: use PS256 or RS256"
            )),
        }
    }
}

/// A parsed certificate credential. Its key never prints.
pub struct ClientCertificate {
    key: EncodingKey,
    /// base64url SHA-256 of the leaf certificate's DER (`x5t#S256`).
    pub thumbprint_sha256: String,
    /// base64url SHA-1 of the leaf certificate's DER (`x5t`).
    pub thumbprint_sha1: String,
    /// The chain, leaf first, as standard base64 DER (`x5c`).
    chain: Vec<String>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint_sha256", &self.thumbprint_sha256)
            .field("key", &crate::secret::REDACTED)
            .finish()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl ClientCertificate {
    /// Reads and parses a PEM file (certificate(s) and an RSA key, PKCS#8 or PKCS#1).
    pub fn load(path: &Path) -> Result<ClientCertificate, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::from_pem(&pem)
    }

    /// Parses PEM text; errors name what is wrong, never the key.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCertificate, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("unreadable PEM certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no unencrypted private key (PRIVATE KEY or RSA PRIVATE KEY) in the file; \
                 encrypted keys and PKCS#12 are not supported"
                    .to_owned()
            }
            other => format!("unreadable PEM private key: {other}"),
        })?;
        let (pkcs1, public) = rsa_key(&key)?;
        let leaf = certs
            .iter()
            .position(|c| spki_modulus(c).is_some_and(|m| m == public))
            .ok_or_else(|| {
                if certs.is_empty() {
                    "no CERTIFICATE in the file".to_owned()
                } else {
                    "the private key belongs to none of the certificates in the file".to_owned()
                }
            })?;
        let mut ordered = certs.clone();
        let leaf_cert = ordered.remove(leaf);
        ordered.insert(0, leaf_cert);
        let der = ordered[0].as_ref();
        Ok(ClientCertificate {
            key: EncodingKey::from_rsa_der(&pkcs1),
            thumbprint_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
            thumbprint_sha1: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)),
            chain: ordered
                .iter()
                .map(|c| STANDARD.encode(c.as_ref()))
                .collect(),
        })
    }

    /// A client assertion for `client_id` addressed to `token_url`, issued at `now` (Unix s).
    pub fn assertion(
        &self,
        alg: AssertionAlg,
        client_id: &str,
        token_url: &str,
        send_chain: bool,
        now: u64,
    ) -> Result<Secret, TokenError> {
        let mut header = match alg {
            AssertionAlg::Ps256 => {
                let mut h = Header::new(Algorithm::PS256);
                h.x5t_s256 = Some(self.thumbprint_sha256.clone());
                h
            }
            AssertionAlg::Rs256 => {
                let mut h = Header::new(Algorithm::RS256);
                h.x5t = Some(self.thumbprint_sha1.clone());
                h
            }
        };
        header.typ = Some("JWT".into());
        if send_chain {
            header.x5c = Some(self.chain.clone());
        }
        let claims = AssertionClaims {
            aud: token_url,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| TokenError::Credential(format!("signing the client assertion: {e}")))
    }
}

/// The key as PKCS#1 DER (what jsonwebtoken signs with) and its modulus.
fn rsa_key(key: &PrivateKeyDer<'_>) -> Result<(Vec<u8>, Vec<u8>), String> {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = match key {
        PrivateKeyDer::Pkcs1(k) => rsa::PrivateKey::from_pkcs1_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => rsa::PrivateKey::from_pkcs8_der(k.secret_pkcs8_der())
            .map_err(|_| rsa::pkcs1::Error::KeyMalformed),
        _ => {
            return Err(
                "the private key is not RSA: certificate assertions are PS256 or RS256".into(),
            );
        }
    }
    .map_err(|_| "the private key is not a usable RSA key".to_owned())?;
    let der = private
        .to_pkcs1_der()
        .map_err(|_| "the private key cannot be encoded".to_owned())?;
    Ok((der.as_bytes().to_vec(), private.n_bytes().to_vec()))
}

/// The RSA modulus in a certificate's public key, if it has one.
fn spki_modulus(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let public = rsa::PublicKey::from_public_key_der(spki.as_ref()).ok()?;
    Some(public.n_bytes().to_vec())
}

/// The certificate file as the token source uses it: re-read per request, last good kept.
pub(super) struct CertificateFile {
    path: PathBuf,
    send_chain: bool,
    preferred: AssertionAlg,
    /// Set once Entra refused a PS256 assertion's signature: RS256 from then on.
    legacy: AtomicBool,
    current: Mutex<Option<([u8; 32], Arc<ClientCertificate>)>>,
}

impl CertificateFile {
    pub(super) fn new(path: PathBuf, send_chain: bool, preferred: AssertionAlg) -> Self {
        CertificateFile {
            path,
            send_chain,
            preferred,
            legacy: AtomicBool::new(false),
            current: Mutex::new(None),
        }
    }

    /// The certificate now in the file, or the last good one if the file is unusable.
    async fn load(&self) -> Result<Arc<ClientCertificate>, TokenError> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| TokenError::Credential(e.to_string()))?;
        let cached = self.current.lock().ok().and_then(|g| g.clone());
        let pem = match read {
            Ok(pem) => pem,
            Err(e) => return self.keep(cached, format!("cannot read: {e}")),
        };
        let digest: [u8; 32] = Sha256::digest(&pem).into();
        if let Some((d, cert)) = &cached
            && *d == digest
        {
            return Ok(Arc::clone(cert));
        }
        match ClientCertificate::from_pem(&pem) {
            Ok(cert) => {
                let cert = Arc::new(cert);
                tracing::info!(
                    path = %self.path.display(),
                    thumbprint_sha256 = %cert.thumbprint_sha256,
                    rotated = cached.is_some(),
                    "client certificate loaded"
                );
                if let Ok(mut g) = self.current.lock() {
                    *g = Some((digest, Arc::clone(&cert)));
                }
                Ok(cert)
            }
            Err(reason) => self.keep(cached, reason),
        }
    }

    fn keep(
        &self,
        cached: Option<([u8; 32], Arc<ClientCertificate>)>,
        reason: String,
    ) -> Result<Arc<ClientCertificate>, TokenError> {
        match cached {
            Some((_, cert)) => {
                tracing::warn!(path = %self.path.display(), %reason, "certificate file unusable; keeping the last good certificate");
                Ok(cert)
            }
            None => Err(TokenError::Credential(format!(
                "{}: {reason}",
                self.path.display()
            ))),
        }
    }

    /// One token request with a fresh assertion; PS256 refused for its signature is tried
    /// once more as RS256 + `x5t`, which is then kept.
    pub(super) async fn request_token(
        &self,
        http: &HttpClient,
        client_id: &str,
        token_url: &str,
        scope: &str,
    ) -> Result<IssuedToken, TokenError> {
        let cert = self.load().await?;
        let alg = if self.legacy.load(Ordering::Relaxed) {
            AssertionAlg::Rs256
        } else {
            self.preferred
        };
        let now = jsonwebtoken::get_current_timestamp();
        let exchange = |alg| {
            let jwt = cert.assertion(alg, client_id, token_url, self.send_chain, now);
            async move {
                let auth = ClientAuth::Assertion(jwt?);
                request_token(http, client_id, token_url, scope, auth).await
            }
        };
        match exchange(alg).await {
            Err(TokenError::Refused {
                aadsts: Some(SIGNATURE_VALIDATION_FAILED),
                ..
            }) if alg == AssertionAlg::Ps256 => {
                tracing::warn!(
                    "Entra refused the PS256 client assertion's signature; falling back to RS256 with x5t"
                );
                let retried = exchange(AssertionAlg::Rs256).await;
                if retried.is_ok() {
                    self.legacy.store(true, Ordering::Relaxed);
                }
                retried
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphgate_emulator::TestCertificate;

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let mut it = jwt.split('.').map(|p| {
            serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(p).unwrap())
                .unwrap()
        });
        (it.next().unwrap(), it.next().unwrap())
    }

    #[test]
    fn assertions_follow_entra_s_format() {
        let test = TestCertificate::generate("unit").unwrap();
        let cert = ClientCertificate::from_pem(test.combined_pem().as_bytes()).unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE"));
        let url = "https://login.microsoftonline.us/t/oauth2/v2.0/token";
        let a = cert
            .assertion(AssertionAlg::Ps256, "cid", url, false, 1_000)
            .unwrap();
        let (h, c) = parts(a.expose());
        assert_eq!(h["alg"], "PS256");
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["x5t#S256"], cert.thumbprint_sha256.as_str());
        assert!(h.get("x5t").is_none() && h.get("x5c").is_none());
        assert_eq!(c["aud"], url);
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str()),
            (Some("cid"), Some("cid"))
        );
        assert_eq!(c["nbf"], 1_000);
        let lifetime = c["exp"].as_u64().unwrap() - c["nbf"].as_u64().unwrap();
        assert!(lifetime > 0 && lifetime <= 600, "{lifetime}");
        let b = cert
            .assertion(AssertionAlg::Rs256, "cid", url, true, 1_000)
            .unwrap();
        let (h2, c2) = parts(b.expose());
        assert_eq!(h2["alg"], "RS256");
        assert_eq!(h2["x5t"], cert.thumbprint_sha1.as_str());
        assert_eq!(h2["x5c"][0], STANDARD.encode(&test.cert_der));
        assert_ne!(c["jti"], c2["jti"], "jti is unique");
        assert_eq!(cert.thumbprint_sha1.len(), 27, "base64url of 20 bytes");
    }

    #[test]
    fn files_without_a_matching_rsa_key_are_refused_by_name() {
        let a = TestCertificate::generate("a").unwrap();
        let b = TestCertificate::generate("b").unwrap();
        let err = ClientCertificate::from_pem(a.cert_pem.as_bytes()).unwrap_err();
        assert!(err.contains("no unencrypted private key"), "{err}");
        let err = ClientCertificate::from_pem(a.key_pem().as_bytes()).unwrap_err();
        assert_eq!(err, "no CERTIFICATE in the file");
        let mixed = format!("{}{}", a.cert_pem, b.key_pem());
        let err = ClientCertificate::from_pem(mixed.as_bytes()).unwrap_err();
        assert!(err.contains("belongs to none"), "{err}");
        assert!(!err.contains("BEGIN"), "never echoes the file");
        // The chain may come before the leaf: the key picks the leaf.
        let chained = format!("{}{}{}", b.cert_pem, a.cert_pem, a.key_pem());
        let c = ClientCertificate::from_pem(chained.as_bytes()).unwrap();
        assert_eq!(
            c.thumbprint_sha256,
            URL_SAFE_NO_PAD.encode(Sha256::digest(&a.cert_der))
        );
        assert_eq!(c.chain.len(), 2);
    }
}
