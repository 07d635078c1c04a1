//! The simplified internal API (`POST /api/v1/managedDevices/{id}/{action}` with a flat
//! JSON body): translation into the exact Graph body, and its OpenAPI 3 document, both
//! generated from the operation catalog.

use serde_json::{Map, Value, json};

use crate::operation::catalog::{CATALOG, Operation, SimpleApi};
use crate::operation::schema::SchemaError;
use crate::operation::schema::screen::shown_name;

/// The simplified API's body field naming the person a call is made for (read by
/// `identity::context`, not a Graph parameter).
pub const INITIATOR_FIELD: &str = "initiator";
/// The simplified API's body field saying why.
pub const REASON_FIELD: &str = "reason";
/// Longest reason, in characters (what Intune's Multi Admin Approval justification takes).
pub const MAX_REASON_CHARS: usize = 1024;

/// Why a flat body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimpleError {
    /// Not JSON, or not an object.
    #[error(transparent)]
    Syntax(#[from] SchemaError),
    /// Fields this operation does not have.
    #[error("unknown field(s): {}", .0.join(", "))]
    Unknown(Vec<String>),
    /// Required fields missing or null.
    #[error("missing required field(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    /// A field of the wrong JSON type.
    #[error("field '{0}' must be {1}")]
    WrongType(&'static str, &'static str),
    /// A variant value that is not offered.
    #[error("field '{field}' must be one of: {allowed}")]
    BadVariant {
        /// The variant field.
        field: &'static str,
        /// The allowed values.
        allowed: String,
    },
    /// A field that belongs to another variant.
    #[error("field '{field}' needs {variant} '{value}'")]
    WrongVariant {
        /// The field.
        field: &'static str,
        /// The variant field's name.
        variant: &'static str,
        /// The value it needs.
        value: &'static str,
    },
}

/// Builds the Graph request body for `op` from a flat simplified-API body.
pub fn to_graph_body(op: &Operation, api: &SimpleApi, flat: &Value) -> Result<Value, SimpleError> {
    let Value::Object(members) = flat else {
        return Err(SimpleError::Syntax(SchemaError::WrongType {
            path: "(body)".into(),
            expected: "a JSON object",
        }));
    };
    // Unknown names are shown only if they look like names (a key is caller text).
    let mut unknown: Vec<String> = members
        .keys()
        .filter(|k| {
            !api.fields.iter().any(|f| f.name == *k)
                && api.variant.as_ref().is_none_or(|v| v.name != *k)
        })
        .map(|k| shown_name(k))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(SimpleError::Unknown(unknown));
    }
    let mut required: Vec<&str> = api
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut params = Map::new();
    let chosen = match api.variant.as_ref().map(|v| (v, members.get(v.name))) {
        Some((v, Some(Value::String(value)))) => {
            let (name, ty, needs) =
                v.values.iter().find(|(n, ..)| n == value).ok_or_else(|| {
                    SimpleError::BadVariant {
                        field: v.name,
                        allowed: v
                            .values
                            .iter()
                            .map(|(n, ..)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
            set(
                &mut params,
                &format!("{}.@odata.type", v.object),
                Value::String((*ty).to_owned()),
            );
            required.extend_from_slice(needs);
            Some(*name)
        }
        Some((v, Some(other))) if !other.is_null() => {
            return Err(SimpleError::WrongType(v.name, "a string"));
        }
        _ => None,
    };
    for f in api.fields {
        let Some(value) = members.get(f.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let ok = if f.boolean {
            value.is_boolean()
        } else {
            value.is_string()
        };
        if !ok {
            return Err(SimpleError::WrongType(
                f.name,
                if f.boolean { "a boolean" } else { "a string" },
            ));
        }
        if let (Some(needs), Some(variant)) = (f.only_with, api.variant.as_ref())
            && chosen != Some(needs)
        {
            return Err(SimpleError::WrongVariant {
                field: f.name,
                variant: variant.name,
                value: needs,
            });
        }
        set(&mut params, f.target, value.clone());
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|name| members.get(**name).is_none_or(Value::is_null))
        .map(|n| (*n).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(SimpleError::Missing(missing));
    }
    Ok(match op.wrapper {
        Some(w) => json!({ w: Value::Object(params) }),
        None => Value::Object(params),
    })
}

/// A refusal of the Graph body built from a flat one, naming the flat field the caller sent
/// (`userPrincipalName`) rather than its Graph path (`deviceAccount.userPrincipalName`).
pub fn in_flat_terms(api: &SimpleApi, err: SchemaError) -> SchemaError {
    let flat = |path: String| {
        api.fields
            .iter()
            .find(|f| f.target == path)
            .map_or(path, |f| f.name.to_owned())
    };
    match err {
        SchemaError::ControlCharacter(path) => SchemaError::ControlCharacter(flat(path)),
        SchemaError::NotAnAddress(path) => SchemaError::NotAnAddress(flat(path)),
        other => other,
    }
}

/// Sets `value` at dotted `path` inside `root`, creating objects on the way.
fn set(root: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        // `@odata.type` is one member name, though it contains a dot.
        Some((head, rest)) if head != "@odata" => {
            let child = root
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = child {
                set(map, rest, value);
            }
        }
        _ => {
            root.insert(path.to_owned(), value);
        }
    }
}

/// The OpenAPI 3 document of the simplified API, from the catalog.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for op in CATALOG {
        let Some(api) = op.simple else { continue };
        paths.insert(
            format!("/api/v1/managedDevices/{{managedDeviceId}}/{}", op.action),
            path_item(op, api),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "graphgate simplified internal API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Flat requests for privileged Intune actions. graphgate authenticates the caller, applies its policy and forwards the equivalent Microsoft Graph request."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "The caller's API key, or a token from an issuer the policy trusts." } },
            "schemas": { "GraphError": graph_error_schema() }
        },
        "security": [{ "apiKey": [] }]
    })
}

fn path_item(op: &Operation, api: &SimpleApi) -> Value {
    let mut properties = Map::new();
    for f in api.fields {
        properties.insert(f.name.to_owned(), json!({ "type": if f.boolean { "boolean" } else { "string" }, "description": f.description }));
    }
    if let Some(v) = &api.variant {
        let values: Vec<&str> = v.values.iter().map(|(n, ..)| *n).collect();
        properties.insert(
            v.name.to_owned(),
            json!({ "type": "string", "enum": values, "description": v.description }),
        );
    }
    // The person and the reason (read by `identity::context`), on every operation.
    properties.insert(
        INITIATOR_FIELD.to_owned(),
        json!({ "type": "string", "description": "The person the call is made for: a user principal name or an object id (like X-Graphgate-Initiator)." }),
    );
    properties.insert(
        REASON_FIELD.to_owned(),
        json!({ "type": "string", "maxLength": MAX_REASON_CHARS, "description": "Why, e.g. a ticket reference (like X-Graphgate-Reason); no control characters." }),
    );
    let required: Vec<&str> = api
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let error = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GraphError" } } } });
    json!({
        "post": {
            "operationId": op.name,
            "summary": format!("Run Graph's {} on a managed device", op.action),
            "parameters": [{ "name": "managedDeviceId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "additionalProperties": false, "properties": properties, "required": required
            } } } },
            "responses": {
                op.success_status.to_string(): { "description": "Graph ran the action." },
                "400": error("Malformed id, unknown or missing fields."),
                "401": error("Missing or unknown API key, or a refused token."),
                "403": error("The policy does not allow this request."),
                "404": error("Graph does not know the device."),
                "413": error("Body too large."),
                "415": error("Not application/json."),
                "429": error("Rate limited; see Retry-After."),
                "503": error("No token could be obtained from Entra.")
            }
        }
    })
}

fn graph_error_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "error": { "type": "object", "properties": {
            "code": { "type": "string" }, "message": { "type": "string" },
            "innerError": { "type": "object", "properties": {
                "date": { "type": "string" }, "request-id": { "type": "string" }, "client-request-id": { "type": "string" }
            } }
        } } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog;

    fn translate(flat: Value) -> Result<Value, SimpleError> {
        let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
        to_graph_body(op, op.simple.unwrap(), &flat)
    }

    #[test]
    fn builds_the_exact_graph_body() {
        let body = translate(json!({
            "deviceAccountEmail": "room1@contoso.com", "password": "p", "passwordRotationEnabled": true,
            "calendarSyncEnabled": false, "exchangeServer": "outlook.office365.com",
            "sessionInitiationProtocolAddress": "sip:room1@contoso.com",
            "accountType": "azureAD", "userPrincipalName": "room1@contoso.com"
        }))
        .unwrap();
        assert_eq!(
            body,
            json!({"updateWindowsDeviceAccountActionParameter": {
                "deviceAccountEmail": "room1@contoso.com", "passwordRotationEnabled": true, "calendarSyncEnabled": false,
                "exchangeServer": "outlook.office365.com", "sessionInitiationProtocalAddress": "sip:room1@contoso.com",
                "deviceAccount": {"@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount", "password": "p", "userPrincipalName": "room1@contoso.com"}
            }})
        );
        let ad = translate(json!({"deviceAccountEmail": "a@b.c", "password": "p", "accountType": "activeDirectory", "domainName": "corp", "userName": "room"})).unwrap();
        assert_eq!(
            ad["updateWindowsDeviceAccountActionParameter"]["deviceAccount"]["@odata.type"],
            "#microsoft.graph.windowsDeviceADAccount"
        );
        let plain = translate(json!({"deviceAccountEmail": "a@b.c", "password": "p"})).unwrap();
        assert_eq!(
            plain,
            json!({"updateWindowsDeviceAccountActionParameter": {"deviceAccountEmail": "a@b.c", "deviceAccount": {"password": "p"}}})
        );
    }

    #[test]
    fn refusals_name_the_fields() {
        let e = translate(json!({"deviceAccountEmail": "a", "password": "p", "sessionInitiationProtocalAddress": "x", "colour": 1})).unwrap_err();
        assert_eq!(
            e,
            SimpleError::Unknown(vec![
                "colour".into(),
                "sessionInitiationProtocalAddress".into()
            ])
        );
        // A key that is not a name is not echoed (in the answer or the log).
        let e = translate(json!({"deviceAccountEmail": "a", "password": "p", "hunter2 Secret!": 1, "x\ny": 2, "colour": 3})).unwrap_err();
        assert_eq!(
            e,
            SimpleError::Unknown(vec![
                "(a name that is not a property name, not shown)".into(),
                "colour".into(),
            ])
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            translate(json!({"deviceAccountEmail": "a"})).unwrap_err(),
            SimpleError::Missing(vec!["password".into()])
        );
        assert_eq!(
            translate(
                json!({"deviceAccountEmail": "a", "password": "p", "accountType": "azureAD"})
            )
            .unwrap_err(),
            SimpleError::Missing(vec!["userPrincipalName".into()])
        );
        assert!(matches!(
            translate(json!({"deviceAccountEmail": "a", "password": "p", "accountType": "local"})),
            Err(SimpleError::BadVariant { .. })
        ));
        assert!(matches!(
            translate(json!({"deviceAccountEmail": "a", "password": "p", "userName": "u"})),
            Err(SimpleError::WrongVariant {
                field: "userName",
                ..
            })
        ));
        assert_eq!(
            translate(json!({"deviceAccountEmail": "a", "password": true})).unwrap_err(),
            SimpleError::WrongType("password", "a string")
        );
    }

    #[test]
    fn openapi_lists_every_simple_operation() {
        let doc = openapi();
        let post = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/updateWindowsDeviceAccount"]
            ["post"];
        assert_eq!(
            post["operationId"],
            "managedDevices.updateWindowsDeviceAccount"
        );
        let schema = &post["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["required"],
            json!(["deviceAccountEmail", "password"])
        );
        assert_eq!(
            schema["properties"]["accountType"]["enum"],
            json!(["azureAD", "activeDirectory"])
        );
        assert!(post["responses"]["204"].is_object());
        assert_eq!(schema["properties"]["reason"]["maxLength"], 1024);
        assert_eq!(schema["properties"]["initiator"]["type"], "string");
    }
}
