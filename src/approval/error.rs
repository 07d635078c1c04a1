//! Why an approval step was refused: one error type for holding, redeeming, breaking
//! glass and the approval API. `crate::error` maps it to the caller's answer.

use super::model::State;
use super::review::NotCounted;
use crate::state::StoreError;

/// An approval step the gateway refused (or could not take).
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval, or not one the caller may see (ids do not leak).
    #[error("no approval {0} that this caller may see")]
    NotFound(String),
    /// The reviewer is no approver of this request.
    #[error("this caller is not an approver of approval {0}")]
    NotAnApprover(String),
    /// Approving (or reviewing) one's own request, or one made for oneself.
    #[error("approval {0} is this person's own request: another person must review it")]
    OwnRequest(String),
    /// Only the requester cancels.
    #[error("only the requester may cancel approval {0}")]
    NotTheRequester(String),
    /// The same person reviewed it already.
    #[error("this person has already reviewed approval {0}")]
    AlreadyReviewed(String),
    /// The approval is not in a state that takes this step.
    #[error("approval {id} is {}: it cannot be {doing}", .state.as_str())]
    NotNow {
        /// The approval.
        id: String,
        /// Its state.
        state: State,
        /// What was asked (`approved`, `rejected`, `canceled`, `reviewed`, `redeemed`).
        doing: &'static str,
    },
    /// The review names another request than the one held.
    #[error(
        "request_sha256 does not match approval {0}'s request: read the approval again and review what it holds"
    )]
    HashMismatch(String),
    /// A second pending request for the same action.
    #[error(
        "approval {0} already holds the same operation on the same devices with the same parameters: review or cancel it first"
    )]
    Duplicate(String),
    /// The caller has as many pending approvals as it may.
    #[error(
        "this caller has {0} pending approvals, the most it may have: wait for reviews or cancel one"
    )]
    TooManyPending(usize),
    /// The request's Idempotency-Key was used for a different approval request.
    #[error("this Idempotency-Key was already used for a different request (approval {0})")]
    KeyReused(String),
    /// Break glass on a rule that does not allow it.
    #[error("policy rule '{0}' does not allow break glass")]
    NoBreakGlass(String),
    /// Break glass on a bulk request.
    #[error("break glass acts on one device: send the devices one by one")]
    BreakGlassBulk,
    /// The caller's last break glass still waits for review.
    #[error(
        "this caller's break glass {0} still waits for an approver's review: no other until then"
    )]
    BreakGlassUnreviewed(String),
    /// A redemption header on a request the gateway runs itself.
    #[error(
        "X-Graphgate-Approval redeems an approved secret read; graphgate runs other approved requests itself"
    )]
    NothingToRedeem,
    /// A redeemed approval held for another request, or another caller.
    #[error(
        "approval {0} is for a different request (or another caller): repeat the request it holds, as it was made"
    )]
    NotThisRequest(String),
    /// A header or body of the approval API that cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// The state store did not answer: nothing changed, nothing ran.
    #[error("graphgate's state store did not answer ({}); nothing was changed or run, retry shortly", .0.kind().as_str())]
    Store(#[from] StoreError),
    /// A stored approval that cannot be read (written by another version?).
    #[error("approval {0} could not be read")]
    Damaged(String),
}

impl ApprovalError {
    /// The error for a review that cannot count.
    pub fn not_counted(id: &str, why: NotCounted) -> Self {
        let id = id.to_owned();
        match why {
            NotCounted::NotAnApprover => ApprovalError::NotAnApprover(id),
            NotCounted::OwnRequest => ApprovalError::OwnRequest(id),
            NotCounted::AlreadyReviewed => ApprovalError::AlreadyReviewed(id),
        }
    }
}
