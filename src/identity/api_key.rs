//! Callers with an API key (`Authorization: Bearer <key>`): only SHA-256 hashes are kept,
//! looked up by the key's hash and confirmed in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, AuthMethod, CallerId};
use crate::policy::Policy;

/// The caller whose key is `key`.
pub(super) fn caller(policy: &Policy, key: &str) -> Result<CallerId, AuthError> {
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
