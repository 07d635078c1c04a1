//! What binds a review to a request: `request_sha256`, the SHA-256 (hex) of the compact JSON
//! array `["graphgate-approval-v1", cloud, tenant, method, path, body, caller, initiator]`,
//! where `body` is the Graph body as canonical JSON (object members sorted by name, no
//! spaces; `""` when there is none) and `initiator` is `null` when none is stated. Anyone
//! holding the resource can recompute it; a review names it and counts only for it. The
//! key that keeps a second pending request for the same action out hashes the same things
//! without the caller and the initiator.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What identifies a request to approve.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The national cloud's name.
    pub cloud: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The Graph method.
    pub method: &'a str,
    /// The Graph path.
    pub path: &'a str,
    /// The Graph body as sent (JSON, or empty).
    pub body: &'a [u8],
    /// The requesting caller.
    pub caller: &'a str,
    /// The person it is made for, if stated.
    pub initiator: Option<&'a str>,
}

/// `request_sha256` of `facts`.
pub fn request_sha256(facts: &Facts<'_>) -> String {
    let doc = Value::Array(vec![
        "graphgate-approval-v1".into(),
        facts.cloud.into(),
        facts.tenant.into(),
        facts.method.into(),
        facts.path.into(),
        canonical_body(facts.body).into(),
        facts.caller.into(),
        facts.initiator.map_or(Value::Null, Value::from),
    ]);
    digest(&doc)
}

/// The key of the action itself (operation, devices, parameters: method, path and body),
/// whoever asks.
pub fn action_sha256(facts: &Facts<'_>) -> String {
    let doc = Value::Array(vec![
        "graphgate-approval-action-v1".into(),
        facts.cloud.into(),
        facts.tenant.into(),
        facts.method.into(),
        facts.path.into(),
        canonical_body(facts.body).into(),
    ]);
    digest(&doc)
}

fn digest(doc: &Value) -> String {
    crate::policy::hex(&Sha256::digest(canonical(doc).as_bytes()))
}

/// A JSON body as canonical text; a body that is not JSON (never admitted) as itself.
pub fn canonical_body(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => canonical(&v),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Compact JSON with object members sorted by name, at every depth.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(body: &'a [u8], initiator: Option<&'a str>) -> Facts<'a> {
        Facts {
            cloud: "global",
            tenant: "t",
            method: "POST",
            path: "/v1.0/deviceManagement/managedDevices/x/wipe",
            body,
            caller: "ops",
            initiator,
        }
    }

    #[test]
    fn the_hash_is_of_the_request_not_of_its_spelling() {
        let a = request_sha256(&facts(br#"{"keepUserData":true,"b":{"y":1,"x":2}}"#, None));
        let b = request_sha256(&facts(
            br#"{ "b": {"x":2,"y":1}, "keepUserData": true }"#,
            None,
        ));
        assert_eq!(a, b, "member order and spaces do not matter");
        let other = request_sha256(&facts(br#"{"keepUserData":false}"#, None));
        assert_ne!(a, other);
        let for_alice = request_sha256(&facts(br#"{"keepUserData":true}"#, Some("alice@x.com")));
        assert_ne!(
            for_alice,
            request_sha256(&facts(br#"{"keepUserData":true}"#, None))
        );
        assert_eq!(
            canonical(&serde_json::json!({"b": [1, {"d": "\"", "c": null}], "a": 1})),
            r#"{"a":1,"b":[1,{"c":null,"d":"\""}]}"#
        );
        // The action's key leaves out who asks.
        assert_eq!(
            action_sha256(&facts(b"{}", Some("alice@x.com"))),
            action_sha256(&facts(b"{}", None))
        );
    }

    /// The recipe docs/approvals.md gives, computed independently: a reviewer can check it.
    #[test]
    fn the_documented_recipe_gives_the_hash() {
        let text = r#"["graphgate-approval-v1","global","t","POST","/v1.0/deviceManagement/managedDevices/x/wipe","{\"keepUserData\":true}","ops",null]"#;
        let expected = crate::policy::hex(&Sha256::digest(text.as_bytes()));
        assert_eq!(
            request_sha256(&facts(br#"{"keepUserData": true}"#, None)),
            expected
        );
    }
}
