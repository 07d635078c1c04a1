//! The audit log on disk: the chain across rotation and restarts, torn tails, rollback after
//! a failed write, group commit, and `verify` naming the position of every kind of tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use graphgate::audit::read::report::{Problem, Report};
use graphgate::audit::read::verify::verify;
use graphgate::audit::records::chain::ChainState;
use graphgate::audit::records::chain::{canonical, hash_of};
use graphgate::audit::store::sink::{FileOptions, FileSink, Sink, rotated_files};
use graphgate::audit::{Audit, Entry, Fingerprinter};
use serde_json::Value;

fn temp_log() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graphgate-chain-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit.jsonl")
}

fn fp() -> Fingerprinter {
    Fingerprinter::new(&[9u8; 32]).unwrap()
}

fn entry(i: usize) -> Entry {
    Entry {
        audit_id: format!("req-{i}"),
        time: "2026-11-28T10:00:00.000000Z".into(),
        caller: Some("rooms-rotator".into()),
        ..Entry::default()
    }
}

/// A log of `n` records at `path` (rotating past `max` bytes), closed.
async fn write_log(path: &Path, n: usize, max: u64) {
    let audit = Audit::open(path, max, fp()).unwrap();
    for i in 0..n {
        audit.write_durable(entry(i)).await.unwrap();
    }
    audit.close().await;
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn save(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn problem(report: &Report) -> (usize, Option<u64>, Problem) {
    let (pos, p) = report.problem.clone().expect("tampering detected");
    (pos.line, pos.seq, p)
}

async fn tampered(edit: impl FnOnce(&mut Vec<String>)) -> Report {
    let path = temp_log();
    write_log(&path, 10, 1 << 30).await;
    let mut l = lines(&path);
    edit(&mut l);
    save(&path, &l);
    verify(&[path]).unwrap()
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let path = temp_log();
    write_log(&path, 10, 1 << 30).await;
    let report = verify(&[path]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.seq_range), (10, Some((1, 10))));
}

#[tokio::test]
async fn each_kind_of_tampering_is_found_at_its_position() {
    // Changed content.
    let r = tampered(|l| l[3] = l[3].replace("req-3", "req-X")).await;
    assert_eq!(problem(&r), (4, Some(4), Problem::Altered));
    // Changed content with a recomputed hash: the next record no longer chains to it.
    let r = tampered(|l| {
        let mut v: Value = serde_json::from_str(&l[3].replace("req-3", "req-X")).unwrap();
        v["hash"] = Value::String(hash_of(&v));
        l[3] = String::from_utf8(canonical(&v)).unwrap();
    })
    .await;
    assert_eq!(problem(&r), (4, Some(4), Problem::Rehashed));
    // Deleted.
    let r = tampered(|l| {
        l.remove(4);
    })
    .await;
    assert_eq!(problem(&r), (5, Some(6), Problem::Removed { count: 1 }));
    // Swapped.
    let r = tampered(|l| l.swap(4, 5)).await;
    assert_eq!(problem(&r), (5, Some(6), Problem::Reordered));
    // A copy of an earlier record inserted.
    let r = tampered(|l| {
        let copy = l[1].clone();
        l.insert(6, copy);
    })
    .await;
    assert_eq!(problem(&r), (7, Some(2), Problem::Inserted));
    // A forged record that chains correctly to its predecessor.
    let r = tampered(|l| {
        let before: Value = serde_json::from_str(&l[5]).unwrap();
        let mut forged: Value = serde_json::from_str(&l[6]).unwrap();
        forged["audit_id"] = "forged".into();
        forged["prev_hash"] = before["hash"].clone();
        forged["hash"] = Value::String(hash_of(&forged));
        l.insert(6, String::from_utf8(canonical(&forged)).unwrap());
    })
    .await;
    assert_eq!(problem(&r), (7, Some(7), Problem::Inserted));
    // The first record removed: the chain no longer starts at genesis... but seq 2 may
    // legitimately start a later file, so the range shows it.
    let r = tampered(|l| {
        l.remove(0);
    })
    .await;
    assert_eq!(r.seq_range, Some((2, 10)));
}

#[tokio::test]
async fn a_torn_tail_is_a_crash_not_tampering() {
    let path = temp_log();
    write_log(&path, 5, 1 << 30).await;
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"seq":6,"prev_hash":"ab"#);
    std::fs::write(&path, &text).unwrap();
    let report = verify(std::slice::from_ref(&path)).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].line, 6);

    // Restarting sets the torn file aside and continues the chain in a new one.
    write_log(&path, 3, 1 << 30).await;
    let mut files = rotated_files(&path).unwrap();
    assert_eq!(files.len(), 1);
    files.push(path.clone());
    let report = verify(&files).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.seq_range, Some((1, 8)));
}

#[tokio::test]
async fn the_chain_continues_across_rotation_and_restarts() {
    let path = temp_log();
    write_log(&path, 12, 800).await;
    write_log(&path, 12, 800).await;
    let mut files = rotated_files(&path).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    files.push(path.clone());
    files.reverse(); // any order: files are chained by sequence number
    let report = verify(&files).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.seq_range, Some((1, 24)));

    // A whole middle file removed.
    let mut files = rotated_files(&path).unwrap();
    let gone = files.remove(1);
    let report = verify(&files).unwrap();
    assert!(
        matches!(problem(&report).2, Problem::Removed { .. }),
        "{gone:?} {report:?}"
    );
    assert_eq!(
        problem(&report).0,
        1,
        "reported at the next file's first line"
    );
}

/// A file sink that can be told to fail (writing half a batch first), counting syncs.
struct Flaky {
    inner: FileSink,
    fail: Arc<AtomicBool>,
    syncs: Arc<AtomicUsize>,
    gate: Option<std::sync::mpsc::Receiver<()>>,
    /// Records in the first batch appended.
    first_batch: Arc<AtomicUsize>,
}

impl Sink for Flaky {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            self.inner.append(&bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::other("disk full"));
        }
        let records = bytes.iter().filter(|b| **b == b'\n').count();
        let _ = self
            .first_batch
            .compare_exchange(0, records, Ordering::SeqCst, Ordering::SeqCst);
        self.inner.append(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync()
    }

    fn durable(&mut self, head: &ChainState) -> std::io::Result<()> {
        self.inner.durable(head)
    }

    fn close(&mut self, head: &ChainState) -> std::io::Result<()> {
        self.inner.close(head)
    }
}

fn file_options() -> FileOptions {
    FileOptions {
        max_file_bytes: 1 << 30,
        retain_files: None,
        keep_unshipped: false,
    }
}

type Switches = (Arc<AtomicBool>, Arc<AtomicUsize>, Arc<AtomicUsize>);

fn flaky(path: &Path, gate: Option<std::sync::mpsc::Receiver<()>>) -> (Audit, Switches) {
    let (inner, state) = FileSink::open(path, file_options(), fp()).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicUsize::new(0));
    let first_batch = Arc::new(AtomicUsize::new(0));
    let sink = Flaky {
        first_batch: Arc::clone(&first_batch),
        inner,
        fail: Arc::clone(&fail),
        syncs: Arc::clone(&syncs),
        gate,
    };
    let audit = Audit::with_sink(Box::new(sink), state, fp()).unwrap();
    (audit, (fail, syncs, first_batch))
}

#[tokio::test]
async fn a_failed_write_is_refused_rolled_back_and_recovered_from() {
    let path = temp_log();
    let (audit, (fail, _, _)) = flaky(&path, None);
    audit.write_durable(entry(0)).await.unwrap();
    assert_eq!(audit.status(), "ok");
    fail.store(true, Ordering::SeqCst);
    assert!(audit.write_durable(entry(1)).await.is_err());
    assert_eq!(audit.status(), "failing");
    fail.store(false, Ordering::SeqCst);
    audit.write_durable(entry(2)).await.unwrap();
    assert_eq!(audit.status(), "ok");
    audit.close().await;
    let report = verify(std::slice::from_ref(&path)).unwrap();
    assert!(report.is_ok() && report.torn.is_empty(), "{report:?}");
    assert_eq!(
        report.seq_range,
        Some((1, 2)),
        "the failed record left nothing behind"
    );
    assert!(lines(&path)[1].contains("req-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs() {
    let path = temp_log();
    let (gate_tx, gate) = std::sync::mpsc::channel();
    let (audit, (_, syncs, first_batch)) = flaky(&path, Some(gate));
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let audit = audit.clone();
            tokio::spawn(async move { audit.write_durable(entry(i)).await.unwrap() })
        })
        .collect();
    // The first batch's fsync is held until every other writer is queued behind it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while first_batch.load(Ordering::SeqCst) == 0
        || audit.queued() + first_batch.load(Ordering::SeqCst) < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers never all queued behind the first batch"
        );
        tokio::task::yield_now().await;
    }
    gate_tx.send(()).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    // Queued means a channel slot is taken; a sender may hold its slot a moment before its
    // record is visible, so the writer may need one more round (or, if every record was
    // already visible when the first batch was taken, only one).
    let syncs = syncs.load(Ordering::SeqCst);
    assert!((1..=3).contains(&syncs), "200 records took {syncs} fsyncs");
    audit.close().await;
    assert!(verify(&[path]).unwrap().is_ok());
}

/// An outcome record nobody waits for reaches the disk (synced) on its own, without a flush
/// or a later intent to carry it.
#[tokio::test]
async fn a_record_nobody_waits_for_is_written_on_its_own() {
    let path = temp_log();
    let audit = Audit::open(&path, 1 << 30, fp()).unwrap();
    audit.write(entry(1)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let written = loop {
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("\"req-1\"") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not written within 10 s"
        );
        tokio::task::yield_now().await;
    };
    assert!(written.ends_with('\n'));
    assert!(verify(std::slice::from_ref(&path)).unwrap().is_ok());
    audit.close().await;
}

/// Records queued without waiting are all on disk, in the chain, once a flush returns.
#[tokio::test]
async fn a_flush_covers_every_record_queued_before_it() {
    let path = temp_log();
    let audit = Audit::open(&path, 1 << 30, fp()).unwrap();
    for i in 0..3000 {
        audit.write(entry(i)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let records = lines(&path);
    assert_eq!(records.len(), 3000);
    let report = verify(std::slice::from_ref(&path)).unwrap();
    assert_eq!(report.seq_range, Some((1, 3000)));
    audit.close().await;
}
