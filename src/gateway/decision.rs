//! Stage 3's question, asked the same way by the gateway and by `policy explain` / `policy
//! test`: what the policy decides for an admitted request (a bulk one device by device), and
//! what the allowing rule requires that the request does not state.

use crate::admit::Admitted;
use crate::bulk;
use crate::identity::stated::{ContextError, Stated};
use crate::policy::{Decision, Facts, Forbidden, Missing, Policy};

/// What the policy says about one admitted request.
#[derive(Debug)]
pub struct Judgement<'p> {
    /// The decision (a bulk request's: its first refused device's, else its first device's).
    pub decision: Decision<'p>,
    /// A bulk request's devices the policy refuses, in request order (the request is
    /// refused whole if any is).
    pub refused: Vec<String>,
    /// What the allowing rule requires and the request does not state.
    pub missing: Missing,
}

/// Decides `request` by `caller` (an index into the policy's callers), stating `stated`.
pub fn judge<'p>(
    policy: &'p Policy,
    caller: usize,
    request: &Admitted,
    stated: &Stated,
) -> Judgement<'p> {
    let initiator = stated.person();
    let (decision, refused) = match &request.bulk {
        Some(plan) => {
            let version = request.target.version;
            let d = bulk::decide(policy, caller, version, plan, initiator);
            (d.decision, d.refused)
        }
        None => {
            let facts = Facts::of(caller, &request.target, &request.params, initiator);
            (policy.decide(&facts), Vec::new())
        }
    };
    let missing = match decision.rule {
        Some(rule) if decision.allowed => rule
            .require
            .missing(stated.initiator.is_some(), stated.reason.is_some()),
        _ => Missing::default(),
    };
    Judgement {
        decision,
        refused,
        missing,
    }
}

impl Judgement<'_> {
    /// Whether the request may be sent: allowed, and stating what its rule requires.
    pub fn allowed(&self) -> bool {
        self.decision.allowed && self.missing.is_none()
    }

    /// The refusal (403) of a request the policy does not allow; `None` when it does.
    pub fn forbidden(&self, caller: &str, request: &Admitted) -> Option<Forbidden> {
        if self.decision.allowed {
            return None;
        }
        Some(match &request.bulk {
            Some(plan) => {
                let version = request.target.version;
                Forbidden::devices(caller, plan.op, version, self.refused.clone())
            }
            None => Forbidden::of(&self.decision, caller, &request.target),
        })
    }

    /// The refusal (400) of an allowed request that does not state what its rule requires.
    pub fn unstated(&self) -> Option<ContextError> {
        let rule = self.decision.rule.filter(|_| self.decision.allowed)?;
        (!self.missing.is_none()).then(|| ContextError::Missing {
            rule: rule.name.clone(),
            missing: self.missing,
        })
    }
}
