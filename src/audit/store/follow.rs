//! Reading a live log in chain order from a sequence number on, across rotation: the
//! shipper, the console's index and the reconciler's restart scan all follow the log this
//! way. A follower finds the file holding the next record by the files' first records, reads
//! whole lines only, and finds its place again when the live file is rotated under it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::files;

/// Longest line read; a longer one is skipped as not a record.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// How often a follower lists the files again when one vanished while it looked (each
/// retry follows a rotation or a removal that happened in between).
const LOCATE_TRIES: usize = 8;

/// One line of the log, as read.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its sequence number.
    pub seq: u64,
    /// The file it was read from (its name when read: a rotation renames the live file).
    pub file: PathBuf,
    /// Where the line starts in that file.
    pub offset: u64,
    /// The line, without its newline.
    pub bytes: Vec<u8>,
}

/// One line of the log as a [`Reader`] is handed it, borrowed from the follower.
#[derive(Debug, Clone, Copy)]
pub struct LineRef<'a> {
    /// The file it was read from (its name when read).
    pub file: &'a Path,
    /// Where the line starts in that file.
    pub offset: u64,
    /// The line, without its newline.
    pub bytes: &'a [u8],
}

/// What takes the lines a follower reads ([`Follower::read_into`]): it parses each line once,
/// for its sequence number and whatever else it keeps, and takes the lines in chain order.
pub trait Reader {
    /// A line as parsed (it may borrow from the line).
    type Parsed<'a>;
    /// The line's sequence number and parsed form; `None`: not a record (passed over).
    fn parse<'a>(&mut self, bytes: &'a [u8]) -> Option<(u64, Self::Parsed<'a>)>;
    /// Takes the next line in chain order (record `seq`).
    fn take(&mut self, line: LineRef<'_>, seq: u64, parsed: Self::Parsed<'_>);
}

/// Follows the log at `log` from a sequence number on.
pub struct Follower {
    log: PathBuf,
    next: u64,
    open: Option<Open>,
    /// The line being read (one buffer for every line).
    buf: Vec<u8>,
}

struct Open {
    path: PathBuf,
    /// The first record of the file (a new live file under the same name has another).
    first: u64,
    reader: BufReader<File>,
    offset: u64,
}

impl Follower {
    /// A follower whose first record read will be `next` (or the oldest one present after
    /// it, if `next` is gone).
    pub fn new(log: &Path, next: u64) -> Self {
        Follower {
            log: log.to_owned(),
            next: next.max(1),
            open: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The sequence number of the next record to read.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Reads records from the next one up to `until` (inclusive), at most `max` of them.
    /// Returns fewer when the files hold no more yet. A gap (records removed by retention)
    /// is skipped: the next line read says where the log goes on.
    pub fn read(&mut self, until: u64, max: usize) -> io::Result<Vec<Line>> {
        let mut lines = Lines(Vec::new());
        self.read_into(until, max, &mut lines)?;
        Ok(lines.0)
    }

    /// As [`Follower::read`], handing each line to `reader` as it is read (no copy of it is
    /// kept); returns how many it took.
    pub fn read_into<R: Reader>(
        &mut self,
        until: u64,
        max: usize,
        reader: &mut R,
    ) -> io::Result<usize> {
        let mut taken = 0;
        let mut relocated = false;
        while self.next <= until && taken < max {
            if self.open.is_none() && !self.locate()? {
                break;
            }
            let Some(open) = &mut self.open else { break };
            match next_line(open, &mut self.buf)? {
                Some(offset) => {
                    let Some((seq, parsed)) = reader.parse(&self.buf) else {
                        continue;
                    };
                    if seq < self.next {
                        continue;
                    }
                    self.next = seq + 1;
                    relocated = false;
                    let line = LineRef {
                        file: &open.path,
                        offset,
                        bytes: &self.buf,
                    };
                    reader.take(line, seq, parsed);
                    taken += 1;
                }
                // The end of this file: the records go on in another one (a rotation), or
                // are not written yet.
                None if !relocated => {
                    let left = self.open.take();
                    relocated = true;
                    if !self.locate()? {
                        // Nothing to go on with: keep the place in the file it had.
                        self.open = left;
                        break;
                    }
                    self.resume(left)?;
                }
                None => break,
            }
        }
        Ok(taken)
    }

    /// Opens the newest file whose first record is at or before the next one (or the oldest
    /// file, if every file starts after it). Returns false when there is none yet.
    ///
    /// The files change while they are looked at: a rotation renames the live file (a hard
    /// link, then the live name removed, then a new live file) and retention removes old
    /// ones. So each file's first record is read through the handle that is kept (a name
    /// looked at twice may name two files), and a file gone between the listing and its
    /// opening means the listing is taken again.
    fn locate(&mut self) -> io::Result<bool> {
        for _ in 0..LOCATE_TRIES {
            match self.try_locate() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                found => return found,
            }
        }
        // Still changing under us: look again at the next read.
        Ok(false)
    }

    fn try_locate(&mut self) -> io::Result<bool> {
        let mut all = files::rotated_files(&self.log)?;
        if self.log.exists() {
            all.push(self.log.clone());
        }
        // Newest first: a follower keeping up finds its file at once.
        let mut chosen: Option<(PathBuf, u64, File)> = None;
        for path in all.into_iter().rev() {
            let file = File::open(&path)?;
            let Some(first) = files::first_link_in(&file)? else {
                continue;
            };
            let at_or_before = first.seq <= self.next;
            chosen = Some((path, first.seq, file));
            if at_or_before {
                break;
            }
        }
        let Some((path, first, mut file)) = chosen else {
            return Ok(false);
        };
        file.rewind()?;
        self.open = Some(Open {
            path,
            first,
            reader: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
        });
        Ok(true)
    }

    /// Found the same file again (nothing was rotated, the records are not written yet):
    /// go on from where `left` stopped rather than reading it from the start.
    fn resume(&mut self, left: Option<Open>) -> io::Result<()> {
        if let (Some(open), Some(left)) = (&mut self.open, left)
            && open.path == left.path
            && open.first == left.first
        {
            open.reader.seek(SeekFrom::Start(left.offset))?;
            open.offset = left.offset;
        }
        Ok(())
    }
}

/// The sequence number after the newest complete record of the log at `log` (1 when it has
/// none): where a follower starts to read only what is written from now on. The newest file
/// holding a record is read (the live file is empty just after a rotation: the newest
/// record is then in the newest rotated file).
pub fn end_of(log: &Path) -> io::Result<u64> {
    for _ in 0..LOCATE_TRIES {
        match try_end_of(log) {
            // A file renamed or removed while listed: list again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            found => return found,
        }
    }
    try_end_of(log)
}

fn try_end_of(log: &Path) -> io::Result<u64> {
    let mut all = files::rotated_files(log)?;
    if log.exists() {
        all.push(log.to_owned());
    }
    let mut line = Vec::new();
    for path in all.iter().rev() {
        let mut reader = BufReader::new(File::open(path)?);
        let mut last = None;
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n')
                && let Some(seq) = seq_of(&line)
            {
                last = Some(seq);
            }
        }
        if let Some(seq) = last {
            return Ok(seq + 1);
        }
    }
    Ok(1)
}

/// Reads the next whole line of `open` into `buf` (without its newline) and returns where it
/// starts, or `None` at the file's end (a partial last line is left to be read again once it
/// is complete).
fn next_line(open: &mut Open, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
    buf.clear();
    let n = (&mut open.reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', buf)?;
    if n == 0 || buf.last() != Some(&b'\n') {
        // Not complete yet: read it again from its start next time.
        open.reader.seek(SeekFrom::Start(open.offset))?;
        return Ok(None);
    }
    let offset = open.offset;
    open.offset += n as u64;
    buf.pop();
    Ok(Some(offset))
}

/// The reader behind [`Follower::read`]: each line copied, with its `seq`.
struct Lines(Vec<Line>);

impl Reader for Lines {
    type Parsed<'a> = ();

    fn parse(&mut self, bytes: &[u8]) -> Option<(u64, ())> {
        seq_of(bytes).map(|seq| (seq, ()))
    }

    fn take(&mut self, line: LineRef<'_>, seq: u64, (): ()) {
        self.0.push(Line {
            seq,
            file: line.file.to_owned(),
            offset: line.offset,
            bytes: line.bytes.to_vec(),
        });
    }
}

/// The `seq` of a record line, read without parsing the rest.
pub fn seq_of(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq)
}

/// Reads the line starting at `offset` of `file` (for a record found through an index).
pub fn read_at(file: &Path, offset: u64) -> io::Result<Vec<u8>> {
    let mut reader = BufReader::new(File::open(file)?);
    reader.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    (&mut reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut bytes)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Reads the lines starting at `offsets` of `file`, in order (ascending offsets: one pass).
pub fn read_lines_at(file: &Path, offsets: &[u64]) -> io::Result<Vec<Vec<u8>>> {
    let mut reader = BufReader::new(File::open(file)?);
    let mut at = None;
    let mut out = Vec::with_capacity(offsets.len());
    for &offset in offsets {
        if at != Some(offset) {
            reader.seek(SeekFrom::Start(offset))?;
        }
        let mut bytes = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut bytes)?;
        at = Some(offset + read as u64);
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        out.push(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::records::chain::ChainState;
    use crate::audit::records::record::Entry;

    fn write(path: &Path, state: &mut ChainState, n: usize) {
        let mut text = Vec::new();
        for i in 0..n {
            let entry = Entry {
                audit_id: format!("r{}", state.seq + 1 + i as u64),
                ..Entry::default()
            };
            text.extend(state.seal(&entry).unwrap());
            text.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        io::Write::write_all(&mut f, &text).unwrap();
    }

    /// The log rotates after every record (and retention removes the files read already)
    /// while a follower reads it: every record is read once, in order, none is skipped,
    /// and the follower never fails on a file renamed or removed under it.
    #[test]
    fn a_follower_misses_nothing_while_the_log_rotates_under_it() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        const RECORDS: u64 = 6_000;
        let dir = std::env::temp_dir().join(format!("graphgate-follow-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let read_to = Arc::new(AtomicU64::new(1));
        let writer = {
            let (log, read_to) = (log.clone(), read_to.clone());
            std::thread::spawn(move || {
                let mut state = ChainState::default();
                let mut rotated = std::collections::VecDeque::new();
                for n in 1..=RECORDS {
                    write(&log, &mut state, 1);
                    let to = files::rotated_name(&log, n);
                    files::rename_no_replace(&log, &to).unwrap();
                    // As the sink does: a new live file at once.
                    std::fs::File::create_new(&log).unwrap();
                    rotated.push_back((to, state.seq));
                    // Kept close to the follower, so that its looks meet the rotations.
                    while state.seq > read_to.load(Ordering::Acquire).saturating_add(64) {
                        std::thread::yield_now();
                    }
                    // Retention: a file whose records the follower has read may go.
                    while let Some((old, last)) = rotated.front()
                        && *last + 4 < read_to.load(Ordering::Acquire)
                    {
                        std::fs::remove_file(old).unwrap();
                        rotated.pop_front();
                    }
                }
            })
        };
        let mut follower = Follower::new(&log, 1);
        let mut seen = Vec::new();
        let deadline = crate::clock::Instant::now() + std::time::Duration::from_secs(30);
        while (seen.len() as u64) < RECORDS && crate::clock::Instant::now() < deadline {
            let lines = follower.read(u64::MAX, 100).unwrap();
            seen.extend(lines.iter().map(|l| l.seq));
            read_to.store(follower.next_seq(), Ordering::Release);
            if lines.is_empty() {
                std::thread::yield_now();
            }
        }
        // Done or stuck: the writer need not wait any more.
        read_to.store(u64::MAX, Ordering::Release);
        writer.join().unwrap();
        let first_wrong = seen.iter().zip(1..).find(|(s, n)| **s != *n);
        assert_eq!(
            first_wrong,
            None,
            "(read, expected); {} records read",
            seen.len()
        );
        assert_eq!(seen.len() as u64, RECORDS);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_end_of_a_log_is_after_its_newest_record_even_just_after_a_rotation() {
        let dir = std::env::temp_dir().join(format!("graphgate-follow-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        assert_eq!(end_of(&log).unwrap(), 1, "no log yet");
        let mut state = ChainState::default();
        write(&log, &mut state, 5);
        assert_eq!(end_of(&log).unwrap(), 6);
        std::fs::rename(&log, files::rotated_name(&log, 1)).unwrap();
        std::fs::File::create_new(&log).unwrap();
        assert_eq!(end_of(&log).unwrap(), 6, "the live file is empty");
        // A line being written is not a record yet.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| io::Write::write_all(&mut f, b"{\"seq\":6"))
            .unwrap();
        assert_eq!(end_of(&log).unwrap(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_follower_reads_in_order_across_a_rotation_and_waits_for_whole_lines() {
        let dir = std::env::temp_dir().join(format!("graphgate-follow-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let mut state = ChainState::default();
        write(&log, &mut state, 5);
        let mut f = Follower::new(&log, 3);
        let got: Vec<u64> = f
            .read(u64::MAX, 100)
            .unwrap()
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        // Rotated under it: the rest is in a new live file.
        std::fs::rename(&log, files::rotated_name(&log, 1)).unwrap();
        write(&log, &mut state, 2);
        // A partial line is not read until it is whole.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| io::Write::write_all(&mut f, b"{\"seq\":8"))
            .unwrap();
        let lines = f.read(u64::MAX, 100).unwrap();
        let got: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        assert_eq!(got, [6, 7]);
        assert_eq!(lines[0].file, log);
        assert_eq!(
            read_at(&lines[1].file, lines[1].offset).unwrap(),
            lines[1].bytes
        );
        assert!(f.read(u64::MAX, 100).unwrap().is_empty());
        // `until` and `max` bound what is read.
        let mut g = Follower::new(&log, 1);
        assert_eq!(g.read(2, 100).unwrap().len(), 2);
        assert_eq!(g.read(u64::MAX, 3).unwrap().len(), 3);
        assert_eq!(g.next_seq(), 6);
    }
}
