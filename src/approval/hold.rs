//! The pipeline's gate, for a request its rule allows only with others' approval
//! ([`need`] says which approval). Three ways through:
//! - held ([`Approvals::hold`]): nothing is sent; `202 Accepted`, `Location:
//!   /api/v1/approvals/{id}` and the approval resource; a repeated `Idempotency-Key` gets the
//!   same one, a second pending request for the same action 409 naming the first;
//! - redeemed ([`Approvals::redeem`]): a secret read approved earlier, repeated identically
//!   by its requester with `X-Graphgate-Approval: <id>` within `execute_within`, runs once;
//! - break glass ([`Approvals::break_glass`]): `X-Graphgate-Break-Glass: <reason>` on a rule
//!   with `break_glass: true` runs at once, for one device, flagged, and waits for review.
//!
//! A bulk request is one approval listing its devices, under every rule that allows one of
//! them (their groups together, the shortest deadlines).

use http::HeaderMap;
use http::header::HeaderName;

use super::error::ApprovalError;
use super::model::{BreakGlass, Group, Held, HeldBody, Resource, RunBy, State, Step, Stored};
use super::people::Identity;
use super::request::{self, Facts};
use super::run::Running;
use super::store::{Change, Made};
use super::{Approvals, ms, rfc3339};
use crate::admit::Admitted;
use crate::cloud::Cloud;
use crate::identity::stated::Stated;
use crate::policy::approval::Approval;
use crate::policy::{Decision, Policy, Rule};
use crate::state::StateStore;

/// The header redeeming an approved secret read.
pub const APPROVAL_HEADER: HeaderName = HeaderName::from_static("x-graphgate-approval");
/// The header running a request at once under break glass, with the reason.
pub const BREAK_GLASS_HEADER: HeaderName = HeaderName::from_static("x-graphgate-break-glass");

/// What a request asks of its approval, by its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Nothing: hold it if its rule needs approval.
    Hold,
    /// Run this approved secret read (`X-Graphgate-Approval`).
    Redeem(String),
    /// Run it now, reviewed afterwards (`X-Graphgate-Break-Glass`).
    BreakGlass(String),
}

/// What the request's headers ask: at most one of the two headers, each sent once, with a
/// GUID or a readable reason.
pub fn ask(headers: &HeaderMap) -> Result<Ask, ApprovalError> {
    let one = |name: &HeaderName, shown: &str| -> Result<Option<String>, ApprovalError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApprovalError::BadInput(format!(
                "{shown} is sent more than once"
            )));
        }
        std::str::from_utf8(value.as_bytes())
            .map(|v| Some(v.to_owned()))
            .map_err(|_| ApprovalError::BadInput(format!("{shown} is not text")))
    };
    let redeem = one(&APPROVAL_HEADER, "X-Graphgate-Approval")?;
    let glass = one(&BREAK_GLASS_HEADER, "X-Graphgate-Break-Glass")?;
    match (redeem, glass) {
        (None, None) => Ok(Ask::Hold),
        (Some(_), Some(_)) => Err(ApprovalError::BadInput(
            "send X-Graphgate-Approval or X-Graphgate-Break-Glass, not both".into(),
        )),
        (Some(id), None) if crate::operation::route::is_guid(&id) => {
            Ok(Ask::Redeem(id.to_ascii_lowercase()))
        }
        (Some(_), None) => Err(ApprovalError::BadInput(
            "X-Graphgate-Approval must be an approval id (a GUID)".into(),
        )),
        (None, Some(reason)) => match super::review::readable_reason(&reason) {
            true => Ok(Ask::BreakGlass(reason)),
            false => Err(ApprovalError::BadInput(
                "X-Graphgate-Break-Glass must be the reason: visible text of 1 to 1024 characters without control or invisible characters".into(),
            )),
        },
    }
}

/// The approval a request needs, and under which rule.
#[derive(Debug, Clone)]
pub struct Need<'p> {
    /// The (first) rule that holds it.
    pub rule: &'p Rule,
    /// The approval: the rule's, or for a bulk request every holding rule's together.
    pub approval: Approval,
    /// Whether break glass may run it at once.
    pub break_glass: bool,
}

/// What approval `request` (allowed by `decision`) needs, if any.
pub fn need<'p>(
    policy: &'p Policy,
    caller: usize,
    request: &Admitted,
    stated: &Stated,
    decision: &Decision<'p>,
) -> Option<Need<'p>> {
    if !policy.has_approvals() || !decision.allowed {
        return None;
    }
    let rules: Vec<&'p Rule> = match &request.bulk {
        None => decision.rule.into_iter().collect(),
        Some(plan) => {
            let mut rules: Vec<&'p Rule> = Vec::new();
            for device in &plan.device_ids {
                let facts = crate::policy::Facts {
                    caller,
                    op: plan.op,
                    version: request.target.version,
                    device,
                    params: &plan.params,
                    initiator: stated.person(),
                };
                if let Some(rule) = policy.decide(&facts).rule
                    && !rules.iter().any(|r| r.index == rule.index)
                {
                    rules.push(rule);
                }
            }
            rules
        }
    };
    let holding: Vec<&'p Rule> = rules.into_iter().filter(|r| r.approval.is_some()).collect();
    let (first, rest) = holding.split_first()?;
    let mut approval = first.approval.clone()?;
    for rule in rest {
        if let Some(more) = &rule.approval {
            approval.groups.extend(more.groups.iter().cloned());
            approval.deny = approval.deny.min(more.deny);
            approval.ttl = approval.ttl.min(more.ttl);
            approval.execute_within = approval.execute_within.min(more.execute_within);
        }
    }
    Some(Need {
        rule: first,
        approval,
        break_glass: holding.iter().all(|r| r.break_glass),
    })
}

/// A request at the gate.
pub struct Asking<'a> {
    /// The deployment's cloud.
    pub cloud: Cloud,
    /// Its tenant.
    pub tenant: &'a str,
    /// The policy in force.
    pub policy_sha256: &'a str,
    /// The requesting caller.
    pub caller: &'a str,
    /// Who that is.
    pub requester: Identity,
    /// What it asks.
    pub request: &'a Admitted,
    /// The person and reason it states.
    pub stated: &'a Stated,
}

impl Asking<'_> {
    fn facts(&self) -> Facts<'_> {
        Facts {
            cloud: self.cloud.name(),
            tenant: self.tenant,
            method: self.request.target.op.invocation.method_name(),
            path: &self.request.target.canonical_path,
            body: &self.request.body,
            caller: self.caller,
            initiator: self.stated.initiator(),
        }
    }

    /// `request_sha256` of this request.
    pub fn request_sha256(&self) -> String {
        request::request_sha256(&self.facts())
    }

    fn devices(&self) -> Vec<String> {
        match &self.request.bulk {
            Some(plan) => plan.device_ids.clone(),
            None => {
                let device = &self.request.target.device_id;
                (!device.is_empty())
                    .then(|| device.clone())
                    .into_iter()
                    .collect()
            }
        }
    }
}

impl Approvals {
    /// Holds the request: a new approval (or, for a repeated idempotency key, the one it
    /// made), which the gateway answers `202` with its `Location`.
    pub async fn hold(
        &self,
        state: &StateStore,
        asking: &Asking<'_>,
        need: &Need<'_>,
    ) -> Result<Resource, ApprovalError> {
        let mut stored = self.new_approval(asking, need, State::Pending);
        stored.held.open_claim = Some(
            state
                .namespace()
                .approval_claim("open", &request::action_sha256(&asking.facts())),
        );
        // The caller's key, hashed with the caller's name as idempotency claims are.
        let idem = asking.request.idempotency_key.as_deref().map(|key| {
            let claim = state.namespace().idempotency(asking.caller, key);
            claim.rsplit(':').next().unwrap_or_default().to_owned()
        });
        let made = self
            .make(state, stored, idem.as_deref(), "requested")
            .await?;
        let resource = match made {
            Made::New(s) | Made::Again(s) => s.resource,
        };
        Ok(resource)
    }

    /// Takes approval `id` for this request to run now: a secret read its requester
    /// repeats, identically, within `execute_within` of the approval; once.
    pub async fn redeem(
        &self,
        state: &StateStore,
        asking: &Asking<'_>,
        id: &str,
    ) -> Result<Running, ApprovalError> {
        if !asking.request.target.op.discloses_secret() {
            return Err(ApprovalError::NothingToRedeem);
        }
        let sha = asking.request_sha256();
        self.expire_if_due(state, id).await?;
        let lease = self.settings.lease;
        let stored = self
            .change(state, id, |s, now| {
                if s.resource.caller != asking.caller {
                    return Err(ApprovalError::NotFound(id.to_owned()));
                }
                if s.resource.request_sha256 != sha {
                    return Err(ApprovalError::NotThisRequest(id.to_owned()));
                }
                if s.resource.state != State::Approved {
                    return Err(ApprovalError::NotNow {
                        id: id.to_owned(),
                        state: s.resource.state,
                        doing: "redeemed",
                    });
                }
                s.held.lease_ms = Some(now + ms(lease));
                Ok(Some(Change {
                    what: Some("redeemed"),
                    by: Some(asking.caller.to_owned()),
                    ..Change::of(Step::Start)
                }))
            })
            .await?;
        Ok(Running {
            id: stored.resource.id,
            request_sha256: sha,
            break_glass: false,
        })
    }

    /// Records a break glass (one device; the caller's previous one reviewed) and lets the
    /// request run now. Every approver is told (the event's `notify`).
    pub async fn break_glass(
        &self,
        state: &StateStore,
        asking: &Asking<'_>,
        need: &Need<'_>,
        reason: &str,
    ) -> Result<Running, ApprovalError> {
        if !need.break_glass {
            return Err(ApprovalError::NoBreakGlass(need.rule.name.clone()));
        }
        if asking.request.bulk.is_some() || asking.devices().len() > 1 {
            return Err(ApprovalError::BreakGlassBulk);
        }
        let mut stored = self.new_approval(asking, need, State::NeedsReview);
        stored.resource.break_glass = Some(BreakGlass {
            reason: reason.to_owned(),
        });
        let caller_digest = crate::policy::hex(&<sha2::Sha256 as sha2::Digest>::digest(
            asking.caller.as_bytes(),
        ));
        stored.held.break_glass_claim =
            Some(state.namespace().approval_claim("glass", &caller_digest));
        let made = self.make(state, stored, None, "break_glass").await?;
        let (Made::New(s) | Made::Again(s)) = made;
        Ok(Running {
            id: s.resource.id,
            request_sha256: s.resource.request_sha256,
            break_glass: true,
        })
    }

    /// A new approval of `asking` under `need`, in `state`.
    pub(super) fn new_approval(
        &self,
        asking: &Asking<'_>,
        need: &Need<'_>,
        state: State,
    ) -> Stored {
        let now = self.clock.now_ms();
        let a = &need.approval;
        let target = &asking.request.target;
        let expires_ms = now + ms(a.ttl);
        let resource = Resource {
            id: uuid::Uuid::new_v4().to_string(),
            state,
            operation: target.op.name.to_owned(),
            api_version: target.version.as_str().to_owned(),
            tier: target.op.tier.as_str().to_owned(),
            method: target.op.invocation.method_name().to_owned(),
            path: target.canonical_path.clone(),
            devices: asking.devices(),
            parameters: asking.request.params.to_redacted_json(),
            caller: asking.caller.to_owned(),
            initiator: asking.stated.initiator().map(str::to_owned),
            reason: asking.stated.reason.clone(),
            rule: need.rule.name.clone(),
            request_sha256: asking.request_sha256(),
            policy_sha256: asking.policy_sha256.to_owned(),
            created: rfc3339(now),
            expires: rfc3339(expires_ms),
            execute_by: None,
            run_by: match target.op.discloses_secret() {
                true => RunBy::Requester,
                false => RunBy::Gateway,
            },
            groups: a
                .groups
                .iter()
                .map(|g| Group {
                    approvers: g.named.clone(),
                    required: g.required,
                    approvals: Vec::new(),
                })
                .collect(),
            deny: a.deny,
            reviews: Vec::new(),
            break_glass: None,
            outcome: None,
            maa: None,
        };
        let held = Held {
            body: HeldBody(String::from_utf8_lossy(&asking.request.body).into_owned()),
            initiator_source: asking
                .stated
                .initiator
                .as_ref()
                .map(|(_, source)| source.as_str().to_owned()),
            initiator_upn: asking.stated.person().and_then(|p| p.upn.clone()),
            initiator_oid: asking.stated.person().and_then(|p| p.oid.clone()),
            requester: asking.requester.clone(),
            reviewers: Vec::new(),
            approvers: a.groups.iter().map(|g| g.approvers.clone()).collect(),
            created_ms: now,
            expires_ms,
            execute_within_ms: ms(a.execute_within),
            execute_by_ms: None,
            lease_ms: None,
            run_token: None,
            open_claim: None,
            break_glass_claim: None,
            maa_poll: None,
        };
        Stored { resource, held }
    }
}
