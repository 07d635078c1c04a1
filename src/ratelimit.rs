//! The policy's limits as the gateway applies them: rate limits per caller and per rule
//! (GCRA: a full burst, then a steady refill), daily or hourly budgets (per caller, per rule,
//! per operation for the whole tenant; counted in devices) and the tenant write pacing (an
//! exact sliding window). The counting itself happens in the state store, so every replica
//! sharing it shares one budget; keys carry the rate, so a reload that keeps a rate keeps
//! its budget. A request takes all of them in one step of the store ([`PolicyLimits::take`]);
//! [`ledger`] keeps the memory store's budget counts across restarts through the audit log.

pub mod ledger;

use std::collections::HashMap;
use std::time::Duration;

use crate::idempotency::StoredResponse;
use crate::operation::catalog::Operation;
use crate::policy::{Budget, Policy, Rate};
use crate::state::{
    Admission, Ask, BudgetCharge, Duplicate, Idempotency, Limiter, Namespace, Refund, Refused,
    StateStore, Step, StoreError, Ticket, budget_window, wall_clock_secs,
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

    /// Charges a request held for approval `devices` units of the caller's and the rule's
    /// rate limits, in one step of the store (its run later takes the rest with
    /// `charged`).
    pub async fn check(
        &self,
        store: &StateStore,
        (caller, rule): (usize, usize),
        devices: u32,
    ) -> Result<(), LimitRefusal> {
        let devices = devices.max(1);
        let (scopes, limiters) = self.limiters((caller, rule), devices)?;
        if limiters.is_empty() {
            return Ok(());
        }
        let ask = Ask {
            limiters: &limiters,
            cost: devices,
            idempotency: None,
            admission: None,
        };
        match store.take(&ask).await? {
            Step::Limited { index, wait } => Err(LimitRefusal::RateLimited {
                scope: scopes.get(index).copied().unwrap_or("rule"),
                retry: RetryAfter(wait),
            }),
            _ => Ok(()),
        }
    }

    /// The caller's and the rule's rate limiters, with their scopes; a request of more
    /// `devices` than one allows in a window is refused outright.
    fn limiters(
        &self,
        (caller, rule): (usize, usize),
        devices: u32,
    ) -> Result<(Vec<&'static str>, Vec<&Limiter>), LimitRefusal> {
        let owners = [
            ("caller", self.callers.get(caller).and_then(Option::as_ref)),
            ("rule", self.rules.get(rule).and_then(Option::as_ref)),
        ];
        let (scopes, limiters): (Vec<&'static str>, Vec<&Limiter>) = owners
            .into_iter()
            .filter_map(|(scope, l)| Some((scope, l?)))
            .unzip();
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
        Ok((scopes, limiters))
    }

    /// Everything a request sent under `rule` takes from the store, in one step of it:
    /// `devices` units of the caller's and the rule's rate limits (one per device the
    /// request acts on, as budgets count them), the idempotency claim, room for `devices` on
    /// every budget that applies (the caller's, the rule's, the tenant's for `op`) and a
    /// tenant write slot, waiting for a slot up to the pacing's `max_wait_ms` (then the
    /// claim and the admission are taken again; the rate limits are charged once). A
    /// request listing more devices than a rate allows in a window is refused before
    /// anything is asked ([`LimitRefusal::OverRate`]). A bulk request passes its device
    /// count: it counts once per device on each budget, and once on the pacing (one call to
    /// Graph). With `charged`, the rate limits were charged already ([`Self::check`], for a
    /// request held for approval) and are left alone.
    pub async fn take<'p>(
        &'p self,
        store: &StateStore,
        (caller, rule): (usize, usize),
        op: &Operation,
        (devices, charged): (u32, bool),
        idempotency: Option<Idempotency<'_>>,
    ) -> Result<Taken<'p>, LimitRefusal> {
        let devices = devices.max(1);
        let (scopes, limiters) = match charged {
            true => (Vec::new(), Vec::new()),
            false => self.limiters((caller, rule), devices)?,
        };
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
        let mut limiters = &limiters[..];
        loop {
            // Recomputed on every try: a wait may cross into the next window.
            let now = wall_clock_secs();
            let charges: Vec<BudgetCharge> = budgets.iter().map(|b| b.charge(now)).collect();
            let ask = Ask {
                limiters,
                cost: devices,
                idempotency,
                admission: Some(Admission {
                    pacing_key: &self.pacing_key,
                    pacing_member: &member,
                    pacing_count: self.pacing.count,
                    pacing_window: self.pacing.per + PACING_MARGIN,
                    budgets: &charges,
                    devices,
                }),
            };
            match store.take(&ask).await? {
                Step::Taken { ticket, used } => {
                    for ((b, c), used) in budgets.iter().zip(&charges).zip(used) {
                        crate::state::metrics::budget(&b.label, used, c.limit);
                    }
                    return Ok(Taken::Run(Reservation {
                        limits: self,
                        ticket,
                        member,
                        budgets,
                        charges,
                        devices,
                    }));
                }
                Step::Duplicate(duplicate) => return Ok(Taken::Duplicate(duplicate)),
                Step::Limited { index, wait } => {
                    return Err(LimitRefusal::RateLimited {
                        scope: scopes.get(index).copied().unwrap_or("rule"),
                        retry: RetryAfter(wait),
                    });
                }
                Step::Refused(Refused::OverBudget { index, used }) => {
                    let (Some(b), Some(c)) = (budgets.get(index), charges.get(index)) else {
                        return Err(StoreError::new(
                            crate::state::StoreErrorKind::Response,
                            format!("a budget {index} of {} refused", budgets.len()),
                        )
                        .into());
                    };
                    crate::state::metrics::budget(&b.label, used, c.limit);
                    return Err(LimitRefusal::OverBudget {
                        budget: b.label.clone(),
                        limit: b.budget,
                        retry: RetryAfter(Duration::from_secs(c.window_end.saturating_sub(now))),
                    });
                }
                Step::Refused(Refused::Paced(wait))
                    if crate::clock::Instant::now() + wait <= deadline =>
                {
                    tokio::time::sleep(wait).await;
                    // Charged on the first try.
                    limiters = &[];
                }
                Step::Refused(Refused::Paced(wait)) => {
                    return Err(LimitRefusal::Paced(RetryAfter(wait)));
                }
            }
        }
    }
}

/// What a request takes from the store comes to.
// Moved once per request, where boxing would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Taken<'p> {
    /// Everything was taken: send the request, then settle the reservation.
    Run(Reservation<'p>),
    /// A duplicate of a keyed request: answered from the first, nothing taken but its rate.
    Duplicate(Duplicate),
}

/// What one request took: its idempotency claim (when keyed), a write slot and budget room.
#[must_use = "settle it: a request that was not sent gives its slot and budget back"]
pub struct Reservation<'p> {
    limits: &'p PolicyLimits,
    ticket: Option<Ticket>,
    member: String,
    budgets: Vec<&'p BudgetRef>,
    charges: Vec<BudgetCharge>,
    devices: u32,
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("keyed", &self.ticket.is_some())
            .field("member", &self.member)
            .field("charges", &self.charges)
            .field("devices", &self.devices)
            .finish()
    }
}

impl Reservation<'_> {
    /// Whether the request holds an idempotency claim (its answer is kept for duplicates).
    pub fn is_keyed(&self) -> bool {
        self.ticket.is_some()
    }

    /// The budgets it was counted on: `(label, window, window end, devices)`.
    pub fn counted(&self) -> impl Iterator<Item = (&str, crate::policy::BudgetWindow, u64, u32)> {
        let budgets = self.budgets.iter().zip(&self.charges);
        budgets.map(|(b, c)| {
            (
                b.label.as_str(),
                b.budget.window,
                c.window_end,
                self.devices,
            )
        })
    }

    /// Settles the request in one step of the store (none when there is nothing to
    /// settle). Pacing and budgets count what reached Graph: when the request was not
    /// `sent` after all (no token, the audit intent refused, Graph unreachable), its write
    /// slot and budget room are given back, so an outage elsewhere does not use them up. Its
    /// claim keeps `answer` for duplicates, or without one lets the key go (the action
    /// certainly did not run). A store that cannot take the refund leaves the counts high
    /// (the safe side), logged.
    pub async fn settle(self, store: &StateStore, sent: bool, answer: Option<StoredResponse>) {
        // The common end of a keyed request: it ran, its answer is kept, nothing to give
        // back (on a shared store, after the answer went out: see `StateStore::finish`).
        let (ticket, answer) = match (sent, self.ticket, answer) {
            (true, Some(ticket), Some(answer)) => return store.finish(ticket, answer).await,
            (_, ticket, answer) => (ticket, answer),
        };
        let refund = (!sent).then(|| Refund {
            pacing_key: &self.limits.pacing_key,
            pacing_member: &self.member,
            budgets: &self.charges,
            devices: self.devices,
        });
        store.settle(ticket, answer, refund).await;
    }
}

#[cfg(test)]
mod tests;
