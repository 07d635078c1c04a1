//! Caller identity: who is asking. API keys arrive as `Authorization: Bearer <key>` (what
//! Graph SDKs send); only their SHA-256 is kept, compared in constant time against every caller.

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
}

impl AuthMethod {
    /// Name recorded in audit and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
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

/// Why a request carries no usable identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Authorization header.
    #[error("the request carries no credentials: send 'Authorization: Bearer <api key>'")]
    Missing,
    /// Not a bearer credential, or several of them.
    #[error("the Authorization header must be a single 'Bearer <api key>'")]
    Malformed,
    /// A key no caller has.
    #[error("the API key is not valid")]
    UnknownKey,
}

/// Identifies the caller of a request from its headers.
pub fn authenticate(policy: &Policy, headers: &HeaderMap) -> Result<CallerId, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, key) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(AuthError::Malformed);
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    // Compare against every caller without stopping early, so timing says nothing about
    // which caller (if any) matched.
    let mut found: Option<usize> = None;
    for (i, caller) in policy.callers.iter().enumerate() {
        if bool::from(caller.key_sha256.ct_eq(&digest)) {
            found = Some(i);
        }
    }
    found
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
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{}\"\n  - name: b\n    api_key_sha256: \"{}\"\n",
            api_key_sha256("key-a"),
            api_key_sha256("key-b")
        );
        Policy::from_yaml(&text, "t").unwrap()
    }

    fn auth(value: Option<&str>) -> Result<CallerId, AuthError> {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        authenticate(&policy(), &h)
    }

    #[test]
    fn keys_map_to_callers() {
        assert_eq!(auth(Some("Bearer key-b")).unwrap().index, 1);
        assert_eq!(auth(Some("bearer key-a")).unwrap().index, 0);
        assert_eq!(auth(None), Err(AuthError::Missing));
        assert_eq!(auth(Some("Basic a2V5LWE=")), Err(AuthError::Malformed));
        assert_eq!(auth(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(auth(Some("Bearer key-c")), Err(AuthError::UnknownKey));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer key-a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer key-b"));
        assert_eq!(authenticate(&policy(), &h), Err(AuthError::Malformed));
    }
}
