//! The memory store's budget counts on disk: a snapshot of the counts and the audit record
//! they reach (`audit_seq`), one small JSON file replaced atomically (written beside it,
//! fsynced, renamed, the directory fsynced) off the request path. The audit log's intents
//! say what came after, so a start adds those (see `crate::ratelimit::ledger`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A budget counter: devices used in the window that ends at `window_end` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// When the window ends (and the count stops mattering).
    pub window_end: u64,
    /// Devices counted so far.
    pub used: u64,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    key: String,
    window_end: u64,
    used: u64,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    /// The audit record the counts include every intent up to (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_seq: Option<u64>,
    budgets: Vec<FileEntry>,
}

/// The counts as a snapshot left them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The audit record whose intents the counts include, all of them up to it; `None` for
    /// a file written before counts came from the audit log (each admission was written
    /// then: the counts are complete).
    pub audit_seq: Option<u64>,
    /// The counts of windows not yet over, by key.
    pub counts: HashMap<String, Count>,
}

/// The budget file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("budget file {path}: {reason}")]
pub struct BudgetFileError {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Where the counts are kept.
#[derive(Debug, Clone)]
pub struct BudgetFile {
    path: PathBuf,
}

impl BudgetFile {
    /// The file at `path` (not read yet).
    pub fn new(path: PathBuf) -> Self {
        BudgetFile { path }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl std::fmt::Display) -> BudgetFileError {
        BudgetFileError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The counts of windows not yet over at `now` (Unix seconds), and the audit record they
    /// reach; none if there is no file yet. A file that cannot be read or understood is an
    /// error: today's counts would be unknown, and a gateway that guessed zero would reopen
    /// every spent budget.
    pub fn load(&self, now: u64) -> Result<Snapshot, BudgetFileError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Snapshot::default()),
            Err(e) => return Err(self.error(e)),
        };
        let body: FileBody = serde_json::from_slice(&text).map_err(|e| {
            self.error(format!(
                "not a budget file ({e}); move it away to start today's counts from zero"
            ))
        })?;
        let audit_seq = match (body.version, body.audit_seq) {
            (1, None) => None,
            (2, Some(seq)) => Some(seq),
            (version, _) => return Err(self.error(format!("unknown version {version}"))),
        };
        let counts = body
            .budgets
            .into_iter()
            .filter(|e| e.window_end > now)
            .map(|e| {
                let count = Count {
                    window_end: e.window_end,
                    used: e.used,
                };
                (e.key, count)
            })
            .collect();
        Ok(Snapshot { audit_seq, counts })
    }

    /// Replaces the file with `counts`, which include every audit intent up to `audit_seq`
    /// (blocking: call it off the request threads).
    pub fn store(
        &self,
        audit_seq: u64,
        counts: &HashMap<String, Count>,
    ) -> Result<(), BudgetFileError> {
        let mut budgets: Vec<FileEntry> = counts
            .iter()
            .map(|(key, c)| FileEntry {
                key: key.clone(),
                window_end: c.window_end,
                used: c.used,
            })
            .collect();
        budgets.sort_by(|a, b| a.key.cmp(&b.key));
        let body = serde_json::to_vec_pretty(&FileBody {
            version: 2,
            audit_seq: Some(audit_seq),
            budgets,
        })
        .map_err(|e| self.error(e))?;
        // 0o666 before the umask, as `File::create` made it.
        super::durable::replace(&self.path, &body, 0o666).map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> BudgetFile {
        let dir = std::env::temp_dir().join(format!("gg-budget-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        BudgetFile::new(dir.join("budgets.json"))
    }

    #[test]
    fn counts_survive_and_finished_windows_are_dropped() {
        let f = file();
        assert_eq!(
            f.load(100).unwrap(),
            Snapshot::default(),
            "no file yet: no counts"
        );
        let mut counts = HashMap::new();
        counts.insert(
            "today".to_owned(),
            Count {
                window_end: 200,
                used: 5,
            },
        );
        counts.insert(
            "yesterday".to_owned(),
            Count {
                window_end: 100,
                used: 9,
            },
        );
        f.store(42, &counts).unwrap();
        let back = f.load(100).unwrap();
        assert_eq!(back.audit_seq, Some(42));
        assert_eq!(back.counts.len(), 1);
        assert_eq!(
            back.counts["today"],
            Count {
                window_end: 200,
                used: 5
            }
        );
    }

    /// A file of the release before counts came from the audit log: its counts, complete
    /// (each admission was written), with no audit record named.
    #[test]
    fn a_file_of_the_first_version_is_read_as_complete_counts() {
        let f = file();
        let v1 = r#"{"version":1,"budgets":[{"key":"k","window_end":200,"used":3}]}"#;
        std::fs::write(f.path(), v1).unwrap();
        let back = f.load(100).unwrap();
        assert_eq!(back.audit_seq, None);
        assert_eq!(back.counts["k"].used, 3);
        std::fs::write(f.path(), r#"{"version":2,"budgets":[]}"#).unwrap();
        assert!(f.load(100).is_err(), "version 2 names its audit record");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let f = file();
        std::fs::write(f.path(), b"{\"version\":1,\"budg").unwrap();
        let err = f.load(0).unwrap_err().to_string();
        assert!(
            err.contains("not a budget file") && err.contains("budgets.json"),
            "{err}"
        );
    }
}
