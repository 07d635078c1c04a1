//! Time, read in one place. Monotonic time is Tokio's ([`Instant`]), which tests stop and
//! advance with `tokio::time::pause()`; wall-clock time (audit records, error dates, HTTP
//! dates) is read only here. Clippy refuses `Utc::now`, `SystemTime::now` and
//! `std::time::Instant::now` anywhere else (`clippy.toml`).

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Monotonic time on Tokio's clock: paused and advanced in tests like every timer.
pub use tokio::time::Instant;

/// The wall-clock time now, as a UTC date-time.
#[allow(clippy::disallowed_methods)] // The one place wall-clock time is read.
pub fn utc_now() -> DateTime<Utc> {
    Utc::now()
}

/// The wall-clock time now, as a `SystemTime` (HTTP dates, file times).
#[allow(clippy::disallowed_methods)] // The one place wall-clock time is read.
pub fn system_now() -> SystemTime {
    SystemTime::now()
}
