//! Which log lines of refused requests are written. A refusal costs its sender nothing, so
//! its lines are sampled like its audit records: per caller (failed authentications: per
//! source address) up to `--log-refusals-per-sec`; the rest are counted, in
//! `graphgate_log_suppressed_total` and in the `log.suppressed` field of the next line
//! written for the same caller or source (or, once it has gone quiet, a line of its own).
//! Failures that are the gateway's own (5xx other than shedding) are always logged.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use crate::audit::records::sampler::{QUIET, Sample, SampleKey, Sampler};
use crate::clock::Instant;

/// The refusal log samplers of one gateway.
pub(super) struct RefusalLogs {
    /// Refusals per caller, then failed authentications per source.
    samplers: [Sampler; 2],
    /// When quiet keys' counts were last looked for.
    last_sweep: Mutex<Instant>,
}

/// Whether a request's lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lines {
    /// Written, saying how many of the same key's were left out before them.
    Write {
        /// Lines of refused requests of the same caller or source left out since the last.
        suppressed: u64,
    },
    /// Left out (counted).
    Skip,
}

impl RefusalLogs {
    /// Lines of `per_sec` refused requests per caller (or source) a second; 0: every one.
    pub(super) fn new(per_sec: u32) -> Self {
        let count = crate::metrics::log_suppressed;
        RefusalLogs {
            samplers: [
                Sampler::counted(per_sec, "refusal", count),
                Sampler::counted(per_sec, "unauthenticated", count),
            ],
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Whether the lines of a refused request are written: keyed by `caller` when known,
    /// else by `source`; `unauthenticated` picks the per-source sampler.
    pub(super) fn admit(
        &self,
        caller: Option<&str>,
        source: Option<IpAddr>,
        unauthenticated: bool,
    ) -> Lines {
        let now = Instant::now();
        self.sweep_quiet(now);
        let key = match (caller, source) {
            (Some(name), _) => SampleKey::Caller(name.into()),
            (None, Some(ip)) => SampleKey::source(ip),
            (None, None) => SampleKey::Others,
        };
        match self.samplers[usize::from(unauthenticated)].admit(key, now) {
            Sample::Write { suppressed } => Lines::Write { suppressed },
            Sample::Suppress => Lines::Skip,
        }
    }

    /// At most once per [`QUIET`]: a line with the count of each caller or source whose
    /// lines were left out and that has been quiet since (so a flood's tail is told too).
    fn sweep_quiet(&self, now: Instant) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.saturating_duration_since(*last) < QUIET {
                return;
            }
            *last = now;
        }
        for sampler in &self.samplers {
            for (key, count) in sampler.sweep(now, false) {
                let (caller, source) = match &key {
                    SampleKey::Caller(name) => (Some(name.to_string()), None),
                    SampleKey::Source(ip) => (None, Some(ip.to_string())),
                    SampleKey::Others => (None, None),
                };
                tracing::info!(
                    parent: None,
                    log.suppressed = count,
                    log.reason = sampler.reason(),
                    caller.name = caller,
                    client.address = source,
                    "log lines of refused requests left out (over --log-refusals-per-sec)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_logged_up_to_the_rate_and_the_rest_is_counted_on_the_next_line() {
        let logs = RefusalLogs::new(3);
        let lines: Vec<Lines> = (0..10)
            .map(|_| logs.admit(Some("mallory"), None, false))
            .collect();
        assert_eq!(lines[..3], [Lines::Write { suppressed: 0 }; 3]);
        assert_eq!(lines[3..], [Lines::Skip; 7]);
        // Another caller, and a source's failed authentications, have their own.
        assert_eq!(
            logs.admit(Some("alice"), None, false),
            Lines::Write { suppressed: 0 }
        );
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            logs.admit(None, Some(ip), true),
            Lines::Write { suppressed: 0 }
        );
        // A third of a second later one line is written again, carrying the count.
        tokio::time::advance(std::time::Duration::from_millis(334)).await;
        assert_eq!(
            logs.admit(Some("mallory"), None, false),
            Lines::Write { suppressed: 7 }
        );
        // Zero logs every line.
        let all = RefusalLogs::new(0);
        assert!(
            (0..100).all(|_| all.admit(Some("m"), None, false) == Lines::Write { suppressed: 0 })
        );
    }
}
