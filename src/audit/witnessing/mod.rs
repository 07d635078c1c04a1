//! Witnesses: the tlog-witness protocol, the background submission and its flags, the
//! cosigned checkpoints kept beside the log, and the start-up check against the witnesses.

pub mod cosigned;
pub mod witness;
pub mod witness_args;
pub mod witness_protocol;
pub mod witness_start;

use super::{Audit, chain, checkpoint, files, note, push, tree};
