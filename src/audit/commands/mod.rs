//! The `graphgate audit` commands and `serve`'s audit flags.

pub mod checkpoint_cli;
pub mod cli;
pub mod receipt_cli;
pub mod serve;
pub mod verify_witness;

use super::{
    Audit, AuditConfig, DEFAULT_MAX_FILE_BYTES, Entry, Fingerprinter, Kind, anchor, chain,
    checkpoint, cosigned, ends, files, fingerprint, launder, note, push, query, receipt, reconcile,
    record, sampler, ship, sink, sweep, tree, verify, witness, witness_args, witness_start,
};
