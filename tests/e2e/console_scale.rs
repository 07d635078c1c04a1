//! The console on a large log: 1,000,000 records on disk (64 MiB files, as the gateway
//! rotates them), indexed once, then the first page timed unfiltered, filtered by a device
//! seen once at the very start (every row scanned), by caller and decision, and a device's
//! history page. Ignored by default (it writes about 0.8 GB); run it with
//! `cargo test --test e2e console_scale -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use graphgate::audit::chain::ChainState;
use graphgate::audit::{AuditDecision, Entry, Kind};
use graphgate::console::Console;

const RECORDS: u64 = 1_000_000;
const FILE_BYTES: usize = 64 * 1024 * 1024;
const RARE_DEVICE: &str = "99999999-0000-4000-8000-000000000001";

fn device(i: u64) -> String {
    format!("{:08x}-1a2b-4c3d-8e9f-00112233aabb", i % 10_000)
}

/// Writes the log: intents and outcomes of allowed calls, some refusals, rotated at 64 MiB.
fn generate(log: &Path) {
    let mut state = ChainState::default();
    let mut file_no = 0;
    let mut out = Vec::with_capacity(FILE_BYTES + 4096);
    let params = Arc::new(serde_json::json!({
        "deviceAccountEmail": "room1@rooms.contoso.com",
        "deviceAccount.password": {"redacted": true, "hmac_sha256": "ab".repeat(32)},
        "exchangeServer": "outlook.office365.com", "calendarSyncEnabled": true,
    }));
    for i in 0..RECORDS {
        let allowed = i % 10 != 9;
        let kind = match (allowed, i % 2) {
            (false, _) => Kind::Request,
            (true, 0) => Kind::Intent,
            (true, _) => Kind::Outcome,
        };
        let call = i / 2;
        let entry = Entry {
            kind: Some(kind),
            time: format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}.000000Z",
                1 + call / 86_400 % 28,
                call / 3600 % 24,
                call / 60 % 60,
                call % 60
            ),
            audit_id: format!("{call:08x}-0000-4000-8000-000000000000"),
            caller: Some(
                if allowed {
                    "rooms-rotator"
                } else {
                    "other-service"
                }
                .into(),
            ),
            operation: Some("managedDevices.updateWindowsDeviceAccount".into()),
            device_id: Some(if i == 1 {
                RARE_DEVICE.to_owned()
            } else {
                device(call)
            }),
            decision: Some(if allowed {
                AuditDecision::Allowed
            } else {
                AuditDecision::Denied
            }),
            status: (kind != Kind::Intent).then_some(if allowed { 204 } else { 403 }),
            upstream_status: (kind == Kind::Outcome).then_some(204),
            params: Some(Arc::clone(&params)),
            policy_version: Some("c0ffee".repeat(10)),
            ..Entry::default()
        };
        state.seal_into(&entry, &mut out).unwrap();
        out.push(b'\n');
        if out.len() >= FILE_BYTES {
            file_no += 1;
            std::fs::write(graphgate::audit::files::rotated_name(log, file_no), &out).unwrap();
            out.clear();
        }
    }
    std::fs::File::create(log).unwrap().write_all(&out).unwrap();
}

#[tokio::test]
#[ignore = "writes 1,000,000 records (about 0.8 GB); run with --ignored --nocapture"]
async fn console_first_page_with_a_million_records_on_disk() {
    let dir = crate::common::temp_dir("console-scale");
    let log = dir.join("audit.jsonl");
    let started = Instant::now();
    tokio::task::spawn_blocking({
        let log = log.clone();
        move || generate(&log)
    })
    .await
    .unwrap();
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "generated {RECORDS} records, {} MB in {} files, in {:.1?}",
        bytes / 1_000_000,
        std::fs::read_dir(&dir).unwrap().count(),
        started.elapsed()
    );
    let started = Instant::now();
    let console = Console::start(&log, None, None);
    tokio::time::timeout(Duration::from_secs(600), async {
        while console.index().last_seq() < RECORDS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("indexed within 10 minutes");
    println!(
        "indexed in {:.1?}; chain {:?}",
        started.elapsed(),
        console.index().chain()
    );
    assert_eq!(console.index().chain().verified_to, RECORDS);
    let pages = [
        ("first page, no filter", "/audit", None),
        (
            "a device seen once, at the start (every row scanned)",
            "/audit",
            Some(format!("device={RARE_DEVICE}")),
        ),
        (
            "caller and decision",
            "/audit",
            Some("caller=other-service&decision=denied".to_owned()),
        ),
        (
            "a device's history page",
            &*format!("/audit/device/{}", device(4242)),
            None,
        ),
    ];
    for (what, path, query) in &pages {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let resp = console.handle(path, query.as_deref());
            times.push(t.elapsed());
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            rows = String::from_utf8_lossy(&body)
                .matches("<tr data-seq")
                .count();
        }
        times.sort();
        println!(
            "{what}: {rows} rows, median {:.1?} (min {:.1?}, max {:.1?})",
            times[2], times[0], times[4]
        );
        assert!(rows > 0, "{what}");
        assert!(
            times[2] < Duration::from_millis(200),
            "{what}: {:?}",
            times[2]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
