//! Running what was approved, exactly once across replicas, and keeping the deadlines. The
//! replica whose review met the last group takes the run: a compare-and-swap from
//! `approved` to `executing` in the store, which one replica wins, under a lease; then the
//! gateway's [`Runner`] sends it (the policy in force checked again, budgets, pacing,
//! idempotency, the durable audit intent, Graph) and the outcome is recorded. A replica that
//! dies while executing leaves the approval `executing`: once the lease ends it becomes
//! `outcome_unknown`, and is never sent again. A run that Intune's Multi Admin Approval
//! holds settles in `external_approval_pending` instead. The deadlines are kept by every
//! replica's sweep (`sweep.rs`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::error::ApprovalError;
use super::maa::{Hold, INTUNE_EXPIRY, IntuneStatus, Maa, Polling, Read};
use super::model::{Finish, Outcome, RunBy, State, Step, Stored};
use super::store::Change;
use super::{Approvals, ms, rfc3339};
use crate::state::StateStore;

/// How long an approved request waits for the replica that approved it before any replica
/// starts it.
pub const START_GRACE: Duration = Duration::from_secs(10);

/// How a run ended: how it finished, what the resource records, and Intune's hold if
/// Graph answered with one (then it did not run).
pub type Ended = (Finish, Outcome, Option<Hold>);

/// A run's end.
pub type Ran<'a> = Pin<Box<dyn Future<Output = Ended> + Send + 'a>>;

/// Runs an approved request through the pipeline's later stages: the gateway.
pub trait Runner: Send + Sync {
    /// Runs `approval`'s stored request once (under the policy in force now; with Intune's
    /// code when Intune approved it).
    fn run<'a>(&'a self, approval: &'a Stored) -> Ran<'a>;

    /// Reads Intune's approval request `code` from Graph.
    fn read_intune<'a>(&'a self, code: &'a str) -> Read<'a>;
}

/// A request the gate lets run under an approval: its outcome is recorded there.
#[derive(Debug, Clone)]
pub struct Running {
    /// The approval.
    pub id: String,
    /// What it binds.
    pub request_sha256: String,
    /// Run at once, unreviewed.
    pub break_glass: bool,
}

/// The deadline that has passed for `s` at `now`, as the step it takes.
pub fn due(s: &Stored, now: u64) -> Option<Step> {
    let h = &s.held;
    match s.resource.state {
        State::Pending if now >= h.expires_ms => Some(Step::Expire),
        State::Approved if h.execute_by_ms.is_some_and(|by| now >= by) => Some(Step::Expire),
        State::Executing if h.lease_ms.is_some_and(|lease| now >= lease) => Some(Step::LeaseLost),
        State::ExternalApprovalPending if now >= h.expires_ms => Some(Step::Expire),
        _ => None,
    }
}

impl Approvals {
    /// Records Intune's hold on `s` (made now, or the four-eyes approval that ran it).
    pub(super) fn mark_held(&self, s: &mut Stored, hold: &Hold, attached: bool, now: u64) {
        let settings = &self.settings.maa;
        let expires_ms = now + ms(INTUNE_EXPIRY);
        s.held.expires_ms = expires_ms;
        s.resource.expires = rfc3339(expires_ms);
        s.resource.maa = Some(Maa {
            code: hold.code.clone(),
            status: IntuneStatus::NeedsApproval.as_str().to_owned(),
            expires: rfc3339(expires_ms),
            held_status: hold.status,
            attached,
            polls: 0,
            last_error: None,
            resent: false,
        });
        s.held.maa_poll = Some(Polling {
            next_ms: now + ms(settings.first_poll),
            backoff_ms: ms(settings.first_poll),
            token: None,
        });
    }

    /// Records how a run under approval `running` ended.
    pub async fn settle(&self, state: &StateStore, running: &Running, ended: Ended) {
        let (finish, outcome, hold) = ended;
        let settled = self
            .change(state, &running.id, |s, now| {
                if !matches!(s.resource.state, State::Executing | State::NeedsReview)
                    || s.resource.outcome.is_some()
                {
                    return Ok(None);
                }
                let resent = s.resource.maa.as_ref().is_some_and(|m| m.resent);
                match &hold {
                    // Held by Intune: it did not run; it waits for a person there.
                    Some(hold) if s.resource.state == State::Executing && !resent => {
                        let attached = hold.status == 409;
                        self.mark_held(s, hold, attached, now);
                        return Ok(Some(Change {
                            what: Some("held_by_intune"),
                            note: Some(format!(
                                "Intune's Multi Admin Approval holds it (Graph answered {} with approval code {})",
                                hold.status, hold.code
                            )),
                            ..Change::of(Step::Settle(Finish::Held))
                        }));
                    }
                    // Held again (the re-send, or break glass): it did not run; it ends.
                    Some(_) => {
                        s.resource.outcome = Some(outcome.clone());
                        return Ok(Some(Change::of(Step::Settle(Finish::Failed))));
                    }
                    None => {}
                }
                s.resource.outcome = Some(outcome.clone());
                Ok(Some(Change::of(Step::Settle(finish))))
            })
            .await;
        if let Err(e) = settled {
            // The run's own audit records say what happened; the approval stays `executing`
            // until its lease ends, then says `outcome_unknown`.
            tracing::error!(error = %e, approval_id = %running.id, "could not record a run's outcome on its approval");
        }
    }

    /// Records what the device says became of the action approval `id` ran (its run's
    /// audit id `audit_id`), from outcome reconciliation.
    pub async fn record_device_action(
        &self,
        state: &StateStore,
        done: &crate::audit::reconcile::Completed,
    ) -> Result<(), ApprovalError> {
        let action = super::model::DeviceAction {
            state: done.state.clone(),
            detail: done.note.clone(),
        };
        self.change(state, &done.approval_id, |s, _| {
            let Some(outcome) = s.resource.outcome.as_mut() else {
                return Ok(None);
            };
            let ours = outcome.audit_id == done.audit_id;
            if !ours
                || s.resource.state != State::Succeeded
                || outcome.device_action.as_ref() == Some(&action)
            {
                return Ok(None);
            }
            outcome.device_action = Some(action.clone());
            Ok(Some(Change {
                note: done.note.clone(),
                ..Change::of(Step::Reconciled)
            }))
        })
        .await
        .map(drop)
    }

    /// Takes whichever deadline of approval `id` has passed.
    pub async fn expire_if_due(&self, state: &StateStore, id: &str) -> Result<(), ApprovalError> {
        self.change(state, id, |s, now| Ok(due(s, now).map(Change::of)))
            .await
            .map(drop)
    }

    /// Runs approval `id` if it is approved, run by the gateway, and this replica wins the
    /// start; returns the approval as it is afterwards.
    pub async fn run_approved(
        &self,
        state: &StateStore,
        runner: &dyn Runner,
        id: &str,
    ) -> Result<Stored, ApprovalError> {
        let token = uuid::Uuid::new_v4().to_string();
        let lease = self.settings.lease;
        let started = self
            .change(state, id, |s, now| {
                if s.resource.state != State::Approved || s.resource.run_by != RunBy::Gateway {
                    return Ok(None);
                }
                if let Some(step) = due(s, now) {
                    return Ok(Some(Change::of(step)));
                }
                s.held.lease_ms = Some(now + ms(lease));
                s.held.run_token = Some(token.clone());
                Ok(Some(Change::of(Step::Start)))
            })
            .await?;
        let won = started.resource.state == State::Executing
            && started.held.run_token.as_deref() == Some(token.as_str());
        if !won {
            return Ok(started);
        }
        Ok(self.run_started(state, runner, started).await)
    }

    /// Runs `started` (this replica won its start) and records how it ended; returns the
    /// approval as it is afterwards.
    pub(super) async fn run_started(
        &self,
        state: &StateStore,
        runner: &dyn Runner,
        started: Stored,
    ) -> Stored {
        let ended = runner.run(&started).await;
        let running = Running {
            id: started.resource.id.clone(),
            request_sha256: started.resource.request_sha256.clone(),
            break_glass: false,
        };
        self.settle(state, &running, ended).await;
        match self.load(state, &running.id).await {
            Ok(Some((_, s))) => s,
            _ => started,
        }
    }
}
