//! Four-eyes approval on rules, as policy files write it: `approval: {groups: [{approvers,
//! required}], deny, ttl, execute_within}` and `break_glass: true` on an allow rule, and the
//! named lists of approvers under the top-level `approver_groups:`. Parsed and validated
//! here (approvers exist; the groups can be met by distinct people, one person counting
//! toward one group only); what becomes of a held request is [`crate::approval`]'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::issues::Issues;
use crate::words::count;

/// How long a pending request waits for its reviews by default (`ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3_600);
/// The longest `ttl`: Intune's own Multi Admin Approval keeps requests 3 days.
pub const MAX_TTL: Duration = Duration::from_secs(72 * 3_600);
/// How long an approved request may wait to run (or be redeemed) by default.
pub const DEFAULT_EXECUTE_WITHIN: Duration = Duration::from_secs(15 * 60);
/// The longest `execute_within`.
pub const MAX_EXECUTE_WITHIN: Duration = Duration::from_secs(24 * 3_600);
/// The most groups one rule may have, and the most approvals one group may require.
pub const MAX_GROUPS: usize = 16;
/// The most approvals one group may require.
pub const MAX_REQUIRED: u32 = 32;

/// `approval:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalEntry {
    groups: Spanned<Vec<Spanned<GroupEntry>>>,
    #[serde(default)]
    deny: Option<Spanned<u32>>,
    #[serde(default)]
    ttl: Option<Spanned<String>>,
    #[serde(default)]
    execute_within: Option<Spanned<String>>,
}

/// One group as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupEntry {
    approvers: Spanned<Vec<Spanned<String>>>,
    required: Spanned<u32>,
}

/// What a rule's requests need before they run: every group reaches its count (AND), each
/// approval from a distinct person who counts toward one group only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The groups, in file order.
    pub groups: Vec<ApproverGroup>,
    /// This many rejections end a request (`deny`, default 1).
    pub deny: u32,
    /// A pending request expires after this.
    pub ttl: Duration,
    /// An approved request runs (or is redeemed, for a secret read) within this.
    pub execute_within: Duration,
}

/// One group of approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverGroup {
    /// The names as the rule writes them (callers or `approver_groups` names).
    pub named: Vec<String>,
    /// The callers that may approve for it, `approver_groups` expanded (sorted, once each).
    pub approvers: Vec<String>,
    /// How many of them must approve.
    pub required: u32,
}

impl Approval {
    /// Whether `caller` (a policy caller's name) may review for any group.
    pub fn is_approver(&self, caller: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.approvers.iter().any(|a| a == caller))
    }

    /// Every approver of every group, once each (sorted).
    pub fn approvers(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.groups.iter().flat_map(|g| &g.approvers).collect();
        all.into_iter().cloned().collect()
    }

    /// In words, for `policy explain` and dry runs: `1 of [a, b] and 1 of [c]; 1 rejection
    /// ends it; expires after 1h; runs within 15m of the last approval`.
    pub fn describe(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{} of [{}]", g.required, g.named.join(", ")))
            .collect();
        format!(
            "{} (distinct people, each counted toward one group); {} {} it; a pending request expires after {}; an approved one runs within {}",
            groups.join(" and "),
            count(self.deny, "rejection"),
            if self.deny == 1 { "ends" } else { "end" },
            show_duration(self.ttl),
            show_duration(self.execute_within)
        )
    }
}

/// The people a set of groups needs, assigned: for each person, the group they count
/// toward (or none). A maximum assignment in which each person counts toward one group only
/// and group `g` takes at most `required[g]`; `eligible(p, g)` says whether person `p` may
/// count toward group `g`. Every group is met when the assigned count is the sum of
/// `required` (see [`is_met`]).
pub fn assign(
    required: &[u32],
    people: usize,
    eligible: impl Fn(usize, usize) -> bool,
) -> Vec<Option<usize>> {
    // Each group is `required` slots; a person takes one slot (Kuhn's augmenting paths:
    // groups and counts are bounded by MAX_GROUPS and MAX_REQUIRED, people by the reviews).
    let slots: Vec<usize> = required
        .iter()
        .enumerate()
        .flat_map(|(g, &n)| std::iter::repeat_n(g, n as usize))
        .collect();
    let mut slot_of: Vec<Option<usize>> = vec![None; people];
    let mut person_in: Vec<Option<usize>> = vec![None; slots.len()];
    for p in 0..people {
        let mut seen = vec![false; slots.len()];
        augment(
            p,
            &slots,
            &eligible,
            &mut seen,
            &mut slot_of,
            &mut person_in,
        );
    }
    slot_of.into_iter().map(|s| s.map(|s| slots[s])).collect()
}

fn augment(
    p: usize,
    slots: &[usize],
    eligible: &impl Fn(usize, usize) -> bool,
    seen: &mut [bool],
    slot_of: &mut [Option<usize>],
    person_in: &mut [Option<usize>],
) -> bool {
    for s in 0..slots.len() {
        if seen[s] || !eligible(p, slots[s]) {
            continue;
        }
        seen[s] = true;
        let free = match person_in[s] {
            None => true,
            Some(other) => augment(other, slots, eligible, seen, slot_of, person_in),
        };
        if free {
            slot_of[p] = Some(s);
            person_in[s] = Some(p);
            return true;
        }
    }
    false
}

/// Whether an assignment (see [`assign`]) meets every group.
pub fn is_met(required: &[u32], assigned: &[Option<usize>]) -> bool {
    let total: u32 = required.iter().sum();
    assigned.iter().flatten().count() == total as usize
}

/// Compiles `approver_groups`: each name's callers, checked to exist and not to clash with a
/// caller's name.
pub(super) fn approver_groups(
    entries: &BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    callers: &HashMap<&str, usize>,
    issues: &mut Issues,
) -> BTreeMap<String, Vec<String>> {
    let mut groups = BTreeMap::new();
    for (name, members) in entries {
        if callers.contains_key(name.as_str()) {
            issues.at(
                members,
                format!("approver group {name:?} has the name of a caller: rules could not tell them apart"),
            );
        }
        if members.value.is_empty() {
            issues.at(members, format!("approver group {name:?} is empty"));
        }
        let mut list = Vec::with_capacity(members.value.len());
        for m in &members.value {
            if callers.contains_key(m.value.as_str()) {
                list.push(m.value.clone());
            } else if entries.contains_key(&m.value) {
                issues.at(m, format!("approver group {name:?} names the group {:?}: groups list callers, not other groups", m.value));
            } else {
                issues.at(
                    m,
                    format!(
                        "approver group {name:?} names {:?}, which is no caller",
                        m.value
                    ),
                );
            }
        }
        list.sort();
        list.dedup();
        groups.insert(name.clone(), list);
    }
    groups
}

/// What compiling a rule's approval keys needs to know.
pub(super) struct Context<'a> {
    /// Callers by name.
    pub callers: &'a HashMap<&'a str, usize>,
    /// `approver_groups`, compiled.
    pub groups: &'a BTreeMap<String, Vec<String>>,
}

/// Compiles a rule's `approval` and `break_glass`. `requesters` are the names of the callers
/// the rule covers: none of them can approve their own request, so the groups must be met
/// without each of them in turn.
pub(super) fn rule_approval(
    entry: Option<&Spanned<ApprovalEntry>>,
    break_glass: Option<&Spanned<bool>>,
    (deny, shadow): (bool, bool),
    requesters: &[&str],
    cx: &Context<'_>,
    issues: &mut Issues,
) -> (Option<Approval>, bool) {
    let glass = break_glass.is_some_and(|b| b.value);
    if let (Some(b), None) = (break_glass.filter(|b| b.value), entry) {
        issues.at(
            b,
            "break_glass needs an approval on the rule: it lets a request run at once and be reviewed afterwards",
        );
    }
    let Some(entry) = entry else {
        return (None, glass);
    };
    if deny {
        issues.at(
            entry,
            "approval belongs on allow rules: a deny rule refuses whatever anyone approves",
        );
    }
    if shadow {
        issues.at(
            entry,
            "approval belongs on enforced rules: a shadow rule never holds a request",
        );
    }
    let a = &entry.value;
    if a.groups.value.is_empty() {
        issues.at(&a.groups, "an approval needs at least one group");
    }
    if a.groups.value.len() > MAX_GROUPS {
        issues.at(
            &a.groups,
            format!("an approval may have at most {MAX_GROUPS} groups"),
        );
    }
    let groups: Vec<ApproverGroup> = a
        .groups
        .value
        .iter()
        .map(|g| group(g, cx, issues))
        .collect();
    let deny_count = a.deny.as_ref().map_or(1, |d| d.value);
    if let Some(d) = a.deny.as_ref().filter(|d| d.value == 0) {
        issues.at(
            d,
            "deny must be at least 1: the number of rejections that end a request",
        );
    }
    let ttl = duration(a.ttl.as_ref(), DEFAULT_TTL, MAX_TTL, "ttl", issues);
    let execute_within = duration(
        a.execute_within.as_ref(),
        DEFAULT_EXECUTE_WITHIN,
        MAX_EXECUTE_WITHIN,
        "execute_within",
        issues,
    );
    let approval = Approval {
        groups,
        deny: deny_count.max(1),
        ttl,
        execute_within,
    };
    satisfiable(entry, &approval, requesters, issues);
    (Some(approval), glass)
}

fn group(entry: &Spanned<GroupEntry>, cx: &Context<'_>, issues: &mut Issues) -> ApproverGroup {
    let g = &entry.value;
    let mut approvers = BTreeSet::new();
    for name in &g.approvers.value {
        if cx.callers.contains_key(name.value.as_str()) {
            approvers.insert(name.value.clone());
        } else if let Some(members) = cx.groups.get(&name.value) {
            approvers.extend(members.iter().cloned());
        } else {
            issues.at(
                name,
                format!(
                    "approver {:?} is neither a caller nor one of approver_groups",
                    name.value
                ),
            );
        }
    }
    let required = g.required.value;
    if required == 0 || required > MAX_REQUIRED {
        issues.at(&g.required, format!("required must be 1 to {MAX_REQUIRED}"));
    } else if approvers.len() < required as usize && !approvers.is_empty() {
        issues.at(
            &g.required,
            format!(
                "this group requires {required} approvals but names {}",
                count(approvers.len(), "approver")
            ),
        );
    }
    ApproverGroup {
        named: g.approvers.value.iter().map(|n| n.value.clone()).collect(),
        approvers: approvers.into_iter().collect(),
        required: required.min(MAX_REQUIRED),
    }
}

/// Refuses groups that distinct people cannot meet together: one person counts toward one
/// group only (a group of [a, b] needing 1 and a group of [b] needing 1 need a and b, not b
/// twice), and the requester never approves their own request.
fn satisfiable(
    at: &Spanned<ApprovalEntry>,
    approval: &Approval,
    requesters: &[&str],
    issues: &mut Issues,
) {
    let required: Vec<u32> = approval.groups.iter().map(|g| g.required).collect();
    let everyone = approval.approvers();
    let need: u32 = required.iter().sum();
    // With no requester excluded first, then without each requester in turn.
    let cases = std::iter::once(None).chain(requesters.iter().map(|r| Some(*r)));
    for excluded in cases {
        let people: Vec<&String> = everyone
            .iter()
            .filter(|p| Some(p.as_str()) != excluded)
            .collect();
        let assigned = assign(&required, people.len(), |p, g| {
            approval.groups[g].approvers.contains(people[p])
        });
        if is_met(&required, &assigned) {
            continue;
        }
        let got = assigned.iter().flatten().count();
        let whose = match excluded {
            None => String::new(),
            Some(r) => format!(" for requests by {r:?} (who cannot approve their own)"),
        };
        issues.at(
            at,
            format!(
                "these approval groups cannot be met by distinct people{whose}: they need {}, but at most {} can give them (one person counts toward one group only)",
                count(need, "approval"),
                count(got, "distinct approver")
            ),
        );
        return;
    }
}

fn duration(
    entry: Option<&Spanned<String>>,
    default: Duration,
    max: Duration,
    key: &str,
    issues: &mut Issues,
) -> Duration {
    let Some(text) = entry else {
        return default;
    };
    match parse_duration(&text.value) {
        Ok(d) if d <= max => d,
        Ok(_) => {
            issues.at(text, format!("{key} may be at most {}", show_duration(max)));
            max
        }
        Err(e) => {
            issues.at(text, format!("{key}: {e}"));
            default
        }
    }
}

/// Parses `90s`, `15m`, `1h` or `3d`: a whole number above zero and one unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write e.g. 90s, 15m, 1h or 3d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("{text:?} is no time at all"));
    }
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// `1h`, `15m`, `90s`: the largest unit that divides it.
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_counts_toward_one_group_only() {
        // Groups [a, b] needing 1 and [b] needing 1: b must go to the second group.
        let groups = [vec!["a", "b"], vec!["b"]];
        let required = [1, 1];
        let people = ["b", "a"];
        let assigned = assign(&required, people.len(), |p, g| {
            groups[g].contains(&people[p])
        });
        assert!(is_met(&required, &assigned), "{assigned:?}");
        assert_eq!(assigned, [Some(1), Some(0)]);
        // b alone cannot meet both.
        let assigned = assign(&required, 1, |_, g| groups[g].contains(&"b"));
        assert!(!is_met(&required, &assigned));
        assert_eq!(assigned.iter().flatten().count(), 1);
    }

    #[test]
    fn counts_above_one_take_as_many_people() {
        let required = [2];
        assert!(!is_met(&required, &assign(&required, 1, |_, _| true)));
        assert!(is_met(&required, &assign(&required, 3, |_, _| true)));
    }

    #[test]
    fn durations_are_whole_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(259_200)));
        for bad in ["", "h", "1", "1.5h", "0m", "-1h", "1 h", "1w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(show_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(show_duration(Duration::from_secs(900)), "15m");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
    }
}
