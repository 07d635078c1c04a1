//! Both ends of the audit log: rotation never renames over a rotated file (a retention job
//! may have moved one away), and `audit verify` fails, naming what is missing, when the
//! newest records or the oldest file are cut off; a log written up to a crash still verifies
//! and a restart continues its chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use graphgate::audit::read::verify::verify;
use graphgate::audit::store::sink::rotated_files;
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
    assert!(text.contains("OK: 30 records, seq 1..=30"), "{text}");
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

/// A `serve --emulator` gateway on the log at `log`, with its HMAC key beside it.
struct Served {
    child: std::process::Child,
    addr: String,
}

/// Starts the gateway and waits (at most 60 s) for it to listen.
fn serve(log: &Path) -> Served {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["serve", "--emulator", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--audit-log"])
        .arg(log)
        .env("RUST_LOG", "warn")
        .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("graphgate is listening on http://") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the gateway listens within 60 s");
    Served { child, addr }
}

impl Served {
    /// One allowed privileged call; its status.
    fn call(&self) -> u16 {
        use std::io::{Read, Write};
        let body = r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"Ends-Passw0rd-1","userPrincipalName":"room1@contoso.com"},"deviceAccountEmail":"room1@contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true,"calendarSyncEnabled":true,"sessionInitiationProtocalAddress":"sip:room1@contoso.com"}}"##;
        let device = graphgate_emulator::DEMO_DEVICE_IDS[0];
        let request = format!(
            "POST /v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            graphgate_emulator::demo::DEMO_API_KEY,
            body.len()
        );
        let mut tcp = std::net::TcpStream::connect(&self.addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// SIGKILL: no clean shutdown.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: a clean shutdown, which must succeed.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert!(self.child.wait().unwrap().success());
    }
}

fn anchor_of(log: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(graphgate::audit::store::anchor::path_for(log)).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["anchor"].clone()
}

#[test]
fn a_log_written_up_to_a_crash_verifies_and_a_restart_continues_its_chain() {
    let dir = std::env::temp_dir().join(format!("graphgate-ends-{}", uuid::Uuid::new_v4()));
    let log = dir.join("audit.jsonl");
    let key = dir.join("hmac.key");
    let gateway = serve(&log);
    for _ in 0..5 {
        assert_eq!(gateway.call(), 204);
    }
    gateway.crash();
    assert_eq!(
        anchor_of(&log)["clean"],
        false,
        "no clean shutdown was recorded"
    );
    let (ok, text) = cli_verify(&key, &live_files(&log));
    assert!(ok, "an uncut log written up to a crash verifies: {text}");
    // start + 5 intents + 4 or 5 outcomes (the last one may not have reached the disk).
    let n = ids(&live_files(&log)).len() as u64;
    assert!((10..=11).contains(&n), "{text}");
    assert!(
        text.contains(&format!("OK: {n} records, seq 1..={n}")),
        "{text}"
    );

    // A restart continues the same chain; a clean stop anchors its very last record.
    let gateway = serve(&log);
    for _ in 0..3 {
        assert_eq!(gateway.call(), 204);
    }
    gateway.stop();
    let last = n + 1 + 3 * 2;
    let anchor = anchor_of(&log);
    assert_eq!(
        (anchor["clean"].as_bool(), anchor["head"]["seq"].as_u64()),
        (Some(true), Some(last))
    );
    let (ok, text) = cli_verify(&key, &live_files(&log));
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("OK: {last} records, seq 1..={last}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("reaches seq {last} as anchored")),
        "{text}"
    );
    assert!(!text.contains("newer than the anchor"), "{text}");

    // Cut now, and both verify and the next start refuse it.
    let records = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = records.lines().take(records.lines().count() - 1).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    let (ok, text) = cli_verify(&key, &live_files(&log));
    let cut = format!("seq {last}..={last}");
    assert!(
        !ok && text.contains("missing head") && text.contains(&cut),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["serve", "--emulator", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--audit-log"])
        .arg(&log)
        .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("records {cut} are missing")), "{err}");
}

#[tokio::test]
async fn retention_keeps_the_newest_rotated_files_and_moves_the_anchored_tail() {
    let (dir, key) = dir_with_key();
    let path = dir.join("audit.jsonl");
    let config = graphgate::audit::AuditConfig {
        files: graphgate::audit::store::sink::FileOptions {
            max_file_bytes: 800,
            retain_files: Some(2),
            keep_unshipped: false,
        },
        ..Default::default()
    };
    let audit = Audit::open_with(&path, &config, Fingerprinter::from_file(&key).unwrap()).unwrap();
    for i in 0..30 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    let rotated = rotated_files(&path).unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let first_kept = ids(&live_files(&path))[0].clone();
    assert_ne!(first_kept, "req-0", "the oldest records are gone");
    let tail = anchor_of(&path)["tail"]["seq"].as_u64().unwrap();
    assert!(tail > 1);
    let (ok, text) = cli_verify(&key, &live_files(&path));
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("the log starts at seq {tail} and reaches seq 30")),
        "{text}"
    );
    // Anything below what retention kept is still noticed.
    let (ok, text) = cli_verify(&key, std::slice::from_ref(&path));
    assert!(!ok && text.contains("missing tail"), "{text}");
}

#[tokio::test]
async fn a_log_whose_anchored_records_were_rewritten_is_not_continued() {
    let (dir, key) = dir_with_key();
    let path = dir.join("audit.jsonl");
    write_log(&path, &key, 0, 5, 1 << 30).await;
    // Re-seal the last record with other content: the chain is intact, the anchor is not.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut last: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    last["caller"] = "someone-else".into();
    last["hash"] = graphgate::audit::records::chain::hash_of(&last).into();
    lines[4] = String::from_utf8(graphgate::audit::records::chain::canonical(&last)).unwrap();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(
        verify(std::slice::from_ref(&path)).unwrap().is_ok(),
        "the chain alone passes"
    );
    let (ok, out) = cli_verify(&key, std::slice::from_ref(&path));
    assert!(
        !ok && out.contains("head mismatch: the record at seq 5"),
        "{out}"
    );
    let err =
        Audit::open(&path, 1 << 30, Fingerprinter::from_file(&key).unwrap()).expect_err("refused");
    assert!(err.to_string().contains("the log was rewritten"), "{err}");
    // An anchor from another key is refused too.
    let (_, other_key) = dir_with_key();
    let err = Audit::open(
        &path,
        1 << 30,
        Fingerprinter::from_file(&other_key).unwrap(),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("not authentic"), "{err}");
}
