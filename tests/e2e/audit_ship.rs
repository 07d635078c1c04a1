//! Shipping: audit records reach an OTLP collector (the in-test receiver decodes the log
//! records) as log records whose body is the record's line; a collector that is down for a
//! while, or hangs, gets every record at least once when it comes back and never holds a
//! request; a restart resumes from the persisted cursor without a gap or a resend; and
//! retention keeps every rotated file holding a record not yet shipped; and the ship-lag
//! gauge of a `graphgate serve` of the test's own counts the records the collector has not
//! taken, during an outage too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::metrics::{Snapshot, value};
use crate::common::otlp::{Receiver, log_attr, log_body, otlp_receiver};
use crate::common::*;
use graphgate::audit::ship::{self, ShipConfig};
use graphgate::audit::store::sink::FileOptions;
use graphgate::audit::store::{files, ship_cursor};
use graphgate::audit::{Audit, AuditConfig, Entry, Kind};

fn config(rx: &Receiver) -> ShipConfig {
    ShipConfig {
        logs_endpoint: Some(format!("http://{}/v1/logs", rx.addr)),
        service_name: "graphgate-ship-test".into(),
        tls: Default::default(),
    }
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until the collector has accepted every seq from 1 to `last`; returns
/// the seqs received, with repeats.
async fn wait_for_all(rx: &Receiver, last: u64, within: Duration) -> Vec<u64> {
    let mut arrived = rx.logs_arrived.clone();
    let seqs = || -> Vec<u64> {
        rx.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| log_attr(r, "graphgate.audit.seq")?.parse().ok())
            .collect()
    };
    let complete = |s: &[u64]| (1..=last).all(|n| s.contains(&n));
    tokio::time::timeout(within, async {
        while !complete(&seqs()) {
            arrived.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not every record arrived: {:?}", seqs()));
    seqs()
}

#[tokio::test]
async fn audit_records_reach_the_collector_as_otlp_log_records() {
    let rx = otlp_receiver().await;
    let h = start().await;
    let log = h.audit_path.clone().unwrap();
    ship::spawn(&log, h.audit.durable_seq().unwrap(), &config(&rx)).unwrap();
    assert_eq!(h.call().await.status, 204);
    h.post(ACTION_PATH, Some(OTHER_KEY), &body())
        .await
        .assert_graph_error(403, "accessDenied");
    h.audit.flush().await.unwrap();
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 4, "start, intent, outcome, refusal");
    wait_for_all(&rx, 4, Duration::from_secs(20)).await;
    let records = rx.logs.lock().unwrap().clone();
    for (line, record) in lines.iter().zip(&records) {
        assert_eq!(&log_body(record), line, "the body is the record's line");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "kind",
            "audit_id",
            "hash",
            "caller",
            "decision",
            "device_id",
        ] {
            assert_eq!(
                log_attr(record, &format!("graphgate.audit.{key}")).as_deref(),
                v[key].as_str(),
                "{key}"
            );
        }
        assert!(record.time_unix_nano > 0);
        assert!(!log_body(record).contains(PASSWORD), "no secret is shipped");
    }
    assert_eq!(records[3].severity_text, "WARN", "a refusal");
    assert_eq!(records[2].severity_text, "INFO");
    wait_cursor(&log, 4).await;
}

/// Waits (bounded) until the persisted cursor says `seq` was acknowledged.
async fn wait_cursor(log: &Path, seq: u64) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while ship_cursor::read(log) < seq {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the cursor stayed at {}", ship_cursor::read(log)));
}

#[tokio::test]
async fn a_collector_down_for_a_while_gets_every_record_at_least_once_and_never_slows_requests() {
    let rx = otlp_receiver().await;
    let h = start().await;
    let log = h.audit_path.clone().unwrap();
    let before = Snapshot::now();
    // Down (503), then hanging: requests are answered as fast as ever.
    rx.up.store(false, Ordering::SeqCst);
    ship::spawn(&log, h.audit.durable_seq().unwrap(), &config(&rx)).unwrap();
    let started = Instant::now();
    for i in 0..20 {
        if i == 10 {
            rx.hang.store(true, Ordering::SeqCst);
        }
        assert_eq!(h.call().await.status, 204);
    }
    let took = started.elapsed();
    h.audit.flush().await.unwrap();
    assert!(
        took < Duration::from_secs(10),
        "20 calls took {took:?} with the collector down"
    );
    assert!(
        rx.logs.lock().unwrap().is_empty(),
        "nothing accepted while down"
    );
    let failures = r#"graphgate_audit_ship_failures_total"#;
    tokio::time::timeout(Duration::from_secs(30), async {
        while before.delta(&Snapshot::now(), failures) < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the failed exports are counted");
    // Back: every record arrives, none missing (repeats allowed).
    rx.hang.store(false, Ordering::SeqCst);
    rx.up.store(true, Ordering::SeqCst);
    let last = log_lines(&log).len() as u64;
    assert_eq!(last, 41, "the start record and 40 of the calls");
    let seqs = wait_for_all(&rx, last, Duration::from_secs(60)).await;
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct, (1..=last).collect::<BTreeSet<u64>>());
}

fn entry(i: usize) -> Entry {
    Entry {
        kind: Some(Kind::Request),
        time: format!("2026-11-28T10:00:{:02}.000000Z", i % 60),
        audit_id: format!("req-{i}"),
        ..Entry::default()
    }
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor_without_a_gap_or_a_resend() {
    let rx = otlp_receiver().await;
    let log = temp_dir("ship-restart").join("audit.jsonl");
    let audit = Audit::open(&log, 1 << 20, fingerprinter()).unwrap();
    let shipper = ship::spawn(&log, audit.durable_seq().unwrap(), &config(&rx)).unwrap();
    for i in 0..10 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    wait_for_all(&rx, 10, Duration::from_secs(20)).await;
    wait_cursor(&log, 10).await;
    // The gateway stops; records written meanwhile (here: by the next start) wait in the log.
    shipper.abort();
    audit.shutdown().await.unwrap();
    let audit = Audit::open(&log, 1 << 20, fingerprinter()).unwrap();
    for i in 10..25 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    ship::spawn(&log, audit.durable_seq().unwrap(), &config(&rx)).unwrap();
    let seqs = wait_for_all(&rx, 25, Duration::from_secs(20)).await;
    assert_eq!(seqs, (1..=25).collect::<Vec<u64>>(), "in order, none twice");
    audit.close().await;
}

/// A backlog of 20,000 records written before shipping starts all arrive, each record once;
/// the rates are printed (`-- --nocapture`) for the shipping-against-writing figure.
#[tokio::test]
async fn a_backlog_is_shipped_whole_and_the_rate_is_printed() {
    const N: usize = 20_000;
    let rx = otlp_receiver().await;
    let log = temp_dir("ship-rate").join("audit.jsonl");
    let audit = Audit::open(&log, 1 << 30, fingerprinter()).unwrap();
    let started = Instant::now();
    for i in 0..N {
        audit.write(entry(i)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let write = started.elapsed();
    let started = Instant::now();
    ship::spawn(&log, audit.durable_seq().unwrap(), &config(&rx)).unwrap();
    let mut arrived = rx.logs_arrived.clone();
    tokio::time::timeout(Duration::from_secs(120), arrived.wait_for(|n| *n >= N))
        .await
        .expect("shipped within 120 s")
        .unwrap();
    let shipped = started.elapsed();
    let seqs: Vec<u64> = rx
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| log_attr(r, "graphgate.audit.seq")?.parse().ok())
        .collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<u64>>(),
        "in order, none twice"
    );
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "local writes: {N} records in {write:.2?} ({:.0}/s); shipped in {shipped:.2?} ({:.0}/s)",
        rate(write),
        rate(shipped)
    );
    audit.close().await;
}

/// With a one-file retention and the collector down, rotation keeps every file holding a
/// record the collector has not acknowledged (the cursor stays put); when it is back, every
/// record arrives, and retention goes back to removing the shipped files.
#[tokio::test]
async fn retention_keeps_unshipped_files_while_the_collector_is_down() {
    let rx = otlp_receiver().await;
    rx.up.store(false, Ordering::SeqCst);
    let log = temp_dir("ship-retention").join("audit.jsonl");
    let config = AuditConfig {
        files: FileOptions {
            max_file_bytes: 800,
            retain_files: Some(1),
            keep_unshipped: true,
        },
        ..AuditConfig::default()
    };
    let audit = Audit::open_with(&log, &config, fingerprinter()).unwrap();
    ship::spawn(&log, audit.durable_seq().unwrap(), &self::config(&rx)).unwrap();
    for i in 0..60 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    let held = files::rotated_files(&log).unwrap().len();
    assert!(held > 5, "rotated files kept while down: {held}");
    assert_eq!(
        ship_cursor::read(&log),
        0,
        "nothing acknowledged while down"
    );
    rx.up.store(true, Ordering::SeqCst);
    let seqs = wait_for_all(&rx, 60, Duration::from_secs(60)).await;
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct, (1..=60).collect::<BTreeSet<u64>>());
    wait_cursor(&log, 60).await;
    // The next rotations remove what was shipped.
    for i in 60..70 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    let after = files::rotated_files(&log).unwrap().len();
    assert!(
        after < held,
        "retention resumed: {after} files, {held} while down"
    );
    audit.close().await;
}

/// `graphgate_audit_ship_lag_records` of a gateway process of the test's own: with the
/// collector down it grows with every record made durable (it equals the log's length,
/// since nothing was acknowledged), and once the collector is back it returns to 0.
#[tokio::test]
async fn the_ship_lag_grows_during_a_collector_outage_and_returns_to_zero() {
    const LAG: &str = "graphgate_audit_ship_lag_records";
    let rx = otlp_receiver().await;
    rx.up.store(false, Ordering::SeqCst);
    let backend = served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", rx.addr));
    let gw = backend.serve(cmd).await;
    let log = backend.dir.join("audit.jsonl");
    let lines = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) as f64;
    let mut seen = Vec::new();
    for _ in 0..3 {
        assert_eq!(gw.post(ACTION_PATH, ROTATOR_KEY, &body()).await.status, 204);
        let written = seen.last().copied().unwrap_or(0.0) + 2.0;
        // The intent and the outcome: the gauge counts both once they are durable.
        let lag = eventually(
            "the lag counts every record",
            Duration::from_secs(20),
            async || {
                let lag = value(&gw.metrics().await, LAG);
                (lag >= written && lag == lines()).then_some(lag)
            },
        )
        .await;
        seen.push(lag);
    }
    assert!(
        rx.logs.lock().unwrap().is_empty(),
        "the collector took nothing while down"
    );
    assert!(
        seen.windows(2).all(|w| w[1] > w[0]),
        "the lag grows with each record: {seen:?}"
    );
    rx.up.store(true, Ordering::SeqCst);
    let last = lines() as u64;
    wait_for_all(&rx, last, Duration::from_secs(60)).await;
    eventually(
        "the lag is back to 0",
        Duration::from_secs(20),
        async || (value(&gw.metrics().await, LAG) == 0.0).then_some(()),
    )
    .await;
}

/// `--audit-ship false` with OTLP export on: traces go to the collector, audit records do
/// not (nothing shipped, no cursor), and nothing waits on shipping: with a one-file
/// retention, rotated files are removed as usual though no collector acknowledged them.
#[tokio::test]
async fn audit_ship_false_ships_nothing_and_keeps_nothing_for_shipping() {
    let rx = otlp_receiver().await;
    let backend =
        crate::common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", rx.addr))
        .env("GRAPHGATE_AUDIT_SHIP", "false")
        .env("GRAPHGATE_AUDIT_MAX_FILE_BYTES", "2048")
        .env("GRAPHGATE_AUDIT_RETAIN_FILES", "1");
    let gw = backend.serve(cmd).await;
    for _ in 0..12 {
        assert_eq!(gw.post(ACTION_PATH, ROTATOR_KEY, &body()).await.status, 204);
    }
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    // Export was on: the spans arrived (a clean stop exports them).
    let mut arrived = rx.arrived.clone();
    tokio::time::timeout(Duration::from_secs(30), arrived.wait_for(|n| *n >= 12))
        .await
        .expect("the request spans reached the collector")
        .unwrap();
    assert!(
        rx.logs.lock().unwrap().is_empty(),
        "no audit record shipped"
    );
    let log = backend.dir.join("audit.jsonl");
    assert!(!ship_cursor::path_for(&log).exists(), "no shipping cursor");
    let rotated = files::rotated_files(&log).unwrap();
    assert!(rotated.len() <= 1, "retention as usual: {rotated:?}");
    assert!(!out.contains("shipping audit records"), "{out}");
}
