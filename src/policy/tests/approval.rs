//! `approval:`, `approver_groups:` and `break_glass:`: parsed, defaulted, and refused with
//! every problem at its place, including groups distinct people cannot meet.

use super::*;

const CALLERS: &str = "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"1111111111111111111111111111111111111111111111111111111111111111\"\n  - name: alice\n    api_key_sha256: \"2222222222222222222222222222222222222222222222222222222222222222\"\n  - name: bob\n    api_key_sha256: \"3333333333333333333333333333333333333333333333333333333333333333\"\n  - name: carol\n    api_key_sha256: \"4444444444444444444444444444444444444444444444444444444444444444\"\n";

fn with(rest: &str) -> String {
    format!("{CALLERS}{rest}")
}

fn wipe_rule(requesters: &str, approval: &str) -> String {
    format!(
        "rules:\n  - name: wipes\n    callers: [{requesters}]\n    operations: [managedDevices.wipe]\n{approval}"
    )
}

#[test]
fn approvals_parse_with_their_groups_expanded_and_their_defaults() {
    let text = with(&format!(
        "approver_groups:\n  secops: [alice, bob]\n{}    break_glass: true\n",
        wipe_rule(
            "ops",
            "    approval:\n      groups:\n        - { approvers: [secops], required: 1 }\n        - { approvers: [carol], required: 1 }\n"
        )
    ));
    let p = Policy::from_yaml(&text, "p.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(p.has_approvals());
    let a = p.rules[0].approval.as_ref().unwrap();
    assert_eq!(a.groups[0].named, ["secops"]);
    assert_eq!(a.groups[0].approvers, ["alice", "bob"]);
    assert_eq!(a.groups[1].approvers, ["carol"]);
    assert_eq!(a.deny, 1);
    assert_eq!(a.ttl, std::time::Duration::from_secs(3_600));
    assert_eq!(a.execute_within, std::time::Duration::from_secs(900));
    assert!(p.rules[0].break_glass);
    assert!(a.is_approver("bob") && !a.is_approver("ops"));
    assert!(
        a.describe().starts_with("1 of [secops] and 1 of [carol]")
            && a.describe().contains("; 1 rejection ends it;"),
        "{}",
        a.describe()
    );
    assert!(!policy(ALLOW).has_approvals());
}

#[test]
fn every_approval_problem_is_reported_at_its_place_at_once() {
    let text = with(&format!(
        "approver_groups:\n  alice: [bob]\n  leads: [nobody]\n{}    break_glass: true\n  - name: nope\n    effect: deny\n    callers: [ops]\n    operations: [managedDevices.retire]\n    approval:\n      groups:\n        - {{ approvers: [carol], required: 1 }}\n  - name: glass-alone\n    callers: [ops]\n    operations: [managedDevices.delete]\n    break_glass: true\n",
        wipe_rule(
            "ops",
            "    approval:\n      groups:\n        - { approvers: [secops, carol], required: 0 }\n        - { approvers: [bob], required: 2 }\n      deny: 0\n      ttl: 100h\n      execute_within: soon\n"
        )
    ));
    let err = errors(&text);
    let said = |needle: &str| {
        err.issues
            .iter()
            .find(|i| i.message.contains(needle))
            .unwrap_or_else(|| panic!("no issue saying {needle:?} in {err}"))
    };
    said("has the name of a caller");
    said("names \"nobody\", which is no caller");
    let unknown = said("approver \"secops\" is neither a caller nor one of approver_groups");
    assert!(unknown.line > 0 && unknown.column > 0, "{unknown}");
    said("required must be 1 to 32");
    assert!(
        said("requires 2 approvals but names 1 approver")
            .message
            .ends_with("names 1 approver"),
        "{err}"
    );
    said("deny must be at least 1");
    said("ttl may be at most 3d");
    said("execute_within: \"soon\" is not a duration");
    said("approval belongs on allow rules");
    said("break_glass needs an approval on the rule");
    assert!(err.issues.len() >= 10, "{err}");
}

#[test]
fn groups_distinct_people_cannot_meet_are_refused() {
    // b alone cannot be one of [a, b] and one of [b] at once... but a and b can.
    let fine = with(&wipe_rule(
        "ops",
        "    approval:\n      groups:\n        - { approvers: [alice, bob], required: 1 }\n        - { approvers: [bob], required: 1 }\n",
    ));
    Policy::from_yaml(&fine, "p.yaml").unwrap_or_else(|e| panic!("{e}"));
    // Two approvals from the one person bob: never.
    let twice = with(&wipe_rule(
        "ops",
        "    approval:\n      groups:\n        - { approvers: [bob], required: 1 }\n        - { approvers: [bob], required: 1 }\n",
    ));
    let err = errors(&twice);
    assert!(
        err.issues[0]
            .message
            .contains("cannot be met by distinct people")
            && err.issues[0]
                .message
                .contains("they need 2 approvals, but at most 1 distinct approver can"),
        "{err}"
    );
    // alice may ask, but not approve her own: the group needs 2 of [alice, bob].
    let own = with(&wipe_rule(
        "ops, alice",
        "    approval:\n      groups:\n        - { approvers: [alice, bob], required: 2 }\n",
    ));
    let err = errors(&own);
    assert!(
        err.issues[0].message.contains("for requests by \"alice\""),
        "{err}"
    );
}

#[test]
fn approval_keys_are_spelled_exactly() {
    let text = with(&wipe_rule(
        "ops",
        "    approval:\n      groups:\n        - { approvers: [bob], required: 1 }\n      tll: 1h\n",
    ));
    let err = errors(&text);
    assert!(err.issues[0].message.contains("tll"), "{err}");
    assert!(err.issues[0].line > 0, "{err}");
}
