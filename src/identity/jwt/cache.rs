//! Tokens whose signature has been checked: a caller presents the same token on every request
//! until it is renewed, so its signature (an RSA or ECDSA verification, most of what a JWT
//! caller costs) is checked once. An entry is keyed by the token's SHA-256, bounded in count
//! and bytes, forgotten by the token's `exp`, tied to the key set that verified it (a changed
//! JWKS makes every entry verified with the old keys miss), and dropped with the policy.
//! What is kept is only what the signature vouched for; the time rules (`exp`, `nbf`, `iat`
//! against the issuer's leeway), the user of a delegated token and the policy caller are
//! checked again on every use.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::store::KeySet;

/// Most bytes of tokens remembered (each entry weighs its token's length).
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Longest an entry is kept, whatever its `exp` says.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// A token whose signature verified, and against what.
pub(super) struct Trusted {
    /// The policy's issuer (index into its `jwt_issuers`) that vouched for it.
    pub(super) issuer: usize,
    /// The key set that verified it; the entry counts only while the issuer's store holds
    /// this very set.
    pub(super) keys: Weak<KeySet>,
    /// Its payload.
    pub(super) claims: Map<String, Value>,
    /// How long it may be kept: until its `exp`, at most [`MAX_AGE`].
    keep: Duration,
    /// The token's length.
    bytes: u32,
}

impl Trusted {
    /// An entry for a token of `bytes` bytes verified with `keys`, kept until `exp` (Unix
    /// seconds; `now` is the time now). `None` when it expires now or has no `exp`.
    pub(super) fn new(
        issuer: usize,
        keys: &Arc<KeySet>,
        claims: Map<String, Value>,
        bytes: usize,
        now: i64,
    ) -> Option<Self> {
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let left = u64::try_from(exp.checked_sub(now)?)
            .ok()
            .filter(|s| *s > 0)?;
        Some(Trusted {
            issuer,
            keys: Arc::downgrade(keys),
            claims,
            keep: Duration::from_secs(left).min(MAX_AGE),
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        })
    }

    /// Whether `current` is the key set this token was verified with.
    pub(super) fn verified_with(&self, current: &Arc<KeySet>) -> bool {
        std::ptr::eq(self.keys.as_ptr(), Arc::as_ptr(current))
    }
}

/// Each entry is forgotten by its token's `exp`.
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Trusted>> for UntilExpiry {
    fn expire_after_create(&self, _: &[u8; 32], t: &Arc<Trusted>, _: Instant) -> Option<Duration> {
        Some(t.keep)
    }
}

/// Verified tokens of one policy, by SHA-256.
#[derive(Clone)]
pub(super) struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], Arc<Trusted>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|_, t: &Arc<Trusted>| t.bytes)
                .expire_after(UntilExpiry)
                .build(),
        }
    }
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl VerifiedTokens {
    /// The token with this digest, if its signature was checked.
    pub(super) fn get(&self, digest: &[u8; 32]) -> Option<Arc<Trusted>> {
        self.cache.get(digest)
    }

    /// Remembers a token whose signature verified.
    pub(super) fn insert(&self, digest: [u8; 32], trusted: Trusted) {
        self.cache.insert(digest, Arc::new(trusted));
    }

    /// Forgets a token (its key set changed).
    pub(super) fn remove(&self, digest: &[u8; 32]) {
        self.cache.invalidate(digest);
    }
}
