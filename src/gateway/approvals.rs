//! The gateway's side of approvals: the gate in stage 3 (hold, redeem, break glass), the
//! approval API's requests, and running what was approved: the stored request admitted
//! again as it was held, judged by the policy in force now (a revoked rule, or groups its
//! reviews no longer meet, fail it with the reason), then stage 4 as for any request.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use tracing::Instrument;

use super::{Asked, Caller, Gate, Gateway, Installed, decision, record_decision, record_stated};
use crate::admit::{self, Admitted, RequestIds};
use crate::answer::json_response;
use crate::approval::api::{self, Route, RouteError};
use crate::approval::hold::{Ask, Asking, Need};
use crate::approval::maa::{self, Hold};
use crate::approval::model::{Finish, Outcome, Resource, Stored};
use crate::approval::people::{Identity, Names};
use crate::approval::review::tally;
use crate::approval::run::{Ended, Ran, Runner};
use crate::approval::{ApprovalError, rfc3339};
use crate::audit::records::trail::Origin;
use crate::audit::{AuditDecision, AuditTrail};
use crate::error::GatewayError;
use crate::forward::{self, UpstreamError, UpstreamReply};
use crate::identity::stated::{self, Source, Stated};
use crate::operation::route::RouteError as PathError;
use crate::policy::Person;

impl Gateway {
    /// The approval gate: a request whose rule needs approval is held (202), redeems an
    /// approved secret read, or breaks glass; any other goes on.
    pub(super) async fn approval_gate(
        &self,
        installed: &Installed,
        caller: &Caller,
        asked: &Asked,
        need: Option<Need<'_>>,
        trail: &mut AuditTrail,
    ) -> Result<Gate, GatewayError> {
        let Some(need) = need else {
            if asked.ask != Ask::Hold {
                trail.note("X-Graphgate-Approval / X-Graphgate-Break-Glass ignored: the rule needs no approval");
            }
            return Ok(Gate::Run(None));
        };
        let asking = Asking {
            cloud: self.cloud(),
            tenant: &self.broker.key().tenant,
            policy_sha256: &installed.policy.hash,
            caller: &caller.name,
            requester: identity_of(caller, &asked.stated),
            request: &asked.request,
            stated: &asked.stated,
        };
        let rule = need.rule.name.as_str();
        let (state, approvals) = (&self.state, &self.approvals);
        let gate = match &asked.ask {
            Ask::Hold => approvals.hold(state, &asking, &need).await.map(|r| {
                trail.decided(AuditDecision::Held, Some(rule));
                trail.approval(&r.id, &r.request_sha256, "requested", false);
                Gate::Held(accepted(&r))
            }),
            Ask::Redeem(id) => approvals.redeem(state, &asking, id).await.map(|run| {
                trail.approval(&run.id, &run.request_sha256, "redeemed", false);
                Gate::Run(Some(run))
            }),
            Ask::BreakGlass(reason) => {
                let run = approvals.break_glass(state, &asking, &need, reason).await;
                run.map(|run| {
                    trail.approval(&run.id, &run.request_sha256, "break_glass", true);
                    trail.note(&format!("break glass: {reason}"));
                    Gate::Run(Some(run))
                })
            }
        };
        gate.map_err(|e| {
            trail.decided(refused_as(&e), Some(rule));
            GatewayError::Approval(e)
        })
    }

    /// A request to the approval API, from `caller`.
    pub(super) async fn approval_api<B>(
        &self,
        caller: &Caller,
        route: Result<Route, RouteError>,
        req: Request<B>,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let route = route.map_err(|e| {
            GatewayError::from(admit::InboundError::Route(match e {
                RouteError::NotFound => PathError::NotFound,
                RouteError::Method(allow) => PathError::MethodNotAllowed(allow),
            }))
        })?;
        // The same in-flight bounds as any request.
        let _caller_slot = self
            .caller_in_flight
            .try_acquire(&caller.name)
            .ok_or(GatewayError::CallerInFlight)?;
        let _permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded)?;
        let stated = stated::from_headers(req.headers(), caller.user.as_ref())?;
        let (state, approvals) = (&self.state, &self.approvals);
        let (id, action) = match route {
            Route::List => {
                let query = req.uri().query().map(str::to_owned);
                let list = approvals.list_for(state, &caller.name, query.as_deref());
                return Ok(json_response(StatusCode::OK, &list.await?));
            }
            Route::Show(id) => {
                let one = approvals.visible(state, &caller.name, &id).await?;
                return Ok(show(&one.resource));
            }
            Route::Act(id, action) => (id, action),
        };
        // From here on audited, as the approval's operation and devices (when the store
        // can say what they are).
        record_stated(trail, &stated);
        trail.approval_request(&id, action.as_str());
        if let Ok(Some((_, s))) = approvals.load(state, &id).await {
            let r = &s.resource;
            trail.approval_target(&r.operation, &r.devices);
            let glass = r.break_glass.is_some();
            trail.approval(&r.id, &r.request_sha256, action.as_str(), glass);
            trail.decided(AuditDecision::Allowed, Some(&r.rule));
        }
        let json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        let declared = req.headers().contains_key(http::header::CONTENT_TYPE)
            || req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v != "0");
        if declared && !json {
            trail.decided(AuditDecision::Invalid, None);
            return Err(admit::InboundError::UnsupportedMediaType.into());
        }
        let body = admit::read_body(req, api::MAX_BODY_BYTES, self.limits.body_read_timeout)
            .await
            .inspect_err(|_| trail.decided(AuditDecision::Invalid, None))?;
        let who = identity_of(caller, &stated);
        match approvals.act(state, self, &who, (&id, action), &body).await {
            Ok(after) => Ok(show(&after.resource)),
            Err(e) => {
                trail.decided(refused_as(&e), None);
                Err(e.into())
            }
        }
    }

    /// Keeps approvals' deadlines and starts approved requests nobody has, until `shutdown`.
    pub async fn keep_approvals_on_time(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let gateway = Arc::clone(&self);
        self.approvals
            .keep_time(&self.state, gateway.as_ref(), shutdown)
            .await;
    }

    /// Records on each approval what its device says became of the action it ran (from
    /// outcome reconciliation), until the reconciler stops.
    pub async fn record_device_actions(
        self: Arc<Self>,
        mut completions: tokio::sync::broadcast::Receiver<crate::audit::reconcile::Completed>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match completions.recv().await {
                Ok(done) => {
                    let recorded = self.approvals.record_device_action(&self.state, &done);
                    if let Err(e) = recorded.await {
                        tracing::warn!(error = %e, approval_id = %done.approval_id, "could not record the device's action result on its approval (the audit log has it)");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "device action results missed by approvals (the audit log has them)"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Runs `approval`'s stored request, audited under a request id of its own, in a span
    /// of its own (a child of the request whose review ran it, if any).
    async fn run_stored(&self, approval: &Stored) -> Ended {
        let ids = RequestIds::from_headers(&HeaderMap::new());
        let span = tracing::info_span!(
            "approved_run",
            otel.kind = "internal",
            server.address = self.cloud().endpoints().graph_host,
            request_id = %ids.request_id,
            client_request_id = %ids.client_request_id,
            approval.id = %approval.resource.id,
            caller.name = %approval.resource.caller,
            caller.initiator = tracing::field::Empty,
            graph.operation = %approval.resource.operation,
            http.route = tracing::field::Empty,
            policy.rule = tracing::field::Empty,
            policy.decision = tracing::field::Empty,
            graph.request_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        self.run_in(&ids, approval).instrument(span).await
    }

    async fn run_in(&self, ids: &RequestIds, approval: &Stored) -> Ended {
        let origin = Origin {
            audit_id: &ids.request_id,
            client_request_id: &ids.client_request_id,
            source: None,
            cloud: self.cloud().to_string(),
            tenant: &self.broker.key().tenant,
        };
        let mut trail = AuditTrail::begin(&self.audit, origin);
        let r = &approval.resource;
        trail.approval(&r.id, &r.request_sha256, "run", false);
        let sent = self.rerun(ids, approval, &mut trail).await;
        let (status, code) = match &sent {
            Ok(resp) => (resp.status().as_u16(), None),
            Err(e) => {
                let answer = e.answer();
                tracing::info!(error = %crate::error::chain(e), "an approved request failed");
                (answer.status.as_u16(), Some(answer.code))
            }
        };
        trail.finish(status, code).await;
        let span = tracing::Span::current();
        span.record("http.response.status_code", status);
        span.record("policy.decision", trail.decision_label());
        outcome_of(&sent, ids)
    }

    /// The stored request, admitted again as it was held, judged by the policy in force
    /// now, then sent by stage 4.
    async fn rerun(
        &self,
        ids: &RequestIds,
        approval: &Stored,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        let installed = self.installed.load_full();
        let policy = &installed.policy;
        let r = &approval.resource;
        let revoked =
            |why: String| GatewayError::Forbidden(crate::policy::Forbidden::Approval(why));
        let index = policy
            .caller_index(&r.caller)
            .ok_or_else(|| revoked(format!("caller '{}' is no longer in the policy", r.caller)))?;
        trail.caller(&r.caller, "approval", &policy.hash);
        let caller = Caller {
            index,
            name: r.caller.clone(),
            user: None,
            subject: None,
        };
        let method: Method = r
            .method
            .parse()
            .map_err(|_| ApprovalError::Damaged(r.id.clone()))?;
        let uri: Uri = r
            .path
            .parse()
            .map_err(|_| ApprovalError::Damaged(r.id.clone()))?;
        let head = admit::admit_head(&method, &uri, &HeaderMap::new(), |t| trail.recognised(t))?;
        let source = match approval.held.initiator_source.as_deref() {
            Some("body") => Source::Body,
            Some("token") => Source::Token,
            _ => Source::Header,
        };
        let held = &approval.held;
        let person = match (&held.initiator_upn, &held.initiator_oid, &r.initiator) {
            (None, None, None) => None,
            (None, None, Some(who)) => Some(Person::stated(who)),
            (upn, oid, _) => Some(Person {
                upn: upn.clone(),
                oid: oid.clone(),
            }),
        };
        let mut stated = Stated {
            initiator: person.map(|who| (who, source)),
            reason: r.reason.clone(),
        };
        record_stated(trail, &stated);
        let body = Bytes::from(approval.held.body.0.clone());
        let mut request =
            head.admit_body(&body, self.limits.max_bulk_devices, &mut stated, None)?;
        // A second run of this approval (there is none: the store gave it to one replica)
        // would get the first one's answer. Intune's approved re-send is a run of its own.
        let resend = r.maa.as_ref().filter(|m| m.resent);
        request.idempotency_key = Some(match resend {
            Some(m) => format!("approval-{}-intune-{}", r.id, m.code),
            None => format!("approval-{}", r.id),
        });
        if let Some(m) = resend {
            trail.note(&format!(
                "approved in Intune (Multi Admin Approval code {}): sent again, once, with the code",
                m.code
            ));
            request.maa.code = http::HeaderValue::try_from(m.code.as_str()).ok();
        }
        let approvers: Vec<&str> = r
            .reviews
            .iter()
            .filter(|v| v.decision == crate::approval::model::Verdict::Approve)
            .map(|v| v.reviewer.as_str())
            .collect();
        let justify = maa::Justify {
            request_id: &ids.request_id,
            approval: Some((r.id.as_str(), approvers)),
            caller: &r.caller,
            initiator: r.initiator.as_deref(),
            reason: r.reason.as_deref(),
        };
        request.maa.justification = self.justification(&request, &justify);
        trail.params(&request.params);
        if let Some(plan) = &request.bulk {
            trail.device_ids(&plan.device_ids);
        }
        // The policy in force now decides: it may have revoked the rule.
        let judgement = decision::judge(policy, index, &request, &stated);
        record_decision(&tracing::Span::current(), trail, &judgement.decision);
        if let Some(refusal) = judgement.forbidden(&caller.name, &request) {
            return Err(GatewayError::Forbidden(refusal));
        }
        let rule = judgement
            .decision
            .rule
            .ok_or_else(|| revoked("no rule allows it any more".into()))?;
        if let Some(unstated) = judgement.unstated() {
            return Err(unstated.into());
        }
        // And the approval it needs now: the reviews given must meet it.
        let decision = &judgement.decision;
        if let Some(need) = crate::approval::hold::need(policy, index, &request, &stated, decision)
            && !reviews_meet(approval, &need)
        {
            return Err(revoked(format!(
                "the policy in force (rule '{}') needs approvals this request did not get: {}",
                need.rule.name,
                need.approval.describe()
            )));
        }
        // Its rate limits were charged when it was asked for (held for approval here, or
        // sent and held by Intune): this run, or Intune's approved re-send, is not charged
        // again. Budgets and pacing are taken for it (a hold by Intune gave them back).
        let charged = true;
        self.execute(
            ids,
            &installed,
            (&caller, rule.index, charged),
            &request,
            trail,
        )
        .await
    }
}

impl Runner for Gateway {
    fn run<'a>(&'a self, approval: &'a Stored) -> Ran<'a> {
        Box::pin(self.run_stored(approval))
    }

    fn read_intune<'a>(&'a self, code: &'a str) -> maa::Read<'a> {
        Box::pin(self.read_intune_request(code))
    }
}

impl Gateway {
    /// The `x-msft-approval-justification` a write of `request` carries: with Multi Admin
    /// Approval handling on, for the operations it justifies (a bulk request by the
    /// operation it runs).
    pub(super) fn justification(
        &self,
        request: &Admitted,
        justify: &maa::Justify<'_>,
    ) -> Option<HeaderValue> {
        let settings = self.limits.maa.as_ref()?;
        let op = request.bulk.as_ref().map_or(request.target.op, |p| p.op);
        let write = request.target.op.invocation.method() != Method::GET;
        (write && settings.justifies(op.name))
            .then(|| maa::justification(&maa::justification_text(justify)))
    }

    /// Intune's hold in Graph's answer `sent`, when Multi Admin Approval handling is on: a
    /// 4xx carrying a well-formed `x-msft-approval-code` (whatever the status). A malformed
    /// code is noted and the answer stays Graph's.
    pub(super) fn intune_hold(
        &self,
        sent: &Result<Result<UpstreamReply, UpstreamError>, GatewayError>,
        trail: &mut AuditTrail,
    ) -> Option<Hold> {
        let Ok(Ok(reply)) = sent else {
            return None;
        };
        if self.limits.maa.is_none() || !reply.status.is_client_error() {
            return None;
        }
        match maa::code_of(&reply.approval_code) {
            maa::Code::Absent => None,
            maa::Code::Valid(code) => Some(Hold {
                code,
                status: reply.status.as_u16(),
            }),
            maa::Code::Garbage(shown) => {
                trail.note(&format!(
                    "Graph's answer carried a malformed x-msft-approval-code '{shown}': not taken for an Intune hold; answered as Graph's error, nothing sent again"
                ));
                None
            }
        }
    }

    /// A direct call Intune held: the approval the caller watches (new, or the one this
    /// code already has), answered `202`.
    pub(super) async fn intune_held(
        &self,
        installed: &Installed,
        caller: &Caller,
        asked: &Asked,
        rule: usize,
        hold: &Hold,
        trail: &mut AuditTrail,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        let asking = Asking {
            cloud: self.cloud(),
            tenant: &self.broker.key().tenant,
            policy_sha256: &installed.policy.hash,
            caller: &caller.name,
            requester: identity_of(caller, &asked.stated),
            request: &asked.request,
            stated: &asked.stated,
        };
        let rule = installed
            .policy
            .rules
            .get(rule)
            .ok_or_else(|| GatewayError::IntuneHold(hold.clone()))?;
        let attached = hold.status == 409;
        let made = self
            .approvals
            .intune_hold(&self.state, &asking, rule, hold, attached)
            .await;
        let r = made.map_err(|e| {
            trail.decided(refused_as(&e), Some(&rule.name));
            GatewayError::Approval(e)
        })?;
        trail.decided(AuditDecision::Held, Some(&rule.name));
        trail.approval(&r.id, &r.request_sha256, "held_by_intune", false);
        trail.note(&format!(
            "Intune's Multi Admin Approval holds it (Graph answered {} with approval code {}{}); it did not run",
            hold.status,
            hold.code,
            if attached { ", attached to the pending request" } else { "" }
        ));
        Ok(accepted(&r))
    }

    /// Reads Intune's approval request `code` from Graph (its own token; bounded in time
    /// and size).
    async fn read_intune_request(&self, code: &str) -> Result<maa::Polled, String> {
        let token = forward::acquire_token(&self.broker)
            .await
            .map_err(|e| format!("no token: {e}"))?;
        let host = self.cloud().endpoints().graph_host;
        let uri = format!("https://{host}/beta/deviceManagement/operationApprovalRequests/{code}");
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.token.expose()))
            .map_err(|e| e.to_string())?;
        bearer.set_sensitive(true);
        let req = Request::get(uri)
            .header(http::header::AUTHORIZATION, bearer)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let read = async {
            let resp = self
                .forwarder
                .http
                .request(req)
                .await
                .map_err(|e| format!("Graph could not be reached: {e}"))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), maa::MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    format!(
                        "an answer larger than {} bytes, or cut short",
                        maa::MAX_DOCUMENT_BYTES
                    )
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("Graph answered {status}"));
            }
            maa::read_document(code, &body)
        };
        tokio::time::timeout(maa::READ_TIMEOUT, read)
            .await
            .map_err(|_| "no answer in time".to_owned())?
    }
}

/// `202 Accepted` with the approval's `Location` and the resource.
fn accepted(resource: &Resource) -> Response<Full<Bytes>> {
    let doc = serde_json::to_value(resource).unwrap_or_default();
    let mut resp = json_response(StatusCode::ACCEPTED, &doc);
    if let Ok(at) = HeaderValue::try_from(format!("{}/{}", api::PREFIX, resource.id)) {
        resp.headers_mut().insert(LOCATION, at);
    }
    resp
}

/// The approval as a `200` answer.
fn show(resource: &Resource) -> Response<Full<Bytes>> {
    let doc = serde_json::to_value(resource).unwrap_or_default();
    json_response(StatusCode::OK, &doc)
}

/// Whether `approval`'s reviews meet `need` (the approval the policy in force asks for).
fn reviews_meet(approval: &Stored, need: &Need<'_>) -> bool {
    let mut now = approval.clone();
    now.held.approvers = need
        .approval
        .groups
        .iter()
        .map(|g| g.approvers.clone())
        .collect();
    now.resource.groups = need
        .approval
        .groups
        .iter()
        .map(|g| crate::approval::model::Group {
            approvers: g.named.clone(),
            required: g.required,
            approvals: Vec::new(),
        })
        .collect();
    let t = tally(&now);
    t.met && t.rejections < need.approval.deny
}

/// Who `caller` is, with the person it states (or its token's user), by every id known.
fn identity_of(caller: &Caller, stated: &Stated) -> Identity {
    let mut ids: Vec<&str> = Vec::new();
    if let Some(user) = &caller.user {
        ids.push(&user.oid);
        ids.extend(user.upn.as_deref());
    }
    ids.extend(stated.person().into_iter().flat_map(|p| p.ids()));
    let names = Names {
        subject: caller
            .subject
            .as_ref()
            .map(|(i, s)| (i.as_str(), s.as_str())),
        person_ids: &ids,
        person: stated.initiator(),
    };
    Identity::of(&caller.name, names)
}

/// How a refused approval step is audited.
fn refused_as(e: &ApprovalError) -> AuditDecision {
    match e {
        ApprovalError::TooManyPending(_) => AuditDecision::RateLimited,
        ApprovalError::BadInput(_)
        | ApprovalError::BreakGlassBulk
        | ApprovalError::NothingToRedeem => AuditDecision::Invalid,
        ApprovalError::Store(_) | ApprovalError::Damaged(_) => AuditDecision::Failed,
        _ => AuditDecision::Denied,
    }
}

/// How a run ended, as its approval records it (never the answer's body: a secret read's
/// value goes to its caller only).
pub(super) fn outcome_of(
    sent: &Result<Response<Full<Bytes>>, GatewayError>,
    ids: &RequestIds,
) -> Ended {
    let time = rfc3339(crate::state::wall_clock_ms());
    let hold = match sent {
        Err(GatewayError::IntuneHold(hold)) => Some(hold.clone()),
        _ => None,
    };
    let (finish, outcome) = match sent {
        Ok(resp) => {
            let status = resp.status();
            let finish = match status.is_success() {
                true => Finish::Succeeded,
                false => Finish::Failed,
            };
            let graph_request_id = resp
                .headers()
                .get(admit::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let outcome = Outcome {
                status: status.as_u16(),
                error_code: None,
                message: None,
                graph_request_id,
                audit_id: ids.request_id.clone(),
                time,
                device_action: None,
            };
            (finish, outcome)
        }
        Err(e) => {
            let answer = e.answer();
            let finish = match e.outcome_unknown() {
                true => Finish::Unknown,
                false => Finish::Failed,
            };
            let outcome = Outcome {
                status: answer.status.as_u16(),
                error_code: Some(answer.code.to_owned()),
                message: Some(answer.message.into_owned()),
                graph_request_id: None,
                audit_id: ids.request_id.clone(),
                time,
                device_action: None,
            };
            (finish, outcome)
        }
    };
    (finish, outcome, hold)
}
