//! The emulator's token-signing key: one RSA-2048 key per process, generated on first use,
//! used to sign RS256 access tokens, verify them on the Graph side and publish them as JWKS.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Modulus size of the throwaway signing key.
const RSA_BITS: usize = 2048;

/// The signing key and everything derived from it.
pub(crate) struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Key id, in the token header and the JWKS.
    pub(crate) kid: String,
    /// base64url modulus and exponent, for the JWKS.
    n: String,
    e: String,
}

static KEY: OnceLock<Result<SigningKey, String>> = OnceLock::new();

/// The process-wide signing key (generated once: RSA key generation is slow).
pub(crate) fn signing_key() -> Result<&'static SigningKey, String> {
    KEY.get_or_init(generate).as_ref().map_err(Clone::clone)
}

static IMPOSTOR: OnceLock<Result<SigningKey, String>> = OnceLock::new();

/// A second key that signs under the real key's `kid`: its tokens look right but fail
/// signature verification (generated on first use).
pub(crate) fn impostor_key() -> Result<&'static SigningKey, String> {
    IMPOSTOR
        .get_or_init(|| {
            let mut key = generate()?;
            key.kid = signing_key()?.kid.clone();
            Ok(key)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An RSA key's PKCS#1 DER, modulus and exponent.
pub(crate) type RsaParts = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A fresh RSA-2048 key: its PKCS#1 DER (to sign with), modulus and exponent.
pub(crate) fn rsa_key() -> Result<RsaParts, String> {
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
        .map_err(|e| format!("generating the RSA signing key: {e}"))?;
    let der = private
        .to_pkcs1_der()
        .map_err(|e| format!("encoding the RSA signing key: {e}"))?;
    Ok((
        der.as_bytes().to_vec(),
        private.n_bytes().to_vec(),
        private.e_bytes().to_vec(),
    ))
}

fn generate() -> Result<SigningKey, String> {
    let (der, n, e) = rsa_key()?;
    // Entra's kids are short base64url thumbprints; a digest of the modulus is as stable.
    let digest = Sha256::digest(&n);
    let kid = URL_SAFE_NO_PAD.encode(&digest[..20]);
    Ok(SigningKey {
        encoding: EncodingKey::from_rsa_der(&der),
        decoding: DecodingKey::from_rsa_raw_components(&n, &e),
        kid,
        n: URL_SAFE_NO_PAD.encode(&n),
        e: URL_SAFE_NO_PAD.encode(&e),
    })
}

/// Why a presented token was refused, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Not a JWT at all (or not RS256).
    Malformed,
    /// Not signed by the emulator's key.
    Signature,
    /// `exp` has passed.
    Expired,
    /// `nbf` lies in the future.
    NotYetValid,
}

impl SigningKey {
    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Checks signature, `exp` and `nbf` (no leeway, so tests can observe expiry) and
    /// returns the claims. The audience is the caller's check: it depends on the host.
    pub(crate) fn verify(&self, token: &str) -> Result<serde_json::Value, TokenCheck> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "nbf", "aud"]);
        match jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(classify(e.kind())),
        }
    }

    /// The JSON Web Key Set publishing the public key.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": self.n,
                "e": self.e,
            }]
        })
    }
}

fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> TokenCheck {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => TokenCheck::Signature,
        ErrorKind::ExpiredSignature => TokenCheck::Expired,
        ErrorKind::ImmatureSignature => TokenCheck::NotYetValid,
        _ => TokenCheck::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_generated_once_and_round_trips() {
        let started = tokio::time::Instant::now();
        let key = signing_key().unwrap();
        eprintln!("RSA-2048 key generation took {:?}", started.elapsed());
        assert!(std::ptr::eq(key, signing_key().unwrap()));
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"aud": "a", "nbf": now - 1, "exp": now + 60});
        let token = key.sign(&claims).unwrap();
        assert_eq!(key.verify(&token).unwrap()["aud"], "a");
        let expired = key
            .sign(&serde_json::json!({"aud": "a", "nbf": now - 9, "exp": now - 5}))
            .unwrap();
        assert_eq!(key.verify(&expired).unwrap_err(), TokenCheck::Expired);
        let mut forged = token.clone();
        forged.truncate(token.len() - 4);
        forged.push_str("AAAA");
        assert_eq!(key.verify(&forged).unwrap_err(), TokenCheck::Signature);
        assert_eq!(key.verify("garbage").unwrap_err(), TokenCheck::Malformed);
        assert_eq!(key.jwks()["keys"][0]["kid"], key.kid.as_str());
    }
}
