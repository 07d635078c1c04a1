//! `graphgate policy explain` and `graphgate policy test`: requests written as text
//! (`POST /v1.0/...` plus its body) admitted and decided exactly as the gateway admits and
//! decides them (the same functions: `admit`, [`super::decision::judge`]), and YAML
//! fixtures checked like `opa test`. The words they print are the binary's.

use std::path::Path;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Uri};
use serde::Deserialize;

use super::decision::{self, Judgement};
use crate::admit;
use crate::error::GatewayError;
use crate::identity::stated::{self, Stated, Statement};
use crate::operation::route::Recognised;
use crate::operation::schema::Params;
use crate::policy::{Forbidden, Policy};

/// What `rule` is reported as when no rule allows a request.
pub const DEFAULT_DENY: &str = "(default deny)";

/// A request line or body that cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No such caller.
    #[error("unknown caller {0:?}")]
    UnknownCaller(String),
    /// Not `METHOD /path`.
    #[error(
        "the request must look like 'POST /v1.0/deviceManagement/managedDevices/<id>/<action>': {0}"
    )]
    Request(String),
    /// The request would be refused before policy, as the gateway would refuse it.
    #[error("the gateway would refuse this request before policy ({status}): {message}")]
    Refused {
        /// The HTTP status the gateway would answer.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// No body: the gateway refuses a request without one, so there is nothing to decide.
    #[error(
        "no request body given: the gateway answers 400 to a request without a JSON body, so the policy is never asked; give the body (policy explain: --body FILE; policy test: the case's 'body')"
    )]
    NoBody,
}

/// One request evaluated.
pub struct Evaluation<'p> {
    /// The recognised request.
    pub target: Recognised,
    /// Its parameters.
    pub params: Params,
    /// The person and reason it states.
    pub stated: Stated,
    /// What the policy says (the gateway's own judgement).
    pub judgement: Judgement<'p>,
    /// A bulk request: the operation it runs and how many devices it lists.
    pub bulk: Option<BulkSummary>,
    /// The refusal the gateway would answer (403), if the policy does not allow it.
    pub forbidden: Option<Forbidden>,
    /// The approval its rule needs before it runs (the gateway holds it: 202), if any, and
    /// whether break glass may run it at once.
    pub approval: Option<(crate::policy::Approval, bool)>,
}

/// What a bulk request was decided on.
pub struct BulkSummary {
    /// The catalog operation its `actionName` runs.
    pub operation: &'static str,
    /// How many devices it lists.
    pub devices: usize,
    /// The devices the policy refuses (the request is refused if any is).
    pub refused: Vec<String>,
}

impl Evaluation<'_> {
    /// Whether the gateway would forward the request.
    pub fn allowed(&self) -> bool {
        self.judgement.allowed()
    }

    /// The deciding rule's name, or `None` for the default deny.
    pub fn rule_name(&self) -> Option<&str> {
        self.judgement.decision.rule_name()
    }
}

/// Adds what `said` says as the headers the gateway would read it from.
fn to_headers(said: Statement<'_>, headers: &mut HeaderMap) -> Result<(), ExplainError> {
    let pairs = [
        (stated::INITIATOR_HEADER, said.initiator),
        (stated::REASON_HEADER, said.reason),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            let value = HeaderValue::from_str(value).map_err(|_| ExplainError::Refused {
                status: 400,
                message: format!("{name} cannot be sent as an HTTP header (control characters)"),
            })?;
            headers.insert(name, value);
        }
    }
    Ok(())
}

/// Evaluates `request` ("POST /v1.0/...") with its JSON `body` for `caller`, exactly as the
/// gateway would: the same admission (recognition, query, headers, the person and reason
/// the headers state (`said`), the body parsed and checked once), the same judgement. The
/// body is sent as the gateway receives it, with `Content-Type: application/json`.
pub fn evaluate<'p>(
    policy: &'p Policy,
    caller: &str,
    request: &str,
    body: Option<&[u8]>,
    said: Statement<'_>,
) -> Result<(Evaluation<'p>, usize), ExplainError> {
    let index = policy
        .caller_index(caller)
        .ok_or_else(|| ExplainError::UnknownCaller(caller.to_owned()))?;
    let (method, uri) = request_line(request)?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    to_headers(said, &mut headers)?;
    // The gateway's admission steps, in its order; it would read the body before the last.
    let head = admit::admit_head(&method, &uri, &headers, |_| {}).map_err(refused)?;
    let mut stated = stated::from_headers(&headers, None).map_err(refused)?;
    let body = match body {
        Some(b) => Bytes::copy_from_slice(b),
        None if head.target.op.needs_body() => return Err(ExplainError::NoBody),
        None => Bytes::new(),
    };
    let max_bulk = crate::bulk::DEFAULT_MAX_DEVICES;
    let admitted = head
        .admit_body(&body, max_bulk, &mut stated, None)
        .map_err(refused)?;
    let judgement = decision::judge(policy, index, &admitted, &stated);
    let forbidden = judgement.forbidden(caller, &admitted);
    let approval =
        crate::approval::hold::need(policy, index, &admitted, &stated, &judgement.decision)
            .map(|need| (need.approval, need.break_glass));
    let bulk = admitted.bulk.as_ref().map(|plan| BulkSummary {
        operation: plan.op.name,
        devices: plan.device_ids.len(),
        refused: judgement.refused.clone(),
    });
    Ok((
        Evaluation {
            target: admitted.target,
            params: admitted.params,
            stated,
            judgement,
            bulk,
            forbidden,
            approval,
        },
        index,
    ))
}

/// `METHOD /path[?query]`, as the gateway's listener would parse it.
fn request_line(request: &str) -> Result<(Method, Uri), ExplainError> {
    let bad = || ExplainError::Request(request.to_owned());
    let (method, target) = request.trim().split_once(' ').ok_or_else(bad)?;
    let method = method.parse::<Method>().map_err(|_| bad())?;
    let uri = target.trim().parse::<Uri>().map_err(|_| bad())?;
    Ok((method, uri))
}

/// What the gateway would answer a request it refuses before policy.
fn refused(e: impl Into<GatewayError>) -> ExplainError {
    let answer = e.into().answer();
    ExplainError::Refused {
        status: answer.status.as_u16(),
        message: answer.message.into_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    #[serde(default)]
    policy: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    caller: String,
    request: String,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    initiator: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    shadow_rule: Option<String>,
    #[serde(default)]
    missing: Option<Vec<String>>,
}

/// The result of `policy test`.
pub struct TestReport {
    /// Cases that matched their expectation.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
    /// One line per case.
    pub lines: Vec<String>,
}

/// Runs a fixture file. The policy is `policy_override`, else the fixture's `policy:` (relative
/// to the fixture file).
pub fn run_fixtures(path: &Path, policy_override: Option<&Path>) -> Result<TestReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fixtures: Fixtures = serde_saphyr::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let policy_path = match (policy_override, &fixtures.policy) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => path.parent().unwrap_or(Path::new(".")).join(p),
        (None, None) => {
            return Err(format!(
                "{}: name the policy with 'policy:' or --policy",
                path.display()
            ));
        }
    };
    let policy = Policy::load(&policy_path).map_err(|e| e.to_string())?;
    let mut report = TestReport {
        passed: 0,
        failed: 0,
        lines: Vec::new(),
    };
    for case in &fixtures.cases {
        let failure = check_case(&policy, case);
        match failure {
            None => {
                report.passed += 1;
                report.lines.push(format!("ok   {}", case.name));
            }
            Some(why) => {
                report.failed += 1;
                report.lines.push(format!("FAIL {}: {why}", case.name));
            }
        }
    }
    Ok(report)
}

fn check_case(policy: &Policy, case: &Case) -> Option<String> {
    // The fixture's body is YAML; the gateway would receive it as JSON text.
    let body = case
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(b).unwrap_or_default());
    let said = Statement {
        initiator: case.initiator.as_deref(),
        reason: case.reason.as_deref(),
    };
    let (eval, _) = match evaluate(policy, &case.caller, &case.request, body.as_deref(), said) {
        Ok(e) => e,
        Err(e) => return Some(e.to_string()),
    };
    let got_decision = if eval.allowed() { "allow" } else { "deny" };
    let got_missing = eval.judgement.missing.names();
    let d = &eval.judgement.decision;
    let got_rule = d.rule_name().unwrap_or(DEFAULT_DENY);
    let got_shadow = d.shadow.map(|s| s.rule);
    let mut problems = Vec::new();
    if case.expect.decision != got_decision {
        problems.push(format!(
            "expected {}, got {got_decision}",
            case.expect.decision
        ));
    }
    if let Some(rule) = case.expect.rule.as_deref().filter(|r| *r != got_rule) {
        problems.push(format!("expected rule '{rule}', got '{got_rule}'"));
    }
    if let Some(rule) = case
        .expect
        .shadow_rule
        .as_deref()
        .filter(|r| Some(*r) != got_shadow)
    {
        problems.push(format!("expected shadow rule '{rule}', got {got_shadow:?}"));
    }
    if let Some(missing) = case.expect.missing.as_ref().filter(|m| **m != got_missing) {
        problems.push(format!("expected missing {missing:?}, got {got_missing:?}"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[cfg(test)]
mod tests;
