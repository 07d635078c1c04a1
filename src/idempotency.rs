//! No double execution: a request carrying an `Idempotency-Key` (or a GUID
//! `client-request-id`) that repeats one seen within the window gets the first request's
//! answer instead of running the privileged action again. Keys are scoped per caller, a
//! concurrent duplicate waits for the first, and the store is bounded (moka).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Longest idempotency key accepted.
pub const MAX_KEY_BYTES: usize = 255;

/// A stored answer, replayed for duplicates.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StoredResponse {
    /// Keeps `resp` (its body is already in memory).
    pub fn of(resp: &Response<Full<Bytes>>, body: Bytes) -> Self {
        StoredResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        }
    }

    /// The replayed answer, marked as such.
    pub fn replay(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body.clone()));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        resp
    }
}

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

/// What the store says about a request.
pub enum Claim {
    /// First of its key: run it, then [`Ticket::finish`] or drop the ticket.
    Run(Ticket),
    /// A duplicate: answer with this.
    Replay(Arc<StoredResponse>),
    /// The key was used for a different request.
    Mismatch,
}

/// The right to run a keyed request once. Dropping it without finishing releases the key.
pub struct Ticket {
    entry: Arc<Entry>,
    done: bool,
}

impl Ticket {
    /// Stores the answer for duplicates.
    pub fn finish(mut self, stored: StoredResponse) {
        self.done = true;
        self.entry.slot.send_replace(Slot::Done(Arc::new(stored)));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.entry.slot.send_replace(Slot::Released);
        }
    }
}

/// The bounded idempotency store.
pub struct IdempotencyStore {
    cache: moka::future::Cache<(String, String), Arc<Entry>>,
}

impl IdempotencyStore {
    /// Keeps up to `capacity` keys, each for `window`.
    pub fn new(capacity: u64, window: Duration) -> Self {
        IdempotencyStore {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
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

    /// Claims `key` for `caller`'s request identified by `fingerprint` (what it asks for).
    pub async fn claim(&self, caller: &str, key: &str, fingerprint: [u8; 32]) -> Claim {
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
                return Claim::Run(Ticket { entry, done: false });
            }
            let mut rx = entry.slot.subscribe();
            let settled = rx
                .wait_for(|s| !matches!(s, Slot::Running))
                .await
                .map(|s| s.clone());
            match settled {
                Ok(Slot::Done(stored)) => return Claim::Replay(stored),
                // Released: drop that entry (only that one: another duplicate may already
                // have replaced it) and claim again.
                _ => {
                    let released = Arc::clone(&entry);
                    self.cache
                        .entry((caller.to_owned(), key.to_owned()))
                        .and_compute_with(|current| async move {
                            match current {
                                Some(e) if Arc::ptr_eq(e.value(), &released) => {
                                    moka::ops::compute::Op::Remove
                                }
                                _ => moka::ops::compute::Op::Nop,
                            }
                        })
                        .await;
                }
            }
        }
    }
}

/// The request's idempotency key: `Idempotency-Key`, else a GUID `client-request-id`.
pub fn key_of(headers: &HeaderMap) -> Option<Result<String, &'static str>> {
    if let Some(v) = headers.get("idempotency-key") {
        return Some(match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => Ok(k.to_owned()),
            _ => Err("Idempotency-Key must be 1 to 255 visible ASCII characters"),
        });
    }
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::operation::route::is_guid(v))
        .map(|v| Ok(format!("crid:{}", v.to_ascii_lowercase())))
}

/// What a keyed request asks for: its canonical target and body.
pub fn fingerprint(canonical_path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(canonical_path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(status: u16) -> StoredResponse {
        StoredResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn duplicates_replay_and_concurrent_ones_wait() {
        let store = Arc::new(IdempotencyStore::new(100, Duration::from_secs(60)));
        let fp = fingerprint("/p", b"{}");
        let Claim::Run(ticket) = store.claim("a", "k", fp).await else {
            panic!("first runs")
        };
        let waiter = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                matches!(store.claim("a", "k", fp).await, Claim::Replay(s) if s.status == 204)
            })
        };
        tokio::task::yield_now().await;
        ticket.finish(stored(204));
        assert!(
            waiter.await.unwrap(),
            "the concurrent duplicate got the first answer"
        );
        assert!(matches!(store.claim("a", "k", fp).await, Claim::Replay(_)));
        assert!(
            matches!(store.claim("b", "k", fp).await, Claim::Run(_)),
            "keys are per caller"
        );
        assert!(matches!(
            store.claim("a", "k", fingerprint("/other", b"{}")).await,
            Claim::Mismatch
        ));
    }

    #[tokio::test]
    async fn a_dropped_ticket_lets_the_next_attempt_run() {
        let store = IdempotencyStore::new(100, Duration::from_secs(60));
        let fp = fingerprint("/p", b"{}");
        let Claim::Run(ticket) = store.claim("a", "k", fp).await else {
            panic!()
        };
        drop(ticket);
        assert!(matches!(store.claim("a", "k", fp).await, Claim::Run(_)));
    }

    #[tokio::test]
    async fn the_store_never_holds_more_than_its_capacity() {
        let store = IdempotencyStore::new(10, Duration::from_secs(60));
        for i in 0..100 {
            let Claim::Run(ticket) = store.claim("a", &format!("k{i}"), [0; 32]).await else {
                panic!("k{i} is new")
            };
            ticket.finish(stored(204));
        }
        let kept = store.key_count().await;
        assert!((1..=10).contains(&kept), "{kept} keys kept");
    }

    #[test]
    fn keys_come_from_the_header_or_a_guid_client_request_id() {
        let mut h = HeaderMap::new();
        assert!(key_of(&h).is_none());
        h.insert("client-request-id", HeaderValue::from_static("not-a-guid"));
        assert!(key_of(&h).is_none());
        h.insert(
            "client-request-id",
            HeaderValue::from_static("5A6B7C8D-1111-2222-3333-444455556666"),
        );
        assert_eq!(
            key_of(&h).unwrap().unwrap(),
            "crid:5a6b7c8d-1111-2222-3333-444455556666"
        );
        h.insert("idempotency-key", HeaderValue::from_static("order-42"));
        assert_eq!(key_of(&h).unwrap().unwrap(), "order-42");
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&"x".repeat(300)).unwrap(),
        );
        assert!(key_of(&h).unwrap().is_err());
    }
}
