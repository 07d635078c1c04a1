//! Receipts: proof, checkable anywhere and offline, that audit records are in the log. A
//! receipt is one JSON document (a stable format, `graphgate-audit-receipt/v1`):
//!
//! ```json
//! {
//!   "format": "graphgate-audit-receipt/v1",
//!   "checkpoint": "<the signed checkpoint, with the witnesses' cosignatures>",
//!   "records": [
//!     {"leaf_index": 41, "record": "<the record's JSON line, byte for byte>",
//!      "inclusion_proof": ["<base64 hash>", ...]}
//!   ]
//! }
//! ```
//!
//! Each record's leaf (SHA-256(0x00 || line)) at `leaf_index` (its seq - 1), with its RFC
//! 6962 inclusion proof, gives the checkpoint's root; the checkpoint is signed by the log's
//! key and cosigned by witnesses. A receipt is written in one exact form (serde_json's
//! pretty printing, a final newline), and checking it insists on that form: any changed byte
//! fails.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::cosigned::{self, Witnessed};
use super::note::NoteVerifier;
use super::tree::{self, Hash};

/// The format's name and version.
pub const FORMAT: &str = "graphgate-audit-receipt/v1";
/// Largest receipt read.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// [`FORMAT`].
    pub format: String,
    /// The signed (and cosigned) checkpoint the proofs lead to.
    pub checkpoint: String,
    /// The records proven.
    pub records: Vec<Proven>,
}

/// One record and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proven {
    /// The record's leaf index (its seq - 1).
    pub leaf_index: u64,
    /// The record's JSON line, as in the log.
    pub record: String,
    /// The inclusion proof, base64 hashes.
    pub inclusion_proof: Vec<String>,
}

impl Receipt {
    /// The receipt's exact bytes.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A receipt of `records` (leaf index and line) against `checkpoint`, proven from `view`.
    pub fn build(
        checkpoint: &str,
        size: u64,
        records: &[(u64, Vec<u8>)],
        view: &tree::TreeView,
    ) -> Result<Receipt, String> {
        let mut proven = Vec::new();
        for (index, line) in records {
            let proof = view.inclusion(*index, size).map_err(|e| e.to_string())?;
            proven.push(Proven {
                leaf_index: *index,
                record: String::from_utf8(line.clone()).map_err(|e| e.to_string())?,
                inclusion_proof: proof.iter().map(|h| B64.encode(h.0)).collect(),
            });
        }
        Ok(Receipt {
            format: FORMAT.into(),
            checkpoint: checkpoint.to_owned(),
            records: proven,
        })
    }
}

/// What a receipt proves, once checked.
#[derive(Debug)]
pub struct Checked {
    /// The checkpoint and the witnesses that cosigned it.
    pub witnessed: Witnessed,
    /// The records, parsed.
    pub records: Vec<serde_json::Value>,
}

/// Checks the receipt `text` with the log's key and `witnesses`, `quorum` of which must have
/// cosigned. The error names the first check that failed.
pub fn check(
    text: &[u8],
    log_key: &NoteVerifier,
    witnesses: &[NoteVerifier],
    quorum: usize,
) -> Result<Checked, String> {
    let receipt: Receipt =
        serde_json::from_slice(text).map_err(|e| format!("not a receipt: {e}"))?;
    if receipt.format != FORMAT {
        return Err(format!(
            "not a {FORMAT} receipt: format {:?}",
            receipt.format
        ));
    }
    if receipt.to_text().as_bytes() != text {
        return Err("the receipt is not in its exact written form (altered?)".into());
    }
    let witnessed = cosigned::check(&receipt.checkpoint, log_key, witnesses)
        .map_err(|e| format!("the checkpoint: {e}"))?;
    if witnessed.by.len() < quorum {
        return Err(format!(
            "the checkpoint is cosigned by {} of the witness keys given, fewer than the {quorum} required",
            witnessed.by.len()
        ));
    }
    let Checkpoint { size, hash, .. } = &witnessed.checkpoint;
    let root = super::checkpoint::hex_decode(hash)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash)
        .ok_or("the checkpoint's root hash")?;
    if receipt.records.is_empty() {
        return Err("the receipt proves no record".into());
    }
    let mut records = Vec::new();
    for r in &receipt.records {
        let proof = r
            .inclusion_proof
            .iter()
            .map(|h| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
            })
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| {
                format!(
                    "record {}: a proof hash is not base64 of 32 bytes",
                    r.leaf_index
                )
            })?;
        let leaf = tree::leaf_hash(r.record.as_bytes());
        tree::check_inclusion(&proof, *size, root, r.leaf_index, leaf).map_err(|e| {
            format!(
                "record at leaf {}: not in the tree of {size} records the checkpoint signs ({e}): the record or its proof was altered",
                r.leaf_index
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&r.record)
            .map_err(|e| format!("record at leaf {}: not JSON: {e}", r.leaf_index))?;
        if value["seq"].as_u64() != Some(r.leaf_index + 1) {
            return Err(format!(
                "record at leaf {}: its seq is not {}",
                r.leaf_index,
                r.leaf_index + 1
            ));
        }
        records.push(value);
    }
    Ok(Checked { witnessed, records })
}
