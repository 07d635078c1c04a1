//! Idempotency claims in one process: a bounded map (moka) from (caller, key) to the request
//! it was first used for and what became of it. A concurrent duplicate waits on the first
//! (a watch channel), up to a bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Claim;
use crate::idempotency::StoredResponse;

#[derive(Debug, Clone)]
enum Slot {
    Running,
    Done(Arc<StoredResponse>),
    /// The first attempt ended without the action possibly running; a duplicate may run it.
    Released,
}

struct Entry {
    fingerprint: [u8; 32],
    slot: watch::Sender<Slot>,
}

/// The right to run a keyed request once. Dropping it without finishing releases the key.
pub struct MemoryTicket {
    entry: Arc<Entry>,
    done: bool,
}

impl MemoryTicket {
    /// Stores the answer for duplicates.
    pub fn finish(mut self, stored: StoredResponse) {
        self.done = true;
        self.entry.slot.send_replace(Slot::Done(Arc::new(stored)));
    }
}

impl Drop for MemoryTicket {
    fn drop(&mut self) {
        if !self.done {
            self.entry.slot.send_replace(Slot::Released);
        }
    }
}

/// The bounded idempotency store of one process.
pub struct IdempotencyStore {
    cache: moka::future::Cache<(String, String), Arc<Entry>>,
    wait: Duration,
}

impl IdempotencyStore {
    /// Keeps up to `capacity` keys, each for `window`; a duplicate waits up to `wait` for the
    /// first to finish.
    pub fn new(capacity: u64, window: Duration, wait: Duration) -> Self {
        IdempotencyStore {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
            wait,
        }
    }

    /// Whether `caller`'s `key` is remembered (not yet expired or evicted).
    pub fn holds(&self, caller: &str, key: &str) -> bool {
        self.cache
            .contains_key(&(caller.to_owned(), key.to_owned()))
    }

    /// How many keys are remembered, after the cache's pending evictions have run (the
    /// bound is enforced by that housekeeping, so a count without it may briefly exceed it).
    pub async fn key_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Claims `key` for `caller`'s request identified by `fingerprint` (what it asks for). A
    /// duplicate waits for the first up to the bound, or until `stop` turns true.
    pub(super) async fn claim(
        &self,
        caller: &str,
        key: &str,
        fingerprint: [u8; 32],
        mut stop: watch::Receiver<bool>,
    ) -> Claim {
        let deadline = crate::clock::Instant::now() + self.wait;
        loop {
            let fresh = Arc::new(Entry {
                fingerprint,
                slot: watch::channel(Slot::Running).0,
            });
            let entry = self
                .cache
                .entry((caller.to_owned(), key.to_owned()))
                .or_insert_with(async { Arc::clone(&fresh) })
                .await;
            let (entry, is_new) = (entry.value().clone(), entry.is_fresh());
            if entry.fingerprint != fingerprint {
                return Claim::Mismatch;
            }
            if is_new {
                return Claim::Run(super::Ticket::memory(MemoryTicket { entry, done: false }));
            }
            let mut rx = entry.slot.subscribe();
            let settled = tokio::select! {
                // An answer already there wins over a shutdown that is also under way.
                biased;
                settled = tokio::time::timeout_at(
                    deadline,
                    rx.wait_for(|s| !matches!(s, Slot::Running)),
                ) => settled.map(|s| s.map(|s| s.clone())),
                () = super::stopped(&mut stop) => return Claim::InFlight,
            };
            match settled {
                Err(_elapsed) => return Claim::InFlight,
                Ok(Ok(Slot::Done(stored))) => return Claim::Replay(stored),
                // Released: drop that entry (only that one: another duplicate may already
                // have replaced it) and claim again.
                Ok(_) => self.forget(caller, key, &entry).await,
            }
        }
    }

    async fn forget(&self, caller: &str, key: &str, released: &Arc<Entry>) {
        let released = Arc::clone(released);
        self.cache
            .entry((caller.to_owned(), key.to_owned()))
            .and_compute_with(|current| async move {
                match current {
                    Some(e) if Arc::ptr_eq(e.value(), &released) => moka::ops::compute::Op::Remove,
                    _ => moka::ops::compute::Op::Nop,
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::fingerprint;
    use bytes::Bytes;
    use http::Response;
    use http_body_util::Full;

    fn stored(status: u16) -> StoredResponse {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        StoredResponse::of(&resp, Bytes::new())
    }

    /// A wait nothing stops.
    fn go() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    fn store() -> IdempotencyStore {
        IdempotencyStore::new(100, Duration::from_secs(60), Duration::from_secs(60))
    }

    async fn run(
        store: &IdempotencyStore,
        caller: &str,
        key: &str,
        fp: [u8; 32],
    ) -> super::super::Ticket {
        match store.claim(caller, key, fp, go()).await {
            Claim::Run(t) => t,
            _ => panic!("{caller}/{key} is new"),
        }
    }

    #[tokio::test]
    async fn duplicates_replay_and_concurrent_ones_wait() {
        let store = Arc::new(store());
        let fp = fingerprint("/p", b"{}");
        let ticket = run(&store, "a", "k", fp).await;
        let waiter = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                matches!(store.claim("a", "k", fp, go()).await, Claim::Replay(s) if s.status() == 204)
            })
        };
        tokio::task::yield_now().await;
        ticket.finish(stored(204)).await;
        assert!(
            waiter.await.unwrap(),
            "the concurrent duplicate got the first answer"
        );
        assert!(matches!(
            store.claim("a", "k", fp, go()).await,
            Claim::Replay(_)
        ));
        assert!(
            matches!(store.claim("b", "k", fp, go()).await, Claim::Run(_)),
            "keys are per caller"
        );
        assert!(matches!(
            store
                .claim("a", "k", fingerprint("/other", b"{}"), go())
                .await,
            Claim::Mismatch
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_duplicate_waits_for_the_first_only_up_to_its_bound() {
        let store = IdempotencyStore::new(100, Duration::from_secs(600), Duration::from_secs(5));
        let fp = fingerprint("/p", b"{}");
        let _first = run(&store, "a", "k", fp).await;
        let start = crate::clock::Instant::now();
        assert!(matches!(
            store.claim("a", "k", fp, go()).await,
            Claim::InFlight
        ));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_duplicate_stops_at_once_when_told_and_the_key_stays_claimed() {
        let store = Arc::new(store());
        let fp = fingerprint("/p", b"{}");
        let first = run(&store, "a", "k", fp).await;
        let (stop, stopping) = watch::channel(false);
        let start = crate::clock::Instant::now();
        let waiter = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim("a", "k", fp, stopping).await })
        };
        tokio::task::yield_now().await;
        stop.send_replace(true);
        assert!(matches!(waiter.await.unwrap(), Claim::InFlight));
        assert_eq!(start.elapsed(), Duration::ZERO, "not after the 60 s bound");
        // The first still holds its key and its answer is kept for the next duplicate.
        first.finish(stored(204)).await;
        assert!(matches!(
            store.claim("a", "k", fp, go()).await,
            Claim::Replay(_)
        ));
    }

    #[tokio::test]
    async fn a_dropped_ticket_lets_the_next_attempt_run() {
        let store = store();
        let fp = fingerprint("/p", b"{}");
        drop(run(&store, "a", "k", fp).await);
        assert!(matches!(
            store.claim("a", "k", fp, go()).await,
            Claim::Run(_)
        ));
    }

    #[tokio::test]
    async fn the_store_never_holds_more_than_its_capacity() {
        let store = IdempotencyStore::new(10, Duration::from_secs(60), Duration::from_secs(1));
        for i in 0..100 {
            run(&store, "a", &format!("k{i}"), [0; 32])
                .await
                .finish(stored(204))
                .await;
        }
        let kept = store.key_count().await;
        assert!((1..=10).contains(&kept), "{kept} keys kept");
    }
}
