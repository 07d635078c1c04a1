//! Four-eyes approvals end to end: requests under a rule with `approval:` are held (202,
//! nothing reaches Graph) until distinct people from every group approve the exact request,
//! then run once; rejections, expiry, cancels, revoked rules, secret reads redeemed once,
//! break glass, restarts and replicas on one redis-server. Every test asserts what the
//! emulator (Graph) received, the answers and the audit records.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use graphgate::gateway::Limits;
use graphgate::state::StateConfig;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::common::clock::{FrozenClock, within_real_time};
use crate::common::redis::RedisServer;
use crate::common::replicas::Replicas;
use crate::common::{Caller, DEVICE, Reply, Rule, TestPolicy, eventually, send_to, temp_dir};

pub const OPS: &str = "ops-bot-key-5e1d9c0a";
pub const ALICE: &str = "alice-key-2b7f4e91";
pub const ALICE_PHONE: &str = "alice-phone-key-8c3a6d20";
pub const BOB: &str = "bob-key-41d0e7a3";
pub const CAROL: &str = "carol-key-9a6b1c58";
pub const MALLORY: &str = "mallory-key-0f2e8b47";
pub const WIPE_BODY: &str = r#"{"keepUserData":true}"#;

/// `ops-bot` may wipe, under `approval`; alice (also as `alice-phone`), bob and carol review;
/// mallory is a caller with no part in it.
pub fn policy(approval: Value) -> TestPolicy {
    TestPolicy::empty()
        .caller(Caller::api_key("ops-bot", OPS))
        .caller(Caller::api_key("alice", ALICE))
        .caller(Caller::api_key("alice-phone", ALICE_PHONE))
        .caller(Caller::api_key("bob", BOB))
        .caller(Caller::api_key("carol", CAROL))
        .caller(Caller::api_key("mallory", MALLORY))
        .set(
            "approver_groups",
            json!({"secops": ["alice", "alice-phone", "bob"]}),
        )
        .rule(
            Rule::allow("wipes-need-approval")
                .callers(&["ops-bot"])
                .operations(&["managedDevices.wipe", "managedDevices.getFileVaultKey"])
                .set("approval", approval),
        )
}

/// One of secops and carol.
pub fn two_groups() -> Value {
    json!({"groups": [
        {"approvers": ["secops"], "required": 1},
        {"approvers": ["carol"], "required": 1}
    ]})
}

pub fn wipe_path(device: &str) -> String {
    format!("/v1.0/deviceManagement/managedDevices/{device}/wipe")
}

/// Sends `method path` with API key `key`, `headers` and `body` to `addr`.
pub async fn call(
    addr: SocketAddr,
    (method, path): (Method, &str),
    key: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send_to(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

/// `ops-bot` asks to wipe `DEVICE`.
pub async fn wipe(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    call(
        addr,
        (Method::POST, &wipe_path(DEVICE)),
        OPS,
        headers,
        WIPE_BODY,
    )
    .await
}

/// `key` posts `action` on approval `id` with `sha` and a reason.
pub async fn review(addr: SocketAddr, key: &str, id: &str, action: &str, sha: &str) -> Reply {
    let body = json!({"reason": format!("{action}: checked INC-4711"), "request_sha256": sha});
    let path = format!("/api/v1/approvals/{id}/{action}");
    call(addr, (Method::POST, &path), key, &[], &body.to_string()).await
}

/// `key` reads approval `id`.
pub async fn show(addr: SocketAddr, key: &str, id: &str) -> Reply {
    let path = format!("/api/v1/approvals/{id}");
    call(addr, (Method::GET, &path), key, &[], "").await
}

/// The wipes Graph received.
pub fn wipes(r: &Replicas) -> Vec<graphgate_emulator::GraphRequestRecord> {
    r.emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path.ends_with("/wipe"))
        .collect()
}

/// A held request's answer: 202, its Location, pending; (id, request_sha256).
pub fn held(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let doc = reply.json();
    let id = doc["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.headers["location"],
        format!("/api/v1/approvals/{id}").as_str()
    );
    assert_eq!(doc["state"], "pending", "{doc}");
    (id, doc["request_sha256"].as_str().unwrap().to_owned())
}

/// One gateway (memory state) enforcing `policy`.
async fn one(policy: &TestPolicy) -> Replicas {
    Replicas::start(1, &policy.yaml(), StateConfig::default(), Limits::default()).await
}

/// The `approval` audit records of approval `id`, as (event, state).
async fn transitions(r: &Replicas, id: &str) -> Vec<(String, String)> {
    r.audit_records()
        .await
        .into_iter()
        .filter(|rec| rec["kind"] == "approval" && rec["approval_id"] == id)
        .map(|rec| {
            let s = |k: &str| rec[k].as_str().unwrap_or_default().to_owned();
            (s("approval_event"), s("approval_state"))
        })
        .collect()
}

#[tokio::test]
async fn two_groups_one_alone_does_not_run_it_and_both_run_it_exactly_once() {
    let r = one(&policy(two_groups())).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[("x-graphgate-reason", "INC-4711 stolen")]).await);
    let doc = show(addr, OPS, &id).await.json();
    assert_eq!(doc["operation"], "managedDevices.wipe");
    assert_eq!(doc["tier"], "destructive");
    assert_eq!(doc["devices"], json!([DEVICE]));
    assert_eq!(doc["caller"], "ops-bot");
    assert_eq!(doc["reason"], "INC-4711 stolen");
    assert_eq!(doc["run_by"], "gateway");
    assert_eq!(doc["groups"][0]["approvers"], json!(["secops"]));
    assert!(doc["policy_sha256"].as_str().unwrap().len() == 64);
    assert!(wipes(&r).is_empty(), "held: nothing reached Graph");

    // One group alone: still pending, nothing sent.
    let after_alice = review(addr, ALICE, &id, "approve", &sha).await;
    assert_eq!(after_alice.status, 200, "{:?}", after_alice.body);
    let doc = after_alice.json();
    assert_eq!(doc["state"], "pending");
    assert_eq!(doc["groups"][0]["approvals"], json!(["alice"]));
    assert_eq!(doc["groups"][1]["approvals"], json!([]));
    assert!(wipes(&r).is_empty(), "one group alone does not run it");

    // Both: it runs, once, exactly as held.
    let after_carol = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(after_carol.status, 200, "{:?}", after_carol.body);
    let doc = after_carol.json();
    assert_eq!(doc["state"], "succeeded", "{doc}");
    assert_eq!(doc["outcome"]["status"], 204);
    assert_eq!(doc["reviews"].as_array().unwrap().len(), 2);
    let sent = wipes(&r);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, wipe_path(DEVICE));
    assert_eq!(sent[0].body, WIPE_BODY);

    // It ran: no review moves it now, and nothing is sent again.
    review(addr, BOB, &id, "approve", &sha)
        .await
        .assert_graph_error(409, "approvalNotInThatState");
    assert_eq!(wipes(&r).len(), 1);

    // The chain holds every transition and review, each with the id and the hash.
    let events = transitions(&r, &id).await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "requested",
            "review_counted",
            "approved",
            "started",
            "settled"
        ]
    );
    let records = r.audit_records().await;
    let run: Vec<&Value> = records
        .iter()
        .filter(|rec| rec["approval_id"] == id.as_str() && rec["approval_event"] == "run")
        .collect();
    assert_eq!(
        run.iter()
            .map(|rec| rec["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["intent", "outcome"],
        "the run is audited like any send: a durable intent, then the outcome"
    );
    assert_eq!(run[1]["upstream_status"], 204);
    assert!(
        records
            .iter()
            .filter(|rec| rec["approval_id"] == id.as_str())
            .all(|rec| rec["request_sha256"] == sha.as_str())
    );
    let reviews: Vec<&Value> = records
        .iter()
        .filter(|rec| rec["approval_event"] == "approve" && rec["kind"] == "request")
        .collect();
    assert_eq!(reviews.len(), 3, "each review request is recorded");
}

#[tokio::test]
async fn a_rejection_ends_it_and_nothing_runs() {
    let r = one(&policy(two_groups())).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    let rejected = review(addr, BOB, &id, "reject", &sha).await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(rejected.json()["state"], "rejected");
    review(addr, CAROL, &id, "approve", &sha)
        .await
        .assert_graph_error(409, "approvalNotInThatState");
    assert!(wipes(&r).is_empty());
    // The same request may be asked for again: the rejected one no longer holds its place.
    held(&wipe(addr, &[]).await);
}

#[tokio::test]
async fn a_pending_request_expires_after_its_ttl() {
    let approval = json!({"groups": [{"approvers": ["carol"], "required": 1}], "ttl": "1h"});
    let r = one(&policy(approval)).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    let mut events = r.replicas[0].gw.approvals().subscribe();
    let clock = FrozenClock::freeze();
    within_real_time("expiry", Duration::from_secs(60), async {
        clock.advance(Duration::from_secs(3_599)).await;
        assert_eq!(show(addr, OPS, &id).await.json()["state"], "pending");
        clock.advance(Duration::from_secs(2)).await;
        // The sweeper moves it on its own (no request touches it).
        let expired = loop {
            let event = events.recv().await.unwrap();
            if event.approval.id == id {
                break event;
            }
        };
        assert_eq!(expired.what, "expired");
        assert_eq!(expired.to(), graphgate::approval::State::Expired);
        assert_eq!(show(addr, OPS, &id).await.json()["state"], "expired");
        review(addr, CAROL, &id, "approve", &sha)
            .await
            .assert_graph_error(409, "approvalNotInThatState");
    })
    .await;
    drop(clock);
    assert!(wipes(&r).is_empty());
    let events = transitions(&r, &id).await;
    assert_eq!(
        events.last().unwrap(),
        &("expired".into(), "expired".into())
    );
}

#[tokio::test]
async fn nobody_approves_their_own_request_or_one_made_for_them() {
    let p = policy(two_groups()).with_rule("wipes-need-approval", |rule| {
        rule.callers(&["ops-bot", "alice"])
    });
    let r = one(&p).await;
    let addr = r.replicas[0].addr;
    // alice, an approver, asks herself: she cannot approve it.
    let path = wipe_path(DEVICE);
    let mine = call(addr, (Method::POST, &path), ALICE, &[], WIPE_BODY).await;
    let (id, sha) = held(&mine);
    review(addr, ALICE, &id, "approve", &sha)
        .await
        .assert_graph_error(403, "accessDenied");
    // Only she may cancel it.
    let cancel = format!("/api/v1/approvals/{id}/cancel");
    call(addr, (Method::POST, &cancel), BOB, &[], "")
        .await
        .assert_graph_error(403, "accessDenied");
    let canceled = call(
        addr,
        (Method::POST, &cancel),
        ALICE,
        &[],
        r#"{"reason":"wrong device"}"#,
    )
    .await;
    assert_eq!(canceled.json()["state"], "canceled", "{:?}", canceled.body);
    review(addr, CAROL, &id, "approve", &sha)
        .await
        .assert_graph_error(409, "approvalNotInThatState");
    // A request made for bob: nobody stating bob approves it, whichever caller.
    let for_bob = wipe(addr, &[("x-graphgate-initiator", "bob@contoso.com")]).await;
    let (id, sha) = held(&for_bob);
    let body = json!({"reason": "ok", "request_sha256": sha}).to_string();
    let approve = format!("/api/v1/approvals/{id}/approve");
    for key in [BOB, ALICE] {
        let as_bob = [("x-graphgate-initiator", "BOB@contoso.com")];
        call(addr, (Method::POST, &approve), key, &as_bob, &body)
            .await
            .assert_graph_error(403, "accessDenied");
    }
    assert!(wipes(&r).is_empty());
    let records = r.audit_records().await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|rec| rec["approval_id"] == id.as_str() && rec["status"] == 403)
        .collect();
    assert_eq!(refused.len(), 2, "each refusal is audited");
    assert!(
        refused
            .iter()
            .all(|rec| rec["error_code"] == "accessDenied")
    );
    // Others may: it runs.
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    let last = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(last.json()["state"], "succeeded", "{:?}", last.body);
    assert_eq!(wipes(&r).len(), 1);
}

#[tokio::test]
async fn one_person_with_two_identities_counts_once() {
    // Two of secops needed: alice and alice-phone are one person (the same initiator).
    let approval = json!({"groups": [{"approvers": ["secops"], "required": 2}]});
    let r = one(&policy(approval)).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    let as_alice = |key: &'static str| {
        let id = id.clone();
        let body = json!({"reason": "ok", "request_sha256": sha}).to_string();
        async move {
            let path = format!("/api/v1/approvals/{id}/approve");
            let headers = [("x-graphgate-initiator", "Alice@Contoso.com")];
            call(addr, (Method::POST, &path), key, &headers, &body).await
        }
    };
    let first = as_alice(ALICE).await;
    assert_eq!(first.json()["state"], "pending");
    as_alice(ALICE_PHONE)
        .await
        .assert_graph_error(409, "approvalAlreadyReviewed");
    assert!(wipes(&r).is_empty(), "one person is not two approvals");
    let bob = review(addr, BOB, &id, "approve", &sha).await;
    assert_eq!(bob.json()["state"], "succeeded", "{:?}", bob.body);
    assert_eq!(wipes(&r).len(), 1);
}

#[tokio::test]
async fn a_pending_approval_survives_a_restart_in_memory_mode_and_then_runs() {
    let dir = temp_dir("approvals-restart");
    let state = StateConfig::Memory {
        budget_file: None,
        approvals_file: Some(dir.join("approvals.json")),
    };
    let mut r = Replicas::start(1, &policy(two_groups()).yaml(), state, Limits::default()).await;
    let (id, sha) = held(&wipe(r.replicas[0].addr, &[]).await);
    let alice = review(r.replicas[0].addr, ALICE, &id, "approve", &sha).await;
    assert_eq!(alice.json()["state"], "pending");
    r.restart_all().await;
    let addr = r.replicas[0].addr;
    let doc = show(addr, OPS, &id).await.json();
    assert_eq!(doc["state"], "pending", "{doc}");
    assert_eq!(doc["groups"][0]["approvals"], json!(["alice"]));
    let carol = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(carol.json()["state"], "succeeded", "{:?}", carol.body);
    assert_eq!(wipes(&r).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_run_it_once_wherever_the_approval_arrives() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let state = crate::shared_state::redis_state(&redis);
    let r = Replicas::start(2, &policy(two_groups()).yaml(), state, Limits::default()).await;
    let (a, b) = (r.replicas[0].addr, r.replicas[1].addr);
    let (id, sha) = held(&wipe(a, &[]).await);
    // The other replica knows it, refuses the duplicate, and takes the approvals.
    assert_eq!(show(b, CAROL, &id).await.json()["state"], "pending");
    let again = wipe(b, &[]).await;
    again.assert_graph_error(409, "approvalAlreadyPending");
    assert!(
        again.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    assert_eq!(review(a, ALICE, &id, "approve", &sha).await.status, 200);
    // The last two approvals race on both replicas: one of them runs it, once.
    let (x, y) = tokio::join!(
        review(b, CAROL, &id, "approve", &sha),
        review(a, CAROL, &id, "approve", &sha)
    );
    let statuses = [x.status.as_u16(), y.status.as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    let done = eventually("it ran", Duration::from_secs(20), async || {
        let doc = show(a, OPS, &id).await.json();
        (doc["state"] == "succeeded").then_some(doc)
    })
    .await;
    assert_eq!(done["outcome"]["status"], 204);
    assert_eq!(wipes(&r).len(), 1, "once, across replicas");
}

#[tokio::test]
async fn a_rule_revoked_before_the_last_approval_fails_it_unsent() {
    let r = one(&policy(two_groups())).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    // The rule no longer lets ops-bot wipe.
    let revoked = policy(two_groups()).with_rule("wipes-need-approval", |rule| {
        rule.operations(&["managedDevices.getFileVaultKey"])
    });
    let gw = &r.replicas[0].gw;
    let before = gw.policy_hash();
    std::fs::write(r.policy_path(), revoked.yaml()).unwrap();
    eventually(
        "the new policy is in force",
        Duration::from_secs(20),
        async || (gw.policy_hash() != before).then_some(()),
    )
    .await;
    let last = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(last.status, 200, "{:?}", last.body);
    let doc = last.json();
    assert_eq!(doc["state"], "failed", "{doc}");
    assert_eq!(doc["outcome"]["status"], 403);
    assert_eq!(doc["outcome"]["error_code"], "accessDenied");
    assert!(
        doc["outcome"]["message"]
            .as_str()
            .unwrap()
            .contains("managedDevices.wipe"),
        "{doc}"
    );
    assert!(wipes(&r).is_empty(), "a revoked rule runs nothing");
}

#[tokio::test]
async fn a_secret_read_is_redeemed_once_by_its_requester_and_its_value_is_kept_nowhere() {
    let dir = temp_dir("approvals-secret");
    let file = dir.join("approvals.json");
    let state = StateConfig::Memory {
        budget_file: None,
        approvals_file: Some(file.clone()),
    };
    let approval = json!({"groups": [{"approvers": ["carol"], "required": 1}]});
    let r = Replicas::start(1, &policy(approval).yaml(), state, Limits::default()).await;
    let addr = r.replicas[0].addr;
    let mac = crate::catalog::device_for("getFileVaultKey");
    let secret = r.emulator.device_secrets(&mac).unwrap().file_vault_key;
    let path = format!("/beta/deviceManagement/managedDevices/{mac}/getFileVaultKey()");
    let read =
        async |headers: &[(&str, &str)]| call(addr, (Method::GET, &path), OPS, headers, "").await;
    let asked = read(&[]).await;
    let (id, sha) = held(&asked);
    assert_eq!(asked.json()["run_by"], "requester");
    let approved = review(addr, CAROL, &id, "approve", &sha).await;
    let doc = approved.json();
    assert_eq!(doc["state"], "approved", "{doc}");
    assert!(doc["execute_by"].is_string());
    let reads = |r: &Replicas| {
        r.emulator
            .graph_requests()
            .into_iter()
            .filter(|g| g.path.contains("getFileVaultKey"))
            .count()
    };
    assert_eq!(reads(&r), 0, "graphgate never runs a secret read itself");
    // Another caller cannot redeem it.
    let stolen = call(
        addr,
        (Method::GET, &path),
        MALLORY,
        &[("x-graphgate-approval", &id)],
        "",
    )
    .await;
    assert!(
        stolen.status == 403 || stolen.status == 404,
        "{}",
        stolen.status
    );
    let redeemed = read(&[("x-graphgate-approval", &id)]).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    assert!(String::from_utf8_lossy(&redeemed.body).contains(secret.expose()));
    assert_eq!(redeemed.headers["cache-control"], "no-store");
    read(&[("x-graphgate-approval", &id)])
        .await
        .assert_graph_error(409, "approvalNotInThatState");
    assert_eq!(reads(&r), 1, "redeemed once");
    let doc = show(addr, OPS, &id).await.json();
    assert_eq!(doc["state"], "succeeded");
    assert_eq!(doc["outcome"]["status"], 200);
    // The value is in no audit record, no stored approval, no resource.
    let audit: String = r
        .audit_records()
        .await
        .iter()
        .map(|rec| rec.to_string())
        .collect();
    assert!(audit.contains(&id));
    assert!(!audit.contains(secret.expose()));
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains(secret.expose())
    );
    assert!(!doc.to_string().contains(secret.expose()));
}

#[tokio::test]
async fn break_glass_runs_at_once_flagged_and_waits_for_its_review() {
    let mut approval = two_groups();
    approval["ttl"] = json!("1h");
    let p = policy(approval).with_rule("wipes-need-approval", |rule| {
        rule.set("break_glass", json!(true))
    });
    let r = one(&p).await;
    let addr = r.replicas[0].addr;
    let glass = [("x-graphgate-break-glass", "INC-9 ransomware spreading")];
    let ran = wipe(addr, &glass).await;
    assert_eq!(ran.status, 204, "{:?}", ran.body);
    assert_eq!(wipes(&r).len(), 1, "ran at once");
    // Listed for the approvers, with what came of it.
    let path = "/api/v1/approvals?state=needs_review";
    let listed = call(addr, (Method::GET, path), CAROL, &[], "").await.json();
    let items = listed["value"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let (id, sha) = (
        items[0]["id"].as_str().unwrap().to_owned(),
        items[0]["request_sha256"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        items[0]["break_glass"]["reason"],
        "INC-9 ransomware spreading"
    );
    assert_eq!(items[0]["outcome"]["status"], 204);
    let mallory = call(addr, (Method::GET, path), MALLORY, &[], "")
        .await
        .json();
    assert_eq!(mallory["value"], json!([]), "not an approver: not listed");
    // The next break glass of the same caller waits for the review.
    wipe(addr, &glass)
        .await
        .assert_graph_error(409, "breakGlassUnreviewed");
    assert_eq!(wipes(&r).len(), 1);
    // The audit flags the run.
    let records = r.audit_records().await;
    let flagged: Vec<&Value> = records
        .iter()
        .filter(|rec| rec["break_glass"] == true && rec["kind"] == "intent")
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["approval_id"], id.as_str());
    // The requester cannot review its own; an approver can.
    review(addr, OPS, &id, "review", &sha)
        .await
        .assert_graph_error(403, "accessDenied");
    let reviewed = review(addr, CAROL, &id, "review", &sha).await;
    assert_eq!(reviewed.status, 200, "{:?}", reviewed.body);
    assert_eq!(reviewed.json()["state"], "succeeded");
    let ran_again = wipe(addr, &glass).await;
    assert_eq!(ran_again.status, 204, "{:?}", ran_again.body);
    assert_eq!(wipes(&r).len(), 2);
}

/// Asserts `reply` is Graph's error JSON with `status` and `code`, that an audit record of
/// it exists, and returns nothing else: callers assert that nothing reached Graph.
async fn refused(r: &Replicas, reply: &Reply, status: u16, code: &str) {
    reply.assert_graph_error(status, code);
    let id = reply.headers["x-graphgate-request-id"].to_str().unwrap();
    let records = r.audit_records().await;
    let rec = records
        .iter()
        .find(|rec| rec["audit_id"] == id)
        .unwrap_or_else(|| panic!("no audit record of the {status} {code}"));
    assert_eq!(rec["status"], status);
    assert_eq!(rec["error_code"], code);
}

#[tokio::test]
async fn reviews_that_cannot_count_are_refused_audited_and_run_nothing() {
    let r = one(&policy(two_groups())).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    // Not an approver: 403, though the id is known.
    let mallory = review(addr, MALLORY, &id, "approve", &sha).await;
    refused(&r, &mallory, 403, "accessDenied").await;
    // Reading it is for its requester and approvers: anyone else learns nothing (404).
    show(addr, MALLORY, &id)
        .await
        .assert_graph_error(404, "resourceNotFound");
    assert_eq!(show(addr, CAROL, &id).await.status, 200);
    // A review for another request than the one held.
    let other = "0".repeat(64);
    let mismatch = review(addr, ALICE, &id, "approve", &other).await;
    refused(&r, &mismatch, 409, "approvalRequestMismatch").await;
    // Twice by one person.
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    let twice = review(addr, ALICE, &id, "approve", &sha).await;
    refused(&r, &twice, 409, "approvalAlreadyReviewed").await;
    // Reasons a person cannot read back as written.
    let long = "x".repeat(1_025);
    for reason in [
        "",
        "   ",
        "line\nbreak",
        "\u{200b}\u{2060}",
        "rtl \u{202e}",
        long.as_str(),
    ] {
        let body = json!({"reason": reason, "request_sha256": sha}).to_string();
        let path = format!("/api/v1/approvals/{id}/approve");
        let bad = call(addr, (Method::POST, &path), CAROL, &[], &body).await;
        refused(&r, &bad, 400, "invalidRequest").await;
    }
    let path = format!("/api/v1/approvals/{id}/approve");
    let extra = json!({"reason": "ok", "request_sha256": sha, "approve": true}).to_string();
    let bad = call(addr, (Method::POST, &path), CAROL, &[], &extra).await;
    refused(&r, &bad, 400, "invalidRequest").await;
    assert!(wipes(&r).is_empty(), "nothing reached Graph");
    // Canceled: no review moves it.
    let cancel = format!("/api/v1/approvals/{id}/cancel");
    assert_eq!(
        call(addr, (Method::POST, &cancel), OPS, &[], "")
            .await
            .status,
        200
    );
    let late = review(addr, CAROL, &id, "approve", &sha).await;
    refused(&r, &late, 409, "approvalNotInThatState").await;
    let again = call(addr, (Method::POST, &cancel), OPS, &[], "").await;
    refused(&r, &again, 409, "approvalNotInThatState").await;
    assert!(wipes(&r).is_empty());
    // Unknown routes and methods are Graph's errors too.
    let missing = format!("/api/v1/approvals/{}", uuid::Uuid::new_v4());
    show(
        addr,
        CAROL,
        missing.trim_start_matches("/api/v1/approvals/"),
    )
    .await
    .assert_graph_error(404, "resourceNotFound");
    let wrong = call(addr, (Method::DELETE, &missing), CAROL, &[], "").await;
    wrong.assert_graph_error(405, "methodNotAllowed");
    let anonymous = send_to(
        Request::get(format!("http://{addr}/api/v1/approvals"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    anonymous.assert_graph_error(401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn a_caller_has_a_bounded_number_of_pending_requests() {
    let limits = Limits {
        max_pending_approvals_per_caller: 2,
        ..Limits::default()
    };
    let yaml = policy(two_groups()).yaml();
    let r = Replicas::start(1, &yaml, StateConfig::default(), limits).await;
    let addr = r.replicas[0].addr;
    let path = wipe_path(DEVICE);
    let ask = async |body: &str| call(addr, (Method::POST, &path), OPS, &[], body).await;
    let (first, _) = held(&ask(r#"{"keepUserData":true}"#).await);
    held(&ask(r#"{"keepUserData":false}"#).await);
    let third = ask(r#"{"keepEnrollmentData":true}"#).await;
    refused(&r, &third, 429, "tooManyPendingApprovals").await;
    assert!(third.headers.contains_key("retry-after"));
    // One fewer pending (canceled): room for one more.
    let cancel = format!("/api/v1/approvals/{first}/cancel");
    assert_eq!(
        call(addr, (Method::POST, &cancel), OPS, &[], "")
            .await
            .status,
        200
    );
    held(&ask(r#"{"keepEnrollmentData":true}"#).await);
    assert!(wipes(&r).is_empty());
}

#[tokio::test]
async fn a_store_that_is_down_holds_nothing_and_runs_nothing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let state = crate::shared_state::redis_state(&redis);
    let r = Replicas::start(1, &policy(two_groups()).yaml(), state, Limits::default()).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    // Redis stops answering (and keeps what it holds).
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(8_000)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let down = wipe(addr, &[("idempotency-key", "another-wipe")]).await;
    refused(&r, &down, 503, "stateStoreUnavailable").await;
    let last = review(addr, CAROL, &id, "approve", &sha).await;
    refused(&r, &last, 503, "stateStoreUnavailable").await;
    assert!(wipes(&r).is_empty(), "a store that is down runs nothing");
    let doc = eventually(
        "the store answers again",
        Duration::from_secs(30),
        async || {
            let reply = show(addr, OPS, &id).await;
            (reply.status == 200).then(|| reply.json())
        },
    )
    .await;
    assert_eq!(doc["state"], "pending", "the refused review did not count");
}

#[tokio::test]
async fn one_approval_per_request_keyed_deduplicated_dry_run_and_bulk() {
    let p = policy(two_groups()).with_rule("wipes-need-approval", |rule| {
        rule.operations(&["managedDevices.wipe", "managedDevices.retire"])
    });
    let r = one(&p).await;
    let addr = r.replicas[0].addr;
    // A dry run says what approval it would need, and holds nothing.
    let dry = wipe(addr, &[("prefer", "dry-run")]).await;
    assert_eq!(dry.status, 200, "{:?}", dry.body);
    let doc = dry.json();
    assert_eq!(doc["approval"]["required"], true, "{doc}");
    assert_eq!(doc["approval"]["groups"][1]["approvers"], json!(["carol"]));
    let listed = call(addr, (Method::GET, "/api/v1/approvals"), OPS, &[], "").await;
    assert_eq!(listed.json()["value"], json!([]), "a dry run holds nothing");
    // A repeated Idempotency-Key gets the same approval.
    let key = [("idempotency-key", "wipe-lost-laptop-1")];
    let (id, _) = held(&wipe(addr, &key).await);
    let again = wipe(addr, &key).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], id.as_str());
    // The same key for another request is refused; the same request without it is a
    // duplicate of the pending one, named.
    let other = call(
        addr,
        (Method::POST, &wipe_path(DEVICE)),
        OPS,
        &key,
        r#"{"keepUserData":false}"#,
    )
    .await;
    other.assert_graph_error(422, "idempotencyKeyReused");
    let duplicate = wipe(addr, &[]).await;
    duplicate.assert_graph_error(409, "approvalAlreadyPending");
    assert!(
        duplicate.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    // A bulk request is one approval listing its devices.
    let devices = &graphgate_emulator::DEMO_DEVICE_IDS[1..3];
    let bulk = json!({"actionName": "retire", "deviceIds": devices}).to_string();
    let path = "/beta/deviceManagement/managedDevices/executeAction";
    let held_bulk = call(addr, (Method::POST, path), OPS, &[], &bulk).await;
    let (bulk_id, _) = held(&held_bulk);
    assert_eq!(held_bulk.json()["devices"], json!(devices));
    // Lists: the requester sees both, an approver too, filtered by state.
    let mine = call(
        addr,
        (Method::GET, "/api/v1/approvals?state=pending"),
        OPS,
        &[],
        "",
    )
    .await;
    let ids: Vec<&str> = mine.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned().leak() as &str)
        .collect();
    assert_eq!(ids, [bulk_id.as_str(), id.as_str()], "newest first");
    let approved = call(
        addr,
        (Method::GET, "/api/v1/approvals?state=approved"),
        CAROL,
        &[],
        "",
    )
    .await;
    assert_eq!(approved.json()["value"], json!([]));
    call(
        addr,
        (Method::GET, "/api/v1/approvals?state=maybe"),
        CAROL,
        &[],
        "",
    )
    .await
    .assert_graph_error(400, "invalidRequest");
    assert!(
        r.emulator
            .graph_requests()
            .iter()
            .all(|g| !g.path.contains("deviceManagement"))
    );
}

/// The code block after `marker` in `text`.
pub(crate) fn block_after(text: &str, marker: &str) -> String {
    let after = &text[text
        .find(marker)
        .expect("the marker is in docs/approvals.md")..];
    let start = after.find("```").unwrap();
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// The worked example of docs/approvals.md: its policy checked by `graphgate policy check`, then its
/// commands run as printed (only the address changed) against `graphgate serve` (the
/// binary) in front of the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_worked_example_runs_as_printed() {
    use crate::common::process::{BIN, run_async};
    let readme = include_str!("../../docs/approvals.md");
    let policy = block_after(readme, "<!-- approvals-example-policy -->");
    let commands = block_after(readme, "<!-- approvals-example-commands -->");
    let backend = crate::common::served::backend(Default::default()).await;
    let file = backend.dir.join("policy.yaml");
    std::fs::write(&file, &policy).unwrap();
    let mut check = std::process::Command::new(BIN);
    check.args(["policy", "check"]).arg(&file);
    let (status, stdout, stderr) = run_async(check, Duration::from_secs(30)).await;
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("rule 'wipes-need-two-people' holds its requests for approval: 1 of [secops] and 1 of [carol]"),
        "{stdout}"
    );
    let served = backend.serve(backend.serve_command()).await;
    let script = commands.replace("http://127.0.0.1:8080", &format!("http://{}", served.addr));
    let mut sh = std::process::Command::new("sh");
    sh.arg("-ec").arg(&script).current_dir(&backend.dir);
    let (status, out, err) = run_async(sh, Duration::from_secs(60)).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("HTTP/1.1 202 Accepted"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("location: /api/v1/approvals/"),
        "{out}"
    );
    let answers: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let states: Vec<&str> = answers
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["pending", "pending", "pending", "succeeded"],
        "{out}"
    );
    assert_eq!(answers[2]["groups"][0]["approvals"], json!(["alice"]));
    assert_eq!(answers[3]["outcome"]["status"], 204);
    let sent: Vec<_> = backend
        .emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path.ends_with("/wipe"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, r#"{"keepUserData":false}"#);
    drop(served);
}

/// One person behind a delegated token (her object id and UPN) and behind an API key stating
/// her object id is one person: her second review does not count. The requester is a
/// workload (a Kubernetes service-account token).
#[tokio::test]
async fn a_delegated_users_object_id_makes_her_one_person_across_callers() {
    use crate::common::jwt::{HELPDESK_APP, start_jwt};
    use graphgate_emulator::{DEMO_USER_OID, DEMO_USER_UPN};
    let rule = "  - name: workload-wipes-need-two\n    callers: [k8s-rotator]\n    operations: [managedDevices.wipe]\n    approval:\n      groups:\n        - { approvers: [helpdesk-portal, rooms-rotator], required: 2 }\n";
    let j = start_jwt(60, rule).await;
    let h = &j.h;
    let workload = h
        .service_account_token(&[crate::common::jwt::AUDIENCE])
        .await;
    let asked = h
        .post_token_to(&wipe_path(DEVICE), &workload, &[], WIPE_BODY)
        .await;
    let (id, sha) = held(&asked);
    let user = serde_json::json!({"client_id": HELPDESK_APP, "upn": DEMO_USER_UPN, "scp": "Devices.Manage", "cloud": "global"});
    let reply = h
        .to_emulator(
            "login.microsoftonline.com",
            Method::POST,
            "/_emulator/entra/user-token",
            &[],
            &user.to_string(),
        )
        .await;
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/approvals/{id}/approve");
    let body = json!({"reason": "checked", "request_sha256": sha}).to_string();
    let first = h.post_token_to(&path, &token, &[], &body).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let doc = first.json();
    assert_eq!(doc["state"], "pending");
    assert_eq!(doc["reviews"][0]["person"], DEMO_USER_UPN);
    // The same user, named by object id only, through an API-key caller.
    let again = call(
        h.gateway,
        (Method::POST, &path),
        crate::common::ROTATOR_KEY,
        &[("x-graphgate-initiator", DEMO_USER_OID)],
        &body,
    )
    .await;
    again.assert_graph_error(409, "approvalAlreadyReviewed");
    assert!(
        h.emulator
            .graph_requests()
            .iter()
            .all(|g| !g.path.ends_with("/wipe")),
        "one person is one approval"
    );
}

/// A request that needs approval is charged its caller's rate limit before it is held (in
/// one step of the store; the rest is taken when it runs): a second within the window is
/// refused 429 with Retry-After and audited, nothing held for it; the approved run of the
/// first is not charged again, so it runs although the limit is spent.
#[tokio::test]
async fn a_held_request_is_charged_its_rate_limit_and_its_approved_run_is_not() {
    let limited =
        policy(two_groups()).with_caller("ops-bot", |c| c.set("rate_limit", json!("1 per minute")));
    let r = one(&limited).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    let path = wipe_path(DEVICE);
    let second = call(
        addr,
        (Method::POST, &path),
        OPS,
        &[],
        r#"{"keepUserData":false}"#,
    )
    .await;
    refused(&r, &second, 429, "activityLimitReached").await;
    assert!(second.headers.contains_key("retry-after"));
    let records = r.audit_records().await;
    let requested = records
        .iter()
        .filter(|rec| rec["kind"] == "approval" && rec["approval_event"] == "requested")
        .count();
    assert_eq!(requested, 1, "nothing held for the refused one");
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    let ran = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(ran.json()["state"], "succeeded", "{:?}", ran.body);
    assert_eq!(wipes(&r).len(), 1);
}
