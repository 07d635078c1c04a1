//! The request pipeline, in one place, outer to inner: request ids → caller identity →
//! operation recognition → body validation → policy → rate limits → (dry run) → tenant
//! pacing → token → forward to Graph. Each step can refuse; nothing reaches Graph until
//! every step before forwarding has passed.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use tracing::Instrument;

use crate::cloud::Cloud;
use crate::error::GatewayError;
use crate::identity::{self, PeerCertificate};
use crate::policy::{Decision, Facts, Policy};
use crate::ratelimit::{LimiterRegistry, PolicyLimits, RetryAfter};
use crate::route::{self, Recognised, Surface};
use crate::schema::{self, Params};
use crate::simple;
use crate::token::{CachedToken, TokenBroker};
use crate::upstream::HttpClient;

/// Header carrying the caller's correlation id (Graph's convention).
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
/// Header carrying the id of one gateway or Graph request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// Graph response headers a caller gets back; all others are dropped.
const RETURNED_HEADERS: [HeaderName; 4] = [
    REQUEST_ID,
    CLIENT_REQUEST_ID,
    http::header::RETRY_AFTER,
    CONTENT_TYPE,
];
/// Largest Graph response body relayed.
const MAX_UPSTREAM_BODY_BYTES: usize = 1024 * 1024;

/// Per-request bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest time to receive the request body.
    pub body_read_timeout: Duration,
    /// Longest wait for Graph's complete answer.
    pub upstream_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
        }
    }
}

/// What the listener knows about a request's connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The verified client certificate, on mutual-TLS connections that presented one.
    pub certificate: Option<Arc<PeerCertificate>>,
}

/// A policy together with the rate limiters it configures.
pub struct Installed {
    /// The policy.
    pub policy: Policy,
    /// Its limiters.
    pub limits: PolicyLimits,
}

/// Everything a request needs; shared by all connections.
pub struct Gateway {
    installed: ArcSwap<Installed>,
    limiters: LimiterRegistry,
    cloud: Cloud,
    broker: TokenBroker,
    http: HttpClient,
    limits: Limits,
}

/// Ids that identify one request across the caller, the gateway and Graph.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// The gateway's own id for this request.
    pub request_id: String,
    /// The caller's `client-request-id` if it is a GUID, otherwise a new one; sent to Graph.
    pub client_request_id: String,
}

impl RequestIds {
    fn from_headers(headers: &HeaderMap) -> Self {
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

impl Gateway {
    /// A gateway for `cloud`, enforcing `policy`, with tokens from `broker`.
    pub fn new(
        policy: Policy,
        cloud: Cloud,
        broker: TokenBroker,
        http: HttpClient,
        limits: Limits,
    ) -> Self {
        broker
            .set_required_permissions(crate::credential::privilege::required_permissions(&policy));
        let limiters = LimiterRegistry::default();
        let installed = Installed {
            limits: limiters.for_policy(&policy),
            policy,
        };
        Gateway {
            installed: ArcSwap::from_pointee(installed),
            limiters,
            cloud,
            broker,
            http,
            limits,
        }
    }

    /// Replaces the policy; requests in flight keep the one they started with.
    pub fn set_policy(&self, policy: Policy) {
        self.broker
            .set_required_permissions(crate::credential::privilege::required_permissions(&policy));
        let limits = self.limiters.for_policy(&policy);
        self.installed.store(Arc::new(Installed { policy, limits }));
    }

    /// The policy in force, with its limiters.
    pub fn installed(&self) -> Arc<Installed> {
        self.installed.load_full()
    }

    /// The latest least-privilege report (see [`TokenBroker::least_privilege`]).
    pub fn least_privilege(&self) -> Option<Arc<crate::credential::LeastPrivilegeReport>> {
        self.broker.least_privilege()
    }

    /// The deployment's cloud.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    /// The token broker (for readiness and tests).
    pub fn broker(&self) -> &TokenBroker {
        &self.broker
    }

    /// Answers one request. Never fails: every error becomes a Graph-shaped response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ids = RequestIds::from_headers(req.headers());
        let span = tracing::info_span!(
            "request",
            http.request.method = %req.method(),
            request_id = %ids.request_id,
            client_request_id = %ids.client_request_id,
            caller.name = tracing::field::Empty,
            graph.operation = tracing::field::Empty,
            policy.rule = tracing::field::Empty,
            policy.decision = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        async {
            let mut resp = match self.pipeline(&ids, req).await {
                Ok(resp) => resp,
                Err(err) => {
                    tracing::info!(error.code = err.code(), error = %err, "request refused or failed");
                    err.to_response(&ids.request_id, &ids.client_request_id)
                }
            };
            set_ids(resp.headers_mut(), &ids);
            tracing::Span::current().record("http.response.status_code", resp.status().as_u16());
            tracing::info!(status = resp.status().as_u16(), "request done");
            resp
        }
        .instrument(span)
        .await
    }

    async fn pipeline<B>(
        &self,
        ids: &RequestIds,
        req: Request<B>,
    ) -> Result<Response<Full<Bytes>>, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span = tracing::Span::current();
        // The API description is public; everything else needs a caller.
        if req.method() == http::Method::GET && req.uri().path() == OPENAPI_PATH {
            return Ok(json_response(StatusCode::OK, &simple::openapi()));
        }
        // One policy snapshot for the whole request, even if a reload lands meanwhile.
        let installed = self.installed.load_full();
        let policy = &installed.policy;
        // Who is asking comes first: anonymous callers learn nothing about paths.
        let peer_cert = req
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.certificate.clone());
        let caller = identity::authenticate(policy, req.headers(), peer_cert.as_deref())?;
        let caller_name = policy.callers[caller.index].name.as_str();
        span.record("caller.name", caller_name);
        // What is being asked: a catalog operation, its target device, its canonical path.
        let target = recognise(req.method(), req.uri().path())?;
        span.record("graph.operation", target.op.name);
        let dry_run = dry_run_requested(req.headers(), req.uri().query())?;
        // The body is read within bounds and checked against the operation's schema.
        check_content_type(req.headers())?;
        let body = self.read_body(req).await?;
        let (body, params) = graph_body(&target, &body)?;
        // Deny by default: a matching deny wins, otherwise an allow rule must match.
        let facts = Facts {
            caller: caller.index,
            op: target.op,
            version: target.version,
            device: &target.device_id,
            params: &params,
        };
        let decision = policy.decide(&facts);
        record_decision(&span, &decision);
        let rule = match decision.rule {
            Some(rule) if decision.allowed => rule,
            _ => {
                return Err(GatewayError::Forbidden(forbidden_message(
                    &decision,
                    caller_name,
                    &target,
                )));
            }
        };
        // Budgets: the caller's and the rule's, before anything costs the tenant.
        installed
            .limits
            .check_caller(caller.index)
            .map_err(limited("caller"))?;
        installed
            .limits
            .check_rule(rule.index)
            .map_err(limited("rule"))?;
        if dry_run {
            return Ok(dry_run_response(
                self.cloud,
                caller_name,
                &target,
                &decision,
                &params,
            ));
        }
        // Gateway-wide pacing keeps the tenant under Intune's write limit.
        installed
            .limits
            .pace()
            .await
            .map_err(limited("tenant write pacing"))?;
        // Only now is a token obtained and the request sent.
        let token = self.broker.token().await?;
        let resp = self.forward(ids, &target, &body, &token).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // Graph rejected the token before running anything: drop it and retry once.
            tracing::warn!("Graph refused the cached token; fetching a new one and retrying once");
            self.broker.forget(&token).await;
            let token = self.broker.token().await?;
            return self.forward(ids, &target, &body, &token).await;
        }
        Ok(resp)
    }

    async fn read_body<B>(&self, req: Request<B>) -> Result<Bytes, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        let collect = Limited::new(req.into_body(), limit).collect();
        match tokio::time::timeout(self.limits.body_read_timeout, collect).await {
            Err(_) => Err(GatewayError::BodyRead("timed out".into())),
            Ok(Ok(body)) => Ok(body.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(GatewayError::BodyTooLarge { limit })
            }
            Ok(Err(e)) => Err(GatewayError::BodyRead(e.to_string())),
        }
    }

    async fn forward(
        &self,
        ids: &RequestIds,
        op: &Recognised,
        body: &Bytes,
        token: &CachedToken,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        let uri = format!(
            "https://{}{}",
            self.cloud.endpoints().graph_host,
            op.canonical_path
        );
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.token.expose()))
            .map_err(|_| {
                GatewayError::UpstreamUnavailable("the token is not a valid header value".into())
            })?;
        bearer.set_sensitive(true);
        // Headers are built from scratch: nothing the caller sent is copied but the body.
        let req = Request::post(uri)
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, "application/json")
            .header(CLIENT_REQUEST_ID, ids.client_request_id.as_str())
            .header(USER_AGENT, concat!("graphgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| GatewayError::UpstreamUnavailable(e.to_string()))?;
        let timeout = self.limits.upstream_timeout;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    GatewayError::UpstreamUnavailable(error_chain(&e))
                } else {
                    GatewayError::OutcomeUnknown(error_chain(&e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_UPSTREAM_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| GatewayError::OutcomeUnknown(e.to_string()))?
                .to_bytes();
            Ok::<_, GatewayError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(timeout.as_secs()))??;
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = parts.status;
        for name in RETURNED_HEADERS {
            if let Some(v) = parts.headers.get(&name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
        Ok(resp)
    }
}

/// Every response carries the gateway's request id and the client-request-id; Graph's own
/// `request-id` (when Graph answered) is kept and the gateway's goes in `x-graphgate-request-id`.
fn set_ids(headers: &mut HeaderMap, ids: &RequestIds) {
    if let Ok(v) = HeaderValue::try_from(ids.request_id.as_str()) {
        headers.insert(HeaderName::from_static("x-graphgate-request-id"), v.clone());
        headers.entry(REQUEST_ID).or_insert(v);
    }
    if let Ok(v) = HeaderValue::try_from(ids.client_request_id.as_str()) {
        headers.insert(CLIENT_REQUEST_ID, v);
    }
}

/// Where the simplified API's OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

fn recognise(method: &http::Method, path: &str) -> Result<Recognised, GatewayError> {
    Ok(if path.starts_with(route::SIMPLE_PREFIX) {
        route::recognise_simple(method, path)?
    } else {
        route::recognise(method, path)?
    })
}

/// The Graph body to forward and its validated parameters. A simplified-API body is first
/// mapped to Graph's shape, then validated exactly as a Graph-shaped one.
fn graph_body(target: &Recognised, body: &Bytes) -> Result<(Bytes, Params), GatewayError> {
    let parsed = schema::parse_strict(body)?;
    let (body, parsed) = match (target.surface, target.op.simple) {
        (Surface::Simple, Some(api)) => {
            let graph = simple::to_graph_body(target.op, api, &parsed)?;
            let bytes =
                serde_json::to_vec(&graph).map_err(|e| GatewayError::BodyRead(e.to_string()))?;
            (Bytes::from(bytes), graph)
        }
        _ => (body.clone(), parsed),
    };
    let params = schema::validate(&parsed, target.op.params, target.op.wrapper)?;
    Ok((body, params))
}

/// `Prefer: dry-run` or `?dry-run` (`=true`); any other query parameter is refused.
fn dry_run_requested(headers: &HeaderMap, query: Option<&str>) -> Result<bool, GatewayError> {
    let by_header = headers
        .get_all(http::header::HeaderName::from_static("prefer"))
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

fn record_decision(span: &tracing::Span, decision: &Decision<'_>) {
    span.record(
        "policy.decision",
        if decision.allowed { "allow" } else { "deny" },
    );
    if let Some(rule) = decision.rule_name() {
        span.record("policy.rule", rule);
    }
    if let Some(shadow) = decision.shadow {
        tracing::info!(
            policy.shadow_rule = shadow.rule,
            policy.shadow_decision = if shadow.allowed { "allow" } else { "deny" },
            "a shadow rule would change this decision"
        );
    }
}

/// Why a request was refused, in the caller's terms, naming only the caller's own rules.
fn forbidden_message(decision: &Decision<'_>, caller: &str, target: &Recognised) -> String {
    match decision.rule_name() {
        Some(rule) => format!("denied by policy rule '{rule}'"),
        None => format!(
            "no policy rule allows caller '{caller}' to run {} ({}) on device {} with these parameters",
            target.op.name,
            target.version.as_str(),
            target.device_id
        ),
    }
}

fn limited(scope: &'static str) -> impl Fn(RetryAfter) -> GatewayError {
    move |retry| GatewayError::RateLimited {
        scope,
        retry_after_secs: retry.secs(),
    }
}

fn dry_run_response(
    cloud: Cloud,
    caller: &str,
    target: &Recognised,
    decision: &Decision<'_>,
    params: &Params,
) -> Response<Full<Bytes>> {
    let doc = serde_json::json!({
        "dryRun": true,
        "decision": "allow",
        "rule": decision.rule_name(),
        "shadow": decision.shadow.map(|s| serde_json::json!({ "decision": if s.allowed { "allow" } else { "deny" }, "rule": s.rule })),
        "caller": caller,
        "operation": target.op.name,
        "apiVersion": target.version.as_str(),
        "device": target.device_id,
        "wouldSend": format!("POST https://{}{}", cloud.endpoints().graph_host, target.canonical_path),
        "parameters": params.to_redacted_json(),
    });
    let mut resp = json_response(StatusCode::OK, &doc);
    resp.headers_mut().insert(
        http::header::HeaderName::from_static("preference-applied"),
        HeaderValue::from_static("dry-run"),
    );
    resp
}

fn json_response(status: StatusCode, doc: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
