//! The simplified internal API (`POST /api/v1/managedDevices/{id}/{action}` with a flat
//! JSON body): translation into the exact Graph body, and its OpenAPI 3 document, both
//! generated from the operation catalog.

use serde_json::{Map, Value, json};

use crate::operation::catalog::{
    ApiVersion, BULK_ACTIONS, Binding, CATALOG, Invocation, Operation, SimpleApi, SimpleField,
};
use crate::operation::schema::screen::shown_name;
use crate::operation::schema::{self, Prop, SchemaError, Ty};

/// The simplified API's body field naming the person a call is made for (read by
/// `identity::stated`, not a Graph parameter).
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
    #[error("unknown {}: {}", crate::words::noun(.0.len(), "field"), .0.join(", "))]
    Unknown(Vec<String>),
    /// Required fields missing or null.
    #[error("missing required {}: {}", crate::words::noun(.0.len(), "field"), .0.join(", "))]
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
/// `max_bulk_devices` is the gateway's cap on a bulk request's `deviceIds`.
pub fn openapi(max_bulk_devices: usize) -> Value {
    let mut paths = Map::new();
    for op in CATALOG {
        let (path, params) = simple_path(op);
        let item = paths
            .entry(path)
            .or_insert_with(|| json!({ "parameters": params }));
        if let Value::Object(item) = item {
            item.insert(
                op.invocation.method_name().to_ascii_lowercase(),
                operation_doc(op, max_bulk_devices),
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
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer", "description": "The caller's API key, or a token from an issuer the policy trusts." } },
            "schemas": { "GraphError": graph_error_schema() }
        },
        "security": [{ "apiKey": [] }]
    })
}

/// An operation's simplified path and its path parameters.
pub fn simple_path(op: &Operation) -> (String, Value) {
    let id = |name: &str, format: Option<&str>| {
        let mut schema = json!({ "type": "string" });
        if let Some(f) = format {
            schema["format"] = json!(f);
        }
        json!({ "name": name, "in": "path", "required": true, "schema": schema })
    };
    match (op.binding, op.invocation) {
        (Binding::User, _) => {
            let mut user = id("userId", None);
            user["schema"]["pattern"] = json!(USER_ID_PATTERN);
            user["schema"]["maxLength"] = json!(256);
            user["description"] = json!("The user's object id (a GUID) or user principal name.");
            (
                format!("/api/v1/users/{{userId}}/{}", op.action),
                json!([user]),
            )
        }
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

fn operation_doc(op: &Operation, max_bulk_devices: usize) -> Value {
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
            "401": error("Missing or unknown API key, or a refused token."),
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
        let schema = match op.binding {
            Binding::Devices => bulk_schema(op, max_bulk_devices),
            _ => body_schema(op),
        };
        let schema = with_stated(schema);
        doc["requestBody"] = json!({ "required": required, "content": { "application/json": { "schema": schema } } });
    }
    doc
}

/// `schema` (an object, or a `oneOf` of objects) with the person and the reason every
/// simplified body may state (read by `identity::stated`, like the X-Graphgate-Initiator
/// and X-Graphgate-Reason headers): optional, null counting as not given.
fn with_stated(mut schema: Value) -> Value {
    if let Some(shapes) = schema.get_mut("oneOf").and_then(Value::as_array_mut) {
        for shape in shapes {
            *shape = with_stated(std::mem::take(shape));
        }
    } else if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        let guid = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";
        properties.insert(
            INITIATOR_FIELD.to_owned(),
            json!({ "type": "string", "nullable": true, "anyOf": [{ "pattern": guid }, address_schema()], "description": "The person the call is made for: a user principal name or an object id (like X-Graphgate-Initiator)." }),
        );
        properties.insert(
            REASON_FIELD.to_owned(),
            json!({ "type": "string", "nullable": true, "minLength": 1, "maxLength": MAX_REASON_CHARS, "allOf": [{ "pattern": PLAIN_TEXT_PATTERN }, { "pattern": "\\S" }], "description": "Why, e.g. a ticket reference (like X-Graphgate-Reason); not blank, no control characters." }),
        );
    }
    schema
}

/// What the route accepts as a user id: a GUID, or a user principal name.
const USER_ID_PATTERN: &str = "^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[A-Za-z0-9._+'-]+@[A-Za-z0-9-][A-Za-z0-9.-]*[.][A-Za-z0-9.-]*[A-Za-z0-9-])$";

/// The flat body's schema: a hand-made one's fields, or the Graph parameters themselves.
fn body_schema(op: &Operation) -> Value {
    match op.simple {
        Some(api) => simple_schema(op, api),
        // The simplified API calls v1.0 where the operation exists there, else beta.
        None => {
            let version = match op.versions.contains(&ApiVersion::V1) {
                true => ApiVersion::V1,
                false => ApiVersion::Beta,
            };
            object_schema(op.params_for(version).iter(), Map::new())
        }
    }
}

/// An object of exactly `params` (with `extra` properties), required ones required and not
/// nullable.
fn object_schema<'a>(params: impl Iterator<Item = &'a Prop>, extra: Map<String, Value>) -> Value {
    let mut required: Vec<String> = extra.keys().cloned().collect();
    let mut properties = extra;
    for p in params {
        properties.insert(p.name.to_owned(), top_level_schema(p));
        if p.required {
            required.push(p.name.to_owned());
        }
    }
    let mut schema =
        json!({ "type": "object", "additionalProperties": false, "properties": properties });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// A bulk `executeAction` body: one shape per `actionName` graphgate offers, each with the
/// parameters that action's operation takes in bulk (those `executeAction` also has).
fn bulk_schema(op: &Operation, max_devices: usize) -> Value {
    let shapes: Vec<Value> = BULK_ACTIONS
        .iter()
        .filter_map(|bulk| {
            let single = bulk.op()?;
            let params = single.params_for(ApiVersion::Beta).iter().filter(|p| {
                op.params.iter().any(|b| b.name == p.name)
                    && bulk.implied.is_none_or(|(implied, _)| implied != p.name)
            });
            let mut fixed = Map::new();
            fixed.insert(
                "actionName".to_owned(),
                json!({ "type": "string", "enum": [bulk.action_name] }),
            );
            fixed.insert(
                "deviceIds".to_owned(),
                json!({ "type": "array", "items": { "type": "string", "format": "uuid" }, "minItems": 1, "maxItems": max_devices, "uniqueItems": true }),
            );
            let mut shape = object_schema(params, fixed);
            shape["description"] = json!(format!(
                "Runs {} on every device; the policy is asked about each.",
                single.name
            ));
            Some(shape)
        })
        .collect();
    json!({ "oneOf": shapes })
}

/// What the gateway accepts in a string parameter: no control, line-separator or
/// bidirectional-formatting character (`schema::screen::forbidden_char`; see
/// `the_documents_patterns_accept_what_the_gateway_accepts`).
const PLAIN_TEXT_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]*$";
/// One email address as the gateway accepts it (`schema::screen::is_address`; the test
/// `the_documents_patterns_accept_what_the_gateway_accepts` holds them together).
const ADDRESS_PATTERN: &str = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:[.][A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:[.][A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

/// At most 64 characters before the `@` (RFC 5321's local-part limit, which the gateway
/// keeps); a second pattern, as a regular expression cannot count the dot-atoms' length.
const LOCAL_PART_LIMIT_PATTERN: &str = "^[^@]{1,64}@";

/// One email address, exactly as `schema::screen::is_address` accepts it (see
/// `the_documents_patterns_accept_what_the_gateway_accepts`).
fn address_schema() -> Value {
    json!({ "type": "string", "pattern": ADDRESS_PATTERN, "maxLength": 254, "allOf": [{ "pattern": LOCAL_PART_LIMIT_PATTERN }] })
}

/// A string parameter's schema: plain text, or one email address.
fn string_schema(address: bool) -> Value {
    match address {
        true => address_schema(),
        false => json!({ "type": "string", "pattern": PLAIN_TEXT_PATTERN }),
    }
}

/// A body member's schema: null counts as not given there (the gateway leaves it out), so
/// an optional member is nullable; inside an object a null is refused.
fn top_level_schema(prop: &Prop) -> Value {
    let mut schema = ty_schema(prop);
    if !prop.required {
        schema["nullable"] = json!(true);
    }
    schema
}

fn ty_schema(prop: &Prop) -> Value {
    match &prop.ty {
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::String => string_schema(prop.address),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::StringList => {
            json!({ "type": "array", "items": { "type": "string", "format": "uuid" }, "minItems": 1, "uniqueItems": true })
        }
        Ty::Complex(c) => {
            let props: Map<String, Value> = c
                .props
                .iter()
                .map(|p| (p.name.to_owned(), ty_schema(p)))
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
    }
}

/// A hand-made flat body: its fields, and which go with which variant (`accountType`).
fn simple_schema(op: &Operation, api: &SimpleApi) -> Value {
    let paths = schema::param_paths(op.all_params(), op.wrapper);
    let field_schema = |f: &SimpleField, nullable: bool| {
        let address = paths.iter().any(|p| p.path == f.target && p.address);
        let mut field = match f.boolean {
            true => json!({ "type": "boolean" }),
            false => string_schema(address),
        };
        field["description"] = json!(f.description);
        if nullable {
            field["nullable"] = json!(true);
        }
        field
    };
    let mut common = Map::new();
    let mut required: Vec<&str> = Vec::new();
    for f in api.fields.iter().filter(|f| f.only_with.is_none()) {
        common.insert(f.name.to_owned(), field_schema(f, !f.required));
        if f.required {
            required.push(f.name);
        }
    }
    let object = |properties: Map<String, Value>, required: &[&str]| json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required });
    let Some(v) = &api.variant else {
        return object(common, &required);
    };
    // One shape per variant, and one without: a variant's fields only with it (null counts
    // as not given), and the fields it needs required.
    let absent = json!({ "nullable": true, "enum": [null] });
    let only_with: Vec<&SimpleField> = api
        .fields
        .iter()
        .filter(|f| f.only_with.is_some())
        .collect();
    let mut plain = common.clone();
    plain.insert(v.name.to_owned(), absent.clone());
    for f in &only_with {
        plain.insert(f.name.to_owned(), absent.clone());
    }
    let mut shapes = vec![object(plain, &required)];
    for (value, _, needs) in v.values {
        let mut props = common.clone();
        props.insert(
            v.name.to_owned(),
            json!({ "type": "string", "enum": [value], "description": v.description }),
        );
        for f in &only_with {
            let schema = match f.only_with == Some(*value) {
                true => field_schema(f, !needs.contains(&f.name)),
                false => absent.clone(),
            };
            props.insert(f.name.to_owned(), schema);
        }
        let mut needed = required.clone();
        needed.push(v.name);
        needed.extend_from_slice(needs);
        shapes.push(object(props, &needed));
    }
    json!({ "oneOf": shapes })
}

/// Graph's error JSON, as the gateway answers it and passes Graph's own on.
fn graph_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
            "code": { "type": "string", "minLength": 1 }, "message": { "type": "string", "minLength": 1 },
            "innerError": { "type": "object", "required": ["date", "request-id", "client-request-id"], "properties": {
                "date": { "type": "string" }, "request-id": { "type": "string" }, "client-request-id": { "type": "string" }
            } }
        } } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog;
    use crate::operation::schema::screen::{forbidden_char, is_address};

    /// The OpenAPI document's patterns accept exactly what the gateway's own checks accept,
    /// on addresses and text at and around every limit.
    #[test]
    fn the_documents_patterns_accept_what_the_gateway_accepts() {
        let address = regex::Regex::new(ADDRESS_PATTERN).unwrap();
        let local_limit = regex::Regex::new(LOCAL_PART_LIMIT_PATTERN).unwrap();
        let plain = regex::Regex::new(PLAIN_TEXT_PATTERN).unwrap();
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let addresses = [
            "room1@contoso.com".to_owned(),
            "first.last+tag@sub.contoso.co.uk".to_owned(),
            format!("{}@contoso.com", "l".repeat(64)),
            format!("{}@contoso.com", "l".repeat(65)),
            format!("a@{long_label}.com"),
            format!("a@{too_long_label}.com"),
            "a@-contoso.com".into(),
            "a@contoso-.com".into(),
            "a@contoso".into(),
            ".a@contoso.com".into(),
            "a..b@contoso.com".into(),
            "a@@contoso.com".into(),
            "a b@contoso.com".into(),
            "a@contoso.com ".into(),
            "@contoso.com".into(),
            "ä@contoso.com".into(),
        ];
        for a in &addresses {
            let documented = address.is_match(a) && local_limit.is_match(a) && a.len() <= 254;
            assert_eq!(documented, is_address(a), "{a:?}");
        }
        for c in [
            'a', ' ', '\t', '\n', '\u{7f}', '\u{85}', '\u{2028}', '\u{202e}', '\u{2066}', 'é',
        ] {
            let text = format!("x{c}y");
            assert_eq!(plain.is_match(&text), !forbidden_char(c), "{c:?}");
        }
    }

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
        let doc = openapi(100);
        let post = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/updateWindowsDeviceAccount"]
            ["post"];
        assert_eq!(
            post["operationId"],
            "managedDevices.updateWindowsDeviceAccount"
        );
        // One shape without an accountType, one per accountType with the fields it needs.
        let shapes = &post["requestBody"]["content"]["application/json"]["schema"]["oneOf"];
        assert_eq!(
            shapes[0]["required"],
            json!(["deviceAccountEmail", "password"])
        );
        assert_eq!(shapes[0]["properties"]["userName"]["enum"], json!([null]));
        assert_eq!(
            shapes[1]["properties"]["accountType"]["enum"],
            json!(["azureAD"])
        );
        assert_eq!(
            shapes[1]["required"],
            json!([
                "deviceAccountEmail",
                "password",
                "accountType",
                "userPrincipalName"
            ])
        );
        assert_eq!(shapes[1]["properties"]["domainName"]["enum"], json!([null]));
        assert_eq!(
            shapes[2]["properties"]["accountType"]["enum"],
            json!(["activeDirectory"])
        );
        assert_eq!(shapes[2]["properties"]["domainName"]["type"], "string");
        assert!(post["responses"]["204"].is_object());
        // Every shape takes the person and the reason the gateway reads from the body.
        for shape in shapes.as_array().unwrap() {
            assert_eq!(shape["properties"]["reason"]["maxLength"], 1024);
            assert_eq!(shape["properties"]["initiator"]["type"], "string");
            assert_eq!(shape["properties"]["initiator"]["nullable"], true);
        }
    }

    #[test]
    fn openapi_documents_every_operation_and_every_answer() {
        let doc = openapi(100);
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
        // The simplified API calls v1.0's wipe, which has no obliterationBehavior (beta's has).
        assert!(props["obliterationBehavior"].is_null());
        // A beta-only operation's parameters; inside an object a null is refused.
        let logs = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/createDeviceLogCollectionRequest"]
            ["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"];
        assert_eq!(logs["templateType"]["nullable"], true);
        assert!(logs["templateType"]["properties"]["templateType"]["enum"].is_array());
        assert!(logs["templateType"]["properties"]["id"]["nullable"].is_null());
        let read = &doc["paths"]["/api/v1/managedDevices/{managedDeviceId}/getFileVaultKey"]["get"];
        assert!(read["requestBody"].is_null());
        assert!(doc["paths"]["/api/v1/managedDevices/{managedDeviceId}"]["delete"].is_object());
        assert!(
            doc["paths"]["/api/v1/users/{userId}/removeAllDevicesFromManagement"]["post"]
                .is_object()
        );
        assert!(doc["paths"]["/api/v1/managedDevices/executeAction"]["post"].is_object());
    }

    /// What the document says is what the gateway accepts: a required field is not
    /// nullable (null counts as not given), a user id has the route's form, and a bulk body
    /// has one shape per offered actionName, with that operation's bulk parameters and the
    /// gateway's device cap.
    #[test]
    fn openapi_describes_exactly_what_is_accepted() {
        let doc = openapi(7);
        let body = |path: &str| {
            doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
                .clone()
        };
        let seed = body("/api/v1/managedDevices/{managedDeviceId}/updateWindowsDeviceAccount");
        let plain = &seed["oneOf"][0]["properties"];
        assert!(plain["password"]["nullable"].is_null());
        assert_eq!(plain["exchangeServer"]["nullable"], true);
        assert!(plain["deviceAccountEmail"]["pattern"].is_string());
        let user = &doc["paths"]["/api/v1/users/{userId}/removeAllDevicesFromManagement"]["parameters"]
            [0]["schema"];
        assert!(user["pattern"].as_str().unwrap().contains('@'));
        let bulk = body("/api/v1/managedDevices/executeAction");
        let shapes = bulk["oneOf"].as_array().unwrap();
        assert_eq!(shapes.len(), BULK_ACTIONS.len());
        let shape = |name: &str| {
            shapes
                .iter()
                .find(|s| s["properties"]["actionName"]["enum"] == json!([name]))
                .unwrap()
                .clone()
        };
        let wipe = shape("wipe");
        assert_eq!(wipe["properties"]["deviceIds"]["maxItems"], 7);
        assert_eq!(wipe["required"], json!(["actionName", "deviceIds"]));
        assert!(wipe["properties"]["keepUserData"].is_object());
        // executeAction has it, wipe does not take it; beta's wipe has it, executeAction not.
        assert!(wipe["properties"]["organizationalUnitPath"].is_null());
        assert!(wipe["properties"]["obliterationBehavior"].is_null());
        // quickScan's parameter is implied by the action name.
        assert!(shape("quickScan")["properties"]["quickScan"].is_null());
    }
}
