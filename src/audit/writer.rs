//! The audit writer: one thread owns the sink. Requests queue entries on a bounded channel;
//! the thread takes everything queued, writes it, fsyncs once and acknowledges the whole
//! batch (group commit). A failed write acknowledges every entry of the batch with an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::chain::ChainState;
use super::record::Entry;
use super::sink::Sink;

/// Most entries written per fsync.
const MAX_BATCH: usize = 4096;
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
    mut state: ChainState,
    healthy: &AtomicBool,
) {
    // The sink is dropped (file closed, lock released) when this returns.
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = commit(sink.as_mut(), &mut state, &batch);
        let ok = result.is_ok();
        let records = batch.iter().filter(|j| j.entry.is_some()).count();
        if records > 0 {
            healthy.store(ok, Ordering::Relaxed);
            crate::metrics::audit_write(started.elapsed(), records, ok);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, records = batch.len(), "audit write failed; privileged calls are refused until it succeeds");
        }
        let mut seq = result.clone();
        for job in batch {
            if let Some(ack) = job.ack {
                let _ = ack.send(seq.clone());
            }
            if job.entry.is_some() {
                seq = seq.map(|s| s + 1);
            }
        }
    }
}

/// Seals and writes a batch; the chain state advances only once it is durable.
fn commit(sink: &mut dyn Sink, state: &mut ChainState, batch: &[Job]) -> Result<u64, WriteError> {
    let mut next = state.clone();
    let first = next.seq + 1;
    let mut buf = Vec::with_capacity(batch.len() * 1024);
    for entry in batch.iter().filter_map(|j| j.entry.as_ref()) {
        let line = next
            .seal(entry)
            .map_err(|e| WriteError::Io(e.to_string()))?;
        buf.extend_from_slice(&line);
        buf.push(b'\n');
    }
    if buf.is_empty() {
        return Ok(first);
    }
    sink.append(&buf)
        .and_then(|()| sink.sync())
        .map_err(|e| WriteError::Io(e.to_string()))?;
    *state = next;
    Ok(first)
}
