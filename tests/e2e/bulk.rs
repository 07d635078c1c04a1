//! The bulk `executeAction` through the gateway: decided per device as the operation its
//! `actionName` names (with that operation's parameter conditions), one refused device
//! refuses the whole request and nothing is sent, bad device lists and actions are 400s,
//! and Graph's per-device outcomes land in the audit record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use graphgate::identity::api_key_sha256;
use graphgate_emulator::DEMO_IOS_DEVICE_ID;
use serde_json::json;

use common::{Caller, Options, Reply, Rule, TestPolicy};

const KEY: &str = "bulk-operator-key-1a2b";
const A: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";
const C: &str = "2d8b4f30-3c4d-4e5f-a0b1-223344556677";
const UNKNOWN: &str = "99999999-8888-4777-8666-555555555555";
const PATH: &str = "/beta/deviceManagement/managedDevices/executeAction";

fn policy() -> String {
    format!(
        "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"{}\"\nrules:\n  - name: wipe-keeping-user-data\n    callers: [ops]\n    operations: [managedDevices.wipe]\n    devices: [\"{A}\", \"{B}\", \"{UNKNOWN}\", \"{DEMO_IOS_DEVICE_ID}\"]\n    when:\n      - {{ param: keepUserData, equals: true }}\n  - name: sync-anything\n    callers: [ops]\n    operations: [managedDevices.syncDevice]\n",
        api_key_sha256(KEY)
    )
}

async fn bulk(h: &common::Harness, body: serde_json::Value) -> Reply {
    h.post(PATH, Some(KEY), &body.to_string()).await
}

#[tokio::test]
async fn one_refused_device_refuses_the_request_and_nothing_is_sent() {
    let h = common::start_with(Options {
        policy: Some(policy()),
        ..Options::default()
    })
    .await;
    // C is not in the rule's device list.
    let reply = bulk(
        &h,
        json!({"actionName": "wipe", "keepUserData": true, "deviceIds": [A, C, B]}),
    )
    .await;
    reply.assert_graph_error(403, "accessDenied");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(C) && !message.contains(A), "{message}");
    // The rule's condition holds per device too: keepUserData false refuses every device.
    let reply = bulk(
        &h,
        json!({"actionName": "wipe", "keepUserData": false, "deviceIds": [A]}),
    )
    .await;
    reply.assert_graph_error(403, "accessDenied");
    // retire is no rule's operation.
    let reply = bulk(&h, json!({"actionName": "retire", "deviceIds": [A]})).await;
    reply.assert_graph_error(403, "accessDenied");
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing reached Graph"
    );
    let records = h.audit_records().await;
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "denied")
        .collect();
    assert_eq!(denied.len(), 3);
    assert_eq!(denied[0]["operation"], "managedDevices.executeAction");
    assert_eq!(denied[0]["device_ids"], json!([A, C, B]));
    h.shut_down().await;
}

#[tokio::test]
async fn an_allowed_bulk_request_is_sent_and_each_devices_outcome_audited() {
    let h = common::start_with(Options {
        policy: Some(policy()),
        ..Options::default()
    })
    .await;
    let body = json!({"actionName": "wipe", "keepUserData": true, "deviceIds": [A, UNKNOWN, DEMO_IOS_DEVICE_ID, B]});
    let reply = bulk(&h, body.clone()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.json()["value"]["successfulDeviceIds"],
        json!([A, DEMO_IOS_DEVICE_ID, B])
    );
    let sent = h.emulator.graph_requests().pop().unwrap();
    assert_eq!(sent.path, PATH);
    assert_eq!(sent.body, body.to_string());
    let records = h.audit_records().await;
    let outcome = records.iter().find(|r| r["kind"] == "outcome").unwrap();
    assert_eq!(outcome["tier"], "destructive");
    assert_eq!(
        outcome["device_outcomes"],
        json!({A: "successful", B: "successful", DEMO_IOS_DEVICE_ID: "successful", UNKNOWN: "notFound"})
    );
    h.shut_down().await;
}

#[tokio::test]
async fn bad_device_lists_and_actions_are_400s_with_nothing_sent() {
    let h = common::start_with(Options {
        policy: Some(policy()),
        limits: graphgate::gateway::Limits {
            max_bulk_devices: 3,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let cases = [
        (
            json!({"actionName": "syncDevice", "deviceIds": [A, B, C, UNKNOWN]}),
            "at most 3",
        ),
        (
            json!({"actionName": "syncDevice", "deviceIds": [A, A.to_uppercase()]}),
            "more than once",
        ),
        (
            json!({"actionName": "syncDevice", "deviceIds": [A, "laptop-7"]}),
            "deviceIds[1]",
        ),
        (
            json!({"actionName": "syncDevice", "deviceIds": []}),
            "at least one",
        ),
        (
            json!({"actionName": "deprovision", "deviceIds": [A]}),
            "'deprovision'",
        ),
        (
            json!({"actionName": "selfDestruct", "deviceIds": [A]}),
            "actionName",
        ),
        (
            json!({"actionName": "syncDevice", "deviceIds": [A], "deviceName": "x"}),
            "deviceName",
        ),
    ];
    for (body, part) in cases {
        let reply = bulk(&h, body.clone()).await;
        reply.assert_graph_error(400, "invalidRequest");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(part), "{body}: {message}");
    }
    assert!(h.emulator.graph_requests().is_empty());
    // On /v1.0 there is no bulk action.
    let reply = h
        .post(&PATH.replace("/beta/", "/v1.0/"), Some(KEY), "{}")
        .await;
    reply.assert_graph_error(400, "invalidRequest");
    h.shut_down().await;
}

/// `GRAPHGATE_MAX_BULK_DEVICES` (`--max-bulk-devices`) sets the cap of the binary as an
/// operator runs it: one device over it is a 400 naming the cap, with nothing sent; at the
/// cap the request is decided and forwarded.
#[tokio::test]
async fn the_bulk_cap_is_the_operators() {
    let backend = common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    std::fs::write(backend.dir.join("policy.yaml"), policy()).unwrap();
    let mut cmd = backend.serve_command();
    cmd.env("GRAPHGATE_MAX_BULK_DEVICES", "2");
    let gw = backend.serve(cmd).await;
    let over = json!({"actionName": "wipe", "keepUserData": true, "deviceIds": [A, B, UNKNOWN]});
    let reply = gw.post(PATH, KEY, &over.to_string()).await;
    reply.assert_graph_error(400, "invalidRequest");
    let message = reply.json()["error"]["message"].to_string();
    assert!(message.contains("lists 3 devices; at most 2"), "{message}");
    assert!(backend.emulator.graph_requests().is_empty(), "nothing sent");
    let at_cap = json!({"actionName": "wipe", "keepUserData": true, "deviceIds": [A, B]});
    let reply = gw.post(PATH, KEY, &at_cap.to_string()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let sent = backend.emulator.graph_requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].path.ends_with("/executeAction"), "{}", sent[0].path);
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

/// A policy where `ops` may sync any device (rule `sync-anything`).
fn counted_policy() -> TestPolicy {
    TestPolicy::empty()
        .caller(Caller::api_key("ops", KEY))
        .rule(
            Rule::allow("sync-anything")
                .callers(&["ops"])
                .operations(&["managedDevices.syncDevice"]),
        )
}

async fn counted(policy: TestPolicy) -> common::Harness {
    common::start_with(Options {
        policy: Some(policy.yaml()),
        ..Options::default()
    })
    .await
}

/// A real bulk request counts once per device on each budget: four devices do not fit a
/// caller's budget of 3, nor a tenant budget of 3, whatever the request count.
#[tokio::test]
async fn a_bulk_request_spends_one_unit_of_each_budget_per_device() {
    let four =
        json!({"actionName": "syncDevice", "deviceIds": [A, B, DEMO_IOS_DEVICE_ID, UNKNOWN]});
    let three = json!({"actionName": "syncDevice", "deviceIds": [A, B, DEMO_IOS_DEVICE_ID]});
    for (policy, budget) in [
        (
            counted_policy().with_caller("ops", |c| c.set("budget", json!("3 per day"))),
            "caller:ops",
        ),
        (
            counted_policy().set(
                "tenant_budgets",
                json!({"managedDevices.syncDevice": "3 per day"}),
            ),
            "tenant:managedDevices.syncDevice",
        ),
    ] {
        let h = counted(policy).await;
        let reply = bulk(&h, four.clone()).await;
        reply.assert_graph_error(429, "budgetExhausted");
        let message = reply.json()["error"]["message"].to_string();
        assert!(message.contains(budget), "{message}");
        assert!(reply.headers.contains_key("retry-after"));
        assert!(h.emulator.graph_requests().is_empty(), "nothing sent");
        // Three devices fit exactly; then even one more does not.
        assert_eq!(bulk(&h, three.clone()).await.status, 200);
        let one = json!({"actionName": "syncDevice", "deviceIds": [A]});
        bulk(&h, one)
            .await
            .assert_graph_error(429, "budgetExhausted");
        assert_eq!(h.emulator.graph_requests().len(), 1, "{budget}");
        let records = h.audit_records().await;
        let limited = records
            .iter()
            .filter(|r| r["decision"] == "rate_limited")
            .count();
        assert_eq!(limited, 2, "both refusals audited as rate limited");
        h.shut_down().await;
    }
}

/// Rate limits count devices too: a rule's 5 per minute takes a bulk request of 4, then
/// refuses one of 2 (with when to retry), and a request of 6 can never fit: it is refused
/// saying to split it.
#[tokio::test]
async fn a_rate_limit_counts_a_bulk_requests_devices() {
    let policy = counted_policy().with_rule("sync-anything", |r| {
        r.set("rate_limit", json!("5 per minute"))
    });
    let h = counted(policy).await;
    let devices = |ids: &[&str]| json!({"actionName": "syncDevice", "deviceIds": ids});
    assert_eq!(
        bulk(&h, devices(&[A, B, DEMO_IOS_DEVICE_ID, UNKNOWN]))
            .await
            .status,
        200
    );
    let two = bulk(&h, devices(&[A, B])).await;
    two.assert_graph_error(429, "activityLimitReached");
    let wait: u64 = two.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&wait), "one device's interval: {wait}");
    let six = [
        A,
        B,
        C,
        DEMO_IOS_DEVICE_ID,
        UNKNOWN,
        "3e9c5041-4d5e-4f60-b1c2-334455667788",
    ];
    let over = bulk(&h, devices(&six)).await;
    over.assert_graph_error(429, "activityLimitReached");
    let message = over.json()["error"]["message"].to_string();
    assert!(
        message.contains("lists 6 devices") && message.contains("at most 5 devices per request"),
        "{message}"
    );
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "only the first was sent"
    );
    h.shut_down().await;
}
