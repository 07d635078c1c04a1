//! The audit writer: one thread owns the sink. Requests queue entries on a bounded channel;
//! the thread takes everything queued, seals it, and when anybody waits (an intent, a
//! flush) writes and fsyncs once for the whole batch (group commit). Records nobody waits
//! for (outcomes) ride the next commit, or are synced within [`DEFER`]. A failed write
//! acknowledges every waiting entry with an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::chain::ChainState;
use super::record::Entry;
use super::sink::Sink;

/// Most entries taken from the queue before they are written.
const MAX_BATCH: usize = 4096;
/// Longest a record nobody waits for (an outcome) stays in memory before it is written
/// and synced; under load it rides the next intent's commit long before this.
const DEFER: Duration = Duration::from_millis(20);
/// Pending bytes that force a commit even if nobody waits.
const DEFER_BYTES: usize = 256 * 1024;
/// Entries that may wait for the writer before senders are held back.
const QUEUE: usize = 8192;

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

struct Job {
    /// `None`: a flush marker, acknowledged once everything queued before it is durable.
    entry: Option<Entry>,
    ack: Option<oneshot::Sender<Result<u64, WriteError>>>,
}

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer thread over `sink`, continuing the chain from `state`. The
    /// receiver resolves once the thread has stopped and released the sink.
    pub fn spawn(
        sink: Box<dyn Sink>,
        state: ChainState,
    ) -> std::io::Result<(Writer, oneshot::Receiver<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stopped_tx, stopped) = oneshot::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        std::thread::Builder::new()
            .name("graphgate-audit".into())
            .spawn(move || {
                run(sink, rx, state, &flag);
                let _ = stopped_tx.send(());
            })?;
        Ok((Writer { tx, healthy }, stopped))
    }

    /// Entries waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Writes `entry` and waits until it is durable; returns its sequence number.
    pub async fn write_durable(&self, entry: Entry) -> Result<u64, WriteError> {
        let (ack, done) = oneshot::channel();
        let job = Job {
            entry: Some(entry),
            ack: Some(ack),
        };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues `entry` without waiting for the disk (waits only if the queue is full).
    pub async fn write(&self, entry: Entry) -> Result<(), WriteError> {
        let job = Job {
            entry: Some(entry),
            ack: None,
        };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)
    }

    /// Waits until everything queued so far is durable.
    pub async fn flush(&self) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        let job = Job {
            entry: None,
            ack: Some(ack),
        };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)?;
        done.await.map_err(|_| WriteError::Stopped)?.map(|_| ())
    }

    /// Whether the last write succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.tx.is_closed()
    }
}

fn run(
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<Job>,
    state: ChainState,
    healthy: &AtomicBool,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "the audit writer cannot start; privileged calls are refused");
            healthy.store(false, Ordering::Relaxed);
            return;
        }
    };
    let mut log = Pending::new(state);
    runtime.block_on(async {
        loop {
            // Records nobody waits for may sit in memory for at most `DEFER`.
            let next = match log.deadline {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at.into(), rx.recv()).await {
                    Ok(job) => job,
                    Err(_elapsed) => {
                        log.commit(sink.as_mut(), healthy);
                        continue;
                    }
                },
            };
            let Some(first) = next else { break };
            log.take(first);
            while log.batched < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => log.take(job),
                    Err(_) => break,
                }
            }
            if log.must_commit() {
                log.commit(sink.as_mut(), healthy);
            }
        }
    });
    // Every sender is gone: whatever is still in memory goes to disk.
    log.commit(sink.as_mut(), healthy);
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
    /// When the oldest record nobody waits for must be on disk.
    deadline: Option<Instant>,
    /// A record could not be sealed; the batch fails.
    error: Option<WriteError>,
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
            deadline: None,
            error: None,
        }
    }

    /// Seals `job`'s record (if any) after those already pending.
    fn take(&mut self, job: Job) {
        self.batched += 1;
        if let Some(entry) = &job.entry {
            match self.sealed.seal(entry) {
                Ok(line) => {
                    self.bytes.extend_from_slice(&line);
                    self.bytes.push(b'\n');
                    self.records += 1;
                }
                Err(e) => self.error = Some(WriteError::Io(e.to_string())),
            }
        }
        match job.ack {
            Some(ack) => self.acks.push((ack, self.sealed.seq)),
            None => {
                self.deadline
                    .get_or_insert_with(|| Instant::now() + DEFER);
            }
        }
    }

    /// Somebody waits, or enough has piled up.
    fn must_commit(&self) -> bool {
        !self.acks.is_empty() || self.bytes.len() >= DEFER_BYTES || self.error.is_some()
    }

    /// Writes and syncs everything pending, then answers everyone waiting. On failure the
    /// chain goes back to what is on disk and every pending record is reported lost.
    fn commit(&mut self, sink: &mut dyn Sink, healthy: &AtomicBool) {
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
                self.sealed = self.durable.clone();
            }
        }
        for (ack, seq) in self.acks.drain(..) {
            let _ = ack.send(result.clone().map(|()| seq));
        }
        self.bytes.clear();
        self.records = 0;
        self.batched = 0;
        self.deadline = None;
    }
}
