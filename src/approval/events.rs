//! Every change of an approval, announced from one place ([`Events::emit`], called only when
//! the store has taken the change): an `approval` record in the audit chain (with the
//! approval id and `request_sha256`) and a typed [`Event`] to whoever subscribes. Notifiers
//! (webhooks, chat) subscribe; they are told, and never decide anything.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::model::{Resource, State};
use crate::audit::Audit;
use crate::audit::records::record::{AuditDecision, Entry, Kind, now_rfc3339};

/// How many events a slow subscriber may fall behind before it misses some (it is told how
/// many it missed; the state machine never waits for it).
const BACKLOG: usize = 1_024;

/// One change of an approval.
#[derive(Debug, Clone)]
pub struct Event {
    /// The approval after the change.
    pub approval: Arc<Resource>,
    /// Its state before (`None`: it was just made).
    pub from: Option<State>,
    /// What happened (the audit's `approval_event`: `requested`, `break_glass`,
    /// `review_counted`, `approved`, `rejected`, `canceled`, `expired`, `started`,
    /// `settled`, `lease_lost`, `reviewed`).
    pub what: &'static str,
    /// The caller that moved it, for reviews and cancels.
    pub by: Option<String>,
    /// Why, in words (a review's reason, a refusal at run time).
    pub note: Option<String>,
    /// The people to tell: every approver of its groups (for break glass, everyone who was
    /// skipped), callers by name.
    pub notify: Vec<String>,
}

impl Event {
    /// Its state after the change.
    pub fn to(&self) -> State {
        self.approval.state
    }
}

/// Where approval events go.
#[derive(Clone)]
pub struct Events {
    audit: Audit,
    tx: broadcast::Sender<Event>,
}

impl Events {
    /// Events recorded in `audit`.
    pub fn new(audit: Audit) -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Events { audit, tx }
    }

    /// The same events, recorded in `audit` from now on.
    pub fn with_audit(&self, audit: Audit) -> Self {
        Events {
            audit,
            tx: self.tx.clone(),
        }
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Records `event` in the audit chain and tells the subscribers.
    pub async fn emit(&self, event: Event) {
        let entry = record(&event);
        if let Err(e) = self.audit.write(entry).await {
            crate::metrics::audit_records_lost(1);
            tracing::error!(error = %e, approval_id = %event.approval.id, "approval record lost");
        }
        tracing::info!(
            approval.id = %event.approval.id,
            approval.state = event.to().as_str(),
            approval.event = event.what,
            "approval changed"
        );
        // No subscriber is fine; a lagging one learns it lagged.
        let _ = self.tx.send(event);
    }
}

/// The audit record of one change.
fn record(event: &Event) -> Entry {
    let a = &event.approval;
    let (device_id, device_ids) = match a.devices.as_slice() {
        [one] => (Some(one.clone()), None),
        many => (None, Some(many.to_vec())),
    };
    let decision = match a.state {
        State::Pending | State::Approved => Some(AuditDecision::Held),
        _ => None,
    };
    Entry {
        kind: Some(Kind::Approval),
        time: now_rfc3339(),
        audit_id: uuid::Uuid::new_v4().to_string(),
        caller: Some(a.caller.clone()),
        initiator: a.initiator.clone(),
        reason: a.reason.clone(),
        operation: Some(a.operation.clone()),
        api_version: Some(a.api_version.clone()),
        tier: Some(a.tier.clone()),
        device_id,
        device_ids,
        policy_version: Some(a.policy_sha256.clone()),
        rule: Some(a.rule.clone()),
        decision,
        approval_id: Some(a.id.clone()),
        request_sha256: Some(a.request_sha256.clone()),
        approval_state: Some(a.state.as_str().to_owned()),
        approval_event: Some(event.what.to_owned()),
        reviewer: event.by.clone(),
        break_glass: a.break_glass.is_some().then_some(true),
        status: a.outcome.as_ref().map(|o| o.status),
        error_code: a.outcome.as_ref().and_then(|o| o.error_code.clone()),
        graph_request_id: a.outcome.as_ref().and_then(|o| o.graph_request_id.clone()),
        note: event
            .note
            .clone()
            .or_else(|| a.outcome.as_ref().and_then(|o| o.message.clone())),
        ..Entry::default()
    }
}
