//! The audit writer: one thread owns the sink. Requests queue entries on a bounded channel;
//! the thread takes everything queued, seals it, and when anybody waits (an intent, a
//! flush) writes and fsyncs once for the whole batch (group commit). Records nobody waits
//! for (outcomes) ride the next commit, or are synced within `DEFER` (20 ms). A failed write
//! acknowledges every waiting entry with an error, and logs and counts every record nobody
//! waited for as lost. The thread also tells the sink how far the chain is durable (for its
//! anchor), writes the sampler's `suppressed` counts, and on a stop closes the sink cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::Instant;

use tokio::sync::{mpsc, oneshot};

use super::batch::Pending;
use super::chain::ChainState;
use super::queue::{Ack, DEFER, Deferred, Job, WriteError};
use super::record::Entry;
use super::sampler::Sampler;
use super::sink::Sink;

/// Entries that may wait for the writer before senders are held back.
const QUEUE: usize = 8192;
/// How often the samplers are asked for the counts of callers that went quiet.
const SWEEP: Duration = Duration::from_millis(250);

/// A handle on the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    deferred: Arc<Deferred>,
    healthy: Arc<AtomicBool>,
    /// The sequence number the chain is durable up to (followed by the shipper).
    durable: tokio::sync::watch::Receiver<u64>,
}

impl Writer {
    /// Starts the writer thread over `sink`, continuing the chain from `state`, writing the
    /// counts `samplers` suppressed. The receiver resolves once the thread has stopped and
    /// released the sink.
    pub fn spawn(
        sink: Box<dyn Sink>,
        state: ChainState,
        samplers: Arc<[Sampler; 3]>,
    ) -> std::io::Result<(Writer, oneshot::Receiver<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stopped_tx, stopped) = oneshot::channel();
        let (durable_tx, durable) = tokio::sync::watch::channel(state.seq);
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
                    durable: &durable_tx,
                };
                run(sink, rx, state, &ends);
                let _ = stopped_tx.send(());
            })?;
        Ok((
            Writer {
                tx,
                deferred,
                healthy,
                durable,
            },
            stopped,
        ))
    }

    /// Entries waiting for the writer.
    pub fn queued(&self) -> usize {
        let deferred = self.deferred.len();
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

    /// Queues `entry` without waiting for the disk; it is durable within `DEFER` (20 ms; sooner
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

    /// Follows the sequence number the chain is durable up to.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Whether the last write succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.tx.is_closed()
    }
}

/// What the writer thread shares with the handles, besides the queue.
struct Ends<'a> {
    deferred: &'a Deferred,
    samplers: &'a [Sampler; 3],
    healthy: &'a AtomicBool,
    durable: &'a tokio::sync::watch::Sender<u64>,
}

impl Ends<'_> {
    /// Tells followers (the shipper) how far the chain is durable.
    fn durable_to(&self, seq: u64) {
        self.durable.send_if_modified(|s| {
            let changed = *s != seq;
            *s = seq;
            changed
        });
    }
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
    let stop = runtime.block_on(serve(&mut log, sink.as_mut(), &mut rx, ends));
    close(&mut log, sink.as_mut(), &mut rx, ends, stop);
}

/// Takes and commits jobs until a stop (returned) or until every sender is gone.
async fn serve(
    log: &mut Pending,
    sink: &mut dyn Sink,
    rx: &mut mpsc::Receiver<Job>,
    ends: &Ends<'_>,
) -> Option<Ack> {
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
                log.take_queued(rx);
            }
            Ok(None) => return None,
            Err(_elapsed) => {}
        }
        if !log.acks.is_empty() {
            // Group commit on a busy core: let the request threads run what is ready
            // (and queue their intents) before paying for the fsync. Returns at once
            // when nothing else wants this core.
            std::thread::yield_now();
            log.take_queued(rx);
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
            let _ = log.commit(sink, ends.healthy);
        }
        if let Err(e) = sink.durable(&log.durable) {
            tracing::error!(error = %e, "could not update the audit log's anchor");
        }
        ends.durable_to(log.durable.seq);
    }
}

/// Stopped, or every sender is gone: whatever is still in memory (and every suppressed
/// count) goes to disk, and the sink is closed cleanly if it all got there.
fn close(
    log: &mut Pending,
    sink: &mut dyn Sink,
    rx: &mut mpsc::Receiver<Job>,
    ends: &Ends<'_>,
    stop: Option<Ack>,
) {
    rx.close();
    while let Ok(job) = rx.try_recv() {
        log.take(job);
    }
    log.take_deferred(ends.deferred);
    log.take_summaries(ends.samplers, true);
    let result = log.commit(sink, ends.healthy).and_then(|()| {
        sink.close(&log.durable)
            .map_err(|e| WriteError::Io(format!("closing the audit log: {e}")))
    });
    if let Err(e) = &result {
        tracing::error!(error = %e, "the audit log was not closed cleanly");
    }
    ends.durable_to(log.durable.seq);
    for ack in stop.into_iter().chain(log.stop.take()) {
        let _ = ack.send(result.clone().map(|()| log.durable.seq));
    }
}
