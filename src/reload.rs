//! Hot reload of the policy file on SIGHUP and when a complete new file is in place (the
//! writer closed it, or a file or ConfigMap was swapped in by rename). A valid new file
//! replaces the policy (requests in flight keep theirs); an invalid one, or a reload that
//! fails in any other way, leaves the old policy in force and stays visible in the status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::gateway::Gateway;
use crate::policy::{PolicyError, PolicyIssue, PolicySource};

mod watch_file;
use watch_file::FileEvents;
pub use watch_file::{Change, watch_policy_file};

/// How long file events are gathered before one reload (a rename arrives as several events).
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
        // Readiness follows this reloader: alive while its end of the status channel is (a
        // task that panics or ends drops it, so nothing has to remember to report it).
        let alive = rx.clone();
        gateway.follow_reloader(move || alive.has_changed().is_ok());
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
