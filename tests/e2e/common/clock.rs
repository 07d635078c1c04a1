//! A paused Tokio clock for end-to-end tests that talk over real sockets: time moves only
//! when the test advances it, so a window such as the token breaker's 0.5 s is exact however
//! slow the machine is. (Only code timed by `tokio::time` sees it: the breaker, timeouts and
//! sleeps; not moka's caches, the audit writer's thread, or the emulator's token clock.)

use std::time::Duration;

/// Tokio's clock, paused until dropped. Needs the current-thread runtime (`#[tokio::test]`).
pub struct FrozenClock {
    release: Option<std::sync::mpsc::Sender<()>>,
}

impl FrozenClock {
    /// Pauses the clock. Paused time normally jumps to the next timer whenever the runtime
    /// is idle, which it is while waiting for a socket: a header-read or upstream timeout
    /// would then fire at once. A running `spawn_blocking` task turns that off (documented
    /// under "Preventing auto-advance" in `tokio::time::pause`), so one is kept running,
    /// idle, until the clock is dropped.
    pub fn freeze() -> FrozenClock {
        tokio::time::pause();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        FrozenClock {
            release: Some(release),
        }
    }

    /// Moves the clock forward by `by`, firing the timers that fall due.
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
    }
}

impl Drop for FrozenClock {
    fn drop(&mut self) {
        drop(self.release.take());
        tokio::time::resume();
    }
}

/// `work`'s output, or a failure naming `what` after `limit` of wall-clock time. Under a
/// [`FrozenClock`] `tokio::time::timeout` never fires, so tests that freeze the clock bound
/// their whole body with this (one timer thread per call: not for per-request use).
pub async fn within_real_time<F: std::future::Future>(
    what: &str,
    limit: Duration,
    work: F,
) -> F::Output {
    let (fire, fired) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = fire.send(());
    });
    tokio::select! {
        out = work => out,
        _ = fired => panic!("{what}: not done within {limit:?} of real time"),
    }
}
