//! The audit log: a durable, hash-chained, secret-free JSON Lines record of every request
//! that reaches operation recognition (and a sample of failed authentications), and what
//! makes its history one the host cannot rewrite. Its parts, in the order a record meets them:
//! - [`records`]: one request's [`trail`], the [`sampler`] bounding what refusals may write,
//!   keyed [`fingerprint`]s, the [`record`] and its place in the hash [`chain`];
//! - [`store`]: the [`writer`] thread's group commit, the [`sink`] and [`files`], the
//!   [`anchor`], and [`launder`] (a log whose evidence is missing is not continued);
//! - [`checkpoints`]: the log as an RFC 6962 Merkle [`tree`] fed by [`leaves`], signed
//!   [`checkpoint`]s ([`note`], written by the [`checkpointer`], [`push`]ed off the host);
//! - [`witnessing`]: [`witness`]es cosigning them ([`witness_protocol`], [`cosigned`],
//!   [`witness_start`], [`witness_args`]);
//! - [`read`]: [`follow`] a live log, [`verify`] it ([`sweep`], [`ends`]), [`query`] it,
//!   [`receipt`]s and [`tiles`];
//! - [`commands`]: `graphgate audit ...` ([`cli`]) and `serve`'s audit flags ([`serve`]);
//! - off the host besides: [`ship`]ping to an OTLP collector and [`reconcile`] (did the
//!   device action happen?).
//!
//! Every part keeps its flat path (`audit::writer`, `audit::tree`, ...).

pub mod checkpoints;
pub mod commands;
pub mod read;
pub mod reconcile;
pub mod records;
pub mod ship;
pub mod store;
pub mod witnessing;

// The parts, by their old flat names (every path into `audit` stays as it was).
pub use checkpoints::{checkpoint, checkpointer, leaves, note, push, tree};
pub use commands::{checkpoint_cli, cli, receipt_cli, serve, verify_witness};
pub use read::{ends, follow, query, receipt, sweep, tiles, verify};
pub use records::{chain, fingerprint, record, sampler, trail};
pub use store::{anchor, files, launder, sink, writer};
pub use witnessing::{cosigned, witness, witness_args, witness_protocol, witness_start};

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fingerprint::Fingerprinter;
pub use record::{AuditDecision, Entry, Kind, Record};
pub use trail::{AuditTrail, DurableIntent};
pub use writer::WriteError;

use chain::ChainState;
use sampler::{Sample, SampleKey, Sampler, SamplingLimits};
use sink::{FileOptions, FileSink, Sink};
use writer::Writer;

/// Longest a shutdown waits for queued checkpoints to be pushed.
const PUSH_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Default largest size of one log file before it is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How the audit log is kept, and how much refusals may write to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The files: rotation size and retention.
    pub files: FileOptions,
    /// Sampling of refusal records.
    pub sampling: SamplingLimits,
    /// Signed checkpoints beside the log, if a signing key is configured.
    pub checkpoints: Option<checkpoint::CheckpointConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            files: FileOptions {
                max_file_bytes: DEFAULT_MAX_FILE_BYTES,
                retain_files: None,
                keep_unshipped: false,
            },
            sampling: SamplingLimits::default(),
            checkpoints: None,
        }
    }
}

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
    /// Refusals per caller, failed authentications per source (shared with the writer,
    /// which writes their counts).
    samplers: Arc<[Sampler; 2]>,
    /// Checkpoints on their way off the host, drained (briefly) at shutdown.
    push: Option<push::PushQueue>,
    /// Follows up the device actions Graph accepts, when outcome reconciliation is on.
    reconciler: std::sync::OnceLock<reconcile::Handle>,
    /// The witnesses cosigning its checkpoints, if any.
    witnesses: Option<witness::Witnesses>,
    /// The newest signed checkpoint (with a signing key).
    latest: Option<checkpoint::Latest>,
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

    /// Opens (creating if needed) the log at `path` with the default configuration but this
    /// rotation size; see [`Audit::open_with`].
    pub fn open(
        path: &Path,
        max_file_bytes: u64,
        fingerprinter: Fingerprinter,
    ) -> std::io::Result<Self> {
        let mut config = AuditConfig::default();
        config.files.max_file_bytes = max_file_bytes;
        Self::open_with(path, &config, fingerprinter)
    }

    /// Opens (creating if needed) the log at `path`, checks it against its anchor, continues
    /// its chain, and starts the writer. Fails if the file cannot be opened, another process
    /// holds it, or records its anchor vouches for are missing or rewritten.
    pub fn open_with(
        path: &Path,
        config: &AuditConfig,
        fingerprinter: Fingerprinter,
    ) -> std::io::Result<Self> {
        launder::check(path, &fingerprinter, config.checkpoints.is_some())?;
        let (mut sink, state) = FileSink::open(path, config.files.clone(), fingerprinter.clone())?;
        if let Some(checkpoints) = &config.checkpoints {
            sink.checkpoint_with(path, checkpoints.clone(), &state)?;
        }
        let mut audit =
            Self::with_sink_sampled(Box::new(sink), state, fingerprinter, config.sampling)?;
        if let Some(inner) = audit.inner.as_mut().and_then(Arc::get_mut) {
            inner.path = Some(path.to_owned());
            inner.latest = config.checkpoints.as_ref().map(|c| c.latest.clone());
        }
        Ok(audit)
    }

    /// An audit log over any sink (tests inject failing ones), with default sampling.
    pub fn with_sink(
        sink: Box<dyn Sink>,
        state: ChainState,
        fingerprinter: Fingerprinter,
    ) -> std::io::Result<Self> {
        Self::with_sink_sampled(sink, state, fingerprinter, SamplingLimits::default())
    }

    /// An audit log over any sink, sampling refusals within `limits`.
    pub fn with_sink_sampled(
        sink: Box<dyn Sink>,
        state: ChainState,
        fingerprinter: Fingerprinter,
        limits: SamplingLimits,
    ) -> std::io::Result<Self> {
        let samplers = Arc::new([
            Sampler::new(limits.refusals_per_sec, "refusal"),
            Sampler::new(limits.auth_failures_per_sec, "unauthenticated"),
        ]);
        let (writer, stopped) = Writer::spawn(sink, state, Arc::clone(&samplers))?;
        Ok(Audit {
            inner: Some(Arc::new(Enabled {
                writer,
                stopped: std::sync::Mutex::new(Some(stopped)),
                fingerprinter,
                path: None,
                samplers,
                push: None,
                reconciler: std::sync::OnceLock::new(),
                witnesses: None,
                latest: None,
            })),
        })
    }

    /// The log, with checkpoints pushed off the host through `push`.
    pub fn with_push(mut self, push: Option<push::PushQueue>) -> Self {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.push = push;
        }
        self
    }

    /// The log, with its checkpoints cosigned by `witnesses`.
    pub fn with_witnesses(mut self, witnesses: witness::Witnesses) -> Self {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.witnesses = Some(witnesses);
        }
        self
    }

    /// The witnesses cosigning the log's checkpoints, if any.
    pub fn witnesses(&self) -> Option<&witness::Witnesses> {
        self.inner.as_ref().and_then(|i| i.witnesses.as_ref())
    }

    /// The newest signed checkpoint, when checkpoints are signed.
    pub fn latest_checkpoint(&self) -> Option<&checkpoint::Latest> {
        self.inner.as_ref().and_then(|i| i.latest.as_ref())
    }

    /// Outcome reconciliation follows up this log's accepted device actions from now on.
    pub fn set_reconciler(&self, handle: reconcile::Handle) {
        if let Some(inner) = &self.inner {
            let _ = inner.reconciler.set(handle);
        }
    }

    /// An outcome was recorded: a device action Graph accepted is followed up (when
    /// reconciliation is on).
    pub(crate) fn reconcile(&self, outcome: &Entry) {
        if let Some(handle) = self.inner.as_ref().and_then(|i| i.reconciler.get()) {
            handle.track(outcome);
        }
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

    /// Writes a durable `start` record: the gateway passed every start-up check and is about
    /// to serve.
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

    /// Makes everything queued durable (with the counts of suppressed refusals), closes the
    /// file cleanly (its anchor records the final head), and stops the writer; every handle
    /// is stopped, and later writes fail. Returns once the file is released.
    pub async fn shutdown(&self) -> Result<(), WriteError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let result = inner.writer.stop().await;
        let stopped = inner.stopped.lock().ok().and_then(|mut s| s.take());
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
        // The closing checkpoint gets a moment to leave the host; a down endpoint cannot
        // hold the shutdown longer.
        if let Some(push) = &inner.push
            && !push.drain(PUSH_DRAIN).await
        {
            tracing::warn!(
                pending = push.pending(),
                "audit checkpoints not pushed at shutdown (they are in the checkpoint file)"
            );
        }
        result
    }

    /// [`Audit::shutdown`], ignoring its result (tests, and paths that already failed).
    pub async fn close(self) {
        let _ = self.shutdown().await;
    }

    /// Whether a refusal record of `key` is written, and with how many of the same key
    /// suppressed before it (see [`sampler`]); `unauthenticated` picks the per-source limit.
    pub(crate) fn sample(&self, key: SampleKey, unauthenticated: bool) -> Sample {
        match &self.inner {
            None => Sample::Write { suppressed: 0 },
            Some(i) => {
                i.samplers[usize::from(unauthenticated)].admit(key, crate::clock::Instant::now())
            }
        }
    }

    /// Follows the sequence number the chain is durable up to (`None` when disabled).
    pub fn durable_seq(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.as_ref().map(|i| i.writer.durable())
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
