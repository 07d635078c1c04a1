//! The emulated Microsoft Graph: recognises an Intune device action, then checks token,
//! permission, content type, body, device and platform in Graph's order, applies it to the
//! device inventory and records the request. A device read (`device_read`) takes the same
//! token check. An armed fault (see `faults`) comes first.

use http::{Response, StatusCode};

use super::device_read;
use super::faults::{self, Fault, FaultKind, Target};
use super::graph_reply::{GraphError, Ids, Success, intune_message, intune_message_with_phrase};
use super::keys::TokenCheck;
use super::records::GraphRequestRecord;
use super::state::{Refusal, State};
use super::wire::{Body, Dropped, Outcome, Request, html_page};
use crate::cloud::Cloud;
use crate::operation::route::{self, Recognised};

/// Handles one request to `cloud`'s Graph host: an injected fault if one is armed, else
/// the real work. Either way the request is recorded (status 0 for a dropped connection).
pub(crate) async fn handle(state: &State, req: &Request, cloud: Cloud) -> Outcome {
    state.note_graph_received();
    let fault = state.take_fault(Target::Graph);
    faults::wait(fault.as_ref()).await;
    let ids = Ids::new(req.header("client-request-id"));
    let mut token_claims = None;
    let resp = match &fault {
        Some(f) if f.kind == FaultKind::Reset => None,
        Some(f) if f.kind == FaultKind::Status => {
            token_claims = bearer(req).and_then(|t| state.key.verify(t).ok());
            Some(fault_reply(&ids, f))
        }
        _ => Some(match process(state, req, cloud, &mut token_claims) {
            Ok(success) => ids.success(success),
            Err(err) => ids.error(&err),
        }),
    };
    let status = resp.as_ref().map_or(0, |r| r.status().as_u16());
    tracing::debug!(method = %req.method, host = %req.host, path = req.uri.path(), status, "emulator graph request");
    state.record_graph(GraphRequestRecord {
        method: req.method.to_string(),
        host: req.host.clone(),
        sni: req.sni.clone(),
        path: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path().to_owned(), |p| p.to_string()),
        headers: req.recorded_headers(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        token_claims,
        status,
    });
    resp.ok_or(Dropped)
}

/// A `status` fault's answer: Graph's error JSON (or a front door's HTML page), with
/// `Retry-After` when the fault has one.
fn fault_reply(ids: &Ids, fault: &Fault) -> Response<Body> {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let resp = if fault.html {
        html_page(status)
    } else {
        let (code, message) = match status.as_u16() {
            400 => ("BadRequest", "The request is invalid."),
            401 => (
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            ),
            403 => ("Forbidden", "Access is denied."),
            404 => ("ResourceNotFound", "The resource could not be found."),
            429 => ("TooManyRequests", "Too many requests."),
            500 => ("InternalServerError", "An internal server error occurred."),
            502 => ("BadGateway", "The gateway received an invalid response."),
            503 => (
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry later.",
            ),
            504 => ("GatewayTimeout", "The gateway timed out."),
            _ => ("UnknownError", "An error occurred."),
        };
        ids.error(&GraphError::new(status, code, message))
    };
    faults::with_retry_after(resp, fault)
}

/// The bearer token of the request, if it has one.
fn bearer(req: &Request) -> Option<&str> {
    req.header(http::header::AUTHORIZATION)
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// The pipeline, in Graph's order. `token_claims` is filled once a signature verifies.
fn process(
    state: &State,
    req: &Request,
    cloud: Cloud,
    token_claims: &mut Option<serde_json::Value>,
) -> Result<Success, GraphError> {
    if let Some(read) = device_read::recognise(req) {
        let claims = authenticate(state, req, cloud, token_claims)?;
        device_read::authorise(&claims)?;
        return device_read::answer(state, cloud, req, &read);
    }
    // Routing first: Graph rejects unknown segments whoever asks.
    let path = req.uri.path();
    let found =
        route::recognise(&req.method, path).map_err(|e| GraphError::from_route(&e, path))?;
    // Then the caller: a valid token for this cloud, holding the operation's permission.
    let claims = authenticate(state, req, cloud, token_claims)?;
    authorise(&claims, &found)?;
    // Then the request body.
    let params = body_params(req, &found)?;
    // Finally the target device.
    let url = format!(
        "https://{}{}",
        cloud.endpoints().graph_host,
        found.canonical_path
    );
    let activity = uuid::Uuid::new_v4().to_string();
    match state.update_device(&found.device_id, found.op.action, &params) {
        Ok(()) => {}
        Err(Refusal::UnknownDevice) => {
            return Err(GraphError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                intune_message(&activity, &url),
            ));
        }
        // What Intune answers remoteLock on a Windows PC (docs-contrib#4523): a 400 whose
        // message is its embedded JSON.
        Err(Refusal::NotSupported(os)) => {
            let phrase = format!("{} is not supported on {os} devices.", found.op.action);
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                intune_message_with_phrase(&activity, &url, &phrase),
            ));
        }
    }
    let status = StatusCode::from_u16(found.op.success_status).unwrap_or(StatusCode::NO_CONTENT);
    Ok(Success::Empty(status))
}

/// The bearer token, verified with the emulator's key and for `cloud`'s Graph resource.
fn authenticate(
    state: &State,
    req: &Request,
    cloud: Cloud,
    token_claims: &mut Option<serde_json::Value>,
) -> Result<serde_json::Value, GraphError> {
    let token = bearer(req).ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    let claims = state.key.verify(token).map_err(|check| {
        GraphError::unauthenticated(match check {
            TokenCheck::Malformed => "IDX14100: JWT is not well formed.",
            TokenCheck::Signature => "Access token validation failure: the signature is invalid.",
            TokenCheck::Expired => "Lifetime validation failed, the token is expired.",
            TokenCheck::NotYetValid => "Lifetime validation failed, the token is not yet valid.",
        })
    })?;
    *token_claims = Some(claims.clone());
    if claims.get("aud").and_then(|a| a.as_str()) != Some(cloud.endpoints().resource) {
        return Err(GraphError::unauthenticated(
            "Access token validation failure. Invalid audience.",
        ));
    }
    Ok(claims)
}

/// The app must hold the operation's application permission in `roles`.
fn authorise(claims: &serde_json::Value, found: &Recognised) -> Result<(), GraphError> {
    let permission = found.op.permission;
    let held = claims
        .get("roles")
        .and_then(|r| r.as_array())
        .is_some_and(|roles| roles.iter().any(|r| r.as_str() == Some(permission)));
    if held {
        return Ok(());
    }
    Err(GraphError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "Application is not authorized to perform this operation. Application must have one of the following scopes: {permission}"
        ),
    ))
}

/// The validated parameters: JSON content type, then the operation's strict schema.
fn body_params(
    req: &Request,
    found: &Recognised,
) -> Result<crate::operation::schema::Params, GraphError> {
    let op = found.op;
    if req.body.is_empty() && op.params.is_empty() {
        return Ok(crate::operation::schema::Params::default());
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
    let bad = |e: crate::operation::schema::SchemaError| {
        GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
    };
    let body = crate::operation::schema::parse_strict(&req.body).map_err(bad)?;
    crate::operation::schema::validate(&body, op.params, op.wrapper).map_err(bad)
}
