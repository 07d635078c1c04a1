//! `graphgate policy explain` and `graphgate policy test`: requests written as text
//! (`POST /v1.0/...` plus its body) admitted and decided exactly as the gateway admits and
//! decides them (the same functions), with reasons, and YAML fixtures checked like `opa test`.

use std::fmt::Write;
use std::path::Path;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Uri};
use serde::Deserialize;

use crate::error::GatewayError;
use crate::identity::context::{self as stated_context, Stated};
use crate::inbound;
use crate::operation::route::Recognised;
use crate::operation::schema::Params;
use crate::policy::{Decision, Facts, Mismatch, Missing, Policy, Test};

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
    /// A bulk request: the operation it runs, how many devices it lists, and those the
    /// policy refuses.
    pub bulk: Option<BulkSummary>,
    /// What the allowing rule requires and the request does not state (the gateway then
    /// answers 400, so the request is not allowed).
    pub missing: Missing,
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
    /// Adds these as the headers the gateway would read them from.
    fn to_headers(self, headers: &mut HeaderMap) -> Result<(), ExplainError> {
        let pairs = [
            (stated_context::INITIATOR_HEADER, self.initiator),
            (stated_context::REASON_HEADER, self.reason),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                let value = HeaderValue::from_str(value).map_err(|_| ExplainError::Refused {
                    status: 400,
                    message: format!(
                        "{name} cannot be sent as an HTTP header (control characters)"
                    ),
                })?;
                headers.insert(name, value);
            }
        }
        Ok(())
    }
}

/// Evaluates `request` ("POST /v1.0/...") with its JSON `body` for `caller`, exactly as the
/// gateway would: the same admission (recognition, query, headers, the person and reason
/// stated (`said`), strict body checks; see `inbound`), the same facts, the same policy,
/// and what the allowing rule requires. The body is sent as the gateway receives it, with
/// `Content-Type: application/json`.
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
    let (method, uri) = request_line(request)?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    said.to_headers(&mut headers)?;
    // The gateway's admission steps, in its order; it would read the body before the last.
    let head = inbound::admit_head(&method, &uri, &headers, |_| {}).map_err(refused)?;
    let mut stated = stated_context::from_headers(&headers, None).map_err(refused)?;
    let body = match body {
        Some(b) => Bytes::copy_from_slice(b),
        None if head.target.op.needs_body() => return Err(ExplainError::NoBody),
        None => Bytes::new(),
    };
    let body =
        stated_context::take_from_body(&head.target, body, &mut stated, None).map_err(refused)?;
    let admitted = head
        .admit_body(&body, crate::bulk::DEFAULT_MAX_DEVICES)
        .map_err(refused)?;
    // A bulk request is decided device by device, as the gateway decides it.
    let initiator = stated.person();
    let (decision, bulk) = match &admitted.bulk {
        Some(plan) => {
            let version = admitted.target.version;
            let d = crate::bulk::decide(policy, index, version, plan, initiator);
            let summary = BulkSummary {
                operation: plan.op.name,
                devices: plan.device_ids.len(),
                refused: d.refused,
            };
            (d.decision, Some(summary))
        }
        None => {
            let facts = Facts::of(index, &admitted.target, &admitted.params, initiator);
            (policy.decide(&facts), None)
        }
    };
    let missing = match decision.rule {
        Some(rule) if decision.allowed => rule
            .require
            .missing(stated.initiator.is_some(), stated.reason.is_some()),
        _ => Missing::default(),
    };
    Ok((
        Evaluation {
            target: admitted.target,
            params: admitted.params,
            stated,
            decision,
            bulk,
            missing,
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
        let _ = writeln!(out, "initiator: {} ({})", who.primary(), source.as_str());
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
    let _ = writeln!(out, "tier: {}", eval.target.op.tier.as_str());
    if let Some(bulk) = &eval.bulk {
        // The rules below are about the bulk operation itself; each device was decided as
        // the operation its actionName runs.
        let _ = writeln!(
            out,
            "bulk: {} on {} device(s), decided device by device; refused: {}",
            bulk.operation,
            bulk.devices,
            match bulk.refused.is_empty() {
                true => "none".to_owned(),
                false => bulk.refused.join(", "),
            }
        );
    }
    let facts = Facts::of(index, &eval.target, &eval.params, eval.stated.person());
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
    let all = Missing {
        initiator: rule.require.initiator,
        reason: rule.require.reason,
    };
    (!all.is_none()).then(|| all.names().join(" and "))
}

fn mismatch_text(m: &Mismatch, f: &Facts<'_>) -> String {
    match m {
        Mismatch::Operation => format!("does not cover {}", f.op.name),
        Mismatch::Initiator => match f.initiator {
            Some(who) => format!("does not cover initiator {}", who.primary()),
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

#[cfg(test)]
mod tests {
    //! The gateway and `policy explain` must agree on every request: the same refusals
    //! (status and message) before policy, the same decision and rule after it.

    use std::sync::Arc;
    use std::time::Duration;

    use http::Request;
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::answer::forbidden_message;
    use crate::cloud::Cloud;
    use crate::credential::{IssuedToken, TokenError, TokenSource};
    use crate::gateway::{Gateway, Limits};
    use crate::identity::api_key_sha256;
    use crate::token::{TokenBroker, TokenKey};
    use crate::upstream::{self, BoxFuture, UpstreamConfig};

    const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
    const DEV2: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

    fn policy() -> Policy {
        let text = format!(
            r#"version: 1
callers:
  - name: rotator
    api_key_sha256: "{}"
  - name: nobody
    api_key_sha256: "{}"
  - name: helpdesk
    api_key_sha256: "{}"
rules:
  - name: helpdesk-with-a-ticket
    callers: [helpdesk]
    operations: [managedDevices.updateWindowsDeviceAccount]
    require: [initiator, reason]
    initiators: ["@contoso.com"]
  - name: rotator-updates-room-accounts
    callers: [rotator]
    operations: [managedDevices.updateWindowsDeviceAccount]
    api_versions: [v1.0]
    when:
      - param: deviceAccountEmail
        suffix: "@rooms.contoso.com"
  - name: rotation-stays-on
    effect: deny
    callers: [rotator]
    operations: [managedDevices.updateWindowsDeviceAccount]
    when:
      - param: passwordRotationEnabled
        equals: false
"#,
            api_key_sha256("k-rotator"),
            api_key_sha256("k-nobody"),
            api_key_sha256("k-helpdesk"),
        );
        Policy::from_yaml(&text, "table").unwrap()
    }

    /// Dry runs answer the policy question without a token: a table row never reaches Entra.
    struct NoToken;

    impl TokenSource for NoToken {
        fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenError>> {
            Box::pin(async { Err(TokenError::Unavailable("the table sends nothing".into())) })
        }
    }

    fn gateway() -> Gateway {
        let http = upstream::build_client(&UpstreamConfig {
            connect_to: Vec::new(),
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let key = TokenKey {
            authority: "login.microsoftonline.com".into(),
            tenant: "t".into(),
            client: "c".into(),
            scope: "s".into(),
        };
        let broker = TokenBroker::new(key, Arc::new(NoToken), Duration::from_secs(300));
        Gateway::new(policy(), Cloud::Global, broker, http, Limits::default())
    }

    fn graph_body(email: &str, rotation: bool) -> String {
        serde_json::json!({"updateWindowsDeviceAccountActionParameter": {
            "deviceAccountEmail": email,
            "exchangeServer": "outlook.office365.com",
            "passwordRotationEnabled": rotation,
            "calendarSyncEnabled": true,
            "deviceAccount": {
                "@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount",
                "password": "example-only",
                "userPrincipalName": "room1@rooms.contoso.com"
            }
        }})
        .to_string()
    }

    fn flat_body(extra: Option<(&str, &str)>) -> String {
        let mut body = serde_json::json!({
            "deviceAccountEmail": "room1@rooms.contoso.com",
            "exchangeServer": "outlook.office365.com",
            "password": "example-only",
            "passwordRotationEnabled": true,
            "calendarSyncEnabled": true,
            "accountType": "azureAD",
            "userPrincipalName": "room1@rooms.contoso.com"
        });
        if let Some((k, v)) = extra {
            body[k] = serde_json::Value::String(v.into());
        }
        body.to_string()
    }

    /// What one side answered: a status, then the rule (allowed) or the message (refused).
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        status: u16,
        said: String,
    }

    async fn through_gateway(
        gw: &Gateway,
        key: &str,
        method: &str,
        uri: &str,
        body: &str,
        said: Said<'_>,
    ) -> Outcome {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            // Allowed requests are answered with the decision instead of being sent.
            .header("prefer", "dry-run");
        let headers = [
            (stated_context::INITIATOR_HEADER, said.initiator),
            (stated_context::REASON_HEADER, said.reason),
        ];
        for (name, value) in headers {
            if let Some(value) = value {
                req = req.header(name, value);
            }
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = gw.handle(req).await;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let said = match status {
            200 => json["rule"].as_str().unwrap().to_owned(),
            _ => json["error"]["message"].as_str().unwrap().to_owned(),
        };
        Outcome { status, said }
    }

    fn through_explain(
        policy: &Policy,
        caller: &str,
        method: &str,
        uri: &str,
        body: &str,
        said: Said<'_>,
    ) -> Outcome {
        let request = format!("{method} {uri}");
        match evaluate(policy, caller, &request, Some(body.as_bytes()), said) {
            Ok((eval, _)) if eval.allowed() => Outcome {
                status: 200,
                said: eval.decision.rule_name().unwrap().to_owned(),
            },
            // Allowed by a rule whose requirement is not met: the gateway's 400.
            Ok((eval, _)) if eval.decision.allowed => Outcome {
                status: 400,
                said: crate::identity::context::ContextError::Missing {
                    rule: eval.decision.rule_name().unwrap().to_owned(),
                    missing: eval.missing,
                }
                .to_string(),
            },
            Ok((eval, _)) => Outcome {
                status: 403,
                said: forbidden_message(&eval.decision, caller, &eval.target),
            },
            Err(ExplainError::Refused { status, message }) => Outcome {
                status,
                said: message,
            },
            Err(e) => panic!("{request}: {e}"),
        }
    }

    #[tokio::test]
    async fn the_gateway_and_policy_explain_agree_on_every_request() {
        let graph = |version: &str, dev: &str| {
            format!("/{version}/deviceManagement/managedDevices/{dev}/updateWindowsDeviceAccount")
        };
        let simple = format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount");
        let two_devices = format!(
            "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{DEV2}/users/room@contoso.com/managedDevices/{DEV}/updateWindowsDeviceAccount"
        );
        let good = graph_body("room1@rooms.contoso.com", true);
        let long = format!("/v1.0/{}", "a".repeat(3000));
        // (caller, method, path, body, the status both must give)
        let rows: Vec<(&str, &str, String, String, u16)> = vec![
            ("rotator", "POST", graph("v1.0", DEV), good.clone(), 200),
            (
                "rotator",
                "POST",
                graph("v1.0", &DEV.to_uppercase()),
                good.clone(),
                200,
            ),
            ("rotator", "POST", simple.clone(), flat_body(None), 200),
            (
                "rotator",
                "POST",
                format!("{}?dry-run", graph("v1.0", DEV)),
                good.clone(),
                200,
            ),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV),
                graph_body("ceo@contoso.com", true),
                403,
            ),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV),
                graph_body("room1@rooms.contoso.com", false),
                403,
            ),
            // No rule could allow these whatever the body: the gateway refuses them unread.
            ("rotator", "POST", graph("beta", DEV), good.clone(), 403),
            ("nobody", "POST", graph("v1.0", DEV), good.clone(), 403),
            (
                "rotator",
                "POST",
                format!("{}?force=1", graph("v1.0", DEV)),
                good.clone(),
                400,
            ),
            (
                "rotator",
                "POST",
                "/v1.0/deviceManagement/managedDevices".into(),
                good.clone(),
                404,
            ),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV).replace("updateWindows", "wipeWindows"),
                good.clone(),
                404,
            ),
            ("rotator", "GET", graph("v1.0", DEV), good.clone(), 405),
            (
                "rotator",
                "POST",
                graph("v1.0", "not-a-guid"),
                good.clone(),
                400,
            ),
            ("rotator", "POST", two_devices, good.clone(), 400),
            ("rotator", "POST", long, good.clone(), 414),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV),
                "{not json".into(),
                400,
            ),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV),
                r#"{"a":1,"a":2}"#.into(),
                400,
            ),
            (
                "rotator",
                "POST",
                graph("v1.0", DEV),
                good.replace("exchangeServer", "exchangeServr"),
                400,
            ),
            (
                "rotator",
                "POST",
                simple.clone(),
                flat_body(Some(("colour", "blue"))),
                400,
            ),
            (
                "rotator",
                "POST",
                simple,
                flat_body(Some(("accountType", "martian"))),
                400,
            ),
        ];
        let gw = gateway();
        let policy = policy();
        for (caller, method, path, body, status) in rows {
            let key = format!("k-{caller}");
            let said = Said::default();
            let by_gateway = through_gateway(&gw, &key, method, &path, &body, said).await;
            let by_explain = through_explain(&policy, caller, method, &path, &body, said);
            assert_eq!(by_gateway, by_explain, "{caller} {method} {path}");
            assert_eq!(
                by_gateway.status, status,
                "{caller} {method} {path}: {by_gateway:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_gateway_and_policy_explain_agree_on_the_person_and_the_reason() {
        let graph =
            format!("/v1.0/deviceManagement/managedDevices/{DEV}/updateWindowsDeviceAccount");
        let simple = format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount");
        let good = graph_body("room1@rooms.contoso.com", true);
        let with = |fields: &[(&str, &str)]| {
            let mut body: serde_json::Value = serde_json::from_str(&flat_body(None)).unwrap();
            for (k, v) in fields {
                body[*k] = serde_json::Value::String((*v).into());
            }
            body.to_string()
        };
        let said = |initiator, reason| Said { initiator, reason };
        let alice = Some("alice@contoso.com");
        let ticket = Some("CHG-4711");
        let fields = |initiator: Option<&str>, reason: Option<&str>| {
            let both = [("initiator", initiator), ("reason", reason)];
            let given: Vec<(&str, &str)> =
                both.iter().filter_map(|(k, v)| Some((*k, (*v)?))).collect();
            with(&given)
        };
        // (headers stated, path, body, the status both must give)
        let rows: Vec<(Said<'_>, &str, String, u16)> = vec![
            (said(alice, ticket), &graph, good.clone(), 200),
            (
                said(Some("ALICE@contoso.com"), ticket),
                &graph,
                good.clone(),
                200,
            ),
            (said(alice, None), &graph, good.clone(), 400),
            (
                said(Some("mallory@fabrikam.com"), ticket),
                &graph,
                good.clone(),
                403,
            ),
            (said(None, ticket), &graph, good.clone(), 403),
            (
                said(Some("not an address"), ticket),
                &graph,
                good.clone(),
                400,
            ),
            (said(None, None), &simple, fields(alice, Some("CHG-1")), 200),
            (said(alice, None), &simple, fields(None, Some("CHG-1")), 200),
            (
                said(alice, None),
                &simple,
                fields(Some("bob@contoso.com"), Some("CHG-1")),
                400,
            ),
            (said(None, None), &simple, fields(alice, None), 400),
            (
                said(None, None),
                &simple,
                fields(alice, Some("a\u{7}b")),
                400,
            ),
        ];
        let gw = gateway();
        let policy = policy();
        for (said, path, body, status) in rows {
            let by_gateway = through_gateway(&gw, "k-helpdesk", "POST", path, &body, said).await;
            let by_explain = through_explain(&policy, "helpdesk", "POST", path, &body, said);
            assert_eq!(by_gateway, by_explain, "{said:?} {path} {body}");
            assert_eq!(by_gateway.status, status, "{said:?} {path}: {by_gateway:?}");
        }
    }
}
