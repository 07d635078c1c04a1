//! Rate expressions as policy files write them: `N per second|minute|hour`, or
//! `N per <count>s` (e.g. Intune's `200 per 20s`).

use std::fmt;
use std::time::Duration;

/// `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests allowed in each window (also the burst).
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// Parses `N per second|minute|hour|Ks`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad =
            || format!("{text:?} is not a rate: write 'N per second|minute|hour' or 'N per 20s'");
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
        Ok(Rate { count, per })
    }

    /// This rate divided among `replicas` (at least one request per window each).
    pub fn split(self, replicas: u32) -> Rate {
        Rate {
            count: (self.count / replicas.max(1)).max(1),
            per: self.per,
        }
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
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Rate::parse("200 per 20s").unwrap().split(3).count, 66);
    }
}
