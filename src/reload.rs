//! Hot reload of the policy file on SIGHUP and when a complete new file is in place (the
//! writer closed it, or a file or ConfigMap was swapped in by rename). A valid new file
//! replaces the policy (requests in flight keep theirs); an invalid one, or a reload that
//! fails in any other way, leaves the old policy in force and stays visible in the status.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use tokio::sync::watch;

use crate::gateway::Gateway;
use crate::policy::{PolicyError, PolicyIssue, PolicySource};

/// How long file events are gathered before one reload (a rename arrives as several events).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The name kubelet swaps (by rename) to publish a new version of a mounted ConfigMap.
const CONFIGMAP_SWAP: &str = "..data";

/// The outcome of the latest reload attempt.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Reload attempts so far (files read with new content, or unreadable).
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Checks that found the file's content unchanged, so nothing was compiled.
    pub unchanged: u64,
    /// Writes to the policy file seen while its writer still had it open: not read, since
    /// the file may be half-written (the reload waits for the writer to close it).
    pub incomplete_writes: u64,
    /// Whether the file's directory is watched (if not, only SIGHUP reloads).
    pub watching: bool,
    /// Hash of the policy in force.
    pub policy_hash: String,
    /// The errors of the latest attempt, if it failed (the old policy stays in force).
    pub last_error: Option<PolicyError>,
}

/// Whether the reloader that follows a gateway's policy file is alive (for readiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloaderHealth {
    /// No reloader: the policy is fixed for the process's life (emulator demo, tests).
    Off,
    /// Running.
    Running,
    /// Gone (it panicked, or the process is shutting down): edits and revocations in the
    /// policy file would no longer take effect.
    Stopped,
}

impl ReloaderHealth {
    /// The health of the reloader publishing `status`: stopped once it has dropped its end
    /// (a task that panics or ends drops it, so nothing has to remember to report it).
    pub fn of(status: Option<&watch::Receiver<ReloadStatus>>) -> ReloaderHealth {
        match status {
            None => ReloaderHealth::Off,
            Some(rx) if rx.has_changed().is_err() => ReloaderHealth::Stopped,
            Some(_) => ReloaderHealth::Running,
        }
    }

    /// `off`, `running` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloaderHealth::Off => "off",
            ReloaderHealth::Running => "running",
            ReloaderHealth::Stopped => "stopped",
        }
    }
}

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A complete new file may be in place (see [`Change::Complete`]).
    FileChange,
    /// SIGHUP: an operator asked (an unchanged file is logged, not silently skipped).
    Hangup,
}

/// What a successful reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file's content is what was read last time: nothing compiled, nothing counted.
    Unchanged,
    /// The file holds the policy in force again (say, a bad edit was reverted): nothing to
    /// compile, and the earlier failure no longer stands.
    InForce,
    /// A new policy was compiled and installed.
    Installed,
}

/// Reloads one policy file into one gateway.
pub struct Reloader {
    path: PathBuf,
    gateway: Arc<Gateway>,
    status: watch::Sender<ReloadStatus>,
    /// Version hash of the content read last (`None` after a read failed).
    last_read: Option<String>,
    /// SIGHUP, taken over when the reloader is made: a hangup that arrived before
    /// [`Reloader::run`] first ran would otherwise end the process (the default action).
    hangups: Hangups,
}

impl Reloader {
    /// A reloader for `path`, whose content is taken to be the policy in force; the
    /// receiver follows every attempt, and so does the gateway's readiness.
    pub fn new(path: PathBuf, gateway: Arc<Gateway>) -> (Reloader, watch::Receiver<ReloadStatus>) {
        let hash = gateway.installed().policy.hash.clone();
        let (status, rx) = watch::channel(ReloadStatus {
            policy_hash: hash.clone(),
            ..ReloadStatus::default()
        });
        gateway.follow_reloader(rx.clone());
        let reloader = Reloader {
            path,
            gateway,
            status,
            last_read: Some(hash),
            hangups: hangup_signals(),
        };
        (reloader, rx)
    }

    /// Reads the file now and installs it if it is valid and changed. Reading, hashing,
    /// compiling and installing run on the blocking pool: a large policy takes seconds to
    /// compile, request handling must not wait for it, and a panic there becomes a failed
    /// reload (the old policy in force) instead of the end of this task.
    pub async fn reload(&mut self, trigger: Trigger) -> Result<Reloaded, PolicyError> {
        let path = self.path.clone();
        let source = match off_runtime(&self.path, move || PolicySource::read(&path)).await {
            Ok(source) => source,
            Err(e) => {
                self.last_read = None;
                return Err(self.failed(e));
            }
        };
        if self.last_read.as_deref() == Some(source.hash()) {
            self.unchanged(source.hash(), trigger);
            return Ok(Reloaded::Unchanged);
        }
        self.last_read = Some(source.hash().to_owned());
        if source.hash() == self.gateway.installed().policy.hash {
            self.succeeded(source.hash());
            tracing::info!(policy_hash = %source.hash(), "the policy file is back to the policy in force");
            return Ok(Reloaded::InForce);
        }
        let gateway = Arc::clone(&self.gateway);
        let installed = off_runtime(&self.path, move || {
            let policy = source.compile()?;
            let summary = (
                policy.hash.clone(),
                policy.callers.len(),
                policy.rules.len(),
            );
            // Installed before the status says so: whoever follows the status sees it in force.
            gateway.set_policy(policy);
            Ok(summary)
        });
        match installed.await {
            Ok((hash, callers, rules)) => {
                tracing::info!(policy_hash = %hash, callers, rules, "policy reloaded");
                self.succeeded(&hash);
                Ok(Reloaded::Installed)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn unchanged(&self, hash: &str, trigger: Trigger) {
        self.status.send_modify(|s| s.unchanged += 1);
        crate::metrics::policy_reload_unchanged();
        let errors_stand = self.status.borrow().last_error.is_some();
        match trigger {
            Trigger::Hangup => {
                tracing::info!(policy_hash = %hash, errors_stand, "SIGHUP: the policy file is unchanged; nothing to reload")
            }
            Trigger::FileChange => {
                tracing::debug!(policy_hash = %hash, "the policy file is unchanged")
            }
        }
    }

    fn succeeded(&self, hash: &str) {
        self.status.send_modify(|s| {
            s.attempts += 1;
            s.last_error = None;
            hash.clone_into(&mut s.policy_hash);
        });
        self.gateway.note_reload(Ok(()));
    }

    fn failed(&self, e: PolicyError) -> PolicyError {
        self.status.send_modify(|s| {
            s.attempts += 1;
            s.failures += 1;
            s.last_error = Some(e.clone());
        });
        self.gateway.note_reload(Err(&e));
        tracing::error!(errors = %e, "policy reload failed; the previous policy stays in force");
        e
    }

    /// Counts writes seen while the file was still open (nothing read for them).
    fn note_incomplete(&self, writes: u64) {
        if writes > 0 {
            self.status.send_modify(|s| s.incomplete_writes += writes);
            tracing::debug!(
                writes,
                "the policy file is being written; it is read when the writer closes it"
            );
        }
    }

    /// Takes in the file events since `seen`; true when the file is settled: a complete
    /// file came in place and no write has started since.
    fn absorb(&self, events: &mut watch::Receiver<FileEvents>, seen: &mut FileEvents) -> bool {
        let now = *events.borrow_and_update();
        self.note_incomplete(now.incomplete - seen.incomplete);
        let settled = now.complete > seen.complete && now.settled;
        *seen = now;
        settled
    }

    /// Reloads on SIGHUP and whenever a complete new file is in place, until `shutdown`.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, mut events) = watch::channel(FileEvents::default());
        let watcher = watch_policy_file(&self.path, move |change| {
            tx.send_modify(|e| e.note(change));
        })
        .map_err(|e| tracing::warn!(error = %e, path = %self.path.display(), "cannot watch the policy file's directory; reload with SIGHUP"))
        .ok();
        self.status.send_modify(|s| s.watching = watcher.is_some());
        tracing::info!(path = %self.path.display(), watching = watcher.is_some(), "the policy is reloaded on SIGHUP and when a complete new file is in place");
        let mut seen = FileEvents::default();
        let mut hangups = self.hangups.take();
        tokio::pin!(shutdown);
        loop {
            let trigger = tokio::select! {
                () = &mut shutdown => break,
                Ok(()) = events.changed() => {
                    if !self.absorb(&mut events, &mut seen) {
                        continue;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    // A write begun since (an in-place edit right after a close) waits
                    // for its own close; the rest of a rename's events change nothing.
                    self.absorb(&mut events, &mut seen);
                    if !seen.settled {
                        continue;
                    }
                    Trigger::FileChange
                }
                Some(()) = next_hangup(&mut hangups) => {
                    tracing::info!("SIGHUP: reloading the policy");
                    Trigger::Hangup
                }
            };
            let _ = self.reload(trigger).await;
        }
        drop(watcher);
    }
}

/// File events on the policy file so far, as the watcher thread counts them.
#[derive(Debug, Default, Clone, Copy)]
struct FileEvents {
    complete: u64,
    incomplete: u64,
    /// Whether the latest event was a complete file (not a write begun after it).
    settled: bool,
}

impl FileEvents {
    fn note(&mut self, change: Change) {
        match change {
            Change::Complete => self.complete += 1,
            Change::Incomplete => self.incomplete += 1,
            Change::Unrelated => return,
        }
        self.settled = change == Change::Complete;
    }
}

/// Runs `work` on the blocking pool; a task that panics or dies becomes a reload error.
async fn off_runtime<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        let message = if e.is_panic() {
            format!("the reload panicked: {}", panic_message(e.into_panic()))
        } else {
            format!("the reload task failed: {e}")
        };
        Err(PolicyError {
            source_name: path.display().to_string(),
            issues: vec![PolicyIssue {
                line: 0,
                column: 0,
                message,
            }],
        })
    })
}

/// The text a panic was raised with, if it was text.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

/// What an event in the policy file's directory says about the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A complete file may be in place: its writer closed it, a file was renamed onto its
    /// name, it was created as a symlink, or a ConfigMap's `..data` was swapped.
    Complete,
    /// It is being written in place: reading it now could see half of it.
    Incomplete,
    /// Nothing that changes its content: another file, a read, metadata, a removal or a
    /// rename away (the policy in force stays until a complete file is back).
    Unrelated,
}

/// Watches the directory of the policy file at `path` (Kubernetes replaces ConfigMap files
/// by swapping a symlink, which a watch on the file itself would miss) and calls
/// `on_change` for each event about the policy file (see [`classify`]); events on other
/// files there (an audit or log file, say) go no further.
pub fn watch_policy_file(
    path: &Path,
    on_change: impl Fn(Change) + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let name = path.file_name().map(OsStr::to_os_string);
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            match classify(&event, name.as_deref()) {
                Change::Unrelated => {}
                change => on_change(change),
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// What `event` means for the file named `policy`. Only a complete file is ever read: an
/// in-place edit is read when its writer closes the file (Linux reports that; elsewhere
/// use a rename or SIGHUP), never between two of its writes. An event naming no path, or
/// a lost watch, may hide anything: it counts as complete.
fn classify(event: &notify::Event, policy: Option<&OsStr>) -> Change {
    if event.paths.is_empty() || event.need_rescan() {
        return Change::Complete;
    }
    // A rename's destination is its last path; every other event names one path.
    let Some(path) = event.paths.last() else {
        return Change::Complete;
    };
    let name = path.file_name();
    let is_policy = name.is_some() && name == policy;
    match event.kind {
        EventKind::Modify(ModifyKind::Name(
            RenameMode::To | RenameMode::Both | RenameMode::Any,
        )) if is_policy || name == Some(OsStr::new(CONFIGMAP_SWAP)) => Change::Complete,
        _ if !is_policy => Change::Unrelated,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Complete,
        // A new symlink is complete when it appears; a new file is written after.
        EventKind::Create(_) if path.is_symlink() => Change::Complete,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            Change::Incomplete
        }
        _ => Change::Unrelated,
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;

/// SIGHUP as a stream, if there is a runtime to deliver it.
#[cfg(unix)]
fn hangup_signals() -> Hangups {
    tokio::runtime::Handle::try_current().ok()?;
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(unix)]
async fn next_hangup(signals: &mut Hangups) -> Option<()> {
    match signals {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};

    fn event(kind: EventKind, paths: &[&Path]) -> notify::Event {
        paths
            .iter()
            .fold(notify::Event::new(kind), |e, p| e.add_path(p.to_path_buf()))
    }

    fn change(kind: EventKind, paths: &[&Path]) -> Change {
        classify(&event(kind, paths), Some(OsStr::new("policy.yaml")))
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    const CLOSE_WRITE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    fn rename(mode: RenameMode) -> EventKind {
        EventKind::Modify(ModifyKind::Name(mode))
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("graphgate-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_a_complete_policy_file_is_read() {
        let dir = temp_dir();
        let policy = dir.join("policy.yaml");
        let (audit, tmp) = (dir.join("audit.jsonl"), dir.join(".policy.yaml.tmp"));
        let (data, data_tmp) = (dir.join("..data"), dir.join("..data_tmp"));
        use Change::{Complete, Incomplete, Unrelated};

        // In-place edits: every write is incomplete until the writer closes the file.
        std::fs::write(&policy, "version: 1\n").unwrap();
        assert_eq!(change(WRITE, &[&policy]), Incomplete);
        assert_eq!(
            change(EventKind::Create(CreateKind::File), &[&policy]),
            Incomplete
        );
        assert_eq!(change(CLOSE_WRITE, &[&policy]), Complete);
        // Renames onto the name, and kubelet's `..data` swap, put a whole file in place.
        assert_eq!(change(rename(RenameMode::To), &[&policy]), Complete);
        assert_eq!(change(rename(RenameMode::Both), &[&tmp, &policy]), Complete);
        assert_eq!(change(rename(RenameMode::To), &[&data]), Complete);
        assert_eq!(
            change(rename(RenameMode::Both), &[&data_tmp, &data]),
            Complete
        );
        // A symlink is complete the moment it appears.
        std::fs::remove_file(&policy).unwrap();
        std::os::unix::fs::symlink(&audit, &policy).unwrap();
        assert_eq!(
            change(EventKind::Create(CreateKind::File), &[&policy]),
            Complete
        );
        // Nothing else is read: moving or removing the file, reads, metadata, other files
        // (a log written beside the policy), a ConfigMap's new version before the swap.
        for unrelated in [
            change(rename(RenameMode::From), &[&policy]),
            change(rename(RenameMode::Both), &[&policy, &tmp]),
            change(EventKind::Remove(RemoveKind::File), &[&policy]),
            change(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                &[&policy],
            ),
            change(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                &[&policy],
            ),
            change(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &[&policy],
            ),
            change(WRITE, &[&audit]),
            change(CLOSE_WRITE, &[&audit]),
            change(CLOSE_WRITE, &[&dir.join("policy.yaml.bak")]),
            change(
                EventKind::Create(CreateKind::Folder),
                &[&dir.join("..2026_11_28_16_00_00.1")],
            ),
            change(CLOSE_WRITE, &[&dir.join("..touch")]),
        ] {
            assert_eq!(unrelated, Unrelated);
        }
        assert_eq!(
            change(EventKind::Any, &[]),
            Complete,
            "a lost watch may hide a change"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_watch_reports_an_in_place_write_as_complete_only_when_closed() {
        use std::io::Write;
        let dir = temp_dir();
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, "version: 1\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = watch_policy_file(&policy, move |c| {
            let _ = tx.send(c);
        })
        .unwrap();
        // Sibling writes first: the watch delivers events in order, so had any of them got
        // through (each closes its file), it would be the first change seen.
        for i in 0..20 {
            std::fs::write(dir.join("audit.jsonl"), format!("{i}\n")).unwrap();
        }
        let mut file = std::fs::File::create(&policy).unwrap();
        file.write_all(b"version: 1\n# half").unwrap();
        let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(next(), Change::Incomplete, "open and written, not closed");
        file.write_all(b" and the rest\n").unwrap();
        drop(file);
        let mut seen = vec![next()];
        while seen.last() != Some(&Change::Complete) {
            seen.push(next());
        }
        assert!(
            seen[..seen.len() - 1]
                .iter()
                .all(|c| *c == Change::Incomplete),
            "{seen:?}"
        );
        drop(watcher);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_settle_only_on_a_complete_file_with_no_write_after_it() {
        let mut e = FileEvents::default();
        e.note(Change::Incomplete);
        assert!(!e.settled);
        e.note(Change::Complete);
        assert!(e.settled);
        e.note(Change::Unrelated);
        assert!(e.settled, "other files do not unsettle it");
        e.note(Change::Incomplete);
        assert!(
            !e.settled,
            "a write begun after the close waits for its own close"
        );
        assert_eq!((e.complete, e.incomplete), (1, 2));
    }

    #[tokio::test]
    async fn a_panic_while_reloading_becomes_a_reload_error() {
        let err = off_runtime(Path::new("/etc/gg/policy.yaml"), || -> Result<(), _> {
            panic!("Duration is longer than 584 years")
        })
        .await
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("/etc/gg/policy.yaml")
                && shown.contains("the reload panicked: Duration is longer than 584 years"),
            "{shown}"
        );
    }
}
