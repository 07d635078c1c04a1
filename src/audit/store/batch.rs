//! The writer's group-commit batch: records sealed but not yet durable, who waits for
//! them, and committing them with one write and one fsync. A failed commit answers every
//! waiter with the error, and logs (by audit id) and counts every record nobody waited for.

use crate::clock::Instant;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::chain::ChainState;
use super::queue::{Ack, DEFER, DEFER_BYTES, Deferred, Job, MAX_BATCH, WriteError};
use super::record::{Entry, Kind};
use super::sampler::{self, Sampler};
use super::sink::Sink;

/// Records sealed but not yet durable, and who waits for them.
pub(super) struct Pending {
    /// The chain as it stands on disk.
    pub(super) durable: ChainState,
    /// The chain including the sealed records in `bytes`.
    sealed: ChainState,
    bytes: Vec<u8>,
    records: usize,
    /// Entries taken since the last commit (records and flush markers).
    batched: usize,
    /// Acknowledgements owed once `bytes` is durable, with the sequence number each one gets.
    pub(super) acks: Vec<(oneshot::Sender<Result<u64, WriteError>>, u64)>,
    /// Sequence numbers of the records somebody waits for (the rest are reported lost if
    /// the batch fails).
    awaited: Vec<u64>,
    /// When the oldest record nobody waits for must be on disk.
    pub(super) deadline: Option<Instant>,
    /// A record could not be sealed; the batch fails.
    error: Option<WriteError>,
    /// A stop was asked for; acknowledged once everything is durable and the sink closed.
    pub(super) stop: Option<Ack>,
}

impl Pending {
    pub(super) fn new(state: ChainState) -> Self {
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
    pub(super) fn take(&mut self, job: Job) {
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
    pub(super) fn take_summaries(&mut self, samplers: &[Sampler; 3], all: bool) {
        let now = Instant::now();
        for s in samplers {
            for (key, count) in s.sweep(now, all) {
                self.seal(&sampler::summary(&key, count, s));
                self.unawaited();
            }
        }
    }

    /// Takes whatever else is queued, up to [`MAX_BATCH`] since the last commit (or a stop).
    pub(super) fn take_queued(&mut self, rx: &mut mpsc::Receiver<Job>) {
        while self.batched < MAX_BATCH && self.stop.is_none() {
            match rx.try_recv() {
                Ok(job) => self.take(job),
                Err(_) => break,
            }
        }
    }

    /// Seals the records left in `deferred`.
    pub(super) fn take_deferred(&mut self, deferred: &Deferred) {
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
    pub(super) fn must_commit(&self) -> bool {
        !self.acks.is_empty()
            || self.bytes.len() >= DEFER_BYTES
            || self.error.is_some()
            || self.deadline.is_some_and(|at| at <= Instant::now())
    }

    /// Writes and syncs everything pending, then answers everyone waiting. On failure the
    /// chain goes back to what is on disk, and every record nobody waited for is logged (by
    /// audit id) and counted as lost.
    pub(super) fn commit(
        &mut self,
        sink: &mut dyn Sink,
        healthy: &AtomicBool,
    ) -> Result<(), WriteError> {
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
