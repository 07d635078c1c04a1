//! The memory store's versioned records: maps under one lock, timed on a wall clock that
//! moves with Tokio's (the wall-clock time at start plus Tokio's elapsed time, so paused
//! tests move it and the record file keeps real dates), made durable in the record file
//! (if any) before a change is answered; changes are made one at a time (approvals change at
//! human speed), so a change the file could not take is simply undone. At most
//! [`MAX_RECORDS`] records.

use std::sync::Mutex;
use std::time::Duration;

use super::record_file::{Rec, RecordFile, Tables};
use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::{StoreError, StoreErrorKind};

/// The most records one process keeps (a creation past it is refused as [`Created::Full`]).
pub(super) const MAX_RECORDS: usize = 10_000;

/// The memory store's records.
pub(super) struct MemoryRecords {
    tables: Mutex<Tables>,
    wall_at_start_ms: u64,
    start: tokio::time::Instant,
    file: Option<RecordFile>,
    /// Held by each change from its start until it is durable.
    changing: tokio::sync::Mutex<()>,
}

impl MemoryRecords {
    /// Records starting from `file` (read now), if given.
    pub(super) fn open(file: Option<RecordFile>) -> Result<Self, super::RecordFileError> {
        let mut records = Self::in_memory();
        if let Some(f) = file {
            records.tables = Mutex::new(f.load(records.wall_at_start_ms)?);
            records.file = Some(f);
        }
        Ok(records)
    }

    /// Records in this process alone, with no file.
    pub(super) fn in_memory() -> Self {
        MemoryRecords {
            tables: Mutex::new(Tables::default()),
            wall_at_start_ms: super::wall_clock_ms(),
            start: crate::clock::Instant::now(),
            file: None,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The file, for `describe`.
    pub(super) fn file(&self) -> Option<&RecordFile> {
        self.file.as_ref()
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_at_start_ms.saturating_add(elapsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<Versioned> {
        let now = self.now_ms();
        self.lock()
            .records
            .get(key)
            .filter(|r| r.expires_ms > now)
            .map(|r| Versioned {
                version: r.version,
                value: r.value.clone(),
            })
    }

    pub(super) fn claimed(&self, claim: &str) -> Option<String> {
        let now = self.now_ms();
        self.lock()
            .claims
            .get(claim)
            .filter(|(_, expires)| *expires > now)
            .map(|(holder, _)| holder.clone())
    }

    pub(super) async fn create(&self, new: &NewRecord<'_>) -> Result<Created, StoreError> {
        let _one_at_a_time = self.changing.lock().await;
        let before = self.lock().clone();
        let created = self.create_in_memory(new);
        if created != Created::Created {
            return Ok(created);
        }
        self.persist(before).await?;
        Ok(Created::Created)
    }

    fn create_in_memory(&self, new: &NewRecord<'_>) -> Created {
        let now = self.now_ms();
        let mut guard = self.lock();
        let tables = &mut *guard;
        tables.records.retain(|_, r| r.expires_ms > now);
        tables.claims.retain(|_, (_, expires)| *expires > now);
        for (index, claim) in new.claims.iter().enumerate() {
            if let Some((holder, _)) = tables.claims.get(*claim) {
                return Created::Claimed {
                    index,
                    holder: holder.clone(),
                };
            }
        }
        if let Some((set, max)) = new.bounded {
            let records = &tables.records;
            let members = tables.sets.entry(set.to_owned()).or_default();
            members.retain(|m| records.contains_key(m));
            if members.len() >= max {
                return Created::Full;
            }
        }
        if tables.records.contains_key(new.key) {
            return Created::Exists;
        }
        if tables.records.len() >= MAX_RECORDS {
            return Created::Full;
        }
        let expires_ms = now.saturating_add(ms(new.ttl));
        let rec = Rec {
            version: 1,
            value: new.value.to_vec(),
            expires_ms,
        };
        tables.records.insert(new.key.to_owned(), rec);
        for c in new.claims {
            tables
                .claims
                .insert((*c).to_owned(), (new.key.to_owned(), expires_ms));
        }
        for i in new.indexes {
            let index = tables.indexes.entry(i.key.to_owned()).or_default();
            let oldest = i.score.saturating_sub(i.keep);
            index.retain(|(score, _)| *score >= oldest);
            index.insert((i.score, new.key.to_owned()));
        }
        if let Some((set, _)) = new.bounded {
            tables
                .sets
                .entry(set.to_owned())
                .or_default()
                .insert(new.key.to_owned());
        }
        Created::Created
    }

    pub(super) async fn swap(&self, swap: &Swap<'_>) -> Result<Swapped, StoreError> {
        let _one_at_a_time = self.changing.lock().await;
        let before = {
            let now = self.now_ms();
            let mut tables = self.lock();
            let current = tables
                .records
                .get(swap.key)
                .filter(|r| r.expires_ms > now)
                .cloned();
            let Some(current) = current.clone().filter(|r| r.version == swap.version) else {
                let seen = current.map(|r| Versioned {
                    version: r.version,
                    value: r.value,
                });
                return Ok(Swapped::Stale(seen));
            };
            let snapshot = tables.clone();
            let next = Rec {
                version: current.version + 1,
                value: swap.value.to_vec(),
                expires_ms: now.saturating_add(ms(swap.ttl)),
            };
            tables.records.insert(swap.key.to_owned(), next);
            for c in swap.release {
                if tables.claims.get(*c).is_some_and(|(h, _)| h == swap.key) {
                    tables.claims.remove(*c);
                }
            }
            for i in swap.unindex {
                if let Some(index) = tables.indexes.get_mut(*i) {
                    index.retain(|(_, k)| k != swap.key);
                }
            }
            if let Some(set) = swap.leave
                && let Some(members) = tables.sets.get_mut(set)
            {
                members.remove(swap.key);
            }
            snapshot
        };
        self.persist(before).await?;
        Ok(Swapped::Swapped(swap.version + 1))
    }

    pub(super) fn list(&self, index: &str, max: usize) -> Vec<(String, Versioned)> {
        let now = self.now_ms();
        let mut guard = self.lock();
        let tables = &mut *guard;
        let records = &tables.records;
        let Some(entries) = tables.indexes.get_mut(index) else {
            return Vec::new();
        };
        entries.retain(|(_, key)| records.get(key).is_some_and(|r| r.expires_ms > now));
        entries
            .iter()
            .rev()
            .take(max)
            .filter_map(|(_, key)| {
                let r = records.get(key)?;
                let v = Versioned {
                    version: r.version,
                    value: r.value.clone(),
                };
                Some((key.clone(), v))
            })
            .collect()
    }

    /// Makes the current tables durable (the caller holds `changing`); if the file cannot
    /// take them, puts `before` back: not on disk, so not changed (fail closed).
    async fn persist(&self, before: Tables) -> Result<(), StoreError> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let tables = self.lock().clone();
        let written = tokio::task::spawn_blocking(move || file.store(&tables)).await;
        let error = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => StoreError::new(StoreErrorKind::File, e.to_string()),
            Err(e) => StoreError::new(StoreErrorKind::File, e.to_string()),
        };
        *self.lock() = before;
        Err(error)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
