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

use std::sync::Arc;
use std::time::Duration;

pub use budget_file::{BudgetFile, BudgetFileError};
pub use claims::{Claim, Ticket};
pub use config::{RedisSettings, StateConfig, StateSetupError};
pub use namespace::{Namespace, budget_window, default_deployment, valid_deployment};
pub use record_file::{RecordFile, RecordFileError};
pub use records::{Created, IndexEntry, NewRecord, Swap, Swapped, Versioned};
pub use store::{ClaimId, ClaimState, Held, Store, StoreFuture};

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
    /// The memory store's budget file could not be written.
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

/// One admission: budgets and a tenant write slot, taken together or not at all.
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
    namespace: Namespace,
    claims: ClaimSettings,
    /// Turned true at shutdown: duplicates stop waiting for their first request (409).
    stop_waiting: tokio::sync::watch::Sender<bool>,
}

impl StateStore {
    /// A store over `backend`.
    pub fn new(backend: Arc<dyn Store>, namespace: Namespace, claims: ClaimSettings) -> Self {
        StateStore {
            backend,
            namespace,
            claims,
            stop_waiting: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A store in this process whose budgets and approvals do not survive a restart.
    pub fn in_process(namespace: Namespace, claims: ClaimSettings) -> Self {
        let backend = memory::MemoryStore::new(None, Default::default(), claims.capacity);
        Self::new(Arc::new(backend), namespace, claims)
    }

    /// A store in this process, its budgets kept in `file` and its approvals in `records`
    /// (both read now) if given.
    pub fn memory(
        namespace: Namespace,
        claims: ClaimSettings,
        file: Option<BudgetFile>,
        records: Option<RecordFile>,
    ) -> Result<Self, StateSetupError> {
        let counts = match &file {
            Some(f) => f.load(wall_clock_secs())?,
            None => Default::default(),
        };
        let records = memory_records::MemoryRecords::open(records)?;
        let backend = memory::MemoryStore::new(file, counts, claims.capacity).with_records(records);
        Ok(Self::new(Arc::new(backend), namespace, claims))
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
            } => Self::memory(
                namespace,
                claims,
                budget_file.clone().map(BudgetFile::new),
                approvals_file.clone().map(RecordFile::new),
            ),
            StateConfig::Redis(settings) => {
                let backend = redis::RedisStore::new(settings)?;
                Ok(Self::new(Arc::new(backend), namespace, claims))
            }
        }
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

    /// Charges every limiter `cost` units (a request's devices) or none; `Some((i, wait))`
    /// when `limiters[i]` refuses.
    pub async fn limit(
        &self,
        limiters: &[Limiter],
        cost: u32,
    ) -> Result<Option<(usize, Duration)>, StoreError> {
        if limiters.is_empty() {
            return Ok(None);
        }
        metrics::timed("limit", self.backend.limit(limiters, cost.max(1))).await
    }

    /// Takes the budgets and a write slot together, or neither.
    pub async fn admit(&self, admission: &Admission<'_>) -> Result<Admit, StoreError> {
        metrics::timed("admit", self.backend.admit(admission)).await
    }

    /// Gives back a request's write slot and its devices on each budget: it was not sent
    /// after all, so neither Graph nor the budgets saw it.
    pub async fn refund(&self, refund: &Refund<'_>) -> Result<(), StoreError> {
        metrics::timed("refund", self.backend.refund(refund)).await
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
