//! The limits' arithmetic, in microseconds: a GCRA for rate limits and an exact sliding
//! window for the tenant pacing. The memory store runs these functions; the Redis scripts
//! (`scripts/gcra.lua`, `scripts/admit.lua`) do the same steps, and
//! `tests/e2e/state_contract.rs` (`the_lua_scripts_and_algo_agree_step_by_step`) feeds both
//! the same inputs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::policy::Rate;
use crate::policy::rate::{MAX_COUNT, MAX_WINDOW};

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
