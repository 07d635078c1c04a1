//! Feeding the log's records into its Merkle tree ([`super::tree`]): at start the tree file
//! is checked against the log (its newest leaf must be the log's record of that seq, and it
//! may not reach past the log) and brought up to the durable head, rebuilt from seq 1 if it
//! is missing; while the gateway runs, the checkpoint thread extends it record by record.

use std::io;
use std::path::Path;

use super::follow::Follower;
use super::tree::{self, Tree, TreeError};

/// Most records read from the log at a time.
const BATCH: usize = 4096;

/// Appends the log's records `tree.size() + 1 ..= until` to the tree (read through
/// `follower`, which must be at `tree.size() + 1`). A record missing from the files (removed
/// by retention before it was read) is an error naming it.
pub fn extend(tree: &mut Tree, follower: &mut Follower, until: u64) -> io::Result<()> {
    while tree.size() < until {
        let lines = follower.read(until, BATCH)?;
        if lines.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the log's record seq {} is not among its files yet (expected up to seq {until})",
                    tree.size() + 1
                ),
            ));
        }
        for line in lines {
            let want = tree.size() + 1;
            if line.seq != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the log's records seq {want}..={} are missing from its files (removed before the tree took them in)",
                        line.seq - 1
                    ),
                ));
            }
            tree.push(&line.bytes).map_err(io::Error::other)?;
        }
    }
    tree.flush().map_err(io::Error::other)
}

/// Opens the tree of the log at `log`, checks it against the log (durable up to seq `head`)
/// and brings it up to `head`. Refuses a tree that reaches past the log (records cut off
/// after they were taken in) or whose newest leaf is not the log's record (the log or the
/// tree rewritten); a missing tree is rebuilt when the log still starts at seq 1.
pub fn open_for(log: &Path, head: u64) -> io::Result<Tree> {
    let path = tree::path_for(log);
    let existed = path.exists();
    let mut tree = Tree::open(&path).map_err(invalid)?;
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}. Check the log with `graphgate audit verify --public-key ...`; to start a new tree on purpose, use --audit-new-tree"
            ),
        )
    };
    if tree.size() > head {
        return Err(refuse(format!(
            "the audit log ends at seq {head} but its Merkle tree {} holds {} records: seq {}..={} are missing (cut off?)",
            path.display(),
            tree.size(),
            head + 1,
            tree.size()
        )));
    }
    if let Some(last) = tree.last_leaf() {
        let mut at = Follower::new(log, tree.size());
        match at.read(tree.size(), 1)?.pop() {
            Some(line) if line.seq == tree.size() => {
                if tree::leaf_hash(&line.bytes) != last {
                    return Err(refuse(format!(
                        "the record at seq {} is not the one the audit log's Merkle tree {} holds: the log (or the tree) was rewritten",
                        tree.size(),
                        path.display()
                    )));
                }
            }
            _ => {
                tracing::warn!(seq = tree.size(), tree = %path.display(), "the audit tree's newest record is not among the log's files (moved away?); continuing the tree")
            }
        }
    }
    if tree.size() == 0 && head > 0 {
        if existed {
            tracing::warn!(tree = %path.display(), "the audit tree is empty; rebuilding it from the log");
        } else {
            tracing::info!(tree = %path.display(), records = head, "building the audit log's Merkle tree from its records");
        }
    }
    let mut follower = Follower::new(log, tree.size() + 1);
    extend(&mut tree, &mut follower, head).map_err(|e| {
        refuse(format!(
            "the audit log's Merkle tree {} cannot be brought up to seq {head}: {e} (restore the tree file or the log's archived files)",
            path.display()
        ))
    })?;
    tree.sync().map_err(invalid)?;
    Ok(tree)
}

fn invalid(e: TreeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
