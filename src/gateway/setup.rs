//! The gateway's parts: its per-request bounds ([`Limits`]), what it holds, how it is made,
//! and what admin, reload and tests may ask of it. The pipeline itself is in `gateway.rs`.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::approval::Approvals;
use crate::audit::Audit;
use crate::cloud::Cloud;
use crate::forward::{Forwarder, RetryPolicy};
use crate::identity::PeerCertificate;
use crate::identity::jwt::{IssuerRegistry, TokenIssuers, fetch::HttpLoader};
use crate::policy::Policy;
use crate::ratelimit::PolicyLimits;
use crate::slots::KeyedSlots;
use crate::state::{ClaimSettings, Namespace, StateStore};
use crate::token::TokenBroker;
use crate::upstream::HttpClient;

/// Default bound on bulk requests in flight: each may carry up to 100 devices (the largest
/// bodies, and up to 100 device decisions), so a handful of them is all one deployment needs.
pub const DEFAULT_MAX_BULK_IN_FLIGHT: u32 = 32;

/// Default dry runs per caller per second: a policy author's checks, never a flood.
pub const DEFAULT_DRY_RUNS_PER_SEC: u32 = 10;

/// Default log lines of refusals per caller (failed authentications: per source) per second.
pub const DEFAULT_LOG_REFUSALS_PER_SEC: u32 = 10;

/// Per-request bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest time to receive the request body.
    pub body_read_timeout: Duration,
    /// Longest wait for one complete Graph answer.
    pub upstream_timeout: Duration,
    /// Longest TCP connect to Entra or Graph.
    pub connect_timeout: Duration,
    /// Retries of throttled Graph calls.
    pub retry: RetryPolicy,
    /// Most requests in flight; more are shed with 503.
    pub max_in_flight: usize,
    /// Most requests in flight for one caller; more get 429, so one caller cannot starve the rest.
    pub max_in_flight_per_caller: usize,
    /// Most bulk `executeAction` requests in flight (all callers together); more get 429.
    pub max_bulk_in_flight: usize,
    /// Dry runs one caller may make per second (a burst of as many); more get 429.
    pub dry_runs_per_sec: u32,
    /// Log lines of refusals per caller (failed authentications: per source) per second;
    /// the rest are counted. 0: every one is logged.
    pub log_refusals_per_sec: u32,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered (by the memory store).
    pub idempotency_capacity: u64,
    /// Longest a duplicate waits for the first request with its key to finish (then 409).
    pub idempotency_wait: Duration,
    /// Most devices one bulk `executeAction` may list.
    pub max_bulk_devices: usize,
    /// Most approvals one caller may have pending (more are refused with 429).
    pub max_pending_approvals_per_caller: usize,
    /// Intune's Multi Admin Approval handled for callers (`--maa-handling`): justified
    /// writes, holds made approvals; off when `None`.
    pub maa: Option<crate::approval::maa::Settings>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_in_flight: 1024,
            max_in_flight_per_caller: 256,
            max_bulk_in_flight: DEFAULT_MAX_BULK_IN_FLIGHT as usize,
            dry_runs_per_sec: DEFAULT_DRY_RUNS_PER_SEC,
            log_refusals_per_sec: DEFAULT_LOG_REFUSALS_PER_SEC,
            idempotency_window: Duration::from_secs(600),
            idempotency_capacity: 100_000,
            idempotency_wait: Duration::from_secs(60),
            max_bulk_devices: crate::bulk::DEFAULT_MAX_DEVICES,
            max_pending_approvals_per_caller: 20,
            maa: None,
        }
    }
}

impl Limits {
    /// The approvals' bounds. A run's lease outlasts everything a run may wait for (a
    /// token, a pacing slot, Graph with its retries, twice over): a replica still
    /// `executing` past it is presumed gone.
    pub fn approvals(&self) -> crate::approval::Settings {
        let run = self.connect_timeout + self.upstream_timeout + self.retry.max_total_wait;
        crate::approval::Settings {
            max_pending_per_caller: self.max_pending_approvals_per_caller,
            lease: 2 * run + Duration::from_secs(60),
            maa: self.maa.clone().unwrap_or_default(),
            ..crate::approval::Settings::default()
        }
    }

    /// The idempotency settings, whichever the state store.
    pub fn claims(&self) -> ClaimSettings {
        ClaimSettings {
            capacity: self.idempotency_capacity,
            window: self.idempotency_window,
            wait: self.idempotency_wait,
        }
    }
}

/// What the listener knows about a request's connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The verified client certificate, on mutual-TLS connections that presented one.
    pub certificate: Option<Arc<PeerCertificate>>,
}

/// A policy together with the limits and token issuers' key stores it configures.
pub struct Installed {
    /// The policy.
    pub policy: Policy,
    /// Its rate limits, budgets and pacing.
    pub limits: PolicyLimits,
    /// Its token issuers' keys.
    pub tokens: TokenIssuers,
}

/// Everything a request needs; shared by all connections.
pub struct Gateway {
    pub(super) installed: ArcSwap<Installed>,
    issuers: IssuerRegistry,
    pub(super) broker: TokenBroker,
    pub(super) forwarder: Forwarder,
    /// Idempotency claims, limits, budgets and pacing: this process's or shared.
    pub(super) state: StateStore,
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) bulk_in_flight: Arc<Semaphore>,
    pub(super) refusal_logs: super::refusal_logs::RefusalLogs,
    pub(super) caller_in_flight: KeyedSlots<String>,
    pub(super) limits: Limits,
    pub(super) audit: Audit,
    /// Requests held for approval: their bounds, clock and events.
    pub(super) approvals: Approvals,
    reload_error: arc_swap::ArcSwapOption<String>,
    /// Whether the policy reloader is alive, if one follows the policy file (for readiness).
    reloader: arc_swap::ArcSwapOption<ReloaderProbe>,
    /// Set when shutdown begins: nothing more is sent to Graph (see [`Gateway::begin_drain`]).
    draining: std::sync::atomic::AtomicBool,
}

/// Asks whether the reloader following the policy file is still alive.
type ReloaderProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// Whether the reloader that follows a gateway's policy file is alive (for readiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloaderHealth {
    /// No reloader: the policy is fixed for the process's life (emulator demo, tests).
    Off,
    /// Running.
    Running,
    /// Gone (it panicked, or the process is shutting down): edits and revocations in the
    /// policy file would no longer take effect.
    Stopped,
}

impl ReloaderHealth {
    /// `off`, `running` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloaderHealth::Off => "off",
            ReloaderHealth::Running => "running",
            ReloaderHealth::Stopped => "stopped",
        }
    }
}

impl Gateway {
    /// A gateway for `cloud`, enforcing `policy`, with tokens from `broker`.
    pub fn new(
        policy: Policy,
        cloud: Cloud,
        broker: TokenBroker,
        http: HttpClient,
        limits: Limits,
    ) -> Self {
        let key = broker.key();
        let deployment = crate::state::default_deployment(&key.client, None);
        let namespace = Namespace::new(cloud, &key.tenant, &key.client, &deployment);
        let state = StateStore::in_process(namespace, limits.claims());
        Self::with_store(policy, cloud, broker, http, limits, state)
    }

    /// [`Gateway::new`] with `state` as its state store (idempotency claims, limits,
    /// budgets, pacing) instead of this process's memory.
    pub fn with_store(
        policy: Policy,
        cloud: Cloud,
        broker: TokenBroker,
        http: HttpClient,
        limits: Limits,
        state: StateStore,
    ) -> Self {
        broker
            .set_required_permissions(crate::credential::privilege::required_permissions(&policy));
        let issuers = IssuerRegistry::new(Arc::new(HttpLoader::new(http.clone())));
        let installed = Installed {
            limits: PolicyLimits::new(&policy, state.namespace()),
            tokens: issuers.for_policy(&policy),
            policy,
        };
        // Issuers' keys are fetched ahead of the first token that needs them.
        installed.tokens.warm();
        Gateway {
            installed: ArcSwap::from_pointee(installed),
            issuers,
            state,
            broker,
            forwarder: Forwarder {
                http,
                cloud,
                retry: limits.retry.clone(),
                timeout: limits.upstream_timeout,
            },
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            bulk_in_flight: Arc::new(Semaphore::new(limits.max_bulk_in_flight)),
            refusal_logs: super::refusal_logs::RefusalLogs::new(limits.log_refusals_per_sec),
            caller_in_flight: KeyedSlots::new(limits.max_in_flight_per_caller),
            approvals: Approvals::new(limits.approvals(), Audit::disabled()),
            limits,
            audit: Audit::disabled(),
            reload_error: arc_swap::ArcSwapOption::empty(),
            reloader: arc_swap::ArcSwapOption::empty(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The gateway with `audit` as its audit log (without one, nothing is audited).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.approvals = self.approvals.with_audit(audit.clone());
        self.audit = audit;
        self
    }

    /// The approvals (their events, for notifiers).
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// The audit log (for readiness).
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Records a policy reload attempt: the errors of a failed one stay visible (readiness
    /// detail) until a later reload succeeds.
    pub fn note_reload(&self, result: Result<(), &crate::policy::PolicyError>) {
        crate::metrics::policy_reload(result.is_ok());
        self.reload_error
            .store(result.err().map(|e| Arc::new(e.to_string())));
    }

    /// The errors of the latest reload, if it failed (the previous policy is in force).
    pub fn reload_error(&self) -> Option<Arc<String>> {
        self.reload_error.load_full()
    }

    /// Follows a policy reloader through `alive` (see `reload::Reloader::new`), so readiness
    /// fails once it is gone. The gateway knows nothing else of the reloader: reloading
    /// drives the gateway, never the other way round.
    pub fn follow_reloader(&self, alive: impl Fn() -> bool + Send + Sync + 'static) {
        self.reloader.store(Some(Arc::new(Box::new(alive))));
    }

    /// Whether a reloader follows the policy file, and is alive.
    pub fn reloader_health(&self) -> ReloaderHealth {
        match self.reloader.load().as_deref() {
            None => ReloaderHealth::Off,
            Some(alive) if alive() => ReloaderHealth::Running,
            Some(_) => ReloaderHealth::Stopped,
        }
    }

    /// The loaded policy's version (its hash).
    pub fn policy_hash(&self) -> String {
        self.installed.load().policy.hash.clone()
    }

    /// Replaces the policy; requests in flight keep the one they started with.
    pub fn set_policy(&self, policy: Policy) {
        let limits = PolicyLimits::new(&policy, self.state.namespace());
        self.broker
            .set_required_permissions(crate::credential::privilege::required_permissions(&policy));
        let tokens = self.issuers.for_policy(&policy);
        tokens.warm();
        self.installed.store(Arc::new(Installed {
            policy,
            limits,
            tokens,
        }));
    }

    /// The policy in force, with its limiters.
    pub fn installed(&self) -> Arc<Installed> {
        self.installed.load_full()
    }

    /// The latest least-privilege report (see [`TokenBroker::least_privilege`]).
    pub fn least_privilege(&self) -> Option<Arc<crate::credential::LeastPrivilegeReport>> {
        self.broker.least_privilege()
    }

    /// Whether Intune's Multi Admin Approval is handled for callers (`--maa-handling`).
    pub fn maa_handling(&self) -> bool {
        self.limits.maa.is_some()
    }

    /// The deployment's cloud.
    pub fn cloud(&self) -> Cloud {
        self.forwarder.cloud
    }

    /// The state store (for readiness).
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// The token broker (for readiness and tests).
    pub fn broker(&self) -> &TokenBroker {
        &self.broker
    }

    /// How many bulk requests are in flight past the pre-body policy.
    pub fn bulk_in_flight(&self) -> usize {
        self.limits
            .max_bulk_in_flight
            .saturating_sub(self.bulk_in_flight.available_permits())
    }

    /// Shutdown has begun: requests not yet sent to Graph are refused (503 with
    /// `Retry-After`, nothing sent, their idempotency keys let go), duplicates waiting for a
    /// first request stop waiting (409 with `Retry-After`), and calls already sent to Graph
    /// finish. Readiness fails from now on.
    pub fn begin_drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.stop_waiting();
    }

    /// Whether shutdown has begun (see [`Gateway::begin_drain`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests of the caller named `caller` are in flight past the pre-body policy.
    pub fn caller_in_flight(&self, caller: &str) -> usize {
        self.caller_in_flight.held(&caller.to_owned())
    }
}
