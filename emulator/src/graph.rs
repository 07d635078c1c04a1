//! The emulated Microsoft Graph: reads the path (`paths`) and finds the operation in
//! Microsoft's CSDL (`csdl`), then checks token and permission (`permissions`), and has
//! `operations` check the body against the CSDL and carry it out on the device inventory;
//! every request is recorded. An armed fault (see `faults`) comes first.

use http::{Response, StatusCode};

use super::csdl::Csdl;
use super::faults::{self, Fault, FaultKind, Target};
use super::graph_reply::{GraphError, Ids, Success};
use super::records::GraphRequestRecord;
use super::signing_key::TokenCheck;
use super::state::State;
use super::wire::{Body, Dropped, Outcome, Request, html_page};
use super::{operations, paths};
use crate::microsoft::Cloud;

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
        answered: crate::clock::Instant::now(),
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

/// The pipeline, in Graph's order: the path and method against the CSDL (Graph rejects
/// unknown segments whoever asks), the token and its roles, then the operation itself (body,
/// device, platform). `token_claims` is filled once a signature verifies.
fn process(
    state: &State,
    req: &Request,
    cloud: Cloud,
    token_claims: &mut Option<serde_json::Value>,
) -> Result<Success, GraphError> {
    if let Some(code) = super::maa::request_path(req.uri.path()) {
        let claims = authenticate(state, req, cloud, token_claims)?;
        authorise(&claims, &super::maa::READ_ROLES)?;
        return state.maa.read(req, code);
    }
    let path = paths::parse(req.uri.path())
        .map_err(|e| GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", e.message()))?;
    let csdl = Csdl::of(path.version).map_err(|e| {
        GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e)
    })?;
    let call = operations::resolve(csdl, &path, &req.method)?;
    let claims = authenticate(state, req, cloud, token_claims)?;
    authorise(&claims, call.roles())?;
    // Multi Admin Approval holds the writes it covers until a person approves.
    if let (Some(maa), Some(name)) = (&state.config.maa, call.held_name())
        && maa.holds(name)
    {
        state.maa.gate(maa, req, name)?;
    }
    operations::run(state, cloud, req, csdl, &path, call)
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

/// The app must hold one of `accepted` in its token's `roles`.
fn authorise(claims: &serde_json::Value, accepted: &[&str]) -> Result<(), GraphError> {
    let held = claims
        .get("roles")
        .and_then(|r| r.as_array())
        .is_some_and(|roles| {
            roles
                .iter()
                .any(|r| r.as_str().is_some_and(|r| accepted.contains(&r)))
        });
    if held {
        return Ok(());
    }
    Err(GraphError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "Application is not authorized to perform this operation. Application must have one of the following scopes: {}",
            accepted.join(", ")
        ),
    ))
}
