//! The single-process store (`--state memory`): limiters and pacing windows in a map on
//! Tokio's clock (so tests can pause it), budget counts in a map kept on disk by
//! [`BudgetFile`], idempotency claims in a bounded map (`memory_claims`), versioned records
//! (approvals) in `memory_records`, on disk in their own file. Nothing here is shared with
//! another process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::algo::{self, micros};
use super::budget_file::{BudgetFile, Count};
use super::memory_claims::MemoryClaims;
use super::memory_records::MemoryRecords;
use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::store::{ClaimId, ClaimState, Held, Store, StoreFuture};
use super::{Admission, Admit, BudgetCharge, Limiter, Refund, StoreError, StoreErrorKind};
use crate::idempotency::StoredResponse;

/// Past this many limiter or window entries, those that no longer hold anything back are
/// dropped (a fully refilled limiter is the same as a fresh one).
const PRUNE_AT: usize = 10_000;

#[derive(Default)]
struct Tables {
    /// Rate limiters' theoretical arrival times (µs on the store's clock).
    tats: HashMap<String, u64>,
    /// Pacing windows: admission times still in the window (µs), with their names.
    windows: HashMap<String, VecDeque<(u64, String)>>,
    /// Budget counters, by key (the key names the window).
    budgets: HashMap<String, Count>,
    /// Bumped on every budget change, to know what the file already holds.
    generation: u64,
}

/// The single-process store.
pub struct MemoryStore {
    tables: Mutex<Tables>,
    claims: MemoryClaims,
    start: tokio::time::Instant,
    file: Option<BudgetFile>,
    /// The generation the file holds; writes are serialised by the lock.
    persisted: tokio::sync::Mutex<u64>,
    records: MemoryRecords,
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        let mut files = Vec::new();
        if let Some(f) = &self.file {
            files.push(format!("budgets in {}", f.path().display()));
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

    fn claim<'a>(&'a self, id: ClaimId<'a>, window: Duration) -> StoreFuture<'a, ClaimState> {
        Box::pin(async move { Ok(self.claims.claim(id, window).await) })
    }

    fn peek<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Held>> {
        Box::pin(async move { Ok(self.claims.peek(key).await) })
    }

    fn finish<'a>(
        &'a self,
        id: ClaimId<'a>,
        answer: &'a StoredResponse,
        remaining: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.claims.finish(id, answer, remaining).await;
            Ok(())
        })
    }

    fn release<'a>(&'a self, id: ClaimId<'a>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.claims.release(id).await;
            Ok(())
        })
    }

    fn limit<'a>(
        &'a self,
        limiters: &'a [Limiter],
        cost: u32,
    ) -> StoreFuture<'a, Option<(usize, Duration)>> {
        Box::pin(async move { Ok(self.charge(limiters, cost)) })
    }

    fn admit<'a>(&'a self, admission: &'a Admission<'a>) -> StoreFuture<'a, Admit> {
        Box::pin(self.admit_at(admission, super::wall_clock_secs()))
    }

    fn refund<'a>(&'a self, refund: &'a Refund<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.give_back(refund))
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
    /// A store whose budget counts start from `file` (if given; read by the caller),
    /// keeping at most `claim_capacity` idempotency claims.
    pub fn new(
        file: Option<BudgetFile>,
        budgets: HashMap<String, Count>,
        claim_capacity: u64,
    ) -> Self {
        MemoryStore {
            tables: Mutex::new(Tables {
                budgets,
                ..Tables::default()
            }),
            claims: MemoryClaims::new(claim_capacity),
            start: crate::clock::Instant::now(),
            file,
            persisted: tokio::sync::Mutex::new(0),
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

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Charges every limiter `cost` units, or none: the first that refuses, with its wait.
    fn charge(&self, limiters: &[Limiter], cost: u32) -> Option<(usize, Duration)> {
        let now = self.now();
        let mut t = self.tables();
        if t.tats.len() > PRUNE_AT {
            t.tats.retain(|_, tat| *tat > now);
        }
        let mut next = Vec::with_capacity(limiters.len());
        for (i, l) in limiters.iter().enumerate() {
            let params = algo::gcra_params(l.rate);
            match algo::gcra(t.tats.get(&l.key).copied(), now, params, cost) {
                Ok(tat) => next.push(tat),
                Err(wait) => return Some((i, Duration::from_micros(wait))),
            }
        }
        for (l, tat) in limiters.iter().zip(next) {
            t.tats.insert(l.key.clone(), tat);
        }
        None
    }

    /// Budgets and a pacing slot, together or not at all, at `wall` (Unix seconds); counts go
    /// to the file before the answer (so before the request is forwarded).
    async fn admit_at(&self, a: &Admission<'_>, wall: u64) -> Result<Admit, StoreError> {
        let admitted = self.admit_in_memory(a, wall);
        let (Admit::Admitted { .. }, false) = (&admitted, a.budgets.is_empty()) else {
            return Ok(admitted);
        };
        if let Err(e) = self.persist().await {
            // Not on disk, so not counted: undo, and refuse (fail closed).
            self.take_back(a.budgets, a.devices);
            return Err(e);
        }
        Ok(admitted)
    }

    fn admit_in_memory(&self, a: &Admission<'_>, wall: u64) -> Admit {
        let now = self.now();
        let n = u64::from(a.devices);
        let mut t = self.tables();
        t.budgets.retain(|_, c| c.window_end > wall);
        let mut used = Vec::with_capacity(a.budgets.len());
        for (index, b) in a.budgets.iter().enumerate() {
            let so_far = t.budgets.get(&b.key).map_or(0, |c| c.used);
            if so_far + n > u64::from(b.limit) {
                return Admit::OverBudget {
                    index,
                    used: so_far,
                };
            }
            used.push(so_far + n);
        }
        if t.windows.len() > PRUNE_AT {
            let window = micros(a.pacing_window);
            t.windows
                .retain(|_, w| w.back().is_some_and(|(last, _)| last + window > now));
        }
        let taken = t.windows.entry(a.pacing_key.to_owned()).or_default();
        let window = micros(a.pacing_window);
        if let Err(wait) = algo::slide(taken, now, a.pacing_count, window, a.pacing_member) {
            return Admit::Paced(Duration::from_micros(wait));
        }
        for (b, used) in a.budgets.iter().zip(&used) {
            t.budgets.insert(
                b.key.clone(),
                Count {
                    window_end: b.window_end,
                    used: *used,
                },
            );
        }
        if !a.budgets.is_empty() {
            t.generation += 1;
        }
        Admit::Admitted { used }
    }

    /// Gives back the write slot, and `devices` on each budget (never below zero, on disk
    /// too).
    async fn give_back(&self, r: &Refund<'_>) -> Result<(), StoreError> {
        if let Some(taken) = self.tables().windows.get_mut(r.pacing_key) {
            taken.retain(|(_, member)| member != r.pacing_member);
        }
        if r.budgets.is_empty() {
            return Ok(());
        }
        self.take_back(r.budgets, r.devices);
        self.persist().await
    }

    fn take_back(&self, budgets: &[BudgetCharge], devices: u32) {
        let mut t = self.tables();
        for b in budgets {
            if let Some(c) = t.budgets.get_mut(&b.key) {
                c.used = c.used.saturating_sub(u64::from(devices));
            }
        }
        t.generation += 1;
    }

    /// Makes the current counts durable. Concurrent callers share one write: whoever holds
    /// the lock writes the newest counts, and those whose change it covered return at once.
    async fn persist(&self) -> Result<(), StoreError> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let wanted = self.tables().generation;
        let mut persisted = self.persisted.lock().await;
        if *persisted >= wanted {
            return Ok(());
        }
        let (generation, counts) = {
            let t = self.tables();
            (t.generation, t.budgets.clone())
        };
        let written = tokio::task::spawn_blocking(move || file.store(&counts)).await;
        match written {
            Ok(Ok(())) => {
                *persisted = generation;
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::new(StoreErrorKind::File, e.to_string())),
            Err(e) => Err(StoreError::new(StoreErrorKind::File, e.to_string())),
        }
    }

    /// The count a budget key holds now.
    #[cfg(test)]
    pub fn used(&self, key: &str) -> u64 {
        self.tables().budgets.get(key).map_or(0, |c| c.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rate;

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

    fn charge(key: &str, limit: u32) -> BudgetCharge {
        BudgetCharge {
            key: key.into(),
            limit,
            window_end: 1_000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiters_are_charged_all_or_nothing() {
        let store = MemoryStore::new(None, HashMap::new(), 100);
        let one = |key: &str, count| Limiter {
            key: key.into(),
            rate: Rate {
                count,
                per: Duration::from_secs(60),
            },
        };
        let both = [one("caller", 5), one("rule", 1)];
        assert_eq!(store.charge(&both, 1), None);
        assert_eq!(store.charge(&both, 1), Some((1, Duration::from_secs(60))));
        // The refusal by the rule took nothing from the caller: 4 of its 5 are left.
        for _ in 0..4 {
            assert_eq!(store.charge(&both[..1], 1), None);
        }
        assert!(store.charge(&both[..1], 1).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_request_counts_once_per_device_and_fits_whole_or_not_at_all() {
        let store = MemoryStore::new(None, HashMap::new(), 100);
        let budgets = [charge("caller", 10), charge("tenant", 100)];
        let a = store.admit_at(&pacing(&budgets, 7, 100), 0).await.unwrap();
        assert_eq!(a, Admit::Admitted { used: vec![7, 7] });
        assert_eq!(
            store.admit_at(&pacing(&budgets, 4, 100), 0).await.unwrap(),
            Admit::OverBudget { index: 0, used: 7 },
            "7 + 4 devices would pass the caller's 10"
        );
        assert_eq!(
            store.used("tenant"),
            7,
            "nothing was taken from the tenant either"
        );
        assert_eq!(
            store.admit_at(&pacing(&budgets, 3, 100), 0).await.unwrap(),
            Admit::Admitted { used: vec![10, 10] }
        );
        let refund = Refund {
            pacing_key: "pace",
            pacing_member: "m",
            budgets: &budgets,
            devices: 3,
        };
        store.give_back(&refund).await.unwrap();
        assert_eq!((store.used("caller"), store.used("tenant")), (7, 7));
        // A window that has ended no longer counts.
        assert_eq!(
            store
                .admit_at(&pacing(&budgets, 1, 100), 1_000)
                .await
                .unwrap(),
            Admit::Admitted { used: vec![1, 1] }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_refusals_take_no_budget() {
        let store = MemoryStore::new(None, HashMap::new(), 100);
        let budgets = [charge("caller", 10)];
        assert!(matches!(
            store.admit_at(&pacing(&budgets, 1, 1), 0).await.unwrap(),
            Admit::Admitted { .. }
        ));
        assert_eq!(
            store.admit_at(&pacing(&budgets, 1, 1), 0).await.unwrap(),
            Admit::Paced(Duration::from_secs(10))
        );
        assert_eq!(store.used("caller"), 1);
    }

    #[tokio::test]
    async fn counts_reach_the_file_before_the_answer_and_a_failed_write_refuses() {
        let dir = std::env::temp_dir().join(format!("gg-mem-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = BudgetFile::new(dir.join("b.json"));
        let store = MemoryStore::new(Some(file.clone()), HashMap::new(), 100);
        let budgets = [charge("caller", 10)];
        store.admit_at(&pacing(&budgets, 2, 100), 0).await.unwrap();
        assert_eq!(file.load(0).unwrap()["caller"].used, 2);
        // The directory is gone: the count cannot be made durable, so it is not taken.
        std::fs::remove_dir_all(&dir).unwrap();
        let err = store
            .admit_at(&pacing(&budgets, 1, 100), 0)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::File);
        assert_eq!(store.used("caller"), 2);
    }
}
