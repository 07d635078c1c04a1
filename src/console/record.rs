//! How one log line becomes index material: the light view of a record (no JSON tree),
//! the fast check of its hash, interned strings, and where a file went after a rotation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::audit::read::sweep::sealed_digest;
use crate::audit::records::chain::{hash_of, hex};
use crate::audit::records::record::{AuditDecision, Kind};

/// Most strings one field's table keeps: callers and operations come from the policy and the
/// catalog, so this is only a backstop; a string past it is numbered [`OTHER`] (shown from
/// its record as usual, but not offered as a filter).
pub(super) const MAX_NAMES: usize = 65_536;
/// The number of every string past [`MAX_NAMES`].
pub(super) const OTHER: u32 = u32::MAX;

/// Strings seen in a field, numbered from 1 (0: absent), at most [`MAX_NAMES`].
#[derive(Default)]
pub(super) struct Interner {
    ids: HashMap<String, u32>,
    pub(super) names: Vec<String>,
    /// The number of the name interned last (0: none).
    last: u32,
}

impl Interner {
    pub(super) fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        // Runs of the same name are the common case: no hash for them.
        if let Some(name) = self.names.get(self.last.wrapping_sub(1) as usize)
            && name == s
        {
            return self.last;
        }
        if let Some(id) = self.ids.get(s) {
            self.last = *id;
            return *id;
        }
        if self.names.len() >= MAX_NAMES {
            return OTHER;
        }
        self.names.push(s.to_owned());
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(s.to_owned(), id);
        self.last = id;
        id
    }

    pub(super) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// The light view of a record the index reads.
#[derive(Debug, PartialEq, serde::Deserialize)]
pub(super) struct Light<'a> {
    pub(super) seq: u64,
    #[serde(borrow)]
    pub(super) prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) hash: Cow<'a, str>,
    pub(super) kind: Option<Kind>,
    #[serde(borrow)]
    pub(super) time: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) audit_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) caller: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) device_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) operation: Option<Cow<'a, str>>,
    pub(super) decision: Option<AuditDecision>,
    #[serde(borrow)]
    pub(super) completion: Option<Cow<'a, str>>,
}

/// What groups an outcome with its intent: a hash of the audit id (std's SipHash, fixed keys;
/// a collision at worst folds two rows of the lookback window together, it checks nothing).
pub(super) fn id_hash(id: &str) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish() as u32
}

/// Whether `line` hashes to `claimed` (the hash it carries). A sealed line is checked as
/// `audit verify` checks it (the SHA-256 of the line with its `hash` member cut out, no
/// parse); any other line is re-serialised (slow path).
pub(super) fn sealed_hash(line: &[u8], claimed: &[u8; 32]) -> bool {
    if sealed_digest(line).as_ref() == Some(claimed) {
        return true;
    }
    serde_json::from_slice(line).is_ok_and(|v| hash_of(&v) == hex(claimed))
}

/// The current name of the file whose first record is `first`, read under `path` (a
/// rotation renames the live file).
pub(super) fn resolve(path: &Path, first: u64) -> PathBuf {
    let starts = |p: &Path| {
        crate::audit::store::files::first_link(p)
            .ok()
            .flatten()
            .is_some_and(|l| l.seq == first)
    };
    if starts(path) {
        return path.to_owned();
    }
    let log = crate::audit::store::files::base_log(path);
    crate::audit::store::files::rotated_files(&log)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|p| starts(p))
        .unwrap_or_else(|| path.to_owned())
}
