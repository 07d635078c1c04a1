//! Versioned records: documents the store keeps whole (pending approvals are the first),
//! each changed only by a compare-and-swap on its version, so of two replicas changing one
//! record at once exactly one wins and the other sees what won. A record may take unique
//! *claims* (names that point at it: one idempotency key, one open request per operation),
//! join *indexes* (sorted by a score, for listing), and join a *bounded set* (at most so many
//! open records per caller). The store never reads inside a record: what a change releases
//! or leaves, its caller says.

use std::time::Duration;

use super::{StateStore, StoreError, metrics};

/// A record and its version (1 when created, one more with each swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The version.
    pub version: u64,
    /// The document.
    pub value: Vec<u8>,
}

/// An index a record joins: its key, the record's score in it (e.g. creation time in ms),
/// and how far back it keeps (entries whose score is older than the newest by more than
/// `keep` are dropped when a record joins).
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry<'a> {
    /// The index's key.
    pub key: &'a str,
    /// The record's score.
    pub score: u64,
    /// The span of scores kept behind this one.
    pub keep: u64,
}

/// A record to create.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Its key.
    pub key: &'a str,
    /// The document.
    pub value: &'a [u8],
    /// How long the store keeps it (and its claims) unless a swap renews it.
    pub ttl: Duration,
    /// Unique names that will point at it: it is created only if none is taken.
    pub claims: &'a [&'a str],
    /// Indexes it joins.
    pub indexes: &'a [IndexEntry<'a>],
    /// A set it joins, unless that set already holds this many members whose records
    /// still exist.
    pub bounded: Option<(&'a str, usize)>,
}

/// What [`crate::state::Store::record_create`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Created, with version 1.
    Created,
    /// `claims[index]` already points at the record `holder`: nothing was created.
    Claimed {
        /// Which claim.
        index: usize,
        /// The key of the record holding it.
        holder: String,
    },
    /// The bounded set is full: nothing was created.
    Full,
    /// A record with this key exists already: nothing was created.
    Exists,
}

/// A change to a record at a known version.
#[derive(Debug, Clone, Copy)]
pub struct Swap<'a> {
    /// Its key.
    pub key: &'a str,
    /// The version the change was made from.
    pub version: u64,
    /// The new document.
    pub value: &'a [u8],
    /// How long the store keeps it from now.
    pub ttl: Duration,
    /// Claims to let go (only those still pointing at this record).
    pub release: &'a [&'a str],
    /// Indexes to leave.
    pub unindex: &'a [&'a str],
    /// A bounded set to leave.
    pub leave: Option<&'a str>,
}

/// What [`crate::state::Store::record_swap`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// Changed: the record's new version.
    Swapped(u64),
    /// Someone changed it first (or it is gone): nothing was changed; what is there now.
    Stale(Option<Versioned>),
}

impl StateStore {
    /// The record `key`, if the store has it.
    pub async fn record_get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        metrics::timed("record_get", self.backend.record_get(key)).await
    }

    /// The key of the record a claim points at, if it is taken.
    pub async fn record_claimed(&self, claim: &str) -> Result<Option<String>, StoreError> {
        metrics::timed("record_claimed", self.backend.record_claimed(claim)).await
    }

    /// Creates a record with its claims, indexes and set, all or nothing.
    pub async fn record_create(&self, new: &NewRecord<'_>) -> Result<Created, StoreError> {
        metrics::timed("record_create", self.backend.record_create(new)).await
    }

    /// Changes a record if it is still at `swap.version`.
    pub async fn record_swap(&self, swap: &Swap<'_>) -> Result<Swapped, StoreError> {
        metrics::timed("record_swap", self.backend.record_swap(swap)).await
    }

    /// The newest `max` records of an index (highest score first) that still exist.
    pub async fn record_list(
        &self,
        index: &str,
        max: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        metrics::timed("record_list", self.backend.record_list(index, max)).await
    }
}
