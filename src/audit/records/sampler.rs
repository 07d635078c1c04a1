//! Sampling of refusal records, so a hostile caller cannot fill the disk with them: each
//! caller's refusals and dry runs (and each source address's failed authentications) are
//! written up to a rate, and all keys together up to [`GLOBAL_FACTOR`] times it; the rest are counted (a
//! metric, and the `suppressed` count of the next record written for that key, or of a
//! `suppressed` record once it has been quiet for [`QUIET`] or the log closes). Memory is
//! bounded: past [`TABLE_CAPACITY`] keys, new ones share one entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Instant;

use super::record::{AuditDecision, Entry, Kind, now_rfc3339};

/// Keys tracked per sampler; past it, new keys share the [`SampleKey::Others`] entry.
pub const TABLE_CAPACITY: usize = 4096;
/// A key whose refusals were suppressed and that has had none for this long gets a
/// `suppressed` record with the count.
pub const QUIET: Duration = Duration::from_secs(1);
/// All keys together may write this many times the per-key rate.
pub const GLOBAL_FACTOR: f64 = 10.0;

/// Refusal records written per second (and in one burst); 0 records every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingLimits {
    /// Per caller, for refusals of authenticated callers (denied, invalid, rate limited).
    pub refusals_per_sec: u32,
    /// Per source address (IPv6: per /64), for failed authentications.
    pub auth_failures_per_sec: u32,
}

impl Default for SamplingLimits {
    fn default() -> Self {
        SamplingLimits {
            refusals_per_sec: 20,
            auth_failures_per_sec: 5,
        }
    }
}

/// What a sampled record is: each kind has its own sampler (in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampled {
    /// A refusal of an authenticated caller (denied, invalid, rate limited), per caller.
    Refusal = 0,
    /// A failed authentication, per source address.
    Unauthenticated = 1,
    /// A dry run (allowed, nothing sent), per caller.
    DryRun = 2,
}

/// Whose refusals a record counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SampleKey {
    /// An authenticated caller, by name.
    Caller(Box<str>),
    /// A source address (IPv6 addresses cut to their /64, which one client usually holds).
    Source(IpAddr),
    /// Every key past the table's capacity.
    Others,
}

impl SampleKey {
    /// The key of a source address.
    pub fn source(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                SampleKey::Source(IpAddr::V6(prefix.into()))
            }
            IpAddr::V6(v6) => SampleKey::Source(IpAddr::V4(
                v6.to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            )),
            v4 => SampleKey::Source(v4),
        }
    }
}

/// What to do with one refusal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// Write it, noting this many suppressed before it (0: none).
    Write {
        /// Records of the same key left out since the last one written.
        suppressed: u64,
    },
    /// Leave it out (it is counted).
    Suppress,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
    last_suppressed: Option<Instant>,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
            suppressed: 0,
            last_suppressed: None,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

struct Table {
    keys: HashMap<SampleKey, Bucket>,
    global: Bucket,
    last_eviction: Option<Instant>,
}

/// One kind of refusal's sampling (refusals per caller, or failed authentications per source).
pub struct Sampler {
    /// Records per second per key (also the burst); 0: no sampling.
    rate: f64,
    /// The metric label (`refusal`, `unauthenticated`, `dry_run`).
    reason: &'static str,
    /// Counts one suppressed record (or log line) under `reason`.
    count: fn(&'static str),
    table: Mutex<Table>,
}

impl Sampler {
    /// A sampler letting `per_sec` records per key through each second; 0 lets all through.
    /// What it leaves out counts in `graphgate_audit_suppressed_total{reason}`.
    pub fn new(per_sec: u32, reason: &'static str) -> Self {
        Self::counted(per_sec, reason, crate::metrics::audit_suppressed)
    }

    /// [`Sampler::new`], counting what it leaves out with `count` (e.g. log lines).
    pub fn counted(per_sec: u32, reason: &'static str, count: fn(&'static str)) -> Self {
        let rate = f64::from(per_sec);
        let now = Instant::now();
        Sampler {
            rate,
            reason,
            count,
            table: Mutex::new(Table {
                keys: HashMap::new(),
                global: Bucket::full(rate * GLOBAL_FACTOR, now),
                last_eviction: None,
            }),
        }
    }

    /// The metric label of what this sampler samples.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Decides about one refusal record of `key` at `now`.
    pub fn admit(&self, key: SampleKey, now: Instant) -> Sample {
        if self.rate <= 0.0 {
            return Sample::Write { suppressed: 0 };
        }
        let (rate, burst) = (self.rate, self.rate.max(1.0));
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = table.room_for(key, rate, burst, now);
        let Table { keys, global, .. } = &mut *table;
        global.refill(rate * GLOBAL_FACTOR, burst * GLOBAL_FACTOR, now);
        let bucket = keys.entry(key).or_insert_with(|| Bucket::full(burst, now));
        bucket.refill(rate, burst, now);
        if bucket.tokens >= 1.0 && global.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            global.tokens -= 1.0;
            return Sample::Write {
                suppressed: std::mem::take(&mut bucket.suppressed),
            };
        }
        bucket.suppressed += 1;
        bucket.last_suppressed = Some(now);
        (self.count)(self.reason);
        Sample::Suppress
    }

    /// The suppressed counts of keys quiet for [`QUIET`] (every count, if `all`), taken out
    /// of the table; keys with nothing left to tell are forgotten.
    pub fn sweep(&self, now: Instant, all: bool) -> Vec<(SampleKey, u64)> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let (rate, burst) = (self.rate, self.rate.max(1.0));
        let mut out = Vec::new();
        for (key, bucket) in &mut table.keys {
            let quiet = bucket
                .last_suppressed
                .is_none_or(|at| now.saturating_duration_since(at) >= QUIET);
            if bucket.suppressed > 0 && (all || quiet) {
                out.push((key.clone(), std::mem::take(&mut bucket.suppressed)));
            }
        }
        table.keys.retain(|_, b| !b.is_idle(rate, burst, now));
        out
    }

    /// Keys currently tracked (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .len()
    }
}

impl Bucket {
    /// Nothing to tell and a full bucket: forgetting it changes nothing.
    fn is_idle(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.suppressed == 0 && self.tokens >= burst
    }
}

impl Table {
    /// `key` if it is tracked or fits; otherwise, after forgetting idle keys (at most once
    /// per [`QUIET`], so a full table costs one scan a second), [`SampleKey::Others`].
    fn room_for(&mut self, key: SampleKey, rate: f64, burst: f64, now: Instant) -> SampleKey {
        let fits = |t: &Table| t.keys.contains_key(&key) || t.keys.len() < TABLE_CAPACITY;
        if key == SampleKey::Others || fits(self) {
            return key;
        }
        let due = self
            .last_eviction
            .is_none_or(|at| now.saturating_duration_since(at) >= QUIET);
        if due {
            self.last_eviction = Some(now);
            self.keys
                .retain(|k, b| *k == SampleKey::Others || !b.is_idle(rate, burst, now));
        }
        if fits(self) { key } else { SampleKey::Others }
    }
}

/// The `suppressed` record for `count` refusals of `key` left out by `sampler`.
pub fn summary(key: &SampleKey, count: u64, sampler: &Sampler) -> Entry {
    let unauthenticated = sampler.reason == "unauthenticated";
    let dry_run = sampler.reason == "dry_run";
    let (caller, source) = match key {
        SampleKey::Caller(name) => (Some(name.to_string()), None),
        SampleKey::Source(IpAddr::V6(v6)) => (None, Some(format!("{v6}/64"))),
        SampleKey::Source(ip) => (None, Some(ip.to_string())),
        SampleKey::Others => (None, None),
    };
    let whom = match (&caller, &source) {
        (Some(c), _) => format!("caller '{c}'"),
        (_, Some(s)) => format!("source {s}"),
        _ => "callers or sources past the sampling table's capacity".to_owned(),
    };
    let what = if unauthenticated {
        "failed authentication"
    } else if dry_run {
        "dry-run"
    } else {
        "refusal"
    };
    Entry {
        kind: Some(Kind::Suppressed),
        time: now_rfc3339(),
        audit_id: uuid::Uuid::new_v4().to_string(),
        caller,
        source,
        decision: if unauthenticated {
            Some(AuditDecision::Unauthenticated)
        } else if dry_run {
            Some(AuditDecision::DryRun)
        } else {
            None
        },
        suppressed: Some(count),
        note: Some(format!(
            "{} of {whom} not written: over the audit sampling limit",
            crate::words::count(count, &format!("{what} record"))
        )),
        ..Entry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str) -> SampleKey {
        SampleKey::Caller(name.into())
    }

    #[test]
    fn past_the_rate_records_are_counted_and_the_count_rides_the_next_one() {
        let s = Sampler::new(5, "refusal");
        let t0 = Instant::now();
        let results: Vec<Sample> = (0..8).map(|_| s.admit(caller("a"), t0)).collect();
        assert_eq!(results[..5], [Sample::Write { suppressed: 0 }; 5]);
        assert_eq!(results[5..], [Sample::Suppress; 3]);
        // Another caller has its own budget.
        assert_eq!(s.admit(caller("b"), t0), Sample::Write { suppressed: 0 });
        // A fifth of a second later one record is allowed again, carrying the count.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(s.admit(caller("a"), t1), Sample::Write { suppressed: 3 });
        assert_eq!(s.admit(caller("a"), t1), Sample::Suppress);
        // Nothing is swept while the caller is still being refused...
        assert!(s.sweep(t1 + Duration::from_millis(500), false).is_empty());
        // ... and once it has been quiet, its count comes out, once.
        let later = t1 + QUIET;
        assert_eq!(s.sweep(later, false), vec![(caller("a"), 1)]);
        assert!(s.sweep(later, true).is_empty());
    }

    #[test]
    fn all_keys_together_are_held_to_the_global_rate() {
        let s = Sampler::new(1, "unauthenticated");
        let t0 = Instant::now();
        let written = (0..100u8)
            .filter(|i| {
                let ip = IpAddr::from([10, 0, 0, *i]);
                s.admit(SampleKey::source(ip), t0) != Sample::Suppress
            })
            .count();
        assert_eq!(written, GLOBAL_FACTOR as usize);
        let counted: u64 = s.sweep(t0, true).iter().map(|(_, n)| n).sum();
        assert_eq!(counted, 100 - written as u64);
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_still_counted() {
        let s = Sampler::new(1, "unauthenticated");
        let t0 = Instant::now();
        // Every source refused twice within the same instant: none is idle.
        let mut suppressed = 0;
        for i in 0..(TABLE_CAPACITY as u32 + 500) {
            let ip = IpAddr::from(i.to_be_bytes());
            for _ in 0..2 {
                if s.admit(SampleKey::source(ip), t0) == Sample::Suppress {
                    suppressed += 1;
                }
            }
        }
        assert!(s.tracked() <= TABLE_CAPACITY + 1, "{}", s.tracked());
        let swept = s.sweep(t0, true);
        assert!(swept.iter().any(|(k, _)| *k == SampleKey::Others));
        assert_eq!(swept.iter().map(|(_, n)| n).sum::<u64>(), suppressed);
        // Once they are all idle again, the table empties.
        assert!(s.sweep(t0 + Duration::from_secs(5), false).is_empty());
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_slash_64_and_zero_disables_sampling() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SampleKey::source(a), SampleKey::source(b));
        assert_ne!(SampleKey::source(a), SampleKey::source(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            SampleKey::source(mapped),
            SampleKey::Source("10.1.2.3".parse().unwrap())
        );
        let off = Sampler::new(0, "refusal");
        let t0 = Instant::now();
        assert!((0..1000).all(|_| off.admit(caller("a"), t0) == Sample::Write { suppressed: 0 }));
        let entry = summary(
            &SampleKey::source(a),
            4,
            &Sampler::new(1, "unauthenticated"),
        );
        assert_eq!(entry.source.as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(entry.suppressed, Some(4));
        assert_eq!(entry.kind, Some(Kind::Suppressed));
    }
}
