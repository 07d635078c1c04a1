//! `graphgate audit query` and `verify` as an operator runs them, each filter asserted on the
//! command's real output, and the audit side of `serve`'s start-up: the key file's checks,
//! and no `start` record unless every start-up check passed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use graphgate::audit::{Audit, AuditDecision, Entry, Fingerprinter, Kind};

const BIN: &str = env!("CARGO_BIN_EXE_graphgate");
const OP: &str = "managedDevices.updateWindowsDeviceAccount";
const D1: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const D2: &str = "1c7a3e2f-2b3c-4d5e-9f00-112233445566";

fn graphgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("GRAPHGATE_AUDIT_LOG")
        .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE")
        .env_remove("GRAPHGATE_AUDIT_ANCHOR");
    cmd
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A fresh directory with a private random key file.
fn dir_with_key(mode: u32) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("graphgate-auditcli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("hmac.key");
    let hex: String = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().iter().map(|b| format!("{b:02x}")))
        .collect();
    std::fs::write(&key, hex).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    (dir, key)
}

struct Row {
    id: &'static str,
    kind: Kind,
    caller: Option<&'static str>,
    device: Option<&'static str>,
    op: Option<&'static str>,
    decision: Option<AuditDecision>,
    day: u32,
    graph_id: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    use AuditDecision::*;
    let row = |id, kind, caller, device, op, decision, day| Row {
        id,
        kind,
        caller,
        device,
        op,
        decision,
        day,
        graph_id: None,
    };
    vec![
        row("start-1", Kind::Start, None, None, None, None, 19),
        row(
            "id-1",
            Kind::Intent,
            Some("a"),
            Some(D1),
            Some(OP),
            Some(Allowed),
            20,
        ),
        Row {
            graph_id: Some("9f0e8d7c-0000-4000-8000-000000000001"),
            ..row(
                "id-1",
                Kind::Outcome,
                Some("a"),
                Some(D1),
                Some(OP),
                Some(Allowed),
                20,
            )
        },
        row(
            "id-2",
            Kind::Request,
            Some("b"),
            Some(D2),
            Some(OP),
            Some(Denied),
            21,
        ),
        row(
            "id-3",
            Kind::Request,
            Some("a"),
            Some(D2),
            Some("managedDevices.retire"),
            Some(Invalid),
            22,
        ),
        row(
            "id-4",
            Kind::Intent,
            Some("a"),
            Some(D1),
            Some(OP),
            Some(Allowed),
            23,
        ),
        row(
            "id-5",
            Kind::Request,
            None,
            None,
            None,
            Some(Unauthenticated),
            24,
        ),
    ]
}

/// A closed log holding [`rows`], and its key.
async fn log() -> (PathBuf, PathBuf) {
    let (dir, key) = dir_with_key(0o600);
    let path = dir.join("audit.jsonl");
    let audit = Audit::open(&path, 1 << 30, Fingerprinter::from_file(&key).unwrap()).unwrap();
    for r in rows() {
        let entry = Entry {
            kind: Some(r.kind),
            time: format!("2026-11-{:02}T10:00:00.000000Z", r.day),
            audit_id: r.id.into(),
            caller: r.caller.map(Into::into),
            device_id: r.device.map(Into::into),
            operation: r.op.map(Into::into),
            decision: r.decision,
            graph_request_id: r.graph_id.map(Into::into),
            status: (r.kind != Kind::Intent && r.kind != Kind::Start).then_some(204),
            ..Entry::default()
        };
        audit.write_durable(entry).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    (path, key)
}

/// The audit ids of the rows `audit query <log> <filters> --json` prints, in order.
fn query(log: &Path, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["audit", "query", log.to_str().unwrap(), "--json"];
    args.extend_from_slice(filters);
    let out = graphgate(&args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}:{}",
                v["audit_id"].as_str().unwrap(),
                v["kind"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn every_query_filter_selects_exactly_its_rows() {
    let (log, _) = log().await;
    let log = log.as_path();
    // One row per request: the outcome, not its intent; an intent with no outcome; no start.
    assert_eq!(
        query(log, &[]),
        [
            "id-1:outcome",
            "id-2:request",
            "id-3:request",
            "id-4:intent",
            "id-5:request"
        ]
    );
    assert_eq!(
        query(log, &["--device", D2]),
        ["id-2:request", "id-3:request"]
    );
    // Device ids match whatever their case.
    assert_eq!(
        query(log, &["--device", &D1.to_uppercase()]),
        ["id-1:outcome", "id-4:intent"]
    );
    assert_eq!(
        query(log, &["--operation", "updateWindowsDeviceAccount"]),
        ["id-1:outcome", "id-2:request", "id-4:intent"]
    );
    assert_eq!(
        query(log, &["--operation", OP]),
        query(log, &["--operation", "UPDATEWINDOWSDEVICEACCOUNT"])
    );
    assert_eq!(
        query(log, &["--since", "2026-11-21"]),
        [
            "id-2:request",
            "id-3:request",
            "id-4:intent",
            "id-5:request"
        ]
    );
    assert_eq!(query(log, &["--until", "2026-11-21"]), ["id-1:outcome"]);
    assert_eq!(
        query(
            log,
            &[
                "--since",
                "2026-11-21T10:00:00Z",
                "--until",
                "2026-11-23T10:00:00Z"
            ]
        ),
        ["id-2:request", "id-3:request"]
    );
    assert_eq!(
        query(log, &["--all"]),
        [
            "start-1:start",
            "id-1:intent",
            "id-1:outcome",
            "id-2:request",
            "id-3:request",
            "id-4:intent",
            "id-5:request"
        ]
    );
    assert_eq!(query(log, &["--decision", "deny"]), ["id-2:request"]);
    assert_eq!(
        query(log, &["--decision", "unauthenticated"]),
        ["id-5:request"]
    );
    assert_eq!(
        query(log, &["--request-id", "id-1", "--all"]),
        ["id-1:intent", "id-1:outcome"]
    );
    assert_eq!(
        query(
            log,
            &["--graph-request-id", "9F0E8D7C-0000-4000-8000-000000000001"]
        ),
        ["id-1:outcome"]
    );
    assert_eq!(
        query(
            log,
            &["--caller", "a", "--device", D1, "--until", "2026-11-22"]
        ),
        ["id-1:outcome"]
    );
}

#[tokio::test]
async fn the_query_table_shows_what_each_row_is() {
    let (log, _) = log().await;
    let out = graphgate(&["audit", "query", log.to_str().unwrap(), "--device", D1])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].ends_with("AUDIT ID"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("2026-11-20 10:00:00  a") && lines[1].contains("allowed"),
        "{table}"
    );
    assert!(
        lines[1].contains("204") && lines[1].ends_with("id-1"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("2026-11-23 10:00:00") && lines[2].contains("sent, no outcome"),
        "{table}"
    );
    assert_eq!(lines[3], "(2 record(s))");
}

#[tokio::test]
async fn bad_filter_values_are_refused_listing_the_valid_ones() {
    let (log, _) = log().await;
    let log = log.to_str().unwrap();
    let out = graphgate(&["audit", "query", log, "--decision", "refused"])
        .output()
        .unwrap();
    let err = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for valid in [
        "allowed",
        "denied",
        "shadow_denied",
        "dry_run",
        "rate_limited",
        "invalid",
        "failed",
        "outcome_unknown",
        "unauthenticated",
    ] {
        assert!(err.contains(valid), "{valid} missing from: {err}");
    }
    let out = graphgate(&["audit", "query", log, "--operation", "wipeEverything"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(OP), "{}", text(&out));
    let out = graphgate(&["audit", "query", log, "--device", "laptop-7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("GUID"), "{}", text(&out));
}

#[tokio::test]
async fn verify_needs_the_key_and_the_anchor_unless_told_to_check_the_chain_only() {
    let (log, key) = log().await;
    let logs = log.to_str().unwrap();
    let out = graphgate(&["audit", "verify", logs]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--hmac-key-file"), "{}", text(&out));
    // With the key from the environment, the anchor found beside the log (or given among
    // the files, as a shell glob does) is checked.
    let anchor = graphgate::audit::store::anchor::path_for(&log);
    for files in [vec![logs], vec![logs, anchor.to_str().unwrap()]] {
        let out = graphgate(&[&["audit", "verify"], files.as_slice()].concat())
            .env("GRAPHGATE_AUDIT_HMAC_KEY_FILE", &key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("reaches seq 7 as anchored"),
            "{}",
            text(&out)
        );
    }
    std::fs::remove_file(&anchor).unwrap();
    let out = graphgate(&[
        "audit",
        "verify",
        "--hmac-key-file",
        key.to_str().unwrap(),
        logs,
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no anchor found"), "{}", text(&out));
    let out = graphgate(&["audit", "verify", "--no-anchor", logs])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("anchor not checked"), "{}", text(&out));
}

/// `serve --emulator` with these extra flags; its output once it has exited.
fn serve_once(log: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["serve", "--emulator", "--audit-log", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    graphgate(&args).output().unwrap()
}

#[test]
fn a_key_file_others_can_read_or_a_weak_key_stops_start_up() {
    let (dir, key) = dir_with_key(0o644);
    let log = dir.join("audit.jsonl");
    let out = serve_once(&log, &["--audit-hmac-key-file", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("chmod 600 {}", key.display())),
        "{}",
        text(&out)
    );

    let weak = dir.join("weak.key");
    std::fs::write(&weak, "a".repeat(64)).unwrap();
    std::fs::set_permissions(&weak, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = serve_once(&log, &["--audit-hmac-key-file", weak.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("head -c 32 /dev/urandom"),
        "{}",
        text(&out)
    );
    assert!(!log.exists(), "nothing was opened");
}

#[test]
fn no_start_record_is_written_unless_start_up_completes() {
    let (dir, key) = dir_with_key(0o600);
    let log = dir.join("audit.jsonl");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let key = key.to_str().unwrap();
    let out = serve_once(
        &log,
        &[
            "--audit-hmac-key-file",
            key,
            "--listen",
            &port,
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let records = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !records.contains(r#""kind":"start""#),
        "a failed start-up was logged as a start: {records}"
    );
}
