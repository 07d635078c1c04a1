//! The memory store's idempotency claims: a bounded map (moka) from a claim's key to who
//! holds it and what it holds, each entry forgotten its window after it was taken (an answer
//! stored later keeps that expiry).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ClaimEnd;
use super::store::{ClaimId, Held};

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

/// The claims of one process, at most `capacity` of them. Its callers serialise every
/// change (the memory store holds its lock around each step), so a look and the change it
/// decides on are one step.
pub(super) struct MemoryClaims {
    cache: moka::sync::Cache<String, Arc<Entry>>,
}

impl MemoryClaims {
    pub(super) fn new(capacity: u64) -> Self {
        MemoryClaims {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryWindow)
                .build(),
        }
    }

    /// What holds `key`, if anything.
    pub(super) fn held(&self, key: &str) -> Option<Held> {
        let entry = self.cache.get(key)?;
        Some(entry.slot().1.clone())
    }

    /// Takes `id.key` (nothing holds it: the caller looked, in the same step).
    pub(super) fn take(&self, id: ClaimId<'_>, window: Duration) {
        let running = Held::Running {
            fingerprint: id.fingerprint,
        };
        let fresh = Entry::new(id.owner, running, window);
        self.cache.insert(id.key.to_owned(), fresh);
    }

    /// Ends the claim `id` took: its answer kept (with the claim's expiry, or afresh for
    /// `remaining` when the claim is gone), or the key let go; a key another owner holds
    /// now is left alone.
    pub(super) fn end(&self, id: ClaimId<'_>, end: ClaimEnd<'_>) {
        let entry = self.cache.get(id.key);
        match (end, entry) {
            (ClaimEnd::Finish { answer, .. }, Some(entry)) => {
                let mut slot = entry.slot();
                if slot.0 == id.owner {
                    slot.1 = Held::Done {
                        fingerprint: id.fingerprint,
                        answer: Arc::new(answer.clone()),
                    };
                }
            }
            (ClaimEnd::Finish { answer, remaining }, None) if !remaining.is_zero() => {
                let done = Held::Done {
                    fingerprint: id.fingerprint,
                    answer: Arc::new(answer.clone()),
                };
                let fresh = Entry::new(id.owner, done, remaining);
                self.cache.insert(id.key.to_owned(), fresh);
            }
            (ClaimEnd::Release, Some(entry)) if entry.slot().0 == id.owner => {
                self.cache.invalidate(id.key);
            }
            _ => {}
        }
    }

    /// How many claims are kept, after the cache's pending evictions (its bound is enforced
    /// by that housekeeping).
    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> crate::idempotency::StoredResponse {
        let resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        crate::idempotency::StoredResponse::of(&resp, bytes::Bytes::new())
    }

    /// The bound holds however many keys arrive (contract: the memory store's capacity).
    #[test]
    fn the_claims_never_outnumber_their_capacity() {
        let claims = MemoryClaims::new(10);
        for i in 0..100 {
            let key = format!("k{i}");
            let id = ClaimId {
                key: &key,
                owner: "o",
                fingerprint: [0; 32],
            };
            let window = Duration::from_secs(60);
            assert!(claims.held(&key).is_none());
            claims.take(id, window);
            let answer = answer();
            let finish = ClaimEnd::Finish {
                answer: &answer,
                remaining: window,
            };
            claims.end(id, finish);
        }
        let kept = claims.len();
        assert!((1..=10).contains(&kept), "{kept} keys kept");
    }
}
