//! A circuit breaker for the token endpoint: after two failed token requests in a row it
//! opens for an exponentially growing, jittered interval, during which no request goes to
//! Entra and callers get the last error at once; the first attempt after that probes
//! (half-open). A single failure (a blip) is retried by the next caller.

use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Instant;

use crate::credential::TokenError;

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 2;
/// First open interval.
const BASE: Duration = Duration::from_millis(500);
/// Longest open interval.
const MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    last_error: Option<TokenError>,
}

/// Breaker state, shared by cold fetches and background refreshes.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The error to answer with while open; `None` when a request may go out.
    pub fn check(&self, now: Instant) -> Option<TokenError> {
        let s = self.lock();
        match s.open_until {
            Some(until) if now < until => s.last_error.clone(),
            _ => None,
        }
    }

    /// A token request succeeded: close.
    pub fn success(&self) {
        *self.lock() = State::default();
    }

    /// A token request failed: from the threshold on, open for the next interval; returns
    /// how long it is open (zero below the threshold).
    pub fn failure(&self, now: Instant, error: &TokenError) -> Duration {
        let mut s = self.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.last_error = Some(error.clone());
        if s.consecutive_failures < THRESHOLD {
            return Duration::ZERO;
        }
        let doublings = (s.consecutive_failures - THRESHOLD).min(16);
        let exp = BASE.saturating_mul(1 << doublings).min(MAX);
        // Up to 25% jitter, so replicas do not retry in step.
        let jitter = exp
            .mul_f64(f64::from(uuid::Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX) / 4.0);
        let open_for = exp + jitter;
        s.open_until = Some(now + open_for);
        open_for
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.lock().consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_with_growing_intervals_and_closes_on_success() {
        let b = Breaker::default();
        let err = TokenError::Unavailable("down".into());
        let now = Instant::now();
        assert!(b.check(now).is_none());
        assert_eq!(
            b.failure(now, &err),
            Duration::ZERO,
            "one blip does not open it"
        );
        assert!(b.check(now).is_none());
        let first = b.failure(now, &err);
        assert!((BASE..=BASE.mul_f64(1.25)).contains(&first), "{first:?}");
        assert!(matches!(b.check(now), Some(TokenError::Unavailable(_))));
        assert!(
            b.check(now + first).is_none(),
            "half-open after the interval"
        );
        let second = b.failure(now, &err);
        assert!(second >= BASE * 2, "{second:?}");
        for _ in 0..20 {
            b.failure(now, &err);
        }
        assert!(b.failure(now, &err) <= MAX.mul_f64(1.25));
        b.success();
        assert!(b.check(now).is_none());
        assert_eq!(b.failures(), 0);
    }
}
