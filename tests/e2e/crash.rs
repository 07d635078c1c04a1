//! Crash safety: SIGKILL the gateway in the middle of a concurrent load of allowed
//! privileged calls. Every call that got a 2xx has its intent in the log, and the log
//! verifies up to a possibly torn tail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::process::{BIN, Proc, run_async};

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use graphgate_emulator::DEMO_DEVICE_IDS;
use graphgate_emulator::demo::DEMO_API_KEY;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BODY: &str = r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"Crash-Passw0rd-77","userPrincipalName":"room1@contoso.com"},"deviceAccountEmail":"room1@contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true,"calendarSyncEnabled":true,"sessionInitiationProtocalAddress":"sip:room1@contoso.com"}}"##;

/// Longest wait for the load to reach 150 acknowledgements (seconds on an idle machine).
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for one answer: a gateway that stops answering ends the worker, not the test run.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_intent() {
    let dir = std::env::temp_dir().join(format!("graphgate-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let mut child = Proc::spawn(
        Command::new(BIN)
            .args(["serve", "--emulator", "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--audit-log"])
            .arg(&log)
            .env("RUST_LOG", "warn")
            .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE"),
    );
    let banner = child
        .stderr
        .wait_for_async(Duration::from_secs(30), |l| {
            l.starts_with("graphgate is listening on http://")
        })
        .await
        .unwrap_or_else(|| panic!("the gateway did not start:\n{}", child.stderr.text()));
    let addr = banner
        .strip_prefix("graphgate is listening on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let url = format!(
        "http://{addr}/v1.0/deviceManagement/managedDevices/{}/updateWindowsDeviceAccount",
        DEMO_DEVICE_IDS[0]
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let (enough_tx, mut enough) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, acked, enough_tx) = (
                client.clone(),
                url.clone(),
                Arc::clone(&acked),
                enough_tx.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let req = Request::post(&url)
                        .header("authorization", format!("Bearer {DEMO_API_KEY}"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                        .unwrap();
                    // Refused, reset or no answer in time: the gateway is gone (or stuck).
                    let Ok(Ok(resp)) =
                        tokio::time::timeout(ANSWER_TIMEOUT, client.request(req)).await
                    else {
                        return;
                    };
                    if resp.status().is_success() {
                        let id = resp.headers()["x-graphgate-request-id"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let mut acked = acked.lock().unwrap();
                        acked.insert(id);
                        if acked.len() >= 150 {
                            let _ = enough_tx.send(true);
                        }
                    }
                }
            })
        })
        .collect();
    // Only the workers hold senders now: if they all end (the gateway died early), the wait
    // ends with an error instead of hanging.
    drop(enough_tx);
    match tokio::time::timeout(LOAD_TIMEOUT, enough.wait_for(|e| *e)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => panic!(
            "every worker stopped before 150 acknowledgements (the gateway died?):\n{}",
            child.stderr.text()
        ),
        Err(_) => panic!("fewer than 150 acknowledgements within {LOAD_TIMEOUT:?}"),
    }
    // SIGKILL while the workers are still sending.
    child.signal("KILL");
    let (_, _child) = child.wait_exit_async(Duration::from_secs(30)).await;
    for w in workers {
        tokio::time::timeout(ANSWER_TIMEOUT * 2, w)
            .await
            .expect("a worker outlived the gateway")
            .unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let text = std::fs::read_to_string(&log).unwrap();
    let intents: HashSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "intent")
        .map(|r| r["audit_id"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = acked.difference(&intents).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged calls without an intent: {missing:?}",
        missing.len()
    );
    assert!(acked.len() >= 150);

    let mut verify = Command::new(BIN);
    verify
        .args(["audit", "verify", "--hmac-key-file"])
        .arg(dir.join("hmac.key"))
        .arg(&log);
    let (status, report, _) = run_async(verify, Duration::from_secs(60)).await;
    assert!(status.success(), "{report}");
    assert!(report.contains("hash chain intact"), "{report}");
    assert!(!text.contains("Crash-Passw0rd-77"));
}
