//! The log as an RFC 6962 Merkle tree: record `seq` is leaf `seq - 1`, its hash
//! SHA-256(0x00 || the record's JSON line). `<log>.tree` keeps every stored hash (the layout
//! of Go's sumdb/tlog, through the `tlog_tiles` crate), so proofs and tiles are read, not
//! recomputed; an in-memory frontier makes appending a leaf and the root O(log n). The file is
//! derived data: it can be rebuilt from a log that still starts at seq 1.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use tlog_tiles::Hash;
use tlog_tiles::{HashReader, stored_hash_count, stored_hash_index};

/// Bytes of one hash.
pub const HASH_BYTES: u64 = 32;
/// Levels a tree of up to 2^63 leaves has.
const LEVELS: usize = 64;

/// The leaf hash of a record's line (without its newline).
pub fn leaf_hash(line: &[u8]) -> Hash {
    tlog_tiles::record_hash(line)
}

/// Where the tree of the log at `log` is kept.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".tree");
    log.with_file_name(name)
}

/// Whether `file` is a tree file (by name), not a log file.
pub fn is_tree_file(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "tree")
}

/// The tree could not be read or does not hold what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Reading or writing the file failed.
    #[error("audit tree {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A size or index outside the tree.
    #[error("audit tree: {0}")]
    Range(String),
    /// The stored hashes are inconsistent (the file was altered or is not this log's).
    #[error("audit tree: {0}")]
    Math(String),
}

impl From<tlog_tiles::Error> for TreeError {
    fn from(e: tlog_tiles::Error) -> Self {
        TreeError::Math(e.to_string())
    }
}

/// The tree being appended to (owned by the checkpoint thread).
pub struct Tree {
    path: PathBuf,
    file: File,
    size: u64,
    /// The newest completed node of each level (the right edge of the tree).
    last: [Hash; LEVELS],
    /// Stored hashes appended but not yet written.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree({}, size {})", self.path.display(), self.size)
    }
}

impl Tree {
    /// Opens (creating) the tree file at `path`; a torn tail (a crash mid-append) is cut back
    /// to the last whole leaf.
    pub fn open(path: &Path) -> Result<Tree, TreeError> {
        let io_err = |source| TreeError::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.create(true).read(true).write(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o640);
        let file = opts.open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len() / HASH_BYTES;
        let size = size_for_hashes(len);
        let whole = stored_hash_count(size) * HASH_BYTES;
        if whole != file.metadata().map_err(io_err)?.len() {
            file.set_len(whole).map_err(io_err)?;
        }
        let mut tree = Tree {
            path: path.to_owned(),
            file,
            size,
            last: [Hash::default(); LEVELS],
            pending: Vec::new(),
        };
        for level in 0..LEVELS {
            let Some(n) = (size >> level).checked_sub(1) else {
                break;
            };
            let index = stored_hash_index(level_u8(level), n);
            tree.last[level] = read_hash(&tree.file, index).map_err(io_err)?;
        }
        Ok(tree)
    }

    /// Empties the tree (to rebuild it from the log).
    pub fn reset(&mut self) -> Result<(), TreeError> {
        self.file.set_len(0).map_err(|source| TreeError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.size = 0;
        self.last = [Hash::default(); LEVELS];
        self.pending.clear();
        Ok(())
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the leaf of a record's line.
    pub fn push(&mut self, line: &[u8]) -> Result<(), TreeError> {
        self.push_hash(leaf_hash(line))
    }

    /// Appends a leaf by its hash.
    pub fn push_hash(&mut self, leaf: Hash) -> Result<(), TreeError> {
        let pending = &mut self.pending;
        append(&mut self.last, self.size, leaf, |h| {
            pending.extend_from_slice(&h.0)
        });
        self.size += 1;
        Ok(())
    }

    /// The hash of the newest leaf (`None` for an empty tree).
    pub fn last_leaf(&self) -> Option<Hash> {
        (self.size > 0).then_some(self.last[0])
    }

    /// The root hash of the tree as it stands.
    pub fn root(&self) -> Result<Hash, TreeError> {
        Ok(root_of(&self.last, self.size))
    }

    /// Writes the appended hashes to the file (not synced).
    pub fn flush(&mut self) -> Result<(), TreeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = (stored_hash_count(self.size) * HASH_BYTES) - self.pending.len() as u64;
        self.file
            .write_all_at(&self.pending, at)
            .map_err(|source| TreeError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.pending.clear();
        Ok(())
    }

    /// Writes and syncs the appended hashes.
    pub fn sync(&mut self) -> Result<(), TreeError> {
        self.flush()?;
        self.file.sync_data().map_err(|source| TreeError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// A read-only view of the tree as written so far (call [`Tree::flush`] first).
    pub fn view(&self) -> Result<TreeView, TreeError> {
        TreeView::open(&self.path, self.size - self.pending_leaves())
    }

    fn pending_leaves(&self) -> u64 {
        // Pending hashes belong to the newest leaves; none after a flush.
        let written = stored_hash_count(self.size) * HASH_BYTES - self.pending.len() as u64;
        self.size - size_for_hashes(written / HASH_BYTES)
    }
}

/// A read-only view of the first `size` leaves of a tree file; any thread may open one.
#[derive(Debug)]
pub struct TreeView {
    file: File,
    size: u64,
}

impl TreeView {
    /// Opens the tree file at `path` for the first `size` leaves (which it must hold).
    pub fn open(path: &Path, size: u64) -> Result<TreeView, TreeError> {
        let file = File::open(path).map_err(|source| TreeError::Io {
            path: path.to_owned(),
            source,
        })?;
        let hashes = file
            .metadata()
            .map_err(|source| TreeError::Io {
                path: path.to_owned(),
                source,
            })?
            .len()
            / HASH_BYTES;
        if stored_hash_count(size) > hashes {
            return Err(TreeError::Range(format!(
                "{} holds {} leaves, not {size}",
                path.display(),
                size_for_hashes(hashes)
            )));
        }
        Ok(TreeView { file, size })
    }

    /// Leaves in view.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree of the first `n` leaves.
    pub fn root_at(&self, n: u64) -> Result<Hash, TreeError> {
        self.within(n)?;
        Ok(tlog_tiles::tree_hash(n, self)?)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.within(size)?;
        if index >= size {
            return Err(TreeError::Range(format!(
                "leaf {index} is not in a tree of {size}"
            )));
        }
        Ok(tlog_tiles::prove_record(size, index, self)?)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
    /// (empty when `old` is 0 or equals `new`).
    pub fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        self.within(new)?;
        if old > new {
            return Err(TreeError::Range(format!("{old} > {new}")));
        }
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        Ok(tlog_tiles::prove_tree(new, old, self)?)
    }

    /// The stored hashes `(level, n)` for `n` in `first..first + count` (a tile's content).
    pub fn hashes_at_level(
        &self,
        level: u8,
        first: u64,
        count: u64,
    ) -> Result<Vec<Hash>, TreeError> {
        let indexes: Vec<u64> = (first..first + count)
            .map(|n| stored_hash_index(level, n))
            .collect();
        Ok(self.read_hashes(&indexes)?)
    }

    fn within(&self, n: u64) -> Result<(), TreeError> {
        match n <= self.size {
            true => Ok(()),
            false => Err(TreeError::Range(format!(
                "a tree of {n} leaves, but only {} are written",
                self.size
            ))),
        }
    }
}

impl HashReader for TreeView {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let limit = stored_hash_count(self.size);
        indexes
            .iter()
            .map(|&i| {
                if i >= limit {
                    return Err(tlog_tiles::Error::IndexesNotInTree);
                }
                read_hash(&self.file, i).map_err(|_| tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The right edge of a tree in memory: enough to append leaves and compute the root at any
/// size reached (what `audit verify` needs, without a file).
#[derive(Debug, Clone)]
pub struct Roots {
    last: [Hash; LEVELS],
    size: u64,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            last: [Hash::default(); LEVELS],
            size: 0,
        }
    }
}

impl Roots {
    /// The right edge of the tree `view` holds, at its `size` leaves (to continue from a
    /// tree whose first leaves are no longer at hand).
    pub fn at(view: &TreeView, size: u64) -> Result<Roots, TreeError> {
        view.within(size)?;
        let mut last = [Hash::default(); LEVELS];
        for (level, node) in last.iter_mut().enumerate() {
            let complete = size >> level;
            if complete == 0 {
                break;
            }
            // The newest complete node of each level: the right edge `append` keeps.
            *node = view.hashes_at_level(level_u8(level), complete - 1, 1)?[0];
        }
        Ok(Roots { last, size })
    }

    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf: Hash) -> Result<(), TreeError> {
        append(&mut self.last, self.size, leaf, |_| {});
        self.size += 1;
        Ok(())
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the leaves appended so far.
    pub fn root(&self) -> Result<Hash, TreeError> {
        Ok(root_of(&self.last, self.size))
    }
}

/// Appends leaf `n` (`size` before it) to the right edge `last`, handing each hash that
/// completes (the leaf, then each subtree it closes, as stored in the Go layout) to `out`.
/// The same hashes as `tlog_tiles::stored_hashes`, without a reader: the left neighbour of
/// each closed subtree is the newest completed node of its level.
fn append(last: &mut [Hash; LEVELS], n: u64, leaf: Hash, mut out: impl FnMut(Hash)) {
    let closes = ((n + 1).trailing_zeros() as usize).min(LEVELS - 1);
    let mut h = leaf;
    for node in last.iter_mut().take(closes) {
        out(h);
        let left = std::mem::replace(node, h);
        h = tlog_tiles::node_hash(left, h);
    }
    out(h);
    last[closes] = h;
}

/// The root of a tree of `size` leaves from its right edge: the complete subtrees of
/// `size`'s set bits, the smaller ones folded in on the right (RFC 6962 §2.1).
fn root_of(last: &[Hash; LEVELS], size: u64) -> Hash {
    let mut acc: Option<Hash> = None;
    for (level, node) in last.iter().enumerate().take(LEVELS) {
        if size >> level & 1 == 1 {
            acc = Some(match acc {
                None => *node,
                Some(right) => tlog_tiles::node_hash(*node, right),
            });
        }
    }
    acc.unwrap_or(EMPTY_ROOT)
}

fn read_hash(file: &File, index: u64) -> io::Result<Hash> {
    let mut h = [0u8; 32];
    file.read_exact_at(&mut h, index * HASH_BYTES)?;
    Ok(Hash(h))
}

fn level_u8(level: usize) -> u8 {
    u8::try_from(level).unwrap_or(u8::MAX)
}

/// The most leaves whose stored hashes fit in `hashes` hashes.
fn size_for_hashes(hashes: u64) -> u64 {
    // stored_hash_count(n) is increasing and at least n: search 0..=hashes.
    let (mut lo, mut hi) = (0u64, hashes);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if stored_hash_count(mid) <= hashes {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Checks an inclusion proof: leaf `index` hashing to `leaf` is in the tree of `size` leaves
/// with root `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), TreeError> {
    if index >= size || proof.len() > LEVELS {
        return Err(TreeError::Range(format!(
            "leaf {index} of a tree of {size} with a proof of {} hashes",
            proof.len()
        )));
    }
    Ok(tlog_tiles::check_record(
        &proof.to_vec(),
        size,
        root,
        index,
        leaf,
    )?)
}

/// Checks a consistency proof from the tree of `old` leaves (root `old_root`) to the tree of
/// `new` leaves (root `new_root`).
pub fn check_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), TreeError> {
    if old > new || proof.len() > LEVELS {
        return Err(TreeError::Range(format!("old size {old} > new size {new}")));
    }
    if old == 0 {
        return match proof.is_empty() {
            true => Ok(()),
            false => Err(TreeError::Math(
                "a proof from the empty tree must be empty".into(),
            )),
        };
    }
    if old == new {
        return match proof.is_empty() && old_root == new_root {
            true => Ok(()),
            false => Err(TreeError::Math(
                "the same size with another root hash".into(),
            )),
        };
    }
    Ok(tlog_tiles::check_tree(
        &proof.to_vec(),
        new,
        new_root,
        old,
        old_root,
    )?)
}

/// The root hash of the empty tree.
pub const EMPTY_ROOT: Hash = tlog_tiles::EMPTY_HASH;

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// RFC 6962 MTH, by its recursive definition.
    fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::digest([&[0u8][..], &leaves[0]].concat()).into(),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                Sha256::digest([&[1u8][..], &l, &r].concat()).into()
            }
        }
    }

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("graphgate-tree-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("audit.jsonl.tree")
    }

    #[test]
    fn roots_match_the_definition_and_survive_a_reopen_and_a_torn_tail() {
        let path = temp();
        let leaves: Vec<Vec<u8>> = (0..70)
            .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
            .collect();
        let mut tree = Tree::open(&path).unwrap();
        assert_eq!(tree.root().unwrap(), EMPTY_ROOT);
        let mut roots = Roots::default();
        for (i, leaf) in leaves.iter().enumerate() {
            tree.push(leaf).unwrap();
            roots.push(leaf_hash(leaf)).unwrap();
            assert_eq!(tree.root().unwrap().0, mth(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(roots.root().unwrap(), tree.root().unwrap());
        }
        tree.sync().unwrap();
        let view = tree.view().unwrap();
        for n in 1..=70u64 {
            assert_eq!(view.root_at(n).unwrap().0, mth(&leaves[..n as usize]));
        }
        // A torn append is cut back; the frontier is read back from the file.
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &f, &[7u8; 20]).unwrap();
        drop(tree);
        let mut again = Tree::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(again.size(), 70);
        assert_eq!(again.root().unwrap().0, mth(&leaves));
        again.push(b"more").unwrap();
        let mut all = leaves.clone();
        all.push(b"more".to_vec());
        assert_eq!(again.root().unwrap().0, mth(&all));
    }

    #[test]
    fn a_right_edge_read_from_the_file_continues_as_if_every_leaf_had_been_pushed() {
        let path = temp();
        let mut tree = Tree::open(&path).unwrap();
        let leaves: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 5]).collect();
        for leaf in &leaves {
            tree.push(leaf).unwrap();
        }
        tree.sync().unwrap();
        let view = tree.view().unwrap();
        for start in [0u64, 1, 2, 3, 7, 8, 63, 64, 65, 99] {
            let mut roots = Roots::at(&view, start).unwrap();
            assert_eq!(roots.size(), start);
            for leaf in &leaves[start as usize..] {
                roots.push(leaf_hash(leaf)).unwrap();
                let n = roots.size() as usize;
                assert_eq!(roots.root().unwrap().0, mth(&leaves[..n]), "from {start}");
            }
        }
        assert!(Roots::at(&view, 101).is_err());
    }

    #[test]
    fn proofs_verify_and_a_wrong_leaf_or_root_does_not() {
        let path = temp();
        let mut tree = Tree::open(&path).unwrap();
        let leaves: Vec<Vec<u8>> = (0..37).map(|i| vec![i as u8; 3]).collect();
        for leaf in &leaves {
            tree.push(leaf).unwrap();
        }
        tree.sync().unwrap();
        let view = tree.view().unwrap();
        for size in 1..=37u64 {
            let root = view.root_at(size).unwrap();
            for i in 0..size {
                let proof = view.inclusion(i, size).unwrap();
                let leaf = leaf_hash(&leaves[i as usize]);
                check_inclusion(&proof, size, root, i, leaf).unwrap();
                assert!(check_inclusion(&proof, size, root, i, leaf_hash(b"x")).is_err());
            }
            for old in 0..=size {
                let proof = view.consistency(old, size).unwrap();
                let old_root = view.root_at(old).unwrap();
                check_consistency(&proof, old, old_root, size, root).unwrap();
                if old > 0 && old < size {
                    assert!(check_consistency(&proof, old, root, size, root).is_err());
                }
            }
        }
        assert!(view.inclusion(37, 37).is_err());
        assert!(view.root_at(38).is_err());
    }
}
