//! The approval API in the OpenAPI document the gateway serves (`/api/v1/openapi.json`):
//! its paths and schemas, and on every operation the answers approvals add (`202` held,
//! `409` for a duplicate, a redemption or a break glass that cannot be taken now).

use serde_json::{Map, Value, json};

use super::api::PREFIX;
use super::model::State;
use super::review::MAX_REASON_CHARS;

/// What a reason may hold, as a pattern: none of the characters of the Basic Multilingual
/// Plane that the gateway's own check refuses (control, line-separator, bidirectional,
/// format and other invisible characters: `screen::is_readable_text`), listed from that
/// check itself, so the two cannot drift.
pub fn reason_pattern() -> &'static str {
    static PATTERN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let refused = |c: char| !super::review::readable_reason(&format!("a{c}"));
        let mut class = String::new();
        let mut run: Option<(u32, u32)> = None;
        let flush = |run: Option<(u32, u32)>, class: &mut String| {
            if let Some((from, to)) = run {
                class.push_str(&format!("\\u{from:04x}"));
                if to > from {
                    class.push_str(&format!("-\\u{to:04x}"));
                }
            }
        };
        for c in (0..=0xffff_u32).filter_map(char::from_u32) {
            let code = c as u32;
            match (refused(c), run) {
                (true, Some((from, to))) if to + 1 == code => run = Some((from, code)),
                (true, _) => {
                    flush(run, &mut class);
                    run = Some((code, code));
                }
                (false, _) => {
                    flush(run, &mut class);
                    run = None;
                }
            }
        }
        flush(run, &mut class);
        format!("^[^{class}]*$")
    });
    &PATTERN
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GraphError" } } } })
}

fn approval_answer(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Approval" } } } })
}

/// The errors every approval API request may get.
fn errors(responses: &mut Map<String, Value>, with_body: bool) {
    let mut add = |status: &str, description: &str| {
        responses.insert(status.to_owned(), error(description));
    };
    add("400", "A bad query, body or reason.");
    add("401", "Missing or unknown API key, or a refused token.");
    add("404", "No such approval, or not one this caller may see.");
    add("405", "Another method (see Allow).");
    add("429", "Too many requests in flight; see Retry-After.");
    add("500", "Something went wrong; the gateway logged it.");
    add(
        "503",
        "Overloaded, or the state store did not answer; see Retry-After.",
    );
    if with_body {
        add(
            "403",
            "Not an approver, the requester's own request, or not the requester (cancel).",
        );
        add("408", "The body did not arrive in time.");
        add(
            "409",
            "Not in a state to take it, reviewed already by this person, or another request's request_sha256.",
        );
        add("413", "Body too large.");
        add("415", "Not application/json.");
    }
}

fn approval_schema() -> Value {
    let text = json!({ "type": "string" });
    let nullable = json!({ "type": "string", "nullable": true });
    let states: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    json!({
        "type": "object",
        "required": ["id", "state", "operation", "tier", "devices", "caller", "request_sha256", "policy_sha256", "created", "expires", "groups", "reviews"],
        "properties": {
            "id": { "type": "string", "format": "uuid" },
            "state": { "type": "string", "enum": states },
            "operation": text, "api_version": text, "tier": text, "method": text, "path": text,
            "devices": { "type": "array", "items": text },
            "parameters": { "type": "object" },
            "caller": text, "initiator": nullable, "reason": nullable, "rule": text,
            "request_sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
            "policy_sha256": text, "created": text, "expires": text, "execute_by": text,
            "run_by": { "type": "string", "enum": ["gateway", "requester"] },
            "groups": { "type": "array", "items": { "type": "object", "properties": {
                "approvers": { "type": "array", "items": text },
                "required": { "type": "integer" },
                "approvals": { "type": "array", "items": text }
            } } },
            "deny": { "type": "integer" },
            "reviews": { "type": "array", "items": { "type": "object", "properties": {
                "decision": { "type": "string", "enum": ["approve", "reject", "review"] },
                "reviewer": text, "person": text, "reason": text, "request_sha256": text, "time": text
            } } },
            "break_glass": { "type": "object", "properties": { "reason": text } },
            "outcome": { "type": "object", "nullable": true }
        }
    })
}

fn reason_schema() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS, "allOf": [{ "pattern": reason_pattern() }, { "pattern": "\\S" }] })
}

fn review_body(required: bool) -> Value {
    let mut schema = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "reason": reason_schema(),
            "request_sha256": { "type": "string", "pattern": "^[0-9A-Fa-f]{64}$" }
        }
    });
    if required {
        schema["required"] = json!(["reason", "request_sha256"]);
    } else if let Some(p) = schema["properties"].as_object_mut() {
        p.remove("request_sha256");
    }
    json!({ "required": required, "content": { "application/json": { "schema": schema } } })
}

fn id_parameter() -> Value {
    json!({ "name": "approvalId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

/// Adds the approval API to `doc`, and approvals' answers to every operation in it.
pub fn document(doc: &mut Value) {
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for (method, op) in item.as_object_mut().into_iter().flatten() {
                if method == "parameters" {
                    continue;
                }
                op["responses"]["202"] = approval_answer(
                    "Held for approval (the rule needs others' approval): the approval resource, at Location.",
                );
                op["responses"]["409"] = error(
                    "A pending request for the same action, an approval that cannot be redeemed now, or an unreviewed break glass.",
                );
            }
        }
        for (path, item) in paths_of() {
            paths.insert(path, item);
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.insert("Approval".into(), approval_schema());
    }
}

fn paths_of() -> Vec<(String, Value)> {
    let states: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    let mut list = Map::new();
    list.insert(
        "200".into(),
        json!({ "description": "What this caller requested or may review, newest first.", "content": { "application/json": { "schema": { "type": "object", "required": ["value"], "properties": { "value": { "type": "array", "items": { "$ref": "#/components/schemas/Approval" } } } } } } }),
    );
    errors(&mut list, false);
    let mut one = Map::new();
    one.insert("200".into(), approval_answer("The approval."));
    errors(&mut one, false);
    let mut out = vec![
        (
            PREFIX.to_owned(),
            json!({ "get": {
                "operationId": "approvals.list",
                "summary": "Approvals this caller requested or may review",
                "parameters": [{ "name": "state", "in": "query", "required": false, "schema": { "type": "string", "enum": states } }],
                "responses": list
            } }),
        ),
        (
            format!("{PREFIX}/{{approvalId}}"),
            json!({ "parameters": [id_parameter()], "get": {
                "operationId": "approvals.show",
                "summary": "One approval (its requester and approvers only)",
                "responses": one
            } }),
        ),
    ];
    for (action, summary) in [
        ("approve", "Approve the request request_sha256 names"),
        ("reject", "Reject it"),
        ("review", "Review what break glass ran"),
        ("cancel", "Withdraw it (the requester)"),
    ] {
        let mut responses = Map::new();
        responses.insert("200".into(), approval_answer("The approval after the step (and the run's outcome, when the last approval ran it)."));
        errors(&mut responses, true);
        out.push((
            format!("{PREFIX}/{{approvalId}}/{action}"),
            json!({ "parameters": [id_parameter()], "post": {
                "operationId": format!("approvals.{action}"),
                "summary": summary,
                "requestBody": review_body(action != "cancel"),
                "responses": responses
            } }),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_pattern_refuses_what_the_gateway_refuses() {
        let pattern = regex::Regex::new(reason_pattern()).unwrap();
        for text in ["INC-1 stolen", "é ü ß 中文", "a\u{00a0}b"] {
            assert!(pattern.is_match(text), "{text:?}");
            assert!(super::super::review::readable_reason(text), "{text:?}");
        }
        for c in (0..=0xffffu32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            if !super::super::review::readable_reason(&text) {
                assert!(!pattern.is_match(&text), "U+{:04X}", c as u32);
            }
        }
    }

    #[test]
    fn every_approval_route_and_answer_is_documented() {
        let mut doc = json!({"paths": {"/api/v1/managedDevices/{managedDeviceId}/wipe": {"post": {"responses": {}}}}, "components": {"schemas": {}}});
        document(&mut doc);
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 1 + 6);
        let wipe = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/wipe"]["post"];
        assert!(wipe["responses"]["202"].is_object() && wipe["responses"]["409"].is_object());
        let approve = &doc["paths"]["/api/v1/approvals/{approvalId}/approve"]["post"];
        for status in [
            "200", "400", "401", "403", "404", "409", "413", "415", "429", "503",
        ] {
            assert!(approve["responses"][status].is_object(), "{status}");
        }
        assert!(doc["components"]["schemas"]["Approval"].is_object());
    }
}
