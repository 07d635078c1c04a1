//! Where sealed records go: the append-only file, rotated by size, locked against a second
//! writer, with its anchor (see [`super::anchor`]) kept up to date. A failed write is rolled
//! back to the last synced length before the next one.

use crate::clock::Instant;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Fingerprinter;
use super::anchor::{self, Anchor, Head, Tail};
use super::chain::ChainState;
use super::files;
use super::record::Record;

pub use super::files::rotated_files;

/// Storage for the writer: append bytes, then make them durable.
pub trait Sink: Send + 'static {
    /// Appends `bytes` (whole lines). After an error, the next call first discards
    /// whatever was written since the last successful [`Sink::sync`].
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// The chain is durable up to `head`. Called after every sync and whenever the writer
    /// wakes; a file sink records it in its anchor at most once per [`anchor::INTERVAL`].
    fn durable(&mut self, head: &ChainState) -> io::Result<()> {
        let _ = head;
        Ok(())
    }
    /// The writer stops cleanly, with the chain durable up to `head`.
    fn close(&mut self, head: &ChainState) -> io::Result<()> {
        let _ = head;
        Ok(())
    }
}

/// Signed checkpoints beside the log, driven by the file sink on the writer thread as the
/// chain becomes durable (the checkpointer, `crate::audit::checkpoints::checkpointer`).
pub trait Checkpoints: Send + 'static {
    /// Whether a checkpoint of `head` is due.
    fn due(&self, head: &ChainState) -> bool;
    /// Asks for a checkpoint of `head` (never waits for it).
    fn write(&mut self, head: &ChainState);
    /// Asks for a checkpoint of `head` and waits until the tree has taken every record up to
    /// it (before retention may remove a file).
    fn sync_to(&mut self, head: &ChainState);
    /// The log closes at `head`: its last checkpoint is written.
    fn close(&mut self, head: &ChainState);
}

/// How the log's files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// Rotate a file when it would grow past this.
    pub max_file_bytes: u64,
    /// Keep at most this many rotated files, removing the oldest (`None`: keep all).
    pub retain_files: Option<usize>,
    /// Records are shipped off the host: retention never removes a file holding a record
    /// past the shipping cursor (a collector that is down must not lose them).
    pub keep_unshipped: bool,
}

/// The audit log file at `path`; full files become `path.000001`, `path.000002`, ...
/// numbered past the highest ever used (a retention job may move old ones away).
pub struct FileSink {
    path: PathBuf,
    file: File,
    len: u64,
    synced_len: u64,
    dirty: bool,
    options: FileOptions,
    key: Fingerprinter,
    anchor_path: PathBuf,
    /// The anchor as last stored.
    anchor: Anchor,
    /// The durable chain, as the writer last reported it.
    head: ChainState,
    anchored_at: Instant,
    /// Signed checkpoints, if a signing key is configured.
    checkpoints: Option<Box<dyn Checkpoints>>,
}

impl FileSink {
    /// Has `checkpoints` sign the log from now on (the anchor notes that the log has them),
    /// starting with the log as it stands (`head`).
    pub fn checkpoint_with(
        &mut self,
        mut checkpoints: Box<dyn Checkpoints>,
        head: &ChainState,
    ) -> io::Result<()> {
        if !self.anchor.checkpoints {
            self.anchor.checkpoints = true;
            self.write_anchor("start", false)?;
        }
        checkpoints.write(head);
        self.checkpoints = Some(checkpoints);
        Ok(())
    }

    /// Opens (or creates) the log, locks it, checks it against its anchor (a log whose
    /// anchored records are missing or rewritten is refused), and returns the chain state to
    /// continue from. A torn last line (crash mid-write) is kept: that file is rotated aside.
    pub fn open(
        path: &Path,
        options: FileOptions,
        key: Fingerprinter,
    ) -> io::Result<(FileSink, ChainState)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = lock(open_append(path)?)?;
        if files::finish_interrupted_rotation(path)? {
            tracing::warn!(path = %path.display(), "finished a rotation interrupted by a crash");
            file = lock(open_append(path)?)?;
        }
        let (state, torn) = last_state(&mut file)?;
        let state = match state {
            Some(s) => s,
            None => newest_rotated_state(path)?.unwrap_or_default(),
        };
        let anchor_path = anchor::path_for(path);
        let (anchor, state) = startup_anchor(path, &anchor_path, &key, state)?;
        let len = file.metadata()?.len();
        let mut sink = FileSink {
            path: path.to_owned(),
            file,
            len,
            synced_len: len,
            dirty: false,
            options,
            key,
            anchor_path,
            anchor,
            head: state.clone(),
            anchored_at: Instant::now(),
            checkpoints: None,
        };
        sink.write_anchor("start", false)?;
        if torn {
            tracing::warn!(path = %path.display(), "the audit log ends in a torn line (a crash mid-write); rotating it aside");
            sink.rotate()?;
        }
        Ok((sink, state))
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The closed file's records are all durable: sign the head they reach (and, when
        // retention may remove files, wait until the tree has taken them in).
        if let Some(c) = &mut self.checkpoints {
            match self.options.retain_files {
                Some(_) => c.sync_to(&self.head),
                None => c.write(&self.head),
            }
        }
        let n = files::highest_rotation(&self.path)?.max(self.anchor.last_rotation) + 1;
        let rotated = files::rotated_name(&self.path, n);
        // Never over an existing file: a taken name fails this write (and so the request).
        files::rename_no_replace(&self.path, &rotated)?;
        let file = lock(open_append(&self.path)?)?;
        files::sync_dir(&self.path)?;
        self.file = file;
        self.len = 0;
        self.synced_len = 0;
        self.anchor.last_rotation = n;
        self.write_anchor("rotation", false)?;
        self.apply_retention()
    }

    /// Removes the oldest rotated files past the retention limit, after moving the anchor's
    /// tail to the first record that stays (so `verify` expects the log to start there).
    fn apply_retention(&mut self) -> io::Result<()> {
        let Some(keep) = self.options.retain_files else {
            return Ok(());
        };
        let rotated = files::rotated_files(&self.path)?;
        let mut excess = rotated.len().saturating_sub(keep);
        if self.options.keep_unshipped && excess > 0 {
            excess = self.shipped_files(&rotated, excess)?;
        }
        if excess == 0 {
            return Ok(());
        }
        let (gone, kept) = rotated.split_at(excess);
        let mut tail = Tail {
            seq: self.head.seq + 1,
            prev_hash: self.head.hash.clone(),
        };
        for file in kept {
            if let Some(first) = files::first_link(file)? {
                tail = Tail {
                    seq: first.seq,
                    prev_hash: first.prev_hash,
                };
                break;
            }
        }
        if tail.seq > self.anchor.tail.seq {
            self.anchor.tail = tail;
        }
        self.write_anchor("retention", false)?;
        for file in gone {
            std::fs::remove_file(file)?;
            tracing::info!(file = %file.display(), "audit retention: removed the oldest rotated file");
        }
        files::sync_dir(&self.path)
    }

    /// How many of the oldest `upto` rotated files hold only records the collector
    /// acknowledged: a file's last record is the one before the next file's first (after the
    /// newest rotated file comes the current one, which starts after the head).
    fn shipped_files(&self, rotated: &[PathBuf], upto: usize) -> io::Result<usize> {
        let acked = super::ship_cursor::read(&self.path);
        for i in 0..upto {
            let next_first = match rotated.get(i + 1) {
                Some(next) => files::first_link(next)?.map(|first| first.seq),
                None => Some(self.head.seq + 1),
            };
            // A file without a readable first record keeps everything before it.
            if next_first.is_none_or(|first| first - 1 > acked) {
                return Ok(i);
            }
        }
        Ok(upto)
    }

    /// Stores the anchor with the current head.
    fn write_anchor(&mut self, reason: &str, clean: bool) -> io::Result<()> {
        // Set first: a failing disk is retried once per interval, not at every wake.
        self.anchored_at = Instant::now();
        self.anchor.head = Head::from(&self.head);
        self.anchor.clean = clean;
        reason.clone_into(&mut self.anchor.reason);
        self.anchor.written = super::record::now_rfc3339();
        self.anchor
            .store(&self.anchor_path, &self.key)
            .map_err(io::Error::other)
    }
}

impl Sink for FileSink {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.synced_len)?;
            self.len = self.synced_len;
            self.dirty = false;
        }
        if self.len > 0 && self.len + bytes.len() as u64 > self.options.max_file_bytes {
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

    fn durable(&mut self, head: &ChainState) -> io::Result<()> {
        if head.seq != self.head.seq {
            self.head = head.clone();
        }
        if let Some(c) = self.checkpoints.as_mut().filter(|c| c.due(&self.head)) {
            c.write(&self.head);
        }
        if self.anchor.head.seq != self.head.seq && self.anchored_at.elapsed() >= anchor::INTERVAL {
            self.write_anchor("interval", false)?;
        }
        Ok(())
    }

    fn close(&mut self, head: &ChainState) -> io::Result<()> {
        self.head = head.clone();
        if let Some(c) = &mut self.checkpoints {
            c.close(head);
        }
        self.write_anchor("shutdown", true)
    }
}

/// The anchor and chain state to continue with: the stored anchor, once the log is shown to
/// still hold what it anchored, or a new one for a log that has none. When every file was
/// moved away after a clean shutdown, the chain continues from the anchored head.
fn startup_anchor(
    path: &Path,
    anchor_path: &Path,
    key: &Fingerprinter,
    state: ChainState,
) -> io::Result<(Anchor, ChainState)> {
    let highest = files::highest_rotation(path)?;
    let loaded = Anchor::load(anchor_path, key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{e}. Check the key, or to start a new chain instead, move the log's files and its anchor aside"),
        )
    })?;
    let Some(mut anchor) = loaded else {
        let tail = match oldest_link(path)? {
            Some(first) if state.seq > 0 => {
                tracing::warn!(path = %path.display(), from_seq = first.seq, "the audit log has no anchor: anchoring it as it is now (records cut off before this start cannot be detected)");
                Tail {
                    seq: first.seq,
                    prev_hash: first.prev_hash,
                }
            }
            _ => Anchor::genesis_tail(),
        };
        let mut anchor = Anchor::new(path, &state, tail);
        anchor.last_rotation = highest;
        return Ok((anchor, state));
    };
    anchor.last_rotation = anchor.last_rotation.max(highest);
    if state.seq == 0 && anchor.clean && oldest_link(path)?.is_none() {
        tracing::info!(path = %path.display(), seq = anchor.head.seq, "the audit log's files were all moved away after a clean shutdown; continuing the chain from its anchor");
        let state = ChainState {
            seq: anchor.head.seq,
            hash: anchor.head.hash.clone(),
        };
        return Ok((anchor, state));
    }
    check_continues(path, &anchor, &state)?;
    Ok((anchor, state))
}

/// Refuses to continue a log whose anchored head is missing or was rewritten: starting would
/// re-anchor the damage and hide it.
fn check_continues(path: &Path, anchor: &Anchor, state: &ChainState) -> io::Result<()> {
    let head = &anchor.head;
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}. Check it with `graphgate audit verify`; to start a new chain instead, move the log's files and {} aside",
                anchor::path_for(path).display()
            ),
        )
    };
    if head.seq == 0 {
        return Ok(());
    }
    if state.seq < head.seq {
        return Err(refuse(format!(
            "the audit log ends at seq {} but its anchor records seq {}: records seq {}..={} are missing (cut off?)",
            state.seq,
            head.seq,
            state.seq + 1,
            head.seq
        )));
    }
    let found = if state.seq == head.seq {
        Some(state.hash.clone())
    } else {
        let mut newest_first = vec![path.to_owned()];
        newest_first.extend(files::rotated_files(path)?.into_iter().rev());
        files::find_link(&newest_first, head.seq)?.map(|l| l.hash)
    };
    match found {
        Some(hash) if hash == head.hash => Ok(()),
        Some(_) => Err(refuse(format!(
            "the record at seq {} is not the one the audit log's anchor records: the log was rewritten",
            head.seq
        ))),
        None => {
            tracing::warn!(path = %path.display(), seq = head.seq, "the anchored head is not among the log's files (moved away?); continuing the chain");
            Ok(())
        }
    }
}

/// The first record of the oldest file of the log present.
fn oldest_link(path: &Path) -> io::Result<Option<files::Link>> {
    let mut all = files::rotated_files(path)?;
    all.push(path.to_owned());
    for file in all {
        if let Some(first) = files::first_link(&file)? {
            return Ok(Some(first));
        }
    }
    Ok(None)
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o640);
    opts.open(path)
}

/// Locks the log against a second writer. A lock still held for a moment is waited for (up
/// to [`LOCK_WAIT`]): a process forked elsewhere in this one (a child being spawned) holds a
/// copy of the descriptor, and so the lock, until it execs.
fn lock(file: File) -> io::Result<File> {
    let until = Instant::now() + LOCK_WAIT;
    while file.try_lock().is_err() {
        if Instant::now() >= until {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the audit log is in use by another graphgate process",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(file)
}

/// Longest a start waits for the log's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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

fn newest_rotated_state(path: &Path) -> io::Result<Option<ChainState>> {
    match rotated_files(path)?.last() {
        Some(last) => Ok(last_state(&mut File::open(last)?)?.0),
        None => Ok(None),
    }
}
