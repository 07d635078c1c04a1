//! Intune's Multi Admin Approval handled for callers, end to end against the emulator
//! playing it (`--maa`): a held write (400, 403 or 412 with `x-msft-approval-code`) becomes
//! an approval in `external_approval_pending` (202); approved by a person through the
//! emulator's control endpoint, it is sent again once with the code and the identical body;
//! rejected or expired, never; a repeat's 409 attaches; a restart resumes the polling; two
//! replicas send it once; a four-eyes rule and MAA in sequence. Every test asserts what the
//! emulator (Graph, and its MAA book) received.

use std::time::Duration;

use base64::Engine;
use graphgate::approval::maa;
use graphgate::gateway::Limits;
use graphgate::state::StateConfig;
use graphgate_emulator::{EmulatorConfig, GraphRequestRecord, MaaConfig};
use http::Method;
use serde_json::Value;

use crate::approvals::{
    ALICE, CAROL, OPS, WIPE_BODY, call, review, show, two_groups, wipe, wipe_path,
};
use crate::common::redis::RedisServer;
use crate::common::replicas::Replicas;
use crate::common::{Caller, DEVICE, Options, Rule, TestPolicy, emu, eventually, temp_dir};

/// `ops-bot` may wipe and retire, without graphgate approval.
pub(crate) fn direct_policy() -> TestPolicy {
    TestPolicy::empty()
        .caller(Caller::api_key("ops-bot", OPS))
        .rule(
            Rule::allow("wipes")
                .callers(&["ops-bot"])
                .operations(&["managedDevices.wipe", "managedDevices.retire"]),
        )
}

/// An emulated tenant whose MAA holds wipe, retire and delete, answering `status`; the app
/// may read approval requests and devices; an accepted action is `done` shortly after.
fn tenant(status: u16) -> EmulatorConfig {
    let mut config = EmulatorConfig {
        maa: Some(MaaConfig {
            operations: vec!["wipe".into(), "retire".into(), "delete".into()],
            status,
        }),
        action_completion: Duration::from_millis(200),
        ..EmulatorConfig::default()
    };
    config.apps[0].roles.extend([
        "DeviceManagementRBAC.Read.All".to_owned(),
        graphgate::audit::reconcile::READ_PERMISSION.to_owned(),
    ]);
    config
}

/// MAA handling on, Intune's requests read at once and then often (the sweep, once a
/// second, paces it in real time).
fn limits() -> Limits {
    Limits {
        maa: Some(maa::Settings {
            first_poll: Duration::from_millis(1),
            max_poll: Duration::from_millis(1),
            ..maa::Settings::default()
        }),
        ..Limits::default()
    }
}

pub(crate) async fn start(
    n: usize,
    policy: &TestPolicy,
    state: StateConfig,
    status: u16,
) -> Replicas {
    let opts = Options {
        state,
        limits: limits(),
        emulator: tenant(status),
        reconcile: Some(graphgate::audit::reconcile::ReconcileConfig::default()),
        ..Options::default()
    };
    Replicas::start_with(n, &policy.yaml(), opts).await
}

/// The wipes Graph received.
fn wipes(r: &Replicas) -> Vec<GraphRequestRecord> {
    r.emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path.ends_with("/wipe"))
        .collect()
}

/// A person's decision in the (emulated) Intune portal, through the control endpoint.
pub(crate) async fn intune(r: &Replicas, code: &str, decision: &str) -> Value {
    let path = format!("/_emulator/maa/{code}/{decision}");
    let req = emu::request("graph.microsoft.com", Method::POST, &path, &[], "");
    let reply = emu::send_to(
        r.emulator_addr(),
        r.emulator.ca_pem(),
        "graph.microsoft.com",
        req,
        false,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()
}

/// A request held by Intune: 202, Location, `external_approval_pending`; (id, code).
pub(crate) fn held_by_intune(reply: &crate::common::Reply, status: u16) -> (String, String) {
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let doc = reply.json();
    let id = doc["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.headers["location"],
        format!("/api/v1/approvals/{id}").as_str()
    );
    assert_eq!(doc["state"], "external_approval_pending", "{doc}");
    assert_eq!(doc["maa"]["status"], "needsApproval", "{doc}");
    assert_eq!(doc["maa"]["held_status"], status, "{doc}");
    (id, doc["maa"]["code"].as_str().unwrap().to_owned())
}

/// Waits until approval `id` (read through replica 0) is in `state`.
async fn until_state(r: &Replicas, id: &str, state: &str) -> Value {
    let addr = r.replicas[0].addr;
    let finals = [
        "succeeded",
        "failed",
        "outcome_unknown",
        "rejected",
        "canceled",
        "expired",
    ];
    eventually(state, Duration::from_secs(20), async || {
        let doc = show(addr, OPS, id).await.json();
        let now = doc["state"].as_str().unwrap_or_default().to_owned();
        assert!(
            now == state || !finals.contains(&now.as_str()),
            "ended {now}, not {state}: {doc}"
        );
        (now == state).then_some(doc)
    })
    .await
}

/// The decoded justification a Graph request carried.
fn justification(g: &GraphRequestRecord) -> String {
    let v = &g.headers["x-msft-approval-justification"];
    let bytes = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn held_under_400_403_and_412_becomes_an_approval_and_once_approved_in_intune_is_sent_again_once_identically()
 {
    for status in maa_statuses() {
        let r = start(1, &direct_policy(), StateConfig::default(), status).await;
        let addr = r.replicas[0].addr;
        let reason = ("x-graphgate-reason", "INC-4711 stolen laptop");
        let (id, code) = held_by_intune(&wipe(addr, &[reason]).await, status);
        // Graph got it once, justified; Intune keeps one request for it, and nothing ran.
        let sent = wipes(&r);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].headers.contains_key("x-msft-approval-code"));
        let why = justification(&sent[0]);
        assert!(
            why.contains("caller ops-bot") && why.contains("INC-4711 stolen laptop"),
            "{why}"
        );
        let book = r.emulator.maa_requests();
        assert_eq!(book.len(), 1);
        assert_eq!(book[0].id, code);
        assert_eq!(book[0].request_justification, why);
        let device = r.emulator.device(DEVICE).unwrap();
        assert!(
            !serde_json::to_string(&device).unwrap().contains("wipe"),
            "held: the wipe did not run"
        );

        // A person approves it in Intune: graphgate sends it again, once, with the code.
        intune(&r, &code, "approve").await;
        let doc = until_state(&r, &id, "succeeded").await;
        assert_eq!(doc["outcome"]["status"], 204, "{doc}");
        assert_eq!(doc["maa"]["resent"], true, "{doc}");
        let sent = wipes(&r);
        assert_eq!(sent.len(), 2, "held once, sent again once");
        assert_eq!(sent[1].headers["x-msft-approval-code"], code);
        assert_eq!(sent[1].body, sent[0].body, "the identical body");
        assert_eq!(sent[1].body, WIPE_BODY);
        assert_eq!(sent[1].path, wipe_path(DEVICE));
        assert!(
            r.emulator.maa_violations().is_empty(),
            "{:?}",
            r.emulator.maa_violations()
        );
        assert_eq!(r.emulator.maa_requests()[0].status, "completed");
        let device = serde_json::to_value(r.emulator.device(DEVICE).unwrap()).unwrap();
        let results = device["action_results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "ran once: {device}");
        assert_eq!(results[0]["actionName"], "wipe");
        // Graph's 204 only says Intune queued it: the device's own account is recorded.
        let done = eventually("the device's result", Duration::from_secs(20), async || {
            let doc = show(addr, OPS, &id).await.json();
            let action = doc["outcome"]["device_action"].clone();
            (!action.is_null()).then_some(action)
        })
        .await;
        assert_eq!(done["state"], "done", "{done}");

        // The audit: the hold, Intune's approval, the run with the code.
        let records = r.audit_records().await;
        let events: Vec<&str> = records
            .iter()
            .filter(|rec| rec["kind"] == "approval" && rec["approval_id"] == id)
            .filter_map(|rec| rec["approval_event"].as_str())
            .collect();
        assert_eq!(
            events,
            [
                "held_by_intune",
                "intune_approved",
                "settled",
                "device_action_result"
            ],
            "{status}"
        );
        // Nothing more is sent, however long it waits.
        assert_eq!(wipes(&r).len(), 2);
    }
}

fn maa_statuses() -> [u16; 3] {
    MaaConfig::STATUSES
}

#[tokio::test]
async fn rejected_or_expired_in_intune_is_never_sent_again() {
    for (decision, state) in [("reject", "rejected"), ("expire", "expired")] {
        let r = start(1, &direct_policy(), StateConfig::default(), 403).await;
        let (id, code) = held_by_intune(&wipe(r.replicas[0].addr, &[]).await, 403);
        intune(&r, &code, decision).await;
        let doc = until_state(&r, &id, state).await;
        assert!(doc["outcome"].is_null(), "{doc}");
        assert_eq!(wipes(&r).len(), 1, "{decision}: never sent again");
        assert!(r.emulator.maa_violations().is_empty());
    }
}

#[tokio::test]
async fn a_repeat_while_intune_holds_it_gets_409_and_attaches_to_the_same_approval() {
    // With or without an Idempotency-Key: a held request did not run, so nothing is kept
    // under its key and the repeat reaches Graph, whose 409 attaches it.
    let keyed = [("idempotency-key", "wipe-stolen-laptop-1")];
    for headers in [&[][..], &keyed[..]] {
        let r = start(1, &direct_policy(), StateConfig::default(), 412).await;
        let addr = r.replicas[0].addr;
        let (id, code) = held_by_intune(&wipe(addr, headers).await, 412);
        let again = wipe(addr, headers).await;
        assert_eq!(again.status, 202, "{headers:?}: {:?}", again.body);
        assert_eq!(again.json()["id"], id.as_str(), "attached, not duplicated");
        assert_eq!(again.json()["maa"]["code"], code.as_str());
        let book = r.emulator.maa_requests();
        assert_eq!(
            (book.len(), book[0].repeats),
            (1, 1),
            "Intune answered 409 once"
        );
        intune(&r, &code, "approve").await;
        until_state(&r, &id, "succeeded").await;
        assert_eq!(wipes(&r).len(), 3, "held, repeated (409), sent again once");
        assert!(r.emulator.maa_violations().is_empty());
    }
}

#[tokio::test]
async fn a_restart_while_intune_holds_it_resumes_polling_from_the_store() {
    let dir = temp_dir("maa-restart");
    let state = StateConfig::Memory {
        budget_file: None,
        approvals_file: Some(dir.join("approvals.json")),
    };
    let mut r = start(1, &direct_policy(), state, 400).await;
    let (id, code) = held_by_intune(&wipe(r.replicas[0].addr, &[]).await, 400);
    r.restart_all().await;
    intune(&r, &code, "approve").await;
    until_state(&r, &id, "succeeded").await;
    assert_eq!(wipes(&r).len(), 2);
    assert!(r.emulator.maa_violations().is_empty());
}

#[tokio::test]
async fn a_hold_by_intune_gives_its_budget_back_and_the_approved_resend_is_not_charged_its_rate_limit_again()
 {
    // One wipe a minute and one a day for ops-bot: the held wipe is charged the rate limit
    // and its budget is given back; Intune's approved re-send must fit in both.
    let limited = direct_policy().with_caller("ops-bot", |c| {
        c.set("rate_limit", serde_json::json!("1 per minute"))
            .set("budget", serde_json::json!("1 per day"))
    });
    let r = start(1, &limited, StateConfig::default(), 403).await;
    let addr = r.replicas[0].addr;
    let (id, code) = held_by_intune(&wipe(addr, &[]).await, 403);
    intune(&r, &code, "approve").await;
    let doc = until_state(&r, &id, "succeeded").await;
    assert_eq!(doc["outcome"]["status"], 204, "{doc}");
    assert_eq!(wipes(&r).len(), 2, "held once, sent again once");
    // The limits are in force: another wipe is refused, nothing sent.
    let another = wipe(addr, &[]).await;
    assert_eq!(another.status, 429, "{:?}", another.body);
    assert_eq!(wipes(&r).len(), 2);
    // The audit: the held send counted on the budget and gave it back; the re-send counted.
    let records = r.audit_records().await;
    let counted: Vec<bool> = records
        .iter()
        .filter(|rec| rec["kind"] == "outcome")
        .map(|rec| rec["budgets"].is_array() && rec["budgets_refunded"] != true)
        .collect();
    assert_eq!(
        counted,
        [false, true],
        "held (given back), re-sent (counted)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_send_the_approved_request_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let state = crate::shared_state::redis_state(&redis);
    let r = start(2, &direct_policy(), state, 403).await;
    let (id, code) = held_by_intune(&wipe(r.replicas[1].addr, &[]).await, 403);
    intune(&r, &code, "approve").await;
    until_state(&r, &id, "succeeded").await;
    let sent = wipes(&r);
    assert_eq!(sent.len(), 2, "held once, sent again once across replicas");
    assert_eq!(r.emulator.maa_requests()[0].resends, 1);
    assert!(r.emulator.maa_violations().is_empty());
}

#[tokio::test]
async fn a_four_eyes_rule_then_intune_approved_then_held_then_sent_once() {
    let policy = crate::approvals::policy(two_groups());
    let r = start(1, &policy, StateConfig::default(), 403).await;
    let addr = r.replicas[0].addr;
    let reply = wipe(addr, &[("x-graphgate-reason", "INC-9 lost")]).await;
    let (id, sha) = crate::approvals::held(&reply);
    assert!(wipes(&r).is_empty(), "graphgate holds it first");
    review(addr, ALICE, &id, "approve", &sha).await;
    let after = review(addr, CAROL, &id, "approve", &sha).await.json();
    // Approved by graphgate's groups, sent, held by Intune.
    assert_eq!(after["state"], "external_approval_pending", "{after}");
    let code = after["maa"]["code"].as_str().unwrap().to_owned();
    let sent = wipes(&r);
    assert_eq!(sent.len(), 1);
    let why = justification(&sent[0]);
    assert!(
        why.contains(&format!(
            "graphgate approval {id}, approved by alice, carol"
        )) && why.contains("INC-9 lost"),
        "Intune's approver sees graphgate's approvals: {why}"
    );
    intune(&r, &code, "approve").await;
    let doc = until_state(&r, &id, "succeeded").await;
    assert_eq!(doc["outcome"]["status"], 204);
    let sent = wipes(&r);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].headers["x-msft-approval-code"], code);
    assert_eq!(sent[1].body, sent[0].body);
    assert!(r.emulator.maa_violations().is_empty());
}

#[tokio::test]
async fn a_malformed_approval_code_is_audited_and_answered_as_graph_s_error_and_nothing_is_sent_again()
 {
    let r = start(1, &direct_policy(), StateConfig::default(), 403).await;
    r.emulator
        .set_maa_code_override(Some("../../not-a-code".to_owned()));
    let addr = r.replicas[0].addr;
    let reply = wipe(addr, &[]).await;
    reply.assert_graph_error(403, "ApprovalRequired");
    let list = call(addr, (Method::GET, "/api/v1/approvals"), OPS, &[], "").await;
    assert_eq!(
        list.json()["value"],
        serde_json::json!([]),
        "no approval made"
    );
    let records = r.audit_records().await;
    let held = records
        .iter()
        .find(|rec| rec["kind"] == "outcome" && rec["operation"] == "managedDevices.wipe")
        .expect("the wipe's outcome record");
    assert_eq!(held["status"], 403);
    assert!(
        held["note"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed x-msft-approval-code '../../not-a-code'"),
        "{held}"
    );
    assert_eq!(wipes(&r).len(), 1, "nothing sent again");
}

#[tokio::test]
async fn a_huge_or_malformed_intune_request_is_read_again_later_and_sends_nothing_meanwhile() {
    for doc in [
        serde_json::json!({"id": "x".repeat(70_000), "status": "approved"}),
        serde_json::json!({"id": "another", "status": "approved"}),
        serde_json::json!(["not", "a", "request"]),
    ] {
        let r = start(1, &direct_policy(), StateConfig::default(), 403).await;
        let (id, code) = held_by_intune(&wipe(r.replicas[0].addr, &[]).await, 403);
        intune(&r, &code, "approve").await;
        r.emulator.set_maa_document_override(Some(doc.clone()));
        let addr = r.replicas[0].addr;
        let failed = eventually("a failed read", Duration::from_secs(20), async || {
            let doc = show(addr, OPS, &id).await.json();
            (!doc["maa"]["last_error"].is_null()).then_some(doc)
        })
        .await;
        assert_eq!(failed["state"], "external_approval_pending", "{failed}");
        assert_eq!(
            wipes(&r).len(),
            1,
            "nothing sent on a document it cannot trust"
        );
        let records = r.audit_records().await;
        assert!(
            records.iter().any(|rec| rec["approval_id"] == id.as_str()
                && rec["approval_event"] == "intune_poll_failed"),
            "the failed read is audited"
        );
        // Intune's true answer again: sent once.
        r.emulator.set_maa_document_override(None);
        until_state(&r, &id, "succeeded").await;
        assert_eq!(wipes(&r).len(), 2);
        assert!(r.emulator.maa_violations().is_empty());
    }
}

#[tokio::test]
async fn with_maa_handling_readiness_expects_the_permission_that_reads_intune_s_requests() {
    let mut config = tenant(403);
    config.apps[0]
        .roles
        .retain(|r| r != "DeviceManagementRBAC.Read.All");
    let opts = Options {
        limits: limits(),
        emulator: config,
        ..Options::default()
    };
    let r = Replicas::start_with(1, &direct_policy().yaml(), opts).await;
    let (status, detail) = r.readyz(0).await;
    assert_eq!(status, 503, "{detail}");
    let missing = detail["checks"]["permissions"]["missing"].to_string();
    assert!(
        missing
            .contains("DeviceManagementRBAC.Read.All (or DeviceManagementConfiguration.Read.All)"),
        "{missing}"
    );
    // Granted: ready, and the permission is not called excess.
    let r = start(1, &direct_policy(), StateConfig::default(), 403).await;
    let (status, detail) = r.readyz(0).await;
    assert_eq!(status, 200, "{detail}");
    let excess = detail["checks"]["permissions"]["excess"].to_string();
    assert!(!excess.contains("RBAC"), "{excess}");
}

/// The emulator on its own plays MAA as documented: the justification required, the hold,
/// 409 to a repeat, the request readable, the re-send checked once (violations recorded).
#[tokio::test]
async fn the_emulator_plays_multi_admin_approval() {
    let h = emu::start(tenant(412)).await;
    let token = h
        .emu
        .mint_token(
            graphgate_emulator::Cloud::Global,
            graphgate_emulator::DEMO_CLIENT_ID,
            600,
        )
        .unwrap();
    let bearer = format!("Bearer {token}");
    let host = "graph.microsoft.com";
    let path = wipe_path(DEVICE);
    let why = base64::engine::general_purpose::STANDARD.encode("INC-1");
    let json = ("content-type", "application/json");
    let auth = ("authorization", bearer.as_str());
    let justified = ("x-msft-approval-justification", why.as_str());

    let bare = h
        .send(host, Method::POST, &path, &[auth, json], WIPE_BODY)
        .await;
    assert_eq!(bare.status, 400);
    assert!(
        bare.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-msft-approval-justification' is required")
    );
    let held = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified],
            WIPE_BODY,
        )
        .await;
    assert_eq!(held.status, 412);
    let code = held.text_header("x-msft-approval-code").to_owned();
    assert!(graphgate_emulator::microsoft::is_guid(&code), "{code}");
    let again = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified],
            WIPE_BODY,
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.text_header("x-msft-approval-code"), code);
    let read_path = format!("/beta/deviceManagement/operationApprovalRequests/{code}");
    let read = h.send(host, Method::GET, &read_path, &[auth], "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "needsApproval");
    assert_eq!(read.json()["requestJustification"], "INC-1");

    let with_code = ("x-msft-approval-code", code.as_str());
    let early = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified, with_code],
            WIPE_BODY,
        )
        .await;
    assert_eq!(early.status, 409, "not approved yet");
    h.emu.maa_decide(&code, "approve").unwrap();
    let resent = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified, with_code],
            WIPE_BODY,
        )
        .await;
    assert_eq!(resent.status, 409, "the early re-send used it up");
    assert_eq!(
        h.emu.maa_violations().len(),
        2,
        "{:?}",
        h.emu.maa_violations()
    );
    h.stop().await;

    // Approved, then re-sent once with the identical body: it runs; a second is a violation.
    let h = emu::start(tenant(403)).await;
    let held = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified],
            WIPE_BODY,
        )
        .await;
    let code = held.text_header("x-msft-approval-code").to_owned();
    let with_code = ("x-msft-approval-code", code.as_str());
    h.emu.maa_decide(&code, "approve").unwrap();
    let other_body = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified, with_code],
            "{}",
        )
        .await;
    assert_eq!(other_body.status, 409);
    assert_eq!(
        h.emu.maa_violations(),
        [format!("approval {code} re-sent with another body")]
    );
    h.stop().await;
    let h = emu::start(tenant(400)).await;
    let held = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified],
            WIPE_BODY,
        )
        .await;
    assert_eq!(held.status, 400);
    let code = held.text_header("x-msft-approval-code").to_owned();
    let with_code = ("x-msft-approval-code", code.as_str());
    h.emu.maa_decide(&code, "approve").unwrap();
    let once = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified, with_code],
            WIPE_BODY,
        )
        .await;
    assert_eq!(once.status, 204);
    assert!(h.emu.maa_violations().is_empty());
    let twice = h
        .send(
            host,
            Method::POST,
            &path,
            &[auth, json, justified, with_code],
            WIPE_BODY,
        )
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(
        h.emu.maa_violations(),
        [format!("approval {code} re-sent a second time")]
    );
    h.stop().await;
}

/// The book's worked example (docs/approvals.md): its commands run as printed (only the addresses changed)
/// against `graphgate serve --maa-handling` (the binary) in front of the emulator playing
/// MAA as `emulate --maa wipe,retire,delete --maa-status 403` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_maa_example_runs_as_printed() {
    use crate::common::process::run_async;
    let readme = include_str!("../../docs/approvals.md");
    let policy = crate::approvals::block_after(readme, "<!-- maa-example-policy -->");
    let commands = crate::approvals::block_after(readme, "<!-- maa-example-commands -->");
    let backend = crate::common::served::backend(tenant(403)).await;
    std::fs::write(backend.dir.join("policy.yaml"), &policy).unwrap();
    let mut serve = backend.serve_command();
    // Intune read every second instead of after 30 s, so the example ends soon.
    serve.args([
        "--maa-handling",
        "--maa-poll-min-secs",
        "1",
        "--maa-poll-max-secs",
        "1",
    ]);
    let served = backend.serve(serve).await;
    let script = commands
        .replace("http://127.0.0.1:8080", &format!("http://{}", served.addr))
        .replace(":8443", &format!(":{}", backend.addr.port()));
    let mut sh = std::process::Command::new("sh");
    sh.arg("-ec").arg(&script).current_dir(&backend.dir);
    let (status, out, err) = run_async(sh, Duration::from_secs(60)).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("HTTP/1.1 202 Accepted"), "{out}");
    let answers: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &answers[0];
    assert_eq!(first["state"], "external_approval_pending", "{out}");
    assert_eq!(first["maa"]["held_status"], 403);
    let last = answers.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{out}");
    assert_eq!(last["outcome"]["status"], 204);
    assert_eq!(last["maa"]["resent"], true);
    let sent: Vec<_> = backend
        .emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path.ends_with("/wipe"))
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body, r#"{"keepUserData":false}"#);
    assert_eq!(sent[1].body, sent[0].body);
    assert!(backend.emulator.maa_violations().is_empty());
    drop(served);
}
