//! The console over a log spread across rotated files: 20,000 records in 1 MiB files (the
//! gateway's naming), indexed once, then the first page, a filter matching one record at
//! the very start (every row scanned), a caller-and-decision filter, and a device's history
//! page, each checked row by row and answered well within the 200 ms budget. The same pages
//! over 1,000,000 records (64 MiB files) are timed by `cargo bench --bench audit_trust`
//! (`console_1000000_records/*`), which writes its log with the same generator.

use std::time::{Duration, Instant};

use graphgate::console::Console;

#[path = "../../benches/support/audit_log.rs"]
mod audit_log;

const RECORDS: u64 = 20_000;
const FILE_BYTES: usize = 1024 * 1024;
/// Rows on a console page (`console::pages::PAGE_ROWS`).
const PAGE: usize = 50;

/// The `data-seq` of each table row of the page at `path?query`, and how long it took.
async fn page(console: &Console, path: &str, query: Option<&str>) -> (Vec<u64>, Duration) {
    let started = Instant::now();
    let resp = console.handle(path, query);
    let took = started.elapsed();
    assert_eq!(resp.status(), 200, "{path}?{query:?}");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8_lossy(&body);
    let seqs = html
        .split("<tr data-seq=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect();
    (seqs, took)
}

#[tokio::test]
async fn console_pages_over_rotated_files_answer_within_budget() {
    let dir = crate::common::temp_dir("console-scale");
    let log = dir.join("audit.jsonl");
    audit_log::generate(&log, RECORDS, FILE_BYTES);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files > 3, "rotated: {files} files");
    let console = Console::start(&log, None, None);
    let indexed = tokio::time::timeout(Duration::from_secs(60), async {
        while console.index().last_seq() < RECORDS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    indexed.await.expect("indexed within 60 s");
    assert_eq!(console.index().chain().verified_to, RECORDS);

    // Newest first: the last record (a refusal, its own row) heads a full page.
    let (seqs, took) = page(&console, "/audit", None).await;
    assert_eq!((seqs.len(), seqs[0]), (PAGE, RECORDS), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let mut times = vec![took];
    // The device seen once: the outcome in record 2 (its intent, record 1, is folded in).
    let rare = format!("device={}", audit_log::RARE_DEVICE);
    let (seqs, took) = page(&console, "/audit", Some(&rare)).await;
    assert_eq!(seqs, vec![2]);
    times.push(took);
    // Refusals are every tenth record (seq divisible by 10), by other-service.
    let query = Some("caller=other-service&decision=denied");
    let (seqs, took) = page(&console, "/audit", query).await;
    assert_eq!(seqs.len(), PAGE);
    assert!(seqs.iter().all(|s| s % 10 == 0), "{seqs:?}");
    assert_eq!(seqs[0], RECORDS);
    times.push(took);
    // Call 4242's device (seen once in 10,000 calls): its outcome, record 8486.
    let history = format!("/audit/device/{}", audit_log::device(4242));
    let (seqs, took) = page(&console, &history, None).await;
    assert_eq!(seqs, vec![8486]);
    times.push(took);
    for took in times {
        assert!(took < Duration::from_millis(200), "{took:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
