//! The limits' arithmetic, in microseconds: a GCRA for rate limits, an exact sliding window
//! for the tenant pacing, budget counts, and [`Counters::take`], the order a take checks
//! them in. The memory store runs these; the Redis script (`scripts/take.lua`) does the same
//! steps, and `tests/e2e/state_contract.rs` (`the_lua_scripts_and_algo_agree_step_by_step`)
//! feeds both the same inputs.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::budget_file::Count;
use super::store::Held;
use super::{Admission, Limiter, Refund, Refused, Take, Taken};
use crate::policy::Rate;
use crate::policy::rate::{MAX_COUNT, MAX_WINDOW};

/// Past this many limiter or window entries, those that no longer hold anything back are
/// dropped (a fully refilled limiter is the same as a fresh one).
const PRUNE_AT: usize = 10_000;

/// What the memory store counts: rate limiters, pacing windows and budgets (the claims are
/// kept beside them, see `memory_claims`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Rate limiters' theoretical arrival times (µs on the store's clock).
    tats: HashMap<String, u64>,
    /// Pacing windows: admission times still in the window (µs), with their names.
    windows: HashMap<String, VecDeque<(u64, String)>>,
    /// Budget counters, by key (the key names the window).
    budgets: HashMap<String, Count>,
    /// Bumped on every budget change.
    generation: u64,
}

impl Counters {
    /// Counters starting from these budget counts.
    pub fn with_budgets(budgets: HashMap<String, Count>) -> Self {
        Counters {
            budgets,
            ..Counters::default()
        }
    }

    /// One take at `now` (µs, the store's clock) and `wall` (Unix seconds, for budget
    /// windows), in the order of [`super::Store::take`]: the limiters, then the claim
    /// (`held` says what holds it, when another attempt does), then the admission. On
    /// [`Taken::All`] the caller takes the claim, in the same critical section.
    pub fn take(
        &mut self,
        take: &Take<'_>,
        held: impl FnOnce() -> Option<Held>,
        now: u64,
        wall: u64,
    ) -> Taken {
        let next = match self.conform(take.limiters, take.cost, now) {
            Ok(next) => next,
            Err((index, wait)) => {
                return Taken::Limited {
                    index,
                    wait: Duration::from_micros(wait),
                };
            }
        };
        if let Some(held) = take.claim.as_ref().and_then(|_| held()) {
            self.charge(take.limiters, next, now);
            return Taken::Held(held);
        }
        let admitted = match &take.admission {
            Some(a) => self.admit(a, now, wall),
            None => Ok(Vec::new()),
        };
        self.charge(take.limiters, next, now);
        match admitted {
            Ok(used) => Taken::All { used },
            Err(refused) => Taken::Refused(refused),
        }
    }

    /// Each limiter's new theoretical arrival time if a request of `cost` units conforms to
    /// all at `now`; else the first that refuses, with its wait (µs).
    fn conform(
        &self,
        limiters: &[&Limiter],
        cost: u32,
        now: u64,
    ) -> Result<Vec<u64>, (usize, u64)> {
        let mut next = Vec::with_capacity(limiters.len());
        for (i, l) in limiters.iter().enumerate() {
            match gcra(
                self.tats.get(&l.key).copied(),
                now,
                gcra_params(l.rate),
                cost,
            ) {
                Ok(tat) => next.push(tat),
                Err(wait) => return Err((i, wait)),
            }
        }
        Ok(next)
    }

    fn charge(&mut self, limiters: &[&Limiter], next: Vec<u64>, now: u64) {
        if self.tats.len() > PRUNE_AT {
            self.tats.retain(|_, tat| *tat > now);
        }
        for (l, tat) in limiters.iter().zip(next) {
            match self.tats.get_mut(&l.key) {
                Some(t) => *t = tat,
                None => {
                    self.tats.insert(l.key.clone(), tat);
                }
            }
        }
    }

    /// Budgets and a pacing slot, together or not at all: each budget's count now.
    fn admit(&mut self, a: &Admission<'_>, now: u64, wall: u64) -> Result<Vec<u64>, Refused> {
        let n = u64::from(a.devices);
        self.budgets.retain(|_, c| c.window_end > wall);
        let mut used = Vec::with_capacity(a.budgets.len());
        for (index, b) in a.budgets.iter().enumerate() {
            let so_far = self.budgets.get(&b.key).map_or(0, |c| c.used);
            if so_far + n > u64::from(b.limit) {
                return Err(Refused::OverBudget {
                    index,
                    used: so_far,
                });
            }
            used.push(so_far + n);
        }
        let window = micros(a.pacing_window);
        if self.windows.len() > PRUNE_AT {
            self.windows
                .retain(|_, w| w.back().is_some_and(|(last, _)| last + window > now));
        }
        let taken = self.windows.entry(a.pacing_key.to_owned()).or_default();
        if let Err(wait) = slide(taken, now, a.pacing_count, window, a.pacing_member) {
            return Err(Refused::Paced(Duration::from_micros(wait)));
        }
        for (b, used) in a.budgets.iter().zip(&used) {
            let count = Count {
                window_end: b.window_end,
                used: *used,
            };
            self.budgets.insert(b.key.clone(), count);
        }
        if !a.budgets.is_empty() {
            self.generation += 1;
        }
        Ok(used)
    }

    /// Gives back a write slot, and `devices` on each budget (never below zero).
    pub fn refund(&mut self, r: &Refund<'_>) {
        if let Some(taken) = self.windows.get_mut(r.pacing_key) {
            taken.retain(|(_, member)| member != r.pacing_member);
        }
        for b in r.budgets {
            if let Some(c) = self.budgets.get_mut(&b.key) {
                c.used = c.used.saturating_sub(u64::from(r.devices));
            }
        }
        if !r.budgets.is_empty() {
            self.generation += 1;
        }
    }

    /// The budget counts of windows not over at `wall`, and the generation they are of.
    pub fn budgets(&self, wall: u64) -> (u64, HashMap<String, Count>) {
        let open = self.budgets.iter().filter(|(_, c)| c.window_end > wall);
        let counts = open.map(|(k, c)| (k.clone(), *c)).collect();
        (self.generation, counts)
    }

    /// The count a budget key holds now.
    pub fn used(&self, key: &str) -> u64 {
        self.budgets.get(key).map_or(0, |c| c.used)
    }
}

/// Microseconds in `d` (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A GCRA's emission interval and burst tolerance, in microseconds: `count` requests at
/// once, then one more every `per / count`. A rate built in code is held to the policy's
/// range here, so no value can overflow.
pub fn gcra_params(rate: Rate) -> (u64, u64) {
    let count = u64::from(rate.count.clamp(1, MAX_COUNT));
    let interval = (micros(rate.per.min(MAX_WINDOW)) / count).max(1);
    (interval, interval * (count - 1))
}

/// One GCRA step for a request of `cost` units (a bulk request's devices; at least 1):
/// with `tat` the limiter's theoretical arrival time (none when fresh), the new one if the
/// request at `now` conforms, else how long until it would. A cost past the burst never
/// conforms (the caller checks that first: waiting would not help).
pub fn gcra(
    tat: Option<u64>,
    now: u64,
    (interval, tolerance): (u64, u64),
    cost: u32,
) -> Result<u64, u64> {
    let tat = tat.unwrap_or(now).max(now);
    let extra = interval.saturating_mul(u64::from(cost.max(1)) - 1);
    let due = tat.saturating_add(extra) - now;
    if due > tolerance {
        return Err(due - tolerance);
    }
    Ok(tat.saturating_add(extra).saturating_add(interval))
}

/// One sliding-window step: `taken` holds the admission times still in the window (oldest
/// first), each with its admission's name. A slot taken at `t` is free again at
/// `t + window`, so no window of that length ever holds more than `count`. Takes a slot at
/// `now` for `member`, or says how long until one frees.
pub fn slide(
    taken: &mut VecDeque<(u64, String)>,
    now: u64,
    count: u32,
    window: u64,
    member: &str,
) -> Result<(), u64> {
    while taken.front().is_some_and(|(t, _)| t + window <= now) {
        taken.pop_front();
    }
    match taken.front() {
        Some((oldest, _)) if taken.len() >= count as usize => Err(oldest + window - now),
        _ => {
            taken.push_back((now, member.to_owned()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let p = gcra_params(Rate {
            count: 2,
            per: Duration::from_secs(60),
        });
        assert_eq!(p, (30 * S, 30 * S));
        let t = gcra(None, 0, p, 1).unwrap();
        let t = gcra(Some(t), 0, p, 1).unwrap();
        assert_eq!(gcra(Some(t), 0, p, 1), Err(30 * S), "the third waits 30 s");
        assert_eq!(gcra(Some(t), 29 * S, p, 1), Err(S));
        let t = gcra(Some(t), 30 * S, p, 1).unwrap();
        assert!(gcra(Some(t), 30 * S, p, 1).is_err(), "only one refilled");
    }

    #[test]
    fn a_request_of_several_units_takes_them_all_or_waits_for_them_all() {
        let p = gcra_params(Rate {
            count: 10,
            per: Duration::from_secs(10),
        });
        // 7 devices, then 3: the burst of 10 is used up.
        let t = gcra(None, 0, p, 7).unwrap();
        let t = gcra(Some(t), 0, p, 3).unwrap();
        assert_eq!(
            gcra(Some(t), 0, p, 1),
            Err(S),
            "one more waits one interval"
        );
        assert_eq!(gcra(Some(t), 0, p, 4), Err(4 * S), "four wait four");
        // After 4 s, 4 devices fit again, 5 do not.
        assert_eq!(gcra(Some(t), 4 * S, p, 5), Err(S));
        assert!(gcra(Some(t), 4 * S, p, 4).is_ok());
        // The whole burst at once, from fresh; one past it never conforms.
        assert!(gcra(None, 0, p, 10).is_ok());
        assert!(gcra(None, 0, p, 11).is_err());
    }

    #[test]
    fn gcra_parameters_stay_in_range() {
        let (interval, tolerance) = gcra_params(Rate {
            count: u32::MAX,
            per: Duration::MAX,
        });
        assert!(interval >= 1 && tolerance < u64::MAX / 2);
    }

    #[test]
    fn the_sliding_window_never_holds_more_than_its_count() {
        let mut taken = VecDeque::new();
        let w = 10 * S;
        for t in [0, 1, 2] {
            assert_eq!(slide(&mut taken, t * S, 3, w, "m"), Ok(()));
        }
        assert_eq!(
            slide(&mut taken, 5 * S, 3, w, "m"),
            Err(5 * S),
            "full until the first frees"
        );
        assert_eq!(
            slide(&mut taken, 10 * S, 3, w, "m"),
            Ok(()),
            "freed exactly at t + window"
        );
        assert_eq!(slide(&mut taken, 10 * S, 3, w, "m"), Err(S));
        // Admissions every 10 ms for 60 s: no 10 s window ever holds more than 3.
        let mut taken = VecDeque::new();
        let mut admitted = Vec::new();
        for i in 0..6_000u64 {
            if slide(&mut taken, i * 10_000, 3, w, "m").is_ok() {
                admitted.push(i * 10_000);
            }
        }
        assert!(admitted.windows(4).all(|four| four[3] - four[0] >= w));
        assert_eq!(admitted.len(), 18, "3 per 10 s for 60 s");
    }
}
