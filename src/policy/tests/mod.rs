//! Unit tests for loading and evaluating policies.

mod approval;
mod identity;

use super::*;
use crate::operation::catalog;
use crate::operation::schema::{ParamValue, Params};

const H: &str = "1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011";
const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const OTHER_DEV: &str = "11111111-2222-3333-4444-555555555555";

fn policy(rules: &str) -> Policy {
    let text = format!(
        "version: 1\ncallers:\n  - name: rotator\n    api_key_sha256: \"{H}\"\n  - name: other\n    mtls:\n      uri_san: spiffe://x/other\nrules:\n{rules}"
    );
    Policy::from_yaml(&text, "p.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> PolicyError {
    Policy::from_yaml(text, "p.yaml").unwrap_err()
}

fn op() -> &'static Operation {
    catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap()
}

fn params(pairs: &[(&str, ParamValue)]) -> Params {
    Params(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn decide(
    p: &Policy,
    caller: usize,
    version: ApiVersion,
    device: &str,
    params: &Params,
) -> (bool, Option<String>, Option<(bool, String)>) {
    let d = p.decide(&Facts {
        caller,
        op: op(),
        version,
        device,
        params,
        initiator: None,
    });
    (
        d.allowed,
        d.rule_name().map(str::to_owned),
        d.shadow.map(|s| (s.allowed, s.rule.to_owned())),
    )
}

const ALLOW: &str = "  - name: r1\n    callers: [rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n";

#[test]
fn allow_rules_name_callers_and_operations() {
    let p = policy(ALLOW);
    assert_eq!(
        decide(&p, 0, ApiVersion::V1, DEV, &Params::default()),
        (true, Some("r1".into()), None)
    );
    assert_eq!(
        decide(&p, 1, ApiVersion::V1, DEV, &Params::default()),
        (false, None, None)
    );
    assert_eq!(p.hash.len(), 64);
}

#[test]
fn devices_versions_and_conditions_narrow_a_rule() {
    let p = policy(&format!(
        "{ALLOW}    devices: [\"{}\"]\n    api_versions: [v1.0]\n    when:\n      - param: deviceAccountEmail\n        suffix: \"@rooms.contoso.com\"\n      - param: passwordRotationEnabled\n        equals: true\n      - param: deviceAccount.password\n        present: true\n      - param: deviceAccount.@odata.type\n        one_of: [\"#microsoft.graph.windowsDeviceAzureADAccount\"]\n",
        DEV.to_uppercase()
    ));
    let good = params(&[
        (
            "deviceAccountEmail",
            ParamValue::String("Room1@ROOMS.contoso.com".into()),
        ),
        ("passwordRotationEnabled", ParamValue::Bool(true)),
        (
            "deviceAccount.password",
            ParamValue::Secret(crate::secret::Secret::new("x")),
        ),
        (
            "deviceAccount.@odata.type",
            ParamValue::Type("microsoft.graph.windowsDeviceAzureADAccount"),
        ),
    ]);
    assert!(decide(&p, 0, ApiVersion::V1, DEV, &good).0);
    assert!(!decide(&p, 0, ApiVersion::Beta, DEV, &good).0, "version");
    assert!(!decide(&p, 0, ApiVersion::V1, OTHER_DEV, &good).0, "device");
    let mut wrong_email = good.clone();
    wrong_email.0[0].1 = ParamValue::String("room1@contoso.com".into());
    assert!(
        !decide(&p, 0, ApiVersion::V1, DEV, &wrong_email).0,
        "suffix"
    );
    let mut no_password = good.clone();
    no_password.0[2].1 = ParamValue::Null;
    assert!(
        !decide(&p, 0, ApiVersion::V1, DEV, &no_password).0,
        "present"
    );
    let mut rotation_off = good.clone();
    rotation_off.0[1].1 = ParamValue::Bool(false);
    assert!(
        !decide(&p, 0, ApiVersion::V1, DEV, &rotation_off).0,
        "equals bool"
    );
}

#[test]
fn deny_wins_and_shadow_rules_only_report() {
    let p = policy(&format!(
        "{ALLOW}  - name: no-contoso-exchange\n    effect: deny\n    callers: [rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: exchangeServer\n        equals: evil.example\n  - name: tighten-later\n    effect: deny\n    mode: shadow\n    callers: [rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: calendarSyncEnabled\n        equals: false\n"
    ));
    let evil = params(&[("exchangeServer", ParamValue::String("EVIL.example".into()))]);
    assert_eq!(
        decide(&p, 0, ApiVersion::V1, DEV, &evil),
        (false, Some("no-contoso-exchange".into()), None)
    );
    let sync_off = params(&[("calendarSyncEnabled", ParamValue::Bool(false))]);
    assert_eq!(
        decide(&p, 0, ApiVersion::V1, DEV, &sync_off),
        (
            true,
            Some("r1".into()),
            Some((false, "tighten-later".into()))
        )
    );
}

#[test]
fn unknown_keys_fail_with_line_and_column() {
    let err = errors(&format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\nrules:\n  - name: r1\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    devcies: any\n"
    ));
    assert_eq!(err.issues.len(), 1);
    assert_eq!(err.issues[0].line, 9, "{err}");
    assert!(err.issues[0].message.contains("devcies"), "{err}");
}

#[test]
fn every_semantic_error_is_reported_at_once_with_its_position() {
    let text = format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"xyz\"\n  - name: a\n    api_key_sha256: \"{H}\"\n  - name: nocred\nrules:\n  - name: r\n    callers: [nobody]\n    operations: [managedDevices.wipeEverything]\n  - name: r\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    devices: [not-a-guid]\n    rate_limit: lots per day\n    when:\n      - param: colour\n        equals: red\n      - param: deviceAccount.password\n        equals: hunter2\n      - param: calendarSyncEnabled\n        suffix: x\n      - param: exchangeServer\n        present: true\n        absent: true\n  - name: never\n    callers: []\n    operations: [managedDevices.updateWindowsDeviceAccount]\n  - name: contradiction\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: exchangeServer\n        absent: true\n      - param: exchangeServer\n        equals: x\n"
    );
    let err = errors(&text);
    let shown = err.to_string();
    let expect = [
        (4, "api_key_sha256 must be 64 hex"),
        (5, "duplicate caller name \"a\""),
        (7, "has no credential"),
        (10, "unknown caller \"nobody\""),
        (11, "unknown operation \"managedDevices.wipeEverything\""),
        (12, "duplicate rule name \"r\""),
        (15, "not-a-guid"),
        (16, "is not a rate"),
        (18, "has no parameter \"colour\""),
        (20, "is a secret"),
        (22, "needs a boolean"),
        (24, "exactly one of"),
        (28, "names no caller"),
        (36, "contradict"),
    ];
    for (line, text) in expect {
        assert!(
            err.issues
                .iter()
                .any(|i| i.line == line && i.message.contains(text)),
            "line {line}: {text}\n{shown}"
        );
    }
    assert_eq!(err.issues.len(), expect.len(), "{shown}");
    assert!(shown.contains("p.yaml:10:"), "{shown}");
}

#[test]
fn pacing_defaults_to_intunes_limit_and_the_replicas_split_is_refused_with_the_way_out() {
    assert_eq!(policy(ALLOW).pacing.tenant_writes, INTUNE_WRITE_LIMIT);
    let p = Policy::from_yaml(
        "version: 1\npacing:\n  tenant_writes: 150 per 20s\n  max_wait_ms: 500\n",
        "p",
    )
    .unwrap();
    assert_eq!(
        p.pacing.tenant_writes,
        Rate {
            count: 150,
            per: std::time::Duration::from_secs(20)
        }
    );
    assert_eq!(p.pacing.max_wait, std::time::Duration::from_millis(500));
    // An old file with the static split does not load into N times the tenant's limit.
    let err = errors("version: 1\npacing:\n  tenant_writes: 200 per 20s\n  replicas: 4\n");
    assert_eq!(err.issues.len(), 1, "{err}");
    assert_eq!((err.issues[0].line, err.issues[0].column), (4, 13), "{err}");
    let message = &err.issues[0].message;
    assert!(
        message.contains("'replicas' is no longer supported")
            && message.contains("--state redis://")
            && message.contains("50 per 20s"),
        "{message}"
    );
    let many = errors("version: 1\npacing:\n  tenant_writes: 100001 per 1s\n");
    assert!(
        many.issues[0]
            .message
            .contains("at most 100000 writes per window"),
        "{many}"
    );
}

#[test]
fn budgets_on_callers_rules_and_tenant_operations() {
    let p = Policy::from_yaml(
        &format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\n    budget: 20 per day\nrules:\n  - name: r\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    budget: 5 per hour\ntenant_budgets:\n  managedDevices.updateWindowsDeviceAccount: 400 per day\n"
        ),
        "p",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.callers[0].budget,
        Some(Budget {
            limit: 20,
            window: BudgetWindow::Day
        })
    );
    assert_eq!(
        p.rules[0].budget,
        Some(Budget {
            limit: 5,
            window: BudgetWindow::Hour
        })
    );
    assert_eq!(p.tenant_budgets.len(), 1);
    assert_eq!(p.tenant_budgets[0].op.name, op().name);
    assert_eq!(p.tenant_budgets[0].budget.limit, 400);
    assert!(policy(ALLOW).tenant_budgets.is_empty() && policy(ALLOW).callers[0].budget.is_none());

    let err = errors(&format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\n    budget: 20 per week\nrules:\n  - name: r\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    budget: 0 per day\ntenant_budgets:\n  managedDevices.selfDestruct: 400 per day\n  managedDevices.updateWindowsDeviceAccount: lots\n"
    ));
    let shown = err.to_string();
    for (line, text) in [
        (5, "is not a budget"),
        (10, "allows nothing"),
        (12, "unknown operation \"managedDevices.selfDestruct\""),
        (13, "\"lots\" is not a budget"),
    ] {
        assert!(
            err.issues
                .iter()
                .any(|i| i.line == line && i.message.contains(text)),
            "line {line}: {text}\n{shown}"
        );
    }
    assert_eq!(err.issues.len(), 4, "{shown}");
}

#[test]
fn a_device_list_on_remove_all_devices_from_management_is_refused_saying_how_it_is_budgeted() {
    let err = errors(&format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\nrules:\n  - name: offboard\n    callers: [a]\n    operations: [users.removeAllDevicesFromManagement, managedDevices.retire]\n    devices: [{DEV}]\n"
    ));
    assert_eq!(err.issues.len(), 1, "{err}");
    let issue = &err.issues[0];
    assert_eq!(issue.line, 9, "{err}");
    for text in [
        "a device list cannot apply to users.removeAllDevicesFromManagement",
        "budgets count it as one device",
    ] {
        assert!(issue.message.contains(text), "{text}: {err}");
    }
    // Without a list (or with 'any') it loads.
    policy(
        "  - name: offboard\n    callers: [rotator]\n    operations: [users.removeAllDevicesFromManagement]\n    devices: any\n",
    );
}

#[test]
fn every_number_out_of_range_is_reported_at_once_with_its_position() {
    // Each of these once passed validation and then panicked a limiter or the clock.
    let err = errors(&format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\n    rate_limit: 1 per 18446744073709551615s\nrules:\n  - name: r\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    rate_limit: 2000000 per second\npacing:\n  tenant_writes: 3 per 20s\n  max_wait_ms: 18446744073709551615\n  replicas: 4\n"
    ));
    let shown = err.to_string();
    let expect = [
        (5, "longer than a day"),
        (10, "at most 1000000 requests per window"),
        (13, "over the 60000 ms limit"),
        (14, "'replicas' is no longer supported"),
    ];
    for (line, text) in expect {
        assert!(
            err.issues
                .iter()
                .any(|i| i.line == line && i.message.contains(text)),
            "line {line}: {text}\n{shown}"
        );
    }
    assert_eq!(err.issues.len(), expect.len(), "{shown}");
}

#[test]
fn the_shipped_policy_is_valid() {
    Policy::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policy.yaml"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `rules` rules over `callers` callers, each with a condition; rule `r` names caller
/// `r % callers` twice (which must not list the rule twice under that caller).
fn large_policy(callers: usize, rules: usize) -> String {
    let mut text = String::from("version: 1\ncallers:\n");
    for c in 0..callers {
        text.push_str(&format!(
            "  - name: c{c}\n    api_key_sha256: \"{}\"\n",
            crate::identity::api_key_sha256(&format!("k{c}"))
        ));
    }
    text.push_str("rules:\n");
    for r in 0..rules {
        text.push_str(&format!(
            "  - name: r{r}\n    callers: [c{}, c{}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: deviceAccountEmail\n        suffix: \"@rooms-{r}.example.com\"\n",
            r % callers,
            r % callers
        ));
    }
    text
}

#[test]
fn a_10000_rule_policy_compiles_with_rules_indexed_by_caller() {
    let p = policy_from(&large_policy(1_000, 10_000));
    assert_eq!((p.callers.len(), p.rules.len()), (1_000, 10_000));
    // Caller 7 is named (twice) by rules 7, 1007, ... 9007: each is listed once, in order.
    let wanted: Vec<usize> = (0..10).map(|i| 7 + 1_000 * i).collect();
    assert_eq!(p.by_caller[7], wanted);
    assert_eq!(p.rules[9_007].callers, vec![7, 7]);
    let email = params(&[(
        "deviceAccountEmail",
        ParamValue::String("room@rooms-5007.example.com".into()),
    )]);
    assert_eq!(
        decide(&p, 7, ApiVersion::V1, DEV, &email),
        (true, Some("r5007".into()), None)
    );
    assert_eq!(
        decide(&p, 8, ApiVersion::V1, DEV, &email),
        (false, None, None)
    );
}

#[test]
fn duplicates_in_a_large_policy_are_each_reported_where_they_repeat() {
    let mut text = large_policy(1_000, 2_000);
    let at = text.find("rules:\n").unwrap();
    text.insert_str(
        at,
        &format!("  - name: c999\n    api_key_sha256: \"{H}\"\n"),
    );
    text.push_str("  - name: r1999\n    callers: [c999]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n  - name: r0\n    callers: [c0]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n");
    let err = errors(&text);
    let lines: Vec<(u64, &str)> = err
        .issues
        .iter()
        .map(|i| (i.line, i.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (2_003, "duplicate caller name \"c999\""),
            (2_006 + 6 * 2_000, "duplicate rule name \"r1999\""),
            (2_006 + 6 * 2_000 + 3, "duplicate rule name \"r0\""),
        ]
    );
}

fn policy_from(text: &str) -> Policy {
    Policy::from_yaml(text, "large.yaml").unwrap_or_else(|e| panic!("{e}"))
}
