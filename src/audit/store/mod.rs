//! Making records durable: the writer thread and its group-commit batch, the sink and the
//! log's files, the anchor, and the refusal to continue a log whose evidence is missing.

pub mod anchor;
mod batch;
pub mod files;
pub mod launder;
pub mod sink;
pub mod writer;

use super::{
    Fingerprinter, chain, checkpoint, checkpointer, cosigned, leaves, record, sampler, ship, tree,
};
