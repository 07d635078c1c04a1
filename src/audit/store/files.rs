//! The log's files on disk: rotated names (`<log>.000001`, `.000002`, ...) numbered past the
//! highest ever used, a rename that never replaces a file, and reading the first record of a
//! file or the hash at a sequence number (for the anchor's checks).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The chain fields of a record, read without the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Link {
    /// Sequence number.
    pub seq: u64,
    /// Hash of the record before.
    pub prev_hash: String,
    /// This record's hash.
    #[serde(default)]
    pub hash: String,
}

/// Rotated files of `path`, oldest first (by number).
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(numbered(path)?.into_iter().map(|(_, p)| p).collect())
}

/// The highest rotation number present beside `path` (0 if none).
pub fn highest_rotation(path: &Path) -> io::Result<u64> {
    Ok(numbered(path)?.last().map_or(0, |(n, _)| *n))
}

/// The name of rotated file number `n` of `path`.
pub fn rotated_name(path: &Path, n: u64) -> PathBuf {
    let (dir, name) = split(path);
    dir.join(format!("{name}.{n:06}"))
}

/// The log a file belongs to: `audit.jsonl.000003` and `audit.jsonl` both give `audit.jsonl`.
pub fn base_log(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((base, n)) if n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()) => {
            file.with_file_name(base)
        }
        _ => file.to_owned(),
    }
}

fn numbered(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let (dir, name) = split(path);
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(name.as_str()))
            .and_then(|n| n.strip_prefix('.'))
        else {
            continue;
        };
        if let Ok(n) = rest.parse::<u64>() {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn split(path: &Path) -> (PathBuf, String) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// Renames `from` to `to` unless `to` exists, in which case nothing changes and the error is
/// `AlreadyExists`. A hard link makes the check and the new name one atomic step; on file
/// systems without hard links, the name is checked just before a plain rename.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let taken = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already exists; refusing to rename over it",
                to.display()
            ),
        )
    };
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(taken()),
        Err(_) if std::fs::symlink_metadata(to).is_ok() => Err(taken()),
        Err(_) => std::fs::rename(from, to),
    }
}

/// If a crash came between the two steps of [`rename_no_replace`], the live name and a
/// rotated name are the same file: drop the live name (the records stay under the rotated
/// one). Returns whether it did.
#[cfg(unix)]
pub fn finish_interrupted_rotation(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let live = match std::fs::metadata(path) {
        Ok(m) if m.nlink() > 1 => m,
        _ => return Ok(false),
    };
    for rotated in rotated_files(path)? {
        let m = std::fs::metadata(&rotated)?;
        if m.dev() == live.dev() && m.ino() == live.ino() {
            std::fs::remove_file(path)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Without hard links there is nothing to finish.
#[cfg(not(unix))]
pub fn finish_interrupted_rotation(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

/// The first complete record of `file` (None if it holds none).
pub fn first_link(file: &Path) -> io::Result<Option<Link>> {
    first_link_in(&File::open(file)?)
}

/// The first complete record of an open file, read from where the handle stands (its start
/// when just opened): what a reader that goes on with the same handle will find, even if
/// the name it was opened by now belongs to another file.
pub fn first_link_in(file: &File) -> io::Result<Option<Link>> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        if line.ends_with(b"\n")
            && let Ok(link) = serde_json::from_slice::<Link>(&line)
        {
            return Ok(Some(link));
        }
        line.clear();
    }
    Ok(None)
}

/// The record with sequence number `seq` in `files` (looked for newest file first, stopping
/// at the first file that starts at or before it).
pub fn find_link(files_newest_first: &[PathBuf], seq: u64) -> io::Result<Option<Link>> {
    for file in files_newest_first {
        let Some(first) = first_link(file)? else {
            continue;
        };
        if first.seq > seq {
            continue;
        }
        let reader = BufReader::new(File::open(file)?);
        for line in reader.split(b'\n') {
            if let Ok(link) = serde_json::from_slice::<Link>(&line?)
                && link.seq == seq
            {
                return Ok(Some(link));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// Reads a whole log file; an error names the file.
pub fn read(file: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))
}

/// Makes a rename or removal in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("graphgate-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_taken_name_is_never_renamed_over() {
        let dir = temp_dir();
        let (from, to) = (dir.join("a"), dir.join("b"));
        std::fs::write(&from, "new").unwrap();
        std::fs::write(&to, "old").unwrap();
        let err = rename_no_replace(&from, &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(&from).unwrap(), "new");
        std::fs::remove_file(&to).unwrap();
        rename_no_replace(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");
        assert!(!from.exists());
    }

    #[test]
    fn numbering_follows_the_highest_name_not_the_count() {
        let dir = temp_dir();
        let log = dir.join("audit.jsonl");
        for n in [2, 3, 10] {
            std::fs::write(rotated_name(&log, n), "").unwrap();
        }
        std::fs::write(dir.join("audit.jsonl.anchor"), "").unwrap();
        std::fs::write(dir.join("audit.jsonl.x7"), "").unwrap();
        assert_eq!(highest_rotation(&log).unwrap(), 10);
        assert_eq!(rotated_files(&log).unwrap().len(), 3);
        assert_eq!(base_log(&rotated_name(&log, 10)), log);
        assert_eq!(base_log(&log), log);
    }

    #[test]
    fn an_interrupted_rotation_is_finished_without_losing_the_file() {
        let dir = temp_dir();
        let log = dir.join("audit.jsonl");
        std::fs::write(&log, "{}\n").unwrap();
        std::fs::hard_link(&log, rotated_name(&log, 1)).unwrap();
        assert!(finish_interrupted_rotation(&log).unwrap());
        assert!(!log.exists());
        assert_eq!(
            std::fs::read_to_string(rotated_name(&log, 1)).unwrap(),
            "{}\n"
        );
        std::fs::write(&log, "").unwrap();
        assert!(!finish_interrupted_rotation(&log).unwrap());
    }
}
