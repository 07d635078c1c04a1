//! The request pipeline, in one place, outer to inner: request ids, span and audit trail →
//! caller identity → operation recognition → refusal of what no body could make allowed →
//! in-flight bounds (the caller's, then the gateway's) → body validation → policy → (dry
//! run) → rate limits → idempotency → tenant pacing → token → durable audit intent → forward
//! to Graph → durable audit outcome. Each step can refuse; nothing reaches Graph until every
//! step before it has passed and the intent is on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::answer::{dry_run_response, forbidden_message, json_response, set_ids, settle};
use crate::audit::trail::Origin;
use crate::audit::{Audit, AuditDecision, AuditTrail};
use crate::cloud::Cloud;
use crate::error::GatewayError;
use crate::forward::{Forwarder, RetryPolicy};
use crate::idempotency::{self, Claim, IdempotencyStore};
use crate::identity::context::{self as stated_context, Stated};
use crate::identity::jwt::{IssuerRegistry, TokenIssuers, fetch::HttpLoader};
use crate::identity::{self, AuthError, PeerCertificate};
use crate::inbound::{self, RequestIds};
use crate::policy::{Decision, Facts, Policy, Scope};
use crate::ratelimit::{LimiterRegistry, PolicyLimits, RetryAfter};
use crate::simple;
use crate::slots::KeyedSlots;
use crate::token::TokenBroker;
use crate::upstream::HttpClient;
use crate::{metrics, telemetry};

/// Where the simplified API's OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Per-request bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest time to receive the request body.
    pub body_read_timeout: Duration,
    /// Longest wait for one complete Graph answer.
    pub upstream_timeout: Duration,
    /// Longest TCP connect to Entra or Graph.
    pub connect_timeout: Duration,
    /// Retries of throttled Graph calls.
    pub retry: RetryPolicy,
    /// Most requests in flight; more are shed with 503.
    pub max_in_flight: usize,
    /// Most requests in flight for one caller; more get 429, so one caller cannot starve the rest.
    pub max_in_flight_per_caller: usize,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    /// Most idempotency keys remembered.
    pub idempotency_capacity: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_in_flight: 1024,
            max_in_flight_per_caller: 256,
            idempotency_window: Duration::from_secs(600),
            idempotency_capacity: 100_000,
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

/// A policy together with the rate limiters and token issuers' key stores it configures.
pub struct Installed {
    /// The policy.
    pub policy: Policy,
    /// Its limiters.
    pub limits: PolicyLimits,
    /// Its token issuers' keys.
    pub tokens: TokenIssuers,
}

/// Everything a request needs; shared by all connections.
pub struct Gateway {
    installed: ArcSwap<Installed>,
    limiters: LimiterRegistry,
    issuers: IssuerRegistry,
    broker: TokenBroker,
    forwarder: Forwarder,
    idempotency: IdempotencyStore,
    in_flight: Arc<Semaphore>,
    caller_in_flight: KeyedSlots<String>,
    limits: Limits,
    audit: Audit,
    reload_error: arc_swap::ArcSwapOption<String>,
    /// The policy reloader's status, if one follows the policy file (for readiness).
    reloader: arc_swap::ArcSwapOption<tokio::sync::watch::Receiver<crate::reload::ReloadStatus>>,
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
        let issuers = IssuerRegistry::new(Arc::new(HttpLoader::new(http.clone())));
        let installed = Installed {
            limits: limiters.for_policy(&policy),
            tokens: issuers.for_policy(&policy),
            policy,
        };
        installed.tokens.warm();
        Gateway {
            installed: ArcSwap::from_pointee(installed),
            limiters,
            issuers,
            broker,
            forwarder: Forwarder {
                http,
                cloud,
                retry: limits.retry.clone(),
                timeout: limits.upstream_timeout,
            },
            idempotency: IdempotencyStore::new(
                limits.idempotency_capacity,
                limits.idempotency_window,
            ),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            caller_in_flight: KeyedSlots::new(limits.max_in_flight_per_caller),
            limits,
            audit: Audit::disabled(),
            reload_error: arc_swap::ArcSwapOption::empty(),
            reloader: arc_swap::ArcSwapOption::empty(),
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

    /// Records a policy reload attempt: the errors of a failed one stay visible (readiness
    /// detail) until a later reload succeeds.
    pub fn note_reload(&self, result: Result<(), &crate::policy::PolicyError>) {
        crate::metrics::policy_reload(result.is_ok());
        self.reload_error
            .store(result.err().map(|e| Arc::new(e.to_string())));
    }

    /// The errors of the latest reload, if it failed (the previous policy is in force).
    pub fn reload_error(&self) -> Option<Arc<String>> {
        self.reload_error.load_full()
    }

    /// Follows a policy reloader through its status (see [`crate::reload::Reloader::new`]),
    /// so readiness fails once it is gone.
    pub fn follow_reloader(
        &self,
        status: tokio::sync::watch::Receiver<crate::reload::ReloadStatus>,
    ) {
        self.reloader.store(Some(Arc::new(status)));
    }

    /// Whether a reloader follows the policy file, and is alive.
    pub fn reloader_health(&self) -> crate::reload::ReloaderHealth {
        crate::reload::ReloaderHealth::of(self.reloader.load().as_deref())
    }

    /// The loaded policy's version (its hash).
    pub fn policy_hash(&self) -> String {
        self.installed.load().policy.hash.clone()
    }

    /// Replaces the policy; requests in flight keep the one they started with.
    pub fn set_policy(&self, policy: Policy) {
        // Limiters first: if making them failed, nothing about the new policy is in force.
        let limits = self.limiters.for_policy(&policy);
        self.broker
            .set_required_permissions(crate::credential::privilege::required_permissions(&policy));
        let tokens = self.issuers.for_policy(&policy);
        tokens.warm();
        self.installed.store(Arc::new(Installed {
            policy,
            limits,
            tokens,
        }));
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
        self.forwarder.cloud
    }

    /// The idempotency store (for tests: expiry and bound).
    pub fn idempotency(&self) -> &IdempotencyStore {
        &self.idempotency
    }

    /// The token broker (for readiness and tests).
    pub fn broker(&self) -> &TokenBroker {
        &self.broker
    }

    /// How many requests of the caller named `caller` are in flight past the pre-body policy.
    pub fn caller_in_flight(&self, caller: &str) -> usize {
        self.caller_in_flight.held(&caller.to_owned())
    }

    /// Answers one request. Never fails: every error becomes a Graph-shaped response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let ids = RequestIds::from_headers(req.headers());
        let span = request_span(&req, &ids, self.cloud());
        // A caller's W3C trace continues through the gateway and on to Graph.
        telemetry::continue_trace(&span, req.headers());
        let origin = Origin {
            audit_id: &ids.request_id,
            client_request_id: &ids.client_request_id,
            source: req.extensions().get::<ConnInfo>().map(|c| c.peer),
            cloud: self.cloud().to_string(),
            tenant: &self.broker.key().tenant,
        };
        let mut trail = AuditTrail::begin(&self.audit, origin);
        async {
            let result = self.pipeline(&ids, req, &mut trail).await;
            let (mut resp, error_code) = match result {
                Ok(resp) => (resp, None),
                Err(err) => {
                    tracing::info!(error.code = err.code(), error = %err, "request refused or failed");
                    count_refusal(&err, &mut trail);
                    (err.to_response(&ids.request_id, &ids.client_request_id), Some(err.code()))
                }
            };
            // One record per request; for forwarded calls, the outcome after the durable intent.
            trail.finish(resp.status().as_u16(), error_code).await;
            if let Some(code) = error_code {
                metrics::error(code);
            }

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
        let caller = identity::authenticate(
            policy,
            &installed.tokens,
            req.headers(),
            peer_cert.as_deref(),
        )
        .await?;
        let caller_name = policy.callers[caller.id.index].name.as_str();
        span.record("caller.name", caller_name);
        trail.caller(caller_name, caller.id.method.as_str(), &policy.hash);
        if let Some(token) = &caller.token {
            record_token(&span, trail, token);
        }
        let user = caller.token.as_ref().and_then(|t| t.user.as_ref());
        let caller = caller.id;
        // What is being asked: a catalog operation, its device, its canonical path. From
        // here on, every outcome is audited.
        let target = inbound::recognise(req.method(), req.uri().path())?;
        span.record("graph.operation", target.op.name);
        span.record("http.route", target.shape.template);
        trail.recognised(&target);
        let dry_run = inbound::dry_run_requested(req.headers(), req.uri().query())?;
        let idempotency_key = idempotency::key_of(req.headers())
            .transpose()
            .map_err(GatewayError::BadIdempotencyKey)?;
        inbound::check_content_type(req.headers())?;
        // The person and the reason, as the headers (or a delegated token) state them.
        let mut stated = stated_context::from_headers(req.headers(), user)?;
        record_stated(&span, trail, &stated);
        // What no body could make allowed is refused unread: a caller without permission
        // cannot hold a slot by declaring a body it never sends.
        self.refuse_before_body(policy, caller.index, caller_name, &target, trail)?;
        // One caller cannot take every in-flight slot: its own bound comes first...
        let _caller_slot = self
            .caller_in_flight
            .try_acquire(&caller_name.to_owned())
            .ok_or(GatewayError::RateLimited {
                scope: "the caller's requests in flight",
                retry_after_secs: 1,
            })?;
        // ...then the gateway's: load is shed before the body is waited for.
        let _permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded)?;
        // The body is read within bounds and checked against the operation's schema.
        let body = inbound::read_body(
            req,
            self.limits.max_body_bytes,
            self.limits.body_read_timeout,
        )
        .await?;
        let body = self.stated_in_body(&target, body, &mut stated, user, trail)?;
        let (body, params) = inbound::graph_body(&target, &body)?;
        trail.params(&params);
        // Deny by default: a matching deny wins, otherwise an allow rule must match.
        let facts = Facts {
            caller: caller.index,
            op: target.op,
            version: target.version,
            device: &target.device_id,
            params: &params,
            initiator: stated.initiator(),
        };
        let decision = policy.decide(&facts);
        record_decision(&span, trail, &decision);
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
        // The allowing rule may demand the person and the reason.
        required_stated(rule, &stated, trail)?;
        // A dry run answers the policy question only: it sends nothing, so it spends no
        // budget (a rule's budget is shared, so one caller's checks would starve another).
        if dry_run {
            trail.decided(AuditDecision::DryRun, Some(&rule.name));
            return Ok(dry_run_response(
                self.cloud(),
                caller_name,
                &target,
                &decision,
                &params,
            ));
        }
        // Budgets: the caller's and the rule's, before anything costs the tenant.
        let budgets = installed
            .limits
            .check_caller(caller.index)
            .map_err(limited("caller"));
        let budgets = budgets.and_then(|()| {
            installed
                .limits
                .check_rule(rule.index)
                .map_err(limited("rule"))
        });
        if let Err(limited) = budgets {
            trail.decided(AuditDecision::RateLimited, Some(&rule.name));
            return Err(limited);
        }
        // No double execution: a repeated key gets the first answer, a concurrent one waits.
        let ticket = match idempotency_key {
            None => None,
            Some(key) => match self
                .idempotency
                .claim(
                    caller_name,
                    &key,
                    idempotency::fingerprint(&target.canonical_path, &body),
                )
                .await
            {
                Claim::Run(ticket) => Some(ticket),
                Claim::Replay(stored) => {
                    trail.note("idempotent replay: the answer of an earlier request with the same key; not sent again");
                    return Ok(stored.replay());
                }
                Claim::Mismatch => return Err(GatewayError::IdempotencyKeyReused),
            },
        };
        // Gateway-wide pacing keeps the tenant under Intune's write limit.
        installed
            .limits
            .pace()
            .await
            .map_err(limited("tenant write pacing"))?;
        // Token, durable intent, then Graph (see `Forwarder::send`).
        let result = self
            .forwarder
            .send(ids, &target, &body, &self.broker, trail)
            .await;
        settle(ticket, result, ids)
    }
}

impl Gateway {
    /// Refuses (403) a request that the policy denies whatever its body (see
    /// [`Policy::decide_before_body`]), recording the decision.
    fn refuse_before_body(
        &self,
        policy: &Policy,
        caller: usize,
        caller_name: &str,
        target: &crate::route::Recognised,
        trail: &mut AuditTrail,
    ) -> Result<(), GatewayError> {
        let scope = Scope {
            caller,
            op: target.op,
            version: target.version,
            device: &target.device_id,
        };
        let Some(decision) = policy.decide_before_body(&scope) else {
            return Ok(());
        };
        record_decision(&tracing::Span::current(), trail, &decision);
        trail.note("refused before the body was read: no body could make it allowed");
        Err(GatewayError::Forbidden(forbidden_message(
            &decision,
            caller_name,
            target,
        )))
    }
}

impl Gateway {
    /// A simplified-API body may state the person and reason as fields: they are taken out
    /// (they are not Graph parameters) and added to what the headers state.
    fn stated_in_body(
        &self,
        target: &crate::route::Recognised,
        body: Bytes,
        stated: &mut Stated,
        user: Option<&identity::jwt::TokenUser>,
        trail: &mut AuditTrail,
    ) -> Result<Bytes, GatewayError> {
        if target.surface != crate::route::Surface::Simple {
            return Ok(body);
        }
        let (body, said) = stated_context::split_simple_body(&body)?;
        stated_context::add_body(stated, said, user)?;
        record_stated(&tracing::Span::current(), trail, stated);
        Ok(body)
    }
}

/// Refuses (400) an allowed request that does not state what its rule requires.
fn required_stated(
    rule: &crate::policy::Rule,
    stated: &Stated,
    trail: &mut AuditTrail,
) -> Result<(), GatewayError> {
    let missing = rule
        .require
        .missing(stated.initiator.is_some(), stated.reason.is_some());
    if missing.is_none() {
        return Ok(());
    }
    trail.decided(AuditDecision::Invalid, Some(&rule.name));
    Err(stated_context::ContextError::Missing {
        rule: rule.name.clone(),
        missing,
    }
    .into())
}

fn record_token(span: &tracing::Span, trail: &mut AuditTrail, token: &identity::Verified) {
    span.record("caller.issuer", token.issuer.as_str());
    if let Some(subject) = &token.subject {
        span.record("caller.subject", subject.as_str());
    }
    span.record("caller.token_sha256", token.fingerprint.as_str());
    trail.token(token);
}

fn record_stated(span: &tracing::Span, trail: &mut AuditTrail, stated: &Stated) {
    if let Some(who) = stated.initiator() {
        span.record("caller.initiator", who);
    }
    trail.stated(stated);
}

/// Counts refusals that have a metric of their own (besides `graphgate_errors_total`), and
/// notes why a token was refused in its audit record.
fn count_refusal(err: &GatewayError, trail: &mut AuditTrail) {
    match err {
        GatewayError::Unauthenticated(AuthError::Token(refusal)) => {
            metrics::jwt_refusal(refusal.label());
            trail.note(&format!("token refused: {}", refusal.label()));
        }
        GatewayError::Context(e) => metrics::context_refusal(e.label()),
        _ => {}
    }
}

fn request_span<B>(req: &Request<B>, ids: &RequestIds, cloud: Cloud) -> tracing::Span {
    tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = %req.method(),
        server.address = cloud.endpoints().graph_host,
        request_id = %ids.request_id,
        client_request_id = %ids.client_request_id,
        http.route = tracing::field::Empty,
        caller.name = tracing::field::Empty,
        caller.issuer = tracing::field::Empty,
        caller.subject = tracing::field::Empty,
        caller.token_sha256 = tracing::field::Empty,
        caller.initiator = tracing::field::Empty,
        graph.operation = tracing::field::Empty,
        policy.rule = tracing::field::Empty,
        policy.decision = tracing::field::Empty,
        graph.request_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    )
}

fn record_decision(span: &tracing::Span, trail: &mut AuditTrail, decision: &Decision<'_>) {
    if let Some(rule) = decision.rule_name() {
        span.record("policy.rule", rule);
    }
    let audited = match (decision.allowed, decision.shadow) {
        (true, Some(s)) if !s.allowed => AuditDecision::ShadowDenied,
        (true, _) => AuditDecision::Allowed,
        (false, _) => AuditDecision::Denied,
    };
    trail.decided(audited, decision.rule_name());
    if let Some(shadow) = decision.shadow {
        trail.shadow_rule(shadow.rule);
        tracing::info!(
            policy.shadow_rule = shadow.rule,
            policy.shadow_decision = if shadow.allowed { "allow" } else { "deny" },
            "a shadow rule would change this decision"
        );
    }
}

fn limited(scope: &'static str) -> impl Fn(RetryAfter) -> GatewayError {
    move |retry| GatewayError::RateLimited {
        scope,
        retry_after_secs: retry.secs(),
    }
}
