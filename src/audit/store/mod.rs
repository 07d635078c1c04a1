//! Making records durable: the writer's queue, the writer thread and its group-commit
//! batch, the sink and the log's files (followed as they grow), the anchor, and the
//! shipping cursor retention respects.

pub mod anchor;
mod batch;
pub mod files;
pub mod follow;
pub mod queue;
pub mod ship_cursor;
pub mod sink;
pub mod writer;

use super::Fingerprinter;
use super::records::{chain, record, sampler};
