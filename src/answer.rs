//! How the gateway words its own answers: the ids on every response, the dry-run document,
//! a secret's disclosure, and the stored answers that idempotent replays get.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use crate::admit::{CLIENT_REQUEST_ID, REQUEST_ID, RequestIds};
use crate::cloud::Cloud;
use crate::forward::{UpstreamError, UpstreamReply};
use crate::idempotency::StoredResponse;
use crate::operation::route::Recognised;
use crate::operation::schema::Params;
use crate::policy::Decision;

/// The answer kept for duplicates of a keyed request: Graph's, when the action may have run
/// (an unknown outcome included, as the error its caller gets); `None` when it certainly did
/// not run, so a retry may run it.
pub fn kept(
    result: &Result<UpstreamReply, UpstreamError>,
    ids: &RequestIds,
) -> Option<StoredResponse> {
    match result {
        Ok(reply) if reply.may_have_run() => Some(StoredResponse::new(
            reply.status,
            reply.headers.clone(),
            reply.body.clone(),
        )),
        Ok(_) => None,
        Err(err) if err.outcome_unknown() => {
            let answer = crate::error::upstream_answer(err);
            let body = answer.body(&ids.request_id, &ids.client_request_id);
            Some(StoredResponse::of(&answer.response(body.clone()), body))
        }
        Err(_) => None,
    }
}

/// A secret read's answer: to the caller only, never cached (`Cache-Control: no-store`);
/// the audit records that a secret was disclosed and its size, not its value.
pub fn disclosure(
    reply: UpstreamReply,
    trail: &mut crate::audit::AuditTrail,
) -> Response<Full<Bytes>> {
    if reply.status.is_success() {
        trail.disclosed(reply.body.len());
    }
    let mut resp = reply.into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp.headers_mut()
        .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Every response carries the gateway's request id and the client-request-id; Graph's own
/// `request-id` (when Graph answered) is kept and the gateway's goes in `x-graphgate-request-id`.
pub fn set_ids(headers: &mut HeaderMap, ids: &RequestIds) {
    if let Ok(v) = HeaderValue::try_from(ids.request_id.as_str()) {
        headers.insert(HeaderName::from_static("x-graphgate-request-id"), v.clone());
        headers.entry(REQUEST_ID).or_insert(v);
    }
    if let Ok(v) = HeaderValue::try_from(ids.client_request_id.as_str()) {
        headers.insert(CLIENT_REQUEST_ID, v);
    }
}

/// A dry run's answer: what the policy decided and what would be sent; when others must
/// approve it first, what approval (and that nothing would be sent until then).
pub fn dry_run_response(
    cloud: Cloud,
    caller: &str,
    target: &Recognised,
    (decision, approval): (&Decision<'_>, Option<&crate::policy::Approval>),
    params: &Params,
) -> Response<Full<Bytes>> {
    let shadow = decision
        .shadow
        .map(|s| serde_json::json!({ "decision": if s.allowed { "allow" } else { "deny" }, "rule": s.rule }));
    let approval = approval.map(|a| {
        let groups: Vec<serde_json::Value> = a
            .groups
            .iter()
            .map(|g| serde_json::json!({ "approvers": g.named, "required": g.required }))
            .collect();
        serde_json::json!({
            "required": true,
            "groups": groups,
            "deny": a.deny,
            "ttlSeconds": a.ttl.as_secs(),
            "executeWithinSeconds": a.execute_within.as_secs(),
            "summary": a.describe(),
        })
    });
    let mut doc = serde_json::json!({
        "dryRun": true,
        "decision": "allow",
        "rule": decision.rule_name(),
        "shadow": shadow,
        "caller": caller,
        "operation": target.op.name,
        "apiVersion": target.version.as_str(),
        "device": target.device_id,
        "wouldSend": format!("{} https://{}{}", target.op.invocation.method_name(), cloud.endpoints().graph_host, target.canonical_path),
        "parameters": params.to_redacted_json(),
    });
    if let Some(approval) = approval {
        doc["approval"] = approval;
    }
    let mut resp = json_response(StatusCode::OK, &doc);
    resp.headers_mut().insert(
        HeaderName::from_static("preference-applied"),
        HeaderValue::from_static("dry-run"),
    );
    resp
}

pub fn json_response(status: StatusCode, doc: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
