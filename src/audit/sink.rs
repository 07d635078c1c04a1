//! Where sealed records go: the append-only file, rotated by size, locked against a second
//! writer. A failed write is rolled back to the last synced length before the next one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::chain::ChainState;
use super::record::Record;

/// Storage for the writer: append bytes, then make them durable.
pub trait Sink: Send + 'static {
    /// Appends `bytes` (whole lines). After an error, the next call first discards
    /// whatever was written since the last successful [`Sink::sync`].
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// The audit log file at `path`; full files become `path.000001`, `path.000002`, ...
pub struct FileSink {
    path: PathBuf,
    file: File,
    len: u64,
    synced_len: u64,
    dirty: bool,
    max_file_bytes: u64,
}

impl FileSink {
    /// Opens (or creates) the log, locks it, and returns the chain state to continue from.
    /// A torn last line (crash mid-write) is kept: that file is rotated aside as it is.
    pub fn open(path: &Path, max_file_bytes: u64) -> io::Result<(FileSink, ChainState)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = open_append(path)?;
        file.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the audit log is in use by another graphgate process",
            )
        })?;
        let (state, torn) = last_state(&mut file)?;
        let state = match state {
            Some(s) => s,
            None => newest_rotated_state(path)?.unwrap_or_default(),
        };
        let len = file.metadata()?.len();
        let mut sink = FileSink {
            path: path.to_owned(),
            file,
            len,
            synced_len: len,
            dirty: false,
            max_file_bytes,
        };
        if torn {
            tracing::warn!(path = %path.display(), "the audit log ends in a torn line (a crash mid-write); rotating it aside");
            sink.rotate()?;
        }
        Ok((sink, state))
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = next_rotated_name(&self.path)?;
        std::fs::rename(&self.path, &rotated)?;
        let file = open_append(&self.path)?;
        file.try_lock()
            .map_err(|_| io::Error::other("cannot lock the new audit log file"))?;
        sync_dir(&self.path)?;
        self.file = file;
        self.len = 0;
        self.synced_len = 0;
        Ok(())
    }
}

impl Sink for FileSink {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.synced_len)?;
            self.len = self.synced_len;
            self.dirty = false;
        }
        if self.len > 0 && self.len + bytes.len() as u64 > self.max_file_bytes {
            self.rotate()?;
        }
        self.dirty = true;
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.dirty = true;
        self.file.sync_data()?;
        self.synced_len = self.len;
        self.dirty = false;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o640);
    opts.open(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// The chain state after the last complete record of `file`, and whether a torn line follows.
fn last_state(file: &mut File) -> io::Result<(Option<ChainState>, bool)> {
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let torn = !text.is_empty() && !text.ends_with(b"\n");
    let complete = match text.iter().rposition(|b| *b == b'\n') {
        Some(end) => &text[..end],
        None => return Ok((None, torn)),
    };
    let last = complete.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    let record: Record = serde_json::from_slice(last).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the last audit record cannot be read: {e}"),
        )
    })?;
    Ok((
        Some(ChainState {
            seq: record.seq,
            hash: record.hash,
        }),
        torn,
    ))
}

/// Rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
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
    Ok(found.into_iter().map(|(_, p)| p).collect())
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

fn next_rotated_name(path: &Path) -> io::Result<PathBuf> {
    let n = rotated_files(path)?.len() as u64 + 1;
    let (dir, name) = split(path);
    Ok(dir.join(format!("{name}.{n:06}")))
}

fn newest_rotated_state(path: &Path) -> io::Result<Option<ChainState>> {
    match rotated_files(path)?.last() {
        Some(last) => Ok(last_state(&mut File::open(last)?)?.0),
        None => Ok(None),
    }
}
