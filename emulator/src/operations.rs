//! What the emulated Graph does with a request it has read (`paths`) and found in the CSDL
//! (`csdl`): resolves it to a call (a device read, a device delete, or a bound operation,
//! with the method Graph takes for it), then, once the caller is authorised, checks the body
//! against the CSDL and carries it out: an action on a device, a secret-returning function,
//! the bulk `executeAction`, or a user's `removeAllDevicesFromManagement`.

use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::csdl::{Binding, Csdl, Kind, Operation};
use super::device_read::{self, READ_ROLES};
use super::graph_reply::{GraphError, Success, intune_message, intune_message_with_phrase};
use super::paths::{GraphPath, Target};
use super::permissions::accepted_roles;
use super::state::{NotApplied, State};
use super::wire::Request;
use crate::microsoft::Cloud;

/// What a request asks Graph to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    /// `GET .../managedDevices/{id}`.
    ReadDevice,
    /// `DELETE .../managedDevices/{id}`.
    DeleteDevice,
    /// A bound action or function.
    Operation(&'static Operation),
}

impl Call {
    /// The name Multi Admin Approval knows a write by (`delete` for a device's DELETE);
    /// `None` for reads, which it never holds.
    pub(crate) fn held_name(self) -> Option<&'static str> {
        match self {
            Call::ReadDevice => None,
            Call::DeleteDevice => Some("delete"),
            Call::Operation(op) if op.kind == Kind::Action => Some(op.name.as_str()),
            Call::Operation(_) => None,
        }
    }

    /// The roles any one of which lets an app make this call.
    pub(crate) fn roles(self) -> &'static [&'static str] {
        match self {
            Call::ReadDevice => &READ_ROLES,
            Call::DeleteDevice => accepted_roles("delete"),
            Call::Operation(op) => accepted_roles(&op.name),
        }
    }
}

fn bad_request(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn method_not_allowed(allow: &'static str, what: &str) -> GraphError {
    let mut e = GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest",
        format!("The {what} can only be invoked with the HTTP method {allow}."),
    );
    e.allow = Some(allow);
    e
}

/// The call a path and method make, as Graph routes them (before any token check).
pub(crate) fn resolve(
    csdl: &'static Csdl,
    path: &GraphPath,
    method: &Method,
) -> Result<Call, GraphError> {
    let Some(name) = &path.operation else {
        return match (&path.target, method) {
            (Target::Device(_), &Method::GET) => Ok(Call::ReadDevice),
            (Target::Device(_), &Method::DELETE) => Ok(Call::DeleteDevice),
            (Target::Device(_), _) => Err(method_not_allowed("GET, DELETE", "resource")),
            (_, _) => Err(bad_request("The emulator models no other resource here.")),
        };
    };
    let unknown = || bad_request(format!("Resource not found for the segment '{name}'."));
    let op = csdl
        .operations
        .values()
        .find(|op| op.name.eq_ignore_ascii_case(name))
        .ok_or_else(unknown)?;
    let bound = matches!(
        (op.binding, &path.target),
        (Binding::Device, Target::Device(_))
            | (Binding::DeviceCollection, Target::Devices)
            | (Binding::User, Target::User(_))
    );
    if !bound {
        return Err(unknown());
    }
    match op.kind {
        Kind::Action if method != Method::POST => Err(method_not_allowed("POST", "action")),
        Kind::Action if path.call_syntax => Err(bad_request(format!(
            "The action '{}' is not a function: call it without '()'.",
            op.name
        ))),
        Kind::Function if method != Method::GET => Err(method_not_allowed("GET", "function")),
        _ => Ok(Call::Operation(op)),
    }
}

/// Carries out an authorised call.
pub(crate) fn run(
    state: &State,
    cloud: Cloud,
    req: &Request,
    csdl: &'static Csdl,
    path: &GraphPath,
    call: Call,
) -> Result<Success, GraphError> {
    let device = match &path.target {
        Target::Device(id) => Some(id.as_str()),
        _ => None,
    };
    if let (Call::ReadDevice, Some(id)) = (call, device) {
        return device_read::answer(state, cloud, req, path.version, id);
    }
    if let Some(query) = req.uri.query() {
        let shown: String = query
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        return Err(bad_request(format!(
            "The query '{shown}' is not supported on this request."
        )));
    }
    let url = format!("https://{}{}", cloud.endpoints().graph_host, req.uri.path());
    let refused = |r: NotApplied, what: &str| refusal(r, what, &url);
    match (call, device) {
        (Call::DeleteDevice, Some(id)) => {
            no_body(req)?;
            state.delete_device(id).map_err(|r| refused(r, "delete"))?;
            Ok(Success::Empty(StatusCode::NO_CONTENT))
        }
        (Call::Operation(op), _) if op.kind == Kind::Function => {
            no_body(req)?;
            let id = device.ok_or_else(|| bad_request("A function needs a device."))?;
            let secrets = state
                .read_secrets(id, &op.name)
                .map_err(|r| refused(r, &op.name))?;
            secret_answer(cloud, path, op, &secrets)
        }
        (Call::Operation(op), _) => {
            let body = body_json(req)?;
            csdl.check_body(op, &body).map_err(|v| bad_request(v.0))?;
            act(state, cloud, path, op, &body, &url)
        }
        _ => Err(bad_request("The emulator models no such request.")),
    }
}

/// An action whose body fits the CSDL, carried out on what the path addresses.
fn act(
    state: &State,
    cloud: Cloud,
    path: &GraphPath,
    op: &Operation,
    body: &Value,
    url: &str,
) -> Result<Success, GraphError> {
    match &path.target {
        Target::Device(id) => {
            state
                .update_device(id, &op.name, body)
                .map_err(|r| refusal(r, &op.name, url))?;
            Ok(match op.returns.as_deref() {
                Some(ty) => Success::Json(StatusCode::OK, returned(cloud, path, ty, id)),
                None => Success::Empty(StatusCode::NO_CONTENT),
            })
        }
        Target::Devices => {
            let action = body["actionName"].as_str().unwrap_or_default();
            let ids: Vec<String> = body["deviceIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let out = state.bulk(action, &ids, body);
            let value = json!({
                "@odata.type": "microsoft.graph.bulkManagedDeviceActionResult",
                "successfulDeviceIds": out.successful,
                "failedDeviceIds": out.failed,
                "notFoundDeviceIds": out.not_found,
                "notSupportedDeviceIds": out.not_supported,
            });
            Ok(Success::Json(
                StatusCode::OK,
                wrapped(
                    cloud,
                    path,
                    "microsoft.graph.bulkManagedDeviceActionResult",
                    value,
                ),
            ))
        }
        Target::User(_) => Ok(Success::Empty(StatusCode::NO_CONTENT)),
    }
}

/// Graph's answer carrying an operation's return value: `{"@odata.context", "value"}`.
fn wrapped(cloud: Cloud, path: &GraphPath, context: &str, value: Value) -> Value {
    json!({
        "@odata.context": format!(
            "https://{}/{}/$metadata#{context}",
            cloud.endpoints().graph_host,
            path.version.as_str()
        ),
        "value": value,
    })
}

/// The value an action with a return type answers (createDeviceLogCollectionRequest).
fn returned(cloud: Cloud, path: &GraphPath, ty: &str, device: &str) -> Value {
    let name = ty.strip_prefix("graph.").unwrap_or(ty);
    let value = json!({
        "@odata.type": format!("microsoft.graph.{name}"),
        "id": uuid::Uuid::new_v4().to_string(),
        "status": "pending",
        "managedDeviceId": device,
        "sizeInKB": 0,
    });
    wrapped(cloud, path, &format!("microsoft.graph.{name}"), value)
}

/// What a secret-returning function answers: the secret itself, as Graph sends it.
fn secret_answer(
    cloud: Cloud,
    path: &GraphPath,
    op: &Operation,
    secrets: &super::devices::DeviceSecrets,
) -> Result<Success, GraphError> {
    let value = match op.name.as_str() {
        "getFileVaultKey" => Value::String(secrets.file_vault_key.expose().to_owned()),
        "retrieveRecoveryLockPasscode" => {
            Value::String(secrets.recovery_lock_passcode.expose().to_owned())
        }
        "retrieveDeviceLocalAdminAccountDetail" => json!({
            "@odata.type": "microsoft.graph.deviceLocalAdminAccountDetail",
            "userName": "LocalAdmin",
            "userSid": "S-1-5-21-1111111111-2222222222-3333333333-500",
            "passwordBase64": base64::engine::general_purpose::STANDARD
                .encode(secrets.local_admin_password.expose()),
        }),
        other => {
            return Err(bad_request(format!(
                "The emulator does not model '{other}'."
            )));
        }
    };
    let context = match op.returns.as_deref() {
        Some("Edm.String") | None => "Edm.String".to_owned(),
        Some(ty) => format!(
            "microsoft.graph.{}",
            ty.strip_prefix("graph.").unwrap_or(ty)
        ),
    };
    Ok(Success::Json(
        StatusCode::OK,
        wrapped(cloud, path, &context, value),
    ))
}

/// A device refused the call: unknown (404) or on a platform without it (400, as Intune
/// answers remoteLock on a Windows PC, docs-contrib#4523).
fn refusal(refusal: NotApplied, what: &str, url: &str) -> GraphError {
    let activity = uuid::Uuid::new_v4().to_string();
    match refusal {
        NotApplied::UnknownDevice => GraphError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            intune_message(&activity, url),
        ),
        NotApplied::NotSupported(os) => {
            let phrase = format!("{what} is not supported on {os} devices.");
            bad_request(intune_message_with_phrase(&activity, url, &phrase))
        }
    }
}

fn no_body(req: &Request) -> Result<(), GraphError> {
    if req.body.is_empty() {
        return Ok(());
    }
    Err(bad_request(format!(
        "A request body is not allowed with {}.",
        req.method
    )))
}

/// The JSON body (an empty body is `{}`, as Graph takes a parameterless action without one).
fn body_json(req: &Request) -> Result<Value, GraphError> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    if !req.content_type_is("application/json") {
        let given = req.header(http::header::CONTENT_TYPE).unwrap_or("(none)");
        return Err(GraphError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "The content type '{}' is not supported. Use 'application/json'.",
                given.escape_debug()
            ),
        ));
    }
    super::strict_json::parse(&req.body)
        .map_err(|e| bad_request(format!("The request body is not valid JSON: {e}")))
}
