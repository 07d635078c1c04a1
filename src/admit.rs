//! Admission: reading what a caller sent. Request ids; which surface and operation the path
//! names; the dry-run preference and idempotency key; the content type; the body within its
//! size and time bounds, parsed once into one value that becomes the Graph body (a
//! simplified-API body mapped, its `initiator` and `reason` taken out), its validated
//! parameters and, for a bulk request, its plan. The gateway, `policy explain` and `policy
//! test` admit a request through the same two steps, [`admit_head`] then
//! [`Head::admit_body`], so they cannot disagree.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use serde_json::Value;

use crate::bulk::{self, BulkError, BulkPlan};
use crate::idempotency;
use crate::identity::jwt::TokenUser;
use crate::identity::stated::{BODY_INITIATOR, BODY_REASON, ContextError, Stated, Statement};
use crate::operation::catalog::{Binding, Operation};
use crate::operation::route::{self, Recognised, RouteError, Surface};
use crate::operation::schema::{self, Params, SchemaError};
use crate::operation::simple::{self, SimpleError};

/// Why a request was refused while it was read: the caller's to fix, and said so.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The path is no known operation, or is malformed.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Query parameters are not part of any action.
    #[error("query parameters are not accepted on this operation (only 'dry-run')")]
    QueryNotAllowed,
    /// An unusable `Idempotency-Key`.
    #[error("{0}")]
    BadIdempotencyKey(&'static str),
    /// The body is not JSON.
    #[error("the request body must be sent as 'Content-Type: application/json'")]
    UnsupportedMediaType,
    /// A body on an operation that takes none (a GET or DELETE).
    #[error("this operation takes no request body ({0} without a body)")]
    UnexpectedBody(&'static str),
    /// A bulk request's devices or action, refused before policy.
    #[error(transparent)]
    BadBulk(#[from] BulkError),
    /// The body is larger than the limit.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read (the client went away, or bad framing).
    #[error("the request body could not be read")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// The body does not match the action's schema.
    #[error(transparent)]
    BadBody(#[from] SchemaError),
    /// A simplified-API body that cannot be mapped to Graph's.
    #[error(transparent)]
    BadSimpleBody(#[from] SimpleError),
    /// The person or reason a simplified-API body states is unusable.
    #[error(transparent)]
    Context(#[from] ContextError),
}

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

/// What a request's head asks for, checked before its body is read.
#[derive(Debug)]
pub struct Head {
    /// The operation, its device and canonical path.
    pub target: Recognised,
    /// `Prefer: dry-run` or `?dry-run`: decide, send nothing.
    pub dry_run: bool,
    /// The caller's `Idempotency-Key` (or GUID `client-request-id`), if any.
    pub idempotency_key: Option<String>,
}

/// An admitted request: everything policy, the audit and the forwarder need.
#[derive(Debug)]
pub struct Admitted {
    /// The operation, its device and canonical path.
    pub target: Recognised,
    /// The body to forward: Graph-shaped, validated against the operation's schema.
    pub body: Bytes,
    /// Its validated parameters (what policy conditions test).
    pub params: Params,
    /// Decide, send nothing.
    pub dry_run: bool,
    /// The caller's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// A bulk `executeAction`: the operation it runs on each of its devices (decided
    /// device by device).
    pub bulk: Option<BulkPlan>,
    /// Intune's Multi Admin Approval: the justification sent with it, and the code of the
    /// approval it is the approved re-send of (see [`crate::approval::maa`]).
    pub maa: MaaHeaders,
}

/// The Multi Admin Approval headers a request to Graph carries, when it carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaaHeaders {
    /// `x-msft-approval-justification` (base64).
    pub justification: Option<http::HeaderValue>,
    /// `x-msft-approval-code`: Intune approved it; this is the one re-send.
    pub code: Option<http::HeaderValue>,
}

impl Admitted {
    /// How many devices the request acts on: a bulk request's listed devices, else one.
    /// Budgets and rate limits count this.
    pub fn devices(&self) -> u32 {
        self.bulk.as_ref().map_or(1, |plan| {
            u32::try_from(plan.device_ids.len()).unwrap_or(u32::MAX)
        })
    }
}

/// Admission, first step: the operation the path names (`recognised` is told it at once,
/// before a later check can refuse the request: the gateway audits from recognition on),
/// then the query, the idempotency key and the content type. Nothing here reads the body.
pub fn admit_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    recognised: impl FnOnce(&Recognised),
) -> Result<Head, InboundError> {
    let target = recognise(method, uri.path())?;
    recognised(&target);
    let dry_run = dry_run_requested(headers, uri.query())?;
    let idempotency_key = idempotency::key_of(headers)
        .transpose()
        .map_err(InboundError::BadIdempotencyKey)?;
    check_content_type(headers, target.op)?;
    Ok(Head {
        target,
        dry_run,
        idempotency_key,
    })
}

impl Head {
    /// Admission, second step: the body (already read within its bounds), parsed once, as
    /// the Graph body to forward and its validated parameters; for a bulk request, also the
    /// operation it runs and its devices (at most `max_bulk_devices`). What a
    /// simplified-API body states is added to `stated` (checked against the delegated
    /// token's `user`).
    pub fn admit_body(
        self,
        body: &Bytes,
        max_bulk_devices: usize,
        stated: &mut Stated,
        user: Option<&TokenUser>,
    ) -> Result<Admitted, InboundError> {
        let target = &self.target;
        let op = target.op;
        if !op.takes_body() {
            if !body.is_empty() {
                return Err(InboundError::UnexpectedBody(op.invocation.method_name()));
            }
            return Ok(self.admitted(Bytes::new(), Params::default(), None));
        }
        // The one parse; an empty body is taken as `{}` (and forwarded without a body).
        let mut parsed = match body.is_empty() {
            true => Value::Object(Default::default()),
            false => schema::parse_strict(body)?,
        };
        let params = op.params_for(target.version);
        let (graph, checked) = match (target.surface, op.simple) {
            (Surface::Graph, _) => {
                let checked = schema::validate_request(&parsed, params, op.wrapper)?;
                (parsed, checked)
            }
            (Surface::Simple, api) => {
                // The person and the reason are the gateway's, not Graph parameters.
                take_statements(&mut parsed, stated, user)?;
                let graph = match api {
                    Some(api) => simple::to_graph_body(op, api, &parsed)?,
                    // The flat body is Graph's own; a null field means "not given".
                    None => simple::without_nulls(&parsed)?,
                };
                let checked = schema::validate_request(&graph, params, op.wrapper);
                let checked = match api {
                    Some(api) => checked.map_err(|e| simple::in_flat_terms(api, e))?,
                    None => checked?,
                };
                (graph, checked)
            }
        };
        let bulk = match op.binding {
            Binding::Devices => Some(bulk::plan(&graph, target.version, max_bulk_devices)?),
            _ => None,
        };
        // What Graph gets: a Graph-shaped body as it came; a mapped one serialised once.
        let forward = match (target.surface, op.simple) {
            (Surface::Graph, _) => body.clone(),
            (Surface::Simple, None) if graph.as_object().is_some_and(|m| m.is_empty()) => {
                Bytes::new()
            }
            (Surface::Simple, _) => to_bytes(&graph)?,
        };
        Ok(self.admitted(forward, checked, bulk))
    }

    fn admitted(self, body: Bytes, params: Params, bulk: Option<BulkPlan>) -> Admitted {
        Admitted {
            target: self.target,
            body,
            params,
            dry_run: self.dry_run,
            idempotency_key: self.idempotency_key,
            bulk,
            maa: MaaHeaders::default(),
        }
    }
}

/// Takes a simplified-API body's `initiator` and `reason` out of it and adds what they say
/// to `stated`. A field sent as `null` counts as not given, like the simplified API's other
/// fields; one that is not text is refused.
fn take_statements(
    body: &mut Value,
    stated: &mut Stated,
    user: Option<&TokenUser>,
) -> Result<(), ContextError> {
    let Value::Object(members) = body else {
        return Ok(());
    };
    let (who, why) = (
        members.remove(simple::INITIATOR_FIELD),
        members.remove(simple::REASON_FIELD),
    );
    let text = |v: &Option<Value>, wrong: ContextError| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(wrong),
    };
    let who = text(&who, ContextError::BadInitiator(BODY_INITIATOR))?;
    let why = text(&why, ContextError::BadReason(BODY_REASON))?;
    let said = Statement {
        initiator: who.as_deref(),
        reason: why.as_deref(),
    };
    stated.add_body(said, user)
}

/// The operation a path names, on either surface, for one device only (a path naming two
/// different devices is refused: see [`Recognised::one_device`]).
fn recognise(method: &Method, path: &str) -> Result<Recognised, InboundError> {
    let recognised = if path.starts_with(route::SIMPLE_PREFIX) {
        route::recognise_simple(method, path)
    } else {
        route::recognise(method, path)
    };
    Ok(recognised.and_then(Recognised::one_device)?)
}

/// `Prefer: dry-run` or `?dry-run` (`=true`); any other query parameter is refused.
fn dry_run_requested(headers: &HeaderMap, query: Option<&str>) -> Result<bool, InboundError> {
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
            _ => return Err(InboundError::QueryNotAllowed),
        }
    }
    Ok(by_header || by_query)
}

/// Only `application/json` bodies are accepted: required for an operation whose
/// parameters are all in its body, and for any body a caller declares (a GET or DELETE
/// declaring one is refused when the body turns out not to be empty).
fn check_content_type(headers: &HeaderMap, op: &Operation) -> Result<(), InboundError> {
    let declares_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !op.takes_body() || (!declares_body && !op.needs_body()) {
        return Ok(());
    }
    let ok = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(InboundError::UnsupportedMediaType)
    }
}

/// Reads the body: at most `limit` bytes (a larger declared length is refused unread), within `timeout`.
pub async fn read_body<B>(
    req: Request<B>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, InboundError>
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
        return Err(InboundError::BodyTooLarge { limit });
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(InboundError::BodyTimeout(timeout.as_secs())),
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(InboundError::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(InboundError::BodyRead(e)),
    }
}

/// The one serialisation of a mapped body.
fn to_bytes(graph: &Value) -> Result<Bytes, InboundError> {
    #[cfg(test)]
    tests::SERIALISED.with(|n| n.set(n.get() + 1));
    serde_json::to_vec(graph)
        .map(Bytes::from)
        .map_err(|e| InboundError::BodyRead(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use http::header::HeaderValue;
    use serde_json::json;

    use super::*;

    thread_local! {
        /// Bodies serialised on this thread.
        pub(super) static SERIALISED: Cell<usize> = const { Cell::new(0) };
    }

    /// (parsed, serialised) so far on this thread.
    fn counts() -> (usize, usize) {
        (schema::PARSED.with(Cell::get), SERIALISED.with(Cell::get))
    }

    fn admit(path: &str, body: &Bytes, stated: &mut Stated) -> Admitted {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let uri: Uri = path.parse().unwrap();
        let head = admit_head(&Method::POST, &uri, &headers, |_| {}).unwrap();
        head.admit_body(body, 100, stated, None).unwrap()
    }

    const A: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
    const B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

    /// A simplified-API bulk body makes one trip: parsed once (the person and the reason
    /// taken out, the plan made from the same value), serialised once for Graph.
    #[test]
    fn a_simplified_bulk_body_is_parsed_once_and_serialised_once() {
        let body = Bytes::from(
            json!({"actionName": "wipe", "deviceIds": [A, B], "keepUserData": true,
                   "initiator": "alice@contoso.com", "reason": "CHG-1"})
            .to_string(),
        );
        let before = counts();
        let mut stated = Stated::default();
        let admitted = admit("/api/v1/managedDevices/executeAction", &body, &mut stated);
        let after = counts();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
        assert_eq!(stated.initiator(), Some("alice@contoso.com"));
        assert_eq!(stated.reason.as_deref(), Some("CHG-1"));
        let forwarded: Value = serde_json::from_slice(&admitted.body).unwrap();
        assert_eq!(
            forwarded,
            json!({"actionName": "wipe", "deviceIds": [A, B], "keepUserData": true})
        );
        let plan = admitted.bulk.unwrap();
        assert_eq!(
            (plan.op.name, plan.device_ids.len()),
            ("managedDevices.wipe", 2)
        );
    }

    /// A Graph-shaped body is parsed once and forwarded as it came: never serialised.
    #[test]
    fn a_graph_body_is_parsed_once_and_forwarded_as_it_came() {
        let body = Bytes::from(
            json!({"actionName": "wipe", "deviceIds": [A], "keepUserData": true}).to_string(),
        );
        let before = counts();
        let mut stated = Stated::default();
        let admitted = admit(
            "/beta/deviceManagement/managedDevices/executeAction",
            &body,
            &mut stated,
        );
        let after = counts();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
        assert_eq!(admitted.body, body);
        assert_eq!(admitted.bulk.unwrap().device_ids, [A]);
    }

    /// The person and the reason in a simplified body must be text.
    #[test]
    fn a_stated_initiator_that_is_not_text_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let uri: Uri = "/api/v1/managedDevices/executeAction".parse().unwrap();
        let head = admit_head(&Method::POST, &uri, &headers, |_| {}).unwrap();
        let body = Bytes::from(
            json!({"actionName": "wipe", "deviceIds": [A], "initiator": 42}).to_string(),
        );
        let err = head
            .admit_body(&body, 100, &mut Stated::default(), None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                InboundError::Context(ContextError::BadInitiator(BODY_INITIATOR))
            ),
            "{err:?}"
        );
    }
}
