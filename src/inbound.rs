//! Reading what a caller sent: request ids, which surface and operation the path names, the
//! dry-run preference, the content type, and the body within its size and time bounds, turned
//! into the Graph body and its validated parameters.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use crate::error::GatewayError;
use crate::operation::route::{self, Recognised, Surface};
use crate::operation::schema::{self, Params};
use crate::operation::simple;

/// Header carrying the caller's correlation id (Graph's convention).
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
/// Header carrying the id of one gateway or Graph request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// Ids that identify one request across the caller, the gateway and Graph.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// The gateway's own id for this request.
    pub request_id: String,
    /// The caller's `client-request-id` if it is a GUID, otherwise a new one; sent to Graph.
    pub client_request_id: String,
}

impl RequestIds {
    /// New ids for a request with these headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let client_request_id = headers
            .get(&CLIENT_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| route::is_guid(v))
            .map_or_else(new_guid, str::to_ascii_lowercase);
        RequestIds {
            request_id: new_guid(),
            client_request_id,
        }
    }
}

fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The operation a path names, on either surface, for one device only (a path naming two
/// different devices is refused: see [`Recognised::one_device`]).
pub fn recognise(method: &http::Method, path: &str) -> Result<Recognised, GatewayError> {
    let recognised = if path.starts_with(route::SIMPLE_PREFIX) {
        route::recognise_simple(method, path)
    } else {
        route::recognise(method, path)
    };
    Ok(recognised.and_then(Recognised::one_device)?)
}

/// `Prefer: dry-run` or `?dry-run` (`=true`); any other query parameter is refused.
pub fn dry_run_requested(headers: &HeaderMap, query: Option<&str>) -> Result<bool, GatewayError> {
    let by_header = headers
        .get_all(HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("dry-run"));
    let mut by_query = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("dry-run", "" | "true") => by_query = true,
            _ => return Err(GatewayError::QueryNotAllowed),
        }
    }
    Ok(by_header || by_query)
}

/// Only `application/json` bodies are accepted.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType)
    }
}

/// Reads the body: at most `limit` bytes (a larger declared length is refused unread), within `timeout`.
pub async fn read_body<B>(
    req: Request<B>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(GatewayError::BodyTimeout(timeout.as_secs())),
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// The Graph body to forward and its validated parameters. A simplified-API body is first
/// mapped to Graph's shape, then validated exactly as a Graph-shaped one.
pub fn graph_body(target: &Recognised, body: &Bytes) -> Result<(Bytes, Params), GatewayError> {
    let parsed = schema::parse_strict(body)?;
    let op = target.op;
    match (target.surface, op.simple) {
        (Surface::Simple, Some(api)) => {
            let graph = simple::to_graph_body(op, api, &parsed)?;
            let params = schema::validate_request(&graph, op.params, op.wrapper)
                .map_err(|e| simple::in_flat_terms(api, e))?;
            let bytes =
                serde_json::to_vec(&graph).map_err(|e| GatewayError::BodyRead(e.to_string()))?;
            Ok((Bytes::from(bytes), params))
        }
        _ => Ok((
            body.clone(),
            schema::validate_request(&parsed, op.params, op.wrapper)?,
        )),
    }
}
