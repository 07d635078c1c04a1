//! A request's steps in the store, on top of the backend's two ([`Store::take`] before the
//! request is sent, [`Store::settle`] after), and the idempotency protocol they carry (the
//! same for every backend): the first request with a key takes its claim with everything
//! else it needs and runs, holding a [`Ticket`]; a duplicate waits for the first's answer
//! (looking again every 10 ms, doubling to 200 ms), up to the wait bound, or until shutdown
//! ([`StateStore::stop_waiting`]); a ticket dropped without an answer releases the key (the
//! action certainly did not run). An answer or release the store cannot take now is retried
//! in the background; until then duplicates wait, and are never run again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::store::{ClaimId, Held, Store};
use super::{Admission, ClaimEnd, Limiter, Refund, Refused, Settle, StateStore, StoreError};
use super::{Take, Taken, metrics};
use crate::clock::Instant;
use crate::idempotency::StoredResponse;

/// How long an answer or release keeps being retried in the background.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(60);
/// How often a duplicate looks again whether the first request has finished.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// An idempotent request: its caller's key, and what it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    /// The caller (keys are per caller).
    pub caller: &'a str,
    /// The caller's `Idempotency-Key`.
    pub key: &'a str,
    /// What the request asks for (see [`crate::idempotency::fingerprint`]).
    pub fingerprint: [u8; 32],
}

/// What a request asks of the store before it is sent: see [`StateStore::take`].
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    /// Rate limiters to charge `cost` units each.
    pub limiters: &'a [&'a Limiter],
    /// The request's units (its devices; at least 1).
    pub cost: u32,
    /// Its idempotency key, when it has one.
    pub idempotency: Option<Idempotency<'a>>,
    /// Budgets and a tenant write slot.
    pub admission: Option<Admission<'a>>,
}

/// What [`StateStore::take`] came to.
pub enum Step {
    /// Everything was taken: run the request (the ticket, when keyed, keeps its answer for
    /// duplicates); each budget's count now, in order.
    Taken {
        /// The claim, when the request is keyed.
        ticket: Option<Ticket>,
        /// Devices used per budget, this request included.
        used: Vec<u64>,
    },
    /// A duplicate of a keyed request, answered from the first (nothing else was taken).
    Duplicate(Duplicate),
    /// `limiters[index]` refuses for `wait`: nothing was taken.
    Limited {
        /// Which limiter.
        index: usize,
        /// How long until it would not.
        wait: Duration,
    },
    /// The admission refused (over budget, or no write slot): the limiters were charged,
    /// nothing else was taken.
    Refused(Refused),
}

/// What a duplicate of a keyed request gets.
#[derive(Debug)]
pub enum Duplicate {
    /// The first request's answer.
    Replay(Arc<StoredResponse>),
    /// The key was used for a different request.
    Mismatch,
    /// The first request is still running past the wait bound (or shutdown began).
    InFlight,
}

/// What the store says about an idempotent request (a claim alone: see [`StateStore::claim`]).
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
    /// Takes everything `ask` asks for in one step of the store: the rate limits, then the
    /// idempotency claim, then the budgets and a tenant write slot (see [`Store::take`]). A
    /// duplicate waits for the first request (up to the bound, or until
    /// [`StateStore::stop_waiting`]) and gets its answer; if the first lets its key go, the
    /// claim and the admission are taken again (the limiters are charged once).
    pub async fn take(&self, ask: &Ask<'_>) -> Result<Step, StoreError> {
        let Some(idem) = ask.idempotency else {
            let take = Take {
                limiters: ask.limiters,
                cost: ask.cost,
                claim: None,
                admission: ask.admission.clone(),
            };
            return Ok(match self.take_once(&take).await? {
                Taken::All { used } => Step::Taken { ticket: None, used },
                // Without a claim to take, nothing holds one.
                Taken::Held(_) => Step::Duplicate(Duplicate::InFlight),
                Taken::Limited { index, wait } => Step::Limited { index, wait },
                Taken::Refused(refused) => Step::Refused(refused),
            });
        };
        let key = self.namespace.idempotency(idem.caller, idem.key);
        let mut stop = self.stop_waiting.subscribe();
        let deadline = Instant::now() + self.claims.wait;
        let mut limiters = ask.limiters;
        loop {
            let owner = uuid::Uuid::new_v4().simple().to_string();
            let id = ClaimId {
                key: &key,
                owner: &owner,
                fingerprint: idem.fingerprint,
            };
            let window = self.claims.window;
            let take = Take {
                limiters,
                cost: ask.cost,
                claim: Some((id, window)),
                admission: ask.admission.clone(),
            };
            let held = match self.take_once(&take).await? {
                Taken::All { used } => {
                    let ticket = Ticket {
                        store: Arc::clone(&self.backend),
                        key,
                        owner,
                        fingerprint: idem.fingerprint,
                        claimed: Instant::now(),
                        window,
                        done: false,
                    };
                    let ticket = Some(ticket);
                    return Ok(Step::Taken { ticket, used });
                }
                Taken::Limited { index, wait } => return Ok(Step::Limited { index, wait }),
                Taken::Refused(refused) => return Ok(Step::Refused(refused)),
                Taken::Held(held) => held,
            };
            if let Some(duplicate) = self
                .wait_for_first(&key, idem.fingerprint, held, deadline, &mut stop)
                .await?
            {
                return Ok(Step::Duplicate(duplicate));
            }
            // The first let its key go (its action did not run): take it again. The
            // limiters counted this request already.
            limiters = &[];
        }
    }

    async fn take_once(&self, take: &Take<'_>) -> Result<Taken, StoreError> {
        metrics::timed("take", self.backend.take(take)).await
    }

    /// Claims `caller`'s `key` for the request with `fingerprint` (the claim alone: a
    /// request takes it with everything else, see [`StateStore::take`]).
    pub async fn claim(
        &self,
        caller: &str,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Claim, StoreError> {
        let ask = Ask {
            idempotency: Some(Idempotency {
                caller,
                key,
                fingerprint,
            }),
            ..Ask::default()
        };
        Ok(match self.take(&ask).await? {
            Step::Taken {
                ticket: Some(ticket),
                ..
            } => Claim::Run(ticket),
            Step::Duplicate(Duplicate::Replay(answer)) => Claim::Replay(answer),
            Step::Duplicate(Duplicate::Mismatch) => Claim::Mismatch,
            _ => Claim::InFlight,
        })
    }

    /// Settles a request in one step of the store, or none when there is nothing to settle:
    /// its claim ends (with `answer` kept for duplicates, or let go without one), and
    /// `refund` gives back what it took when it was not sent. A claim the store cannot
    /// end now is ended in the background; a refund it cannot take leaves the counts high
    /// (the safe side), logged.
    pub async fn settle(
        &self,
        ticket: Option<Ticket>,
        answer: Option<StoredResponse>,
        refund: Option<Refund<'_>>,
    ) {
        match ticket {
            Some(ticket) => ticket.settle(answer, refund, false).await,
            None => {
                let Some(refund) = refund else { return };
                let settle = Settle {
                    claim: None,
                    refund: Some(refund),
                };
                if let Err(e) = metrics::timed("settle", self.backend.settle(&settle)).await {
                    tracing::warn!(error = %e, "could not give back the slot and budget of a request that was not sent");
                }
            }
        }
    }

    /// Waits for the request holding `key` (which holds `held` now) to finish, until
    /// `deadline` or until `stop` turns true (shutdown: answered [`Duplicate::InFlight`]).
    /// An answer already there wins over a shutdown under way. `None` when the key was let
    /// go.
    async fn wait_for_first(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        held: Held,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Duplicate>, StoreError> {
        let mut poll = POLL_MIN;
        let mut seen = Some(held);
        while let Some(held) = seen {
            if *held.fingerprint() != fingerprint {
                return Ok(Some(Duplicate::Mismatch));
            }
            if let Held::Done { answer, .. } = held {
                return Ok(Some(Duplicate::Replay(answer)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some(Duplicate::InFlight));
            }
            // Only between looks: a look is a read, nothing to leave half done.
            tokio::select! {
                () = tokio::time::sleep(poll.min(deadline - now)) => {}
                () = stopped(stop) => return Ok(Some(Duplicate::InFlight)),
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

/// The right to run a keyed request once. Dropping it without settling releases the key
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
    pub async fn finish(self, answer: StoredResponse) {
        self.settle(Some(answer), None, false).await;
    }

    /// [`Ticket::finish`] for an answer that went out already: the store may send it with
    /// the next request's take (see [`Store::settle_soon`]).
    pub async fn finish_soon(self, answer: StoredResponse) {
        self.settle(Some(answer), None, true).await;
    }

    /// Ends the claim (keeping `answer` for duplicates; without one, letting the key go) and
    /// gives back `refund`, in one step.
    async fn settle(
        mut self,
        answer: Option<StoredResponse>,
        refund: Option<Refund<'_>>,
        soon: bool,
    ) {
        self.done = true;
        let end = match &answer {
            Some(answer) => ClaimEnd::Finish {
                answer,
                remaining: self.window.saturating_sub(self.claimed.elapsed()),
            },
            None => ClaimEnd::Release,
        };
        let refunds = refund.is_some();
        let settle = Settle {
            claim: Some((self.id(), end)),
            refund,
        };
        let landed = match soon {
            true => self.store.settle_soon(&settle),
            false => self.store.settle(&settle),
        };
        let Err(e) = metrics::timed("settle", landed).await else {
            return;
        };
        if refunds {
            tracing::warn!(error = %e, "could not give back the slot and budget of a request that was not sent");
        }
        tracing::warn!(error = %e, "could not settle an idempotency claim in the state store; retrying in the background");
        let end = match answer {
            Some(answer) => Ending::Finish {
                remaining: self.window.saturating_sub(self.claimed.elapsed()),
                answer,
            },
            None => Ending::Release,
        };
        let (key, owner) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.owner),
        );
        end.retry(Arc::clone(&self.store), key, owner, self.fingerprint);
    }

    fn id(&self) -> ClaimId<'_> {
        ClaimId {
            key: &self.key,
            owner: &self.owner,
            fingerprint: self.fingerprint,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let (key, owner) = (self.key.clone(), self.owner.clone());
            Ending::Release.retry(Arc::clone(&self.store), key, owner, self.fingerprint);
        }
    }
}

/// How a ticket's claim ends, owned, for the background.
enum Ending {
    /// The answer, for duplicates.
    Finish {
        answer: StoredResponse,
        remaining: Duration,
    },
    /// Nothing: the key is let go.
    Release,
}

impl Ending {
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
        let end = match self {
            Ending::Finish { answer, remaining } => ClaimEnd::Finish {
                answer,
                remaining: *remaining,
            },
            Ending::Release => ClaimEnd::Release,
        };
        let settle = Settle {
            claim: Some((id, end)),
            refund: None,
        };
        metrics::timed("settle", store.settle(&settle)).await
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
