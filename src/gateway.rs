//! The request pipeline, in one place, outer to inner. [`Gateway::handle`]: request ids,
//! span and audit trail, then the stages of `pipeline`, then the audit outcome:
//! 1. identify: the caller (API key, client certificate, or a JWT from a trusted issuer);
//! 2. admit: operation recognition → the person and reason stated → refusal of what no body
//!    could make allowed → in-flight bounds (the caller's, a bulk request's, then the
//!    gateway's) → the body, read within bounds and validated;
//! 3. decide: policy → what the allowing rule requires stated → (dry run: the caller's dry-run
//!    rate, then answered here) → **approval**: a rule that needs others' approval holds the
//!    request (202 and the approval resource; [`crate::approval`]) once it is within the
//!    caller's and the rule's rate limits, unless it redeems an approved secret read or
//!    breaks glass;
//! 4. execute: the caller's and the rule's rate limits, in devices (unless charged at the
//!    approval step) → idempotency → daily budgets and tenant pacing, taken in one step of
//!    the state store → token → **durable audit intent** → Graph, where nothing that may
//!    have run is ever sent again → one step to settle (the answer kept for duplicates,
//!    what was not sent given back; on a shared store an answer is kept after it went out,
//!    the claim held until then: see [`crate::state::StateStore::finish`]). A write that Intune's Multi Admin Approval holds (a 4xx
//!    with `x-msft-approval-code`) did not run: its budgets are given back and it becomes an
//!    approval (202), sent again once when a person approves it in Intune.
//!
//! The approval API (`/api/v1/approvals`) is answered right after identity; an approved
//! request is run by stage 4 from the stored request, after the policy in force has judged
//! it again (`approvals.rs`).
//!
//! Rate limits, idempotency claims, budgets and pacing live in the state store
//! ([`crate::state`]): in this process, or shared by every replica, one round trip before
//! Graph and one after. A store that cannot answer refuses the request (503
//! `stateStoreUnavailable`): nothing is sent (fail closed).
//!
//! Each step can refuse; nothing reaches Graph until every step before it has passed and the
//! intent is on disk (and nothing more once shutdown has begun, see
//! [`Gateway::begin_drain`]). A refusal's log lines are sampled per caller like its audit
//! record (`refusal_logs`). [`explain`] runs stages 2 and 3 offline (`policy explain`, `policy test`).

mod approvals;
pub mod decision;
pub mod explain;
mod refusal_logs;
mod setup;
#[cfg(test)]
mod tests;

pub use setup::{
    ConnInfo, DEFAULT_DRY_RUNS_PER_SEC, DEFAULT_LOG_REFUSALS_PER_SEC, DEFAULT_MAX_BULK_IN_FLIGHT,
    Gateway, Installed, Limits, ReloaderHealth,
};

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::admit::{self, Admitted, RequestIds};
use crate::answer::{disclosure, dry_run_response, json_response, kept, set_ids};
use crate::approval::{hold, maa};
use crate::audit::records::trail::Origin;
use crate::audit::{AuditDecision, AuditTrail};
use crate::bulk;
use crate::cloud::Cloud;
use crate::error::GatewayError;
use crate::forward::{self, UpstreamError, UpstreamReply};
use crate::idempotency;
use crate::identity::jwt::TokenUser;
use crate::identity::stated::{self, Stated};
use crate::identity::{self, AuthError};
use crate::operation::catalog::Binding;
use crate::operation::route::Recognised;
use crate::operation::simple;
use crate::policy::{Decision, Forbidden, Policy, Scope};
use crate::ratelimit::{self, LimitRefusal, Reservation, Taken};
use crate::slots::KeyedSlot;
use crate::state::{Duplicate, Idempotency};
use crate::{clock, metrics, telemetry};
use refusal_logs::Lines;

/// Where the simplified API's OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

impl Gateway {
    /// Answers one request. Never fails: every error becomes a Graph-shaped response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = clock::Instant::now();
        // The listener makes the ids before the request's task (so even a task that fails
        // is answered with them); a request handed over without them gets its own.
        let ids = req
            .extensions()
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_else(|| RequestIds::from_headers(req.headers()));
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
        let source = origin.source.map(|s| s.ip());
        let mut trail = AuditTrail::begin(&self.audit, origin);
        async {
            let result = self.pipeline(&ids, req, &mut trail).await;
            let (mut resp, error_code, lines) = match result {
                Ok(resp) => (resp, None, Lines::Write { suppressed: 0 }),
                Err(err) => {
                    count_refusal(&err, &mut trail);
                    // A refusal's log lines are sampled per caller (or source), like its record.
                    let lines = self.refusal_lines(&err, &trail, source);
                    let (resp, code) = answer_failure(&err, &ids, lines);
                    (resp, code, lines)
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
            metrics::request_done(
                trail.operation_label(),
                trail.decision_label(),
                status,
                started.elapsed(),
            );
            if lines != Lines::Skip {
                tracing::info!(status, "request done");
            }
            resp
        }
        .instrument(span)
        .await
    }

    /// The pipeline, outer to inner. Each stage can refuse; nothing reaches Graph until every
    /// stage before it has passed and the request's intent is durable in the audit log.
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
        // The API description is public; everything else needs a caller.
        if req.method() == http::Method::GET && req.uri().path() == OPENAPI_PATH {
            let mut doc = simple::openapi(self.limits.max_bulk_devices);
            crate::approval::openapi::document(&mut doc);
            return Ok(json_response(StatusCode::OK, &doc));
        }
        // One policy snapshot for the whole request, even if a reload lands meanwhile.
        let installed = self.installed.load_full();
        // Who is asking comes first: anonymous callers learn nothing about paths.
        let caller = self.identify(&installed, &req, trail).await?;
        // The approval API: for any authenticated caller, answered here.
        if let Some(route) = crate::approval::api::route(req.method(), req.uri().path()) {
            return self.approval_api(&caller, route, req, trail).await;
        }
        // What is asked, read within bounds; the in-flight slots are held until the answer.
        let (mut asked, _slots) = self.admit(&installed.policy, &caller, req, trail).await?;
        // Deny by default; a dry run is answered here; budgets are spent only on sends.
        let (rule, need) = match self.decide(&installed, &caller, &asked, trail).await? {
            Verdict::Answered(resp) => return Ok(resp),
            Verdict::Send { rule, need } => (rule, need),
        };
        // A rule that needs others' approval holds the request here: 202, nothing sent.
        let charged = need.is_some();
        let gate = self.approval_gate(&installed, &caller, &asked, need, trail);
        let approval = match gate.await? {
            Gate::Held(resp) => return Ok(resp),
            Gate::Run(approval) => approval,
        };
        // A write Intune's Multi Admin Approval may hold says who asks and why.
        let justify = maa::Justify {
            request_id: &ids.request_id,
            approval: approval.as_ref().map(|a| (a.id.as_str(), Vec::new())),
            caller: &caller.name,
            initiator: asked.stated.initiator(),
            reason: asked.stated.reason.as_deref(),
        };
        asked.request.maa.justification = self.justification(&asked.request, &justify);
        // At most once to Graph, after a token and the durable intent.
        let sent = self
            .execute(
                ids,
                &installed,
                (&caller, rule, charged),
                &asked.request,
                trail,
            )
            .await;
        // Intune held it (it did not run): the caller gets an approval to watch.
        if let (Err(GatewayError::IntuneHold(hold)), None) = (&sent, &approval) {
            let held = self.intune_held(&installed, &caller, &asked, rule, hold, trail);
            return held.await;
        }
        // A redeemed secret read or a break glass: its approval records how it ended.
        if let Some(approval) = &approval {
            let ended = approvals::outcome_of(&sent, ids);
            self.approvals.settle(&self.state, approval, ended).await;
        }
        sent
    }

    /// Stage 1, identity: the caller, from its API key, client certificate or token (whose
    /// issuer's keys may have to be fetched: a bounded wait, see `identity::jwt`).
    async fn identify<B>(
        &self,
        installed: &Installed,
        req: &Request<B>,
        trail: &mut AuditTrail,
    ) -> Result<Caller, GatewayError> {
        let policy = &installed.policy;
        let peer_cert = req
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.certificate.clone());
        let who = identity::authenticate(
            policy,
            &installed.tokens,
            req.headers(),
            peer_cert.as_deref(),
        )
        .await?;
        let name = policy.callers[who.id.index].name.clone();
        let span = tracing::Span::current();
        span.record("caller.name", name.as_str());
        trail.caller(&name, who.id.method.as_str(), &policy.hash);
        if let Some(token) = &who.token {
            record_token(&span, trail, token);
        }
        let subject = who.token.as_ref().and_then(|t| {
            let subject = t.subject.clone()?;
            Some((t.issuer.clone(), subject))
        });
        Ok(Caller {
            index: who.id.index,
            name,
            user: who.token.and_then(|t| t.user),
            subject,
        })
    }

    /// Stage 2, admission: the operation, then what no body could make allowed is refused
    /// unread, then the in-flight bounds, and only then the body (see [`admit`]: the same
    /// two steps `policy explain` and `policy test` take).
    async fn admit<B>(
        &self,
        policy: &Policy,
        caller: &Caller,
        req: Request<B>,
        trail: &mut AuditTrail,
    ) -> Result<(Asked, InFlight), GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // From recognition on, every outcome is audited.
        let head = admit::admit_head(req.method(), req.uri(), req.headers(), |target| {
            let span = tracing::Span::current();
            span.record("graph.operation", target.op.name);
            span.record("http.route", target.shape.template);
            trail.recognised(target);
        })?;
        // The person and the reason, as the headers (or a delegated token) state them.
        let mut stated = stated::from_headers(req.headers(), caller.user.as_ref())?;
        record_stated(trail, &stated);
        // An approval it redeems, or break glass.
        let ask = crate::approval::hold::ask(req.headers())?;
        // A caller without permission cannot hold a slot by declaring a body it never sends
        // (a bulk one: no rule lets it run any operation executeAction can run).
        refuse_before_body(policy, caller, &head.target, trail)?;
        // One caller cannot take every in-flight slot: its own bound comes first...
        let caller_slot = self
            .caller_in_flight
            .try_acquire(&caller.name)
            .ok_or(GatewayError::CallerInFlight)?;
        // ...bulk requests (up to 100 devices each, the largest bodies) have a smaller
        // bound of their own, so they cannot crowd out single calls...
        let bulk_permit = match head.target.op.binding {
            Binding::Devices => Some(
                Arc::clone(&self.bulk_in_flight)
                    .try_acquire_owned()
                    .map_err(|_| GatewayError::BulkInFlight)?,
            ),
            _ => None,
        };
        // ...then the gateway's: load is shed before the body is waited for.
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded)?;
        let body = admit::read_body(
            req,
            self.limits.max_body_bytes,
            self.limits.body_read_timeout,
        )
        .await?;
        // Parsed once; a simplified-API body may state the person and reason too.
        let max_bulk = self.limits.max_bulk_devices;
        let admitted = head.admit_body(&body, max_bulk, &mut stated, caller.user.as_ref());
        record_stated(trail, &stated);
        let request = admitted?;
        trail.params(&request.params);
        if let Some(plan) = &request.bulk {
            trail.device_ids(&plan.device_ids);
        }
        let slots = InFlight {
            _caller: caller_slot,
            _bulk: bulk_permit,
            _gateway: permit,
        };
        Ok((
            Asked {
                request,
                stated,
                ask,
            },
            slots,
        ))
    }

    /// Stage 3, decision: a matching deny wins, otherwise an allow rule must match, and the
    /// request must state what that rule requires. A dry run is answered here: it sends
    /// nothing, so it spends no budget (a rule's budget is shared, so one caller's checks
    /// would starve another). A request that needs approval is then charged the caller's and
    /// the rule's rate limits, before it is held; any other takes them in stage 4.
    async fn decide<'p>(
        &self,
        installed: &'p Installed,
        caller: &Caller,
        asked: &Asked,
        trail: &mut AuditTrail,
    ) -> Result<Verdict<'p>, GatewayError> {
        let (request, stated) = (&asked.request, &asked.stated);
        // The same question `policy explain` asks (a bulk request, device by device).
        let judgement = decision::judge(&installed.policy, caller.index, request, stated);
        let decision = &judgement.decision;
        record_decision(&tracing::Span::current(), trail, decision);
        if let Some(refusal) = judgement.forbidden(&caller.name, request) {
            return Err(GatewayError::Forbidden(refusal));
        }
        let Some(rule) = decision.rule else {
            return Err(GatewayError::Forbidden(Forbidden::of(
                decision,
                &caller.name,
                &request.target,
            )));
        };
        // The allowing rule may demand the person and the reason: 400 before anything is sent.
        if let Some(unstated) = judgement.unstated() {
            trail.decided(AuditDecision::Invalid, Some(&rule.name));
            return Err(unstated.into());
        }
        // Whether others must approve it first (a dry run says so, and holds nothing).
        let need = hold::need(&installed.policy, caller.index, request, stated, decision);
        if request.dry_run {
            // Dry runs cost nothing at Graph but are answered and audited: a per-caller rate.
            let per_sec = self.limits.dry_runs_per_sec;
            if let Err(refused) = ratelimit::dry_run(&self.state, &caller.name, per_sec).await {
                if refused.is_limit() {
                    trail.decided(AuditDecision::RateLimited, Some(&rule.name));
                }
                return Err(refused.into());
            }
            trail.decided(AuditDecision::DryRun, Some(&rule.name));
            let doc = dry_run_response(
                self.cloud(),
                &caller.name,
                &request.target,
                (decision, need.as_ref().map(|n| &n.approval)),
                &request.params,
            );
            return Ok(Verdict::Answered(doc));
        }
        // A request that needs approval is held, not sent: its rate limits are charged here,
        // before it is held (its approved run does not charge them again). Any other request
        // takes them in stage 4, in the one step of the state store before Graph. Like every
        // step that counts, they live in the state store (a store that cannot answer refuses
        // the request: fail closed) and count devices, as budgets do.
        if need.is_some() {
            let limits =
                installed
                    .limits
                    .check(&self.state, (caller.index, rule.index), request.devices());
            if let Err(refused) = limits.await {
                if refused.is_limit() {
                    trail.decided(AuditDecision::RateLimited, Some(&rule.name));
                }
                return Err(refused.into());
            }
        }
        Ok(Verdict::Send {
            rule: rule.index,
            need,
        })
    }

    /// Stage 4, execution: the only way to Graph, in this order and nowhere else. `charged`:
    /// the request's rate limits were charged already (it needed approval).
    async fn execute(
        &self,
        ids: &RequestIds,
        installed: &Installed,
        (caller, rule, charged): (&Caller, usize, bool),
        request: &Admitted,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        // One step in the store: the rate limits, the idempotency claim (a repeated key gets
        // the first answer, a concurrent one waits for it), the daily budgets and a tenant
        // write slot (Intune's write limit).
        let reservation = match self
            .reserve(installed, (caller, rule, charged), request, trail)
            .await?
        {
            Reserved::Run(reservation) => reservation,
            Reserved::Replayed(resp) => return Ok(resp),
        };
        for (budget, window, window_end, devices) in reservation.counted() {
            trail.budget(budget, window.as_str(), window_end, devices);
        }
        let sent = self.send(ids, request, trail).await;
        // Intune's Multi Admin Approval held it: it did not run.
        let held = self.intune_hold(&sent, trail);
        // Budgets and pacing count what reached Graph (or may have): the rest is given back.
        let reached = match &sent {
            _ if held.is_some() => false,
            Ok(Ok(_)) => true,
            Ok(Err(e)) => e.outcome_unknown(),
            Err(_) => false,
        };
        if !reached {
            trail.budgets_refunded();
        }
        // The answer (or an unknown outcome) is kept for duplicates of the same key, in the
        // same step of the store. A request Intune held did not run: nothing is kept for its
        // key (the claim is let go), so a repeat is sent, and Graph's 409 attaches it to the
        // hold.
        let kept = match &sent {
            _ if held.is_some() => None,
            Ok(result) if reservation.is_keyed() => kept(result, ids),
            _ => None,
        };
        reservation.settle(&self.state, reached, kept).await;
        if let Some(hold) = held {
            return Err(GatewayError::IntuneHold(hold));
        }
        let sent = sent?;
        if request.target.op.discloses_secret() {
            return Ok(disclosure(sent?, trail));
        }
        if let (Ok(reply), Some(_)) = (&sent, &request.bulk)
            && reply.status == StatusCode::OK
        {
            trail.device_outcomes(bulk::outcomes(&reply.body));
        }
        Ok(sent?.into_response())
    }

    /// A token, the durable intent, then Graph. The outer error: nothing was sent.
    async fn send(
        &self,
        ids: &RequestIds,
        request: &Admitted,
        trail: &mut AuditTrail,
    ) -> Result<Result<UpstreamReply, UpstreamError>, GatewayError> {
        // A token before the intent: without one nothing can be sent, so nothing is intended.
        let token = forward::acquire_token(&self.broker).await?;
        // Shutting down: what is not yet sent is not sent (another replica will take it).
        if self.is_draining() {
            return Err(GatewayError::ShuttingDown);
        }
        trail.token_app_id(token.claims.appid.as_deref());
        // Write-ahead: the intent is durable before Graph is asked to act. If the audit log
        // cannot take it, nothing is sent (fail closed).
        let intent = trail.intent().await?;
        // Then Graph, under that one intent. Only what certainly did not run is retried (a
        // refused token, once; throttling); nothing that may have run is ever sent again.
        Ok(self
            .forwarder
            .send(ids, request, token, &intent, &self.broker, trail)
            .await)
    }

    /// Everything the request takes from the state store, in one step (see
    /// [`crate::ratelimit::PolicyLimits::take`]): the caller's and the rule's rate limits
    /// (in devices; not when `charged` already), the idempotency claim (a secret read is
    /// never stored for replay: its answer goes to this caller only), room on every budget
    /// that applies and a tenant write slot, waiting for a slot up to the pacing's bound. A
    /// limit or budget that refuses is audited as rate-limited.
    async fn reserve<'p>(
        &self,
        installed: &'p Installed,
        (caller, rule, charged): (&Caller, usize, bool),
        request: &Admitted,
        trail: &mut AuditTrail,
    ) -> Result<Reserved<'p>, GatewayError> {
        // One device per request, except a bulk one: as many as it lists, each counted
        // against the operation its actionName runs.
        let op = request
            .bulk
            .as_ref()
            .map_or(request.target.op, |plan| plan.op);
        let key = request
            .idempotency_key
            .as_ref()
            .filter(|_| !request.target.op.discloses_secret());
        let idempotency = key.map(|key| Idempotency {
            caller: &caller.name,
            key,
            fingerprint: idempotency::fingerprint(&request.target.canonical_path, &request.body),
        });
        let take = installed.limits.take(
            &self.state,
            (caller.index, rule),
            op,
            (request.devices(), charged),
            idempotency,
        );
        let refused = match take.await {
            Ok(Taken::Run(reservation)) => return Ok(Reserved::Run(reservation)),
            Ok(Taken::Duplicate(Duplicate::Replay(stored))) => {
                trail.note("idempotent replay: the answer of an earlier request with the same key; not sent again");
                return Ok(Reserved::Replayed(stored.replay()));
            }
            Ok(Taken::Duplicate(Duplicate::Mismatch)) => {
                return Err(GatewayError::IdempotencyKeyReused);
            }
            Ok(Taken::Duplicate(Duplicate::InFlight)) => {
                return Err(GatewayError::IdempotencyInFlight);
            }
            Err(refused) => refused,
        };
        if matches!(
            refused,
            LimitRefusal::RateLimited { .. }
                | LimitRefusal::OverRate { .. }
                | LimitRefusal::OverBudget { .. }
        ) {
            let name = installed.policy.rules.get(rule).map(|r| r.name.as_str());
            trail.decided(AuditDecision::RateLimited, name);
        }
        Err(GatewayError::from(refused))
    }
}

/// The authenticated caller of one request.
struct Caller {
    /// Index into the policy's callers.
    index: usize,
    /// Its name (rules, audit, logs, the in-flight bound).
    name: String,
    /// The signed-in user, when the caller's token is a delegated one.
    user: Option<TokenUser>,
    /// Its token's issuer and subject, for JWT callers.
    subject: Option<(String, String)>,
}

/// What a request asks, admitted: the operation and its body, the person and reason it
/// states, and what it asks of an approval.
struct Asked {
    request: Admitted,
    stated: Stated,
    ask: hold::Ask,
}

/// The in-flight slots a request holds (the caller's, a bulk one's, the gateway's) until it
/// is answered.
struct InFlight {
    _caller: KeyedSlot<String>,
    _bulk: Option<OwnedSemaphorePermit>,
    _gateway: OwnedSemaphorePermit,
}

/// What the decision stage leaves for execution.
enum Verdict<'p> {
    /// Allowed, within its rate limits: send it under the policy's rule `rule`, once the
    /// approval it needs (if any) lets it.
    Send {
        /// The allowing rule's index.
        rule: usize,
        /// The approval its rule needs.
        need: Option<hold::Need<'p>>,
    },
    /// Answered without sending (a dry run).
    Answered(Response<Full<Bytes>>),
}

/// What the approval gate says.
enum Gate {
    /// Held: answered 202 with the approval resource, nothing sent.
    Held(Response<Full<Bytes>>),
    /// Send it (under this approval, when it redeems one or breaks glass).
    Run(Option<crate::approval::run::Running>),
}

/// What the state store says about a request.
enum Reserved<'p> {
    /// Run it; the reservation is settled once it is answered.
    Run(Reservation<'p>),
    /// A duplicate, answered with the first request's answer.
    Replayed(Response<Full<Bytes>>),
}

/// Refuses (403) a request that the policy denies whatever its body (see
/// [`Policy::decide_before_body`]), recording the decision.
fn refuse_before_body(
    policy: &Policy,
    caller: &Caller,
    target: &Recognised,
    trail: &mut AuditTrail,
) -> Result<(), GatewayError> {
    let Some(decision) = policy.decide_before_body(&Scope::of(caller.index, target)) else {
        return Ok(());
    };
    record_decision(&tracing::Span::current(), trail, &decision);
    trail.note("refused before the body was read: no body could make it allowed");
    Err(GatewayError::Forbidden(Forbidden::of(
        &decision,
        &caller.name,
        target,
    )))
}

impl Gateway {
    /// Whether a failed request's log lines are written: a refusal (4xx, or load shed) is
    /// sampled per caller, a failed authentication per source; the gateway's own failures
    /// are always written.
    fn refusal_lines(
        &self,
        err: &GatewayError,
        trail: &AuditTrail,
        source: Option<std::net::IpAddr>,
    ) -> Lines {
        let refusal =
            err.answer().status.is_client_error() || matches!(err, GatewayError::Overloaded);
        if !refusal {
            return Lines::Write { suppressed: 0 };
        }
        let unauthenticated = matches!(err, GatewayError::Unauthenticated(_));
        self.refusal_logs
            .admit(trail.caller_name(), source, unauthenticated)
    }
}

/// The response for a failure; its chain goes to the log with the request id (unless its
/// lines are sampled away).
fn answer_failure(
    err: &GatewayError,
    ids: &RequestIds,
    lines: Lines,
) -> (Response<Full<Bytes>>, Option<&'static str>) {
    let answer = err.answer();
    if let Lines::Write { suppressed } = lines {
        tracing::info!(
            error.code = answer.code,
            error = %crate::error::chain(err),
            request_id = %ids.request_id,
            log.suppressed = (suppressed > 0).then_some(suppressed),
            "request refused or failed"
        );
    }
    let body = answer.body(&ids.request_id, &ids.client_request_id);
    (answer.response(body), Some(answer.code))
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
        caller.initiator_oid = tracing::field::Empty,
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

/// The token's issuer, subject and fingerprint (never the token) on the span and the audit.
fn record_token(span: &tracing::Span, trail: &mut AuditTrail, token: &identity::Verified) {
    span.record("caller.issuer", token.issuer.as_str());
    if let Some(subject) = &token.subject {
        span.record("caller.subject", subject.as_str());
    }
    span.record("caller.token_sha256", token.fingerprint.as_str());
    trail.token(token);
}

fn record_stated(trail: &mut AuditTrail, stated: &Stated) {
    let span = tracing::Span::current();
    if let Some(who) = stated.person() {
        span.record("caller.initiator", who.primary());
        if let Some(oid) = &who.oid {
            span.record("caller.initiator_oid", oid.as_str());
        }
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
