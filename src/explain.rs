//! `graphgate policy explain` and `graphgate policy test`: requests written as text
//! (`POST /v1.0/...` plus its body) evaluated against a policy exactly as the
//! gateway evaluates them, with reasons, and YAML fixtures checked like `opa test`.

use std::fmt::Write;
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::GatewayError;
use crate::identity::context::{self as stated_context, Stated};
use crate::inbound;
use crate::policy::{Decision, Facts, Mismatch, Missing, Policy, Test};
use crate::route::Recognised;
use crate::schema::Params;

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
    /// The decision.
    pub decision: Decision<'p>,
    /// What the allowing rule requires and the request does not state (the gateway then
    /// answers 400, so the request is not allowed).
    pub missing: Missing,
}

impl Evaluation<'_> {
    /// Whether the gateway would forward the request.
    pub fn allowed(&self) -> bool {
        self.decision.allowed && self.missing.is_none()
    }
}

/// The person and reason a request states, as `X-Graphgate-Initiator` and
/// `X-Graphgate-Reason` would (the simplified API's body fields are read from the body).
#[derive(Debug, Clone, Copy, Default)]
pub struct Said<'a> {
    /// The initiator header's value.
    pub initiator: Option<&'a str>,
    /// The reason header's value.
    pub reason: Option<&'a str>,
}

impl Said<'_> {
    /// What these headers state, checked as the gateway checks them.
    fn stated(&self) -> Result<Stated, ExplainError> {
        let mut headers = http::HeaderMap::new();
        let pairs = [
            (stated_context::INITIATOR_HEADER, self.initiator),
            (stated_context::REASON_HEADER, self.reason),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                let value =
                    http::HeaderValue::from_str(value).map_err(|_| ExplainError::Refused {
                        status: 400,
                        message: format!(
                            "{name} cannot be sent as an HTTP header (control characters)"
                        ),
                    })?;
                headers.insert(name, value);
            }
        }
        stated_context::from_headers(&headers, None).map_err(|e| refused(e.into()))
    }
}

/// Evaluates `request` ("POST /v1.0/...") with its JSON `body` for `caller`, exactly as the
/// gateway would: the same path recognition, the same strict body checks, the same policy,
/// including the person and reason stated (`said`) and what the allowing rule requires.
pub fn evaluate<'p>(
    policy: &'p Policy,
    caller: &str,
    request: &str,
    body: Option<&[u8]>,
    said: Said<'_>,
) -> Result<(Evaluation<'p>, usize), ExplainError> {
    let index = policy
        .caller_index(caller)
        .ok_or_else(|| ExplainError::UnknownCaller(caller.to_owned()))?;
    let (method, path) = request
        .trim()
        .split_once(' ')
        .ok_or_else(|| ExplainError::Request(request.to_owned()))?;
    let method: http::Method = method
        .parse()
        .map_err(|_| ExplainError::Request(request.to_owned()))?;
    let target = inbound::recognise(&method, path.trim()).map_err(refused)?;
    let mut stated = said.stated()?;
    let mut body = Bytes::copy_from_slice(body.ok_or(ExplainError::NoBody)?);
    if target.surface == crate::route::Surface::Simple {
        let (rest, in_body) = stated_context::split_simple_body(&body).map_err(refused)?;
        stated_context::add_body(&mut stated, in_body, None).map_err(|e| refused(e.into()))?;
        body = rest;
    }
    let (_, params) = inbound::graph_body(&target, &body).map_err(refused)?;
    let facts = Facts {
        caller: index,
        op: target.op,
        version: target.version,
        device: &target.device_id,
        params: &params,
        initiator: stated.initiator(),
    };
    let decision = policy.decide(&facts);
    let missing = match decision.rule {
        Some(rule) if decision.allowed => rule
            .require
            .missing(stated.initiator.is_some(), stated.reason.is_some()),
        _ => Missing::default(),
    };
    Ok((
        Evaluation {
            target,
            params,
            stated,
            decision,
            missing,
        },
        index,
    ))
}

fn refused(e: GatewayError) -> ExplainError {
    ExplainError::Refused {
        status: e.status().as_u16(),
        message: e.to_string(),
    }
}

/// The text `policy explain` prints.
pub fn explain(
    policy: &Policy,
    caller: &str,
    request: &str,
    body: Option<&[u8]>,
    said: Said<'_>,
) -> Result<(bool, String), ExplainError> {
    let (eval, index) = evaluate(policy, caller, request, body, said)?;
    let mut out = String::new();
    let d = &eval.decision;
    let verdict = if eval.allowed() { "allow" } else { "deny" };
    let _ = writeln!(out, "decision: {verdict}");
    let _ = writeln!(out, "rule: {}", d.rule_name().unwrap_or(DEFAULT_DENY));
    if !eval.missing.is_none() {
        let _ = writeln!(
            out,
            "missing: {} (the rule requires it; the gateway answers 400 invalidRequest)",
            eval.missing.names().join(", ")
        );
    }
    if let Some((who, source)) = &eval.stated.initiator {
        let _ = writeln!(out, "initiator: {who} ({})", source.as_str());
    }
    if let Some(reason) = &eval.stated.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    if let Some(s) = d.shadow {
        let _ = writeln!(
            out,
            "shadow: rule '{}' would {}",
            s.rule,
            if s.allowed { "allow" } else { "deny" }
        );
    }
    let _ = writeln!(
        out,
        "operation: {} ({}) on device {}",
        eval.target.op.name,
        eval.target.version.as_str(),
        eval.target.device_id
    );
    let facts = Facts {
        caller: index,
        op: eval.target.op,
        version: eval.target.version,
        device: &eval.target.device_id,
        params: &eval.params,
        initiator: eval.stated.initiator(),
    };
    let explanation = policy.explain(&facts);
    if explanation.rules.is_empty() {
        let _ = writeln!(out, "no rule names caller '{caller}'");
    } else {
        let _ = writeln!(out, "rules naming caller '{caller}':");
    }
    for (rule, result) in &explanation.rules {
        let effect = format!(
            "{:?}{}",
            rule.effect,
            if rule.mode == crate::policy::Mode::Shadow {
                ", shadow"
            } else {
                ""
            }
        )
        .to_lowercase();
        let why = match result {
            Ok(()) => "matches".to_owned(),
            Err(m) => mismatch_text(m, &facts),
        };
        let why = match requirement(rule) {
            Some(needs) => format!("{why}; requires {needs}"),
            None => why,
        };
        let _ = writeln!(out, "  - {} ({effect}): {why}", rule.name);
    }
    Ok((eval.allowed(), out))
}

/// What a rule's `require` asks for, in words.
fn requirement(rule: &crate::policy::Rule) -> Option<String> {
    let all = crate::policy::Missing {
        initiator: rule.require.initiator,
        reason: rule.require.reason,
    };
    (!all.is_none()).then(|| all.names().join(" and "))
}

fn mismatch_text(m: &Mismatch, f: &Facts<'_>) -> String {
    match m {
        Mismatch::Operation => format!("does not cover {}", f.op.name),
        Mismatch::Initiator => match f.initiator {
            Some(who) => format!("does not cover initiator {who}"),
            None => "covers listed initiators only, and none is stated".to_owned(),
        },
        Mismatch::Version => format!("does not cover API version {}", f.version.as_str()),
        Mismatch::Device => format!("does not list device {}", f.device),
        Mismatch::Condition(c) => {
            let test = match &c.test {
                Test::EqualsStr(s) => format!("equals {s:?}"),
                Test::EqualsBool(b) => format!("equals {b}"),
                Test::OneOf(l) => format!("one of {l:?}"),
                Test::Prefix(p) => format!("starts with {p:?}"),
                Test::Suffix(s) => format!("ends with {s:?}"),
                Test::Present(true) => "present".to_owned(),
                Test::Present(false) => "absent".to_owned(),
            };
            format!("condition '{} {test}' does not hold", c.param)
        }
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
    let said = Said {
        initiator: case.initiator.as_deref(),
        reason: case.reason.as_deref(),
    };
    let (eval, _) = match evaluate(policy, &case.caller, &case.request, body.as_deref(), said) {
        Ok(e) => e,
        Err(e) => return Some(e.to_string()),
    };
    let got_decision = if eval.allowed() { "allow" } else { "deny" };
    let got_missing = eval.missing.names();
    let d = eval.decision;
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
