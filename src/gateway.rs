//! The request pipeline, in one place, outer to inner: request ids and span → caller
//! identity → operation recognition → body validation → policy → token → audit intent →
//! forward to Graph → audit outcome. Each step can refuse; nothing reaches Graph until every
//! step before forwarding has passed and the intent record is durable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use tracing::Instrument;

use crate::audit::trail::Origin;
use crate::audit::{Audit, AuditDecision, AuditTrail};
use crate::cloud::Cloud;
use crate::error::GatewayError;
use crate::identity;
use crate::policy::{Decision, Policy};
use crate::route::{self, Recognised};
use crate::schema;
use crate::token::{CachedToken, TokenBroker};
use crate::upstream::HttpClient;
use crate::{metrics, telemetry};

/// The connection a request arrived on; the server puts it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The caller's address.
    pub peer: SocketAddr,
}

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

/// Everything a request needs; shared by all connections.
pub struct Gateway {
    policy: ArcSwap<Policy>,
    cloud: Cloud,
    broker: TokenBroker,
    http: HttpClient,
    limits: Limits,
    audit: Audit,
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
        Gateway {
            policy: ArcSwap::from_pointee(policy),
            cloud,
            broker,
            http,
            limits,
            audit: Audit::disabled(),
        }
    }

    /// The gateway with `audit` as its audit log (without one, nothing is audited).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The audit log (for readiness).
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The loaded policy's version (its hash).
    pub fn policy_hash(&self) -> String {
        self.policy.load().hash.clone()
    }

    /// Replaces the policy; requests in flight keep the one they started with.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
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
        let started = Instant::now();
        let ids = RequestIds::from_headers(req.headers());
        let span = tracing::info_span!(
            "request",
            otel.kind = "server",
            http.request.method = %req.method(),
            server.address = self.cloud.endpoints().graph_host,
            request_id = %ids.request_id,
            client_request_id = %ids.client_request_id,
            http.route = tracing::field::Empty,
            caller.name = tracing::field::Empty,
            graph.operation = tracing::field::Empty,
            policy.rule = tracing::field::Empty,
            policy.decision = tracing::field::Empty,
            graph.request_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        // A caller's W3C trace continues through the gateway and on to Graph.
        telemetry::continue_trace(&span, req.headers());
        let mut trail = AuditTrail::begin(
            &self.audit,
            Origin {
                audit_id: &ids.request_id,
                client_request_id: &ids.client_request_id,
                source: req.extensions().get::<ConnInfo>().map(|c| c.peer),
                cloud: self.cloud.to_string(),
                tenant: &self.broker.key().tenant,
            },
        );
        async {
            let (mut resp, error_code) = match self.pipeline(&ids, req, &mut trail).await {
                Ok(resp) => (resp, None),
                Err(err) => {
                    tracing::info!(error.code = err.code(), error = %err, "request refused or failed");
                    let resp = err.to_response(&ids.request_id, &ids.client_request_id);
                    (resp, Some(err.code()))
                }
            };
            // The outcome is durable before a caller learns that an action ran.
            trail.finish(resp.status().as_u16(), error_code).await;
            set_ids(resp.headers_mut(), &ids);
            let status = resp.status().as_u16();
            let span = tracing::Span::current();
            span.record("http.response.status_code", status);
            span.record("policy.decision", trail.decision_label());
            metrics::request_done(trail.operation_label(), trail.decision_label(), status, started.elapsed());
            tracing::info!(status, "request done");
            resp
        }
        .instrument(span)
        .await
    }

    async fn pipeline<B>(
        &self,
        ids: &RequestIds,
        req: Request<B>,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span = tracing::Span::current();
        // One policy snapshot for the whole request, even if a reload lands meanwhile.
        let policy = self.policy.load_full();
        // Who is asking comes first: anonymous callers learn nothing about paths.
        let caller = identity::authenticate(&policy, req.headers())?;
        let caller_name = &policy.callers[caller.index].name;
        span.record("caller.name", caller_name.as_str());
        trail.caller(caller_name, caller.method.as_str(), &policy.hash);
        // What is being asked: a catalog operation, its target device, its canonical path.
        // From here on, every outcome is audited.
        let op = route::recognise(req.method(), req.uri().path())?;
        span.record("graph.operation", op.op.name);
        span.record("http.route", op.shape.template);
        trail.recognised(&op);
        if req.uri().query().is_some() {
            return Err(GatewayError::QueryNotAllowed);
        }
        // The body is read within bounds and checked against the operation's schema.
        check_content_type(req.headers())?;
        let body = self.read_body(req).await?;
        let params = schema::validate(&schema::parse_strict(&body)?, op.op.params, op.op.wrapper)?;
        trail.params(&params);
        // Deny by default: only a rule naming this caller and operation lets it through.
        let rule = match policy.decide(caller.index, op.op) {
            Decision::Allow { rule } => rule,
            Decision::NoRuleAllows => {
                trail.decided(AuditDecision::Denied, None);
                return Err(GatewayError::Forbidden(format!(
                    "no policy rule allows caller '{caller_name}' to run {}",
                    op.op.name
                )));
            }
        };
        span.record("policy.rule", rule);
        trail.decided(AuditDecision::Allowed, Some(rule));
        // Only now is a token obtained.
        let token = self.token().await?;
        trail.token_app_id(token.claims.appid.as_deref());
        // Write-ahead: the intent is durable before Graph is asked to act; if the audit
        // log cannot take it, the gateway does not act (fail closed).
        trail
            .intent()
            .await
            .map_err(GatewayError::AuditUnavailable)?;
        let resp = self.send(ids, &op, &body, &token, trail).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // Graph rejected the token before running anything: drop it and retry once.
            tracing::warn!("Graph refused the cached token; fetching a new one and retrying once");
            self.broker.forget(&token).await;
            let token = self.token().await?;
            trail.token_app_id(token.claims.appid.as_deref());
            return self.send(ids, &op, &body, &token, trail).await;
        }
        Ok(resp)
    }

    /// A usable token, timed.
    async fn token(&self) -> Result<Arc<CachedToken>, GatewayError> {
        let started = Instant::now();
        let token = self.broker.token().await;
        metrics::token_acquired(started.elapsed());
        Ok(token?)
    }

    /// Forwards and records what Graph answered in the trail, the span and the metrics.
    async fn send(
        &self,
        ids: &RequestIds,
        op: &Recognised,
        body: &Bytes,
        token: &CachedToken,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        let started = Instant::now();
        let result = self.forward(ids, op, body, token).await;
        metrics::upstream(started.elapsed());
        if let Ok(resp) = &result {
            let graph_request_id = resp
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok());
            if let Some(id) = graph_request_id {
                tracing::Span::current().record("graph.request_id", id);
            }
            trail.upstream(resp.status().as_u16(), graph_request_id, started.elapsed());
        }
        result
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
        let mut req = Request::post(uri)
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, "application/json")
            .header(CLIENT_REQUEST_ID, ids.client_request_id.as_str())
            .header(USER_AGENT, concat!("graphgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| GatewayError::UpstreamUnavailable(e.to_string()))?;
        telemetry::inject_current(req.headers_mut());
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
