//! Blast-radius budgets as policy files write them: `budget: 20 per day` (or `per hour`) on a
//! caller or a rule, and `tenant_budgets: { managedDevices.wipe: 400 per day }` per
//! operation. Each counts the devices acted on in a calendar window (UTC); keeping the counts
//! is `state`'s job.

use std::collections::BTreeMap;
use std::fmt;

use serde_saphyr::Spanned;

use crate::operation::catalog::{self, Operation};

/// The most devices a budget may allow per window (the same bound as a rate's count).
pub const MAX_BUDGET: u32 = super::rate::MAX_COUNT;

/// A budget's calendar window, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetWindow {
    /// A clock hour (hh:00:00 to hh:59:59 UTC).
    Hour,
    /// A calendar day (00:00:00 to 23:59:59 UTC).
    Day,
}

impl BudgetWindow {
    /// The window's length in seconds. Unix time has no leap seconds, so windows of this
    /// length counted from the epoch start exactly at each UTC hour or midnight.
    pub fn secs(self) -> u64 {
        match self {
            BudgetWindow::Hour => 3_600,
            BudgetWindow::Day => 86_400,
        }
    }

    /// `hour` or `day`: the word policy files use, and part of the state keys.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Hour => "hour",
            BudgetWindow::Day => "day",
        }
    }
}

/// At most `limit` devices per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Devices allowed in each window.
    pub limit: u32,
    /// The calendar window.
    pub window: BudgetWindow,
}

impl Budget {
    /// Parses `N per day` or `N per hour`, with `N` in 1..=[`MAX_BUDGET`].
    pub fn parse(text: &str) -> Result<Budget, String> {
        let bad = || format!("{text:?} is not a budget: write 'N per day' or 'N per hour'");
        let mut words = text.split_whitespace();
        let (Some(count), Some("per"), Some(unit), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let limit: u32 = count.parse().map_err(|_| bad())?;
        let window = match unit {
            "day" => BudgetWindow::Day,
            "hour" => BudgetWindow::Hour,
            _ => return Err(bad()),
        };
        if limit == 0 {
            return Err(format!(
                "{text:?} allows nothing: deny the operation with a rule instead"
            ));
        }
        if limit > MAX_BUDGET {
            return Err(format!(
                "{text:?}: at most {MAX_BUDGET} per window; leave the budget out for no limit"
            ));
        }
        Ok(Budget { limit, window })
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}", self.limit, self.window.as_str())
    }
}

/// A tenant-wide budget on one operation (mirroring Intune's own daily caps).
#[derive(Debug, Clone)]
pub struct TenantBudget {
    /// The operation it counts.
    pub op: &'static Operation,
    /// The budget.
    pub budget: Budget,
}

/// Parses an optional `budget:` value, reporting a bad one at its position.
pub(super) fn budget_of(
    text: &Option<Spanned<String>>,
    report: &mut impl FnMut(&Spanned<String>, String),
) -> Option<Budget> {
    let text = text.as_ref()?;
    Budget::parse(&text.value).map_err(|e| report(text, e)).ok()
}

/// The `tenant_budgets:` map: every name must be a catalog operation.
pub(super) fn tenant_budgets(
    entries: &BTreeMap<String, Spanned<String>>,
    report: &mut impl FnMut(&Spanned<String>, String),
) -> Vec<TenantBudget> {
    let mut out = Vec::with_capacity(entries.len());
    for (name, text) in entries {
        let Some(op) = catalog::by_name(name) else {
            let known: Vec<&str> = catalog::CATALOG.iter().map(|o| o.name).collect();
            report(
                text,
                format!(
                    "tenant_budgets names unknown operation {name:?}; known operations: {}",
                    known.join(", ")
                ),
            );
            continue;
        };
        if let Some(budget) = budget_of(&Some(text.clone()), report) {
            out.push(TenantBudget { op, budget });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_per_day_or_per_hour() {
        assert_eq!(
            Budget::parse("20 per day").unwrap(),
            Budget {
                limit: 20,
                window: BudgetWindow::Day
            }
        );
        assert_eq!(
            Budget::parse(" 5  per hour ").unwrap().window,
            BudgetWindow::Hour
        );
        assert_eq!(
            Budget::parse("400 per day").unwrap().to_string(),
            "400 per day"
        );
        for bad in [
            "20 per minute",
            "20 per 86400s",
            "20/day",
            "twenty per day",
            "20 per day please",
            "-1 per day",
        ] {
            assert!(
                Budget::parse(bad).unwrap_err().contains("'N per day'"),
                "{bad}"
            );
        }
        assert!(
            Budget::parse("0 per day")
                .unwrap_err()
                .contains("allows nothing")
        );
        assert!(
            Budget::parse("1000001 per day")
                .unwrap_err()
                .contains("at most 1000000")
        );
    }

    #[test]
    fn windows_start_at_utc_hours_and_midnights() {
        // 2026-11-29T00:00:00Z is a multiple of a day from the epoch, and so of an hour.
        let midnight = 1_795_910_400u64;
        assert_eq!(midnight % BudgetWindow::Day.secs(), 0);
        assert_eq!(midnight % BudgetWindow::Hour.secs(), 0);
    }
}
