//! The person and the reason behind a privileged call: stated in headers (or the simplified
//! API's body fields), required by a rule (400 naming what is missing, before anything is
//! sent), restricted to listed people, recorded in the audit and shown by `audit query`;
//! and `policy explain` / `policy test` with JWT callers, initiators and reasons.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use crate::common;

use common::metrics::Snapshot;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_graphgate");
const RULE: &str = "  - name: rotator-updates-room-accounts\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n";

fn policy_with(rule_extra: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\nrules:\n{RULE}{rule_extra}",
        graphgate::identity::api_key_sha256(ROTATOR_KEY)
    )
}

async fn start_policy(text: String) -> Harness {
    start_with(Options {
        policy: Some(text),
        ..Options::default()
    })
    .await
}

async fn call(h: &Harness, headers: &[(&str, &str)]) -> Reply {
    let mut req = h
        .request(ACTION_PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ROTATOR_KEY}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    h.send(
        req.body(http_body_util::Full::new(bytes::Bytes::from(body())))
            .unwrap(),
    )
    .await
}

fn message(reply: &Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

const WHO: (&str, &str) = ("x-graphgate-initiator", "alice@contoso.com");
const WHY: (&str, &str) = ("x-graphgate-reason", "CHG-4711: room 12 display replaced");

#[tokio::test]
async fn a_rule_can_demand_the_person_and_the_reason() {
    let h = start_policy(policy_with("    require: [initiator, reason]\n")).await;
    let metrics = Snapshot::now();
    let before = h.emulator.graph_requests().len();
    let none = call(&h, &[]).await;
    none.assert_graph_error(400, "invalidRequest");
    assert!(
        message(&none)
            .contains("policy rule 'rotator-updates-room-accounts' requires initiator and reason"),
        "{}",
        message(&none)
    );
    assert!(
        message(&none).contains("X-Graphgate-Initiator")
            && message(&none).contains("X-Graphgate-Reason")
    );
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(record["decision"], "invalid");
    assert_eq!(record["rule"], "rotator-updates-room-accounts");
    assert_eq!(record["status"], 400);

    let only_who = call(&h, &[WHO]).await;
    only_who.assert_graph_error(400, "invalidRequest");
    assert!(
        message(&only_who).contains("requires reason: send X-Graphgate-Reason"),
        "{}",
        message(&only_who)
    );
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(
        record["initiator"], "alice@contoso.com",
        "what was stated is recorded"
    );
    // A dry run gets exactly the refusal the call would get.
    let dry = call(&h, &[WHO, ("prefer", "dry-run")]).await;
    dry.assert_graph_error(400, "invalidRequest");
    assert_eq!(
        h.emulator.graph_requests().len(),
        before,
        "nothing forwarded"
    );
    let refusals = metrics.delta(
        &Snapshot::now(),
        "graphgate_context_refusals_total{reason=\"missing\"}",
    );
    assert!(refusals >= 3.0, "{refusals}");

    let both = call(&h, &[WHO, WHY]).await;
    assert_eq!(both.status, 204, "{:?}", both.body);
    assert_eq!(h.emulator.graph_requests().len(), before + 1);
    let records = h.audit_records().await;
    // Refusal records are written as they come; the allowed call's two are found by kind.
    let last = |kind: &str| records.iter().rfind(|r| r["kind"] == kind).unwrap();
    let (intent, outcome) = (last("intent"), last("outcome"));
    assert_eq!(intent["audit_id"], outcome["audit_id"]);
    for r in [intent, outcome] {
        assert_eq!(r["initiator"], "alice@contoso.com");
        assert_eq!(r["initiator_source"], "header");
        assert_eq!(r["reason"], WHY.1);
    }
    assert_eq!(
        (intent["kind"].as_str(), outcome["kind"].as_str()),
        (Some("intent"), Some("outcome"))
    );
}

#[tokio::test]
async fn a_rule_can_restrict_whom_its_caller_acts_for() {
    let h = start_policy(policy_with(
        "    initiators: [\"@contoso.com\", 9d2f7c1a-4b3e-4f5a-8c6d-1e2f3a4b5c6d]\n",
    ))
    .await;
    assert_eq!(call(&h, &[WHO]).await.status, 204);
    let by_oid = call(
        &h,
        &[(
            "x-graphgate-initiator",
            "9D2F7C1A-4B3E-4F5A-8C6D-1E2F3A4B5C6D",
        )],
    )
    .await;
    assert_eq!(by_oid.status, 204);
    assert_eq!(
        h.audit_records().await.pop().unwrap()["initiator"],
        "9d2f7c1a-4b3e-4f5a-8c6d-1e2f3a4b5c6d"
    );
    let before = h.emulator.graph_requests().len();
    for headers in [
        vec![("x-graphgate-initiator", "bob@evilcontoso.com")],
        vec![],
    ] {
        let reply = call(&h, &headers).await;
        reply.assert_graph_error(403, "accessDenied");
        assert!(
            message(&reply).contains("no policy rule allows"),
            "{}",
            message(&reply)
        );
    }
    assert_eq!(h.emulator.graph_requests().len(), before);
}

#[tokio::test]
async fn the_simplified_api_states_them_as_body_fields() {
    let h = start_policy(policy_with("    require: [initiator, reason]\n")).await;
    let path = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    let flat = |extra: &str| {
        format!(r#"{{"deviceAccountEmail":"room1@contoso.com","password":"{PASSWORD}"{extra}}}"#)
    };
    let reply = h
        .post(
            &path,
            Some(ROTATOR_KEY),
            &flat(r#","initiator":"alice@contoso.com","reason":"CHG-9""#),
        )
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(
        (
            record["initiator_source"].as_str(),
            record["reason"].as_str()
        ),
        (Some("body"), Some("CHG-9"))
    );
    let sent = h.emulator.graph_requests().pop().unwrap();
    assert!(
        !sent.body.contains("initiator") && !sent.body.contains("CHG-9"),
        "not sent to Graph: {}",
        sent.body
    );
    // The header and the field may say the same, not different things.
    let mut req = h
        .request(&path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("x-graphgate-initiator", "bob@contoso.com");
    req = req.header("x-graphgate-reason", "CHG-9");
    let reply = h
        .send(
            req.body(http_body_util::Full::new(bytes::Bytes::from(flat(
                r#","initiator":"alice@contoso.com""#,
            ))))
            .unwrap(),
        )
        .await;
    reply.assert_graph_error(400, "invalidRequest");
    assert!(
        message(&reply).contains("stated twice, differently"),
        "{}",
        message(&reply)
    );
    let missing = h
        .post(&path, Some(ROTATOR_KEY), &flat(r#","initiator":null"#))
        .await;
    missing.assert_graph_error(400, "invalidRequest");
    assert!(message(&missing).contains("requires initiator and reason"));
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("GRAPHGATE_POLICY")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[tokio::test]
async fn audit_query_shows_and_filters_by_the_person_and_the_reason() {
    let h = start_policy(policy_with("")).await;
    assert_eq!(call(&h, &[WHO, WHY]).await.status, 204);
    assert_eq!(
        call(&h, &[("x-graphgate-initiator", "bob@fabrikam.com")])
            .await
            .status,
        204
    );
    assert_eq!(call(&h, &[]).await.status, 204);
    h.audit.flush().await.unwrap();
    let log = h.audit_path.clone().unwrap();
    let log = log.to_str().unwrap();
    let (code, table) = run(&["audit", "query", log, "--format", "wide"]);
    assert_eq!(code, Some(0), "{table}");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("INITIATOR") && header.contains("REASON"),
        "{header}"
    );
    assert!(
        table.contains("alice@contoso.com") && table.contains("CHG-4711: room 12 display replaced"),
        "{table}"
    );
    let (_, alice) = run(&[
        "audit",
        "query",
        log,
        "--initiator",
        "ALICE@contoso.com",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = alice
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{alice}");
    assert_eq!(rows[0]["reason"], WHY.1);
    let (_, domain) = run(&[
        "audit",
        "query",
        log,
        "--initiator",
        "@fabrikam.com",
        "--format",
        "wide",
    ]);
    assert!(
        domain.contains("bob@fabrikam.com") && domain.contains("(1 row)"),
        "{domain}"
    );
}

/// A policy file trusting the emulated cluster, its caller required to say why.
fn jwt_policy_file() -> std::path::PathBuf {
    let dir = temp_dir("explain-jwt");
    let text = format!(
        "version: 1\njwt_issuers:\n  - issuer: {iss}\n    audiences: [graphgate]\n    keys: {{ jwks_url: {iss}/openid/v1/jwks }}\ncallers:\n  - name: k8s-rotator\n    jwt: {{ issuer: {iss}, subject: \"system:serviceaccount:rooms:rotator\" }}\nrules:\n  - name: rotator-with-ticket\n    callers: [k8s-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    require: [reason]\n    initiators: [\"@contoso.com\"]\n",
        iss = graphgate_emulator::KUBERNETES_ISSUER
    );
    std::fs::write(dir.join("policy.yaml"), text).unwrap();
    std::fs::write(dir.join("body.json"), body()).unwrap();
    dir
}

#[test]
fn policy_explain_and_test_handle_jwt_callers_initiators_and_reasons() {
    let dir = jwt_policy_file();
    let (policy, body_file) = (dir.join("policy.yaml"), dir.join("body.json"));
    let request = format!("POST {ACTION_PATH}");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--policy",
            policy.to_str().unwrap(),
            "--caller",
            "k8s-rotator",
            "--body",
            body_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(&request);
        run(&args)
    };
    let (code, text) = explain(&["--initiator", "alice@contoso.com"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("decision: deny") && text.contains("missing: reason"),
        "{text}"
    );
    assert!(
        text.contains("rotator-with-ticket (allow): matches; requires reason"),
        "{text}"
    );
    let (code, text) = explain(&["--initiator", "alice@contoso.com", "--reason", "CHG-1"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("initiator: alice@contoso.com (header)") && text.contains("reason: CHG-1"),
        "{text}"
    );
    let (code, text) = explain(&["--initiator", "bob@fabrikam.com", "--reason", "CHG-1"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("does not cover initiator bob@fabrikam.com"),
        "{text}"
    );
    let (code, text) = explain(&["--initiator", "not-a-person", "--reason", "CHG-1"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("X-Graphgate-Initiator must be a user principal name"),
        "{text}"
    );

    let fixtures = dir.join("fixtures.yaml");
    std::fs::write(
        &fixtures,
        format!(
            "policy: policy.yaml\ncases:\n  - name: with a ticket\n    caller: k8s-rotator\n    request: POST {ACTION_PATH}\n    body: {b}\n    initiator: alice@contoso.com\n    reason: CHG-1\n    expect: {{ decision: allow, rule: rotator-with-ticket }}\n  - name: without one\n    caller: k8s-rotator\n    request: POST {ACTION_PATH}\n    body: {b}\n    initiator: alice@contoso.com\n    expect: {{ decision: deny, rule: rotator-with-ticket, missing: [reason] }}\n",
            b = body()
        ),
    )
    .unwrap();
    let (code, text) = run(&["policy", "test", fixtures.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
}

/// A reason of invisible characters alone (marks, zero-width and tag characters, fillers) is
/// no reason: it is refused as a header and as the simplified API's field, so it can never
/// satisfy `require: [reason]`, and nothing is sent.
#[tokio::test]
async fn a_reason_made_of_invisible_characters_does_not_satisfy_require_reason() {
    let h = start_policy(policy_with("    require: [reason]\n")).await;
    let path = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    for invisible in [
        "\u{200e}\u{200f}\u{61c}",     // LRM, RLM, ALM
        "\u{feff}",                    // byte-order mark
        "\u{200b}\u{200c}\u{2060}",    // zero-width space, non-joiner, word joiner
        "\u{e0043}\u{e0048}\u{e0047}", // tag characters
        "\u{3164}\u{2800}",            // Hangul filler, Braille blank
        "CHG-1\u{200f}",               // a visible reason carrying a mark
    ] {
        let reply = call(&h, &[("x-graphgate-reason", invisible)]).await;
        reply.assert_graph_error(400, "invalidRequest");
        assert!(
            message(&reply).contains("X-Graphgate-Reason must be visible text"),
            "{invisible:?}: {}",
            message(&reply)
        );
        let field = serde_json::json!({
            "deviceAccountEmail": "room1@contoso.com",
            "password": PASSWORD,
            "reason": invisible,
        });
        let reply = h.post(&path, Some(ROTATOR_KEY), &field.to_string()).await;
        reply.assert_graph_error(400, "invalidRequest");
        assert!(
            message(&reply).contains("'reason' field must be visible text"),
            "{invisible:?}: {}",
            message(&reply)
        );
    }
    assert!(h.emulator.graph_requests().is_empty(), "nothing was sent");
    // A visible reason still passes.
    assert_eq!(call(&h, &[WHY]).await.status, 204);
}
