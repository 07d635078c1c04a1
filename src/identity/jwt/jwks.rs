//! A JSON Web Key Set (or SPIFFE trust bundle) turned into the keys graphgate verifies
//! with: signing keys only, each with a key id, RSA of at least 2048 bits or EC P-256, bound
//! to the algorithms its type allows. Keys it cannot use are skipped, one by one, so one odd
//! entry does not hide the rest; a document with no usable key at all is an error.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Most keys read from one document (Entra publishes fewer than ten).
pub const MAX_KEYS: usize = 100;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// The key types graphgate verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    EcP256,
}

/// One usable public key.
#[derive(Clone)]
pub struct VerifyingKey {
    decoding: DecodingKey,
    family: Family,
    /// The key's own `alg`, when its JWK names one: then only that algorithm.
    alg: Option<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Whether a token signed with `alg` may be verified with this key: RS256 and PS256 on
    /// RSA keys, ES256 on P-256 keys, and only the key's own `alg` if it names one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        let fits = match self.family {
            Family::Rsa => matches!(alg, Algorithm::RS256 | Algorithm::PS256),
            Family::EcP256 => alg == Algorithm::ES256,
        };
        fits && self.alg.is_none_or(|own| own == alg)
    }

    /// The key as `jsonwebtoken` uses it.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// Usable keys by key id (an id may carry keys of several types).
pub type KeyMap = HashMap<String, Vec<VerifyingKey>>;

/// Why a key document gave no keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("not a JSON Web Key Set (a JSON object with a 'keys' array)")]
    NotAKeySet,
    /// More than [`MAX_KEYS`] keys.
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Keys, but none graphgate can verify with.
    #[error("no usable signing key (RSA of 2048 bits or more, or EC P-256, each with a 'kid')")]
    NoUsableKey,
}

/// Reads a key set document.
pub fn parse(bytes: &[u8]) -> Result<KeyMap, JwksError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotAKeySet)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotAKeySet)?;
    if keys.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let mut map = KeyMap::new();
    for (kid, key) in keys.iter().filter_map(usable) {
        map.entry(kid).or_default().push(key);
    }
    if map.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(map)
}

/// One entry, if it is a signing key graphgate can use. SPIFFE bundles mark JWT keys with
/// `use: jwt-svid` (and X.509 authorities with `x509-svid`, which are skipped).
fn usable(entry: &Value) -> Option<(String, VerifyingKey)> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Other(u)) if u == "jwt-svid" => {}
        Some(_) => return None,
    }
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
            (significant_bytes(&n) >= MIN_RSA_BYTES).then_some(Family::Rsa)?
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Family::EcP256,
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        kid,
        VerifyingKey {
            decoding,
            family,
            alg,
        },
    ))
}

/// The modulus length without leading zero bytes.
fn significant_bytes(n: &[u8]) -> usize {
    n.len() - n.iter().take_while(|b| **b == 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_n(bytes: usize) -> String {
        let mut n = vec![0xC5u8; bytes];
        n[bytes - 1] = 0x01;
        URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn keeps_usable_signing_keys_and_skips_the_rest() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "big", "use": "sig", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": rsa_n(128), "e": "AQAB"},
            {"kty": "RSA", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "x509", "use": "x509-svid", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"},
            {"kty": "RSA", "kid": "odd-alg", "alg": "RSA-OAEP", "n": rsa_n(256), "e": "AQAB"},
            {"kty": "EC", "kid": "svid", "use": "jwt-svid", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": rsa_n(256), "e": "AQAB"},
            "not even an object"
        ]});
        let map = parse(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<&str> = map.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["big", "ps", "svid"]);
        assert!(map["big"][0].accepts(Algorithm::RS256) && map["big"][0].accepts(Algorithm::PS256));
        assert!(
            !map["big"][0].accepts(Algorithm::ES256) && !map["big"][0].accepts(Algorithm::HS256)
        );
        assert!(map["ps"][0].accepts(Algorithm::PS256) && !map["ps"][0].accepts(Algorithm::RS256));
        assert!(
            map["svid"][0].accepts(Algorithm::ES256) && !map["svid"][0].accepts(Algorithm::RS256)
        );
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert_eq!(parse(b"garbage").unwrap_err(), JwksError::NotAKeySet);
        assert_eq!(parse(b"{\"keys\": {}}").unwrap_err(), JwksError::NotAKeySet);
        assert_eq!(
            parse(b"{\"keys\": []}").unwrap_err(),
            JwksError::NoUsableKey
        );
        let many: Vec<Value> = (0..=MAX_KEYS)
            .map(|i| serde_json::json!({"kty": "EC", "kid": i.to_string(), "crv": "P-256", "x": "AA", "y": "AA"}))
            .collect();
        let doc = serde_json::json!({ "keys": many }).to_string();
        assert_eq!(parse(doc.as_bytes()).unwrap_err(), JwksError::TooManyKeys);
    }
}
