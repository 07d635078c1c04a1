//! Hot reload of the policy file on SIGHUP and on file change. A valid new file replaces
//! the policy (requests in flight keep theirs); an invalid one leaves the old policy in
//! force, is logged with every error, and stays visible in the reload status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use crate::gateway::Gateway;
use crate::policy::{Policy, PolicyError};

/// How long file events are gathered before one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The outcome of the latest reload attempt.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Reload attempts so far.
    pub attempts: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Hash of the policy in force.
    pub policy_hash: String,
    /// The errors of the latest attempt, if it failed (the old policy stays in force).
    pub last_error: Option<PolicyError>,
}

/// Reloads one policy file into one gateway.
pub struct Reloader {
    path: PathBuf,
    gateway: Arc<Gateway>,
    status: watch::Sender<ReloadStatus>,
}

impl Reloader {
    /// A reloader for `path`; the receiver follows every attempt.
    pub fn new(path: PathBuf, gateway: Arc<Gateway>) -> (Reloader, watch::Receiver<ReloadStatus>) {
        let hash = gateway.installed().policy.hash.clone();
        let (status, rx) = watch::channel(ReloadStatus {
            policy_hash: hash,
            ..ReloadStatus::default()
        });
        (
            Reloader {
                path,
                gateway,
                status,
            },
            rx,
        )
    }

    /// Reads the file now and installs it if it is valid and changed.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let result = Policy::load(&self.path);
        self.status.send_modify(|s| {
            s.attempts += 1;
            match &result {
                Ok(policy) => {
                    s.last_error = None;
                    s.policy_hash.clone_from(&policy.hash);
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_error = Some(e.clone());
                }
            }
        });
        self.gateway.note_reload(result.as_ref().map(|_| ()));
        match result {
            Ok(policy) if policy.hash == self.gateway.installed().policy.hash => Ok(()),
            Ok(policy) => {
                tracing::info!(policy_hash = %policy.hash, callers = policy.callers.len(), rules = policy.rules.len(), "policy reloaded");
                self.gateway.set_policy(policy);
                Ok(())
            }
            Err(e) => {
                tracing::error!(errors = %e, "policy reload failed; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// Reloads on SIGHUP and whenever the file's directory changes, until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, mut events) = mpsc::channel::<()>(1);
        let watcher = self.watch_file(tx);
        let mut hangups = hangup_signals();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = events.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                }
                Some(()) = next_hangup(&mut hangups) => tracing::info!("SIGHUP: reloading the policy"),
            }
            let _ = self.reload();
        }
        drop(watcher);
    }

    /// Watches the file's directory: Kubernetes replaces ConfigMap files by swapping a symlink.
    fn watch_file(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.try_send(());
            }
        };
        let mut watcher = notify::recommended_watcher(handler)
            .map_err(
                |e| tracing::warn!(error = %e, "cannot watch the policy file; reload with SIGHUP"),
            )
            .ok()?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the policy directory; reload with SIGHUP"))
            .ok()?;
        Some(watcher)
    }
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
