//! Credentials for tests and demos of the certificate and workload-identity paths: a
//! self-signed RSA certificate with its key (what an app registration would hold), and a
//! stand-in OIDC issuer (a "Kubernetes cluster") that signs service-account tokens.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;

use super::EmulatorError;

/// Modulus size of generated test keys (Entra's minimum).
const RSA_BITS: usize = 2048;

fn rsa_key() -> Result<rsa::PrivateKey, EmulatorError> {
    rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
        .map_err(|e| EmulatorError::Key(format!("generating an RSA key: {e}")))
}

/// A self-signed RSA certificate and its private key.
pub struct TestCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER (register this on the app).
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    key_pem: String,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate").finish_non_exhaustive()
    }
}

impl TestCertificate {
    /// Generates an RSA-2048 key and a self-signed certificate named `common_name`.
    pub fn generate(common_name: &str) -> Result<TestCertificate, EmulatorError> {
        let key = rsa_key()?;
        let key_pem = key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| EmulatorError::Key(format!("encoding a test key: {e}")))?
            .to_string();
        let pki_err = |e: rcgen::Error| EmulatorError::Pki(format!("test certificate: {e}"));
        let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
            .map_err(pki_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&pair).map_err(pki_err)?;
        Ok(TestCertificate {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem,
        })
    }

    /// Certificate and key in one PEM file, as `AZURE_CLIENT_CERTIFICATE_PATH` expects.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The private key alone (PKCS#8 PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// An external OIDC issuer whose tokens a federated identity credential trusts.
pub struct FederatedIssuer {
    /// `iss` of its tokens.
    pub issuer: String,
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for FederatedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl FederatedIssuer {
    /// An issuer named `issuer` with a fresh RSA signing key.
    pub fn generate(issuer: &str) -> Result<FederatedIssuer, EmulatorError> {
        let key = rsa_key()?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| EmulatorError::Key(format!("encoding a test key: {e}")))?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|e| EmulatorError::Key(format!("test JWK: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        Ok(FederatedIssuer {
            issuer: issuer.to_owned(),
            kid,
            encoding,
            jwk,
        })
    }

    /// The issuer's public keys.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// A token about `subject` for `audience`, valid from now for `lifetime_secs`
    /// (negative: expired that long ago), like a projected service-account token.
    pub fn token(
        &self,
        subject: &str,
        audience: &str,
        lifetime_secs: i64,
    ) -> Result<String, EmulatorError> {
        let now = crate::clock::utc_now().timestamp();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": now,
            "nbf": now.min(now + lifetime_secs),
            "exp": now + lifetime_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| EmulatorError::Key(format!("signing a test token: {e}")))
    }
}
