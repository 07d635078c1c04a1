//! The memory store's budget counts on disk, so a restart does not reset today's counts:
//! one small JSON file, replaced atomically (written beside it, fsynced, renamed, the
//! directory fsynced) before the request that changed it is forwarded.

use std::collections::HashMap;
use std::io::Write;
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
    budgets: Vec<FileEntry>,
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

    /// The counts of windows not yet over at `now` (Unix seconds); none if there is no file
    /// yet. A file that cannot be read or understood is an error: today's counts would be
    /// unknown, and a gateway that guessed zero would reopen every spent budget.
    pub fn load(&self, now: u64) -> Result<HashMap<String, Count>, BudgetFileError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(self.error(e)),
        };
        let body: FileBody = serde_json::from_slice(&text).map_err(|e| {
            self.error(format!(
                "not a budget file ({e}); move it away to start today's counts from zero"
            ))
        })?;
        if body.version != 1 {
            return Err(self.error(format!("unknown version {}", body.version)));
        }
        Ok(body
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
            .collect())
    }

    /// Replaces the file with `counts` (blocking: call it off the request threads).
    pub fn store(&self, counts: &HashMap<String, Count>) -> Result<(), BudgetFileError> {
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
            version: 1,
            budgets,
        })
        .map_err(|e| self.error(e))?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| self.error(e))
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
        assert!(f.load(100).unwrap().is_empty(), "no file yet: no counts");
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
        f.store(&counts).unwrap();
        let back = f.load(100).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back["today"],
            Count {
                window_end: 200,
                used: 5
            }
        );
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
