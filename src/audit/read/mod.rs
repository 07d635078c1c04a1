//! Reading logs: `verify` (and `sweep`, its parallel pass, both reporting in a [`report`]),
//! the ends against the anchor, `query`, receipts and tiles.

pub mod ends;
pub mod query;
pub mod receipt;
pub mod report;
pub mod sweep;
pub mod tiles;
pub mod verify;

use super::checkpoints::{checkpoint, note, tree};
use super::records::{chain, record};
use super::store::{anchor, files, follow};
use super::witnessing::cosigned;
