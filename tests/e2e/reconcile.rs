//! Outcome reconciliation against the emulator's device model: an accepted action that
//! completes, one that fails, one on a platform that does not offer it (Graph refuses it, so
//! there is nothing to follow up), one still pending at the deadline, and a gateway restart
//! between the call and its completion. Each ends in the audit log as a `completion` record
//! carrying the call's audit id, and `audit query` shows the state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use crate::common::metrics::Snapshot;
use crate::common::*;
use graphgate::audit::reconcile::{READ_PERMISSION, ReconcileConfig};
use graphgate_emulator::{ActionOutcome, ActionState, DEMO_IOS_DEVICE_ID, EmulatorConfig};
use serde_json::Value;

const ACTION: &str = "updateWindowsDeviceAccount";

fn emulator(completion: Duration, outcomes: Vec<ActionOutcome>, read: bool) -> EmulatorConfig {
    let mut config = EmulatorConfig {
        action_completion: completion,
        action_outcomes: outcomes,
        ..EmulatorConfig::default()
    };
    if read {
        config.apps[0].roles.push(READ_PERMISSION.into());
    }
    config
}

async fn gateway(emulator: EmulatorConfig, deadline: Duration) -> Harness {
    start_with(Options {
        emulator,
        reconcile: Some(ReconcileConfig { deadline }),
        ..Options::default()
    })
    .await
}

/// Calls the action on `device`; returns Graph's status and the call's audit id.
async fn call_on(h: &Harness, device: &str) -> (u16, String) {
    let r = h
        .post(
            &ACTION_PATH.replace(DEVICE, device),
            Some(ROTATOR_KEY),
            &body(),
        )
        .await;
    let id = r.headers["x-graphgate-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (r.status.as_u16(), id)
}

/// Makes the standard call through a served gateway; returns its audit id.
async fn accepted_on(gw: &served::Served) -> String {
    let r = gw.call().await;
    assert_eq!(r.status, 204);
    r.headers["x-graphgate-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for the `completion` record of `audit_id` in `log`.
async fn completion(log: &Path, audit_id: &str, within: Duration) -> Value {
    let find = || {
        records(log)
            .into_iter()
            .find(|r| r["kind"] == "completion" && r["audit_id"] == audit_id)
    };
    tokio::time::timeout(within, async {
        loop {
            if let Some(r) = find() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no completion record for {audit_id}: {:#?}", records(log)))
}

fn device_reads(h: &Harness, device: &str) -> usize {
    h.emulator
        .graph_requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.contains(device) && r.path.contains("deviceActionResults")
        })
        .count()
}

#[tokio::test]
async fn an_action_that_completes_gets_a_done_completion_shown_by_audit_query() {
    let h = gateway(
        emulator(Duration::from_secs(1), vec![], true),
        Duration::from_secs(30),
    )
    .await;
    let (status, id) = call_on(&h, DEVICE).await;
    assert_eq!(status, 204);
    let log = h.audit_path.clone().unwrap();
    let done = completion(&log, &id, Duration::from_secs(30)).await;
    assert_eq!(done["completion"], "done", "{done}");
    assert_eq!(done["device_id"], DEVICE);
    assert_eq!(done["operation"], format!("managedDevices.{ACTION}"));
    assert_eq!(done["caller"], "rooms-rotator");
    assert!(
        done["note"]
            .as_str()
            .unwrap()
            .contains(&format!("{ACTION} done")),
        "{done}"
    );
    assert!(
        device_reads(&h, DEVICE) >= 1,
        "it read the device's deviceActionResults"
    );
    // The read permission is part of what the gateway needs now, and it was granted.
    let privilege = h.gw.least_privilege().unwrap();
    assert!(
        privilege.missing.is_empty() && privilege.excess.is_empty(),
        "{privilege:?}"
    );
    // audit query shows the state on the action's row; the chain still verifies.
    h.audit.flush().await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graphgate"))
        .args(["audit", "query", log.to_str().unwrap(), "--request-id", &id])
        .args(["--format", "wide"])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("COMPLETION"),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains(&id)).unwrap();
    assert!(row.contains(" done "), "{table}");
    assert!(
        graphgate::audit::read::verify::verify(&[log])
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn an_action_that_fails_gets_a_failed_completion() {
    let outcomes = vec![ActionOutcome {
        device: Some(DEVICE.into()),
        action: Some(ACTION.into()),
        state: ActionState::Failed,
    }];
    let h = gateway(
        emulator(Duration::from_secs(1), outcomes, true),
        Duration::from_secs(30),
    )
    .await;
    let (status, id) = call_on(&h, DEVICE).await;
    assert_eq!(status, 204);
    let failed = completion(&h.audit_path.clone().unwrap(), &id, Duration::from_secs(30)).await;
    assert_eq!(failed["completion"], "failed", "{failed}");
    assert!(
        failed["note"].as_str().unwrap().contains("failed"),
        "{failed}"
    );
}

#[tokio::test]
async fn an_action_on_a_platform_without_it_is_refused_and_not_followed_up() {
    let h = gateway(
        emulator(Duration::from_secs(1), vec![], true),
        Duration::from_secs(30),
    )
    .await;
    let (status, refused) = call_on(&h, DEMO_IOS_DEVICE_ID).await;
    assert_eq!(
        status, 400,
        "Graph refuses updateWindowsDeviceAccount on iOS"
    );
    // A later accepted call is followed up to its end; the refused one, queued before it if
    // at all, never was.
    let (_, accepted) = call_on(&h, DEVICE).await;
    let log = h.audit_path.clone().unwrap();
    completion(&log, &accepted, Duration::from_secs(30)).await;
    assert!(
        !records(&log)
            .iter()
            .any(|r| r["kind"] == "completion" && r["audit_id"] == refused.as_str())
    );
    assert_eq!(device_reads(&h, DEMO_IOS_DEVICE_ID), 0);
    let outcome = records(&log)
        .into_iter()
        .find(|r| r["kind"] == "outcome" && r["audit_id"] == refused.as_str())
        .unwrap();
    assert_eq!(outcome["upstream_status"], 400);
}

#[tokio::test]
async fn an_action_still_pending_at_the_deadline_is_recorded_and_counted_overdue() {
    const OVERDUE: &str = r#"graphgate_reconcile_actions{state="overdue"}"#;
    let outcomes = vec![ActionOutcome {
        device: Some(DEVICE.into()),
        action: None,
        state: ActionState::Pending,
    }];
    // The app lacks the read permission: the least-privilege check names it.
    let h = gateway(
        emulator(Duration::from_secs(1), outcomes, false),
        Duration::from_secs(2),
    )
    .await;
    let (status, id) = call_on(&h, DEVICE).await;
    assert_eq!(status, 204);
    let late = completion(&h.audit_path.clone().unwrap(), &id, Duration::from_secs(30)).await;
    assert_eq!(late["completion"], "pending_past_deadline", "{late}");
    assert!(late["note"].as_str().unwrap().contains("pending"), "{late}");
    assert!(Snapshot::now().get(OVERDUE) >= 1.0, "{}", Snapshot::now().0);
    let privilege = h.gw.least_privilege().unwrap();
    assert!(
        privilege.missing.iter().any(|p| p == READ_PERMISSION),
        "{privilege:?}"
    );
}

#[tokio::test]
async fn a_restart_between_the_call_and_its_completion_loses_nothing() {
    let backend = served::backend(emulator(Duration::from_secs(3), vec![], true)).await;
    let serve = || {
        let mut cmd = backend.serve_command();
        cmd.args(["--reconcile-outcomes", "--reconcile-deadline-secs", "60"]);
        cmd
    };
    let gw = backend.serve(serve()).await;
    let id = accepted_on(&gw).await;
    // Stopped before the device carried it out (3 s).
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    let log = backend.dir.join("audit.jsonl");
    assert!(
        !records(&log).iter().any(|r| r["kind"] == "completion"),
        "not done yet"
    );
    // The next start finds the action in the log and follows it up.
    let gw = backend.serve(serve()).await;
    let done = completion(&log, &id, Duration::from_secs(30)).await;
    assert_eq!(done["completion"], "done", "{done}");
    let starts = records(&log)
        .iter()
        .filter(|r| r["kind"] == "start")
        .count();
    assert_eq!(starts, 2, "written after the restart");
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

/// A hostile Graph: an answer past the forwarding path's size cap is refused unread (the
/// read fails, and is retried), and Graph's strings reach a completion's note clipped.
#[tokio::test]
async fn a_hostile_graph_answer_is_bounded_in_size_and_in_the_note() {
    let backend = served::backend(emulator(Duration::from_secs(1), vec![], true)).await;
    let result = |updated: String| {
        serde_json::json!([{
            "actionName": ACTION,
            "actionState": "done",
            "startDateTime": null,
            "lastUpdatedDateTime": updated,
        }])
    };
    // 2 MiB: over the 1 MiB every Graph answer is held to.
    let huge = result("9".repeat(2 * 1024 * 1024));
    backend.emulator.set_action_results_answer(Some(huge));
    let mut cmd = backend.serve_command();
    cmd.args(["--reconcile-outcomes", "--reconcile-deadline-secs", "60"]);
    let mut gw = backend.serve(cmd).await;
    let id = accepted_on(&gw).await;
    let refused = gw
        .proc
        .stdout
        .wait_for_async(Duration::from_secs(30), |l| {
            l.contains("could not read the device's action results")
                && l.contains("an answer larger than 1048576 bytes")
        })
        .await;
    assert!(refused.is_some(), "{}", gw.proc.stdout.text());
    let polls = gw.metrics().await;
    assert!(
        metrics::value(&polls, "graphgate_reconcile_polls_total{result=\"error\"}") >= 1.0,
        "{polls}"
    );
    // 100 KB of text in one field: the completion is written, its note a short line.
    backend
        .emulator
        .set_action_results_answer(Some(result("9".repeat(100_000))));
    let log = backend.dir.join("audit.jsonl");
    let done = completion(&log, &id, Duration::from_secs(30)).await;
    assert_eq!(done["completion"], "done", "{done}");
    let note = done["note"].as_str().unwrap();
    assert!(note.chars().count() < 300, "{} chars", note.len());
    assert!(
        note.contains("updated 9999") && note.contains('…'),
        "{note}"
    );
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

/// The documented pace (at most 5 device reads a second whatever is due; each device first
/// read 1 s after the call, then at most every quarter of the deadline, here clamped to 1 s)
/// and the late completion: an action past its deadline gets `pending_past_deadline`, is
/// still read, and gets its final state when it comes.
#[tokio::test]
async fn reads_keep_the_documented_pace_and_a_late_action_gets_its_final_state() {
    use graphgate_emulator::{DEMO_DEVICE_IDS, EmulatedDevice, OperatingSystem};
    let mut config = emulator(Duration::from_secs(4), vec![], true);
    let devices: Vec<String> = DEMO_DEVICE_IDS
        .iter()
        .map(|d| (*d).to_owned())
        .chain([
            "6bc2f374-7a81-4293-a4b5-66778899aabb".to_owned(),
            "7cd3a485-8b92-43a4-b5c6-778899aabbcc".to_owned(),
        ])
        .collect();
    for extra in &devices[DEMO_DEVICE_IDS.len()..] {
        config
            .devices
            .push(EmulatedDevice::new(extra.clone(), OperatingSystem::Windows));
    }
    // Six devices due every second: more than the 5 reads a second allowed.
    let h = gateway(config, Duration::from_secs(2)).await;
    let mut ids = Vec::new();
    for device in &devices {
        let (status, id) = call_on(&h, device).await;
        assert_eq!(status, 204);
        ids.push(id);
    }
    let log = h.audit_path.clone().unwrap();
    for id in &ids {
        let done = completion_in(&log, id, "done", Duration::from_secs(60)).await;
        assert!(done["note"].as_str().unwrap().contains(" done "), "{done}");
    }
    // Late: each action got pending_past_deadline first, then its final state.
    let records = records(&log);
    for id in &ids {
        let states: Vec<&str> = records
            .iter()
            .filter(|r| r["kind"] == "completion" && r["audit_id"] == id.as_str())
            .map(|r| r["completion"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["pending_past_deadline", "done"], "{id}");
    }
    // The pace, as Graph saw it: no six reads within one second (a slow machine only
    // spreads them further), and no device read before 1 s had passed since its call.
    let requests = h.emulator.graph_requests();
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("deviceActionResults"))
        .collect();
    assert!(reads.len() >= 2 * devices.len(), "{} reads", reads.len());
    let mut times: Vec<_> = reads.iter().map(|r| r.answered).collect();
    times.sort();
    for six in times.windows(6) {
        let span = six[5] - six[0];
        assert!(
            span >= Duration::from_millis(900),
            "six reads within {span:?}"
        );
    }
    for device in &devices {
        let call = requests
            .iter()
            .find(|r| r.method == "POST" && r.path.contains(device.as_str()))
            .unwrap()
            .answered;
        let first = reads
            .iter()
            .find(|r| r.path.contains(device.as_str()))
            .unwrap()
            .answered;
        assert!(
            first - call >= Duration::from_millis(950),
            "{device}: {:?}",
            first - call
        );
    }
}

/// Waits (bounded) for the `completion` record of `audit_id` in `log` with this state.
async fn completion_in(log: &Path, audit_id: &str, state: &str, within: Duration) -> Value {
    let find = || {
        records(log).into_iter().find(|r| {
            r["kind"] == "completion" && r["audit_id"] == audit_id && r["completion"] == state
        })
    };
    crate::common::eventually(&format!("{state} for {audit_id}"), within, async || find()).await
}
