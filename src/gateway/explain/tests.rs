//! The gateway and `policy explain` must agree on every request: the same refusals
//! (status and message) before policy, the same decision and rule after it.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Full};

use super::*;
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
    said: Statement<'_>,
) -> Outcome {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        // Allowed requests are answered with the decision instead of being sent.
        .header("prefer", "dry-run");
    let headers = [
        (stated::INITIATOR_HEADER, said.initiator),
        (stated::REASON_HEADER, said.reason),
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
    said: Statement<'_>,
) -> Outcome {
    let request = format!("{method} {uri}");
    match evaluate(policy, caller, &request, Some(body.as_bytes()), said) {
        Ok((eval, _)) if eval.allowed() => Outcome {
            status: 200,
            said: eval.rule_name().unwrap().to_owned(),
        },
        // Allowed by a rule whose requirement is not met: the gateway's 400.
        Ok((eval, _)) if eval.judgement.decision.allowed => Outcome {
            status: 400,
            said: eval.judgement.unstated().unwrap().to_string(),
        },
        Ok((eval, _)) => Outcome {
            status: 403,
            said: eval.forbidden.unwrap().to_string(),
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
        let said = Statement::default();
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
    let graph = format!("/v1.0/deviceManagement/managedDevices/{DEV}/updateWindowsDeviceAccount");
    let simple = format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount");
    let good = graph_body("room1@rooms.contoso.com", true);
    let with = |fields: &[(&str, &str)]| {
        let mut body: serde_json::Value = serde_json::from_str(&flat_body(None)).unwrap();
        for (k, v) in fields {
            body[*k] = serde_json::Value::String((*v).into());
        }
        body.to_string()
    };
    let said = |initiator, reason| Statement { initiator, reason };
    let alice = Some("alice@contoso.com");
    let ticket = Some("CHG-4711");
    let fields = |initiator: Option<&str>, reason: Option<&str>| {
        let both = [("initiator", initiator), ("reason", reason)];
        let given: Vec<(&str, &str)> = both.iter().filter_map(|(k, v)| Some((*k, (*v)?))).collect();
        with(&given)
    };
    // (headers stated, path, body, the status both must give)
    let rows: Vec<(Statement<'_>, &str, String, u16)> = vec![
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
