//! The single-process store (`--state memory`): limiters, pacing windows and budget counts
//! ([`Counters`]) on Tokio's clock (so tests can pause it), idempotency claims in a bounded
//! map (`memory_claims`), every step under one lock. Budget counts survive a restart by the
//! audit log (see [`crate::ratelimit::ledger`]); versioned records (approvals) live in
//! `memory_records`, on disk in their own file. Nothing here is shared with another process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::algo::{Counters, micros};
use super::budget_file::Count;
use super::memory_claims::MemoryClaims;
use super::memory_records::MemoryRecords;
use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::store::{Held, Store, StoreFuture};
use super::{Settle, Take, Taken};

/// The single-process store.
pub struct MemoryStore {
    /// Every step holds this lock throughout (the claims change only under it too).
    counters: Mutex<Counters>,
    claims: MemoryClaims,
    start: tokio::time::Instant,
    /// The budget file whose snapshots this store's counts go to, if any (for `describe`).
    budget_file: Option<PathBuf>,
    records: MemoryRecords,
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        let mut files = Vec::new();
        if let Some(path) = &self.budget_file {
            files.push(format!("budgets in {}", path.display()));
        }
        if let Some(f) = self.records.file() {
            files.push(format!("approvals in {}", f.path().display()));
        }
        match files.is_empty() {
            true => "memory".to_owned(),
            false => format!("memory ({})", files.join(", ")),
        }
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn take<'a>(&'a self, take: &'a Take<'a>) -> StoreFuture<'a, Taken> {
        let taken = self.take_at(take, super::wall_clock_secs());
        Box::pin(async move { Ok(taken) })
    }

    fn peek<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Held>> {
        let held = self.claims.held(key);
        Box::pin(async move { Ok(held) })
    }

    fn settle<'a>(&'a self, settle: &'a Settle<'a>) -> StoreFuture<'a, ()> {
        self.settle_now(settle);
        Box::pin(async { Ok(()) })
    }

    fn record_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move { Ok(self.records.get(key)) })
    }

    fn record_claimed<'a>(&'a self, claim: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move { Ok(self.records.claimed(claim)) })
    }

    fn record_create<'a>(&'a self, new: &'a NewRecord<'a>) -> StoreFuture<'a, Created> {
        Box::pin(self.records.create(new))
    }

    fn record_swap<'a>(&'a self, swap: &'a Swap<'a>) -> StoreFuture<'a, Swapped> {
        Box::pin(self.records.swap(swap))
    }

    fn record_list<'a>(
        &'a self,
        index: &'a str,
        max: usize,
    ) -> StoreFuture<'a, Vec<(String, Versioned)>> {
        Box::pin(async move { Ok(self.records.list(index, max)) })
    }
}

impl MemoryStore {
    /// A store whose budget counts start from `budgets`, keeping at most `claim_capacity`
    /// idempotency claims; `budget_file` is where their snapshots go (named in logs and
    /// readiness).
    pub fn new(
        budgets: HashMap<String, Count>,
        claim_capacity: u64,
        budget_file: Option<PathBuf>,
    ) -> Self {
        MemoryStore {
            counters: Mutex::new(Counters::with_budgets(budgets)),
            claims: MemoryClaims::new(claim_capacity),
            start: crate::clock::Instant::now(),
            budget_file,
            records: MemoryRecords::in_memory(),
        }
    }

    /// The store with `records` as its versioned records (read from their file).
    pub fn with_records(mut self, records: MemoryRecords) -> Self {
        self.records = records;
        self
    }

    fn now(&self) -> u64 {
        micros(self.start.elapsed())
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One take, with budget windows at `wall` (Unix seconds).
    fn take_at(&self, take: &Take<'_>, wall: u64) -> Taken {
        let now = self.now();
        let mut counters = self.counters();
        let held = |key: &str| self.claims.held(key);
        let claim_key = take.claim.as_ref().map(|(id, _)| id.key);
        let taken = counters.take(take, || claim_key.and_then(held), now, wall);
        if let (Taken::All { .. }, Some((id, window))) = (&taken, &take.claim) {
            self.claims.take(*id, *window);
        }
        taken
    }

    fn settle_now(&self, settle: &Settle<'_>) {
        let mut counters = self.counters();
        if let Some((id, end)) = &settle.claim {
            self.claims.end(*id, *end);
        }
        if let Some(refund) = &settle.refund {
            counters.refund(refund);
        }
    }

    /// The budget counts of windows not over at `wall` (Unix seconds), and the generation
    /// they are of (it changes with every count).
    pub fn budgets(&self, wall: u64) -> (u64, HashMap<String, Count>) {
        self.counters().budgets(wall)
    }

    /// The count a budget key holds now.
    #[cfg(test)]
    pub fn used(&self, key: &str) -> u64 {
        self.counters().used(key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::Rate;
    use crate::state::{Admission, Admit, BudgetCharge, ClaimId, Limiter, Refund, Refused};

    fn pacing<'a>(budgets: &'a [BudgetCharge], devices: u32, count: u32) -> Admission<'a> {
        Admission {
            pacing_key: "pace",
            pacing_member: "m",
            pacing_count: count,
            pacing_window: Duration::from_secs(10),
            budgets,
            devices,
        }
    }

    fn admit(store: &MemoryStore, a: Admission<'_>, wall: u64) -> Admit {
        let take = Take {
            admission: Some(a),
            ..Take::default()
        };
        match store.take_at(&take, wall) {
            Taken::All { used } => Admit::Admitted { used },
            Taken::Refused(refused) => refused.into(),
            other => panic!("{other:?}"),
        }
    }

    fn charge(key: &str, limit: u32) -> BudgetCharge {
        BudgetCharge {
            key: key.into(),
            limit,
            window_end: 1_000,
        }
    }

    fn store() -> MemoryStore {
        MemoryStore::new(HashMap::new(), 100, None)
    }

    #[tokio::test(start_paused = true)]
    async fn limiters_are_charged_all_or_nothing() {
        let store = store();
        let one = |key: &str, count| Limiter {
            key: key.into(),
            rate: Rate {
                count,
                per: Duration::from_secs(60),
            },
        };
        let both = [one("caller", 5), one("rule", 1)];
        let limit = |limiters: &[Limiter]| {
            let limiters: Vec<&Limiter> = limiters.iter().collect();
            let take = Take {
                limiters: &limiters,
                cost: 1,
                ..Take::default()
            };
            match store.take_at(&take, 0) {
                Taken::All { .. } => None,
                Taken::Limited { index, wait } => Some((index, wait)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(limit(&both), None);
        assert_eq!(limit(&both), Some((1, Duration::from_secs(60))));
        // The refusal by the rule took nothing from the caller: 4 of its 5 are left.
        for _ in 0..4 {
            assert_eq!(limit(&both[..1]), None);
        }
        assert!(limit(&both[..1]).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_request_counts_once_per_device_and_fits_whole_or_not_at_all() {
        let store = store();
        let budgets = [charge("caller", 10), charge("tenant", 100)];
        let a = admit(&store, pacing(&budgets, 7, 100), 0);
        assert_eq!(a, Admit::Admitted { used: vec![7, 7] });
        assert_eq!(
            admit(&store, pacing(&budgets, 4, 100), 0),
            Admit::OverBudget { index: 0, used: 7 },
            "7 + 4 devices would pass the caller's 10"
        );
        assert_eq!(
            store.used("tenant"),
            7,
            "nothing was taken from the tenant either"
        );
        assert_eq!(
            admit(&store, pacing(&budgets, 3, 100), 0),
            Admit::Admitted { used: vec![10, 10] }
        );
        let refund = Refund {
            pacing_key: "pace",
            pacing_member: "m",
            budgets: &budgets,
            devices: 3,
        };
        store.settle_now(&Settle {
            claim: None,
            refund: Some(refund),
        });
        assert_eq!((store.used("caller"), store.used("tenant")), (7, 7));
        // A window that has ended no longer counts.
        assert_eq!(
            admit(&store, pacing(&budgets, 1, 100), 1_000),
            Admit::Admitted { used: vec![1, 1] }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_refusals_take_no_budget_and_no_claim() {
        let store = store();
        let budgets = [charge("caller", 10)];
        assert!(matches!(
            admit(&store, pacing(&budgets, 1, 1), 0),
            Admit::Admitted { .. }
        ));
        let id = ClaimId {
            key: "k",
            owner: "o",
            fingerprint: [1; 32],
        };
        let take = Take {
            claim: Some((id, Duration::from_secs(60))),
            admission: Some(pacing(&budgets, 1, 1)),
            ..Take::default()
        };
        assert!(matches!(
            store.take_at(&take, 0),
            Taken::Refused(Refused::Paced(wait)) if wait == Duration::from_secs(10)
        ));
        assert_eq!(store.used("caller"), 1);
        assert!(store.claims.held("k").is_none(), "the claim was not taken");
    }
}
