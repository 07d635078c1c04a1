//! The anchor: a small file beside the log (`<log>.anchor`), authenticated with the audit
//! HMAC key, naming where the chain must start (its tail) and how far it is known to reach
//! (its head). The writer rewrites it at start, at every rotation and retention, at most
//! once per [`INTERVAL`] while records are written, and at clean shutdown; `verify` checks
//! both ends of the files against it, so cutting records off either end is found.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Fingerprinter;
use super::chain::{ChainState, GENESIS};

/// The longest the anchor's head lags behind the durable chain while records are written.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The MAC's domain label (nothing else is authenticated under it).
const DOMAIN: &str = "graphgate audit anchor v1";
/// Largest anchor file read.
const MAX_BYTES: u64 = 64 * 1024;

/// The first record the log must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tail {
    /// Its sequence number.
    pub seq: u64,
    /// Its `prev_hash` (64 zeros for the very first record).
    pub prev_hash: String,
}

/// The last record known to be durable when the anchor was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Its sequence number (0: no record yet).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl From<&ChainState> for Head {
    fn from(state: &ChainState) -> Self {
        Head {
            seq: state.seq,
            hash: state.hash.clone(),
        }
    }
}

/// What the anchor says about its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Format version (1).
    pub version: u32,
    /// The log's file name.
    pub log: String,
    /// Where the chain starts (moved on only by graphgate's own retention).
    pub tail: Tail,
    /// How far the chain is known to reach.
    pub head: Head,
    /// The highest rotation number used, so numbering never goes back.
    pub last_rotation: u64,
    /// Written at a clean shutdown: no record follows `head`.
    pub clean: bool,
    /// The log has signed checkpoints (and a Merkle tree) beside it: a start that finds
    /// them missing refuses to go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpoints: bool,
    /// Why it was written: `start`, `rotation`, `retention`, `interval` or `shutdown`.
    pub reason: String,
    /// When (RFC 3339).
    pub written: String,
}

/// The file as stored: the anchor and its MAC.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    anchor: Anchor,
    hmac_sha256: String,
}

/// The anchor file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// Reading or writing failed.
    #[error("audit anchor {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not an anchor.
    #[error("audit anchor {path} is not a valid anchor file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The MAC does not match: altered, or written under another key.
    #[error("audit anchor {0} is not authentic: it was altered, or written with another HMAC key")]
    NotAuthentic(PathBuf),
}

/// Where the anchor of the log at `log` lives.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".anchor");
    log.with_file_name(name)
}

/// Whether `file` is an anchor (by name), not a log file.
pub fn is_anchor_file(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "anchor")
}

impl Anchor {
    /// The anchor of a new chain for the log at `log`.
    pub fn new(log: &Path, head: &ChainState, tail: Tail) -> Self {
        Anchor {
            version: 1,
            log: log
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tail,
            head: Head::from(head),
            last_rotation: 0,
            clean: false,
            checkpoints: false,
            reason: "start".into(),
            written: super::record::now_rfc3339(),
        }
    }

    /// The tail of a chain that starts with the very first record.
    pub fn genesis_tail() -> Tail {
        Tail {
            seq: 1,
            prev_hash: GENESIS.to_owned(),
        }
    }

    /// Reads and authenticates the anchor at `path`; `None` if there is none.
    pub fn load(path: &Path, key: &Fingerprinter) -> Result<Option<Anchor>, AnchorError> {
        let io_err = |source| AnchorError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::File::open(path) {
            Ok(f) => {
                let mut text = Vec::new();
                io::Read::read_to_end(&mut io::Read::take(f, MAX_BYTES), &mut text)
                    .map_err(io_err)?;
                text
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let stored: Stored = serde_json::from_slice(&text).map_err(|e| AnchorError::Malformed {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let message = signed_bytes(&stored.anchor);
        if !key.is_authentic(DOMAIN, &message, &stored.hmac_sha256) {
            return Err(AnchorError::NotAuthentic(path.to_owned()));
        }
        Ok(Some(stored.anchor))
    }

    /// Writes the anchor to `path` atomically (a temporary file, synced, then renamed over
    /// the old anchor, and the directory synced).
    pub fn store(&self, path: &Path, key: &Fingerprinter) -> Result<(), AnchorError> {
        let io_err = |source| AnchorError::Io {
            path: path.to_owned(),
            source,
        };
        let stored = Stored {
            hmac_sha256: key.authenticate(DOMAIN, &signed_bytes(self)),
            anchor: self.clone(),
        };
        let mut bytes = serde_json::to_vec(&stored).map_err(|e| io_err(io::Error::other(e)))?;
        bytes.push(b'\n');
        // A hidden name, so a shell glob of the log's files never picks it up.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(path.file_name().unwrap_or_default());
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o640);
        let mut file = opts.open(&tmp).map_err(io_err)?;
        file.write_all(&bytes).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)?;
        super::files::sync_dir(path).map_err(io_err)
    }
}

/// The bytes the MAC covers: the anchor's JSON (fields in declaration order).
fn signed_bytes(anchor: &Anchor) -> Vec<u8> {
    serde_json::to_vec(anchor).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Fingerprinter {
        Fingerprinter::new(&[b; 32]).unwrap()
    }

    #[test]
    fn an_anchor_round_trips_and_any_change_or_other_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("graphgate-anchor-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let path = path_for(&log);
        assert_eq!(path, dir.join("audit.jsonl.anchor"));
        assert!(is_anchor_file(&path) && !is_anchor_file(&log));
        assert_eq!(Anchor::load(&path, &key(1)).unwrap(), None);

        let state = ChainState {
            seq: 7,
            hash: "ab".repeat(32),
        };
        let anchor = Anchor::new(&log, &state, Anchor::genesis_tail());
        anchor.store(&path, &key(1)).unwrap();
        assert_eq!(Anchor::load(&path, &key(1)).unwrap(), Some(anchor));
        assert!(matches!(
            Anchor::load(&path, &key(2)),
            Err(AnchorError::NotAuthentic(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"seq\":7", "\"seq\":5")).unwrap();
        assert!(matches!(
            Anchor::load(&path, &key(1)),
            Err(AnchorError::NotAuthentic(_))
        ));
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            Anchor::load(&path, &key(1)),
            Err(AnchorError::Malformed { .. })
        ));
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
