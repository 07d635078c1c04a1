//! Witnesses: the tlog-witness protocol, the background submission, the cosigned
//! checkpoints kept beside the log, and the start-up check against the witnesses.

pub mod cosigned;
pub mod witness;
pub mod witness_protocol;
pub mod witness_start;

use super::Audit;
use super::checkpoints::{checkpoint, note, push, tree};
use super::records::chain;
use super::store::files;
