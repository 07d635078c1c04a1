//! The log off the host: its RFC 6962 Merkle tree and the records fed into it, signed
//! notes, the signed checkpoints and the thread that writes them, and their push.

pub mod checkpoint;
pub mod checkpointer;
pub mod leaves;
pub mod note;
pub mod push;
pub mod tree;

use super::records::chain;
use super::store::{files, follow, sink};
