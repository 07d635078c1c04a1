//! Rate expressions as policy files write them: `N per second|minute|hour|day`, or
//! `N per <count>s` (e.g. Intune's `200 per 20s`), each number within a range the limiters
//! can hold.

use std::fmt;
use std::time::Duration;

/// The longest window a rate may have: one day. Longer windows are refused, not clamped:
/// the limiters count in nanoseconds, and a window of centuries is a typo, not a budget.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// The most requests a rate may allow per window (one per microsecond over a second).
pub const MAX_COUNT: u32 = 1_000_000;

/// `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests allowed in each window (also the burst).
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// Parses `N per second|minute|hour|day|Ks`, with `N` in 1..=[`MAX_COUNT`] and the
    /// window in 1 s..=[`MAX_WINDOW`].
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || {
            format!("{text:?} is not a rate: write 'N per second|minute|hour|day' or 'N per 20s'")
        };
        let mut words = text.split_whitespace();
        let (Some(count), Some("per"), Some(unit), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let count: u32 = count.parse().map_err(|_| bad())?;
        let per = match unit {
            "second" | "seconds" | "s" => Duration::from_secs(1),
            "minute" | "minutes" | "m" => Duration::from_secs(60),
            "hour" | "hours" | "h" => Duration::from_secs(3600),
            "day" | "days" | "d" => MAX_WINDOW,
            other => {
                let secs: u64 = other
                    .strip_suffix('s')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(bad)?;
                Duration::from_secs(secs)
            }
        };
        if count == 0 || per.is_zero() {
            return Err(format!(
                "{text:?} allows nothing: use a count and window above zero"
            ));
        }
        if per > MAX_WINDOW {
            return Err(format!(
                "{text:?}: the window is longer than a day ({}s); write a daily budget as 'N per day'",
                MAX_WINDOW.as_secs()
            ));
        }
        if count > MAX_COUNT {
            return Err(format!(
                "{text:?}: at most {MAX_COUNT} requests per window; leave rate_limit out for no limit"
            ));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}s", self.count, self.per.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_windows() {
        assert_eq!(
            Rate::parse("10 per minute").unwrap(),
            Rate {
                count: 10,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(
            Rate::parse("200 per 20s").unwrap(),
            Rate {
                count: 200,
                per: Duration::from_secs(20)
            }
        );
        assert_eq!(
            Rate::parse("5 per hour").unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in [
            "ten per minute",
            "10 a minute",
            "10 per fortnight",
            "0 per second",
            "10 per 0s",
            "10 per",
            "1 per 18446744073709551616s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_outside_what_a_limiter_holds_are_refused_with_the_range() {
        // The value: accepted before, then governor panicked converting it.
        let huge = Rate::parse("1 per 18446744073709551615s").unwrap_err();
        assert!(huge.contains("longer than a day (86400s)"), "{huge}");
        assert!(Rate::parse("1 per 86401s").is_err());
        assert_eq!(Rate::parse("5 per 86400s").unwrap().per, MAX_WINDOW);
        assert_eq!(Rate::parse("5 per day").unwrap().per, MAX_WINDOW);
        let many = Rate::parse("1000001 per second").unwrap_err();
        assert!(many.contains("at most 1000000"), "{many}");
        assert_eq!(Rate::parse("1000000 per second").unwrap().count, MAX_COUNT);
        assert!(Rate::parse("4294967296 per second").is_err(), "past u32");
    }
}
