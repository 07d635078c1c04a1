//! Reading logs: following a live log, `verify` (and `sweep`, its parallel pass), the ends
//! against the anchor, `query`, receipts and tiles.

pub mod ends;
pub mod follow;
pub mod query;
pub mod receipt;
pub mod sweep;
pub mod tiles;
pub mod verify;

use super::{anchor, chain, checkpoint, cosigned, files, note, record, tree};
