//! The audit writer: one thread owns the sink. Requests queue entries on a bounded channel;
//! the thread takes everything queued, seals it, and when anybody waits (an intent, a
//! flush) writes and fsyncs once for the whole batch (group commit). Records nobody waits
//! for (outcomes) ride the next commit, or are synced within [`DEFER`]. A failed write
//! acknowledges every waiting entry with an error, and logs and counts every record nobody
//! waited for as lost. The thread also tells the sink how far the chain is durable (for its
//! anchor), writes the sampler's `suppressed` counts, and on a stop closes the sink cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::chain::ChainState;
use super::record::{Entry, Kind};
use super::sampler::{self, Sampler};
use super::sink::Sink;

/// Most entries taken from the queue before they are written.
const MAX_BATCH: usize = 4096;
/// Longest a record nobody waits for (an outcome) stays in memory before it is written
/// and synced; under load it rides the next intent's commit long before this.
const DEFER: Duration = Duration::from_millis(20);
/// Pending bytes that force a commit even if nobody waits.
const DEFER_BYTES: usize = 256 * 1024;
/// Records nobody waits for that may be left for the writer before writers queue instead.
const DEFER_MAX: usize = 1024;
/// Entries that may wait for the writer before senders are held back.
const QUEUE: usize = 8192;
/// How often the samplers are asked for the counts of callers that went quiet.
const SWEEP: Duration = Duration::from_millis(250);

/// The audit sink could not make a record durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Writing or syncing failed.
    #[error("the audit log could not be written: {0}")]
    Io(String),
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Stopped,
}

type Ack = oneshot::Sender<Result<u64, WriteError>>;

// Records are the common case and travel inline, as before (no allocation per record);
// flushes and stops are rare, so their slack in a queue slot costs nothing.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// A record, acknowledged with its sequence number once durable if anybody waits.
    Record { entry: Entry, ack: Option<Ack> },
    /// Acknowledged once everything queued before it is durable.
    Flush(Ack),
    /// Make everything durable, close the sink cleanly, and stop.
    Stop(Ack),
}

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    deferred: Arc<Deferred>,
    healthy: Arc<AtomicBool>,
}

/// Records nobody waits for, left for the writer to pick up on its next wake (an intent, a
/// flush, or its [`DEFER`] timer) without waking it: on a busy single core, waking the writer
/// for every outcome cost a context switch pair per request.
#[derive(Default)]
struct Deferred(Mutex<Vec<Entry>>);

impl Deferred {
    /// Leaves `entry` for the writer, or hands it back when [`DEFER_MAX`] are already waiting.
    fn push(&self, entry: Entry) -> Option<Entry> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= DEFER_MAX {
            return Some(entry);
        }
        queue.push(entry);
        None
    }

    fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Writer {
    /// Starts the writer thread over `sink`, continuing the chain from `state`, writing the
    /// counts `samplers` suppressed. The receiver resolves once the thread has stopped and
    /// released the sink.
    pub fn spawn(
        sink: Box<dyn Sink>,
        state: ChainState,
        samplers: Arc<[Sampler; 2]>,
    ) -> std::io::Result<(Writer, oneshot::Receiver<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stopped_tx, stopped) = oneshot::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let deferred = Arc::new(Deferred::default());
        let (flag, left) = (Arc::clone(&healthy), Arc::clone(&deferred));
        std::thread::Builder::new()
            .name("graphgate-audit".into())
            .spawn(move || {
                let ends = Ends {
                    deferred: &left,
                    samplers: &samplers,
                    healthy: &flag,
                };
                run(sink, rx, state, &ends);
                let _ = stopped_tx.send(());
            })?;
        Ok((
            Writer {
                tx,
                deferred,
                healthy,
            },
            stopped,
        ))
    }

    /// Entries waiting for the writer.
    pub fn queued(&self) -> usize {
        let deferred = self.deferred.0.lock().map_or(0, |q| q.len());
        self.tx.max_capacity() - self.tx.capacity() + deferred
    }

    /// Writes `entry` and waits until it is durable; returns its sequence number.
    pub async fn write_durable(&self, entry: Entry) -> Result<u64, WriteError> {
        let (ack, done) = oneshot::channel();
        let job = Job::Record {
            entry,
            ack: Some(ack),
        };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues `entry` without waiting for the disk; it is durable within [`DEFER`] (sooner
    /// under load). Waits only if the writer is that far behind.
    pub async fn write(&self, entry: Entry) -> Result<(), WriteError> {
        if self.tx.is_closed() {
            return Err(WriteError::Stopped);
        }
        let Some(entry) = self.deferred.push(entry) else {
            return Ok(());
        };
        // Too many left waiting: go through the queue, which wakes the writer and holds us back.
        let job = Job::Record { entry, ack: None };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)
    }

    /// Waits until everything queued so far is durable.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Flush(ack))
            .await
            .map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?.map(|_| ())
    }

    /// Makes everything queued so far durable, closes the sink cleanly (a file's anchor
    /// then records a clean shutdown) and stops the writer; later writes fail.
    pub async fn stop(&self) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Stop(ack))
            .await
            .map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?.map(|_| ())
    }

    /// Whether the last write succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.tx.is_closed()
    }
}

/// What the writer thread shares with the handles, besides the queue.
struct Ends<'a> {
    deferred: &'a Deferred,
    samplers: &'a [Sampler; 2],
    healthy: &'a AtomicBool,
}

fn run(mut sink: Box<dyn Sink>, mut rx: mpsc::Receiver<Job>, state: ChainState, ends: &Ends<'_>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "the audit writer cannot start; privileged calls are refused");
            ends.healthy.store(false, Ordering::Relaxed);
            return;
        }
    };
    let mut log = Pending::new(state);
    let stop = runtime.block_on(async {
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            // Wake for a job, for the oldest unsynced record's deadline, or to look for
            // deferred records every `DEFER` (they do not wake the writer themselves).
            let wait = log
                .deadline
                .map_or(DEFER, |at| at.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(job)) => {
                    log.take(job);
                    log.take_queued(&mut rx);
                }
                Ok(None) => return None,
                Err(_elapsed) => {}
            }
            if !log.acks.is_empty() {
                // Group commit on a busy core: let the request threads run what is ready
                // (and queue their intents) before paying for the fsync. Returns at once
                // when nothing else wants this core.
                std::thread::yield_now();
                log.take_queued(&mut rx);
            }
            log.take_deferred(ends.deferred);
            if Instant::now() >= next_sweep {
                next_sweep = Instant::now() + SWEEP;
                log.take_summaries(ends.samplers, false);
            }
            if log.stop.is_some() {
                return log.stop.take();
            }
            if log.must_commit() {
                let _ = log.commit(sink.as_mut(), ends.healthy);
            }
            if let Err(e) = sink.durable(&log.durable) {
                tracing::error!(error = %e, "could not update the audit log's anchor");
            }
        }
    });
    // Stopped, or every sender is gone: whatever is still in memory goes to disk, and the
    // sink is closed cleanly if it all got there.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        log.take(job);
    }
    log.take_deferred(ends.deferred);
    log.take_summaries(ends.samplers, true);
    let result = log.commit(sink.as_mut(), ends.healthy);
    let result = result.and_then(|()| {
        sink.close(&log.durable)
            .map_err(|e| WriteError::Io(format!("closing the audit log: {e}")))
    });
    if let Err(e) = &result {
        tracing::error!(error = %e, "the audit log was not closed cleanly");
    }
    for ack in stop.into_iter().chain(log.stop.take()) {
        let _ = ack.send(result.clone().map(|()| log.durable.seq));
    }
}

/// Records sealed but not yet durable, and who waits for them.
struct Pending {
    /// The chain as it stands on disk.
    durable: ChainState,
    /// The chain including the sealed records in `bytes`.
    sealed: ChainState,
    bytes: Vec<u8>,
    records: usize,
    /// Entries taken since the last commit (records and flush markers).
    batched: usize,
    /// Acknowledgements owed once `bytes` is durable, with the sequence number each one gets.
    acks: Vec<(oneshot::Sender<Result<u64, WriteError>>, u64)>,
    /// Sequence numbers of the records somebody waits for (the rest are reported lost if
    /// the batch fails).
    awaited: Vec<u64>,
    /// When the oldest record nobody waits for must be on disk.
    deadline: Option<Instant>,
    /// A record could not be sealed; the batch fails.
    error: Option<WriteError>,
    /// A stop was asked for; acknowledged once everything is durable and the sink closed.
    stop: Option<Ack>,
}

impl Pending {
    fn new(state: ChainState) -> Self {
        Pending {
            durable: state.clone(),
            sealed: state,
            bytes: Vec::with_capacity(64 * 1024),
            records: 0,
            batched: 0,
            acks: Vec::new(),
            awaited: Vec::new(),
            deadline: None,
            error: None,
            stop: None,
        }
    }

    /// Seals `job`'s record (if any) after those already pending.
    fn take(&mut self, job: Job) {
        self.batched += 1;
        match job {
            Job::Record {
                entry,
                ack: Some(ack),
            } => {
                if self.seal(&entry) {
                    self.awaited.push(self.sealed.seq);
                }
                self.acks.push((ack, self.sealed.seq));
            }
            Job::Record { entry, ack: None } => {
                self.seal(&entry);
                self.unawaited();
            }
            Job::Flush(ack) => self.acks.push((ack, self.sealed.seq)),
            Job::Stop(ack) => self.stop = Some(ack),
        }
    }

    /// Seals the `suppressed` records of the samplers' quiet callers (all, if `all`).
    fn take_summaries(&mut self, samplers: &[Sampler; 2], all: bool) {
        let now = Instant::now();
        for s in samplers {
            for (key, count) in s.sweep(now, all) {
                self.seal(&sampler::summary(&key, count, s));
                self.unawaited();
            }
        }
    }

    /// Takes whatever else is queued, up to [`MAX_BATCH`] since the last commit (or a stop).
    fn take_queued(&mut self, rx: &mut mpsc::Receiver<Job>) {
        while self.batched < MAX_BATCH && self.stop.is_none() {
            match rx.try_recv() {
                Ok(job) => self.take(job),
                Err(_) => break,
            }
        }
    }

    /// Seals the records left in `deferred`.
    fn take_deferred(&mut self, deferred: &Deferred) {
        for entry in deferred.take() {
            self.seal(&entry);
            self.unawaited();
        }
    }

    /// Seals `entry` into the batch; returns whether it was.
    fn seal(&mut self, entry: &Entry) -> bool {
        match self.sealed.seal_into(entry, &mut self.bytes) {
            Ok(()) => {
                self.bytes.push(b'\n');
                self.records += 1;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, audit_id = %entry.audit_id, "audit record lost: it could not be serialised");
                crate::metrics::audit_records_lost(1);
                self.error = Some(WriteError::Io(e.to_string()));
                false
            }
        }
    }

    /// A record nobody waits for is pending: it must be on disk within [`DEFER`].
    fn unawaited(&mut self) {
        self.deadline.get_or_insert_with(|| Instant::now() + DEFER);
    }

    /// Somebody waits, enough has piled up, or the oldest record has waited long enough.
    fn must_commit(&self) -> bool {
        !self.acks.is_empty()
            || self.bytes.len() >= DEFER_BYTES
            || self.error.is_some()
            || self.deadline.is_some_and(|at| at <= Instant::now())
    }

    /// Writes and syncs everything pending, then answers everyone waiting. On failure the
    /// chain goes back to what is on disk, and every record nobody waited for is logged (by
    /// audit id) and counted as lost.
    fn commit(&mut self, sink: &mut dyn Sink, healthy: &AtomicBool) -> Result<(), WriteError> {
        let started = Instant::now();
        let result = match self.error.take() {
            Some(e) => Err(e),
            None if self.bytes.is_empty() => Ok(()),
            None => sink
                .append(&self.bytes)
                .and_then(|()| sink.sync())
                .map_err(|e| WriteError::Io(e.to_string())),
        };
        if self.records > 0 {
            healthy.store(result.is_ok(), Ordering::Relaxed);
            crate::metrics::audit_write(started.elapsed(), self.records, result.is_ok());
        }
        match &result {
            Ok(()) => self.durable = self.sealed.clone(),
            Err(e) => {
                tracing::error!(error = %e, records = self.records, "audit write failed; privileged calls are refused until it succeeds");
                report_lost(&self.bytes, &self.awaited);
                self.sealed = self.durable.clone();
            }
        }
        for (ack, seq) in self.acks.drain(..) {
            let _ = ack.send(result.clone().map(|()| seq));
        }
        self.bytes.clear();
        self.awaited.clear();
        self.records = 0;
        self.batched = 0;
        self.deadline = None;
        result
    }
}

/// The chain fields of a sealed line that say what was lost.
#[derive(serde::Deserialize)]
struct LostRecord {
    seq: u64,
    audit_id: String,
    kind: Option<Kind>,
}

/// Logs each record of a failed batch that nobody waited for, and counts them. Returns how
/// many there were. (Records somebody waited for were refused to their request instead.)
fn report_lost(batch: &[u8], awaited: &[u64]) -> usize {
    let mut lost = 0;
    for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(record) = serde_json::from_slice::<LostRecord>(line) else {
            continue;
        };
        if awaited.contains(&record.seq) {
            continue;
        }
        lost += 1;
        let kind = record.kind.map_or("-", Kind::as_str);
        tracing::error!(audit_id = %record.audit_id, kind, "audit record lost: its batch could not be written");
    }
    crate::metrics::audit_records_lost(lost);
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose every write fails.
    struct Full;

    impl Sink for Full {
        fn append(&mut self, _: &[u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("No space left on device"))
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(id: &str, kind: Kind) -> Entry {
        Entry {
            kind: Some(kind),
            audit_id: id.into(),
            ..Entry::default()
        }
    }

    #[test]
    fn a_failed_batch_reports_exactly_the_records_nobody_waited_for() {
        let mut log = Pending::new(ChainState::default());
        let (ack, mut answer) = oneshot::channel();
        log.take(Job::Record {
            entry: entry("intent-1", Kind::Intent),
            ack: Some(ack),
        });
        log.take(Job::Record {
            entry: entry("outcome-0", Kind::Outcome),
            ack: None,
        });
        log.take(Job::Record {
            entry: entry("refusal-2", Kind::Request),
            ack: None,
        });
        let batch = log.bytes.clone();
        assert_eq!(report_lost(&batch, &log.awaited), 2);
        let healthy = AtomicBool::new(true);
        assert!(log.commit(&mut Full, &healthy).is_err());
        assert!(!healthy.load(Ordering::Relaxed));
        assert!(matches!(answer.try_recv(), Ok(Err(WriteError::Io(_)))));
        // The chain is back where the disk is.
        assert_eq!(log.sealed, ChainState::default());
        assert!(log.awaited.is_empty() && log.bytes.is_empty());
    }
}
