//! Shared state: idempotency claims, rate limiters, the tenant write pacing and the daily
//! budgets, kept either in this process (`--state memory`) or in Redis/Valkey shared by every
//! replica (`--state redis://...`). The gateway calls one [`StateStore`] either way; the
//! backends implement one contract, the [`Store`] trait. A store that cannot answer within
//! its timeout is an error the gateway refuses on (fail closed); there is no silent fallback
//! from Redis to memory.

pub mod algo;
mod budget_file;
mod claims;
pub mod config;
mod durable;
mod memory;
mod memory_claims;
mod memory_records;
pub(crate) mod metrics;
mod namespace;
mod record_file;
pub mod records;
mod redis;
mod redis_claims;
mod redis_records;
pub mod scripts;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use budget_file::{BudgetFile, BudgetFileError, Count, Snapshot};
pub use claims::{Ask, Claim, Duplicate, Idempotency, Step, Ticket};
pub use config::{RedisSettings, StateConfig, StateSetupError};
pub use namespace::{Namespace, budget_window, default_deployment, valid_deployment};
pub use record_file::{RecordFile, RecordFileError};
pub use records::{Created, IndexEntry, NewRecord, Swap, Swapped, Versioned};
pub use store::{ClaimId, Held, Store, StoreFuture};

use crate::idempotency::StoredResponse;
use crate::policy::Rate;

/// What kind of failure kept the store from answering (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No answer within the timeout.
    Timeout,
    /// No connection (refused, dropped, DNS, TLS).
    Connection,
    /// The store refused the credentials.
    Auth,
    /// The store answered with an error or something unexpected.
    Response,
    /// A file the store keeps could not be read or written.
    File,
}

impl StoreErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Connection => "connection",
            StoreErrorKind::Auth => "auth",
            StoreErrorKind::Response => "response",
            StoreErrorKind::File => "file",
        }
    }
}

/// The state store could not answer; nothing that depended on it was done.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} ({detail})", self.kind.as_str())]
pub struct StoreError {
    kind: StoreErrorKind,
    detail: String,
}

impl StoreError {
    /// An error of `kind`, with a detail for logs and readiness (never a secret).
    pub fn new(kind: StoreErrorKind, detail: impl Into<String>) -> Self {
        StoreError {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

/// A rate limiter to charge: its key and rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    /// The limiter's key (see [`Namespace::rate`]).
    pub key: String,
    /// Its rate.
    pub rate: Rate,
}

/// A budget counter to charge, in the window it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCharge {
    /// The counter's key, naming the window (see [`budget_window`]).
    pub key: String,
    /// Devices allowed in the window.
    pub limit: u32,
    /// When the window ends (Unix seconds): the counter expires then.
    pub window_end: u64,
}

/// Budgets and a tenant write slot, taken together or not at all.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    /// The pacing window's key.
    pub pacing_key: &'a str,
    /// This admission's name in the window (unique), so its slot can be given back.
    pub pacing_member: &'a str,
    /// Writes allowed in any pacing window.
    pub pacing_count: u32,
    /// The pacing window.
    pub pacing_window: Duration,
    /// The budgets that apply.
    pub budgets: &'a [BudgetCharge],
    /// How many devices the request acts on (each budget counts them all).
    pub devices: u32,
}

/// What to give back for a request that was not sent after all.
#[derive(Debug, Clone)]
pub struct Refund<'a> {
    /// The pacing window's key.
    pub pacing_key: &'a str,
    /// The admission's name in it.
    pub pacing_member: &'a str,
    /// The budgets it was counted on.
    pub budgets: &'a [BudgetCharge],
    /// Its devices.
    pub devices: u32,
}

/// What an admission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Taken: each budget's count now (in order).
    Admitted {
        /// Devices used per budget, this request included.
        used: Vec<u64>,
    },
    /// `budgets[index]` has no room for the devices (nothing was taken).
    OverBudget {
        /// Which budget.
        index: usize,
        /// Its count.
        used: u64,
    },
    /// No write slot free for this long (nothing was taken).
    Paced(Duration),
}

/// Why an admission was refused; nothing of it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `budgets[index]` has no room for the devices.
    OverBudget {
        /// Which budget.
        index: usize,
        /// Its count.
        used: u64,
    },
    /// No write slot free for this long.
    Paced(Duration),
}

impl From<Refused> for Admit {
    fn from(refused: Refused) -> Admit {
        match refused {
            Refused::OverBudget { index, used } => Admit::OverBudget { index, used },
            Refused::Paced(wait) => Admit::Paced(wait),
        }
    }
}

/// Everything a request takes from the store before it is sent, in one atomic step
/// ([`Store::take`]), in this order: its rate limits, its idempotency claim, its budgets and
/// a tenant write slot. Each part is optional.
#[derive(Debug, Clone, Default)]
pub struct Take<'a> {
    /// Limiters to charge `cost` units each.
    pub limiters: &'a [&'a Limiter],
    /// The request's units on the limiters (its devices; at least 1).
    pub cost: u32,
    /// The idempotency claim to take, and how long it is kept.
    pub claim: Option<(ClaimId<'a>, Duration)>,
    /// Budgets and a write slot to take.
    pub admission: Option<Admission<'a>>,
}

/// What [`Store::take`] came to. Limiters that conform are charged whatever follows (they
/// count the attempts that pass them); the claim, the budgets and the slot are taken only
/// together, when nothing refuses.
#[derive(Debug, Clone)]
pub enum Taken {
    /// Everything asked for was taken; each budget's count now (in order).
    All {
        /// Devices used per budget, this request included.
        used: Vec<u64>,
    },
    /// `limiters[index]` refuses for this long; nothing was taken.
    Limited {
        /// Which limiter.
        index: usize,
        /// How long until it would not.
        wait: Duration,
    },
    /// Another request holds the claim: the limiters were charged, nothing else taken.
    Held(Held),
    /// The admission refused: the limiters were charged, the claim was not taken.
    Refused(Refused),
}

/// How a request's claim ends.
#[derive(Debug, Clone, Copy)]
pub enum ClaimEnd<'a> {
    /// The action may have run: duplicates get `answer` from now on. If the claim is gone
    /// (a Redis that restarted empty), the answer is stored afresh for `remaining` (zero:
    /// not at all).
    Finish {
        /// The answer kept for duplicates.
        answer: &'a StoredResponse,
        /// What is left of the claim's window.
        remaining: Duration,
    },
    /// The action certainly did not run: the key is let go, so a retry may run it.
    Release,
}

/// Everything a request leaves in the store once it is answered, in one atomic step
/// ([`Store::settle`]): how its claim ends, and what it gives back when it was not sent.
#[derive(Debug, Clone, Default)]
pub struct Settle<'a> {
    /// The claim it took, and how that ends.
    pub claim: Option<(ClaimId<'a>, ClaimEnd<'a>)>,
    /// Its write slot and budget room, given back (it was not sent after all).
    pub refund: Option<Refund<'a>>,
}

impl Settle<'_> {
    /// Whether there is anything to settle.
    pub fn is_empty(&self) -> bool {
        self.claim.is_none() && self.refund.is_none()
    }
}

/// Settings of the idempotency claims, whichever the store.
#[derive(Debug, Clone, Copy)]
pub struct ClaimSettings {
    /// Most keys one process remembers (the memory store's bound).
    pub capacity: u64,
    /// How long a key is remembered.
    pub window: Duration,
    /// Longest a duplicate waits for the first request to finish.
    pub wait: Duration,
}

/// The gateway's state store: one [`Store`] backend, the key names of this deployment, and
/// the idempotency settings. Every call to the backend is timed here, once, by operation.
pub struct StateStore {
    backend: Arc<dyn Store>,
    /// The same backend when it is this process's memory (its budget counts are read for
    /// snapshots).
    memory: Option<Arc<memory::MemoryStore>>,
    namespace: Namespace,
    claims: ClaimSettings,
    /// Turned true at shutdown: duplicates stop waiting for their first request (409).
    stop_waiting: tokio::sync::watch::Sender<bool>,
    /// Room for settles running after their answers went out (see
    /// [`StateStore::finish`]): one permit each, [`MAX_SETTLES_AFTER_ANSWER`] in all.
    settles: Arc<tokio::sync::Semaphore>,
}

/// At most this many settles run after their answers went out; past it, a request waits
/// for its own settle before it is answered (as every request did before).
pub const MAX_SETTLES_AFTER_ANSWER: usize = 1024;

impl StateStore {
    /// A store over `backend`.
    pub fn new(backend: Arc<dyn Store>, namespace: Namespace, claims: ClaimSettings) -> Self {
        StateStore {
            backend,
            memory: None,
            namespace,
            claims,
            stop_waiting: tokio::sync::watch::Sender::new(false),
            settles: Arc::new(tokio::sync::Semaphore::new(MAX_SETTLES_AFTER_ANSWER)),
        }
    }

    /// A store in this process whose budgets and approvals do not survive a restart.
    pub fn in_process(namespace: Namespace, claims: ClaimSettings) -> Self {
        let backend = memory::MemoryStore::new(HashMap::new(), claims.capacity, None);
        Self::on_memory(Arc::new(backend), namespace, claims)
    }

    /// A store in this process whose budget counts start from `budgets` (their snapshots
    /// go to `budget_file`, if given) and whose approvals are kept in `records` (read now),
    /// if given.
    pub fn memory(
        namespace: Namespace,
        claims: ClaimSettings,
        budgets: HashMap<String, Count>,
        budget_file: Option<&BudgetFile>,
        records: Option<RecordFile>,
    ) -> Result<Self, StateSetupError> {
        let records = memory_records::MemoryRecords::open(records)?;
        let path = budget_file.map(|f| f.path().to_path_buf());
        let backend = memory::MemoryStore::new(budgets, claims.capacity, path);
        let backend = Arc::new(backend.with_records(records));
        Ok(Self::on_memory(backend, namespace, claims))
    }

    fn on_memory(
        backend: Arc<memory::MemoryStore>,
        namespace: Namespace,
        claims: ClaimSettings,
    ) -> Self {
        let mut store = Self::new(Arc::clone(&backend) as Arc<dyn Store>, namespace, claims);
        store.memory = Some(backend);
        store
    }

    /// The store `config` names. Redis is connected to lazily: a gateway starts while Redis
    /// is down (its readiness fails and privileged requests are refused until it is up).
    pub fn open(
        config: &StateConfig,
        namespace: Namespace,
        claims: ClaimSettings,
    ) -> Result<Self, StateSetupError> {
        match config {
            StateConfig::Memory {
                budget_file,
                approvals_file,
            } => {
                let file = budget_file.clone().map(BudgetFile::new);
                let counts = match &file {
                    Some(f) => f.load(wall_clock_secs())?.counts,
                    None => HashMap::new(),
                };
                let records = approvals_file.clone().map(RecordFile::new);
                Self::memory(namespace, claims, counts, file.as_ref(), records)
            }
            StateConfig::Redis(settings) => {
                let backend = redis::RedisStore::new(settings)?;
                Ok(Self::new(Arc::new(backend), namespace, claims))
            }
        }
    }

    /// The memory store's budget counts of windows not over yet, and the generation they are
    /// of (it changes with every count); `None` for a shared store, which keeps its own.
    pub fn budget_counts(&self) -> Option<(u64, HashMap<String, Count>)> {
        let memory = self.memory.as_ref()?;
        Some(memory.budgets(wall_clock_secs()))
    }

    /// `memory` or the Redis address (never a password): for logs and readiness.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Whether replicas share this store.
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// The key names of this deployment.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        metrics::timed("ping", self.backend.ping()).await
    }

    /// Shutdown: every duplicate waiting for its first request stops waiting now, answered
    /// [`Claim::InFlight`] (its caller gets 409 with `Retry-After`, and retries elsewhere).
    /// Claims themselves are untouched: a first request still running keeps its key.
    pub fn stop_waiting(&self) {
        self.stop_waiting.send_replace(true);
    }

    /// Keeps `answer` with the claim `ticket` holds, for duplicates. On a shared store the
    /// request is answered first: the settle (one round trip) runs after, in the
    /// background, at most [`MAX_SETTLES_AFTER_ANSWER`] at once (past that, here). Until it
    /// lands the claim stays held, so a duplicate meanwhile waits for the answer (or gets
    /// 409 once its wait bound passes), and is never sent. Shutdown waits for them
    /// ([`StateStore::settled`]). In this process there is no round trip to save: at once.
    pub async fn finish(&self, ticket: Ticket, answer: StoredResponse) {
        if self.backend.is_shared()
            && let Ok(permit) = Arc::clone(&self.settles).try_acquire_owned()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                ticket.finish_soon(answer).await;
                drop(permit);
            });
            return;
        }
        ticket.finish(answer).await;
    }

    /// Waits, up to `within`, for the settles still running after their answers went out
    /// (shutdown, once nothing more is served); `false` if some had not landed by then.
    pub async fn settled(&self, within: Duration) -> bool {
        let running = MAX_SETTLES_AFTER_ANSWER - self.settles.available_permits();
        if running == 0 {
            return true;
        }
        tracing::info!(
            settles = running,
            "waiting for the state store to keep the answers already given"
        );
        let all = u32::try_from(MAX_SETTLES_AFTER_ANSWER).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.settles.acquire_many(all))
            .await
            .is_ok()
    }

    /// Charges every limiter `cost` units (a request's devices) or none; `Some((i, wait))`
    /// when `limiters[i]` refuses. (A request that is sent takes its limits with everything
    /// else: [`StateStore::take`].)
    pub async fn limit(
        &self,
        limiters: &[Limiter],
        cost: u32,
    ) -> Result<Option<(usize, Duration)>, StoreError> {
        if limiters.is_empty() {
            return Ok(None);
        }
        let limiters: Vec<&Limiter> = limiters.iter().collect();
        let ask = Ask {
            limiters: &limiters,
            cost: cost.max(1),
            ..Ask::default()
        };
        Ok(match self.take(&ask).await? {
            Step::Limited { index, wait } => Some((index, wait)),
            _ => None,
        })
    }

    /// Takes the budgets and a write slot together, or neither.
    pub async fn admit(&self, admission: &Admission<'_>) -> Result<Admit, StoreError> {
        let ask = Ask {
            admission: Some(admission.clone()),
            ..Ask::default()
        };
        Ok(match self.take(&ask).await? {
            Step::Taken { used, .. } => Admit::Admitted { used },
            Step::Refused(refused) => refused.into(),
            // Nothing else was asked for.
            Step::Limited { .. } | Step::Duplicate(_) => Admit::Admitted { used: Vec::new() },
        })
    }

    /// Gives back a request's write slot and its devices on each budget: it was not sent
    /// after all, so neither Graph nor the budgets saw it.
    pub async fn refund(&self, refund: &Refund<'_>) -> Result<(), StoreError> {
        let settle = Settle {
            claim: None,
            refund: Some(refund.clone()),
        };
        metrics::timed("settle", self.backend.settle(&settle)).await
    }
}

/// Milliseconds since the Unix epoch (the memory store's records keep wall-clock expiries,
/// so its file means the same after a restart).
pub(crate) fn wall_clock_ms() -> u64 {
    crate::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch, for the calendar windows of budgets. (Budgets follow the
/// wall clock, not Tokio's: a day is a UTC date, whatever the process did meanwhile.)
pub fn wall_clock_secs() -> u64 {
    crate::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
