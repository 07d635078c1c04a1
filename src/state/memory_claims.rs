//! The memory store's idempotency claims: a bounded map (moka) from a claim's key to who
//! holds it and what it holds, each entry forgotten its window after it was taken (an answer
//! stored later keeps that expiry).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::store::{ClaimId, ClaimState, Held};
use crate::idempotency::StoredResponse;

/// One claim: its owner and what it holds, changed in place (so its expiry stays).
struct Entry {
    window: Duration,
    slot: Mutex<(String, Held)>,
}

impl Entry {
    fn new(owner: &str, held: Held, window: Duration) -> Arc<Self> {
        Arc::new(Entry {
            window,
            slot: Mutex::new((owner.to_owned(), held)),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, (String, Held)> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each entry expires its own window after it was created.
struct PerEntryWindow;

impl moka::Expiry<String, Arc<Entry>> for PerEntryWindow {
    fn expire_after_create(&self, _: &String, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.window)
    }
}

/// The claims of one process, at most `capacity` of them.
pub(super) struct MemoryClaims {
    cache: moka::future::Cache<String, Arc<Entry>>,
}

impl MemoryClaims {
    pub(super) fn new(capacity: u64) -> Self {
        MemoryClaims {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryWindow)
                .build(),
        }
    }

    pub(super) async fn claim(&self, id: ClaimId<'_>, window: Duration) -> ClaimState {
        let running = Held::Running {
            fingerprint: id.fingerprint,
        };
        let fresh = Entry::new(id.owner, running, window);
        let entry = self
            .cache
            .entry(id.key.to_owned())
            .or_insert_with(async { fresh })
            .await;
        if entry.is_fresh() {
            return ClaimState::Taken;
        }
        ClaimState::Held(entry.value().slot().1.clone())
    }

    pub(super) async fn peek(&self, key: &str) -> Option<Held> {
        let entry = self.cache.get(key).await?;
        Some(entry.slot().1.clone())
    }

    pub(super) async fn finish(
        &self,
        id: ClaimId<'_>,
        answer: &StoredResponse,
        remaining: Duration,
    ) {
        let done = Held::Done {
            fingerprint: id.fingerprint,
            answer: Arc::new(answer.clone()),
        };
        match self.cache.get(id.key).await {
            Some(entry) => {
                let mut slot = entry.slot();
                if slot.0 == id.owner {
                    slot.1 = done;
                }
            }
            None if !remaining.is_zero() => {
                let fresh = Entry::new(id.owner, done, remaining);
                self.cache.insert(id.key.to_owned(), fresh).await;
            }
            None => {}
        }
    }

    pub(super) async fn release(&self, id: ClaimId<'_>) {
        let owner = id.owner.to_owned();
        self.cache
            .entry(id.key.to_owned())
            .and_compute_with(|current| async move {
                match current {
                    Some(e) if e.value().slot().0 == owner => moka::ops::compute::Op::Remove,
                    _ => moka::ops::compute::Op::Nop,
                }
            })
            .await;
    }

    /// How many claims are kept, after the cache's pending evictions (its bound is enforced
    /// by that housekeeping).
    #[cfg(test)]
    pub(super) async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> StoredResponse {
        let resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        StoredResponse::of(&resp, bytes::Bytes::new())
    }

    /// The bound holds however many keys arrive (contract: the memory store's capacity).
    #[tokio::test]
    async fn the_claims_never_outnumber_their_capacity() {
        let claims = MemoryClaims::new(10);
        for i in 0..100 {
            let key = format!("k{i}");
            let id = ClaimId {
                key: &key,
                owner: "o",
                fingerprint: [0; 32],
            };
            let window = Duration::from_secs(60);
            assert!(matches!(claims.claim(id, window).await, ClaimState::Taken));
            claims.finish(id, &answer(), window).await;
        }
        let kept = claims.len().await;
        assert!((1..=10).contains(&kept), "{kept} keys kept");
    }
}
