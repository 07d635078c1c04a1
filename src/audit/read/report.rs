//! What verifying a log found ([`Report`]): the records that checked out, the first
//! problem and where it is, torn last lines, and the chain fields of the records asked
//! about. Both the fast pass ([`super::sweep`]) and the precise walk ([`super::verify`])
//! fill it; [`super::ends`] checks it against the anchor.

use std::fmt;
use std::path::PathBuf;

/// What is wrong at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The line is not a record.
    Malformed,
    /// The record's content does not match its hash.
    Altered,
    /// The record was rewritten with a fresh hash: its successor no longer chains to it.
    Rehashed,
    /// Records are missing before this one.
    Removed {
        /// How many sequence numbers are missing.
        count: u64,
    },
    /// This record and the next are out of order.
    Reordered,
    /// This record does not belong in the chain.
    Inserted,
    /// The chain breaks here in some other way.
    Broken,
}

/// Where a problem or a torn line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The file.
    pub file: PathBuf,
    /// Line number, from 1.
    pub line: usize,
    /// The record's sequence number, when readable.
    pub seq: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

/// The result of verifying a set of files.
#[derive(Debug, Default)]
pub struct Report {
    /// Records whose chain checked out.
    pub records: u64,
    /// First and last sequence numbers verified.
    pub seq_range: Option<(u64, u64)>,
    /// Torn last lines (crash remnants), not counted as tampering.
    pub torn: Vec<Position>,
    /// The first tampering found; verification stops there.
    pub problem: Option<(Position, Problem)>,
    /// The chain fields of the first record verified.
    pub first: Option<super::files::Link>,
    /// The chain fields of the records asked for (by sequence number) that were verified.
    pub watched: Vec<super::files::Link>,
}

impl Report {
    /// Whether the chain is intact (torn tails allowed).
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed => f.write_str("not a valid audit record"),
            Problem::Altered => f.write_str("record altered: its content does not match its hash"),
            Problem::Rehashed => {
                f.write_str("record altered and re-hashed: the next record does not chain to it")
            }
            Problem::Removed { count } => write!(
                f,
                "{} removed before this one",
                crate::words::count(*count, "record")
            ),
            Problem::Reordered => {
                f.write_str("records reordered: this one and the next are swapped")
            }
            Problem::Inserted => f.write_str("record inserted: the chain continues without it"),
            Problem::Broken => {
                f.write_str("hash chain broken (records inserted, removed or reordered)")
            }
        }
    }
}
