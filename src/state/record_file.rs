//! The memory store's versioned records on disk (`--approvals-file`), so a restart loses no
//! pending approval: one JSON file, replaced atomically (written beside it with mode 0600,
//! fsynced, renamed, the directory fsynced) before the change that made it is answered.
//! Records may hold a request body to run later, so only the gateway's user may read it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// One record in the memory store: version, document, and when it expires (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rec {
    pub version: u64,
    pub value: Vec<u8>,
    pub expires_ms: u64,
}

/// Everything the memory store keeps about records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tables {
    /// Records by key.
    pub records: HashMap<String, Rec>,
    /// Claims: the record key each points at, and when the claim expires (Unix ms).
    pub claims: HashMap<String, (String, u64)>,
    /// Indexes: (score, record key), ordered.
    pub indexes: HashMap<String, BTreeSet<(u64, String)>>,
    /// Bounded sets of record keys.
    pub sets: HashMap<String, BTreeSet<String>>,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    key: String,
    version: u64,
    /// The document, base64.
    value: String,
    expires_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct FileClaim {
    key: String,
    holder: String,
    expires_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    records: Vec<FileRecord>,
    claims: Vec<FileClaim>,
    indexes: Vec<(String, Vec<(u64, String)>)>,
    sets: Vec<(String, Vec<String>)>,
}

/// The record file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("record file {path}: {reason}")]
pub struct RecordFileError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Where the memory store keeps its records.
#[derive(Debug, Clone)]
pub struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    /// The file at `path` (not read yet).
    pub fn new(path: PathBuf) -> Self {
        RecordFile { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> RecordFileError {
        RecordFileError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// What the file holds, without what expired before `now_ms`; nothing if there is no
    /// file yet. A file that cannot be read or understood is an error: pending approvals
    /// would be lost, and requests someone approved would never run (or run unapproved).
    pub(super) fn load(&self, now_ms: u64) -> Result<Tables, RecordFileError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tables::default()),
            Err(e) => return Err(self.error(e)),
        };
        let body: FileBody = serde_json::from_slice(&text)
            .map_err(|e| self.error(format!("not a record file ({e})")))?;
        if body.version != 1 {
            return Err(self.error(format!("unknown version {}", body.version)));
        }
        let mut tables = Tables::default();
        for r in body.records.into_iter().filter(|r| r.expires_ms > now_ms) {
            let value = B64
                .decode(r.value.as_bytes())
                .map_err(|e| self.error(format!("record {}: {e}", r.key)))?;
            let rec = Rec {
                version: r.version,
                value,
                expires_ms: r.expires_ms,
            };
            tables.records.insert(r.key, rec);
        }
        for c in body.claims.into_iter().filter(|c| c.expires_ms > now_ms) {
            tables.claims.insert(c.key, (c.holder, c.expires_ms));
        }
        for (key, entries) in body.indexes {
            tables.indexes.insert(key, entries.into_iter().collect());
        }
        for (key, members) in body.sets {
            tables.sets.insert(key, members.into_iter().collect());
        }
        Ok(tables)
    }

    /// Replaces the file with `tables` (blocking: call it off the request threads).
    pub(super) fn store(&self, tables: &Tables) -> Result<(), RecordFileError> {
        let body = FileBody {
            version: 1,
            records: sorted(&tables.records, |key, r| FileRecord {
                key: key.clone(),
                version: r.version,
                value: B64.encode(&r.value),
                expires_ms: r.expires_ms,
            }),
            claims: sorted(&tables.claims, |key, (holder, expires_ms)| FileClaim {
                key: key.clone(),
                holder: holder.clone(),
                expires_ms: *expires_ms,
            }),
            indexes: sorted(&tables.indexes, |key, entries| {
                (key.clone(), entries.iter().cloned().collect())
            }),
            sets: sorted(&tables.sets, |key, members| {
                (key.clone(), members.iter().cloned().collect())
            }),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| self.error(e))?;
        super::durable::replace(&self.path, &bytes, 0o600).map_err(|e| self.error(e))
    }
}

/// A map's entries turned into `T`, in key order (so the file is stable).
fn sorted<V, T>(map: &HashMap<String, V>, f: impl Fn(&String, &V) -> T) -> Vec<T> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.into_iter().map(|k| f(k, &map[k])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> RecordFile {
        let dir = std::env::temp_dir().join(format!("gg-records-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        RecordFile::new(dir.join("approvals.json"))
    }

    #[test]
    fn records_survive_and_expired_ones_are_dropped() {
        let f = file();
        assert_eq!(f.load(0).unwrap(), Tables::default(), "no file yet");
        let mut t = Tables::default();
        let rec = |expires_ms| Rec {
            version: 3,
            value: b"{\"state\":\"pending\"}".to_vec(),
            expires_ms,
        };
        t.records.insert("live".into(), rec(200));
        t.records.insert("old".into(), rec(100));
        t.claims.insert("c".into(), ("live".into(), 200));
        t.indexes
            .insert("i".into(), [(5, "live".to_owned())].into_iter().collect());
        t.sets
            .insert("s".into(), ["live".to_owned()].into_iter().collect());
        f.store(&t).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the gateway's user reads it");
        let back = f.load(150).unwrap();
        t.records.remove("old");
        assert_eq!(back, t);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let f = file();
        std::fs::write(f.path(), b"{\"version\":1,\"rec").unwrap();
        let err = f.load(0).unwrap_err().to_string();
        assert!(err.contains("not a record file"), "{err}");
    }
}
