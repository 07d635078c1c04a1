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

/// Four-eyes approvals in the audit: each change of an approval (requested, a review
/// counted, approved, started, settled) is a row of its own, KIND `approval`, between the
/// held request and the run it allowed; the table names the event, wide also who moved it
/// and the state it left.
#[tokio::test]
async fn approval_changes_are_rows_of_their_own() {
    let (dir, key) = dir_with_key(0o600);
    let path = dir.join("audit.jsonl");
    let audit = Audit::open(&path, 1 << 30, Fingerprinter::from_file(&key).unwrap()).unwrap();
    let base = Entry {
        time: "2026-11-20T10:00:00.000000Z".into(),
        caller: Some("ops".into()),
        operation: Some(OP.into()),
        device_id: Some(D1.into()),
        approval_id: Some("appr-1".into()),
        ..Entry::default()
    };
    let held = Entry {
        kind: Some(Kind::Request),
        audit_id: "held-1".into(),
        decision: Some(AuditDecision::Held),
        status: Some(202),
        ..base.clone()
    };
    let change = |n: usize, event: &str, state: &str, by: Option<&str>| Entry {
        kind: Some(Kind::Approval),
        audit_id: format!("chg-{n}"),
        approval_event: Some(event.into()),
        approval_state: Some(state.into()),
        reviewer: by.map(Into::into),
        ..base.clone()
    };
    let ran = |kind| Entry {
        kind: Some(kind),
        audit_id: "run-1".into(),
        decision: Some(AuditDecision::Allowed),
        status: (kind == Kind::Outcome).then_some(204),
        upstream_status: (kind == Kind::Outcome).then_some(204),
        ..base.clone()
    };
    for entry in [
        held,
        change(1, "requested", "pending", None),
        change(2, "review_counted", "pending", Some("alice")),
        change(3, "approved", "approved", Some("carol")),
        change(4, "started", "running", None),
        ran(Kind::Intent),
        ran(Kind::Outcome),
        change(5, "settled", "succeeded", None),
    ] {
        audit.write_durable(entry).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    let log = path.to_str().unwrap();
    let rows = |format: &str| -> Vec<String> {
        let out = graphgate(&["audit", "query", log, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("2026"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let table = rows("table");
    let kind_and_status: Vec<(&str, &str)> = table
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            (w[2], w[w.len() - 2])
        })
        .collect();
    assert_eq!(
        kind_and_status,
        [
            ("request", "202"),
            ("approval", "requested"),
            ("approval", "review_cou…"),
            ("approval", "approved"),
            ("approval", "started"),
            ("outcome", "204"),
            ("approval", "settled"),
        ],
        "{table:#?}"
    );
    let wide = rows("wide");
    assert!(
        wide[2].contains(" review_counted by alice (pending) "),
        "{wide:#?}"
    );
    assert!(
        wide[3].contains(" approved by carol (approved) "),
        "{wide:#?}"
    );
    assert!(wide[6].contains(" settled (succeeded) "), "{wide:#?}");
}

#[tokio::test]
async fn the_query_table_shows_what_each_row_is() {
    let (log, _) = log().await;
    let log = log.to_str().unwrap();
    let table = |extra: &[&str]| {
        let mut args = vec!["audit", "query", log];
        args.extend_from_slice(extra);
        let out = graphgate(&args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // The table: the record's kind, the operation without its prefix, ids shortened to the
    // prefix the filters take.
    let short = table(&["--device", D1]);
    let lines: Vec<&str> = short.lines().collect();
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(lines[0]),
        [
            "TIME",
            "KIND",
            "CALLER",
            "OPERATION",
            "DEVICE",
            "DECISION",
            "STATUS",
            "ID"
        ]
    );
    assert_eq!(
        words(lines[1]),
        [
            "2026-11-20",
            "10:00:00",
            "outcome",
            "a",
            "updateWindowsDevic…",
            "0b6f2f1e",
            "allowed",
            "204",
            "id-1"
        ]
    );
    assert_eq!(
        words(lines[2]),
        [
            "2026-11-23",
            "10:00:00",
            "intent",
            "a",
            "updateWindowsDevic…",
            "0b6f2f1e",
            "allowed",
            "no",
            "outcome",
            "id-4"
        ]
    );
    assert_eq!(lines[3], "(2 rows)");
    assert_eq!(
        table(&["--device", &D1[..8]]),
        short,
        "the short id filters"
    );
    // Wide: every column, nothing cut.
    let wide = table(&["--device", D1, "--format", "wide"]);
    let lines: Vec<&str> = wide.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].ends_with("AUDIT ID"),
        "{wide}"
    );
    assert!(
        lines[1].contains(OP) && lines[1].contains(D1) && lines[1].ends_with("id-1"),
        "{wide}"
    );
    assert!(lines[2].contains("sent, no outcome"), "{wide}");
    // --limit keeps the newest rows and says how many it left out.
    let limited = table(&["--device", D1, "--limit", "1"]);
    let lines: Vec<&str> = limited.lines().collect();
    assert_eq!(lines.len(), 3, "{limited}");
    assert!(lines[1].ends_with("id-4"), "{limited}");
    assert_eq!(
        lines[2],
        "(1 shown, the newest, of 2 rows; --limit N shows more, --limit 0 all)"
    );
    // One row: singular; every kind with --all, each named in KIND.
    assert!(table(&["--request-id", "id-2"]).ends_with("(1 row)\n"));
    let all = table(&["--all"]);
    let kinds: Vec<String> = all
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("2026"))
        .map(|l| words(l)[2].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "start", "intent", "outcome", "request", "request", "intent", "request"
        ]
    );
    // An intent whose outcome is recorded was sent; the other never got one.
    let intents: Vec<&str> = all.lines().filter(|l| l.contains(" intent ")).collect();
    assert!(
        intents[0].contains(" sent ") && intents[0].ends_with("id-1"),
        "{all}"
    );
    assert!(
        intents[1].contains(" no outcome ") && intents[1].ends_with("id-4"),
        "{all}"
    );
}

/// The first line of `follow`'s output containing `what` (the test fails after 30 s without).
fn wait_for_line(follow: &mut crate::common::process::Proc, what: &str) -> String {
    follow
        .stdout
        .wait_for(std::time::Duration::from_secs(30), |l| l.contains(what))
        .unwrap_or_else(|| {
            panic!(
                "no line with {what:?}: {}{}",
                follow.stdout.text(),
                follow.stderr.text()
            )
        })
}

/// `--follow` prints the newest rows, then each matching record as it is written, across
/// the log's rotation; an intent waits for its outcome, a completion is a row of its own.
#[tokio::test]
async fn follow_prints_records_as_they_are_written_across_rotation() {
    use crate::common::process::Proc;
    let (dir, key) = dir_with_key(0o600);
    let path = dir.join("audit.jsonl");
    // Small files: the log rotates every few records.
    let audit = Audit::open(&path, 700, Fingerprinter::from_file(&key).unwrap()).unwrap();
    let record = |id: &str, kind: Kind, decision: AuditDecision, caller: &str| Entry {
        kind: Some(kind),
        time: "2026-11-20T10:00:00.000000Z".into(),
        audit_id: id.into(),
        caller: Some(caller.into()),
        device_id: Some(D1.into()),
        operation: Some(OP.into()),
        decision: Some(decision),
        status: (kind != Kind::Intent).then_some(204),
        completion: (kind == Kind::Completion).then(|| "done".into()),
        ..Entry::default()
    };
    for i in 0..3 {
        let id = format!("old-{i}");
        audit
            .write_durable(record(&id, Kind::Request, AuditDecision::Denied, "a"))
            .await
            .unwrap();
    }
    let log = path.to_str().unwrap().to_owned();
    let mut follow = Proc::spawn(&mut graphgate(&[
        "audit", "query", &log, "--follow", "--limit", "1", "--caller", "a",
    ]));
    let header = wait_for_line(&mut follow, "TIME");
    assert!(header.contains("KIND"), "{header}");
    wait_for_line(&mut follow, "old-2");
    for (id, kind, decision, caller) in [
        ("new-b", Kind::Request, AuditDecision::Denied, "b"),
        ("new-1", Kind::Intent, AuditDecision::Allowed, "a"),
        ("new-1", Kind::Outcome, AuditDecision::Allowed, "a"),
        ("new-1", Kind::Completion, AuditDecision::Allowed, "a"),
        ("new-2", Kind::Request, AuditDecision::Denied, "a"),
    ] {
        audit
            .write_durable(record(id, kind, decision, caller))
            .await
            .unwrap();
    }
    assert!(
        !graphgate::audit::store::files::rotated_files(&path)
            .unwrap()
            .is_empty(),
        "the log rotated while followed"
    );
    let last = wait_for_line(&mut follow, "new-2");
    assert!(
        last.contains(" request ") && last.contains("denied"),
        "{last}"
    );
    let rows: Vec<String> = follow
        .stdout
        .text()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            let w: Vec<&str> = r.split(' ').collect();
            (w[2], *w.last().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("request", "old-2"),
            ("outcome", "new-1"),
            ("completion", "new-1"),
            ("request", "new-2")
        ],
        "{rows:?}"
    );
    assert!(rows[2].contains(" done "), "{rows:?}");
    audit.shutdown().await.unwrap();
}

/// `--follow` started on a live file just rotated (it exists and is empty, its records are
/// in the rotated files) prints no history: only the records written after it started.
#[tokio::test]
async fn follow_on_a_just_rotated_live_file_prints_only_new_records() {
    use crate::common::process::Proc;
    let (dir, key) = dir_with_key(0o600);
    let path = dir.join("audit.jsonl");
    let record = |id: &str| Entry {
        kind: Some(Kind::Request),
        time: "2026-11-20T10:00:00.000000Z".into(),
        audit_id: id.into(),
        caller: Some("a".into()),
        device_id: Some(D1.into()),
        operation: Some(OP.into()),
        decision: Some(AuditDecision::Denied),
        status: Some(403),
        ..Entry::default()
    };
    let fingerprinter = || Fingerprinter::from_file(&key).unwrap();
    let audit = Audit::open(&path, 1 << 30, fingerprinter()).unwrap();
    for i in 0..3 {
        audit
            .write_durable(record(&format!("old-{i}")))
            .await
            .unwrap();
    }
    audit.shutdown().await.unwrap();
    // A crash mid-write: the next start rotates the file aside and opens an empty live file.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":4"))
        .unwrap();
    let audit = Audit::open(&path, 1 << 30, fingerprinter()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "the live file is empty"
    );
    assert_eq!(
        graphgate::audit::store::files::rotated_files(&path)
            .unwrap()
            .len(),
        1
    );
    let log = path.to_str().unwrap().to_owned();
    let mut follow = Proc::spawn(&mut graphgate(&["audit", "query", &log, "--follow"]));
    wait_for_line(&mut follow, "TIME");
    audit.write_durable(record("new-1")).await.unwrap();
    wait_for_line(&mut follow, "new-1");
    let ids: Vec<String> = follow
        .stdout
        .text()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["new-1"], "{}", follow.stdout.text());
    audit.shutdown().await.unwrap();
}

/// A table fits 120 columns whatever the records hold; wide shows them whole.
#[tokio::test]
async fn the_table_fits_120_columns_with_the_longest_values() {
    let (dir, key) = dir_with_key(0o600);
    let path = dir.join("audit.jsonl");
    let audit = Audit::open(&path, 1 << 30, Fingerprinter::from_file(&key).unwrap()).unwrap();
    let long = "a-caller-name-far-longer-than-any-column-holds";
    audit
        .write_durable(Entry {
            kind: Some(Kind::Outcome),
            time: "2026-11-20T10:00:00.000000Z".into(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            caller: Some(long.into()),
            initiator: Some("someone.with.a.long.name@subsidiary.contoso.example.com".into()),
            device_id: Some(D1.into()),
            operation: Some("managedDevices.sendCustomNotificationToCompanyPortal".into()),
            decision: Some(AuditDecision::OutcomeUnknown),
            rule: Some("a-rule-with-a-long-name-as-people-write-them".into()),
            reason: Some("CHG-4711: ".repeat(20)),
            status: Some(502),
            upstream_status: Some(503),
            ..Entry::default()
        })
        .await
        .unwrap();
    audit.shutdown().await.unwrap();
    let log = path.to_str().unwrap();
    let out = graphgate(&["audit", "query", log]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    for line in table.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    assert!(
        table.contains("a-caller-name-f…")
            && table.contains("outcome_unknown")
            && table.contains("502 (g 503)"),
        "{table}"
    );
    let out = graphgate(&["audit", "query", log, "--format", "wide"])
        .output()
        .unwrap();
    let wide = String::from_utf8(out.stdout).unwrap();
    for whole in [
        long,
        "CHG-4711: CHG-4711",
        "managedDevices.sendCustomNotificationToCompanyPortal",
        "502 (graph 503)",
    ] {
        assert!(wide.contains(whole), "{whole}: {wide}");
    }
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
