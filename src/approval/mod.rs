//! Four-eyes approvals: a request under a rule with `approval:` is not forwarded but held,
//! bound to its exact content (`request_sha256`), until people from every named group have
//! approved it; then graphgate runs it once, through the pipeline's later stages, under the
//! policy in force then. The parts, in the order a request meets them:
//! - [`hold`]: the pipeline's gate: hold a request (202 and the resource), let a requester
//!   redeem an approved secret read, or run a break glass at once;
//! - [`model`]: the resource and its state machine (the transitions as data);
//! - [`people`]: who a requester or reviewer is (the same person behind two identities);
//! - [`review`]: who may review, and how reviews count toward the groups;
//! - [`request`]: `request_sha256`, what a review is bound to;
//! - `store` (*private*): approvals in the state store, changed only by compare-and-swap;
//! - [`events`]: every change, recorded in the audit chain and announced to subscribers;
//! - [`api`]: the approval API, `/api/v1/approvals`, `/api/v1/approvals/{id}` and its
//!   `approve`, `reject`, `cancel` and `review`;
//! - [`run`]: running what was approved, exactly once across replicas, and the deadlines;
//!   `sweep` (*private*): every replica's look at the open approvals, once a second;
//! - [`maa`]: Intune's Multi Admin Approval handled for callers, its facts (headers, the
//!   request document, the justification); `intune` (*private*): a write Intune holds
//!   becomes an approval in `external_approval_pending`, Intune's request is read with
//!   backoff, and once a person approves it there the request is sent again once;
//! - [`openapi`]: the approval API in the OpenAPI document.
//!
//! The rules themselves (`approval:`, `approver_groups:`, `break_glass:`) are the policy's:
//! [`crate::policy::approval`].

pub mod api;
pub mod error;
pub mod events;
pub mod hold;
mod intune;
pub mod maa;
pub mod model;
pub mod openapi;
pub mod people;
pub mod request;
pub mod review;
pub mod run;
mod store;
mod sweep;

use std::time::Duration;

pub use error::ApprovalError;
pub use events::{Event, Events};
pub use model::{Resource, State};
pub use run::Runner;

use crate::audit::Audit;

/// The bounds of approvals.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most pending approvals one caller may have (more are refused with 429).
    pub max_pending_per_caller: usize,
    /// How long a run may take: past it, a replica still `executing` an approval is
    /// presumed gone and the approval becomes `outcome_unknown` (never sent again).
    pub lease: Duration,
    /// How often deadlines (`ttl`, `execute_within`, leases) are looked at, and approved
    /// requests no replica has started are started.
    pub sweep_every: Duration,
    /// How Intune's Multi Admin Approval is handled.
    pub maa: maa::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_pending_per_caller: 20,
            lease: Duration::from_secs(300),
            sweep_every: Duration::from_secs(1),
            maa: maa::Settings::default(),
        }
    }
}

/// Wall-clock time in ms that moves with Tokio's clock: the wall-clock time at start plus
/// Tokio's elapsed time. Approvals' dates mean the same to every replica and after a
/// restart, and tests that pause Tokio's clock move them.
#[derive(Debug, Clone)]
pub struct Clock {
    wall_at_start_ms: u64,
    start: crate::clock::Instant,
}

impl Clock {
    /// The clock, from now.
    pub fn new() -> Self {
        Clock {
            wall_at_start_ms: crate::state::wall_clock_ms(),
            start: crate::clock::Instant::now(),
        }
    }

    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.wall_at_start_ms
            .saturating_add(ms(self.start.elapsed()))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// `ms` (since the Unix epoch) as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The gateway's approvals: their bounds, clock and events (the approvals themselves are in
/// the state store).
pub struct Approvals {
    settings: Settings,
    clock: Clock,
    events: Events,
}

impl Approvals {
    /// Approvals with `settings`, recorded in `audit`.
    pub fn new(settings: Settings, audit: Audit) -> Self {
        Approvals {
            settings,
            clock: Clock::new(),
            events: Events::new(audit),
        }
    }

    /// The same approvals, recorded in `audit` from now on.
    pub fn with_audit(self, audit: Audit) -> Self {
        Approvals {
            events: self.events.with_audit(audit),
            ..self
        }
    }

    /// Every change of every approval from now on (for notifiers).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The bounds.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[cfg(test)]
mod tests;
