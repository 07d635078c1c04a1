//! An emulated token issuer for workload callers (the Kubernetes service-account issuer, a
//! SPIFFE trust domain): its signing keys (RS256 or ES256, generated on first use), key
//! rotation and removal, the key set it publishes, what goes wrong when its keys are fetched
//! (down, garbage, a huge document, slow, an error status), and a count of those fetches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a fetch of the issuer's keys (or discovery document) gets instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksMode {
    /// The connection is closed without an answer.
    Down,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a 2 MiB document.
    Huge,
    /// The normal answer, `delay_ms` late.
    Slow,
    /// An error status (`status`, default 503).
    Status,
}

/// A fault of the issuer's key endpoints, for the next `times` fetches (all, if absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksFault {
    /// What goes wrong.
    pub mode: JwksMode,
    /// For `slow`: the delay (at most 600 s).
    #[serde(default)]
    pub delay_ms: u64,
    /// For `status`: the status (400-599).
    #[serde(default)]
    pub status: Option<u16>,
    /// Fetches left; absent: every fetch until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl JwksFault {
    /// A fault of `mode` for every fetch until cleared.
    pub fn new(mode: JwksMode) -> Self {
        JwksFault {
            mode,
            delay_ms: 0,
            status: None,
            times: None,
        }
    }

    /// The delay of a `slow` fault.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.min(crate::MAX_FAULT_DELAY_MS))
    }
}

/// One signing key of an emulated issuer.
struct IdpKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    published: bool,
}

impl IdpKey {
    fn generate(alg: Algorithm) -> Result<IdpKey, String> {
        let (encoding, mut jwk) = match alg {
            Algorithm::ES256 => {
                let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
                let point = pair.public_key_raw();
                let (x, y) = point
                    .get(1..33)
                    .zip(point.get(33..65))
                    .ok_or("unexpected EC public key")?;
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
                (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let (der, n, e) = super::signing_key::rsa_key()?;
                let jwk = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)});
                (EncodingKey::from_rsa_der(&der), jwk)
            }
            other => {
                return Err(format!(
                    "the emulator signs with RS256, PS256 or ES256, not {other:?}"
                ));
            }
        };
        let kid = URL_SAFE_NO_PAD.encode(&uuid::Uuid::new_v4().as_bytes()[..12]);
        jwk["kid"] = Value::String(kid.clone());
        jwk["alg"] = Value::String(format!("{alg:?}"));
        jwk["use"] = Value::String("sig".into());
        Ok(IdpKey {
            kid,
            alg,
            encoding,
            jwk,
            published: true,
        })
    }
}

#[derive(Default)]
struct Keys {
    keys: Vec<IdpKey>,
    /// Index of the key new tokens are signed with.
    current: usize,
    fault: Option<JwksFault>,
}

/// An emulated issuer.
pub(crate) struct Idp {
    /// Its `iss`.
    pub(crate) issuer: String,
    default_alg: Algorithm,
    keys: Mutex<Keys>,
    fetches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Idp {
    /// An issuer named `issuer` whose first key (made on first use) is `default_alg`.
    pub(crate) fn new(issuer: String, default_alg: Algorithm) -> Self {
        Idp {
            issuer,
            default_alg,
            keys: Mutex::new(Keys::default()),
            fetches: AtomicU64::new(0),
        }
    }

    fn keys(&self) -> Result<MutexGuard<'_, Keys>, String> {
        let mut keys = lock(&self.keys);
        if keys.keys.is_empty() {
            keys.keys.push(IdpKey::generate(self.default_alg)?);
        }
        Ok(keys)
    }

    /// Signs `claims`; with `kid`, claims that key id in the header (whatever key signs).
    pub(crate) fn sign(&self, claims: &Value, kid: Option<&str>) -> Result<String, String> {
        let keys = self.keys()?;
        let key = keys.keys.get(keys.current).ok_or("no signing key")?;
        let mut header = Header::new(key.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(kid.unwrap_or(&key.kid).to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// A new signing key (new kid), published beside the old ones unless `retire_previous`,
    /// which removes every other key from the key set. Returns the new kid.
    pub(crate) fn rotate(&self, alg: Algorithm, retire_previous: bool) -> Result<String, String> {
        let key = IdpKey::generate(alg)?;
        let kid = key.kid.clone();
        let mut keys = self.keys()?;
        if retire_previous {
            keys.keys.iter_mut().for_each(|k| k.published = false);
        }
        keys.keys.push(key);
        keys.current = keys.keys.len() - 1;
        Ok(kid)
    }

    /// The key ids published now.
    pub(crate) fn kids(&self) -> Result<Vec<String>, String> {
        Ok(self
            .keys()?
            .keys
            .iter()
            .filter(|k| k.published)
            .map(|k| k.kid.clone())
            .collect())
    }

    /// The published keys as a JWKS.
    pub(crate) fn jwks(&self) -> Result<Value, String> {
        let keys: Vec<Value> = self
            .keys()?
            .keys
            .iter()
            .filter(|k| k.published)
            .map(|k| k.jwk.clone())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Replaces (or clears) the key endpoints' fault.
    pub(crate) fn set_fault(&self, fault: Option<JwksFault>) {
        lock(&self.keys).fault = fault;
    }

    /// Counts one fetch of the key endpoints and claims the fault for it, if any.
    pub(crate) fn fetched(&self) -> Option<JwksFault> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut keys = lock(&self.keys);
        let fault = keys.fault.clone()?;
        match fault.times {
            Some(0) => {
                keys.fault = None;
                None
            }
            Some(n) => {
                keys.fault = (n > 1).then(|| JwksFault {
                    times: Some(n - 1),
                    ..fault.clone()
                });
                Some(fault)
            }
            None => Some(fault),
        }
    }

    /// Fetches of the key endpoints so far.
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The body a garbage fault answers with.
pub(crate) const GARBAGE: &str = "<html><body>Service Temporarily Unavailable</body></html>";

/// The body a huge fault answers with: a 2 MiB document that starts like a key set.
pub(crate) fn huge_document() -> String {
    let mut doc = String::with_capacity(2 * 1024 * 1024 + 64);
    doc.push_str("{\"keys\":[");
    let key = r#"{"kty":"oct","kid":"padding","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"#;
    while doc.len() < 2 * 1024 * 1024 {
        doc.push_str(key);
    }
    doc.push_str("{}]}");
    doc
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    crate::clock::utc_now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_keys_sign_tokens_their_jwks_verifies() {
        let idp = Idp::new("https://issuer.example".into(), Algorithm::ES256);
        let token = idp
            .sign(&json!({"sub": "s", "exp": now() + 60}), None)
            .unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(idp.jwks().unwrap()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
        let old = idp.kids().unwrap();
        let new = idp.rotate(Algorithm::ES256, true).unwrap();
        assert_eq!(idp.kids().unwrap(), vec![new.clone()]);
        assert!(!old.contains(&new));
        idp.set_fault(Some(JwksFault {
            times: Some(1),
            ..JwksFault::new(JwksMode::Down)
        }));
        assert_eq!(idp.fetched().map(|f| f.mode), Some(JwksMode::Down));
        assert_eq!(idp.fetched(), None);
        assert_eq!(idp.fetch_count(), 2);
    }
}
