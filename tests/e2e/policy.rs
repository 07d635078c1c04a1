//! The policy through the real HTTP path: rule features, deny and shadow rules, dry runs,
//! rate limits and pacing, mTLS callers, hot reload under load, and the simplified API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::pki::{Ca, client_config};
use common::*;
use graphgate::identity::api_key_sha256;
use http_body_util::Full;

const OTHER_DEVICE: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

fn policy(rules: &str) -> String {
    policy_with_rotator_rate(rules, "1000 per second")
}

/// [`policy`], the rotator's own rate limit being `rate`.
fn policy_with_rotator_rate(rules: &str, rate: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n    rate_limit: {rate}\n  - name: other-service\n    api_key_sha256: \"{}\"\n  - name: spiffe-svc\n    mtls:\n      uri_san: spiffe://corp.example/ns/rooms/sa/rotator\n  - name: cn-svc\n    mtls:\n      subject_cn: legacy-rotator.corp.example\nrules:\n{rules}",
        api_key_sha256(ROTATOR_KEY),
        api_key_sha256(OTHER_KEY)
    )
}

async fn harness(rules: &str) -> Harness {
    start_with(Options {
        policy: Some(policy(rules)),
        ..Options::default()
    })
    .await
}

fn device_path(device: &str) -> String {
    format!("/v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount")
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"].as_str().unwrap().to_owned()
}

/// Asks for a dry run and returns the decision document.
async fn dry_run(h: &Harness, path: &str, key: &str, body: &str) -> Reply {
    let req = h
        .request(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("prefer", "dry-run")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn devices_versions_and_conditions_decide_through_http() {
    let h = harness(&format!(
        "  - name: rooms-only\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    devices: [\"{DEVICE}\"]\n    api_versions: [v1.0]\n    when:\n      - param: deviceAccountEmail\n        suffix: \"@contoso.com\"\n      - param: passwordRotationEnabled\n        equals: true\n      - param: deviceAccount.password\n        present: true\n"
    ))
    .await;
    assert_eq!(h.call().await.status, 204);
    let d = dry_run(&h, ACTION_PATH, ROTATOR_KEY, &body()).await;
    assert_eq!(d.json()["rule"], "rooms-only");

    let other_device = h
        .post(&device_path(OTHER_DEVICE), Some(ROTATOR_KEY), &body())
        .await;
    other_device.assert_graph_error(403, "accessDenied");
    assert!(
        message(&other_device).contains("no policy rule allows caller 'rooms-rotator'"),
        "{}",
        message(&other_device)
    );
    h.post(
        &ACTION_PATH.replace("/v1.0/", "/beta/"),
        Some(ROTATOR_KEY),
        &body(),
    )
    .await
    .assert_graph_error(403, "accessDenied");
    h.post(
        ACTION_PATH,
        Some(ROTATOR_KEY),
        &body().replace(
            "room1@contoso.com\",\"exchange",
            "room1@fabrikam.com\",\"exchange",
        ),
    )
    .await
    .assert_graph_error(403, "accessDenied");
    h.post(
        ACTION_PATH,
        Some(ROTATOR_KEY),
        &body().replace(
            "\"passwordRotationEnabled\":true",
            "\"passwordRotationEnabled\":false",
        ),
    )
    .await
    .assert_graph_error(403, "accessDenied");
    h.post(
        ACTION_PATH,
        Some(ROTATOR_KEY),
        &body().replace(&format!("\"password\":\"{PASSWORD}\","), ""),
    )
    .await
    .assert_graph_error(403, "accessDenied");
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "only the allowed call reached Graph"
    );
}

#[tokio::test]
async fn deny_rules_win_and_name_themselves() {
    let h = harness(
        "  - name: rotate-anything\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n  - name: never-that-exchange\n    effect: deny\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: exchangeServer\n        one_of: [evil.example, other.example]\n",
    )
    .await;
    let r = h
        .post(
            ACTION_PATH,
            Some(ROTATOR_KEY),
            &body().replace("outlook.office365.com", "EVIL.example"),
        )
        .await;
    r.assert_graph_error(403, "accessDenied");
    assert_eq!(message(&r), "denied by policy rule 'never-that-exchange'");
    let record = h.audit_records().await.pop().unwrap();
    assert_eq!(record["decision"], "denied");
    assert_eq!(record["rule"], "never-that-exchange");
    assert_eq!(record["params"]["exchangeServer"], "EVIL.example");
    assert_eq!(record["params"]["deviceAccount.password"]["redacted"], true);
    assert_eq!(h.call().await.status, 204);
    // Another caller's refusal never mentions this caller's rules.
    let other = h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await;
    assert!(
        !message(&other).contains("rotate-anything") && !message(&other).contains("never-that"),
        "{}",
        message(&other)
    );
}

#[tokio::test]
async fn shadow_rules_record_without_enforcing() {
    let h = harness(
        "  - name: rotate-anything\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n  - name: soon-require-rotation\n    effect: deny\n    mode: shadow\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: passwordRotationEnabled\n        equals: false\n",
    )
    .await;
    let rotation_off = body().replace(
        "\"passwordRotationEnabled\":true",
        "\"passwordRotationEnabled\":false",
    );
    assert_eq!(
        h.post(ACTION_PATH, Some(ROTATOR_KEY), &rotation_off)
            .await
            .status,
        204,
        "shadow rules do not enforce"
    );
    let d = dry_run(&h, ACTION_PATH, ROTATOR_KEY, &rotation_off)
        .await
        .json();
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["rule"], "rotate-anything");
    assert_eq!(
        d["shadow"],
        serde_json::json!({"decision": "deny", "rule": "soon-require-rotation"})
    );
    assert_eq!(
        dry_run(&h, ACTION_PATH, ROTATOR_KEY, &body()).await.json()["shadow"],
        serde_json::Value::Null
    );
    // The audit records the would-be denial of the forwarded call.
    let records = h.audit_records().await;
    let outcome = records.iter().find(|r| r["kind"] == "outcome").unwrap();
    assert_eq!(outcome["decision"], "shadow_denied");
    assert_eq!(outcome["rule"], "rotate-anything");
    assert_eq!(outcome["shadow_rule"], "soon-require-rotation");
    assert_eq!(outcome["status"], 204);
}

#[tokio::test]
async fn dry_runs_evaluate_everything_and_forward_nothing() {
    let h = harness("  - name: r\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n").await;
    let d = dry_run(&h, ACTION_PATH, ROTATOR_KEY, &body()).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.headers["preference-applied"], "dry-run");
    let doc = d.json();
    assert_eq!(doc["dryRun"], true);
    assert_eq!(doc["caller"], "rooms-rotator");
    assert_eq!(
        doc["operation"],
        "managedDevices.updateWindowsDeviceAccount"
    );
    assert_eq!(
        doc["wouldSend"],
        format!("POST https://graph.microsoft.com{ACTION_PATH}")
    );
    assert_eq!(doc["parameters"]["deviceAccount.password"], "<redacted>");
    assert!(!String::from_utf8_lossy(&d.body).contains(PASSWORD));
    // The query form, and a denied dry run answers exactly what the real call would.
    assert_eq!(
        h.post(
            &format!("{ACTION_PATH}?dry-run=true"),
            Some(ROTATOR_KEY),
            &body()
        )
        .await
        .status,
        200
    );
    dry_run(&h, ACTION_PATH, OTHER_KEY, &body())
        .await
        .assert_graph_error(403, "accessDenied");
    dry_run(&h, ACTION_PATH, ROTATOR_KEY, "{\"bad\":1}")
        .await
        .assert_graph_error(400, "invalidRequest");
    assert!(h.emulator.graph_requests().is_empty());
    assert_eq!(
        h.emulator.token_request_count(),
        1,
        "dry runs fetch no token beyond the one at start"
    );
    let records = h.audit_records().await;
    let decisions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["decision"].as_str())
        .collect();
    assert_eq!(decisions, vec!["dry_run", "dry_run", "denied", "invalid"]);
    assert!(
        records.iter().all(|r| r["kind"] == "request"),
        "no intent: nothing was to be sent"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let text = policy_with_rotator_rate(
        "  - name: r\n    callers: [rooms-rotator, other-service]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    rate_limit: 3 per hour\n",
        "2 per minute",
    );
    let h = start_with(Options {
        policy: Some(text),
        ..Options::default()
    })
    .await;
    assert_eq!(h.call().await.status, 204);
    assert_eq!(h.call().await.status, 204);
    let caller_limited = h.call().await;
    caller_limited.assert_graph_error(429, "activityLimitReached");
    let retry: u64 = caller_limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=30).contains(&retry), "retry after {retry}");
    assert!(message(&caller_limited).contains("caller"));
    // The rule's budget is shared by both callers: one more call spends it.
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204
    );
    let rule_limited = h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await;
    rule_limited.assert_graph_error(429, "activityLimitReached");
    assert!(message(&rule_limited).contains("rule"));
    let retry: u64 = rule_limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1100..=1200).contains(&retry), "retry after {retry}");
    assert_eq!(h.emulator.graph_requests().len(), 3);
    let records = h.audit_records().await;
    let limited: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0]["caller"], "rooms-rotator");
    assert_eq!(limited[1]["rule"], "r");
    assert!(
        limited
            .iter()
            .all(|r| r["status"] == 429 && r["error_code"] == "activityLimitReached")
    );
}

#[tokio::test]
async fn tenant_pacing_answers_429_before_graph_would() {
    let text = format!(
        "{}pacing:\n  tenant_writes: 2 per 20s\n  max_wait_ms: 0\n",
        policy(
            "  - name: r\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n"
        )
    );
    let h = start_with(Options {
        policy: Some(text),
        ..Options::default()
    })
    .await;
    assert_eq!(h.call().await.status, 204);
    assert_eq!(h.call().await.status, 204);
    let paced = h.call().await;
    paced.assert_graph_error(429, "activityLimitReached");
    assert!(
        message(&paced).contains("tenant write pacing"),
        "{}",
        message(&paced)
    );
    assert!(paced.headers.contains_key("retry-after"));
    assert_eq!(h.emulator.graph_requests().len(), 2);
}

#[tokio::test]
async fn mtls_callers_are_identified_by_uri_san_or_cn() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let server = server_ca.server();
    let tls = graphgate::tls::server_config(&graphgate::tls::ServerTls {
        cert_pem: server.cert_pem.clone(),
        key_pem: graphgate::secret::Secret::new(server.key_pem.clone()),
        client_ca_pem: Some(client_ca.pem.clone()),
        client_crl: None,
    })
    .unwrap();
    let rules = "  - name: spiffe-may-rotate\n    callers: [spiffe-svc, cn-svc, rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n";
    let h = start_with(Options {
        policy: Some(policy(rules)),
        tls: Some(tls),
        ..Options::default()
    })
    .await;

    let spiffe = client_ca.client(
        Some("spiffe://corp.example/ns/rooms/sa/rotator"),
        "whatever",
    );
    assert_eq!(
        tls_call(h.gateway, client_config(&server_ca, Some(&spiffe)), None)
            .await
            .unwrap()
            .0,
        204
    );
    let cn = client_ca.client(None, "legacy-rotator.corp.example");
    assert_eq!(
        tls_call(h.gateway, client_config(&server_ca, Some(&cn)), None)
            .await
            .unwrap()
            .0,
        204
    );
    // An API key over TLS without a certificate is fine too.
    assert_eq!(
        tls_call(
            h.gateway,
            client_config(&server_ca, None),
            Some(ROTATOR_KEY)
        )
        .await
        .unwrap()
        .0,
        204
    );

    let (status, body) = tls_call(h.gateway, client_config(&server_ca, None), None)
        .await
        .unwrap();
    assert_eq!(status, 401, "no certificate, no key: {body}");
    let stranger = client_ca.client(Some("spiffe://corp.example/ns/other/sa/x"), "someone");
    let (status, body) = tls_call(h.gateway, client_config(&server_ca, Some(&stranger)), None)
        .await
        .unwrap();
    assert_eq!(status, 401, "unknown identity: {body}");
    assert!(body.contains("does not identify any caller"), "{body}");
    let (status, body) = tls_call(
        h.gateway,
        client_config(&server_ca, Some(&spiffe)),
        Some(ROTATOR_KEY),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "two identities: {body}");
    assert!(body.contains("exactly one"), "{body}");
    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.client(
        Some("spiffe://corp.example/ns/rooms/sa/rotator"),
        "whatever",
    );
    assert!(
        tls_call(h.gateway, client_config(&server_ca, Some(&rogue)), None)
            .await
            .is_err(),
        "a certificate from an unknown CA fails the handshake"
    );
    assert_eq!(h.emulator.graph_requests().len(), 3);
}

#[tokio::test]
async fn reloads_take_effect_without_failing_requests_and_bad_files_are_kept_out() {
    let dir = std::env::temp_dir().join(format!("graphgate-reload-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    // The load below is unbounded: with Intune's pacing (200 writes per 20 s) an idle machine
    // sends more than that before the reloads are done and is paced (429), which is not what
    // this test is about.
    let before = policy(
        "  - name: rotator\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    ) + UNPACED;
    std::fs::write(&path, &before).unwrap();
    let h = Arc::new(
        start_with(Options {
            policy: Some(before),
            ..Options::default()
        })
        .await,
    );
    let (reloader, mut status) = graphgate::reload::Reloader::new(path.clone(), Arc::clone(&h.gw));
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(reloader.run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.watching))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        403
    );

    // Concurrent load from the allowed caller throughout.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (h, running) = (Arc::clone(&h), Arc::clone(&running));
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = h.call().await;
                    assert_eq!(r.status, 204, "{:?}", r.body);
                    n += 1;
                }
                n
            })
        })
        .collect();

    let after = policy(
        "  - name: rotator\n    callers: [rooms-rotator, other-service]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    ) + UNPACED;
    std::fs::write(&path, &after).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.attempts >= 1 && s.last_error.is_none() && s.failures == 0),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204,
        "the new rule is in force"
    );

    let reloads = crate::common::metrics::Snapshot::now();
    std::fs::write(
        &path,
        "version: 1\nrules:\n  - name: typo\n    calers: []\n",
    )
    .unwrap();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.failures >= 1),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let err = seen.last_error.expect("the failed reload is visible");
    assert!(err.to_string().contains("calers"), "{err}");
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(
        !ready,
        "not the policy the operator wrote: not ready until it is fixed: {detail}"
    );
    assert_eq!(detail["checks"]["policy"]["ok"], false, "{detail}");
    assert_eq!(
        detail["checks"]["policy"]["reloader"], "running",
        "{detail}"
    );
    let shown = detail["checks"]["policy"]["last_reload_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(shown.contains("calers") && shown.contains(":4:"), "{shown}");
    // Counted (>=: other tests' reloads share the process-wide registry).
    let errors = r#"graphgate_policy_reloads_total{result="error"}"#;
    assert!(reloads.delta(&crate::common::metrics::Snapshot::now(), errors) >= 1.0);
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204,
        "the previous policy stays in force"
    );

    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for l in load {
        total += l.await.unwrap();
    }
    assert!(total > 0);
    let _ = stop.send(true);
}

/// Tenant write pacing with room for unbounded load (the policies of this file have none, so
/// Intune's 200 writes per 20 s would apply).
const UNPACED: &str = "pacing:\n  tenant_writes: 10000 per 1s\n";

fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("graphgate-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn unchanged_content_is_never_recompiled_and_a_reverted_file_clears_the_error() {
    use graphgate::reload::{Reloaded, Reloader, Trigger};
    let dir = temp_dir("unchanged");
    let path = dir.join("policy.yaml");
    let before = policy(
        "  - name: rotator\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    );
    std::fs::write(&path, &before).unwrap();
    let h = start_with(Options {
        policy: Some(before.clone()),
        ..Options::default()
    })
    .await;
    let (mut reloader, status) = Reloader::new(path.clone(), Arc::clone(&h.gw));
    let installed = h.gw.installed();

    // Same bytes, rewritten or not, on SIGHUP or on a file event: nothing compiled or installed.
    let reloads = crate::common::metrics::Snapshot::now();
    assert_eq!(
        reloader.reload(Trigger::Hangup).await.unwrap(),
        Reloaded::Unchanged
    );
    std::fs::write(&path, &before).unwrap();
    assert_eq!(
        reloader.reload(Trigger::FileChange).await.unwrap(),
        Reloaded::Unchanged
    );
    assert!(
        Arc::ptr_eq(&installed, &h.gw.installed()),
        "the policy was not replaced"
    );
    assert_eq!(
        (status.borrow().attempts, status.borrow().unchanged),
        (0, 2)
    );
    // Counted as such (>=: other tests' reloads share the process-wide registry).
    let unchanged = r#"graphgate_policy_reloads_total{result="unchanged"}"#;
    let counted = reloads.delta(&crate::common::metrics::Snapshot::now(), unchanged);
    assert!(counted >= 2.0, "{counted} unchanged reloads counted");

    // A new file is compiled once; reading it again is not another compile.
    let after = policy(
        "  - name: rotator\n    callers: [rooms-rotator, other-service]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    );
    std::fs::write(&path, &after).unwrap();
    assert_eq!(
        reloader.reload(Trigger::FileChange).await.unwrap(),
        Reloaded::Installed
    );
    let installed = h.gw.installed();
    assert_eq!(
        installed.policy.hash,
        graphgate::policy::version_hash(after.as_bytes())
    );
    assert_eq!(
        reloader.reload(Trigger::Hangup).await.unwrap(),
        Reloaded::Unchanged
    );
    assert!(Arc::ptr_eq(&installed, &h.gw.installed()));

    // A broken file fails once; the same broken bytes are not compiled again, and the
    // failure stands until the file changes.
    std::fs::write(
        &path,
        "version: 1\nrules:\n  - name: typo\n    calers: []\n",
    )
    .unwrap();
    assert!(reloader.reload(Trigger::FileChange).await.is_err());
    assert_eq!(
        reloader.reload(Trigger::Hangup).await.unwrap(),
        Reloaded::Unchanged
    );
    assert_eq!(status.borrow().failures, 1);
    assert!(status.borrow().last_error.is_some());
    assert!(h.gw.reload_error().is_some());

    // Putting back the policy in force needs no compile, and clears the failure.
    std::fs::write(&path, &after).unwrap();
    assert_eq!(
        reloader.reload(Trigger::FileChange).await.unwrap(),
        Reloaded::InForce
    );
    assert!(Arc::ptr_eq(&installed, &h.gw.installed()));
    assert!(status.borrow().last_error.is_none());
    assert!(h.gw.reload_error().is_none());
    assert_eq!(
        (
            status.borrow().attempts,
            status.borrow().failures,
            status.borrow().unchanged
        ),
        (3, 1, 4)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded_amid_audit_writes() {
    use std::os::unix::fs::symlink;
    let dir = temp_dir("configmap");
    let path = dir.join("policy.yaml");
    let before = policy(
        "  - name: rotator\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    );
    // What kubelet mounts: policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>.
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/policy.yaml"), &before).unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/policy.yaml", &path).unwrap();
    let h = start_with(Options {
        policy: Some(before),
        ..Options::default()
    })
    .await;
    let (reloader, mut status) = graphgate::reload::Reloader::new(path.clone(), Arc::clone(&h.gw));
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(reloader.run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, status.wait_for(|s| s.watching))
        .await
        .unwrap()
        .unwrap();

    // An audit log next to the policy, written busily (the watch ignores it; see the
    // reload module's unit tests for that in isolation).
    for i in 0..50 {
        std::fs::write(dir.join("audit.jsonl"), format!("{{\"n\":{i}}}\n")).unwrap();
    }
    // Then kubelet's atomic swap to new content.
    let after = policy(
        "  - name: rotator\n    callers: [rooms-rotator, other-service]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    );
    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/policy.yaml"), &after).unwrap();
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let seen = tokio::time::timeout(deadline, status.wait_for(|s| s.attempts >= 1))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(seen.last_error.is_none(), "{:?}", seen.last_error);
    assert_eq!(
        seen.policy_hash,
        graphgate::policy::version_hash(after.as_bytes())
    );
    assert_eq!(h.gw.policy_hash(), seen.policy_hash);
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204,
        "the swapped-in rule is in force"
    );
    let _ = stop.send(true);
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_simplified_api_sends_the_exact_graph_body_and_gets_the_same_decision() {
    let h = harness("  - name: rooms\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - param: deviceAccount.@odata.type\n        equals: \"#microsoft.graph.windowsDeviceAzureADAccount\"\n").await;
    let simple_path = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    let flat = format!(
        r#"{{"deviceAccountEmail":"room1@contoso.com","password":"{PASSWORD}","passwordRotationEnabled":true,"calendarSyncEnabled":true,"exchangeServer":"outlook.office365.com","sessionInitiationProtocolAddress":"sip:room1@contoso.com","accountType":"azureAD","userPrincipalName":"room1@contoso.com"}}"#
    );
    let simple_dry = dry_run(&h, &simple_path, ROTATOR_KEY, &flat).await.json();
    let graph_dry = dry_run(&h, ACTION_PATH, ROTATOR_KEY, &body()).await.json();
    assert_eq!(simple_dry["rule"], graph_dry["rule"]);
    assert_eq!(
        simple_dry["parameters"], graph_dry["parameters"],
        "same parameters, so the same decision"
    );

    assert_eq!(
        h.post(&simple_path, Some(ROTATOR_KEY), &flat).await.status,
        204
    );
    assert_eq!(h.call().await.status, 204);
    let sent = h.emulator.graph_requests();
    assert_eq!(sent[0].path, ACTION_PATH);
    let simple_body: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    let graph_body: serde_json::Value = serde_json::from_str(&sent[1].body).unwrap();
    assert_eq!(
        simple_body, graph_body,
        "the simplified request becomes exactly the SDK's Graph body"
    );
    assert_eq!(
        sent[0].status, 204,
        "and the emulator's schema check accepts it"
    );

    // A plain account (no accountType) is not allowed by the condition.
    let plain = flat.replace(
        ",\"accountType\":\"azureAD\",\"userPrincipalName\":\"room1@contoso.com\"",
        "",
    );
    h.post(&simple_path, Some(ROTATOR_KEY), &plain)
        .await
        .assert_graph_error(403, "accessDenied");
    let unknown = h
        .post(
            &simple_path,
            Some(ROTATOR_KEY),
            &flat.replace(
                "sessionInitiationProtocolAddress",
                "sessionInitiationProtocalAddress",
            ),
        )
        .await;
    unknown.assert_graph_error(400, "invalidRequest");
    assert!(
        message(&unknown).contains("sessionInitiationProtocalAddress"),
        "{}",
        message(&unknown)
    );
    let missing = h
        .post(
            &simple_path,
            Some(ROTATOR_KEY),
            r#"{"deviceAccountEmail":"a@b.c"}"#,
        )
        .await;
    missing.assert_graph_error(400, "invalidRequest");
    assert!(message(&missing).contains("password"));
    assert_eq!(h.emulator.graph_requests().len(), 2);

    let doc = h
        .send(
            http::Request::get(format!("http://{}/api/v1/openapi.json", h.gateway))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.0.3");
    assert!(
        doc.json()["paths"]["/api/v1/managedDevices/{managedDeviceId}/updateWindowsDeviceAccount"]
            ["post"]
            .is_object()
    );
}
