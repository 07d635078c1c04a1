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

/// One line read and not yet indexed: what [`Light`] told of it, reduced to numbers (the
/// hashes are taken later, over the whole batch at once).
struct Pending {
    seq: u64,
    /// Its file, in [`Batch::files`].
    file: usize,
    offset: u64,
    /// The line, in [`Batch::bytes`].
    line: Range<usize>,
    /// `None`: a line with a `seq` that is not an audit record (the chain breaks there).
    rec: Option<Fields>,
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
    /// The caller and operation names, in [`Batch::names`].
    caller: Option<Range<usize>>,
    operation: Option<Range<usize>>,
}

/// What a record's hashes came to (taken off the index's lock, in parallel for a large batch).
#[derive(Clone, Copy)]
struct Hashed {
    /// The line hashes to the hash it carries.
    sealed: bool,
    leaf: Hash,
}

/// Lines read and not yet indexed (kept between reads, so its buffers are reused).
#[derive(Default)]
pub struct Batch {
    pending: Vec<Pending>,
    bytes: Vec<u8>,
    names: String,
    files: Vec<PathBuf>,
}

/// Lines (bytes) held before a batch is indexed even if the read goes on.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Below this many records a batch is hashed on the calling thread alone.
const PARALLEL_FROM: usize = 512;

/// The index as a follower's [`Reader`] (see [`Index::follow`]): each line is read once
/// into a [`Batch`], and the batch indexed at its end.
struct IndexReader<'a> {
    index: &'a Index,
    batch: &'a mut Batch,
}

impl Reader for IndexReader<'_> {
    type Parsed<'a> = Option<Light<'a>>;

    fn parse<'a>(&mut self, bytes: &'a [u8]) -> Option<(u64, Option<Light<'a>>)> {
        match super::scan::light(bytes) {
            Some(rec) => Some((rec.seq, Some(rec))),
            None => follow::seq_of(bytes).map(|seq| (seq, None)),
        }
    }

    fn take(&mut self, line: LineRef<'_>, seq: u64, rec: Option<Light<'_>>) {
        let b = &mut *self.batch;
        if b.files.last().is_none_or(|f| f.as_path() != line.file) {
            b.files.push(line.file.to_owned());
        }
        let start = b.bytes.len();
        b.bytes.extend_from_slice(line.bytes);
        let rec = rec.map(|rec| fields(&rec, &mut b.names));
        b.pending.push(Pending {
            seq,
            file: b.files.len() - 1,
            offset: line.offset,
            line: start..b.bytes.len(),
            rec,
        });
        if b.bytes.len() >= BATCH_BYTES {
            self.index.index_batch(b);
        }
    }
}

/// The numbers a row keeps of `rec` (its names appended to `names`).
fn fields(rec: &Light<'_>, names: &mut String) -> Fields {
    let mut name = |s: &Option<std::borrow::Cow<'_, str>>| {
        s.as_deref().map(|s| {
            let start = names.len();
            names.push_str(s);
            start..names.len()
        })
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

/// The hashes of the batch's records, in order: on every core for a large batch.
fn hash_batch(batch: &Batch) -> Vec<Hashed> {
    let one = |p: &Pending| {
        let line = &batch.bytes[p.line.clone()];
        Hashed {
            sealed: p
                .rec
                .as_ref()
                .and_then(|r| r.hash.as_ref())
                .is_some_and(|h| sealed_hash(line, h)),
            leaf: tree::leaf_hash(line),
        }
    };
    let n = batch.pending.len();
    let workers = match n < PARALLEL_FROM {
        true => 1,
        false => std::thread::available_parallelism().map_or(1, usize::from),
    };
    if workers == 1 {
        return batch.pending.iter().map(one).collect();
    }
    let mut out = vec![
        Hashed {
            sealed: false,
            leaf: Hash([0; 32]),
        };
        n
    ];
    let chunk = n.div_ceil(workers);
    std::thread::scope(|s| {
        for (pending, out) in batch.pending.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (p, o) in pending.iter().zip(out) {
                    *o = one(p);
                }
            });
        }
    });
    out
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
            index: self,
            batch: &mut batch,
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
    /// indexes them: each line is read once, into the few fields the index keeps, and the
    /// hashes of a large batch are taken on every core before the index is locked to take
    /// them in chain order. Returns how many records were read.
    pub fn follow(
        &self,
        follower: &mut follow::Follower,
        until: u64,
        max: usize,
        batch: &mut Batch,
    ) -> std::io::Result<usize> {
        let mut reader = IndexReader { index: self, batch };
        let read = follower.read_into(until, max, &mut reader);
        // Whatever was read before an error is indexed too (the follower has moved past it).
        self.index_batch(reader.batch);
        read
    }

    /// Indexes the batch's lines in order, and empties it.
    fn index_batch(&self, batch: &mut Batch) {
        let hashed = hash_batch(batch);
        {
            let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for (p, h) in batch.pending.iter().zip(hashed) {
                st.ingest(batch, p, h);
            }
        }
        batch.pending.clear();
        batch.bytes.clear();
        batch.names.clear();
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

    fn ingest(&mut self, batch: &Batch, p: &Pending, hashed: Hashed) {
        let file = batch.files[p.file].as_path();
        let Some(rec) = &p.rec else {
            self.broken(file, p.seq, "not a valid audit record");
            return;
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
        self.check_chain(file, p.seq, rec, hashed.sealed);
        let new_file = self
            .spans
            .last()
            .is_none_or(|(_, f)| f.as_path() != file || p.offset == 0);
        if new_file {
            self.spans.push((p.seq, file.to_owned()));
        }
        let name = |r: &Option<Range<usize>>| r.clone().map(|r| &batch.names[r]);
        let row = Row {
            offset: p.offset,
            time: rec.time,
            caller: self.callers.intern(name(&rec.caller)),
            device: rec.device,
            id: rec.id,
            op: u16::try_from(self.ops.intern(name(&rec.operation))).unwrap_or(u16::MAX),
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
        self.edge.push(hashed.leaf);
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
