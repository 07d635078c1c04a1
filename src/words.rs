//! Counted nouns in messages: "1 caller, 2 rules", never "1 callers" or "record(s)"; and
//! the closest name to a misspelt one ("did you mean keepUserData?").

use std::fmt;

/// `n` and the noun, singular for exactly one: `count(1, "rule")` is "1 rule".
pub fn count(n: impl Into<Count>, noun: &str) -> Counted<'_> {
    Counted {
        n: n.into().0,
        singular: noun,
        plural: None,
    }
}

/// `n` and the noun, with an irregular plural: `count_as(2, "entry", "entries")`.
pub fn count_as<'a>(n: impl Into<Count>, singular: &'a str, plural: &'a str) -> Counted<'a> {
    Counted {
        n: n.into().0,
        singular,
        plural: Some(plural),
    }
}

/// A count of things (from `usize`, `u64` or `u32`).
#[derive(Debug, Clone, Copy)]
pub struct Count(u64);

impl From<usize> for Count {
    fn from(n: usize) -> Self {
        Count(n as u64)
    }
}

impl From<u64> for Count {
    fn from(n: u64) -> Self {
        Count(n)
    }
}

impl From<u32> for Count {
    fn from(n: u32) -> Self {
        Count(u64::from(n))
    }
}

/// A number and its noun, written in agreement.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'a> {
    n: u64,
    singular: &'a str,
    plural: Option<&'a str>,
}

impl fmt::Display for Counted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.n, self.plural) {
            (1, _) => write!(f, "1 {}", self.singular),
            (n, Some(plural)) => write!(f, "{n} {plural}"),
            (n, None) => write!(f, "{n} {}s", self.singular),
        }
    }
}

/// The noun alone, agreeing with `n`: `noun(3, "device")` is "devices".
pub fn noun(n: impl Into<Count>, singular: &str) -> String {
    match n.into().0 {
        1 => singular.to_owned(),
        _ => format!("{singular}s"),
    }
}

/// The candidate most like `given`, if one is close enough to be what was meant: a
/// different case of it, the part after a dot (`wipe` for `managedDevices.wipe`), or a
/// name within a typo's distance (Jaro-Winkler, as clap's own suggestions use).
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = given.to_ascii_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        let lower = candidate.to_ascii_lowercase();
        let tail = lower.rsplit('.').next().unwrap_or(&lower);
        let score = if lower == wanted || tail == wanted {
            2.0
        } else {
            strsim::jaro_winkler(&wanted, &lower).max(strsim::jaro_winkler(&wanted, tail))
        };
        if score > best.map_or(SIMILAR_ENOUGH, |(s, _)| s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// The least Jaro-Winkler similarity a suggestion needs (clap's own threshold is 0.7; names
/// here are longer and share prefixes like `managedDevices.`, so a little stricter).
const SIMILAR_ENOUGH: f64 = 0.8;

/// " (did you mean X?)" for the closest candidate, or nothing.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(given, candidates)
        .map(|c| format!(" (did you mean {c}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1usize, "caller").to_string(), "1 caller");
        assert_eq!(count(0usize, "caller").to_string(), "0 callers");
        assert_eq!(count(2u64, "rule").to_string(), "2 rules");
        assert_eq!(count_as(1u32, "entry", "entries").to_string(), "1 entry");
        assert_eq!(
            count_as(3usize, "entry", "entries").to_string(),
            "3 entries"
        );
        assert_eq!(noun(1usize, "device"), "device");
        assert_eq!(noun(2usize, "device"), "devices");
    }

    #[test]
    fn the_closest_name_is_suggested_and_a_stranger_is_not() {
        let params = ["keepEnrollmentData", "keepUserData", "macOsUnlockCode"];
        assert_eq!(closest("keepUserdata", params), Some("keepUserData"));
        assert_eq!(closest("keepUsrData", params), Some("keepUserData"));
        assert_eq!(closest("keepuserdata", params), Some("keepUserData"));
        assert_eq!(closest("colour", params), None);
        let ops = ["managedDevices.wipe", "managedDevices.retire"];
        assert_eq!(closest("wipe", ops), Some("managedDevices.wipe"));
        assert_eq!(
            closest("managedDevices.whipe", ops),
            Some("managedDevices.wipe")
        );
        assert_eq!(
            closest("managedDevice.retire", ops),
            Some("managedDevices.retire")
        );
        assert_eq!(
            did_you_mean("retyre", ops),
            " (did you mean managedDevices.retire?)"
        );
        assert_eq!(did_you_mean("xyzzy", ops), "");
        let issuers = [
            "https://sts.windows.net/6babcaad-604b-40ac-a9d7-9fd97c0b779f/",
            "https://kubernetes.default.svc.cluster.local",
        ];
        assert_eq!(
            closest("https://kubernetes.default.svc.cluster.local/", issuers),
            Some(issuers[1])
        );
        assert_eq!(
            closest("https://token.actions.githubusercontent.com", issuers),
            None
        );
    }
}
