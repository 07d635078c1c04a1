//! The approval resource and its state machine, in one place. [`Resource`] is what callers
//! see (`/api/v1/approvals/{id}`); [`Stored`] adds what the gateway keeps to itself (the
//! request to run, who asked, who reviewed, the deadlines). Every change of state is one
//! [`Step`] of [`TRANSITIONS`], checked by [`next`]: a new state (issue 24's
//! `external_approval_pending`) is a new row, not a new code path.

use serde::{Deserialize, Serialize};

use super::people::Identity;

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for reviews.
    Pending,
    /// Every group met; waiting to run (or, for a secret read, to be redeemed).
    Approved,
    /// Running (a replica holds it, under a lease).
    Executing,
    /// Ran, and Graph accepted it.
    Succeeded,
    /// Did not run, or Graph refused it (the outcome says which).
    Failed,
    /// Sent, but no complete answer came back (or the replica running it died): check the
    /// device. Never sent again.
    OutcomeUnknown,
    /// Enough rejections.
    Rejected,
    /// Withdrawn by its requester.
    Canceled,
    /// Not reviewed within its `ttl`, or approved but not run within `execute_within`.
    Expired,
    /// Ran at once under break glass; waits for an approver's review.
    NeedsReview,
    /// Graph answered that Intune's Multi Admin Approval holds it (it did not run): waits
    /// for a person to approve it in Intune, then is sent again once with Intune's code.
    ExternalApprovalPending,
}

impl State {
    /// Every state, in the order docs/approvals.md lists them.
    pub const ALL: [State; 11] = [
        State::Pending,
        State::Approved,
        State::Executing,
        State::Succeeded,
        State::Failed,
        State::OutcomeUnknown,
        State::Rejected,
        State::Canceled,
        State::Expired,
        State::NeedsReview,
        State::ExternalApprovalPending,
    ];

    /// The name the API and the audit use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Executing => "executing",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::OutcomeUnknown => "outcome_unknown",
            State::Rejected => "rejected",
            State::Canceled => "canceled",
            State::Expired => "expired",
            State::NeedsReview => "needs_review",
            State::ExternalApprovalPending => "external_approval_pending",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing more happens to it.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            State::Pending
                | State::Approved
                | State::Executing
                | State::NeedsReview
                | State::ExternalApprovalPending
        )
    }

    /// Whether it holds its request's place: a second pending request for the same
    /// operation, devices and parameters is refused while it is here.
    pub fn is_open(self) -> bool {
        matches!(self, State::Pending | State::Approved)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finish {
    /// Graph accepted it.
    Succeeded,
    /// Not sent, or refused.
    Failed,
    /// May have run.
    Unknown,
    /// Did not run: Intune's Multi Admin Approval holds it.
    Held,
}

/// What moves an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A review is counted; the request still waits.
    Count,
    /// The approval that meets the last group.
    Approve,
    /// The rejection that reaches `deny`.
    Reject,
    /// The requester withdraws it.
    Cancel,
    /// Its deadline passed.
    Expire,
    /// One replica (or the redeeming requester) takes it to run.
    Start,
    /// Its run ended.
    Settle(Finish),
    /// The replica running it is gone (its lease ran out): never sent again.
    LeaseLost,
    /// An approver reviewed what break glass ran.
    CloseReview(Finish),
    /// Intune's approval request was read again; nothing decided yet.
    Poll,
    /// The device's own account of the action that ran is recorded on the outcome.
    Reconciled,
}

impl Step {
    /// The audit's name for it (`approval_event`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Count => "review_counted",
            Step::Approve => "approved",
            Step::Reject => "rejected",
            Step::Cancel => "canceled",
            Step::Expire => "expired",
            Step::Start => "started",
            Step::Settle(_) => "settled",
            Step::LeaseLost => "lease_lost",
            Step::CloseReview(_) => "reviewed",
            Step::Poll => "intune_polled",
            Step::Reconciled => "device_action_result",
        }
    }
}

use Finish as F;
use State as S;

/// Every transition there is: (from, step, to). Nothing else moves an approval.
pub const TRANSITIONS: &[(State, Step, State)] = &[
    (S::Pending, Step::Count, S::Pending),
    (S::Pending, Step::Approve, S::Approved),
    (S::Pending, Step::Reject, S::Rejected),
    (S::Pending, Step::Cancel, S::Canceled),
    (S::Approved, Step::Cancel, S::Canceled),
    (S::Pending, Step::Expire, S::Expired),
    (S::Approved, Step::Expire, S::Expired),
    (S::Approved, Step::Start, S::Executing),
    (S::Executing, Step::Settle(F::Succeeded), S::Succeeded),
    (S::Executing, Step::Settle(F::Failed), S::Failed),
    (S::Executing, Step::Settle(F::Unknown), S::OutcomeUnknown),
    (S::Executing, Step::LeaseLost, S::OutcomeUnknown),
    // Intune's Multi Admin Approval held the send: it did not run, and waits for a person
    // in Intune; approved there, it is started (sent again, once, with Intune's code).
    (
        S::Executing,
        Step::Settle(F::Held),
        S::ExternalApprovalPending,
    ),
    (
        S::ExternalApprovalPending,
        Step::Poll,
        S::ExternalApprovalPending,
    ),
    (S::ExternalApprovalPending, Step::Start, S::Executing),
    (S::ExternalApprovalPending, Step::Reject, S::Rejected),
    (S::ExternalApprovalPending, Step::Cancel, S::Canceled),
    (S::ExternalApprovalPending, Step::Expire, S::Expired),
    // Ran: the device's action result is recorded on the outcome (the state stays).
    (S::Succeeded, Step::Reconciled, S::Succeeded),
    // Intune says `completed` before graphgate sent it again: someone else did; it may have
    // run, and is never sent from here.
    (
        S::ExternalApprovalPending,
        Step::Settle(F::Unknown),
        S::OutcomeUnknown,
    ),
    // Break glass ran at once: its outcome is recorded while it waits for review.
    (S::NeedsReview, Step::Settle(F::Succeeded), S::NeedsReview),
    (S::NeedsReview, Step::Settle(F::Failed), S::NeedsReview),
    (S::NeedsReview, Step::Settle(F::Unknown), S::NeedsReview),
    (
        S::NeedsReview,
        Step::CloseReview(F::Succeeded),
        S::Succeeded,
    ),
    (S::NeedsReview, Step::CloseReview(F::Failed), S::Failed),
    (
        S::NeedsReview,
        Step::CloseReview(F::Unknown),
        S::OutcomeUnknown,
    ),
];

/// Where `step` takes an approval in state `from`; `None` when it cannot be taken from there.
pub fn next(from: State, step: Step) -> Option<State> {
    TRANSITIONS
        .iter()
        .find(|(f, s, _)| *f == from && *s == step)
        .map(|(_, _, to)| *to)
}

/// How a review decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// For running it.
    Approve,
    /// Against.
    Reject,
    /// An after-the-fact review of what break glass ran.
    Review,
}

/// One review, as the resource lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Approve, reject or review.
    pub decision: Verdict,
    /// The reviewing caller (policy name).
    pub reviewer: String,
    /// The person behind it, when the caller states one (or its token is a user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// Why.
    pub reason: String,
    /// The request it was given for.
    pub request_sha256: String,
    /// When (RFC 3339).
    pub time: String,
}

/// One group and who counts toward it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The approvers as the rule names them (callers or `approver_groups`).
    pub approvers: Vec<String>,
    /// How many must approve.
    pub required: u32,
    /// The reviewers counted toward it (each person toward one group only).
    pub approvals: Vec<String>,
}

/// What came of running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The status the run answered (Graph's, or the gateway's refusal).
    pub status: u16,
    /// The gateway's error code, when it refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Why it failed, in the caller's terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Graph's `request-id`, when Graph answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_request_id: Option<String>,
    /// The audit id of the run (its intent and outcome records).
    pub audit_id: String,
    /// When it ended (RFC 3339).
    pub time: String,
    /// What the device says became of the action (its `deviceActionResults`, read by
    /// outcome reconciliation): Graph's 2xx only says Intune queued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_action: Option<DeviceAction>,
}

/// The action's final state on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAction {
    /// `done`, `failed`, `not_supported`, `canceled`, or `pending_past_deadline`.
    pub state: String,
    /// What `deviceActionResults` said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Break glass: why the requester ran it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// `X-Graphgate-Break-Glass`.
    pub reason: String,
}

/// Who runs an approved request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunBy {
    /// graphgate, on the last approval.
    Gateway,
    /// The requester, repeating it with `X-Graphgate-Approval` (a secret read: its value
    /// is never held by the gateway).
    Requester,
}

/// The approval resource, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its id (a GUID).
    pub id: String,
    /// Where it is.
    pub state: State,
    /// The catalog operation.
    pub operation: String,
    /// `v1.0` or `beta`.
    pub api_version: String,
    /// The operation's risk tier.
    pub tier: String,
    /// The Graph method.
    pub method: String,
    /// The Graph path (in the gateway's cloud).
    pub path: String,
    /// The devices it acts on (a bulk request's, in request order).
    pub devices: Vec<String>,
    /// The validated parameters, secrets redacted.
    pub parameters: serde_json::Value,
    /// The requesting caller.
    pub caller: String,
    /// The person it is made for, if stated.
    pub initiator: Option<String>,
    /// Why, if stated.
    pub reason: Option<String>,
    /// The rule that holds it.
    pub rule: String,
    /// SHA-256 of what would run: a review names it, and counts only for it.
    pub request_sha256: String,
    /// The policy it was held under.
    pub policy_sha256: String,
    /// When it was requested (RFC 3339).
    pub created: String,
    /// When it expires if not approved (RFC 3339).
    pub expires: String,
    /// Once approved: when it must have run (or been redeemed) by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_by: Option<String>,
    /// Who runs it once approved.
    pub run_by: RunBy,
    /// The groups and who counts toward each.
    pub groups: Vec<Group>,
    /// How many rejections end it.
    pub deny: u32,
    /// Every review, in order.
    pub reviews: Vec<Review>,
    /// Set when it ran at once under break glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// What came of running it.
    pub outcome: Option<Outcome>,
    /// Set when Intune's Multi Admin Approval held it: its code and Intune's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maa: Option<super::maa::Maa>,
}

/// A request body held to run later. Its Debug never prints it (it may carry secret
/// parameters); the API never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct HeldBody(pub String);

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[request body, {} bytes]", self.0.len())
    }
}

/// What the gateway keeps beside the resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The Graph body to send (empty: none).
    pub body: HeldBody,
    /// Where the initiator was stated (`header`, `body`, `token`).
    pub initiator_source: Option<String>,
    /// The initiator's UPN, when known.
    #[serde(default)]
    pub initiator_upn: Option<String>,
    /// The initiator's object id, when known.
    #[serde(default)]
    pub initiator_oid: Option<String>,
    /// Who asked.
    pub requester: Identity,
    /// Who reviewed, in the order of the resource's reviews.
    pub reviewers: Vec<Identity>,
    /// Each group's approvers, `approver_groups` expanded.
    pub approvers: Vec<Vec<String>>,
    /// Unix ms: requested.
    pub created_ms: u64,
    /// Unix ms: a pending request expires.
    pub expires_ms: u64,
    /// How long an approved request may wait to run (ms).
    pub execute_within_ms: u64,
    /// Unix ms: an approved request must run by.
    pub execute_by_ms: Option<u64>,
    /// Unix ms: the run's lease ends (the replica running it is presumed gone after).
    pub lease_ms: Option<u64>,
    /// Who took the run (one per start): the taker knows it won.
    #[serde(default)]
    pub run_token: Option<String>,
    /// The claim that keeps a second pending request for the same action out.
    pub open_claim: Option<String>,
    /// The claim that keeps the requester's next break glass out until this is reviewed.
    pub break_glass_claim: Option<String>,
    /// Intune's hold: when its request is read next, and how long after that.
    #[serde(default)]
    pub maa_poll: Option<super::maa::Polling>,
}

/// An approval as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// What the API shows.
    pub resource: Resource,
    /// What only the gateway sees.
    pub held: Held,
}

impl Stored {
    /// Whether `caller` may see it: its requester, or an approver of one of its groups.
    pub fn visible_to(&self, caller: &str) -> bool {
        self.resource.caller == caller || self.is_approver(caller)
    }

    /// Whether `caller` is an approver of one of its groups.
    pub fn is_approver(&self, caller: &str) -> bool {
        self.held
            .approvers
            .iter()
            .any(|g| g.iter().any(|a| a == caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_in_the_table_and_final_states_are_final() {
        assert_eq!(next(State::Pending, Step::Approve), Some(State::Approved));
        assert_eq!(next(State::Approved, Step::Start), Some(State::Executing));
        assert_eq!(next(State::Approved, Step::Approve), None, "approved once");
        assert_eq!(next(State::Executing, Step::Cancel), None, "too late");
        assert_eq!(next(State::Executing, Step::Start), None, "runs once");
        assert_eq!(
            next(State::Executing, Step::LeaseLost),
            Some(State::OutcomeUnknown),
            "a run whose replica died is never sent again"
        );
        // A final state only gains the device's account of what ran; it never leaves.
        let annotation = |(f, s, t): &(State, Step, State)| *s == Step::Reconciled && f == t;
        for t @ (from, step, to) in TRANSITIONS {
            assert!(
                !from.is_final() || annotation(t),
                "{from:?} --{step:?}--> {to:?}"
            );
        }
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            let leaves = TRANSITIONS.iter().any(|t| t.0 == state && !annotation(t));
            assert_eq!(leaves, !state.is_final(), "{state:?}");
        }
    }
}
