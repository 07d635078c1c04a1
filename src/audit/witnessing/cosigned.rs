//! Cosigned checkpoints beside the log (`<log>.cosigned`): the newest checkpoints with the
//! witnesses' `cosignature/v1` lines added to the log's signature, as signed notes one after
//! another, at most [`KEEP`] of them, the file replaced atomically. `audit verify
//! --witness-key` and receipts read them; a witness's own copy (its monitoring endpoint)
//! can stand in for the file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::{self, Checkpoint};
use super::note::NoteVerifier;

/// Cosigned checkpoints kept.
pub const KEEP: usize = 64;
/// Largest file read.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Where the cosigned checkpoints of the log at `log` are kept.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".cosigned");
    log.with_file_name(name)
}

/// Whether `file` is a cosigned-checkpoint file (by name), not a log file.
pub fn is_cosigned_file(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "cosigned")
}

/// The notes in the file at `path` (none if there is no file).
pub fn read(path: &Path) -> io::Result<Vec<String>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_BYTES), &mut text)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(checkpoint::split_notes(&text)
        .into_iter()
        .map(str::to_owned)
        .collect())
}

/// Replaces the file at `path` with `notes` (the newest [`KEEP`]), atomically.
pub fn store(path: &Path, notes: &[String]) -> io::Result<()> {
    let keep = &notes[notes.len().saturating_sub(KEEP)..];
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o644);
    let mut file = opts.open(&tmp)?;
    for note in keep {
        file.write_all(note.as_bytes())?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    super::files::sync_dir(path)
}

/// A cosigned checkpoint, checked: the log's signature verifies, and these witnesses'
/// cosignatures do.
#[derive(Debug, Clone)]
pub struct Witnessed {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The witnesses whose cosignature verifies, with its timestamp.
    pub by: Vec<(String, u64)>,
    /// The note.
    pub note: String,
}

/// Opens `note` with the log's key and counts the valid cosignatures by `witnesses`. A
/// witness's cosignature that does not verify is an error (a forgery), as is the log's.
pub fn check(
    note: &str,
    log_key: &NoteVerifier,
    witnesses: &[NoteVerifier],
) -> Result<Witnessed, String> {
    let text = log_key.open(note).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
    let mut by = Vec::new();
    for w in witnesses {
        match w.cosigned_at(note) {
            Ok(at) => by.push((w.label(), at)),
            Err(super::note::NoteError::NotSignedByKey(_)) => {}
            Err(e) => return Err(format!("witness {}: {e}", w.label())),
        }
    }
    Ok(Witnessed {
        checkpoint,
        by,
        note: note.to_owned(),
    })
}
