//! `graphgate approvals` (the binary) against a gateway in front of the emulator: the
//! book's commands (docs/approvals.md) as printed against `graphgate serve`, then each command's refusals:
//! no review without the reason and the hash the person saw, a hash that is not the
//! request's, someone who may not see it, a cancel, a rejection. What Graph received is
//! asserted each time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::approvals::{
    ALICE, BOB, CAROL, MALLORY, OPS, WIPE_BODY, call, held, policy, show, two_groups, wipe,
    wipe_path,
};
use crate::common::process::{BIN, run_async};
use crate::common::replicas::Replicas;
use crate::common::{DEVICE, Options, temp_dir, write_private};

/// The code block after `marker` in the book's approvals chapter.
fn book_block(marker: &str) -> String {
    crate::approvals::block_after(include_str!("../../docs/approvals.md"), marker)
}

/// The directory holding the binary, first on `PATH`.
fn path_with_binary() -> String {
    let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
    format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_cli_commands_run_as_printed_and_approve_what_was_shown() {
    let policy = book_block("<!-- approvals-example-policy -->");
    let commands = book_block("<!-- approvals-cli-example -->");
    let backend = crate::common::served::backend(Default::default()).await;
    std::fs::write(backend.dir.join("policy.yaml"), &policy).unwrap();
    let served = backend.serve(backend.serve_command()).await;
    let asked = call(
        served.addr,
        (Method::POST, &wipe_path(DEVICE)),
        "ops-bot-example-key",
        &[("x-graphgate-reason", "INC-4711 laptop stolen")],
        r#"{"keepUserData":false}"#,
    )
    .await;
    let (id, sha) = held(&asked);
    let script = commands.replace("http://127.0.0.1:8080", &format!("http://{}", served.addr));
    let mut sh = Command::new("sh");
    sh.arg("-ec")
        .arg(&script)
        .current_dir(&backend.dir)
        .env("ID", &id)
        .env("PATH", path_with_binary())
        .env_remove("GRAPHGATE_TOKEN_FILE")
        .env_remove("GRAPHGATE_CA_FILE");
    let (status, out, err) = run_async(sh, Duration::from_secs(60)).await;
    assert!(status.success(), "{out}{err}");
    // list: the header, then the held wipe on one line.
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PROGRESS"),
        "{out}"
    );
    let row = lines[1];
    for cell in [
        id.as_str(),
        "pending",
        "managedDevices.wipe",
        DEVICE,
        "ops-bot",
        "0/1 0/1",
    ] {
        assert!(row.contains(cell), "{cell} in {row:?}");
    }
    // show: the facts and the hash the approvals name.
    assert!(out.contains(&format!("request_sha256  {sha}")), "{out}");
    assert!(
        out.contains("reason          INC-4711 laptop stolen"),
        "{out}"
    );
    assert!(
        out.contains(&format!("approved: {id} is pending (approvals 1/1 0/1)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("approved: {id} is succeeded")),
        "{out}"
    );
    let wipes: Vec<_> = backend
        .emulator
        .graph_requests()
        .into_iter()
        .filter(|g| g.path.ends_with("/wipe"))
        .collect();
    assert_eq!(wipes.len(), 1, "run once, after both");
    drop(served);
}

/// Runs `graphgate approvals <args>` against `addr` as the caller whose key is `key`.
async fn approvals(addr: std::net::SocketAddr, key: &str, args: &[&str]) -> (bool, String, String) {
    let dir = temp_dir("approvals-cli");
    let token = dir.join("token");
    write_private(&token, format!("{key}\n").as_bytes());
    let mut cmd = Command::new(BIN);
    cmd.arg("approvals")
        .args(args)
        .env("GRAPHGATE_URL", format!("http://{addr}"))
        .env("GRAPHGATE_TOKEN_FILE", &token)
        .env_remove("GRAPHGATE_CA_FILE");
    let (status, out, err) = run_async(cmd, Duration::from_secs(30)).await;
    (status.success(), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_need_the_reason_and_the_hash_seen_and_refusals_print_graphs_message() {
    let r = Replicas::start_with(1, &policy(two_groups()).yaml(), Options::default()).await;
    let addr = r.replicas[0].addr;
    let (id, sha) = held(&wipe(addr, &[("x-graphgate-reason", "INC-77")]).await);

    // No terminal, no --reason/--request-sha256: nothing is sent.
    let (ok, out, err) = approvals(addr, ALICE, &["approve", &id]).await;
    assert!(!ok);
    assert!(
        out.contains(&sha),
        "the facts and hash are shown first: {out}"
    );
    assert!(err.contains("--reason and --request-sha256"), "{err}");
    let (ok, _, err) = approvals(addr, ALICE, &["approve", &id, "--request-sha256", &sha]).await;
    assert!(!ok && err.contains("needs --reason"), "{err}");
    let doc = show(addr, OPS, &id).await.json();
    assert_eq!(doc["reviews"], serde_json::json!([]), "no review was sent");

    // A hash that is not this request's: the gateway refuses, its message printed.
    let other = "0".repeat(64);
    let (ok, out, err) = approvals(
        addr,
        ALICE,
        &[
            "approve",
            &id,
            "--reason",
            "looks fine",
            "--request-sha256",
            &other,
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        out.contains("warning: the request_sha256 you gave is not this request's"),
        "{out}"
    );
    assert!(
        err.contains("409 Conflict: approvalRequestMismatch: "),
        "{err}"
    );

    // Someone with no part in it sees nothing (404, as the API answers).
    let (ok, _, err) = approvals(addr, MALLORY, &["show", &id]).await;
    assert!(!ok);
    assert!(err.starts_with("graphgate: 404 Not Found: "), "{err}");
    let (ok, out, _) = approvals(addr, MALLORY, &["list"]).await;
    assert!(ok);
    assert_eq!(out.trim(), "no approvals");

    // A rejection by bob (secops) ends it; show lists the review and no outcome.
    let (ok, out, err) = approvals(
        addr,
        BOB,
        &[
            "reject",
            &id,
            "--reason",
            "not our laptop",
            "--request-sha256",
            &sha,
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("rejected: {id} is rejected")),
        "{out}"
    );
    let (ok, out, _) = approvals(addr, CAROL, &["show", &id]).await;
    assert!(ok);
    assert!(out.contains("state           rejected"), "{out}");
    assert!(out.contains("reject by bob: not our laptop"), "{out}");
    assert!(out.contains("outcome: not yet"), "{out}");

    // The requester cancels another; an approver may not.
    let (other_id, _) = held(
        &call(
            addr,
            (
                Method::POST,
                &wipe_path(graphgate_emulator::DEMO_DEVICE_IDS[1]),
            ),
            OPS,
            &[],
            WIPE_BODY,
        )
        .await,
    );
    let (ok, _, err) = approvals(addr, CAROL, &["cancel", &other_id]).await;
    assert!(
        !ok && err.contains("403 Forbidden: accessDenied: "),
        "{err}"
    );
    let (ok, out, err) = approvals(
        addr,
        OPS,
        &["cancel", &other_id, "--reason", "wrong device"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{other_id}: canceled"));
    let (ok, out, _) = approvals(addr, OPS, &["show", &other_id, "--json"]).await;
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["state"], "canceled");
    assert!(
        r.emulator
            .graph_requests()
            .iter()
            .all(|g| !g.path.ends_with("/wipe")),
        "nothing reached Graph"
    );
}
