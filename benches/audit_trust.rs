//! What audit trust costs, measured: a checkpoint (its signature alone, and signed, appended
//! and synced), 10,000 records written with and without checkpoints, `audit verify`'s
//! throughput on a large log (the hash chain, and with the Merkle tree's root), and the console's pages over that log (1,000,000 records by
//! default; `GRAPHGATE_BENCH_RECORDS` sets another size).
//!
//!     cargo bench --bench audit_trust
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark times real work: the monotonic clock, not a pausable one.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graphgate::audit::checkpoints::checkpoint::CheckpointConfig;
use graphgate::audit::checkpoints::checkpointer::Checkpointer;
use graphgate::audit::checkpoints::note::NoteSigner;
use graphgate::audit::records::chain::ChainState;
use graphgate::audit::store::sink::Checkpoints;
use graphgate::audit::{Audit, AuditConfig, Entry, Fingerprinter, Kind};
use graphgate::console::Console;

#[path = "support/audit_log.rs"]
mod audit_log;

/// Records written per measured iteration of the write benchmarks.
const WRITES: u64 = 10_000;
/// The gateway's default rotation size.
const FILE_BYTES: usize = 64 * 1024 * 1024;

/// A fresh directory under the system's temporary directory.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graphgate-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn checkpoints(every_records: u64) -> CheckpointConfig {
    let (signer, _) = NoteSigner::generate("graphgate.bench/audit").unwrap();
    CheckpointConfig {
        signer: Arc::new(signer),
        every_records,
        interval: Duration::from_secs(3600),
        push: None,
        latest: Default::default(),
    }
}

/// One checkpoint: the Ed25519 signature alone, and signed, appended and fdatasynced.
fn checkpoint(c: &mut Criterion) {
    let config = checkpoints(1000);
    let dir = scratch("checkpoint");
    let mut g = c.benchmark_group("checkpoint");
    g.bench_function("sign", |b| {
        let body =
            "graphgate.bench/audit/a.jsonl\n1000\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        b.iter(|| config.signer.sign(black_box(body)).unwrap())
    });
    let log = dir.join("a.jsonl");
    std::fs::write(&log, "").unwrap();
    let tree = graphgate::audit::checkpoints::leaves::open_for(&log, 0).unwrap();
    let mut writer = Checkpointer::open(&log, config.clone(), tree).unwrap();
    let mut state = ChainState::default();
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    g.bench_function("sign_append_sync", |b| {
        b.iter(|| {
            // One new record, taken into the tree, then the checkpoint: waits until it is
            // on disk.
            let mut line = state.seal(&request(state.seq)).unwrap();
            line.push(b'\n');
            std::io::Write::write_all(&mut file, &line).unwrap();
            writer.close(&state);
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn request(i: u64) -> Entry {
    Entry {
        kind: Some(Kind::Request),
        time: format!("2026-11-28T10:{:02}:{:02}.000000Z", i / 60 % 60, i % 60),
        audit_id: format!("req-{i}"),
        caller: Some("rooms-rotator".into()),
        ..Entry::default()
    }
}

/// `WRITES` records through the gateway's audit writer (group commit, fsync), with no
/// checkpoints and with one every 1000 records (the default).
fn audit_write(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = scratch("write");
    let mut g = c.benchmark_group("audit_write");
    g.sample_size(10).throughput(Throughput::Elements(WRITES));
    for (name, config) in [
        ("no_checkpoints", AuditConfig::default()),
        (
            "checkpoint_every_1000",
            AuditConfig {
                checkpoints: Some(checkpoints(1000)),
                ..AuditConfig::default()
            },
        ),
    ] {
        let mut run = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let log = dir.join(format!("{name}-{run}.jsonl"));
                    total += rt.block_on(write_log(&log, &config));
                }
                total
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `WRITES` records to a new log and closes it; the time from open to closed.
async fn write_log(log: &Path, config: &AuditConfig) -> Duration {
    let fingerprinter = Fingerprinter::new(&[7; 32]).unwrap();
    let started = Instant::now();
    let audit = Audit::open_with(log, config, fingerprinter).unwrap();
    for i in 0..WRITES {
        audit.write(request(i)).await.unwrap();
    }
    audit.flush().await.unwrap();
    audit.close().await;
    started.elapsed()
}

/// The large log: `audit verify`'s chain check over every file, and the console's pages.
fn large_log(c: &mut Criterion) {
    let records = std::env::var("GRAPHGATE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64);
    let dir = scratch("large");
    let log = dir.join("audit.jsonl");
    let started = Instant::now();
    audit_log::generate(&log, records, FILE_BYTES);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    eprintln!(
        "large log: {records} records, {} MB in {} files, generated in {:.1?}",
        bytes / 1_000_000,
        files.len(),
        started.elapsed()
    );
    let mut g = c.benchmark_group("verify");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(records));
    g.bench_function(format!("{records}_records"), |b| {
        b.iter(|| {
            let report = graphgate::audit::read::verify::verify(&files).unwrap();
            assert!(report.problem.is_none());
            report
        })
    });
    // What `audit verify --public-key` does: also each record's Merkle leaf hash, folded
    // into the tree's root.
    g.bench_function(format!("{records}_records_and_merkle_root"), |b| {
        b.iter(|| {
            let (report, leaves) =
                graphgate::audit::read::verify::verify_with_leaves(&files, &[], true).unwrap();
            assert!(report.problem.is_none());
            assert_eq!(leaves.len() as u64, records);
            let mut roots = graphgate::audit::checkpoints::tree::Roots::default();
            for leaf in leaves {
                roots.push(leaf).unwrap();
            }
            roots.root().unwrap()
        })
    });
    g.finish();
    console_pages(c, &log, &files, records);
    // GRAPHGATE_BENCH_KEEP=1 keeps the log, to time `graphgate audit verify` on it.
    match std::env::var_os("GRAPHGATE_BENCH_KEEP") {
        Some(_) => eprintln!("kept the large log in {}", dir.display()),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// CPU seconds this process has used (user and system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // Clock ticks: 100 a second on Linux.
    fields.iter().sum::<f64>() / 100.0
}

/// The console's pages over the log, once its index is built. The index build is timed
/// (wall and CPU) beside one run of what `audit verify --public-key` does over the same
/// files (the chain and the Merkle root), so the two compare under the same load.
fn console_pages(c: &mut Criterion, log: &Path, files: &[PathBuf], records: u64) {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let (report, leaves) =
        graphgate::audit::read::verify::verify_with_leaves(files, &[], true).unwrap();
    assert!(report.problem.is_none());
    let mut roots = graphgate::audit::checkpoints::tree::Roots::default();
    for leaf in leaves {
        roots.push(leaf).unwrap();
    }
    black_box(roots.root().unwrap());
    eprintln!(
        "audit verify with the Merkle root over {records} records: {:.1?} ({:.1} s CPU)",
        started.elapsed(),
        cpu_seconds() - cpu
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let console = rt.block_on(async {
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let console = Console::start(log, None, None);
        while console.index().last_seq() < records {
            assert!(started.elapsed() < Duration::from_secs(900), "not indexed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "console index of {records} records built in {:.1?} ({:.1} s CPU)",
            started.elapsed(),
            cpu_seconds() - cpu
        );
        let chain = console.index().chain();
        assert_eq!(
            (chain.verified_to, chain.broken),
            (records, None),
            "the index checked every record's chain and hash"
        );
        console
    });
    let history = format!("/audit/device/{}", audit_log::device(4242));
    let rare = format!("device={}", audit_log::RARE_DEVICE);
    let pages: [(&str, &str, Option<&str>); 4] = [
        ("first_page", "/audit", None),
        ("rare_device_every_row_scanned", "/audit", Some(&rare)),
        (
            "caller_and_decision",
            "/audit",
            Some("caller=other-service&decision=denied"),
        ),
        ("device_history", &history, None),
    ];
    let mut g = c.benchmark_group(format!("console_{records}_records"));
    for (name, path, query) in pages {
        let rows = rt.block_on(rows(&console, path, query));
        assert!(rows > 0, "{name}: no rows");
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(rows_of(console.handle(path, query))))
        });
    }
    g.finish();
    drop(console);
}

async fn rows(console: &Console, path: &str, query: Option<&str>) -> usize {
    rows_of(console.handle(path, query)).await
}

/// The table rows of a console page (the whole response is read, as a browser would).
async fn rows_of(resp: http::Response<http_body_util::Full<bytes::Bytes>>) -> usize {
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body)
        .matches("<tr data-seq")
        .count()
}

criterion_group!(benches, checkpoint, audit_write, large_log);
criterion_main!(benches);
