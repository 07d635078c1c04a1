//! Approval notifications end to end: a real HTTP receiver on `127.0.0.1:0` (hyper) takes
//! what the gateway's webhooks send and checks each delivery's `Graphgate-Signature` with
//! its own HMAC-SHA256 (written here from RFC 2104 over `sha2`, not the gateway's code),
//! and the shapes of the JSON, Teams (Adaptive Card message) and Slack (Block Kit)
//! formats. Receivers that hang or answer 500 are retried while the approval proceeds
//! unhindered; a full queue drops its oldest delivery, counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::approvals::{
    ALICE, CAROL, OPS, WIPE_BODY, call, held, policy, review, two_groups, wipe, wipe_path,
};
use crate::common::metrics::Snapshot;
use crate::common::replicas::Replicas;
use crate::common::{DEVICE, Options, eventually, temp_dir, write_private};

const CONSOLE: &str = "https://graphgate-admin.example.com/";

/// How the receiver answers a path.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Fail500,
    Hang,
}

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// A webhook receiver: answers each path as told, records every request on arrival.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    async fn start(answers: &[(&str, Answer)]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers: Arc<HashMap<String, Answer>> =
            Arc::new(answers.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect());
        let record = Arc::clone(&got);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, answers) = (Arc::clone(&record), Arc::clone(&answers));
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (record, answers) = (Arc::clone(&record), Arc::clone(&answers));
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        record.lock().unwrap().push(Got {
                            path: path.clone(),
                            headers,
                            body,
                        });
                        let status = match answers.get(&path).copied().unwrap_or(Answer::Ok) {
                            Answer::Ok => 204,
                            Answer::Fail500 => 500,
                            Answer::Hang => std::future::pending().await,
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Receiver { addr, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn at(&self, path: &str) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|g| g.path == path).cloned().collect()
    }

    /// Waits until `path` has taken `n` requests (at most 30 s).
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Got> {
        eventually(
            &format!("{n} deliveries at {path}"),
            Duration::from_secs(30),
            async || {
                let got = self.at(path);
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// HMAC-SHA256 (RFC 2104), written here: the receiver's own check.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks `got`'s `Graphgate-Signature` against `secret` as a receiver would: the
/// timestamp is recent and the HMAC of `t.body` matches.
fn assert_signed(got: &Got, secret: &str) {
    let header = got.header("graphgate-signature");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature {header:?}"));
    let t: u64 = t.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t) < 300, "timestamp {t} is not recent ({now})");
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&got.body);
    let want: String = hmac_sha256(secret.as_bytes(), &message)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, want, "signature of {} does not verify", got.path);
}

/// Writes a webhook secret file; (path, secret).
fn secret(dir: &Path, name: &str) -> (PathBuf, String) {
    let value = format!("whsec-{name}-{}", uuid::Uuid::new_v4());
    let path = dir.join(format!("{name}.secret"));
    write_private(&path, format!("{value}\n").as_bytes());
    (path, value)
}

fn webhook(url: String, format: &str, secret_file: &Path) -> Value {
    json!({"url": url, "format": format, "secret_file": secret_file.display().to_string()})
}

/// One gateway with `webhooks` and `notify` settings.
async fn gateway(webhooks: Vec<Value>, notify: graphgate::notify::Settings) -> Replicas {
    let p = policy(two_groups()).set("approvals", json!({ "webhooks": webhooks }));
    let opts = Options {
        notify,
        ..Options::default()
    };
    Replicas::start_with(1, &p.yaml(), opts).await
}

/// Settings that retry quickly.
fn quick(queue: usize, timeout: Duration) -> graphgate::notify::Settings {
    graphgate::notify::Settings {
        console_url: Some(CONSOLE.to_owned()),
        queue,
        timeout,
        attempts: 3,
        backoff: (Duration::from_millis(20), Duration::from_millis(100)),
    }
}

const HOSTILE_REASON: &str = "INC-4711 [click here](https://evil.example) <!channel> *urgent*";

#[tokio::test]
async fn every_change_reaches_json_teams_and_slack_signed_with_the_request_facts() {
    let rx = Receiver::start(&[]).await;
    let dir = temp_dir("webhooks");
    let (json_file, json_secret) = secret(&dir, "json");
    let (teams_file, teams_secret) = secret(&dir, "teams");
    let (slack_file, slack_secret) = secret(&dir, "slack");
    let r = gateway(
        vec![
            webhook(rx.url("/json"), "json", &json_file),
            webhook(rx.url("/teams"), "teams", &teams_file),
            webhook(rx.url("/slack"), "slack", &slack_file),
        ],
        quick(64, Duration::from_secs(5)),
    )
    .await;
    let addr = r.replicas[0].addr;
    let headers = [
        ("x-graphgate-reason", HOSTILE_REASON),
        ("x-graphgate-initiator", "dave@contoso.com"),
    ];
    let (id, sha) = held(&wipe(addr, &headers).await);
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    let done = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(done.json()["state"], "succeeded");

    // JSON: every change, in order, each the whole resource.
    let got = rx.wait_for("/json", 5).await;
    for g in &got {
        assert_signed(g, &json_secret);
        assert_eq!(g.header("content-type"), "application/json");
    }
    let docs: Vec<Value> = got.iter().map(Got::json).collect();
    let seen: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (d["event"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("requested", "pending"),
            ("review_counted", "pending"),
            ("approved", "approved"),
            ("started", "executing"),
            ("settled", "succeeded")
        ]
    );
    assert_eq!(docs[2]["from"], "pending");
    assert_eq!(docs[2]["by"], "carol");
    let last = &docs[4]["approval"];
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["request_sha256"], sha.as_str());
    assert_eq!(last["reason"], HOSTILE_REASON);
    assert_eq!(last["outcome"]["status"], 204);
    assert_eq!(
        docs[0]["console_url"],
        format!("https://graphgate-admin.example.com/audit/approvals/{id}")
    );
    for (g, d) in got.iter().zip(&docs) {
        assert_eq!(g.header("graphgate-delivery"), d["delivery_id"]);
        assert_eq!(g.header("graphgate-event"), d["event"]);
    }

    // Teams: a message carrying one Adaptive Card, the facts, a link, no decisions.
    let teams = rx.wait_for("/teams", 5).await;
    for g in &teams {
        assert_signed(g, &teams_secret);
    }
    for (g, d) in teams.iter().zip(&docs) {
        assert_eq!(
            g.header("graphgate-delivery"),
            d["delivery_id"],
            "one id per event"
        );
    }
    let msg = teams[0].json();
    assert_eq!(msg["type"], "message");
    let attachments = msg["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert!(card["version"].as_str().unwrap().starts_with("1."));
    let body = card["body"].as_array().unwrap();
    assert!(body.iter().all(|el| el["type"].is_string()));
    let facts: HashMap<String, String> = body
        .iter()
        .filter(|el| el["type"] == "FactSet")
        .flat_map(|el| el["facts"].as_array().unwrap().iter())
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_owned(),
                f["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for title in [
        "Operation",
        "Devices",
        "Caller",
        "Initiator",
        "Reason",
        "State",
        "Approvals",
        "Expires",
    ] {
        assert!(facts.contains_key(title), "{title} missing from {facts:?}");
    }
    assert!(facts["Operation"].contains("managedDevices.wipe"));
    assert!(facts["Devices"].contains(DEVICE));
    assert_eq!(facts["Caller"], "ops-bot");
    assert_eq!(facts["Initiator"], "dave@contoso.com");
    assert!(facts["State"].starts_with("pending"));
    assert!(facts["Approvals"].contains("0/1"), "{}", facts["Approvals"]);
    // The reason stays text: no Markdown link or emphasis can form.
    assert!(
        !facts["Reason"].contains("[click here]"),
        "{}",
        facts["Reason"]
    );
    assert!(facts["Reason"].contains("\\[click here\\]"));
    assert!(facts["Reason"].contains("\\*urgent\\*"));
    let actions = card["actions"].as_array().unwrap();
    assert_eq!(
        actions.len(),
        1,
        "one link, nothing that decides: {actions:?}"
    );
    assert_eq!(actions[0]["type"], "Action.OpenUrl");
    assert_eq!(
        actions[0]["url"],
        format!("https://graphgate-admin.example.com/audit/approvals/{id}")
    );
    let last_card = &teams[4].json()["attachments"][0]["content"];
    assert!(
        last_card.to_string().contains("succeeded"),
        "the last card says how it ended"
    );

    // Slack: Block Kit with a fallback text, plain-text facts, the link, no buttons.
    let slack = rx.wait_for("/slack", 5).await;
    for g in &slack {
        assert_signed(g, &slack_secret);
    }
    let msg = slack[0].json();
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains("managedDevices.wipe")
    );
    let blocks = msg["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let fields: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "section" && b["fields"].is_array())
        .flat_map(|b| {
            let fields = b["fields"].as_array().unwrap();
            assert!(fields.len() <= 10, "a section holds at most 10 fields");
            fields.iter().map(|f| {
                assert_eq!(f["type"], "plain_text", "caller text is never formatted");
                let text = f["text"].as_str().unwrap();
                assert!(text.chars().count() <= 2000);
                text
            })
        })
        .collect();
    for want in [
        "Operation: managedDevices.wipe",
        "Caller: ops-bot",
        "Initiator: dave@contoso.com",
        &format!("Reason: {HOSTILE_REASON}"),
        &format!("Devices: {DEVICE}"),
    ] {
        assert!(
            fields.iter().any(|f| f.starts_with(want)),
            "{want} in {fields:?}"
        );
    }
    assert!(fields.iter().any(|f| f.starts_with("Expires: ")));
    assert!(fields.iter().any(|f| f.starts_with("Approvals: ")));
    // Caller text is only ever plain text: no mrkdwn (mentions, links) carries it.
    let mut mrkdwn = vec![msg["text"].as_str().unwrap().to_owned()];
    collect_mrkdwn(&msg, &mut mrkdwn);
    assert!(
        mrkdwn
            .iter()
            .all(|t| !t.contains("<!channel>") && !t.contains("evil")),
        "{mrkdwn:?}"
    );
    let text = msg.to_string();
    assert!(text.contains(&format!(
        "<https://graphgate-admin.example.com/audit/approvals/{id}|Open in the graphgate console>"
    )));
    for b in blocks {
        assert_ne!(
            b["type"], "actions",
            "no buttons: decisions are not taken in chat"
        );
    }
}

/// Every `mrkdwn` text object's text under `v`.
fn collect_mrkdwn(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("mrkdwn")) {
                out.push(map["text"].as_str().unwrap().to_owned());
            }
            map.values().for_each(|v| collect_mrkdwn(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_mrkdwn(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn break_glass_tells_every_approver_through_the_webhooks() {
    let rx = Receiver::start(&[]).await;
    let dir = temp_dir("webhooks-bg");
    let (file, key) = secret(&dir, "json");
    let p = policy(two_groups())
        .with_rule("wipes-need-approval", |rule| {
            rule.set("break_glass", json!(true))
        })
        .set(
            "approvals",
            json!({"webhooks": [webhook(rx.url("/json"), "json", &file)]}),
        );
    let opts = Options {
        notify: quick(64, Duration::from_secs(5)),
        ..Options::default()
    };
    let r = Replicas::start_with(1, &p.yaml(), opts).await;
    let glass = [("x-graphgate-break-glass", "INC-9 ransomware spreading")];
    let ran = wipe(r.replicas[0].addr, &glass).await;
    assert!(ran.status.is_success(), "{:?}", ran.body);
    let got = rx.wait_for("/json", 1).await;
    assert_signed(&got[0], &key);
    let doc = got[0].json();
    assert_eq!(doc["event"], "break_glass", "{doc}");
    assert_eq!(doc["state"], "needs_review");
    assert_eq!(
        doc["notify"],
        json!(["alice", "alice-phone", "bob", "carol"]),
        "every approver of the rule"
    );
}

#[tokio::test]
async fn a_hanging_and_a_failing_receiver_are_retried_while_the_approval_runs() {
    let rx = Receiver::start(&[("/hang", Answer::Hang), ("/fail", Answer::Fail500)]).await;
    let dir = temp_dir("webhooks-bad");
    let (hang_file, _) = secret(&dir, "hang");
    let (fail_file, fail_secret) = secret(&dir, "fail");
    let (ok_file, _) = secret(&dir, "ok");
    let before = Snapshot::now();
    let r = gateway(
        vec![
            webhook(rx.url("/hang"), "json", &hang_file),
            webhook(rx.url("/fail"), "teams", &fail_file),
            webhook(rx.url("/ok"), "slack", &ok_file),
        ],
        quick(64, Duration::from_millis(300)),
    )
    .await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[]).await);
    assert_eq!(review(addr, ALICE, &id, "approve", &sha).await.status, 200);
    let done = review(addr, CAROL, &id, "approve", &sha).await;
    assert_eq!(
        done.json()["state"],
        "succeeded",
        "the approval ran regardless"
    );
    let sent = r
        .emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path == wipe_path(DEVICE))
        .count();
    assert_eq!(sent, 1);
    // The healthy receiver has every change, whatever the others do.
    rx.wait_for("/ok", 5).await;
    // The failing one got the first delivery three times (same id, each signed afresh).
    let fails = rx.wait_for("/fail", 3).await;
    let first = fails[0].header("graphgate-delivery").to_owned();
    assert!(
        fails[..3]
            .iter()
            .all(|g| g.header("graphgate-delivery") == first)
    );
    fails.iter().for_each(|g| assert_signed(g, &fail_secret));
    // The hanging one got it three times: each attempt timed out and was retried.
    let hangs = rx.wait_for("/hang", 3).await;
    assert!(
        hangs[..3]
            .iter()
            .all(|g| g.header("graphgate-delivery") == hangs[0].header("graphgate-delivery"))
    );
    let after = eventually(
        "the given-up deliveries counted",
        Duration::from_secs(30),
        async || {
            let now = Snapshot::now();
            let gave_up = before.delta(
                &now,
                r#"graphgate_webhook_deliveries_total{result="gave_up"}"#,
            );
            let timeouts = before.delta(
                &now,
                r#"graphgate_webhook_deliveries_total{result="timeout"}"#,
            );
            (gave_up >= 2.0 && timeouts >= 3.0).then_some(now)
        },
    )
    .await;
    assert!(
        before.delta(
            &after,
            r#"graphgate_webhook_deliveries_total{result="status"}"#
        ) >= 3.0
    );
    assert!(
        before.delta(
            &after,
            r#"graphgate_webhook_deliveries_total{result="timeout"}"#
        ) >= 3.0
    );
    assert!(before.delta(&after, r#"graphgate_webhook_deliveries_total{result="ok"}"#) >= 5.0);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_notification_and_counts_it() {
    let rx = Receiver::start(&[("/hang", Answer::Hang)]).await;
    let dir = temp_dir("webhooks-full");
    let (file, _) = secret(&dir, "hang");
    let settings = graphgate::notify::Settings {
        attempts: 1,
        ..quick(1, Duration::from_secs(60))
    };
    let before = Snapshot::now();
    let r = gateway(vec![webhook(rx.url("/hang"), "json", &file)], settings).await;
    let addr = r.replicas[0].addr;
    // The first notification reaches the receiver, which never answers: the sender waits.
    held(&wipe(addr, &[]).await);
    rx.wait_for("/hang", 1).await;
    // Five more changes, each answered at once, while the queue has one place.
    for _ in 0..5 {
        let path = wipe_path(&uuid::Uuid::new_v4().to_string());
        let answer = call(addr, (Method::POST, &path), OPS, &[], WIPE_BODY).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
    }
    let after = eventually("4 drops counted", Duration::from_secs(30), async || {
        let now = Snapshot::now();
        (before.delta(&now, "graphgate_webhook_dropped_total") >= 4.0).then_some(now)
    })
    .await;
    assert!(after.get("graphgate_webhook_queue_depth") >= 1.0);
    assert_eq!(rx.at("/hang").len(), 1, "the sender is still on the first");
}

#[tokio::test]
async fn a_policy_reload_moves_notifications_to_its_webhooks() {
    let rx = Receiver::start(&[]).await;
    let dir = temp_dir("webhooks-reload");
    let (first_file, first_secret) = secret(&dir, "first");
    let (second_file, second_secret) = secret(&dir, "second");
    let r = gateway(
        vec![webhook(rx.url("/first"), "json", &first_file)],
        quick(64, Duration::from_secs(5)),
    )
    .await;
    let addr = r.replicas[0].addr;
    let (id, _) = held(&wipe(addr, &[]).await);
    assert_signed(&rx.wait_for("/first", 1).await[0], &first_secret);
    // The policy file now names another webhook: the reloader installs it.
    let before = r.replicas[0].gw.policy_hash();
    let p = policy(two_groups()).set(
        "approvals",
        json!({"webhooks": [webhook(rx.url("/second"), "slack", &second_file)]}),
    );
    std::fs::write(r.policy_path(), p.yaml()).unwrap();
    eventually(
        "the new policy in force",
        Duration::from_secs(30),
        async || (r.replicas[0].gw.policy_hash() != before).then_some(()),
    )
    .await;
    let cancel = format!("/api/v1/approvals/{id}/cancel");
    let canceled = call(addr, (Method::POST, &cancel), OPS, &[], "").await;
    assert_eq!(canceled.json()["state"], "canceled");
    let got = rx.wait_for("/second", 1).await;
    assert_signed(&got[0], &second_secret);
    assert_eq!(got[0].header("graphgate-event"), "canceled");
    assert!(
        got[0].json()["blocks"].is_array(),
        "in the new webhook's format"
    );
    assert_eq!(rx.at("/first").len(), 1, "the old webhook hears no more");
}
