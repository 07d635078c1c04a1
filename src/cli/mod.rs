//! The command line (binary only): every command's flags, and what the commands print.

pub mod args;
pub mod audit;
mod audit_checkpoints;
