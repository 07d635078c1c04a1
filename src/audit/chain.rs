//! The hash chain: canonical bytes of a record (keys sorted, no `hash`), its SHA-256, and
//! the running state a writer extends.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::Entry;

/// `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain stands: the last sequence number and hash written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// Last sequence number (0 before the first record).
    pub seq: u64,
    /// Last hash ([`GENESIS`] before the first record).
    pub hash: String,
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl ChainState {
    /// Appends `entry`: returns its JSON line (no newline) and advances the state.
    pub fn seal(&mut self, entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
        let seq = self.seq + 1;
        // Serialised by reference: the same JSON as a `Record`, without cloning the entry.
        let record = Sealing {
            seq,
            prev_hash: &self.hash,
            hash: "",
            entry,
        };
        let mut value = serde_json::to_value(&record)?;
        let hash = hash_of(&value);
        if let Value::Object(map) = &mut value {
            map.insert("hash".into(), Value::String(hash.clone()));
        }
        let line = canonical(&value);
        self.seq = seq;
        self.hash = hash;
        Ok(line)
    }
}

/// A [`Record`](super::record::Record) being sealed, borrowing its entry; serialises exactly as a `Record` does.
#[derive(serde::Serialize)]
struct Sealing<'a> {
    seq: u64,
    prev_hash: &'a str,
    hash: &'a str,
    #[serde(flatten)]
    entry: &'a Entry,
}

/// The hash a record (as parsed JSON) should carry: SHA-256 of its canonical form
/// without the `hash` member.
pub fn hash_of(record: &Value) -> String {
    let mut bytes = Vec::with_capacity(1024);
    write_canonical(record, &mut bytes, Some("hash"));
    hex(&Sha256::digest(&bytes))
}

/// Compact JSON with object keys sorted at every level, whatever the map type.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out, None);
    out
}

/// Writes `value` canonically, leaving out the top-level member `skip`. Keys and scalars are
/// written by serde_json itself (its escaping), straight into `out`.
fn write_canonical(value: &Value, out: &mut Vec<u8>, skip: Option<&str>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| Some(k.as_str()) != skip).collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out, None);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out, None);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_chain_and_rehash_identically() {
        let mut state = ChainState::default();
        let entry = Entry {
            audit_id: "a".into(),
            note: Some("ünïcode \"quoted\"".into()),
            ..Entry::default()
        };
        let first = state.seal(&entry).unwrap();
        let second = state.seal(&entry).unwrap();
        let v1: Value = serde_json::from_slice(&first).unwrap();
        let v2: Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(v1["prev_hash"], GENESIS);
        assert_eq!(v1["hash"], Value::String(hash_of(&v1)));
        assert_eq!(v2["prev_hash"], v1["hash"]);
        assert_eq!(v2["seq"], 2);
        assert_eq!(
            canonical(&v1),
            first,
            "re-serialising a line gives its bytes"
        );
    }
}
