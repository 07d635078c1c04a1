//! Idempotency claims in Redis, each step one atomic script: a claim's value is 'R' +
//! fingerprint (hex) + owner while the first request runs, then 'D' + fingerprint + the
//! stored answer.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::ConnectionManager;

use super::redis::{RedisStore, SCRIPTS};
use super::store::{ClaimId, ClaimState, Held};
use super::{StoreError, StoreErrorKind};
use crate::idempotency::StoredResponse;
use crate::policy::hex;

/// Longest claim value read: a kind byte, the fingerprint (hex), then the owner or the
/// stored answer. A longer one (no gateway writes one) is refused without being read whole:
/// the store is not trusted to bound what it sends.
const MAX_CLAIM_BYTES: usize = 1 + 64 + crate::idempotency::MAX_STORED_BYTES;

/// `value`, if no longer than any claim a gateway writes.
fn bounded(value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if value.len() > MAX_CLAIM_BYTES {
        return Err(StoreError::new(
            StoreErrorKind::Response,
            "an idempotency claim longer than any graphgate writes",
        ));
    }
    Ok(value)
}

/// The value of a claim `id` took, while its request runs.
fn running(id: ClaimId<'_>) -> String {
    format!("R{}{}", hex(&id.fingerprint), id.owner)
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

impl RedisStore {
    /// Takes `id.key` (SET NX with the window), or reads what holds it (refused unread when
    /// longer than any claim a gateway writes).
    pub(super) async fn take_claim(
        &self,
        id: ClaimId<'_>,
        window: Duration,
    ) -> Result<ClaimState, StoreError> {
        let mut inv = SCRIPTS.claim.prepare_invoke();
        inv.key(id.key)
            .arg(running(id))
            .arg(window.as_millis().max(1) as u64)
            .arg(MAX_CLAIM_BYTES);
        match self.script(inv).await? {
            Value::Int(1) => Ok(ClaimState::Taken),
            Value::BulkString(v) => judge(&bounded(v)?).map(ClaimState::Held),
            other => Err(StoreError::new(
                StoreErrorKind::Response,
                format!("unexpected claim answer {other:?}"),
            )),
        }
    }

    /// What `key` holds now: at most one byte past the bound is read (a longer value is
    /// refused), and a missing key reads as empty.
    pub(super) async fn read_claim(&self, key: &str) -> Result<Option<Held>, StoreError> {
        let get = |mut conn: ConnectionManager| {
            let key = key.to_owned();
            async move {
                ::redis::cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(MAX_CLAIM_BYTES)
                    .query_async::<Vec<u8>>(&mut conn)
                    .await
            }
        };
        let value = self.call(get).await?;
        match value.is_empty() {
            true => Ok(None),
            false => judge(&bounded(value)?).map(Some),
        }
    }

    /// Stores the answer against the claim `id` took (keeping its expiry), or afresh for
    /// `remaining` when the claim is gone.
    pub(super) async fn finish_claim(
        &self,
        id: ClaimId<'_>,
        answer: &StoredResponse,
        remaining: Duration,
    ) -> Result<(), StoreError> {
        let mut done = format!("D{}", hex(&id.fingerprint)).into_bytes();
        done.extend_from_slice(&answer.encode());
        let mut inv = SCRIPTS.finish.prepare_invoke();
        inv.key(id.key)
            .arg(running(id))
            .arg(done)
            .arg(remaining.as_millis() as u64);
        let _: i64 = self.script(inv).await?;
        Ok(())
    }

    /// Lets go of the claim `id` took, if it still holds the key.
    pub(super) async fn release_claim(&self, id: ClaimId<'_>) -> Result<(), StoreError> {
        let mut inv = SCRIPTS.release.prepare_invoke();
        inv.key(id.key).arg(running(id));
        let _: i64 = self.script(inv).await?;
        Ok(())
    }
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
