//! Rate limits from the policy (per caller, per rule) and the gateway-wide pacing of
//! writes to the tenant, as GCRA limiters (governor) on Tokio's clock, so tests can pause
//! time. Limiters survive policy reloads whenever the owner's name and rate are unchanged.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::policy::Policy;
use crate::policy::Rate;
use crate::policy::rate::{MAX_COUNT, MAX_WINDOW};

/// The request must wait this long before it would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1: the `Retry-After` header value.
    pub fn secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

/// Tokio's clock, as time since the limiter was made: `tokio::time::pause()` stops it, and
/// the pacing wait sleeps on the same clock it measures with.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    start: crate::clock::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type Limiter = Arc<DirectLimiter>;
/// Limiters by (kind, owner name), with the rate each was made for.
type Known = HashMap<(&'static str, String), (Rate, Limiter)>;

/// A limiter for `rate`. Rates are range-checked when a policy is loaded
/// ([`Rate::parse`]); a rate built in code is held to the same range here, so no value can
/// overflow the limiter's nanosecond arithmetic.
fn limiter(rate: Rate) -> Limiter {
    let count = rate.count.clamp(1, MAX_COUNT);
    let burst = NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN);
    let period = rate.per.min(MAX_WINDOW) / count;
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_hour(burst))
        .allow_burst(burst);
    let clock = TokioClock {
        start: crate::clock::Instant::now(),
    };
    Arc::new(RateLimiter::direct_with_clock(quota, clock))
}

fn check(limiter: &DirectLimiter) -> Result<(), RetryAfter> {
    limiter
        .check()
        .map_err(|not_until| RetryAfter(not_until.wait_time_from(limiter.clock().now())))
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
        let deadline = crate::clock::Instant::now() + self.max_wait;
        loop {
            match check(&self.pacing) {
                Ok(()) => return Ok(()),
                Err(RetryAfter(wait)) if crate::clock::Instant::now() + wait <= deadline => {
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

    #[tokio::test(start_paused = true)]
    async fn budgets_run_out_say_when_to_retry_and_refill_on_the_paused_clock() {
        let reg = LimiterRegistry::default();
        let limits = reg.for_policy(&policy("2 per minute"));
        assert!(limits.check_caller(0).is_ok());
        assert!(limits.check_caller(0).is_ok());
        // Time stands still: the first slot comes back exactly 30 s after it was taken.
        let retry = limits.check_caller(0).unwrap_err();
        assert_eq!(retry, RetryAfter(Duration::from_secs(30)));
        assert_eq!(retry.secs(), 30);
        assert!(limits.check_rule(0).is_ok(), "no rule limit configured");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            limits.check_caller(0).unwrap_err(),
            RetryAfter(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check_caller(0).is_ok(), "one slot refilled");
        assert!(limits.check_caller(0).is_err(), "only one");
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_waits_for_a_slot_up_to_its_limit_then_refuses() {
        let text = "version: 1\npacing:\n  tenant_writes: 1 per 10s\n  max_wait_ms: 5000\n";
        let limits = LimiterRegistry::default().for_policy(&Policy::from_yaml(text, "t").unwrap());
        let start = crate::clock::Instant::now();
        assert!(limits.pace().await.is_ok());
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first write goes at once"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(limits.pace().await.is_ok());
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "the second waited 4 s for its slot on the paused clock"
        );
        // The next slot is 10 s away, past the 5 s limit: refused at once, nothing waited.
        assert_eq!(
            limits.pace().await.unwrap_err(),
            RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn rates_outside_the_policy_range_cannot_break_a_limiter() {
        // What the issue's `1 per 18446744073709551615s` did inside governor, held off here
        // even for a rate that did not come through the policy loader.
        let limiter = limiter(Rate {
            count: u32::MAX,
            per: Duration::MAX,
        });
        assert!(check(&limiter).is_ok());
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
