//! Shared state: idempotency claims, rate limiters, the tenant write pacing and the daily
//! budgets, kept either in this process (`--state memory`) or in Redis/Valkey shared by every
//! replica (`--state redis://...`). The gateway calls one [`StateStore`] either way. A store
//! that cannot answer within its timeout is an error the gateway refuses on (fail closed);
//! there is no silent fallback from Redis to memory.
//!
//! Layout: `keys` (names), `algo` (the limits' arithmetic), `memory` + `memory_claims` +
//! `budget_file` (one process), `redis` + `redis_claims` + `scripts/` (shared), `config`
//! (the setting), `metrics`.

mod algo;
mod budget_file;
pub mod config;
mod keys;
mod memory;
mod memory_claims;
pub(crate) mod metrics;
mod redis;
mod redis_claims;

use std::sync::Arc;
use std::time::Duration;

pub use budget_file::{BudgetFile, BudgetFileError};
pub use config::{RedisSettings, StateConfig, StateSetupError};
pub use keys::{Namespace, budget_window, default_deployment, valid_deployment};
pub use memory_claims::IdempotencyStore;

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

/// The right to run a keyed request once. Dropping it without finishing releases the key
/// (the action certainly did not run), so a retry may run it.
pub struct Ticket(TicketInner);

enum TicketInner {
    Memory(memory_claims::MemoryTicket),
    Redis(redis_claims::RedisTicket),
}

impl Ticket {
    fn memory(t: memory_claims::MemoryTicket) -> Self {
        Ticket(TicketInner::Memory(t))
    }

    /// Stores the answer for duplicates. A shared store that cannot take it now gets it
    /// in the background; until then duplicates wait, and are never run again.
    pub async fn finish(self, stored: StoredResponse) {
        match self.0 {
            TicketInner::Memory(t) => t.finish(stored),
            TicketInner::Redis(t) => t.finish(stored).await,
        }
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

enum Backend {
    Memory(Box<memory::MemoryStore>, IdempotencyStore),
    Redis(redis::RedisStore),
}

/// The gateway's state store.
pub struct StateStore {
    backend: Backend,
    namespace: Namespace,
    /// Turned true at shutdown: duplicates stop waiting for their first request (409).
    stop_waiting: tokio::sync::watch::Sender<bool>,
}

impl StateStore {
    /// A store in this process whose budgets do not survive a restart.
    pub fn in_process(namespace: Namespace, claims: ClaimSettings) -> Self {
        StateStore {
            backend: Backend::Memory(
                Box::new(memory::MemoryStore::new(None, Default::default())),
                IdempotencyStore::new(claims.capacity, claims.window, claims.wait),
            ),
            namespace,
            stop_waiting: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A store in this process, its budgets kept in `file` (read now) if given.
    pub fn memory(
        namespace: Namespace,
        claims: ClaimSettings,
        file: Option<BudgetFile>,
    ) -> Result<Self, StateSetupError> {
        let counts = match &file {
            Some(f) => f.load(wall_clock_secs())?,
            None => Default::default(),
        };
        let claims_store = IdempotencyStore::new(claims.capacity, claims.window, claims.wait);
        Ok(StateStore {
            backend: Backend::Memory(
                Box::new(memory::MemoryStore::new(file, counts)),
                claims_store,
            ),
            namespace,
            stop_waiting: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The store `config` names. Redis is connected to lazily: a gateway starts while Redis
    /// is down (its readiness fails and privileged requests are refused until it is up).
    pub fn open(
        config: &StateConfig,
        namespace: Namespace,
        claims: ClaimSettings,
    ) -> Result<Self, StateSetupError> {
        match config {
            StateConfig::Memory { budget_file } => {
                Self::memory(namespace, claims, budget_file.clone().map(BudgetFile::new))
            }
            StateConfig::Redis(settings) => Ok(StateStore {
                backend: Backend::Redis(redis::RedisStore::new(settings, claims)?),
                namespace,
                stop_waiting: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// `memory` or the Redis address (never a password): for logs and readiness.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Memory(m, _) => match m.file() {
                Some(f) => format!("memory (budgets in {})", f.path().display()),
                None => "memory".to_owned(),
            },
            Backend::Redis(r) => r.describe().to_owned(),
        }
    }

    /// Whether replicas share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// The key names of this deployment.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The in-process idempotency claims (memory store only; for tests).
    pub fn idempotency(&self) -> Option<&IdempotencyStore> {
        match &self.backend {
            Backend::Memory(_, claims) => Some(claims),
            Backend::Redis(_) => None,
        }
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(..) => Ok(()),
            Backend::Redis(r) => metrics::timed("ping", r.ping()).await,
        }
    }

    /// Claims `caller`'s `key` for the request with `fingerprint`; a duplicate waits for the
    /// first (up to the bound, or until [`StateStore::stop_waiting`]) and gets its answer.
    pub async fn claim(
        &self,
        caller: &str,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Claim, StoreError> {
        let stop = self.stop_waiting.subscribe();
        match &self.backend {
            // In-process: nothing to time or fail (a duplicate's wait is not a store's latency).
            Backend::Memory(_, claims) => Ok(claims.claim(caller, key, fingerprint, stop).await),
            Backend::Redis(r) => {
                r.claim(&self.namespace.idempotency(caller, key), fingerprint, stop)
                    .await
            }
        }
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
        match &self.backend {
            Backend::Memory(m, _) => {
                metrics::timed("limit", async { Ok(m.limit(limiters, cost)) }).await
            }
            Backend::Redis(r) => metrics::timed("limit", r.limit(limiters, cost)).await,
        }
    }

    /// Takes the budgets and a write slot together, or neither.
    pub async fn admit(&self, admission: &Admission<'_>) -> Result<Admit, StoreError> {
        match &self.backend {
            Backend::Memory(m, _) => {
                metrics::timed("admit", m.admit(admission, wall_clock_secs())).await
            }
            Backend::Redis(r) => metrics::timed("admit", r.admit(admission)).await,
        }
    }

    /// Gives back a request's write slot and its devices on each budget: it was not sent
    /// after all, so neither Graph nor the budgets saw it.
    pub async fn refund(&self, refund: &Refund<'_>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m, _) => metrics::timed("refund", m.refund(refund)).await,
            Backend::Redis(r) => metrics::timed("refund", r.refund(refund)).await,
        }
    }
}

/// Seconds since the Unix epoch, for the calendar windows of budgets. (Budgets follow the
/// wall clock, not Tokio's: a day is a UTC date, whatever the process did meanwhile.)
pub fn wall_clock_secs() -> u64 {
    crate::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Resolves once `stop` turns true; never if its sender is gone (nothing will stop the wait).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
