//! Memory the allocator keeps after a burst, given back once the gateway is quiet. glibc's
//! malloc keeps freed memory in its arenas (and returns only the top of each heap), so a
//! process that served a burst of requests or connections stays resident at that peak long
//! after the memory is free. Once no request has started, none is in flight and no connection
//! was parked for [`QUIET`], the allocator is asked once to return its free pages
//! (`malloc_trim`); never on a request's path, at most once per quiet period. A no-op off
//! glibc (musl, macOS: their allocators give memory back themselves or have no such call).

#![allow(unsafe_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::Instant;

/// How long the gateway must be quiet (no request started or in flight, no connection
/// parked) before the allocator's free memory is returned.
pub const QUIET: Duration = Duration::from_secs(2);

/// How often quietness is checked: a trim comes [`QUIET`] to `QUIET + CHECK_EVERY` after the
/// last activity.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Requests started and connections parked, ever (only changes matter).
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Requests in flight now.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One request in flight, until dropped.
pub(super) struct Busy(());

impl Busy {
    pub(super) fn start() -> Self {
        EVENTS.fetch_add(1, Ordering::Relaxed);
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection was parked (a wave of parks frees hyper's buffers: trim after it).
pub(super) fn parked() {
    EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// Watches for quiet periods and trims the allocator once in each, until `stop` resolves.
pub async fn run(stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = EVENTS.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    // Nothing to give back before the first request.
    let mut trimmed = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        let now = EVENTS.load(Ordering::Relaxed);
        if now != seen || IN_FLIGHT.load(Ordering::Relaxed) > 0 {
            seen = now;
            quiet_since = Instant::now();
            trimmed = false;
            continue;
        }
        if !trimmed && quiet_since.elapsed() >= QUIET {
            trimmed = true;
            let started = Instant::now();
            let released = release();
            crate::metrics::memory_trim();
            tracing::debug!(
                released,
                took_us = started.elapsed().as_micros() as u64,
                "quiet: returned the allocator's free memory"
            );
        }
    }
}

/// Asks glibc to return every arena's free pages to the system; whether any came back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() -> bool {
    // SAFETY: malloc_trim takes no pointers and is thread-safe (glibc locks each arena while
    // it walks it); it only returns free memory, never memory in use.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Elsewhere nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}
