//! Signed checkpoints of the hash chain, in the C2SP `tlog-checkpoint` format
//! (<https://c2sp.org/tlog-checkpoint>): an origin line, the number of records, the base64
//! head hash, signed as a note (see [`super::note`]). Unlike the HMAC anchor, a checkpoint
//! cannot be re-made by someone who holds the HMAC key: rewriting the log with fresh hashes
//! or cutting off its newest records no longer matches a checkpoint signed before.
//!
//! The [`super::checkpointer`] in the file sink appends a checkpoint of the durable head to
//! `<log>.checkpoints` every N records or T seconds, at rotation and at a clean close, and
//! hands each one to the off-host [`super::push`]er.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::note::{NoteError, NoteSigner, NoteVerifier};

/// Default: a checkpoint at least every this many records ...
pub const DEFAULT_EVERY_RECORDS: u64 = 1000;
/// ... and at least this often while records are written.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Largest checkpoint file read whole by `verify`.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One checkpoint: the chain had `size` records, the last one hashing to `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log: `<key name>/<log file name>`.
    pub origin: String,
    /// Records in the chain (the head's `seq`).
    pub size: u64,
    /// The head's hash (SHA-256), lower-case hex as in the log.
    pub hash: String,
}

/// The checkpoint text is not a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint: {0}")]
pub struct FormatError(&'static str);

impl Checkpoint {
    /// The note text: origin, size and base64 hash lines.
    pub fn text(&self) -> Result<String, FormatError> {
        let bytes = hex_decode(&self.hash).ok_or(FormatError("the hash is not 32 hex bytes"))?;
        Ok(format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(bytes)
        ))
    }

    /// Parses a note text (as [`NoteVerifier::open`] returns it). Extension lines are
    /// allowed (and ignored), as the format permits.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let (Some(origin), Some(size), Some(hash)) = (origin, lines.next(), lines.next()) else {
            return Err(FormatError("fewer than three lines"));
        };
        let canonical = size == "0" || !size.starts_with('0');
        let size = match size.parse::<u64>() {
            Ok(n) if canonical && size.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(FormatError("the size is not a decimal number")),
        };
        let hash = B64
            .decode(hash)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or(FormatError("the hash is not base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(FormatError("an empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            hash: super::chain::hex(&hash),
        })
    }
}

/// The origin of the log at `log` signed by `key_name`: the key name and the log's file
/// name, so the checkpoints of one replica's log cannot stand in for another's.
pub fn origin_for(key_name: &str, log: &Path) -> String {
    let file = files_name(log);
    format!("{key_name}/{file}")
}

fn files_name(log: &Path) -> String {
    log.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where the checkpoints of the log at `log` are kept.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoints");
    log.with_file_name(name)
}

/// Whether `file` is a checkpoint file (by name), not a log file.
pub fn is_checkpoint_file(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "checkpoints")
}

/// Splits a file of concatenated signed notes into the notes. A note ends with its
/// signature lines; the next starts at the first line after them that is not one.
pub fn split_notes(text: &str) -> Vec<&str> {
    let mut notes = Vec::new();
    let (mut start, mut in_sigs, mut pos) = (0, false, 0);
    for line in text.split_inclusive('\n') {
        let is_sig = line.starts_with("\u{2014} ");
        if in_sigs && !is_sig {
            notes.push(&text[start..pos]);
            start = pos;
        }
        in_sigs = is_sig;
        pos += line.len();
    }
    if start < text.len() {
        notes.push(&text[start..]);
    }
    notes
}

/// Largest torn tail cut from a checkpoint file: one note (origin, size, root and a
/// signature line) is a few hundred bytes; more after the last whole note is not a torn
/// append, and is left for the checks to name.
const MAX_TORN_BYTES: usize = 4096;

/// After a crash mid-append, the checkpoint file of the log at `log` may end in part of a
/// note (no signature line yet, or one cut short). That tail is cut back to the last whole
/// note (synced), as a torn last line of the log is set aside: it was never a signed
/// checkpoint. Returns what was done, for the log's own record (and says it with a WARN);
/// `None` when the file ends in a whole note, or is absent.
pub fn recover_torn(log: &Path) -> io::Result<Option<String>> {
    let path = path_for(log);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let whole = whole_notes_len(&bytes);
    let torn = bytes.len() - whole;
    if torn == 0 || torn > MAX_TORN_BYTES {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.set_len(whole as u64)?;
    file.sync_all()?;
    let note = format!(
        "the checkpoint file {} ended in a torn checkpoint ({torn} bytes after the last whole one: a crash mid-append); it was cut back to the last whole checkpoint",
        path.display()
    );
    tracing::warn!(file = %path.display(), torn_bytes = torn, "{note}");
    Ok(Some(note))
}

/// The length of the whole notes at the start of a checkpoint file: up to the end of its
/// last signature line that ends in a newline.
fn whole_notes_len(bytes: &[u8]) -> usize {
    const SIGNATURE: &[u8] = "\u{2014} ".as_bytes();
    let mut whole = 0;
    let mut at = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        at += line.len();
        if line.ends_with(b"\n") && line.starts_with(SIGNATURE) {
            whole = at;
        }
    }
    whole
}

/// A checkpoint file's notes, each opened with `verifier` and parsed, in file order. The
/// first note that is forged, signed by another key or malformed is an error naming it.
pub fn read_verified(path: &Path, verifier: &NoteVerifier) -> Result<Vec<Checkpoint>, ReadError> {
    let file = File::open(path).map_err(|e| ReadError::Io(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_FILE_BYTES), &mut text)
        .map_err(|e| ReadError::Io(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, note) in split_notes(&text).into_iter().enumerate() {
        let at = || format!("{} checkpoint #{}", path.display(), i + 1);
        let body = verifier.open(note).map_err(|e| ReadError::Note(at(), e))?;
        let checkpoint = Checkpoint::parse(body).map_err(|e| ReadError::Format(at(), e))?;
        out.push(checkpoint);
    }
    Ok(out)
}

/// A checkpoint file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// Reading failed.
    #[error("{0}")]
    Io(String),
    /// A note did not verify (forged, altered, another key) or is malformed.
    #[error("{0}: {1}")]
    Note(String, NoteError),
    /// A verified note is not a checkpoint.
    #[error("{0}: {1}")]
    Format(String, FormatError),
}

/// How checkpoints are made.
#[derive(Clone)]
pub struct CheckpointConfig {
    /// The signing key.
    pub signer: Arc<NoteSigner>,
    /// A checkpoint at least every this many records.
    pub every_records: u64,
    /// And at least this often while records are written.
    pub interval: Duration,
    /// Where each checkpoint's note goes to be pushed off the host, if anywhere.
    pub push: Option<super::push::PushQueue>,
    /// The newest checkpoint, for the witnesses, the tiles and receipts.
    pub latest: Latest,
}

/// A checkpoint as signed: the tree's size and root, and the signed note.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// Records in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: super::tree::Hash,
    /// The signed note (text, blank line, the log's signature line).
    pub note: String,
    /// When it was signed (POSIX seconds).
    pub signed_at: u64,
}

impl SignedCheckpoint {
    /// The note's text (without the signature lines).
    pub fn text(&self) -> &str {
        match self.note.find("\n\n") {
            Some(i) => &self.note[..=i],
            None => &self.note,
        }
    }
}

/// The newest signed checkpoint, published by the checkpoint thread; cheap to clone.
#[derive(Clone)]
pub struct Latest(Arc<tokio::sync::watch::Sender<Option<Arc<SignedCheckpoint>>>>);

impl Default for Latest {
    fn default() -> Self {
        Latest(Arc::new(tokio::sync::watch::channel(None).0))
    }
}

impl Latest {
    /// The newest checkpoint, if one was signed since start.
    pub fn get(&self) -> Option<Arc<SignedCheckpoint>> {
        self.0.borrow().clone()
    }

    /// Follows new checkpoints.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.0.subscribe()
    }

    pub(super) fn publish(&self, checkpoint: SignedCheckpoint) {
        self.0.send_replace(Some(Arc::new(checkpoint)));
    }
}

impl std::fmt::Debug for CheckpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointConfig")
            .field("key", &self.signer.verifier().label())
            .field("every_records", &self.every_records)
            .field("interval", &self.interval)
            .field("push", &self.push.is_some())
            .finish()
    }
}

impl PartialEq for CheckpointConfig {
    fn eq(&self, other: &Self) -> bool {
        self.signer.verifier() == other.signer.verifier()
            && self.every_records == other.every_records
            && self.interval == other.interval
            && self.push.is_some() == other.push.is_some()
    }
}

impl Eq for CheckpointConfig {}

/// Refuses to continue a log that no longer holds the head of its newest signed checkpoint
/// (cut off, or rewritten with fresh hashes: what the anchor cannot show to someone who
/// also holds the HMAC key).
pub fn check_last(
    path: &Path,
    verifier: &NoteVerifier,
    head: &super::chain::ChainState,
    tree: &super::tree::TreeView,
) -> io::Result<()> {
    let file = path_for(path);
    if !file.exists() {
        return Ok(());
    }
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}. Check it with `graphgate audit verify --public-key ...`; to start a new chain instead, move the log's files, its anchor and {} aside",
                file.display()
            ),
        )
    };
    let all = read_verified(&file, verifier).map_err(|e| refuse(e.to_string()))?;
    let Some(last) = all.iter().max_by_key(|c| c.size) else {
        return Ok(());
    };
    if head.seq < last.size {
        return Err(refuse(format!(
            "the audit log ends at seq {} but a signed checkpoint vouches for {} (cut off?)",
            head.seq,
            crate::words::count(last.size, "record")
        )));
    }
    let found = if head.seq == last.size {
        Some(head.hash.clone())
    } else {
        let mut newest_first = vec![path.to_owned()];
        newest_first.extend(super::files::rotated_files(path)?.into_iter().rev());
        super::files::find_link(&newest_first, last.size)?.map(|l| l.hash)
    };
    // A checkpoint signs the tree's root; one written before the log was a tree signs the
    // hash chain's head.
    let root = tree
        .root_at(last.size)
        .ok()
        .map(|r| super::chain::hex(&r.0));
    if root.as_deref() == Some(last.hash.as_str()) {
        return Ok(());
    }
    match found {
        Some(hash) if hash != last.hash => Err(refuse(format!(
            "the record at seq {} is not the one a signed checkpoint vouches for: the log was rewritten",
            last.size
        ))),
        _ => Ok(()),
    }
}

/// The 32 bytes of a lower-case hex hash.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::records::chain::ChainState;
    use crate::audit::store::sink::Checkpoints;

    /// The example of the C2SP tlog-checkpoint specification.
    const SPEC_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn only_a_torn_tail_of_one_note_is_cut_back() {
        let dir = std::env::temp_dir().join(format!("graphgate-torn-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.jsonl");
        let file = path_for(&log);
        assert_eq!(recover_torn(&log).unwrap(), None, "no file");
        std::fs::write(&file, SPEC_EXAMPLE).unwrap();
        assert_eq!(recover_torn(&log).unwrap(), None, "a whole note");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), SPEC_EXAMPLE);
        // Cut inside the signature line's dash (a multi-byte character), and after the body.
        for cut in [SPEC_EXAMPLE.find('\u{2014}').unwrap() + 1, 60] {
            let mut text = SPEC_EXAMPLE.as_bytes().to_vec();
            text.extend_from_slice(&SPEC_EXAMPLE.as_bytes()[..cut]);
            std::fs::write(&file, &text).unwrap();
            let said = recover_torn(&log).unwrap().unwrap();
            assert!(said.contains(&format!("({cut} bytes")), "{said}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), SPEC_EXAMPLE);
        }
        // More than one note's worth after the last whole one is not a torn append.
        let mut text = SPEC_EXAMPLE.as_bytes().to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_TORN_BYTES + 1));
        std::fs::write(&file, &text).unwrap();
        assert_eq!(recover_torn(&log).unwrap(), None);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            text,
            "left for the checks to name"
        );
    }

    #[test]
    fn the_specifications_example_parses_and_ours_reads_the_same_way() {
        let notes = split_notes(SPEC_EXAMPLE);
        assert_eq!(notes, vec![SPEC_EXAMPLE]);
        let text = &SPEC_EXAMPLE[..SPEC_EXAMPLE.find("\n\n").unwrap() + 1];
        let cp = Checkpoint::parse(text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(cp.text().unwrap(), text, "our text is the same three lines");
        for bad in [
            "o\n012\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
            "o\n1\n",
            "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_checkpoint_file_holds_signed_notes_one_after_another() {
        let (signer, _) = NoteSigner::generate("graphgate.test").unwrap();
        let dir = std::env::temp_dir().join(format!("graphgate-cp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        let config = CheckpointConfig {
            signer: Arc::new(signer),
            every_records: 3,
            interval: Duration::from_secs(3600),
            push: None,
            latest: Latest::default(),
        };
        let verifier = config.signer.verifier();
        // Five records on disk; the tree takes them in as checkpoints are asked for.
        let mut state = ChainState::default();
        let mut text = Vec::new();
        let mut heads = vec![state.clone()];
        let mut lines = Vec::new();
        for i in 0..5 {
            let entry = crate::audit::Entry {
                audit_id: format!("r{i}"),
                ..Default::default()
            };
            let line = state.seal(&entry).unwrap();
            text.extend(&line);
            text.push(b'\n');
            lines.push(line);
            heads.push(state.clone());
        }
        std::fs::write(&log, &text).unwrap();
        let tree = crate::audit::checkpoints::leaves::open_for(&log, 0).unwrap();
        let latest = config.latest.clone();
        let mut cp =
            crate::audit::checkpoints::checkpointer::Checkpointer::open(&log, config, tree)
                .unwrap();
        let head = |seq: usize| heads[seq].clone();
        assert!(!cp.due(&head(2)) && cp.due(&head(3)));
        cp.write(&head(3));
        cp.write(&head(3));
        assert!(!cp.due(&head(5)));
        cp.write(&head(5));
        cp.close(&head(5));
        let read = read_verified(&path_for(&log), &verifier).unwrap();
        assert_eq!(read.len(), 2, "an unchanged head is not checkpointed twice");
        assert_eq!(read[1].size, 5);
        // The checkpoint signs the Merkle tree's root of the five records.
        let mut tree =
            crate::audit::checkpoints::tree::Tree::open(&dir.join("check.tree")).unwrap();
        for line in &lines {
            tree.push(line).unwrap();
        }
        assert_eq!(
            read[1].hash,
            crate::audit::records::chain::hex(&tree.root().unwrap().0)
        );
        let published = latest.get().unwrap();
        assert_eq!((published.size, published.root), (5, tree.root().unwrap()));
        assert_eq!(read[0].origin, "graphgate.test/audit.jsonl");
        assert!(is_checkpoint_file(&path_for(&log)));
        // A changed digit in the second checkpoint is a forgery, and named.
        let text = std::fs::read_to_string(path_for(&log)).unwrap();
        let forged = text.replacen("\n5\n", "\n9\n", 1);
        std::fs::write(path_for(&log), forged).unwrap();
        let err = read_verified(&path_for(&log), &verifier).unwrap_err();
        assert!(err.to_string().contains("checkpoint #2"), "{err}");
        assert!(matches!(
            err,
            ReadError::Note(_, NoteError::BadSignature(_))
        ));
    }
}
