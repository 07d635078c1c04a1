//! What a record is: one request's trail, sampled refusals, keyed fingerprints of redacted
//! values, and the record sealed into the hash chain.

pub mod chain;
pub mod fingerprint;
pub mod record;
pub mod sampler;
pub mod trail;

use super::{Audit, WriteError};
