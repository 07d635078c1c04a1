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
        let mut line = Vec::with_capacity(1024);
        self.seal_into(entry, &mut line)?;
        Ok(line)
    }

    /// Appends `entry`'s JSON line (no newline) to `out` and advances the state; on error
    /// `out` and the state are as they were.
    ///
    /// The line is written straight in canonical form (members in key order, absent fields
    /// left out), so sealing is one direct serialisation (in two halves around `hash`) and
    /// one SHA-256: no JSON tree is built. `verify` re-derives the same bytes from the parsed
    /// line with [`hash_of`].
    pub fn seal_into(&mut self, entry: &Entry, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let start = out.len();
        let written = self.write_unhashed(entry, out);
        let joint = match written {
            Ok(joint) => joint,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        // `out[start..]` is now the record without `hash`: its canonical form.
        let hash = hex(&Sha256::digest(&out[start..]));
        let member = [b"\"hash\":\"", hash.as_bytes(), b"\","].concat();
        out.splice(joint..joint, member);
        self.seq += 1;
        self.hash = hash;
        Ok(())
    }

    /// Writes the next record without its `hash` member; returns where that member goes.
    /// The members before and after `hash` in key order are serialised as two objects and
    /// joined: both are never empty (`audit_id` comes before `hash`, `seq` after it).
    fn write_unhashed(&self, entry: &Entry, out: &mut Vec<u8>) -> Result<usize, serde_json::Error> {
        let part = |half| Sealing {
            seq: self.seq + 1,
            prev_hash: &self.hash,
            entry,
            half,
        };
        serde_json::to_writer(&mut *out, &part(Half::BeforeHash))?;
        out.pop(); // '}'
        out.push(b',');
        let joint = out.len();
        serde_json::to_writer(&mut *out, &part(Half::AfterHash))?;
        out.remove(joint); // '{'
        Ok(joint)
    }
}

/// Which members of a sealed record to write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    BeforeHash,
    AfterHash,
}

/// A record being sealed, borrowing its entry: the members on one side of `hash`, in key
/// order, so that the two halves joined are the canonical form [`canonical`] would write
/// (a unit test holds the two to the same bytes).
struct Sealing<'a> {
    seq: u64,
    prev_hash: &'a str,
    entry: &'a Entry,
    half: Half,
}

impl serde::Serialize for Sealing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// Writes a member unless it is absent.
        fn some<M: SerializeMap, T: serde::Serialize>(
            m: &mut M,
            key: &'static str,
            value: Option<&T>,
        ) -> Result<(), M::Error> {
            value.map_or(Ok(()), |v| m.serialize_entry(key, v))
        }
        let e = self.entry;
        let mut m = s.serialize_map(None)?;
        // Keep in byte order of the keys.
        if self.half == Half::BeforeHash {
            some(&mut m, "api_version", e.api_version.as_ref())?;
            some(&mut m, "approval_event", e.approval_event.as_ref())?;
            some(&mut m, "approval_id", e.approval_id.as_ref())?;
            some(&mut m, "approval_state", e.approval_state.as_ref())?;
            m.serialize_entry("audit_id", &e.audit_id)?;
            some(&mut m, "auth_method", e.auth_method.as_ref())?;
            some(&mut m, "break_glass", e.break_glass.as_ref())?;
            some(&mut m, "budgets", e.budgets.as_ref())?;
            some(&mut m, "budgets_refunded", e.budgets_refunded.as_ref())?;
            some(&mut m, "caller", e.caller.as_ref())?;
            some(&mut m, "caller_issuer", e.caller_issuer.as_ref())?;
            some(&mut m, "caller_subject", e.caller_subject.as_ref())?;
            some(
                &mut m,
                "caller_token_sha256",
                e.caller_token_sha256.as_ref(),
            )?;
            some(&mut m, "client_request_id", e.client_request_id.as_ref())?;
            some(&mut m, "cloud", e.cloud.as_ref())?;
            some(&mut m, "completion", e.completion.as_ref())?;
            some(&mut m, "decision", e.decision.as_ref())?;
            some(&mut m, "detected_app_id", e.detected_app_id.as_ref())?;
            some(&mut m, "device_id", e.device_id.as_ref())?;
            some(&mut m, "device_ids", e.device_ids.as_ref())?;
            some(&mut m, "device_outcomes", e.device_outcomes.as_ref())?;
            some(&mut m, "disclosed_bytes", e.disclosed_bytes.as_ref())?;
            some(&mut m, "error_code", e.error_code.as_ref())?;
            some(&mut m, "graph_request_id", e.graph_request_id.as_ref())?;
            return m.end();
        }
        // "hash" goes here.
        some(&mut m, "initiator", e.initiator.as_ref())?;
        some(&mut m, "initiator_oid", e.initiator_oid.as_ref())?;
        some(&mut m, "initiator_source", e.initiator_source.as_ref())?;
        some(&mut m, "kind", e.kind.as_ref())?;
        some(&mut m, "latency_us", e.latency_us.as_ref())?;
        some(&mut m, "note", e.note.as_ref())?;
        some(&mut m, "operation", e.operation.as_ref())?;
        some(&mut m, "params", e.params.as_ref())?;
        some(&mut m, "policy_version", e.policy_version.as_ref())?;
        m.serialize_entry("prev_hash", self.prev_hash)?;
        some(&mut m, "reason", e.reason.as_ref())?;
        some(&mut m, "request_sha256", e.request_sha256.as_ref())?;
        some(&mut m, "reviewer", e.reviewer.as_ref())?;
        some(&mut m, "rule", e.rule.as_ref())?;
        m.serialize_entry("seq", &self.seq)?;
        some(&mut m, "shadow_rule", e.shadow_rule.as_ref())?;
        some(&mut m, "source", e.source.as_ref())?;
        some(&mut m, "status", e.status.as_ref())?;
        some(&mut m, "suppressed", e.suppressed.as_ref())?;
        some(&mut m, "tenant", e.tenant.as_ref())?;
        some(&mut m, "tier", e.tier.as_ref())?;
        m.serialize_entry("time", &e.time)?;
        some(&mut m, "token_app_id", e.token_app_id.as_ref())?;
        some(
            &mut m,
            "upstream_latency_us",
            e.upstream_latency_us.as_ref(),
        )?;
        some(&mut m, "upstream_status", e.upstream_status.as_ref())?;
        some(&mut m, "user_id", e.user_id.as_ref())?;
        m.end()
    }
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

    /// Every field set, with map keys inserted out of order: the directly written line is
    /// canonical, carries every field a `Record` has, and re-hashes to its own hash.
    #[test]
    fn a_full_record_is_sealed_canonically_with_every_field() {
        let params = serde_json::json!({
            "zeta": "\u{7f}<>&\\", "alpha": {"redacted": true, "hmac_sha256": "ab"}, "mid": null
        });
        let entry = Entry {
            tier: Some("destructive".into()),
            disclosed_bytes: Some(42),
            device_ids: Some(vec!["d1".into(), "d2".into()]),
            device_outcomes: Some([("d1".to_owned(), "successful".to_owned())].into()),
            kind: Some(crate::audit::records::record::Kind::Outcome),
            time: "2026-11-28T00:00:00.000000Z".into(),
            audit_id: "id".into(),
            caller: Some("c".into()),
            auth_method: Some("api_key".into()),
            source: Some("127.0.0.1:1".into()),
            operation: Some("managedDevices.x".into()),
            api_version: Some("v1.0".into()),
            cloud: Some("global".into()),
            tenant: Some("t".into()),
            device_id: Some("d".into()),
            user_id: Some("u".into()),
            detected_app_id: Some("a".into()),
            params: Some(std::sync::Arc::new(params)),
            policy_version: Some("p".into()),
            rule: Some("r".into()),
            shadow_rule: Some("s".into()),
            decision: Some(crate::audit::records::record::AuditDecision::OutcomeUnknown),
            error_code: Some("e".into()),
            status: Some(504),
            suppressed: Some(3),
            upstream_status: Some(504),
            client_request_id: Some("cr".into()),
            graph_request_id: Some("g".into()),
            latency_us: Some(u64::MAX),
            upstream_latency_us: Some(0),
            token_app_id: Some("app".into()),
            note: Some("n\"\n".into()),
            caller_issuer: Some("https://issuer".into()),
            caller_subject: Some("system:serviceaccount:a:b".into()),
            caller_token_sha256: Some("f0".into()),
            initiator: Some("alice@contoso.com".into()),
            initiator_oid: Some("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".into()),
            initiator_source: Some("token".into()),
            reason: Some("CHG-1 \u{e9}\u{2028}?".into()),
            completion: Some("done".into()),
            budgets: Some(vec![super::super::record::BudgetMark {
                budget: "caller:c".into(),
                devices: 3,
                window: "day".into(),
                window_end: 1_765_238_400,
            }]),
            budgets_refunded: Some(true),
            approval_id: Some("ap".into()),
            request_sha256: Some("rs".into()),
            approval_state: Some("pending".into()),
            approval_event: Some("requested".into()),
            reviewer: Some("carol".into()),
            break_glass: Some(true),
        };
        let line = ChainState::default().seal(&entry).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            canonical(&parsed),
            line,
            "{}",
            String::from_utf8_lossy(&line)
        );
        assert_eq!(parsed["hash"], Value::String(hash_of(&parsed)));
        let record = crate::audit::records::record::Record {
            seq: 1,
            prev_hash: GENESIS.into(),
            hash: "h".into(),
            entry,
        };
        let Value::Object(all) = serde_json::to_value(&record).unwrap() else {
            panic!("a record is an object")
        };
        let Value::Object(sealed) = &parsed else {
            panic!("a line is an object")
        };
        let missing: Vec<&String> = all.keys().filter(|k| !sealed.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "fields the sealed line leaves out: {missing:?}"
        );
        assert_eq!(all.len(), sealed.len());
    }

    #[test]
    fn absent_fields_are_left_out_of_the_line() {
        let line = ChainState::default().seal(&Entry::default()).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(!text.contains("null"), "{text}");
        assert!(text.starts_with(r#"{"audit_id":"","hash":""#), "{text}");
    }
}
