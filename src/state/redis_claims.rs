//! Idempotency claims in Redis: a claim's value is 'R' + fingerprint (hex) + owner while the
//! first request runs, then 'D' + fingerprint + the stored answer. The take and settle
//! scripts write them; a duplicate waiting for the first reads them with [`held`].

use std::sync::Arc;

use super::store::{ClaimId, Held};
use super::{StoreError, StoreErrorKind};
use crate::idempotency::StoredResponse;
use crate::policy::hex;

/// Longest claim value read: a kind byte, the fingerprint (hex), then the owner or the
/// stored answer. A longer one (no gateway writes one) is refused without being read whole:
/// the store is not trusted to bound what it sends.
pub(super) const MAX_CLAIM_BYTES: usize = 1 + 64 + crate::idempotency::MAX_STORED_BYTES;

/// The value of a claim `id` took, while its request runs.
pub(super) fn running(id: ClaimId<'_>) -> String {
    format!("R{}{}", hex(&id.fingerprint), id.owner)
}

/// The value of a claim `id` took, once its request has `answer`.
pub(super) fn done(id: ClaimId<'_>, answer: &StoredResponse) -> Vec<u8> {
    let mut done = format!("D{}", hex(&id.fingerprint)).into_bytes();
    done.extend_from_slice(&answer.encode());
    done
}

/// What a claim's value says holds it (refused when longer than any claim a gateway
/// writes).
pub(super) fn held(value: &[u8]) -> Result<Held, StoreError> {
    if value.len() > MAX_CLAIM_BYTES {
        return Err(StoreError::new(
            StoreErrorKind::Response,
            "an idempotency claim longer than any graphgate writes",
        ));
    }
    judge(value)
}

/// Reads a claim's value.
fn judge(value: &[u8]) -> Result<Held, StoreError> {
    let bad = || {
        StoreError::new(
            StoreErrorKind::Response,
            "an idempotency claim in an unknown format",
        )
    };
    let (state, rest) = value.split_first().ok_or_else(bad)?;
    let fingerprint = rest.get(..64).and_then(unhex).ok_or_else(bad)?;
    match state {
        b'R' => Ok(Held::Running { fingerprint }),
        b'D' => StoredResponse::decode(&rest[64..])
            .map(|answer| Held::Done {
                fingerprint,
                answer: Arc::new(answer),
            })
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// 64 hex digits as 32 bytes.
fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(digits, 16).ok()?;
    }
    (text.len() == 64).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_strictly() {
        let fp = [0xab; 32];
        let id = ClaimId {
            key: "k",
            owner: "owner",
            fingerprint: fp,
        };
        let value = running(id).into_bytes();
        assert!(matches!(judge(&value), Ok(Held::Running { fingerprint }) if fingerprint == fp));
        assert!(judge(b"R").is_err());
        assert!(judge(format!("R{}", "zz".repeat(32)).as_bytes()).is_err());
        assert!(judge(format!("D{}garbage", hex(&fp)).as_bytes()).is_err());
        assert!(judge(format!("X{}", hex(&fp)).as_bytes()).is_err());
    }
}
