//! The log's Merkle tree as the index grows: the right edge of the RFC 6962 tree of the
//! records indexed, kept every [`MARK`] records, so the console can tell whether the log
//! still matches the root its newest checkpoint signs. From the mark at or below the
//! checkpoint's size, the records up to it are read again from disk (a record changed since
//! it was indexed is seen); an index that starts past seq 1 (retention removed the oldest
//! files) starts from the log's tree file, as `audit verify` does.

use std::collections::VecDeque;
use std::path::Path;

use crate::audit::checkpoints::tree::{self, Roots, TreeView};

/// Records between marks (at most this many are read again for a check).
pub const MARK: u64 = 1024;

/// The right edge now and at the marks.
#[derive(Default)]
pub(super) struct Edge {
    /// At the newest record indexed; `None`: unknown (the index starts past seq 1 and the
    /// tree file does not reach there).
    now: Option<Roots>,
    /// At every multiple of [`MARK`] indexed, and where it started; oldest first.
    marks: VecDeque<Roots>,
}

impl Edge {
    /// Starts over before record `first` of the log at `log`: empty at seq 1, else read
    /// from the log's tree file.
    pub(super) fn start(&mut self, log: &Path, first: u64) {
        self.marks.clear();
        let size = first.saturating_sub(1);
        self.now = match size {
            0 => Some(Roots::default()),
            _ => TreeView::open(&tree::path_for(log), size)
                .and_then(|view| Roots::at(&view, size))
                .ok(),
        };
        self.marks.extend(self.now.clone());
    }

    /// Takes in the next record's leaf hash.
    pub(super) fn push(&mut self, leaf: tree::Hash) {
        let Some(now) = &mut self.now else { return };
        if now.push(leaf).is_err() {
            self.now = None;
            return;
        }
        if now.size().is_multiple_of(MARK) {
            self.marks.push_back(now.clone());
        }
    }

    /// Forgets the marks no longer usable once the index starts at `first` (a mark is
    /// usable while the records after it are indexed).
    pub(super) fn forget_before(&mut self, first: u64) {
        while self.marks.front().is_some_and(|m| m.size() + 1 < first) {
            self.marks.pop_front();
        }
    }

    /// The newest mark at or below `size` leaves.
    pub(super) fn mark_at_or_below(&self, size: u64) -> Option<Roots> {
        let i = self.marks.partition_point(|m| m.size() <= size);
        self.marks.get(i.checked_sub(1)?).cloned()
    }
}
