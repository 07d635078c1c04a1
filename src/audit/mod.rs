//! The audit log: a durable, hash-chained, secret-free JSON Lines record of every request
//! that reaches operation recognition (and a sample of failed authentications), and what
//! makes its history one the host cannot rewrite. Its parts, in the order a record meets
//! them (each folder imports only from those before it):
//! - [`records`]: one request's [`trail`], the [`sampler`] bounding what refusals may write,
//!   keyed [`fingerprint`]s, the [`record`] and its place in the hash [`chain`];
//! - [`store`]: the writer's [`queue`], the [`writer`] thread's group commit, the [`sink`]
//!   and the log's [`files`] (and [`follow`]ing them as they grow), the [`anchor`], and the
//!   [`ship_cursor`] retention respects;
//! - [`checkpoints`]: the log as an RFC 6962 Merkle [`tree`] fed by [`leaves`], signed
//!   [`checkpoint`]s ([`note`], written by the [`checkpointer`] the sink drives, [`push`]ed
//!   off the host);
//! - [`witnessing`]: [`witness`]es cosigning them ([`witness_protocol`], [`cosigned`]) and
//!   the start-up check against them ([`witness_start`]);
//! - [`read`]: [`verify`] a log ([`sweep`], its parallel pass; a [`report`]; the [`ends`]
//!   against the anchor), [`query`] it, [`receipt`]s and [`tiles`];
//! - at start: [`launder`] (a log whose evidence is missing is not continued) and [`open`]
//!   (the log as `serve` is configured to keep it, [`open::AuditSettings`], opened from
//!   those parts with its push and witnesses started);
//! - off the host besides: [`ship`]ping to an OTLP collector and [`reconcile`] (did the
//!   device action happen?).
//!
//! The `graphgate audit` commands and `serve`'s audit flags are the binary's (`src/cli/`).
//!
//! [`trail`]: records::trail
//! [`sampler`]: records::sampler
//! [`fingerprint`]: records::fingerprint
//! [`record`]: records::record
//! [`chain`]: records::chain
//! [`queue`]: store::queue
//! [`writer`]: store::writer
//! [`sink`]: store::sink
//! [`files`]: store::files
//! [`follow`]: store::follow
//! [`anchor`]: store::anchor
//! [`ship_cursor`]: store::ship_cursor
//! [`tree`]: checkpoints::tree
//! [`leaves`]: checkpoints::leaves
//! [`checkpoint`]: checkpoints::checkpoint
//! [`note`]: checkpoints::note
//! [`checkpointer`]: checkpoints::checkpointer
//! [`push`]: checkpoints::push
//! [`witness`]: witnessing::witness
//! [`witness_protocol`]: witnessing::witness_protocol
//! [`cosigned`]: witnessing::cosigned
//! [`witness_start`]: witnessing::witness_start
//! [`verify`]: read::verify
//! [`sweep`]: read::sweep
//! [`report`]: read::report
//! [`ends`]: read::ends
//! [`query`]: read::query
//! [`receipt`]: read::receipt
//! [`tiles`]: read::tiles

pub mod checkpoints;
pub mod launder;
pub mod open;
pub mod read;
pub mod reconcile;
pub mod records;
pub mod ship;
pub mod store;
pub mod witnessing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use records::fingerprint::Fingerprinter;
pub use records::record::{AuditDecision, Entry, Kind, Record};
pub use records::trail::{AuditTrail, DurableIntent};
pub use store::queue::WriteError;

use checkpoints::checkpoint::{CheckpointConfig, Latest};
use checkpoints::checkpointer::Checkpointer;
use checkpoints::push::PushQueue;
use records::chain::ChainState;
use records::sampler::{Sample, SampleKey, Sampled, Sampler, SamplingLimits};
use store::sink::{FileOptions, FileSink, Sink};
use store::writer::Writer;
use witnessing::witness::Witnesses;

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
    pub checkpoints: Option<CheckpointConfig>,
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
    /// Refusals per caller, failed authentications per source, dry runs per caller, in
    /// [`Sampled`] order (shared with the writer, which writes their counts).
    samplers: Arc<[Sampler; 3]>,
    /// Checkpoints on their way off the host, drained (briefly) at shutdown.
    push: Option<PushQueue>,
    /// Follows up the device actions Graph accepts, when outcome reconciliation is on.
    reconciler: std::sync::OnceLock<reconcile::Handle>,
    /// The witnesses cosigning its checkpoints, if any.
    witnesses: Option<Witnesses>,
    /// The newest signed checkpoint (with a signing key).
    latest: Option<Latest>,
    /// What opening the log repaired (a torn checkpoint cut back), for its own records.
    notices: Vec<String>,
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
        let mut notices = Vec::new();
        if let Some(checkpoints) = &config.checkpoints {
            notices.extend(checkpoints::checkpoint::recover_torn(path)?);
            let checkpointer = Checkpointer::start(path, checkpoints.clone(), &state)?;
            sink.checkpoint_with(Box::new(checkpointer), &state)?;
        }
        let mut audit =
            Self::with_sink_sampled(Box::new(sink), state, fingerprinter, config.sampling)?;
        if let Some(inner) = audit.inner.as_mut().and_then(Arc::get_mut) {
            inner.path = Some(path.to_owned());
            inner.latest = config.checkpoints.as_ref().map(|c| c.latest.clone());
            inner.notices = notices;
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
            Sampler::new(limits.refusals_per_sec, "dry_run"),
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
                notices: Vec::new(),
            })),
        })
    }

    /// The log, with checkpoints pushed off the host through `push`.
    pub fn with_push(mut self, push: Option<PushQueue>) -> Self {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.push = push;
        }
        self
    }

    /// The log, with its checkpoints cosigned by `witnesses`.
    pub fn with_witnesses(mut self, witnesses: Witnesses) -> Self {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.witnesses = Some(witnesses);
        }
        self
    }

    /// The witnesses cosigning the log's checkpoints, if any.
    pub fn witnesses(&self) -> Option<&Witnesses> {
        self.inner.as_ref().and_then(|i| i.witnesses.as_ref())
    }

    /// The newest signed checkpoint, when checkpoints are signed.
    pub fn latest_checkpoint(&self) -> Option<&Latest> {
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

    /// What opening the log repaired (see [`checkpoints::checkpoint::recover_torn`]); each is
    /// written as a record of its own by [`Audit::write_notices`].
    pub fn notices(&self) -> &[String] {
        self.inner.as_ref().map_or(&[], |i| i.notices.as_slice())
    }

    /// Writes what opening the log repaired as durable `start` records with the note.
    pub async fn write_notices(&self) -> Result<(), WriteError> {
        for note in self.notices() {
            self.write_durable(Self::start_entry(note)).await?;
        }
        Ok(())
    }

    fn start_entry(note: &str) -> Entry {
        Entry {
            kind: Some(Kind::Start),
            time: records::record::now_rfc3339(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            note: Some(note.to_owned()),
            ..Entry::default()
        }
    }

    /// Writes a durable `start` record: the gateway passed every start-up check and is about
    /// to serve.
    pub async fn write_start(&self, note: &str) -> Result<(), WriteError> {
        self.write_durable(Self::start_entry(note)).await
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

    /// Whether a sampled record (a refusal, failed authentication or dry run) of `key` is
    /// written, and with how many of the same key suppressed before it (see [`sampler`]).
    pub(crate) fn sample(&self, key: SampleKey, what: Sampled) -> Sample {
        match &self.inner {
            None => Sample::Write { suppressed: 0 },
            Some(i) => i.samplers[what as usize].admit(key, crate::clock::Instant::now()),
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
