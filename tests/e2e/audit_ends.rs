//! Both ends of the audit log: rotation never renames over a rotated file (a retention job
//! may have moved one away), and `audit verify` fails, naming what is missing, when the
//! newest records or the oldest file are cut off; a log written up to a crash still verifies
//! and a restart continues its chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use graphgate::audit::sink::rotated_files;
use graphgate::audit::verify::verify;
use graphgate::audit::{Audit, Entry, Fingerprinter};

const BIN: &str = env!("CARGO_BIN_EXE_graphgate");

/// A fresh directory holding a random HMAC key file (mode 0600), as an operator makes one.
fn dir_with_key() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("graphgate-ends-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("hmac.key");
    let random = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    let hex: String = random
        .iter()
        .flat_map(|u| u.as_bytes().iter().map(|b| format!("{b:02x}")))
        .collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(&key).unwrap(), hex.as_bytes()).unwrap();
    (dir, key)
}

fn entry(i: usize) -> Entry {
    Entry {
        audit_id: format!("req-{i}"),
        time: "2026-11-28T10:00:00.000000Z".into(),
        caller: Some("rooms-rotator".into()),
        ..Entry::default()
    }
}

/// Writes records `from..to` to the log at `path` (rotating past `max` bytes), then closes it.
async fn write_log(path: &Path, key: &Path, from: usize, to: usize, max: u64) {
    let audit = Audit::open(path, max, Fingerprinter::from_file(key).unwrap()).unwrap();
    for i in from..to {
        audit.write_durable(entry(i)).await.unwrap();
    }
    audit.close().await;
}

/// Every record's audit id across `files`.
fn ids(files: &[PathBuf]) -> Vec<String> {
    let mut ids: Vec<(u64, String)> = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push((
                v["seq"].as_u64().unwrap(),
                v["audit_id"].as_str().unwrap().into(),
            ));
        }
    }
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

/// `graphgate audit verify` over `files`, with the key from the environment as a deployment
/// has it; returns (success, stdout + stderr).
fn cli_verify(key: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .args(files)
        .env("GRAPHGATE_AUDIT_HMAC_KEY_FILE", key)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The live log and its rotated files, as a shell glob `audit.jsonl*` would give them.
fn live_files(path: &Path) -> Vec<PathBuf> {
    let mut files = rotated_files(path).unwrap();
    files.push(path.to_owned());
    files
}

#[tokio::test]
async fn rotation_after_a_retention_job_moved_a_file_loses_nothing() {
    let (dir, key) = dir_with_key();
    let path = dir.join("audit.jsonl");
    write_log(&path, &key, 0, 12, 800).await;
    assert!(rotated_files(&path).unwrap().len() >= 3);
    // A retention job moves the oldest rotated file to the archive.
    let archive = dir.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let oldest = rotated_files(&path).unwrap().remove(0);
    let archived = archive.join(oldest.file_name().unwrap());
    std::fs::rename(&oldest, &archived).unwrap();
    // More rotations: none may rename over a file still there.
    write_log(&path, &key, 12, 30, 800).await;

    let mut files = vec![archived.clone()];
    files.extend(live_files(&path));
    let expected: Vec<String> = (0..30).map(|i| format!("req-{i}")).collect();
    assert_eq!(
        ids(&files),
        expected,
        "every record is in the archive or the live files"
    );
    let report = verify(&files).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.seq_range), (30, Some((1, 30))));
    // The same with the command, anchored at both ends.
    let (ok, text) = cli_verify(&key, &files);
    assert!(ok, "{text}");
    assert!(text.contains("OK: 30 record(s), seq 1..=30"), "{text}");
    // Without the archive the oldest records are missing, and verify says so.
    let (ok, text) = cli_verify(&key, &live_files(&path));
    assert!(!ok, "{text}");
    assert!(text.contains("missing tail"), "{text}");
}

#[tokio::test]
async fn verify_fails_naming_newest_records_cut_off() {
    let (dir, key) = dir_with_key();
    let path = dir.join("audit.jsonl");
    write_log(&path, &key, 0, 10, 1 << 30).await;
    let (ok, text) = cli_verify(&key, &live_files(&path));
    assert!(ok, "{text}");

    let text_before = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text_before.lines().take(8).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let (ok, text) = cli_verify(&key, &live_files(&path));
    assert!(
        !ok,
        "a log with its newest records cut off must fail: {text}"
    );
    assert!(text.contains("missing head"), "{text}");
    assert!(
        text.contains("seq 9..=10"),
        "names the missing records: {text}"
    );
}

#[tokio::test]
async fn verify_fails_naming_the_oldest_file_removed_or_cut() {
    let (dir, key) = dir_with_key();
    let path = dir.join("audit.jsonl");
    write_log(&path, &key, 0, 12, 800).await;
    let files = live_files(&path);
    let (ok, text) = cli_verify(&key, &files);
    assert!(ok, "{text}");

    // The oldest file removed.
    let oldest = files[0].clone();
    let first_kept: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&files[1])
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let first_kept = first_kept["seq"].as_u64().unwrap();
    let saved = std::fs::read_to_string(&oldest).unwrap();
    std::fs::remove_file(&oldest).unwrap();
    let (ok, text) = cli_verify(&key, &files[1..]);
    assert!(!ok, "a log with its oldest file removed must fail: {text}");
    assert!(text.contains("missing tail"), "{text}");
    assert!(
        text.contains(&format!("seq 1..={}", first_kept - 1)),
        "names the missing records: {text}"
    );

    // The oldest records cut from the first file.
    let cut: Vec<&str> = saved.lines().skip(1).collect();
    std::fs::write(&oldest, cut.join("\n") + "\n").unwrap();
    let (ok, text) = cli_verify(&key, &files);
    assert!(!ok, "{text}");
    assert!(
        text.contains("missing tail") && text.contains("seq 1..=1"),
        "{text}"
    );
}
