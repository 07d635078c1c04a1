//! The policy's limits as the gateway applies them: rate limits per caller and per rule
//! (GCRA: a full burst, then a steady refill), daily or hourly budgets (per caller, per rule,
//! per operation for the whole tenant; counted in devices) and the tenant write pacing (an
//! exact sliding window). The counting itself happens in the state store, so every replica
//! sharing it shares one budget; keys carry the rate, so a reload that keeps a rate keeps
//! its budget.

use std::collections::HashMap;
use std::time::Duration;

use crate::operation::catalog::Operation;
use crate::policy::{Budget, Policy, Rate};
use crate::state::{
    Admission, Admit, BudgetCharge, Limiter, Namespace, Refund, StateStore, StoreError,
    budget_window, wall_clock_secs,
};

/// Each pacing slot is held this much longer than the policy's window: the time a write
/// takes from admission to Graph (token, audit intent, network), so that Graph, not just the
/// gateway, never sees more than the count in any window.
pub const PACING_MARGIN: Duration = Duration::from_millis(250);

/// The request must wait this long before it would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1: the `Retry-After` header value.
    pub fn secs(self) -> u64 {
        (self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)).max(1)
    }
}

/// Why a request may not go now.
#[derive(Debug, thiserror::Error)]
pub enum LimitRefusal {
    /// A caller's or rule's rate limit.
    #[error("rate limit reached ({scope})")]
    RateLimited {
        /// `caller` or `rule`.
        scope: &'static str,
        /// When a slot frees.
        retry: RetryAfter,
    },
    /// A request lists more devices than a rate limit allows in a whole window: it would
    /// never be admitted, however long it waited.
    #[error("the request lists {devices} devices; the {scope}'s rate limit ({rate}) allows at most {} at once", .rate.count)]
    OverRate {
        /// `caller` or `rule`.
        scope: &'static str,
        /// The devices listed.
        devices: u32,
        /// The rate.
        rate: Rate,
    },
    /// A budget has no room for the request's devices.
    #[error("budget {budget} ({limit}) is used up")]
    OverBudget {
        /// Its name: `caller:<name>`, `rule:<name>` or `tenant:<operation>`.
        budget: String,
        /// Its limit.
        limit: Budget,
        /// When its next window starts.
        retry: RetryAfter,
    },
    /// No tenant write slot within the pacing wait.
    #[error("tenant write pacing")]
    Paced(RetryAfter),
    /// The state store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LimitRefusal {
    /// Whether a limit refused (rather than the store failing).
    pub fn is_limit(&self) -> bool {
        !matches!(self, LimitRefusal::Store(_))
    }
}

/// Takes one of `caller`'s dry runs (`--dry-runs-per-sec`: `per_sec` a second, also the
/// burst). Not the policy's: dry runs cost nothing at Graph, but each is answered and
/// audited. Kept in the state store like every limit, so the replicas on it share it.
pub async fn dry_run(store: &StateStore, caller: &str, per_sec: u32) -> Result<(), LimitRefusal> {
    let rate = Rate {
        count: per_sec.max(1),
        per: Duration::from_secs(1),
    };
    let limiter = Limiter {
        key: store.namespace().rate("dry-run", caller, rate),
        rate,
    };
    match store.limit(&[limiter], 1).await? {
        None => Ok(()),
        Some((_, wait)) => Err(LimitRefusal::RateLimited {
            scope: "the caller's dry runs",
            retry: RetryAfter(wait),
        }),
    }
}

/// A budget of the policy, ready to charge.
#[derive(Debug)]
struct BudgetRef {
    /// `caller:<name>` etc.: error messages and the metric label.
    label: String,
    /// Its counters' key prefix.
    prefix: String,
    budget: Budget,
}

impl BudgetRef {
    fn new(ns: &Namespace, kind: &str, name: &str, budget: Budget) -> Self {
        BudgetRef {
            label: format!("{kind}:{name}"),
            prefix: ns.budget(kind, name, budget.window),
            budget,
        }
    }

    /// The counter of the window `now` (Unix seconds) falls in.
    fn charge(&self, now: u64) -> BudgetCharge {
        let secs = self.budget.window.secs();
        let index = now / secs;
        BudgetCharge {
            key: budget_window(&self.prefix, index),
            limit: self.budget.limit,
            window_end: (index + 1) * secs,
        }
    }
}

/// The limits of one installed policy.
#[derive(Debug)]
pub struct PolicyLimits {
    callers: Vec<Option<Limiter>>,
    rules: Vec<Option<Limiter>>,
    caller_budgets: Vec<Option<BudgetRef>>,
    rule_budgets: Vec<Option<BudgetRef>>,
    tenant_budgets: HashMap<&'static str, BudgetRef>,
    pacing_key: String,
    pacing: Rate,
    max_wait: Duration,
}

impl PolicyLimits {
    /// The limits `policy` configures, with keys in `ns`.
    pub fn new(policy: &Policy, ns: &Namespace) -> Self {
        let limiter = |kind: &str, name: &str, rate: Option<Rate>| {
            rate.map(|rate| Limiter {
                key: ns.rate(kind, name, rate),
                rate,
            })
        };
        PolicyLimits {
            callers: (policy.callers.iter())
                .map(|c| limiter("caller", &c.name, c.rate_limit))
                .collect(),
            rules: (policy.rules.iter())
                .map(|r| limiter("rule", &r.name, r.rate_limit))
                .collect(),
            caller_budgets: (policy.callers.iter())
                .map(|c| c.budget.map(|b| BudgetRef::new(ns, "caller", &c.name, b)))
                .collect(),
            rule_budgets: (policy.rules.iter())
                .map(|r| r.budget.map(|b| BudgetRef::new(ns, "rule", &r.name, b)))
                .collect(),
            tenant_budgets: (policy.tenant_budgets.iter())
                .map(|t| (t.op.name, BudgetRef::new(ns, "tenant", t.op.name, t.budget)))
                .collect(),
            pacing_key: ns.pacing(),
            pacing: policy.pacing.tenant_writes,
            max_wait: policy.pacing.max_wait,
        }
    }

    /// Takes `devices` slots (one per device the request acts on, as budgets count them)
    /// from the caller's and the rule's rate limits, or from neither. A request listing more
    /// devices than a rate allows in a window is refused outright ([`LimitRefusal::OverRate`]).
    pub async fn check(
        &self,
        store: &StateStore,
        caller: usize,
        rule: usize,
        devices: u32,
    ) -> Result<(), LimitRefusal> {
        let owners = [
            ("caller", self.callers.get(caller).and_then(Option::as_ref)),
            ("rule", self.rules.get(rule).and_then(Option::as_ref)),
        ];
        let (scopes, limiters): (Vec<&'static str>, Vec<Limiter>) = owners
            .into_iter()
            .filter_map(|(scope, l)| Some((scope, l?.clone())))
            .unzip();
        let devices = devices.max(1);
        if let Some((scope, l)) = scopes
            .iter()
            .zip(&limiters)
            .find(|(_, l)| devices > l.rate.count)
        {
            return Err(LimitRefusal::OverRate {
                scope,
                devices,
                rate: l.rate,
            });
        }
        match store.limit(&limiters, devices).await? {
            None => Ok(()),
            Some((i, wait)) => Err(LimitRefusal::RateLimited {
                scope: scopes.get(i).copied().unwrap_or("rule"),
                retry: RetryAfter(wait),
            }),
        }
    }

    /// Takes room for `devices` on every budget that applies (the caller's, the rule's, the
    /// tenant's for `op`) together with a tenant write slot, waiting for a slot up to the
    /// pacing's `max_wait_ms`. A bulk request passes its device count: it counts once per
    /// device on each budget, and once on the pacing (one call to Graph).
    pub async fn admit(
        &self,
        store: &StateStore,
        caller: usize,
        rule: usize,
        op: &Operation,
        devices: u32,
    ) -> Result<Reservation, LimitRefusal> {
        let budgets: Vec<&BudgetRef> = [
            self.caller_budgets.get(caller).and_then(Option::as_ref),
            self.rule_budgets.get(rule).and_then(Option::as_ref),
            self.tenant_budgets.get(op.name),
        ]
        .into_iter()
        .flatten()
        .collect();
        let deadline = crate::clock::Instant::now() + self.max_wait;
        let member = uuid::Uuid::new_v4().simple().to_string();
        loop {
            // Recomputed on every try: a wait may cross into the next window.
            let now = wall_clock_secs();
            let charges: Vec<BudgetCharge> = budgets.iter().map(|b| b.charge(now)).collect();
            let admission = Admission {
                pacing_key: &self.pacing_key,
                pacing_member: &member,
                pacing_count: self.pacing.count,
                pacing_window: self.pacing.per + PACING_MARGIN,
                budgets: &charges,
                devices,
            };
            match store.admit(&admission).await? {
                Admit::Admitted { used } => {
                    for ((b, c), used) in budgets.iter().zip(&charges).zip(used) {
                        crate::state::metrics::budget(&b.label, used, c.limit);
                    }
                    return Ok(Reservation {
                        pacing_key: self.pacing_key.clone(),
                        member,
                        charges,
                        devices,
                    });
                }
                Admit::OverBudget { index, used } => {
                    let (b, c) = (budgets[index], &charges[index]);
                    crate::state::metrics::budget(&b.label, used, c.limit);
                    return Err(LimitRefusal::OverBudget {
                        budget: b.label.clone(),
                        limit: b.budget,
                        retry: RetryAfter(Duration::from_secs(c.window_end.saturating_sub(now))),
                    });
                }
                Admit::Paced(wait) if crate::clock::Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait).await;
                }
                Admit::Paced(wait) => return Err(LimitRefusal::Paced(RetryAfter(wait))),
            }
        }
    }
}

/// A write slot and budget room taken for one request.
#[derive(Debug)]
#[must_use = "settle it: a request that was not sent gives its slot and budget back"]
pub struct Reservation {
    pacing_key: String,
    member: String,
    charges: Vec<BudgetCharge>,
    devices: u32,
}

impl Reservation {
    /// Pacing and budgets count what reached Graph: when the request was not `sent` after
    /// all (no token, the audit intent refused, Graph unreachable), its write slot and
    /// budget room are given back, so an outage elsewhere does not use them up. A store
    /// that cannot take them back leaves the counts high (the safe side), logged.
    pub async fn settle(self, store: &StateStore, sent: bool) {
        if sent {
            return;
        }
        let refund = Refund {
            pacing_key: &self.pacing_key,
            pacing_member: &self.member,
            budgets: &self.charges,
            devices: self.devices,
        };
        if let Err(e) = store.refund(&refund).await {
            tracing::warn!(error = %e, "could not give back the slot and budget of a request that was not sent");
        }
    }
}

#[cfg(test)]
mod tests;
