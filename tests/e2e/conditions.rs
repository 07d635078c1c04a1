//! Policy conditions no other test exercised, through the real HTTP path (`prefix`,
//! `present: false`, `absent: true`), and what a dry run costs: nothing from any budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use bytes::Bytes;
use common::*;
use graphgate::identity::api_key_sha256;
use http_body_util::Full;

fn policy(caller_rate: &str, rules: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n    rate_limit: {caller_rate}\n  - name: other-service\n    api_key_sha256: \"{}\"\nrules:\n{rules}",
        api_key_sha256(ROTATOR_KEY),
        api_key_sha256(OTHER_KEY)
    )
}

async fn harness(caller_rate: &str, rules: &str) -> Harness {
    start_with(Options {
        policy: Some(policy(caller_rate, rules)),
        ..Options::default()
    })
    .await
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"].as_str().unwrap().to_owned()
}

const DEFAULT_DENY: &str = "no policy rule allows caller 'rooms-rotator' to run managedDevices.updateWindowsDeviceAccount (v1.0) on device 0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb with these parameters";

/// The standard body without the member `"name":value` (value as JSON text).
fn body_without(member: &str) -> String {
    let body = body();
    let cut = body.replacen(&format!("{member},"), "", 1);
    assert_ne!(cut, body, "{member} in the body");
    cut
}

#[tokio::test]
async fn prefix_conditions_match_the_start_of_the_value_ignoring_ascii_case() {
    let h = harness(
        "1000 per second",
        "  - name: room-mailboxes\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: deviceAccountEmail, prefix: \"room\" }\n",
    )
    .await;
    let with_email = |email: &str| {
        body().replace(
            "\"deviceAccountEmail\":\"room1@contoso.com\"",
            &format!("\"deviceAccountEmail\":\"{email}\""),
        )
    };
    for allowed in ["room1@contoso.com", "ROOM-7@contoso.com"] {
        let r = h
            .post(ACTION_PATH, Some(ROTATOR_KEY), &with_email(allowed))
            .await;
        assert_eq!(r.status, 204, "{allowed}: {:?}", r.body);
    }
    for refused in ["ceo@contoso.com", "boardroom@contoso.com", "ro@contoso.com"] {
        let r = h
            .post(ACTION_PATH, Some(ROTATOR_KEY), &with_email(refused))
            .await;
        r.assert_graph_error(403, "accessDenied");
        assert_eq!(message(&r), DEFAULT_DENY, "{refused}");
    }
    let sent = h.emulator.graph_requests();
    assert_eq!(sent.len(), 2, "only the allowed calls reached Graph");
    let records = h.audit_records().await;
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "denied")
        .collect();
    assert_eq!(denied.len(), 3);
    assert!(
        denied
            .iter()
            .all(|r| r["rule"].is_null() && r["status"] == 403)
    );
}

#[tokio::test]
async fn absent_true_and_present_false_hold_only_when_the_parameter_is_left_out() {
    // An allow rule that admits only requests leaving the Exchange server alone, and a deny
    // rule refusing any request that does not say whether rotation is on.
    let h = harness(
        "1000 per second",
        "  - name: no-exchange-changes\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: exchangeServer, absent: true }\n  - name: rotation-must-be-stated\n    effect: deny\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: passwordRotationEnabled, present: false }\n",
    )
    .await;
    let no_exchange = body_without(r#""exchangeServer":"outlook.office365.com""#);
    assert_eq!(
        h.post(ACTION_PATH, Some(ROTATOR_KEY), &no_exchange)
            .await
            .status,
        204,
        "exchangeServer absent: allowed"
    );
    let with_exchange = h.post(ACTION_PATH, Some(ROTATOR_KEY), &body()).await;
    with_exchange.assert_graph_error(403, "accessDenied");
    assert_eq!(message(&with_exchange), DEFAULT_DENY);

    let unstated = h
        .post(
            ACTION_PATH,
            Some(ROTATOR_KEY),
            &no_exchange.replace(",\"passwordRotationEnabled\":true", ""),
        )
        .await;
    unstated.assert_graph_error(403, "accessDenied");
    assert_eq!(
        message(&unstated),
        "denied by policy rule 'rotation-must-be-stated'"
    );
    assert_eq!(h.emulator.graph_requests().len(), 1);
    let records = h.audit_records().await;
    let decided: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] != "intent")
        .map(|r| (r["decision"].clone(), r["rule"].clone()))
        .collect();
    assert_eq!(
        decided,
        [
            ("allowed".into(), "no-exchange-changes".into()),
            ("denied".into(), serde_json::Value::Null),
            ("denied".into(), "rotation-must-be-stated".into()),
        ]
    );
}

async fn dry_run(h: &Harness, key: &str) -> Reply {
    let req = h
        .request(ACTION_PATH)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("prefer", "dry-run")
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn dry_runs_spend_no_rate_budget() {
    // One real call an hour for the rotator, two for the rule that both callers share.
    let h = harness(
        "1 per hour",
        "  - name: shared\n    callers: [rooms-rotator, other-service]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    rate_limit: 2 per hour\n",
    )
    .await;
    // Checking a request as often as one likes costs neither the caller's budget nor the
    // rule's, which other callers share.
    for _ in 0..5 {
        let d = dry_run(&h, ROTATOR_KEY).await;
        assert_eq!(d.status, 200, "{:?}", d.body);
        assert_eq!(d.json()["decision"], "allow");
    }
    assert_eq!(h.call().await.status, 204, "the caller's one real call");
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204,
        "the other caller's share of the rule"
    );
    // Budgets spent: the real calls are limited, dry runs still answer the policy question.
    h.call()
        .await
        .assert_graph_error(429, "activityLimitReached");
    assert_eq!(dry_run(&h, ROTATOR_KEY).await.status, 200);
    assert_eq!(h.emulator.graph_requests().len(), 2);
    let records = h.audit_records().await;
    let dry = records
        .iter()
        .filter(|r| r["decision"] == "dry_run")
        .count();
    assert_eq!(dry, 6, "every dry run is audited as one");
}
