//! Hot reload of the policy file on SIGHUP and on file change. A valid new file replaces
//! the policy (requests in flight keep theirs); an invalid one leaves the old policy in
//! force, is logged with every error, and stays visible in the reload status.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use crate::gateway::Gateway;
use crate::policy::{PolicyError, PolicyIssue, PolicySource};

/// How long file events are gathered before one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The outcome of the latest reload attempt.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Reload attempts so far (files read with new content, or unreadable).
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Checks that found the file's content unchanged, so nothing was compiled.
    pub unchanged: u64,
    /// Hash of the policy in force.
    pub policy_hash: String,
    /// The errors of the latest attempt, if it failed (the old policy stays in force).
    pub last_error: Option<PolicyError>,
}

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the policy file's directory that can have changed the file.
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
}

impl Reloader {
    /// A reloader for `path`, whose content is taken to be the policy in force; the
    /// receiver follows every attempt.
    pub fn new(path: PathBuf, gateway: Arc<Gateway>) -> (Reloader, watch::Receiver<ReloadStatus>) {
        let hash = gateway.installed().policy.hash.clone();
        let (status, rx) = watch::channel(ReloadStatus {
            policy_hash: hash.clone(),
            ..ReloadStatus::default()
        });
        let reloader = Reloader {
            path,
            gateway,
            status,
            last_read: Some(hash),
        };
        (reloader, rx)
    }

    /// Reads the file now and installs it if it is valid and changed. Reading, hashing and
    /// compiling run on the blocking pool: a large policy takes seconds to compile, and
    /// request handling must not wait for it.
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
            self.status.send_modify(|s| s.unchanged += 1);
            crate::metrics::policy_reload_unchanged();
            let errors_stand = self.status.borrow().last_error.is_some();
            match trigger {
                Trigger::Hangup => {
                    tracing::info!(policy_hash = %source.hash(), errors_stand, "SIGHUP: the policy file is unchanged; nothing to reload")
                }
                Trigger::FileChange => {
                    tracing::debug!(policy_hash = %source.hash(), "the policy file is unchanged")
                }
            }
            return Ok(Reloaded::Unchanged);
        }
        self.last_read = Some(source.hash().to_owned());
        if source.hash() == self.gateway.installed().policy.hash {
            self.succeeded(source.hash());
            tracing::info!(policy_hash = %source.hash(), "the policy file is back to the policy in force");
            return Ok(Reloaded::InForce);
        }
        match off_runtime(&self.path, move || source.compile()).await {
            Ok(policy) => {
                tracing::info!(policy_hash = %policy.hash, callers = policy.callers.len(), rules = policy.rules.len(), "policy reloaded");
                let hash = policy.hash.clone();
                // Installed before the status says so: whoever follows the status sees it in force.
                self.gateway.set_policy(policy);
                self.succeeded(&hash);
                Ok(Reloaded::Installed)
            }
            Err(e) => Err(self.failed(e)),
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

    /// Reloads on SIGHUP and whenever the file may have changed, until `shutdown`.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, mut events) = mpsc::channel::<()>(1);
        let watcher = watch_policy_file(&self.path, move |_| {
            let _ = tx.try_send(());
        })
        .map_err(|e| tracing::warn!(error = %e, path = %self.path.display(), "cannot watch the policy file's directory; reload with SIGHUP"))
        .ok();
        let mut hangups = hangup_signals();
        tokio::pin!(shutdown);
        loop {
            let trigger = tokio::select! {
                () = &mut shutdown => break,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
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

/// Runs `work` on the blocking pool; a task that dies becomes a reload error.
async fn off_runtime<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(PolicyError {
            source_name: path.display().to_string(),
            issues: vec![PolicyIssue {
                line: 0,
                column: 0,
                message: format!("the reload task failed: {e}"),
            }],
        })
    })
}

/// Watches the directory of the policy file at `path` (Kubernetes replaces ConfigMap files
/// by swapping a symlink, which a watch on the file itself would miss) and calls
/// `on_change` for each event that can have changed the file (see [`touches_policy`]).
pub fn watch_policy_file(
    path: &Path,
    on_change: impl Fn(&notify::Event) + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let name = path.file_name().map(OsStr::to_os_string);
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && touches_policy(&event, name.as_deref())
        {
            on_change(&event);
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether an event in the policy file's directory can have changed the file named
/// `policy`: one on that name (written, created, renamed over, removed), or on a
/// ConfigMap's `..data` / `..<timestamp>` entries, whose swap changes what the name points
/// to. Events on other files there (an audit log, say) cannot, and reads never do. An
/// event naming no path (the watcher lost track) might.
fn touches_policy(event: &notify::Event, policy: Option<&OsStr>) -> bool {
    if event.kind.is_access() {
        return false;
    }
    if event.paths.is_empty() || event.need_rescan() {
        return true;
    }
    event
        .paths
        .iter()
        .filter_map(|p| p.file_name())
        .any(|n| Some(n) == policy || n.as_encoded_bytes().starts_with(b".."))
}

#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(unix)]
async fn next_hangup(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, EventKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(kind), |e, p| {
            e.add_path(PathBuf::from(p))
        })
    }

    fn touches(kind: EventKind, paths: &[&str]) -> bool {
        touches_policy(&event(kind, paths), Some(OsStr::new("policy.yaml")))
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));

    #[test]
    fn only_events_that_can_change_the_policy_file_count() {
        assert!(touches(WRITE, &["/etc/gg/policy.yaml"]));
        assert!(touches(WRITE, &["policy.yaml"]));
        assert!(!touches(WRITE, &["/etc/gg/audit.jsonl"]));
        assert!(!touches(WRITE, &["/etc/gg/policy.yaml.bak"]));
        assert!(!touches(
            EventKind::Create(CreateKind::File),
            &["/etc/gg/.policy.yaml.swp"]
        ));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(touches(rename, &["/etc/gg/.p.tmp", "/etc/gg/policy.yaml"]));
        assert!(touches(rename, &["/etc/gg/..data_tmp", "/etc/gg/..data"]));
        assert!(touches(
            EventKind::Create(CreateKind::Folder),
            &["/etc/gg/..2026_11_28_16_00_00.123"]
        ));
        assert!(!touches(
            EventKind::Access(notify::event::AccessKind::Any),
            &["/etc/gg/policy.yaml"]
        ));
        assert!(
            touches(EventKind::Any, &[]),
            "a lost watch may hide a change"
        );
    }

    #[test]
    fn a_watch_ignores_sibling_files_and_sees_the_policy_file() {
        let dir = std::env::temp_dir().join(format!("graphgate-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, "version: 1\n").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = watch_policy_file(&policy, move |e| {
            let _ = tx.send(e.paths.clone());
        })
        .unwrap();
        // Sibling writes first: the watch delivers events in order, so had any of them got
        // through, it would be the first one seen.
        for i in 0..20 {
            std::fs::write(dir.join("audit.jsonl"), format!("{i}\n")).unwrap();
        }
        std::fs::write(&policy, "version: 1\n# changed\n").unwrap();
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            first
                .iter()
                .all(|p| p.file_name() == Some(OsStr::new("policy.yaml"))),
            "{first:?}"
        );
        drop(watcher);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
