//! What a witness remembers: for each log (by origin), the newest checkpoint it cosigned,
//! one JSON file per log in the state folder, replaced atomically (a temporary file,
//! synced, renamed over the old one, the folder synced) before the cosignature is returned.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::witnessing::witness_protocol::origin_hash;

/// The newest checkpoint cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    /// The log's origin line.
    pub origin: String,
    /// Its size.
    pub size: u64,
    /// Its root hash, base64.
    pub root: String,
    /// The checkpoint with the log's signature and this witness's cosignature.
    pub note: String,
}

/// Every log's state, in memory and on disk.
#[derive(Debug)]
pub struct States {
    dir: PathBuf,
    logs: HashMap<String, LogState>,
}

/// Largest state file read.
const MAX_BYTES: u64 = 1024 * 1024;

impl States {
    /// Loads the state folder `dir` (creating it).
    pub fn load(dir: &Path) -> io::Result<States> {
        std::fs::create_dir_all(dir)?;
        let mut logs = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let mut text = Vec::new();
            io::Read::read_to_end(
                &mut io::Read::take(std::fs::File::open(&path)?, MAX_BYTES),
                &mut text,
            )?;
            let state: LogState = serde_json::from_slice(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            logs.insert(state.origin.clone(), state);
        }
        Ok(States {
            dir: dir.to_owned(),
            logs,
        })
    }

    /// How many logs have a state.
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    /// Whether no log has a state yet.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// The newest cosigned checkpoint of `origin`.
    pub fn get(&self, origin: &str) -> Option<&LogState> {
        self.logs.get(origin)
    }

    /// The state of the log whose origin hashes to `hash`.
    pub fn by_hash(&self, hash: &str) -> Option<&LogState> {
        self.logs.values().find(|s| origin_hash(&s.origin) == hash)
    }

    /// Stores `state` durably, then keeps it.
    pub fn put(&mut self, state: LogState) -> io::Result<()> {
        let name = format!("{}.json", origin_hash(&state.origin));
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut bytes = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.logs.insert(state.origin.clone(), state);
        Ok(())
    }
}
