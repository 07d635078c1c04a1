//! The audit log: a durable, hash-chained, secret-free JSON Lines record of every request
//! that reaches operation recognition. [`trail`] collects one request's record,
//! [`writer`] makes records durable with group commit, [`verify`] and [`query`] read logs.

pub mod chain;
pub mod cli;
pub mod fingerprint;
pub mod query;
pub mod record;
pub mod sink;
pub mod trail;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fingerprint::Fingerprinter;
pub use record::{AuditDecision, Entry, Kind, Record};
pub use trail::AuditTrail;
pub use writer::WriteError;

use chain::ChainState;
use sink::{FileSink, Sink};
use writer::Writer;

/// Default largest size of one log file before it is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The audit log, or its explicit absence; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Enabled>>,
}

struct Enabled {
    writer: Writer,
    stopped: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    fingerprinter: Fingerprinter,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Audit(disabled)"),
            Some(e) => write!(f, "Audit({:?})", e.path),
        }
    }
}

impl Audit {
    /// No audit at all: only when explicitly asked for (benchmarks).
    pub fn disabled() -> Self {
        Audit { inner: None }
    }

    /// Opens (creating if needed) the log at `path`, continuing its chain, and starts the
    /// writer. Fails if the file cannot be opened or another process holds it.
    pub fn open(
        path: &Path,
        max_file_bytes: u64,
        fingerprinter: Fingerprinter,
    ) -> std::io::Result<Self> {
        let (sink, state) = FileSink::open(path, max_file_bytes)?;
        let mut audit = Self::with_sink(Box::new(sink), state, fingerprinter)?;
        if let Some(inner) = audit.inner.as_mut().and_then(Arc::get_mut) {
            inner.path = Some(path.to_owned());
        }
        Ok(audit)
    }

    /// An audit log over any sink (tests inject failing ones).
    pub fn with_sink(
        sink: Box<dyn Sink>,
        state: ChainState,
        fingerprinter: Fingerprinter,
    ) -> std::io::Result<Self> {
        let (writer, stopped) = Writer::spawn(sink, state)?;
        Ok(Audit {
            inner: Some(Arc::new(Enabled {
                writer,
                stopped: std::sync::Mutex::new(Some(stopped)),
                fingerprinter,
                path: None,
            })),
        })
    }

    /// Whether records are written at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The log file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().and_then(|i| i.path.as_deref())
    }

    /// Readiness: `"ok"`, `"disabled"` or `"failing"`.
    pub fn status(&self) -> &'static str {
        match &self.inner {
            None => "disabled",
            Some(i) if i.writer.is_healthy() => "ok",
            Some(_) => "failing",
        }
    }

    /// Writes a durable `start` record (proves the log writable at start-up).
    pub async fn write_start(&self, note: &str) -> Result<(), WriteError> {
        let entry = Entry {
            kind: Some(Kind::Start),
            time: record::now_rfc3339(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            note: Some(note.to_owned()),
            ..Entry::default()
        };
        self.write_durable(entry).await.map(|_| ())
    }

    /// Makes everything queued durable, then stops the writer and closes the file. Only
    /// the last handle closes; others just drop.
    pub async fn close(self) {
        let Some(inner) = self.inner else { return };
        let _ = inner.writer.flush().await;
        let Ok(enabled) = Arc::try_unwrap(inner) else {
            return;
        };
        let stopped = enabled.stopped.lock().ok().and_then(|mut s| s.take());
        drop(enabled.writer);
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }

    /// Entries waiting for the writer (0 when disabled).
    pub fn queued(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.writer.queued())
    }

    /// Writes `entry` and waits until it is durable.
    pub async fn write_durable(&self, entry: Entry) -> Result<(), WriteError> {
        match &self.inner {
            None => Ok(()),
            Some(i) => i.writer.write_durable(entry).await.map(|_| ()),
        }
    }

    /// Queues `entry` without waiting for the disk.
    pub async fn write(&self, entry: Entry) -> Result<(), WriteError> {
        match &self.inner {
            None => Ok(()),
            Some(i) => i.writer.write(entry).await,
        }
    }

    /// Waits until every record queued so far is durable.
    pub async fn flush(&self) -> Result<(), WriteError> {
        match &self.inner {
            None => Ok(()),
            Some(i) => i.writer.flush().await,
        }
    }

    pub(crate) fn fingerprinter(&self) -> Option<&Fingerprinter> {
        self.inner.as_ref().map(|i| &i.fingerprinter)
    }
}
