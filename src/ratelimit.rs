//! Rate limits from the policy (per caller, per rule) and the gateway-wide pacing of
//! writes to the tenant, as GCRA limiters (governor). Limiters survive policy reloads
//! whenever the owner's name and rate are unchanged.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::policy::{Policy, Rate};

/// The request must wait this long before it would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1: the `Retry-After` header value.
    pub fn secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

type Limiter = Arc<DefaultDirectRateLimiter>;
/// Limiters by (kind, owner name), with the rate each was made for.
type Known = HashMap<(&'static str, String), (Rate, Limiter)>;

fn limiter(rate: Rate) -> Limiter {
    let count = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let period = rate.per / rate.count.max(1);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_hour(count))
        .allow_burst(count);
    Arc::new(RateLimiter::direct(quota))
}

fn check(limiter: &DefaultDirectRateLimiter) -> Result<(), RetryAfter> {
    limiter
        .check()
        .map_err(|not_until| RetryAfter(not_until.wait_time_from(DefaultClock::default().now())))
}

/// The limiters for one installed policy.
pub struct PolicyLimits {
    callers: Vec<Option<Limiter>>,
    rules: Vec<Option<Limiter>>,
    pacing: Limiter,
    max_wait: Duration,
}

impl PolicyLimits {
    /// Takes one slot from the caller's budget.
    pub fn check_caller(&self, caller: usize) -> Result<(), RetryAfter> {
        self.callers
            .get(caller)
            .and_then(Option::as_ref)
            .map_or(Ok(()), |l| check(l))
    }

    /// Takes one slot from the rule's budget.
    pub fn check_rule(&self, rule: usize) -> Result<(), RetryAfter> {
        self.rules
            .get(rule)
            .and_then(Option::as_ref)
            .map_or(Ok(()), |l| check(l))
    }

    /// Waits (up to the configured maximum) for a tenant write slot.
    pub async fn pace(&self) -> Result<(), RetryAfter> {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        loop {
            match check(&self.pacing) {
                Ok(()) => return Ok(()),
                Err(RetryAfter(wait)) if tokio::time::Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait).await;
                }
                Err(retry) => return Err(retry),
            }
        }
    }
}

/// Keeps limiters across reloads.
#[derive(Default)]
pub struct LimiterRegistry {
    known: Mutex<Known>,
}

impl LimiterRegistry {
    /// The limiters `policy` needs, reusing those whose owner and rate are unchanged.
    pub fn for_policy(&self, policy: &Policy) -> PolicyLimits {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Known::new();
        let mut get = |kind: &'static str, name: &str, rate: Rate| {
            let key = (kind, name.to_owned());
            let l = match known.get(&key) {
                Some((r, l)) if *r == rate => Arc::clone(l),
                _ => limiter(rate),
            };
            next.insert(key, (rate, Arc::clone(&l)));
            l
        };
        let callers = policy
            .callers
            .iter()
            .map(|c| c.rate_limit.map(|r| get("caller", &c.name, r)))
            .collect();
        let rules = policy
            .rules
            .iter()
            .map(|r| r.rate_limit.map(|rate| get("rule", &r.name, rate)))
            .collect();
        let pacing = get("pacing", "tenant", policy.pacing.tenant_writes);
        *known = next;
        PolicyLimits {
            callers,
            rules,
            pacing,
            max_wait: policy.pacing.max_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: &str) -> Policy {
        let text = format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{}\"\n    rate_limit: {rate}\n",
            "0".repeat(64)
        );
        Policy::from_yaml(&text, "t").unwrap()
    }

    #[test]
    fn budgets_run_out_and_say_when_to_retry() {
        let reg = LimiterRegistry::default();
        let limits = reg.for_policy(&policy("2 per minute"));
        assert!(limits.check_caller(0).is_ok());
        assert!(limits.check_caller(0).is_ok());
        let retry = limits.check_caller(0).unwrap_err();
        assert!((25..=30).contains(&retry.secs()), "{retry:?}");
        assert!(limits.check_rule(0).is_ok(), "no rule limit configured");
    }

    #[test]
    fn reloads_keep_budgets_unless_the_rate_changes() {
        let reg = LimiterRegistry::default();
        let first = reg.for_policy(&policy("1 per hour"));
        assert!(first.check_caller(0).is_ok());
        let same = reg.for_policy(&policy("1 per hour"));
        assert!(
            same.check_caller(0).is_err(),
            "the spent budget survives a reload"
        );
        let changed = reg.for_policy(&policy("2 per hour"));
        assert!(
            changed.check_caller(0).is_ok(),
            "a new rate starts a new budget"
        );
    }
}
