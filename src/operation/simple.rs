//! The simplified internal API (`POST /api/v1/managedDevices/{id}/{action}` with a flat
//! JSON body): translation into the exact Graph body, and its OpenAPI 3 document, both
//! generated from the operation catalog.

use serde_json::{Map, Value, json};

use crate::operation::catalog::{Binding, CATALOG, Invocation, Operation, SimpleApi};
use crate::operation::schema::screen::shown_name;
use crate::operation::schema::{SchemaError, Ty};

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

/// A flat body that is Graph's own (operations without a hand-made flat body), with the
/// `null` fields left out: on the simplified API `null` means "not given".
pub fn without_nulls(flat: &Value) -> Result<Value, SimpleError> {
    let Value::Object(members) = flat else {
        return Err(SimpleError::Syntax(SchemaError::WrongType {
            path: "(body)".into(),
            expected: "a JSON object",
        }));
    };
    Ok(Value::Object(
        members
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
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

/// The OpenAPI 3 document of the simplified API, from the catalog: every operation, its
/// flat body (with which fields go with which account type), its risk tier, and every answer
/// the gateway may give.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for op in CATALOG {
        let (path, params) = simple_path(op);
        let item = paths
            .entry(path)
            .or_insert_with(|| json!({ "parameters": params }));
        if let Value::Object(item) = item {
            item.insert(
                op.invocation.method_name().to_ascii_lowercase(),
                operation_doc(op),
            );
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "graphgate simplified internal API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Flat requests for privileged Intune operations. graphgate authenticates the caller, applies its policy and forwards the equivalent Microsoft Graph request (v1.0 where the operation exists there, else beta). A field sent as null counts as not given."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "The caller's API key." } },
            "schemas": { "GraphError": graph_error_schema() }
        },
        "security": [{ "apiKey": [] }]
    })
}

/// An operation's simplified path and its path parameters.
fn simple_path(op: &Operation) -> (String, Value) {
    let id = |name: &str, format: Option<&str>| {
        let mut schema = json!({ "type": "string" });
        if let Some(f) = format {
            schema["format"] = json!(f);
        }
        json!({ "name": name, "in": "path", "required": true, "schema": schema })
    };
    match (op.binding, op.invocation) {
        (Binding::User, _) => (
            format!("/api/v1/users/{{userId}}/{}", op.action),
            json!([id("userId", None)]),
        ),
        (Binding::Devices, _) => (format!("/api/v1/managedDevices/{}", op.action), json!([])),
        (_, Invocation::Delete) => (
            "/api/v1/managedDevices/{managedDeviceId}".to_owned(),
            json!([id("managedDeviceId", Some("uuid"))]),
        ),
        _ => (
            format!("/api/v1/managedDevices/{{managedDeviceId}}/{}", op.action),
            json!([id("managedDeviceId", Some("uuid"))]),
        ),
    }
}

fn operation_doc(op: &Operation) -> Value {
    let error = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/GraphError" } } } });
    let success = match (op.success_status, op.discloses_secret()) {
        (200, true) => {
            json!({ "description": "Graph's answer, carrying the secret; sent with Cache-Control: no-store.", "content": { "application/json": { "schema": { "type": "object" } } } })
        }
        (200, false) => {
            json!({ "description": "Graph's answer.", "content": { "application/json": { "schema": { "type": "object" } } } })
        }
        _ => {
            json!({ "description": "Graph accepted the operation (queued: see the device's deviceActionResults)." })
        }
    };
    let mut doc = json!({
        "operationId": op.name,
        "summary": format!("Run Graph's {} ({} tier)", op.action, op.tier.as_str()),
        "x-graphgate-tier": op.tier.as_str(),
        "x-graphgate-permission": op.permission,
        "responses": {
            op.success_status.to_string(): success,
            "400": error("Malformed id, unknown, missing or mistyped fields, a null or control character where refused, a bad device list."),
            "401": error("Missing or unknown API key."),
            "403": error("The policy does not allow this request."),
            "404": error("No such operation, or Graph does not know the device."),
            "405": error("The operation takes another method (see Allow)."),
            "408": error("The body did not arrive in time."),
            "413": error("Body too large."),
            "414": error("Path too long."),
            "415": error("Not application/json."),
            "422": error("An Idempotency-Key reused for a different request."),
            "429": error("Rate limited; see Retry-After."),
            "500": error("Graph's own internal error, passed through."),
            "502": error("Graph unreachable, or the outcome is unknown: check the device."),
            "503": error("Overloaded, audit unavailable or no token from Entra; see Retry-After."),
            "504": error("Graph did not answer in time: the outcome is unknown.")
        }
    });
    if op.takes_body() {
        let required = op.wrapper.is_some() || op.params.iter().any(|p| p.required);
        doc["requestBody"] = json!({ "required": required, "content": { "application/json": { "schema": body_schema(op) } } });
    }
    doc
}

/// The flat body's schema: a hand-made one's fields, or the Graph parameters themselves.
fn body_schema(op: &Operation) -> Value {
    if let Some(api) = op.simple {
        return simple_schema(api);
    }
    let params = op.all_params();
    let mut properties = Map::new();
    for p in params {
        properties.insert(p.name.to_owned(), ty_schema(&p.ty));
    }
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    let mut schema =
        json!({ "type": "object", "additionalProperties": false, "properties": properties });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn ty_schema(ty: &Ty) -> Value {
    let mut schema = match ty {
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::String => json!({ "type": "string" }),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::StringList => {
            json!({ "type": "array", "items": { "type": "string", "format": "uuid" }, "minItems": 1, "uniqueItems": true })
        }
        Ty::Complex(c) => {
            let props: Map<String, Value> = c
                .props
                .iter()
                .map(|p| (p.name.to_owned(), ty_schema(&p.ty)))
                .collect();
            let required: Vec<&str> = c
                .props
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            let mut object =
                json!({ "type": "object", "additionalProperties": false, "properties": props });
            if !required.is_empty() {
                object["required"] = json!(required);
            }
            object
        }
    };
    schema["nullable"] = json!(true);
    schema
}

/// A hand-made flat body: its fields, and which go with which variant (`accountType`).
fn simple_schema(api: &SimpleApi) -> Value {
    let mut properties = Map::new();
    for f in api.fields {
        let mut field = json!({ "type": if f.boolean { "boolean" } else { "string" }, "description": f.description, "nullable": true });
        if let (Some(needs), Some(v)) = (f.only_with, &api.variant) {
            field["description"] =
                json!(format!("{} Only with {} '{needs}'.", f.description, v.name));
        }
        properties.insert(f.name.to_owned(), field);
    }
    if let Some(v) = &api.variant {
        let values: Vec<&str> = v.values.iter().map(|(n, ..)| *n).collect();
        let needs: Vec<String> = v
            .values
            .iter()
            .map(|(n, _, req)| format!("{n} requires {}", req.join(" and ")))
            .collect();
        properties.insert(
            v.name.to_owned(),
            json!({ "type": "string", "enum": values, "nullable": true, "description": format!("{} {}.", v.description, needs.join("; ")) }),
        );
    }
    let required: Vec<&str> = api
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required })
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
    }

    #[test]
    fn openapi_documents_every_operation_and_every_answer() {
        let doc = openapi();
        let mut documented = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                documented += 1;
                for status in [
                    "400", "401", "403", "404", "405", "408", "413", "414", "415", "422", "429",
                    "500", "502", "503", "504",
                ] {
                    assert!(op["responses"][status].is_object(), "{method} {status}");
                }
                assert!(op["x-graphgate-tier"].is_string());
            }
        }
        assert_eq!(documented, CATALOG.len());
        let wipe = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/wipe"]["post"];
        let props = &wipe["requestBody"]["content"]["application/json"]["schema"]["properties"];
        assert_eq!(
            props["keepUserData"],
            json!({"type": "boolean", "nullable": true})
        );
        assert!(props["obliterationBehavior"]["enum"].is_array());
        let read = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/getFileVaultKey"]["get"];
        assert!(read["requestBody"].is_null());
        assert!(doc["paths"]["/api/v1/managedDevices/{managedDeviceId}"]["delete"].is_object());
        assert!(
            doc["paths"]["/api/v1/users/{userId}/removeAllDevicesFromManagement"]["post"]
                .is_object()
        );
        assert!(doc["paths"]["/api/v1/managedDevices/executeAction"]["post"].is_object());
    }
}
