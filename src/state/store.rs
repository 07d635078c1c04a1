//! The state store's contract: what a backend (this process's memory, or Redis shared by
//! every replica) guarantees, method by method. The gateway calls it only through the
//! [`super::StateStore`] facade, which names the keys, times every call once and runs the
//! protocols built on these steps (a duplicate waiting for the first request's answer).
//! `tests/e2e/state_contract.rs` holds both backends to it.
//!
//! Common to every method:
//! - **One atomic step.** Each call is all or nothing on the store, whatever other callers
//!   (tasks, replicas) do at the same time; no call leaves a partial change.
//! - **Fail closed.** A store that cannot answer within its timeout returns [`StoreError`];
//!   nothing was changed, and the gateway refuses the request (503 `stateStoreUnavailable`)
//!   rather than guess. A backend never falls back to another.
//! - **Keys are the caller's**: the facade passes names from [`super::Namespace`], the same
//!   for both backends; a backend neither invents nor rewrites them.
//! - **Time** is the store's own: Redis's server clock, Tokio's clock in memory (so tests
//!   can pause it). Nothing a caller sends names a time, except the budget windows' ends
//!   (calendar windows the caller names in the key).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
#[cfg(doc)]
use super::{ClaimEnd, Refused};
use super::{Settle, StoreError, Take, Taken};
use crate::idempotency::StoredResponse;

/// What a store call returns, later.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What an idempotency claim holds.
#[derive(Debug, Clone)]
pub enum Held {
    /// The request that took it is running.
    Running {
        /// What that request asks for (see [`crate::idempotency::fingerprint`]).
        fingerprint: [u8; 32],
    },
    /// The request finished; duplicates get its answer.
    Done {
        /// What that request asked for.
        fingerprint: [u8; 32],
        /// Its answer.
        answer: Arc<StoredResponse>,
    },
}

impl Held {
    /// What the request holding the claim asks for.
    pub fn fingerprint(&self) -> &[u8; 32] {
        match self {
            Held::Running { fingerprint } | Held::Done { fingerprint, .. } => fingerprint,
        }
    }
}

/// One attempt's claim of a key.
#[derive(Debug, Clone, Copy)]
pub struct ClaimId<'a> {
    /// The claim's key (see [`super::Namespace::idempotency`]).
    pub key: &'a str,
    /// Who takes it: unique per attempt, so only its taker can finish or release it.
    pub owner: &'a str,
    /// What the request asks for (see [`crate::idempotency::fingerprint`]).
    pub fingerprint: [u8; 32],
}

/// A state store backend. See the module documentation for what every method guarantees;
/// each method adds its own guarantees below. A request takes what it needs in one step
/// before it is sent ([`Store::take`]) and settles in one step after ([`Store::settle`]):
/// one round trip each to a shared store. New users of the store add their steps here,
/// implemented once per backend, and are held to them by the same contract suite (pending
/// approvals use the versioned records, [`super::records`]).
pub trait Store: Send + Sync + 'static {
    /// `memory` or the Redis address, never a password: for logs and readiness.
    fn describe(&self) -> String;

    /// Whether several replicas share this store.
    fn is_shared(&self) -> bool;

    /// Whether the store answers now.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Takes what `take` asks for, in one atomic step, checking in this order:
    /// - **Rate limits**: charges a request of `take.cost` units (its devices; at least 1)
    ///   to every limiter (a GCRA: `rate.count` units at once, then one more every
    ///   `rate.per / rate.count`), or to none: [`Taken::Limited`] names the first that
    ///   refuses and how long until it would not. A cost past a limiter's burst never
    ///   conforms (the caller refuses such a request before asking). Limiters that conform
    ///   stay charged whatever follows.
    /// - **The idempotency claim** `id.key` for `id.owner`: when another attempt holds it,
    ///   [`Taken::Held`] says what it holds. Of any number of concurrent takes of one key,
    ///   exactly one takes it (across replicas, for a shared store). A claim, and later its
    ///   answer, is forgotten its window after it was taken. The memory store also holds at
    ///   most its capacity of claims: when full, it forgets the least used first (the price
    ///   of a bound in one process; size the capacity to the traffic of one window).
    /// - **The admission**: room for `devices` on every budget and one tenant write slot:
    ///   [`Refused::OverBudget`] names the first budget without room, [`Refused::Paced`]
    ///   says when a slot frees. A budget counter is kept until its
    ///   window's end (plus a minute); a pacing slot for its window.
    ///
    /// The claim, the budgets and the slot are taken together or not at all
    /// ([`Taken::All`]). Budget counts are made durable with the request's audit intent, not
    /// by this step (Redis keeps them; the memory store rebuilds them from the audit log:
    /// see `budget_log`).
    fn take<'a>(&'a self, take: &'a Take<'a>) -> StoreFuture<'a, Taken>;

    /// What the claim `key` holds now; `None` when there is none (never taken, released, or
    /// forgotten).
    fn peek<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Held>>;

    /// Settles a request in one atomic step: its claim ends ([`ClaimEnd::Finish`] keeps the
    /// answer with the claim's expiry, [`ClaimEnd::Release`] lets the key go; either leaves
    /// alone a key another owner holds now), and a refund gives back its write slot and
    /// its devices on each budget (never below zero; expiries unchanged).
    fn settle<'a>(&'a self, settle: &'a Settle<'a>) -> StoreFuture<'a, ()>;

    /// [`Store::settle`] for a claim's end nobody waits for (its request was answered
    /// already): a backend may hold it a moment, to send it together with the next request's
    /// take in one round trip. Done once it landed, as `settle`; until then the claim holds
    /// what it held.
    fn settle_soon<'a>(&'a self, settle: &'a Settle<'a>) -> StoreFuture<'a, ()> {
        self.settle(settle)
    }

    /// The record `key` and its version; `None` when there is none (never created, or
    /// past its time to live).
    fn record_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;

    /// The key of the record the claim `claim` points at; `None` when it is not taken.
    fn record_claimed<'a>(&'a self, claim: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Creates a record (version 1) with its claims, indexes and set membership, or
    /// nothing: [`Created::Claimed`] names the first claim taken and the record holding it,
    /// [`Created::Full`] says the bounded set holds its maximum of members whose records
    /// still exist (members whose records are gone are dropped first). Of any number of
    /// concurrent creations taking one claim, exactly one succeeds. Claims live as long as
    /// the record's first time to live. Changes are durable before the answer (the memory
    /// store's record file is written first).
    fn record_create<'a>(&'a self, new: &'a NewRecord<'a>) -> StoreFuture<'a, Created>;

    /// Replaces a record's document if its version is still `swap.version` (then the
    /// version goes up by one and the time to live starts again), letting go of the claims
    /// named (those still pointing at it), leaving the indexes and set named; otherwise
    /// changes nothing and answers what is there now. Of concurrent swaps from one version,
    /// exactly one succeeds (across replicas, for a shared store). Durable before the
    /// answer, like creation.
    fn record_swap<'a>(&'a self, swap: &'a Swap<'a>) -> StoreFuture<'a, Swapped>;

    /// At most `max` records of the index `index`, highest score first, skipping (and
    /// dropping from the index) those whose record is gone.
    fn record_list<'a>(
        &'a self,
        index: &'a str,
        max: usize,
    ) -> StoreFuture<'a, Vec<(String, Versioned)>>;
}
