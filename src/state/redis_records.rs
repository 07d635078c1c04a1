//! Versioned records in Redis: each a hash (`v` the version, `d` the document), each step one
//! atomic script (`scripts/record_*.lua`); claims are plain keys naming their record,
//! indexes sorted sets, bounded sets sets. What comes back is bounded: a document larger
//! than [`MAX_RECORD_BYTES`] (which the gateway never writes) is an error, not a read.
//!
//! The scripts touch the records their indexes and sets name, which are not all declared
//! as keys: a single Redis or Valkey (or a primary with replicas) runs them, a Redis
//! Cluster would not.

use ::redis::Value;

use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::redis::{RedisStore, SCRIPTS};
use super::{StoreError, StoreErrorKind};

/// The largest document read back.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
/// The longest record key a claim may name.
const MAX_KEY_BYTES: usize = 1024;

fn unexpected(what: &str, reply: &Value) -> StoreError {
    let shown: String = format!("{reply:?}").chars().take(200).collect();
    StoreError::new(
        StoreErrorKind::Response,
        format!("unexpected {what} answer {shown}"),
    )
}

fn too_big(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Response,
        format!("a {what} larger than graphgate writes"),
    )
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    pub(super) async fn get_record(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut inv = SCRIPTS.record_get.prepare_invoke();
        inv.key(key).arg(MAX_RECORD_BYTES);
        let reply: Value = self.script(inv).await?;
        match &reply {
            Value::Array(items) => match items.as_slice() {
                [] => Ok(None),
                [big] if text(big) == Some(b"big") => Err(too_big("record")),
                [version, document] => {
                    let version = int(version).ok_or_else(|| unexpected("record", &reply))?;
                    let value = text(document).ok_or_else(|| unexpected("record", &reply))?;
                    Ok(Some(Versioned {
                        version,
                        value: value.to_vec(),
                    }))
                }
                _ => Err(unexpected("record", &reply)),
            },
            _ => Err(unexpected("record", &reply)),
        }
    }

    pub(super) async fn claim_holder(&self, claim: &str) -> Result<Option<String>, StoreError> {
        let mut inv = SCRIPTS.record_claimed.prepare_invoke();
        inv.key(claim).arg(MAX_KEY_BYTES);
        let reply: Value = self.script(inv).await?;
        match &reply {
            Value::Nil => Ok(None),
            Value::Array(_) => Err(too_big("claim")),
            other => text(other)
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(|t| Some(t.to_owned()))
                .ok_or_else(|| unexpected("claim", other)),
        }
    }

    pub(super) async fn create_record(&self, new: &NewRecord<'_>) -> Result<Created, StoreError> {
        let mut inv = SCRIPTS.record_create.prepare_invoke();
        inv.key(new.key);
        for c in new.claims {
            inv.key(*c);
        }
        for i in new.indexes {
            inv.key(i.key);
        }
        if let Some((set, _)) = new.bounded {
            inv.key(set);
        }
        inv.arg(new.value)
            .arg(ms(new.ttl))
            .arg(new.claims.len())
            .arg(new.indexes.len())
            .arg(new.bounded.map_or(0, |(_, max)| max.max(1)));
        for i in new.indexes {
            inv.arg(i.score).arg(i.score.saturating_sub(i.keep));
        }
        let reply: Vec<Value> = self.script(inv).await?;
        let wrong = || unexpected("create", &Value::Array(reply.clone()));
        let (status, rest) = reply.split_first().ok_or_else(wrong)?;
        match (text(status).ok_or_else(wrong)?, rest) {
            (b"ok", []) => Ok(Created::Created),
            (b"full", []) => Ok(Created::Full),
            (b"exists", []) => Ok(Created::Exists),
            (b"claimed", [index, holder]) => {
                let index = int(index)
                    .and_then(|i| usize::try_from(i).ok()?.checked_sub(1))
                    .ok_or_else(wrong)?;
                let holder = text(holder)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .ok_or_else(wrong)?;
                Ok(Created::Claimed {
                    index,
                    holder: holder.to_owned(),
                })
            }
            _ => Err(wrong()),
        }
    }

    pub(super) async fn swap_record(&self, swap: &Swap<'_>) -> Result<Swapped, StoreError> {
        let mut inv = SCRIPTS.record_swap.prepare_invoke();
        inv.key(swap.key);
        for c in swap.release {
            inv.key(*c);
        }
        for i in swap.unindex {
            inv.key(*i);
        }
        if let Some(set) = swap.leave {
            inv.key(set);
        }
        inv.arg(swap.version)
            .arg(swap.value)
            .arg(ms(swap.ttl))
            .arg(swap.release.len())
            .arg(swap.unindex.len())
            .arg(if swap.leave.is_some() { "1" } else { "0" })
            .arg(MAX_RECORD_BYTES);
        let reply: Vec<Value> = self.script(inv).await?;
        let wrong = || unexpected("swap", &Value::Array(reply.clone()));
        let (status, rest) = reply.split_first().ok_or_else(wrong)?;
        match (text(status).ok_or_else(wrong)?, rest) {
            (b"ok", [version]) => Ok(Swapped::Swapped(int(version).ok_or_else(wrong)?)),
            (b"stale", []) => Ok(Swapped::Stale(None)),
            (b"stale", [version, document]) => Ok(Swapped::Stale(Some(Versioned {
                version: int(version).ok_or_else(wrong)?,
                value: text(document).ok_or_else(wrong)?.to_vec(),
            }))),
            (b"big", []) => Err(too_big("record")),
            _ => Err(wrong()),
        }
    }

    pub(super) async fn list_records(
        &self,
        index: &str,
        max: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        let mut inv = SCRIPTS.record_list.prepare_invoke();
        inv.key(index).arg(max).arg(MAX_RECORD_BYTES);
        let reply: Vec<Value> = self.script(inv).await?;
        let wrong = || unexpected("list", &Value::Array(reply.clone()));
        if reply.first().and_then(text) == Some(b"big") {
            return Err(too_big("record"));
        }
        if !reply.len().is_multiple_of(3) || reply.len() / 3 > max {
            return Err(wrong());
        }
        reply
            .chunks_exact(3)
            .map(|item| {
                let key = text(&item[0]).and_then(|k| std::str::from_utf8(k).ok());
                let version = int(&item[1]);
                let value = text(&item[2]);
                match (key, version, value) {
                    (Some(key), Some(version), Some(value)) => Ok((
                        key.to_owned(),
                        Versioned {
                            version,
                            value: value.to_vec(),
                        },
                    )),
                    _ => Err(wrong()),
                }
            })
            .collect()
    }
}
