//! How reviews count: who may review an approval (never its requester, nor the person it
//! is made for; each person once), how the approvals meet the groups (each person toward
//! one group only: a matching, [`crate::policy::approval::assign`]), and what a reason
//! must be.

use super::model::{Group, Stored, Verdict};
use super::people::Identity;
use crate::operation::schema::screen::is_readable_text;
use crate::policy::approval::{assign, is_met};

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_024;

/// Whether `text` can be a reason: visible text of 1 to [`MAX_REASON_CHARS`] characters,
/// without control, line-separator, bidirectional or invisible characters (the one check
/// for such text: [`is_readable_text`]).
pub fn readable_reason(text: &str) -> bool {
    is_readable_text(text, MAX_REASON_CHARS)
}

/// Why a review cannot count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCounted {
    /// The reviewer is no approver of any group.
    NotAnApprover,
    /// The reviewer is the requester, or the person the request is made for.
    OwnRequest,
    /// The same person has reviewed it already.
    AlreadyReviewed,
}

/// Whether `reviewer` may review `stored` now (the requester never; each person once).
pub fn may_review(stored: &Stored, reviewer: &Identity) -> Result<(), NotCounted> {
    let requester = &stored.held.requester;
    let initiator = stored.resource.initiator.as_deref();
    if reviewer.same_person(requester) || initiator.is_some_and(|i| reviewer.is_person(i)) {
        return Err(NotCounted::OwnRequest);
    }
    if !stored.is_approver(&reviewer.caller) {
        return Err(NotCounted::NotAnApprover);
    }
    if stored
        .held
        .reviewers
        .iter()
        .any(|r| r.same_person(reviewer))
    {
        return Err(NotCounted::AlreadyReviewed);
    }
    Ok(())
}

/// How the reviews so far stand: the groups with who counts toward each, whether every
/// group is met, and how many rejected.
pub struct Tally {
    /// Each group's approvals (the resource's `groups`).
    pub groups: Vec<Group>,
    /// Every group has its count of distinct people.
    pub met: bool,
    /// Rejections so far.
    pub rejections: u32,
}

/// Counts the approvals of `stored` toward its groups (each person toward one group only).
pub fn tally(stored: &Stored) -> Tally {
    let reviews = &stored.resource.reviews;
    let approvals: Vec<usize> = (0..reviews.len())
        .filter(|&i| reviews[i].decision == Verdict::Approve)
        .collect();
    let required: Vec<u32> = stored.resource.groups.iter().map(|g| g.required).collect();
    let approvers = &stored.held.approvers;
    let assigned = assign(&required, approvals.len(), |p, g| {
        let caller = &reviews[approvals[p]].reviewer;
        approvers.get(g).is_some_and(|a| a.contains(caller))
    });
    let mut groups = stored.resource.groups.clone();
    for g in &mut groups {
        g.approvals.clear();
    }
    for (p, group) in assigned.iter().enumerate() {
        if let Some(g) = group.and_then(|g| groups.get_mut(g)) {
            g.approvals.push(reviews[approvals[p]].reviewer.clone());
        }
    }
    let rejections = reviews
        .iter()
        .filter(|r| r.decision == Verdict::Reject)
        .count();
    Tally {
        groups,
        met: is_met(&required, &assigned),
        rejections: u32::try_from(rejections).unwrap_or(u32::MAX),
    }
}
