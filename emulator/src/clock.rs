//! The wall clock (token times, Graph's dates), read in one place. Monotonic time is
//! Tokio's, which tests pause and advance.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Monotonic time on Tokio's clock: paused and advanced in tests like every timer.
pub use tokio::time::Instant;

/// The wall-clock time now.
#[allow(clippy::disallowed_methods)] // The one place the emulator reads the wall clock.
pub fn utc_now() -> DateTime<Utc> {
    Utc::now()
}

/// The wall-clock time now, as a `SystemTime` (HTTP dates).
#[allow(clippy::disallowed_methods)] // The one place the emulator reads the wall clock.
pub fn system_now() -> SystemTime {
    SystemTime::now()
}
