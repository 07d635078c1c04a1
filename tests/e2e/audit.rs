//! End-to-end audit: an intent before Graph is called and an outcome after, a record for
//! every refusal past recognition, secrets only as fingerprints, fail-closed 503 when the
//! log cannot be written, and the admin endpoints' view of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use graphgate::audit::records::chain::ChainState;
use graphgate::audit::store::sink::{FileOptions, FileSink, Sink};
use graphgate::audit::{Audit, Fingerprinter};
use graphgate::secret::Secret;
use http::Request;
use serde_json::Value;

fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[tokio::test]
async fn an_allowed_call_has_a_durable_intent_then_an_outcome() {
    let h = start().await;
    let r = h.call().await;
    assert_eq!(r.status, 204);
    let id = r.headers["x-graphgate-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let records = h.audit_records().await;
    let intent = of_kind(&records, "intent");
    let outcome = of_kind(&records, "outcome");
    assert_eq!((intent.len(), outcome.len()), (1, 1), "{records:?}");
    let (i, o) = (intent[0], outcome[0]);
    assert!(i["seq"].as_u64() < o["seq"].as_u64());
    assert_eq!(i["audit_id"], id);
    assert_eq!(o["audit_id"], id);
    for r in [i, o] {
        assert_eq!(r["caller"], "rooms-rotator");
        assert_eq!(r["auth_method"], "api_key");
        assert!(r["source"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(r["operation"], "managedDevices.updateWindowsDeviceAccount");
        assert_eq!(r["api_version"], "v1.0");
        assert_eq!(r["cloud"], "global");
        assert!(r["tenant"].is_string());
        assert_eq!(r["device_id"], DEVICE);
        assert_eq!(r["rule"], "rotator-updates-room-accounts");
        assert_eq!(r["decision"], "allowed");
        assert_eq!(r["policy_version"].as_str().unwrap().len(), 64);
        assert!(r["token_app_id"].is_string(), "{r}");
        assert!(r["client_request_id"].is_string());
        let pw = &r["params"]["deviceAccount.password"];
        assert_eq!(pw["redacted"], true);
        let expected = fingerprinter().fingerprint(&Secret::new(PASSWORD));
        assert_eq!(
            pw["hmac_sha256"], expected,
            "same password, same fingerprint"
        );
        assert_eq!(r["params"]["deviceAccountEmail"], "room1@contoso.com");
    }
    assert_eq!(o["status"], 204);
    assert_eq!(o["upstream_status"], 204);
    assert!(o["graph_request_id"].is_string(), "{o}");
    assert!(o["latency_us"].as_u64().is_some() && o["upstream_latency_us"].is_u64());
    assert!(
        i["status"].is_null(),
        "the intent is written before the answer"
    );
    let log = std::fs::read_to_string(h.audit_path.as_ref().unwrap()).unwrap();
    assert!(!log.contains(PASSWORD) && !log.contains(ROTATOR_KEY));
}

#[tokio::test]
async fn refusals_past_recognition_are_audited_and_others_are_not() {
    let h = start().await;
    // Unauthenticated: never reaches recognition; recorded (sampled per source) without
    // anything the caller presented.
    h.post(ACTION_PATH, Some("wrong-key"), &body())
        .await
        .assert_graph_error(401, "InvalidAuthenticationToken");
    // Authenticated, but no operation: no record.
    h.post(
        "/v1.0/deviceManagement/managedDevices",
        Some(ROTATOR_KEY),
        "{}",
    )
    .await
    .assert_graph_error(404, "resourceNotFound");
    // Denied by policy.
    h.post(ACTION_PATH, Some(OTHER_KEY), &body())
        .await
        .assert_graph_error(403, "accessDenied");
    // Invalid: query string, bad body (with the password in it).
    let q = format!("{ACTION_PATH}?x=1");
    h.post(&q, Some(ROTATOR_KEY), &body())
        .await
        .assert_graph_error(400, "invalidRequest");
    let bad = body().replace(
        "calendarSyncEnabled\":true",
        "calendarSyncEnabled\":\"yes\"",
    );
    h.post(ACTION_PATH, Some(ROTATOR_KEY), &bad)
        .await
        .assert_graph_error(400, "invalidRequest");
    let records = h.audit_records().await;
    let requests = of_kind(&records, "request");
    let got: Vec<(&str, &str, &str)> = requests
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap_or("-"),
                r["decision"].as_str().unwrap(),
                r["error_code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("-", "unauthenticated", "InvalidAuthenticationToken"),
            ("other-service", "denied", "accessDenied"),
            ("rooms-rotator", "invalid", "invalidRequest"),
            ("rooms-rotator", "invalid", "invalidRequest"),
        ]
    );
    assert_eq!(requests[0]["status"], 401);
    assert!(requests[0]["params"].is_null() && requests[0]["operation"].is_null());
    assert_eq!(requests[1]["status"], 403);
    // No rule could allow that caller, so its body was never read: no parameters recorded.
    assert!(requests[1]["params"].is_null(), "{}", requests[1]);
    assert!(
        requests[1]["note"]
            .as_str()
            .unwrap()
            .contains("before the body")
    );
    assert!(of_kind(&records, "intent").is_empty(), "nothing was sent");
    assert!(h.emulator.graph_requests().is_empty());
    let log = std::fs::read_to_string(h.audit_path.as_ref().unwrap()).unwrap();
    assert!(!log.contains(PASSWORD) && !log.contains(OTHER_KEY) && !log.contains("wrong-key"));
    let report = graphgate::audit::read::verify::verify(&[h.audit_path.clone().unwrap()]).unwrap();
    assert!(report.is_ok());
}

/// A file sink that fails while `fail` is set.
struct Switchable {
    inner: FileSink,
    fail: Arc<AtomicBool>,
}

impl Sink for Switchable {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("No space left on device"));
        }
        self.inner.append(bytes)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn durable(&mut self, head: &ChainState) -> std::io::Result<()> {
        self.inner.durable(head)
    }
    fn close(&mut self, head: &ChainState) -> std::io::Result<()> {
        self.inner.close(head)
    }
}

fn file_options() -> FileOptions {
    FileOptions {
        max_file_bytes: 1 << 30,
        retain_files: None,
        keep_unshipped: false,
    }
}

fn switchable(path: &Path) -> (Audit, Arc<AtomicBool>) {
    let (inner, state) = FileSink::open(path, file_options(), fingerprinter()).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let sink = Switchable {
        inner,
        fail: Arc::clone(&fail),
    };
    let fp = Fingerprinter::new(&HMAC_KEY).unwrap();
    (Audit::with_sink(Box::new(sink), state, fp).unwrap(), fail)
}

async fn admin(h: &Harness, path: &str) -> (u16, String) {
    let req = Request::get(path).body(()).unwrap();
    let resp = graphgate::admin::handle(&h.gw, &req).await;
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn an_unwritable_audit_log_fails_closed_and_readiness_says_so() {
    let path = temp_dir("failclosed").join("audit.jsonl");
    let (audit, fail) = switchable(&path);
    let h = start_with(Options {
        audit: AuditMode::Custom(audit),
        ..Options::default()
    })
    .await;
    assert_eq!(h.call().await.status, 204);
    let (status, ready) = admin(&h, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains(r#""ready":true"#), "{ready}");

    let (_, before) = admin(&h, "/metrics").await;
    fail.store(true, Ordering::SeqCst);
    let r = h.call().await;
    r.assert_graph_error(503, "auditUnavailable");
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "nothing sent unaudited"
    );
    let (status, ready) = admin(&h, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let v: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["audit"]["ok"], false);
    assert_eq!(v["checks"]["policy"]["ok"], true);
    assert_eq!(v["checks"]["token"]["ok"], true);
    // Counted (>=: the registry is shared with the other tests of this binary).
    let (_, metrics) = admin(&h, "/metrics").await;
    let failures = |text: &str| common::metrics::value(text, "graphgate_audit_failures_total");
    assert!(failures(&metrics) >= failures(&before) + 1.0, "{metrics}");

    fail.store(false, Ordering::SeqCst);
    assert_eq!(h.call().await.status, 204);
    assert_eq!(admin(&h, "/readyz").await.0, 200);
    assert_eq!(admin(&h, "/healthz").await.0, 200);
    h.audit.flush().await.unwrap();
    assert!(
        graphgate::audit::read::verify::verify(&[path])
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_with_bounded_labels() {
    // Before the start: a gateway fetches its first token as it starts.
    let before = common::metrics::Snapshot::now();
    let h = start().await;
    assert_eq!(h.call().await.status, 204);
    h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await;
    h.audit.flush().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(graphgate::admin::serve(
        listener,
        Arc::clone(&h.gw),
        std::future::pending(),
    ));
    let url = format!("http://{addr}/metrics");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "30", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // What this test did, at least (other tests of this binary share the registry; exact
    // values are checked in tests/e2e/metrics.rs, in a process of its own).
    use common::metrics::{OP, requests, value};
    let at_least = [
        (requests(OP, "allowed", "2xx"), 1.0),
        (requests(OP, "denied", "4xx"), 1.0),
        (
            format!("graphgate_request_duration_seconds_count{{operation=\"{OP}\"}}"),
            2.0,
        ),
        ("graphgate_upstream_duration_seconds_count".into(), 1.0),
        (
            "graphgate_token_acquisition_duration_seconds_count".into(),
            1.0,
        ),
        (r#"graphgate_token_fetches_total{result="ok"}"#.into(), 1.0),
        ("graphgate_audit_write_duration_seconds_count".into(), 1.0),
        // The intent and outcome of the allowed call, the record of the denied one.
        ("graphgate_audit_records_total".into(), 3.0),
    ];
    for (series, grew_by) in at_least {
        let delta = value(&text, &series) - before.get(&series);
        assert!(
            delta >= grew_by,
            "{series}: +{delta}, expected +{grew_by} or more\n{text}"
        );
    }
    assert!(text.contains("graphgate_request_duration_seconds_bucket"));
    for leak in [
        DEVICE,
        ROTATOR_KEY,
        OTHER_KEY,
        PASSWORD,
        "rooms-rotator",
        "/v1.0/",
    ] {
        assert!(!text.contains(leak), "{leak} in metrics");
    }
}

/// The value of the metric sample `name`, 0 if not yet rendered.
fn metric(name: &str) -> f64 {
    graphgate::metrics::encode()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn records_lost_in_a_failed_batch_are_counted_not_silently_dropped() {
    let path = temp_dir("lost").join("audit.jsonl");
    let (audit, fail) = switchable(&path);
    let before = metric("graphgate_audit_records_lost_total");
    fail.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let entry = graphgate::audit::Entry {
            kind: Some(graphgate::audit::Kind::Outcome),
            audit_id: format!("lost-{i}"),
            ..Default::default()
        };
        // Nobody waits for an outcome: the caller already has its answer.
        audit.write(entry).await.unwrap();
    }
    // Whether they fail with the flush or on their own deferred commit just before it,
    // they are gone once the flush returns.
    let _ = audit.flush().await;
    assert_eq!(audit.status(), "failing");
    let after = metric("graphgate_audit_records_lost_total");
    assert!(
        after - before >= 3.0,
        "lost records counted: {before} -> {after}"
    );
    fail.store(false, Ordering::SeqCst);
    audit.shutdown().await.unwrap();
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(!log.contains("lost-"), "{log}");
}
