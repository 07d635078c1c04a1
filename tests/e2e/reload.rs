//! Hot reload through the real gateway: only a complete policy file is ever read, a reload
//! that fails (an invalid number included) keeps the old policy and fails readiness, so does
//! a reloader that is gone, and requests in flight finish under the policy they started
//! with. (SIGHUP to a real process is in `operator`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use graphgate::identity::api_key_sha256;
use graphgate::policy::version_hash;
use graphgate::reload::{ReloadStatus, Reloaded, Reloader, Trigger};
use graphgate_emulator::{Fault, Faults};
use tokio::sync::watch;

/// Every wait in this module ends by then.
const WAIT: Duration = Duration::from_secs(10);
const DEVICE_B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

/// Both callers, then `rules`.
fn policy(rules: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n  - name: other-service\n    api_key_sha256: \"{}\"\nrules:\n{rules}",
        api_key_sha256(ROTATOR_KEY),
        api_key_sha256(OTHER_KEY)
    )
}

/// A rule letting `caller` update device accounts, on `devices` if given.
fn rule(name: &str, caller: &str, devices: Option<&str>) -> String {
    let devices = devices.map_or_else(String::new, |d| format!("    devices: [\"{d}\"]\n"));
    format!(
        "  - name: {name}\n    callers: [{caller}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n{devices}"
    )
}

fn on_device(device: &str) -> String {
    format!("/v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount")
}

/// A gateway serving `text`, read from a file in a fresh directory, and that file's path.
async fn gateway_with_policy_file(text: &str) -> (Harness, std::path::PathBuf) {
    let path = temp_dir("reload").join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    let h = start_with(Options {
        policy: Some(text.to_owned()),
        ..Options::default()
    })
    .await;
    (h, path)
}

/// Runs a reloader for `path` until the harness's test ends; returns once it watches.
async fn run_reloader(h: &Harness, path: &Path) -> watch::Receiver<ReloadStatus> {
    let (reloader, mut status) = Reloader::new(path.to_path_buf(), Arc::clone(&h.gw));
    tokio::spawn(reloader.run(std::future::pending()));
    wait(&mut status, |s| s.watching).await;
    status
}

async fn wait(status: &mut watch::Receiver<ReloadStatus>, done: impl FnMut(&ReloadStatus) -> bool) {
    tokio::time::timeout(WAIT, status.wait_for(done))
        .await
        .expect("the reload status changed in time")
        .unwrap();
}

/// Replaces the file at `path` the safe way: a whole new file renamed over it.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_policy_written_in_two_halves_never_lets_the_restricted_caller_through() {
    // other-service may act on device A only. The edit adds a rule before its rule, so the
    // first half ends just before the line that restricts it: on its own, a valid policy
    // letting other-service act on any device.
    let before = policy(&rule("other-on-a", "other-service", Some(DEVICE)));
    let after = policy(&format!(
        "{}{}",
        rule("rotator-anywhere", "rooms-rotator", None),
        rule("other-on-a", "other-service", Some(DEVICE))
    ));
    let cut = after.rfind("    devices:").unwrap();
    let (h, path) = gateway_with_policy_file(&before).await;
    let mut status = run_reloader(&h, &path).await;
    assert_eq!(
        h.post(&on_device(DEVICE_B), Some(OTHER_KEY), &body())
            .await
            .status,
        403
    );

    // An editor writing in place: truncate, the first half, and a pause (the file stays
    // open) until the watcher has seen the writes.
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&after.as_bytes()[..cut]).unwrap();
    wait(&mut status, |s| s.incomplete_writes >= 1).await;
    let r = h.post(&on_device(DEVICE_B), Some(OTHER_KEY), &body()).await;
    r.assert_graph_error(403, "accessDenied");
    assert_eq!(status.borrow().attempts, 0, "nothing was read");
    assert_eq!(h.gw.policy_hash(), version_hash(before.as_bytes()));

    // The second half, and the writer closes the file: now it is read, whole.
    file.write_all(&after.as_bytes()[cut..]).unwrap();
    drop(file);
    wait(&mut status, |s| s.attempts >= 1).await;
    let seen = status.borrow().clone();
    assert!(seen.last_error.is_none(), "{:?}", seen.last_error);
    assert_eq!(seen.failures, 0, "no half file was ever compiled");
    assert_eq!(seen.policy_hash, version_hash(after.as_bytes()));
    assert_eq!(h.gw.policy_hash(), seen.policy_hash);
    let r = h.post(&on_device(DEVICE_B), Some(OTHER_KEY), &body()).await;
    r.assert_graph_error(403, "accessDenied");
    assert_eq!(
        h.post(&on_device(DEVICE), Some(OTHER_KEY), &body())
            .await
            .status,
        204
    );
    assert_eq!(
        h.call().await.status,
        204,
        "the edit's new rule is in force"
    );
    let devices: Vec<String> = h
        .emulator
        .graph_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        devices.iter().all(|p| !p.contains(DEVICE_B)),
        "nothing reached Graph for device B: {devices:?}"
    );
}

#[tokio::test]
async fn a_huge_rate_window_is_refused_by_reload_and_fails_readiness_until_fixed() {
    let allowed = policy(&rule("other-anywhere", "other-service", None));
    let (h, path) = gateway_with_policy_file(&allowed).await;
    let mut status = run_reloader(&h, &path).await;
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(ready, "{detail}");
    assert_eq!(detail["checks"]["policy"]["reloader"], "running");

    // The file: once accepted, then a panic inside the reload task.
    let huge = allowed.replace(
        "  - name: other-service\n",
        "  - name: other-service\n    rate_limit: 1 per 18446744073709551615s\n",
    );
    replace_atomically(&path, &huge);
    wait(&mut status, |s| s.failures >= 1).await;
    let error = status.borrow().last_error.clone().unwrap().to_string();
    assert!(
        error.contains("policy.yaml:6:17:") && error.contains("longer than a day"),
        "{error}"
    );
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(!ready, "{detail}");
    let shown = &detail["checks"]["policy"];
    assert_eq!(shown["ok"], false, "{detail}");
    assert!(
        shown["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("longer than a day")),
        "{detail}"
    );
    assert_eq!(shown["version"], version_hash(allowed.as_bytes()));
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204,
        "the previous policy stays in force"
    );

    // The reloader lives on: the next file, revoking other-service, is applied.
    let revoked = policy(&rule("rotator-only", "rooms-rotator", None));
    replace_atomically(&path, &revoked);
    wait(&mut status, |s| s.attempts >= 2).await;
    assert!(status.borrow().last_error.is_none());
    h.post(ACTION_PATH, Some(OTHER_KEY), &body())
        .await
        .assert_graph_error(403, "accessDenied");
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(ready, "fixed: ready again: {detail}");
    assert_eq!(
        detail["checks"]["policy"]["last_reload_error"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn readiness_fails_when_the_reloader_is_gone() {
    let text = policy(&rule("rotator-anywhere", "rooms-rotator", None));
    let (h, path) = gateway_with_policy_file(&text).await;
    // The gateway follows its policy file from the start, as `serve` does.
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(ready, "{detail}");
    assert_eq!(detail["checks"]["policy"]["reloader"], "running");

    // Readiness follows the reloader made last.
    let (reloader, mut status) = Reloader::new(path.clone(), Arc::clone(&h.gw));
    let task = tokio::spawn(reloader.run(std::future::pending()));
    wait(&mut status, |s| s.watching).await;
    assert_eq!(
        graphgate::admin::readiness(&h.gw).await.1["checks"]["policy"]["reloader"],
        "running"
    );
    // The task ends as a panic would end it: its reloader dropped mid-run.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let (ready, detail) = graphgate::admin::readiness(&h.gw).await;
    assert!(!ready, "edits would no longer apply: {detail}");
    assert_eq!(detail["checks"]["policy"]["reloader"], "stopped");
    assert_eq!(detail["checks"]["policy"]["ok"], false);
}

#[tokio::test]
async fn requests_in_flight_finish_under_the_policy_they_started_with() {
    let allowed = policy(&rule("rotator-anywhere", "rooms-rotator", None));
    let (h, path) = gateway_with_policy_file(&allowed).await;
    let h = Arc::new(h);
    let (mut reloader, _status) = Reloader::new(path.clone(), Arc::clone(&h.gw));
    // Graph holds the first request long enough for the reload to land meanwhile.
    h.emulator
        .set_faults(Faults::default().with_graph(Fault::slow(Duration::from_secs(5)).times(1)));
    let mut arrivals = h.emulator.graph_received();
    let in_flight = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.call().await })
    };
    tokio::time::timeout(WAIT, arrivals.wait_for(|n| *n >= 1))
        .await
        .expect("the request reached Graph")
        .unwrap();

    // What SIGHUP does, to a policy that no longer allows the rotator.
    let revoked = policy(&rule("other-only", "other-service", None));
    std::fs::write(&path, &revoked).unwrap();
    assert_eq!(
        reloader.reload(Trigger::Hangup).await.unwrap(),
        Reloaded::Installed
    );
    assert!(
        !in_flight.is_finished(),
        "the request is still in flight under the new policy"
    );
    assert_eq!(
        in_flight.await.unwrap().status,
        204,
        "it finishes as allowed"
    );
    h.call().await.assert_graph_error(403, "accessDenied");
    assert_eq!(h.emulator.graph_requests().len(), 1);

    let decided: Vec<(String, String)> = h
        .audit_records()
        .await
        .iter()
        .filter(|r| r["kind"] == "intent" || r["decision"] == "denied")
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or_default().to_owned(),
                r["policy_version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            ("allowed".to_owned(), version_hash(allowed.as_bytes())),
            ("denied".to_owned(), version_hash(revoked.as_bytes())),
        ],
        "each decision is recorded with the policy that made it"
    );
}
