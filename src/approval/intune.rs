//! The approval's side of Intune's Multi Admin Approval (the handshake's facts are
//! [`super::maa`]): a direct call Intune held becomes an approval in
//! `external_approval_pending` (or joins the one its code already has); its Intune request
//! is read when due, by one replica per due time; what Intune says moves it, and when a
//! person approved it in time, this replica sends it again, once.

use super::error::ApprovalError;
use super::hold::{Asking, Need};
use super::maa::{Hold, INTUNE_EXPIRY, IntuneStatus};
use super::model::{Finish, Outcome, State, Step};
use super::run::Runner;
use super::store::{Change, Made};
use super::{Approvals, ms, rfc3339};
use crate::policy::Rule;
use crate::policy::approval::Approval;
use crate::state::StateStore;

impl Approvals {
    /// A direct call (no four-eyes rule) that Intune held: a new approval in
    /// `external_approval_pending`, or the one already made for this code (a 409 attaches
    /// to it, as does a repeat through another replica).
    pub async fn intune_hold(
        &self,
        state: &StateStore,
        asking: &Asking<'_>,
        rule: &Rule,
        hold: &Hold,
        attached: bool,
    ) -> Result<super::Resource, ApprovalError> {
        let need = Need {
            rule,
            approval: Approval {
                groups: Vec::new(),
                deny: 1,
                ttl: INTUNE_EXPIRY,
                execute_within: INTUNE_EXPIRY,
            },
            break_glass: false,
        };
        let mut stored = self.new_approval(asking, &need, State::ExternalApprovalPending);
        self.mark_held(&mut stored, hold, attached, self.clock.now_ms());
        let digest = crate::policy::hex(&<sha2::Sha256 as sha2::Digest>::digest(
            hold.code.as_bytes(),
        ));
        stored.held.open_claim = Some(state.namespace().approval_claim("maa", &digest));
        let made = self.make(state, stored, None, "held_by_intune").await?;
        let (Made::New(s) | Made::Again(s)) = made;
        Ok(s.resource)
    }

    /// Reads Intune's request of approval `id` if its read is due and this replica takes it
    /// (one replica per due time, by compare-and-swap); moves the approval by what Intune
    /// says; and when a person approved it in time, sends it again, once.
    pub(super) async fn poll_intune(
        &self,
        state: &StateStore,
        runner: &dyn Runner,
        id: &str,
    ) -> Result<(), ApprovalError> {
        let token = uuid::Uuid::new_v4().to_string();
        let max = ms(self.settings.maa.max_poll);
        let taken = self
            .change(state, id, |s, now| {
                let due = s.resource.state == State::ExternalApprovalPending
                    && s.held.maa_poll.as_ref().is_some_and(|p| now >= p.next_ms);
                let Some(p) = s.held.maa_poll.as_mut().filter(|_| due) else {
                    return Ok(None);
                };
                p.next_ms = now + p.backoff_ms;
                p.backoff_ms = (p.backoff_ms.saturating_mul(2)).min(max);
                p.token = Some(token.clone());
                Ok(Some(Change {
                    quiet: true,
                    ..Change::of(Step::Poll)
                }))
            })
            .await?;
        let ours = taken
            .held
            .maa_poll
            .as_ref()
            .and_then(|p| p.token.as_deref())
            == Some(token.as_str());
        let Some(code) = taken.resource.maa.as_ref().map(|m| m.code.clone()) else {
            return Ok(());
        };
        if !ours || taken.resource.state != State::ExternalApprovalPending {
            return Ok(());
        }
        let read = runner.read_intune(&code).await;
        let lease = self.settings.lease;
        let after = self
            .change(state, id, |s, now| {
                if s.resource.state != State::ExternalApprovalPending {
                    return Ok(None);
                }
                let Some(maa) = s.resource.maa.as_mut() else {
                    return Ok(None);
                };
                maa.polls += 1;
                let polled = match &read {
                    Err(e) => {
                        let again = maa.last_error.as_deref() == Some(e.as_str());
                        maa.last_error = Some(e.clone());
                        return Ok(Some(Change {
                            what: Some("intune_poll_failed"),
                            note: Some(format!("reading Intune's approval request: {e}")),
                            quiet: again,
                            ..Change::of(Step::Poll)
                        }));
                    }
                    Ok(p) => p,
                };
                maa.last_error = None;
                let changed = maa.status != polled.status.as_str();
                maa.status = polled.status.as_str().to_owned();
                if let Some(at) = polled.expires_ms.filter(|at| *at < s.held.expires_ms) {
                    s.held.expires_ms = at;
                    s.resource.expires = rfc3339(at);
                    maa.expires = rfc3339(at);
                }
                let intune = |step, what, note: &str| {
                    Ok(Some(Change {
                        what: Some(what),
                        note: Some(note.to_owned()),
                        ..Change::of(step)
                    }))
                };
                match polled.status {
                    IntuneStatus::NeedsApproval => Ok(Some(Change {
                        quiet: !changed,
                        ..Change::of(Step::Poll)
                    })),
                    IntuneStatus::Approved if now >= s.held.expires_ms => intune(
                        Step::Expire,
                        "expired",
                        "approved in Intune after graphgate's deadline: not sent",
                    ),
                    IntuneStatus::Approved => {
                        maa.resent = true;
                        s.held.lease_ms = Some(now + ms(lease));
                        s.held.run_token = Some(token.clone());
                        intune(Step::Start, "intune_approved", "approved in Intune: sent again once with its code")
                    }
                    IntuneStatus::Rejected => {
                        intune(Step::Reject, "intune_rejected", "rejected in Intune: not sent")
                    }
                    IntuneStatus::Cancelled => {
                        intune(Step::Cancel, "intune_cancelled", "cancelled in Intune: not sent")
                    }
                    IntuneStatus::Expired => {
                        intune(Step::Expire, "intune_expired", "expired in Intune: not sent")
                    }
                    IntuneStatus::Completed => {
                        s.resource.outcome = Some(Outcome {
                            status: 0,
                            error_code: Some("outcomeUnknown".into()),
                            message: Some("Intune says the request was completed, but graphgate did not send it: check the device".into()),
                            graph_request_id: None,
                            audit_id: String::new(),
                            time: rfc3339(now),
                            device_action: None,
                        });
                        intune(Step::Settle(Finish::Unknown), "intune_completed", "completed in Intune without graphgate's re-send: never sent from here")
                    }
                }
            })
            .await?;
        let won = after.resource.state == State::Executing
            && after.held.run_token.as_deref() == Some(token.as_str());
        if won {
            self.run_started(state, runner, after).await;
        }
        Ok(())
    }
}
