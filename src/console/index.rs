//! The console's index of the audit log: one small fixed-size row per record (offset, time,
//! interned caller and operation, the device id as a number, kind, decision, completion),
//! so its memory is bounded by its row count: device ids (which refusals may carry by the
//! million) are never kept as strings, and the string tables are capped. Built by following
//! the log (see [`crate::audit::store::follow`]), with the hash chain checked on the way. A page
//! filters the rows newest first in memory and reads only the records it shows from disk,
//! so it answers in milliseconds however long the log is.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use sha2::Digest;

use crate::audit::checkpoints::tree::{self, Hash};
use crate::audit::read::sweep::decode_hex;
use crate::audit::store::follow::{self, Line, LineRef, Reader};

use super::edge::Edge;
use super::record::{Interner, Light, id_hash, resolve, sealed_hash};
use crate::audit::records::record::{AuditDecision, Kind};

/// Most rows kept (48 bytes each); older ones leave the index (`audit query` reads them).
pub const MAX_ROWS: usize = 2_000_000;
/// Most distinct devices counted for the status line; past it, "more than" this many.
pub const MAX_COUNTED_DEVICES: usize = 100_000;
/// How far back an outcome looks for its intent.
const INTENT_LOOKBACK: usize = 65_536;
/// Times are kept as seconds from 2020-01-01.
const EPOCH: i64 = 1_577_836_800;

/// One record, as the index keeps it.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    offset: u64,
    /// The device id as a number (see [`device_key`]); 0: none.
    device: u128,
    time: u32,
    caller: u32,
    id: u32,
    op: u16,
    kind: u8,
    decision: u8,
    completion: u8,
    hidden: bool,
}

/// The completion states a completion record may carry, in flag order (from 1).
pub const COMPLETIONS: [&str; 5] = [
    "done",
    "failed",
    "not_supported",
    "canceled",
    "pending_past_deadline",
];

const KINDS: [Kind; 7] = [
    Kind::Start,
    Kind::Intent,
    Kind::Outcome,
    Kind::Request,
    Kind::Suppressed,
    Kind::Completion,
    Kind::Approval,
];

/// One line read and not yet indexed: where it is, and its sequence number (the scan, the
/// field conversion and the hashes are taken later, over the whole batch at once).
struct Pending {
    seq: u64,
    /// Its file, in [`Batch::files`].
    file: usize,
    offset: u64,
    /// The line, in [`Batch::bytes`].
    line: Range<usize>,
}

/// A record's fields as a row keeps them, before interning.
struct Fields {
    /// `prev_hash` and `hash` as bytes (`None`: not 64 lower-case hex digits).
    prev_hash: Option<[u8; 32]>,
    hash: Option<[u8; 32]>,
    time: u32,
    id: u32,
    device: u128,
    kind: u8,
    decision: u8,
    completion: u8,
    caller: Name,
    operation: Name,
}

/// A caller or operation name before interning.
enum Name {
    Absent,
    /// Borrowed from the line: where it is in [`Batch::bytes`].
    At(Range<usize>),
    /// Unescaped (a line with an escape in it: rare).
    Owned(Box<str>),
}

/// What the parallel phase made of a line: its fields and hashes, ready to be taken in order.
struct Candidate {
    rec: Scanned,
    /// The line hashes to the hash it carries.
    sealed: bool,
    leaf: Hash,
}

enum Scanned {
    Record(Fields),
    /// A line with this `seq` that is not an audit record (the chain breaks there).
    NotARecord,
    /// Not a record at all (the follower took it by its leading `seq`): passed over.
    PassedOver,
}

/// Lines read and not yet indexed (kept between reads, so its buffers are reused).
#[derive(Default)]
pub struct Batch {
    pending: Vec<Pending>,
    bytes: Vec<u8>,
    files: Vec<PathBuf>,
}

/// Lines (bytes) held before a batch is indexed even if the read goes on (at most two
/// batches are held: one read while the one before is indexed).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Below this many records a batch is scanned and hashed on the calling thread alone.
const PARALLEL_FROM: usize = 512;

/// The index as a follower's [`Reader`] (see [`Index::follow`]): each line is copied once
/// into a [`Batch`] with its sequence number, and each full batch indexed.
struct IndexReader<'a> {
    batch: &'a mut Batch,
    sink: Sink<'a>,
}

/// Where a full batch goes.
enum Sink<'a> {
    /// Indexed at once, on the reading thread.
    Here(&'a Index),
    /// To the indexing thread (one batch at a time: the channel holds none), while the next
    /// one is read; `reuse` hands back the batches indexed, for their buffers.
    Indexer {
        index: &'a Index,
        send: Option<std::sync::mpsc::SyncSender<Batch>>,
        reuse: std::sync::mpsc::Receiver<Batch>,
    },
}

impl IndexReader<'_> {
    fn flush(&mut self) {
        match &mut self.sink {
            Sink::Here(index) => index.index_batch(self.batch),
            Sink::Indexer { index, send, reuse } => {
                let next = reuse.try_recv().unwrap_or_default();
                let full = std::mem::replace(self.batch, next);
                // Waits while the indexer is busy with the batch before (so at most two
                // batches are held); an indexer gone (it panicked) leaves the work here.
                if let Some(Err(std::sync::mpsc::SendError(mut full))) =
                    send.as_ref().map(|s| s.send(full))
                {
                    *send = None;
                    index.index_batch(&mut full);
                }
            }
        }
    }
}

impl Reader for IndexReader<'_> {
    type Parsed<'a> = ();

    fn parse(&mut self, bytes: &[u8]) -> Option<(u64, ())> {
        leading_seq(bytes)
            .or_else(|| super::scan::light(bytes).map(|rec| rec.seq))
            .or_else(|| follow::seq_of(bytes))
            .map(|seq| (seq, ()))
    }

    fn take(&mut self, line: LineRef<'_>, seq: u64, (): ()) {
        let b = &mut *self.batch;
        if b.files.last().is_none_or(|f| f.as_path() != line.file) {
            b.files.push(line.file.to_owned());
        }
        let start = b.bytes.len();
        b.bytes.extend_from_slice(line.bytes);
        b.pending.push(Pending {
            seq,
            file: b.files.len() - 1,
            offset: line.offset,
            line: start..b.bytes.len(),
        });
        if b.bytes.len() >= BATCH_BYTES {
            self.flush();
        }
    }
}

/// The `seq` of a line written as the gateway writes it (`{"seq":N,` first), read from its
/// first bytes; `None` for any other form (the caller reads it the slow way). What it
/// returns is checked against the full scan of the line in the parallel phase.
fn leading_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    if !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The numbers a row keeps of `rec`, read from `line`, which starts at `at` in the batch.
fn fields(rec: &Light<'_>, line: &[u8], at: usize) -> Fields {
    let name = |s: &Option<std::borrow::Cow<'_, str>>| match s {
        None => Name::Absent,
        Some(std::borrow::Cow::Borrowed(s)) => {
            // Borrowed from the line (the scan borrows nothing else): where it is.
            let start = (s.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
            match start.checked_add(s.len()).filter(|end| *end <= line.len()) {
                Some(end) => Name::At(at + start..at + end),
                None => Name::Owned((*s).into()),
            }
        }
        Some(std::borrow::Cow::Owned(s)) => Name::Owned(s.as_str().into()),
    };
    let (caller, operation) = (name(&rec.caller), name(&rec.operation));
    let time = super::scan::utc_seconds(&rec.time)
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(&rec.time)
                .ok()
                .map(|t| t.timestamp())
        })
        .map_or(0, |t| t - EPOCH)
        .clamp(0, i64::from(u32::MAX));
    Fields {
        prev_hash: decode_hex(rec.prev_hash.as_bytes()),
        hash: decode_hex(rec.hash.as_bytes()),
        time: u32::try_from(time).unwrap_or(0),
        id: id_hash(&rec.audit_id),
        device: rec.device_id.as_deref().map_or(0, device_key),
        kind: rec
            .kind
            .and_then(|k| KINDS.iter().position(|x| *x == k))
            .map_or(0, |i| i as u8 + 1),
        decision: rec
            .decision
            .and_then(|d| AuditDecision::ALL.iter().position(|x| *x == d))
            .map_or(0, |i| i as u8 + 1),
        completion: rec
            .completion
            .as_deref()
            .and_then(|c| COMPLETIONS.iter().position(|k| *k == c))
            .map_or(0, |i| i as u8 + 1),
        caller,
        operation,
    }
}

/// What one line comes to: scanned, its fields converted, its hashes taken.
fn candidate(bytes: &[u8], p: &Pending) -> Candidate {
    let line = &bytes[p.line.clone()];
    let leaf = tree::leaf_hash(line);
    let rec = match super::scan::light(line) {
        Some(rec) if rec.seq == p.seq => rec,
        _ => {
            let rec = match follow::seq_of(line) == Some(p.seq) {
                true => Scanned::NotARecord,
                false => Scanned::PassedOver,
            };
            return Candidate {
                rec,
                sealed: false,
                leaf,
            };
        }
    };
    let fields = fields(&rec, line, p.line.start);
    Candidate {
        sealed: fields.hash.is_some_and(|h| sealed_hash(line, &h)),
        rec: Scanned::Record(fields),
        leaf,
    }
}

/// The batch's lines scanned and hashed, in order: on every core for a large batch.
fn scan_batch(batch: &Batch) -> Vec<Candidate> {
    let one = |p: &Pending| candidate(&batch.bytes, p);
    let n = batch.pending.len();
    let workers = match n < PARALLEL_FROM {
        true => 1,
        false => std::thread::available_parallelism().map_or(1, usize::from),
    };
    if workers == 1 {
        return batch.pending.iter().map(one).collect();
    }
    let chunk = n.div_ceil(workers);
    let mut parts = batch.pending.chunks(chunk);
    // The calling thread takes the first part itself.
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<Candidate> = Vec::with_capacity(n);
        out.extend(first.iter().map(one));
        for h in others {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Where the chain check stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainStatus {
    /// First record indexed.
    pub first: u64,
    /// Records up to here chain and hash correctly (from `first`).
    pub verified_to: u64,
    /// The first break found, if any.
    pub broken: Option<String>,
}

#[derive(Default)]
struct State {
    rows: VecDeque<Row>,
    /// Sequence number of `rows[0]`.
    base: u64,
    /// Files by the first sequence number read from each, with the name it was read under.
    spans: Vec<(u64, PathBuf)>,
    callers: Interner,
    ops: Interner,
    /// Rows per device, for the distinct-device count (at most [`MAX_COUNTED_DEVICES`]).
    devices: std::collections::HashMap<u128, u32>,
    /// A device past [`MAX_COUNTED_DEVICES`] was seen: the count is a lower bound.
    devices_overflow: bool,
    chain: ChainStatus,
    /// The hash of the last record whose chain checked out.
    prev_hash: Option<[u8; 32]>,
    /// The Merkle tree of the records indexed (checkpoints sign its root).
    edge: Edge,
}

/// The index; shared between the task that builds it and the pages that read it.
#[derive(Default)]
pub struct Index {
    state: RwLock<State>,
}

/// What a page asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Caller name, exact.
    pub caller: Option<String>,
    /// Device id (any case).
    pub device: Option<String>,
    /// Operation: its full name or its action, any case.
    pub operation: Option<String>,
    /// Decision label.
    pub decision: Option<String>,
    /// From this time (seconds since the Unix epoch), inclusive.
    pub since: Option<i64>,
    /// Until this time, exclusive.
    pub until: Option<i64>,
    /// Only records before this sequence number (the next page).
    pub before: Option<u64>,
    /// Rows per page.
    pub limit: usize,
}

/// A row a page shows: where its record is, and what the index folded into it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The record's sequence number.
    pub seq: u64,
    /// Its file and offset.
    pub file: PathBuf,
    /// Where in that file.
    pub offset: u64,
    /// The action's completion state, if a completion record came.
    pub completion: Option<&'static str>,
}

impl Index {
    /// Adds lines read in chain order.
    pub fn ingest(&self, lines: &[Line]) {
        let mut batch = Batch::default();
        let mut reader = IndexReader {
            batch: &mut batch,
            sink: Sink::Here(self),
        };
        for line in lines {
            if let Some((seq, rec)) = reader.parse(&line.bytes) {
                let at = LineRef {
                    file: &line.file,
                    offset: line.offset,
                    bytes: &line.bytes,
                };
                reader.take(at, seq, rec);
            }
        }
        self.index_batch(&mut batch);
    }

    /// Reads the log's next records from `follower` (up to `until`, at most `max`) and
    /// indexes them: the reading thread only splits lines and reads their `seq`; each batch
    /// is then scanned, converted to row fields and hashed on every core, and taken in chain
    /// order under the index's lock (the chain link needs the record before). Returns how
    /// many records were read.
    pub fn follow(
        &self,
        follower: &mut follow::Follower,
        until: u64,
        max: usize,
        batch: &mut Batch,
    ) -> std::io::Result<usize> {
        // Batch N is indexed on a thread of its own while batch N + 1 is read.
        std::thread::scope(|s| {
            let (send, indexing) = std::sync::mpsc::sync_channel::<Batch>(0);
            let (done, reuse) = std::sync::mpsc::channel::<Batch>();
            let indexer = s.spawn(move || {
                for mut full in indexing {
                    self.index_batch(&mut full);
                    // The reader may have finished: the buffers are then dropped.
                    let _ = done.send(full);
                }
            });
            let mut reader = IndexReader {
                batch,
                sink: Sink::Indexer {
                    index: self,
                    send: Some(send),
                    reuse,
                },
            };
            let read = follower.read_into(until, max, &mut reader);
            // The indexer takes the batches sent, in order, then stops.
            reader.sink = Sink::Here(self);
            if let Err(panic) = indexer.join() {
                std::panic::resume_unwind(panic);
            }
            // Whatever was read before an error is indexed too (the follower has moved past it).
            self.index_batch(reader.batch);
            read
        })
    }

    /// Indexes the batch's lines in order, and empties it.
    fn index_batch(&self, batch: &mut Batch) {
        let scanned = scan_batch(batch);
        {
            let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for (p, c) in batch.pending.iter().zip(scanned) {
                st.ingest(batch, p, c);
            }
        }
        batch.pending.clear();
        batch.bytes.clear();
        batch.files.clear();
    }

    /// The sequence number of the last record indexed (0: none).
    pub fn last_seq(&self) -> u64 {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.last_seq()
    }

    /// Records indexed.
    pub fn len(&self) -> usize {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.rows.len()
    }

    /// Whether nothing is indexed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the chain check stands.
    pub fn chain(&self) -> ChainStatus {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.chain.clone()
    }

    /// Rows matching `q`, newest first, and the sequence number to ask `before` for the next
    /// page (if there is one).
    pub fn select(&self, q: &Query) -> (Vec<Hit>, Option<u64>) {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.select(q)
    }

    /// The Merkle root of the log's first `size` records (what a checkpoint of that size
    /// signs), the records since the nearest mark read again from disk; `None` when they
    /// are not indexed, or the tree before the first record indexed is not known.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        let (mut roots, spots) = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if size > st.last_seq() {
                return None;
            }
            let mark = st.edge.mark_at_or_below(size)?;
            let spots = st.spots(mark.size() + 1, size)?;
            (mark, spots)
        };
        for (file, offsets) in spots {
            for line in follow::read_lines_at(&file, &offsets).ok()? {
                roots.push(tree::leaf_hash(&line)).ok()?;
            }
        }
        roots.root().ok()
    }

    /// Where the record `seq` is (if indexed).
    pub fn locate(&self, seq: u64) -> Option<(PathBuf, u64)> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let i = usize::try_from(seq.checked_sub(st.base)?).ok()?;
        let row = st.rows.get(i)?;
        Some((st.span_file(seq)?, row.offset))
    }

    /// The callers and operations seen, sorted (for the filter lists), and how many
    /// distinct devices the rows name (`true`: at least that many, the count is capped).
    pub fn names(&self) -> (Vec<String>, Vec<String>, (usize, bool)) {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let sorted = |i: &Interner| {
            let mut v = i.names.clone();
            v.sort();
            v
        };
        let devices = (st.devices.len(), st.devices_overflow);
        (sorted(&st.callers), sorted(&st.ops), devices)
    }
}

impl State {
    fn last_seq(&self) -> u64 {
        match self.rows.len() {
            0 => 0,
            n => self.base + n as u64 - 1,
        }
    }

    fn ingest(&mut self, batch: &Batch, p: &Pending, c: Candidate) {
        let file = batch.files[p.file].as_path();
        let rec = match &c.rec {
            Scanned::Record(rec) => rec,
            Scanned::NotARecord => {
                self.broken(file, p.seq, "not a valid audit record");
                return;
            }
            Scanned::PassedOver => return,
        };
        if !self.rows.is_empty() && p.seq != self.last_seq() + 1 {
            // A gap (retention, or a cut): start over from here.
            if p.seq <= self.last_seq() {
                return;
            }
            self.broken(file, p.seq, "records missing before this one");
            self.rows.clear();
        }
        if self.rows.is_empty() {
            self.base = p.seq;
            self.spans.clear();
            let log = crate::audit::store::files::base_log(file);
            self.edge.start(&log, p.seq);
        }
        self.check_chain(file, p.seq, rec, c.sealed);
        let new_file = self
            .spans
            .last()
            .is_none_or(|(_, f)| f.as_path() != file || p.offset == 0);
        if new_file {
            self.spans.push((p.seq, file.to_owned()));
        }
        fn name<'a>(batch: &'a Batch, n: &'a Name) -> Option<&'a str> {
            match n {
                Name::Absent => None,
                Name::At(r) => std::str::from_utf8(&batch.bytes[r.clone()]).ok(),
                Name::Owned(s) => Some(s),
            }
        }
        let row = Row {
            offset: p.offset,
            time: rec.time,
            caller: self.callers.intern(name(batch, &rec.caller)),
            device: rec.device,
            id: rec.id,
            op: u16::try_from(self.ops.intern(name(batch, &rec.operation))).unwrap_or(u16::MAX),
            kind: rec.kind,
            decision: rec.decision,
            completion: rec.completion,
            hidden: false,
        };
        let row = Row {
            hidden: matches!(kind_of(&row), Some(Kind::Start | Kind::Completion) | None),
            ..row
        };
        self.fold(&row);
        self.count_device(row.device);
        self.rows.push_back(row);
        self.edge.push(c.leaf);
        if self.rows.len() > MAX_ROWS
            && let Some(old) = self.rows.pop_front()
        {
            self.uncount_device(old.device);
            self.base += 1;
            while self.spans.len() > 1 && self.spans[1].0 <= self.base {
                self.spans.remove(0);
            }
            self.edge.forget_before(self.base);
        }
    }

    fn count_device(&mut self, device: u128) {
        if device == 0 {
            return;
        }
        let room = self.devices.len() < MAX_COUNTED_DEVICES;
        match self.devices.get_mut(&device) {
            Some(n) => *n += 1,
            None if room => {
                self.devices.insert(device, 1);
            }
            None => self.devices_overflow = true,
        }
    }

    fn uncount_device(&mut self, device: u128) {
        if let Some(n) = self.devices.get_mut(&device) {
            *n -= 1;
            if *n == 0 {
                self.devices.remove(&device);
            }
        }
    }

    /// An outcome hides its intent; a completion marks its outcome.
    fn fold(&mut self, row: &Row) {
        let (target, lookback) = match kind_of(row) {
            Some(Kind::Outcome) => (Kind::Intent, INTENT_LOOKBACK),
            Some(Kind::Completion) => (Kind::Outcome, usize::MAX),
            _ => return,
        };
        let found = self
            .rows
            .iter_mut()
            .rev()
            .take(lookback)
            .find(|r| r.id == row.id && kind_of(r) == Some(target));
        match (found, target) {
            (Some(r), Kind::Intent) => r.hidden = true,
            (Some(r), _) => r.completion = row.completion,
            (None, _) => {}
        }
    }

    fn check_chain(&mut self, file: &Path, seq: u64, rec: &Fields, sealed: bool) {
        if self.chain.broken.is_some() {
            return;
        }
        if self.chain.first == 0 {
            self.chain.first = seq;
        }
        let chained = match &self.prev_hash {
            None => seq > 1 || rec.prev_hash == Some([0; 32]),
            Some(prev) => rec.prev_hash.as_ref() == Some(prev),
        };
        if !chained {
            self.broken(file, seq, "the hash chain breaks here");
            return;
        }
        let (true, Some(hash)) = (sealed, rec.hash) else {
            self.broken(
                file,
                seq,
                "record altered: its content does not match its hash",
            );
            return;
        };
        self.prev_hash = Some(hash);
        self.chain.verified_to = seq;
    }

    fn broken(&mut self, file: &Path, seq: u64, what: &str) {
        if self.chain.broken.is_none() {
            self.chain.broken = Some(format!("{}: {what} (seq {seq})", file.display()));
        }
    }

    /// Where the records `from..=to` are: each file (resolved once) with their offsets.
    fn spots(&self, from: u64, to: u64) -> Option<Vec<(PathBuf, Vec<u64>)>> {
        let mut out: Vec<(usize, PathBuf, Vec<u64>)> = Vec::new();
        for seq in from..=to {
            let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
            let offset = self.rows.get(i)?.offset;
            let span = self.spans.partition_point(|(first, _)| *first <= seq);
            match out.last_mut() {
                Some((s, _, offsets)) if *s == span => offsets.push(offset),
                _ => {
                    let (first, path) = self.spans.get(span.checked_sub(1)?)?;
                    out.push((span, resolve(path, *first), vec![offset]));
                }
            }
        }
        Some(out.into_iter().map(|(_, f, o)| (f, o)).collect())
    }

    fn span_file(&self, seq: u64) -> Option<PathBuf> {
        let i = self.spans.partition_point(|(first, _)| *first <= seq);
        let (first, path) = self.spans.get(i.checked_sub(1)?)?;
        Some(resolve(path, *first))
    }

    fn select(&self, q: &Query) -> (Vec<Hit>, Option<u64>) {
        let Some(filter) = self.compile(q) else {
            return (Vec::new(), None);
        };
        let end = match q.before {
            Some(before) => usize::try_from(before.saturating_sub(self.base))
                .unwrap_or(usize::MAX)
                .min(self.rows.len()),
            None => self.rows.len(),
        };
        let mut hits = Vec::new();
        for i in (0..end).rev() {
            let row = &self.rows[i];
            if !filter.matches(row) {
                continue;
            }
            let seq = self.base + i as u64;
            if hits.len() == q.limit {
                return (hits, Some(seq + 1));
            }
            let Some(file) = self.span_file(seq) else {
                continue;
            };
            let completion = row
                .completion
                .checked_sub(1)
                .map(|c| COMPLETIONS[c as usize]);
            hits.push(Hit {
                seq,
                file,
                offset: row.offset,
                completion,
            });
        }
        (hits, None)
    }

    /// The filter as numbers; `None` when it names something never seen (nothing matches).
    fn compile(&self, q: &Query) -> Option<Filter> {
        let id = |i: &Interner, v: &Option<String>| match v {
            None => Some(None),
            Some(v) => i.get(v).map(Some),
        };
        let ops: Option<Vec<u16>> = q.operation.as_ref().map(|want| {
            let want = want.to_ascii_lowercase();
            (0..self.ops.names.len())
                .filter(|i| {
                    let name = self.ops.names[*i].to_ascii_lowercase();
                    name == want || name.rsplit('.').next() == Some(want.as_str())
                })
                .filter_map(|i| u16::try_from(i + 1).ok())
                .collect()
        });
        let decision = match &q.decision {
            None => None,
            Some(d) => Some(
                AuditDecision::ALL
                    .iter()
                    .position(|x| x.as_str() == d)
                    .map(|i| i as u8 + 1)?,
            ),
        };
        let secs = |t: i64| u32::try_from((t - EPOCH).max(0)).unwrap_or(u32::MAX);
        Some(Filter {
            caller: id(&self.callers, &q.caller)?,
            device: q.device.as_deref().map(device_key),
            ops,
            decision,
            since: q.since.map(secs),
            until: q.until.map(secs),
        })
    }
}

struct Filter {
    caller: Option<u32>,
    device: Option<u128>,
    ops: Option<Vec<u16>>,
    decision: Option<u8>,
    since: Option<u32>,
    until: Option<u32>,
}

impl Filter {
    fn matches(&self, r: &Row) -> bool {
        !r.hidden
            && self.caller.is_none_or(|c| r.caller == c)
            && self.device.is_none_or(|d| r.device == d)
            && self.ops.as_ref().is_none_or(|o| o.contains(&r.op))
            && self.decision.is_none_or(|d| r.decision == d)
            && self.since.is_none_or(|s| r.time >= s)
            && self.until.is_none_or(|u| r.time < u)
    }
}

/// A device id as the index keeps it: a managed-device id (a GUID, any case) is its 128
/// bits; anything else (never written by the gateway) a 128-bit digest of its lower case.
/// Never 0, which means "no device".
fn device_key(id: &str) -> u128 {
    let key = uuid::Uuid::try_parse(id).map_or_else(
        |_| {
            let d = sha2::Sha256::digest(id.to_ascii_lowercase().as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&d[..16]);
            u128::from_be_bytes(b)
        },
        |u| u.as_u128(),
    );
    key.max(1)
}

fn kind_of(r: &Row) -> Option<Kind> {
    r.kind.checked_sub(1).map(|k| KINDS[k as usize])
}

/// Reads the record a hit points at.
pub fn read_hit(hit: &Hit) -> Option<crate::audit::Record> {
    let bytes = follow::read_at(&hit.file, hit.offset).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests;
