//! What the audit writer's queue carries (records, flushes, a stop), its bounds, and the
//! records left for the writer without waking it: shared by the writer and its batch.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::record::Entry;

/// Most entries taken from the queue before they are written.
pub(super) const MAX_BATCH: usize = 4096;
/// Longest a record nobody waits for (an outcome) stays in memory before it is written
/// and synced; under load it rides the next intent's commit long before this.
pub(super) const DEFER: Duration = Duration::from_millis(20);
/// Pending bytes that force a commit even if nobody waits.
pub(super) const DEFER_BYTES: usize = 256 * 1024;
/// Records nobody waits for that may be left for the writer before writers queue instead.
const DEFER_MAX: usize = 1024;

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

pub(super) type Ack = oneshot::Sender<Result<u64, WriteError>>;

// Records are the common case and travel inline, as before (no allocation per record);
// flushes and stops are rare, so their slack in a queue slot costs nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    /// A record, acknowledged with its sequence number once durable if anybody waits.
    Record { entry: Entry, ack: Option<Ack> },
    /// Acknowledged once everything queued before it is durable.
    Flush(Ack),
    /// Make everything durable, close the sink cleanly, and stop.
    Stop(Ack),
}

/// Records nobody waits for, left for the writer to pick up on its next wake (an intent, a
/// flush, or its [`DEFER`] timer) without waking it: on a busy single core, waking the writer
/// for every outcome cost a context switch pair per request.
#[derive(Default)]
pub(super) struct Deferred(Mutex<Vec<Entry>>);

impl Deferred {
    /// Leaves `entry` for the writer, or hands it back when [`DEFER_MAX`] are already waiting.
    pub(super) fn push(&self, entry: Entry) -> Option<Entry> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= DEFER_MAX {
            return Some(entry);
        }
        queue.push(entry);
        None
    }

    /// How many are waiting.
    pub(super) fn len(&self) -> usize {
        self.0.lock().map_or(0, |q| q.len())
    }

    pub(super) fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
