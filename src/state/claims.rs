//! No double execution, on top of the store's claims (the same protocol for every backend):
//! the first request with a key takes its claim and runs, holding a [`Ticket`]; a
//! duplicate waits for the first's answer (looking again every 10 ms, doubling to 200 ms),
//! up to the wait bound, or until shutdown ([`StateStore::stop_waiting`]); a ticket dropped
//! without an answer releases the key (the action certainly did not run). An answer or release the store cannot take now is retried in the
//! background; until then duplicates wait, and are never run again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::store::{ClaimId, ClaimState, Held, Store};
use super::{StateStore, StoreError, metrics};
use crate::clock::Instant;
use crate::idempotency::StoredResponse;

/// How long an answer or release keeps being retried in the background.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(60);
/// How often a duplicate looks again whether the first request has finished.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// What the store says about an idempotent request.
pub enum Claim {
    /// First of its key: run it, then [`Ticket::finish`] or drop the ticket.
    Run(Ticket),
    /// A duplicate: answer with this.
    Replay(Arc<StoredResponse>),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running past the wait bound.
    InFlight,
}

impl StateStore {
    /// Claims `caller`'s `key` for the request with `fingerprint`; a duplicate waits for the
    /// first (up to the bound, or until [`StateStore::stop_waiting`]) and gets its answer.
    pub async fn claim(
        &self,
        caller: &str,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Claim, StoreError> {
        let key = self.namespace.idempotency(caller, key);
        let mut stop = self.stop_waiting.subscribe();
        let deadline = Instant::now() + self.claims.wait;
        loop {
            let owner = uuid::Uuid::new_v4().simple().to_string();
            let id = ClaimId {
                key: &key,
                owner: &owner,
                fingerprint,
            };
            let window = self.claims.window;
            let held = match metrics::timed("claim", self.backend.claim(id, window)).await? {
                ClaimState::Taken => {
                    return Ok(Claim::Run(Ticket {
                        store: Arc::clone(&self.backend),
                        key,
                        owner,
                        fingerprint,
                        claimed: Instant::now(),
                        window,
                        done: false,
                    }));
                }
                ClaimState::Held(held) => held,
            };
            if let Some(claim) = self
                .wait_for_first(&key, fingerprint, held, deadline, &mut stop)
                .await?
            {
                return Ok(claim);
            }
            // The first let its key go (its action did not run): claim it again.
        }
    }

    /// Waits for the request holding `key` (which holds `held` now) to finish, until
    /// `deadline` or until `stop` turns true (shutdown: answered [`Claim::InFlight`]). An
    /// answer already there wins over a shutdown under way. `None` when the key was let go.
    async fn wait_for_first(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        held: Held,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Claim>, StoreError> {
        let mut poll = POLL_MIN;
        let mut seen = Some(held);
        while let Some(held) = seen {
            if *held.fingerprint() != fingerprint {
                return Ok(Some(Claim::Mismatch));
            }
            if let Held::Done { answer, .. } = held {
                return Ok(Some(Claim::Replay(answer)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some(Claim::InFlight));
            }
            // Only between looks: a look is a read, nothing to leave half done.
            tokio::select! {
                () = tokio::time::sleep(poll.min(deadline - now)) => {}
                () = stopped(stop) => return Ok(Some(Claim::InFlight)),
            }
            poll = (poll * 2).min(POLL_MAX);
            seen = metrics::timed("poll", self.backend.peek(key)).await?;
        }
        Ok(None)
    }
}

/// Resolves once `stop` turns true; never if its sender is gone (nothing will stop the wait).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The right to run a keyed request once. Dropping it without finishing releases the key
/// (the action certainly did not run), so a retry may run it.
pub struct Ticket {
    store: Arc<dyn Store>,
    key: String,
    owner: String,
    fingerprint: [u8; 32],
    claimed: Instant,
    window: Duration,
    done: bool,
}

impl Ticket {
    /// Stores the answer for duplicates. A store that cannot take it now gets it in the
    /// background; until then duplicates wait, and are never run again.
    pub async fn finish(mut self, answer: StoredResponse) {
        self.done = true;
        let settle = Settle::Finish {
            answer,
            remaining: self.window.saturating_sub(self.claimed.elapsed()),
        };
        let (store, key, owner) = (Arc::clone(&self.store), &self.key, &self.owner);
        if let Err(e) = settle
            .once(store.as_ref(), key, owner, self.fingerprint)
            .await
        {
            tracing::warn!(error = %e, "could not store an idempotent answer in the state store; retrying in the background");
            settle.retry(store, key.clone(), owner.clone(), self.fingerprint);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let (key, owner) = (self.key.clone(), self.owner.clone());
            Settle::Release.retry(Arc::clone(&self.store), key, owner, self.fingerprint);
        }
    }
}

/// What a ticket leaves in the store.
enum Settle {
    /// The answer, for duplicates.
    Finish {
        answer: StoredResponse,
        remaining: Duration,
    },
    /// Nothing: the key is let go.
    Release,
}

impl Settle {
    async fn once(
        &self,
        store: &dyn Store,
        key: &str,
        owner: &str,
        fingerprint: [u8; 32],
    ) -> Result<(), StoreError> {
        let id = ClaimId {
            key,
            owner,
            fingerprint,
        };
        match self {
            Settle::Finish { answer, remaining } => {
                metrics::timed("finish", store.finish(id, answer, *remaining)).await
            }
            Settle::Release => metrics::timed("release", store.release(id)).await,
        }
    }

    /// Tries in the background until the store takes it, for up to [`SETTLE_RETRY_FOR`].
    fn retry(self, store: Arc<dyn Store>, key: String, owner: String, fingerprint: [u8; 32]) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let give_up = Instant::now() + SETTLE_RETRY_FOR;
            let mut pause = Duration::from_millis(100);
            loop {
                match self.once(store.as_ref(), &key, &owner, fingerprint).await {
                    Ok(()) => return,
                    Err(e) if Instant::now() + pause > give_up => {
                        tracing::error!(error = %e, "gave up on an idempotency claim in the state store; duplicates of its key get 409 until the window ends");
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}
