//! Every way the pipeline refuses a request, driven through [`Gateway::handle`] without a
//! socket: the status, the headers and the error code the caller gets, and the audit record
//! the refusal leaves (or that it leaves none). Entra refuses every token here, so nothing
//! can reach Graph: a request that passes every check ends at the token (503).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::*;
use crate::audit::{Audit, Fingerprinter};
use crate::credential::{IssuedToken, TokenError, TokenSource};
use crate::identity::api_key_sha256;
use crate::state::config::StateOptions;
use crate::state::{ClaimSettings, Namespace, StateConfig, StateStore};
use crate::token::{TokenBroker, TokenKey};
use crate::upstream::{self, BoxFuture, UpstreamConfig};

const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const DEV2: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";
const UPDATE: &str = "/v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount";

fn policy() -> Policy {
    let key = |k: &str| api_key_sha256(k);
    let text = format!(
        r#"version: 1
callers:
  - {{ name: rotator, api_key_sha256: "{}" }}
  - {{ name: limited, api_key_sha256: "{}", rate_limit: 1 per hour }}
  - {{ name: nobody, api_key_sha256: "{}" }}
  - {{ name: helpdesk, api_key_sha256: "{}" }}
  - {{ name: wiper, api_key_sha256: "{}" }}
rules:
  - name: rooms-only
    callers: [rotator, limited]
    operations: [managedDevices.updateWindowsDeviceAccount]
    when: [{{ param: deviceAccountEmail, suffix: "@rooms.contoso.com" }}]
  - name: rotation-stays-on
    effect: deny
    callers: [rotator]
    operations: [managedDevices.updateWindowsDeviceAccount]
    when: [{{ param: passwordRotationEnabled, equals: false }}]
  - name: helpdesk-with-a-ticket
    callers: [helpdesk]
    operations: [managedDevices.updateWindowsDeviceAccount]
    require: [initiator, reason]
  - name: wipe-one
    callers: [wiper]
    operations: [managedDevices.wipe]
    devices: ["{DEV}"]
"#,
        key("k-rotator"),
        key("k-limited"),
        key("k-nobody"),
        key("k-helpdesk"),
        key("k-wiper"),
    );
    Policy::from_yaml(&text, "deny-paths").unwrap()
}

/// Entra, refusing every token.
struct NoToken;

impl TokenSource for NoToken {
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenError>> {
        Box::pin(async { Err(TokenError::Unavailable("no Entra here".into())) })
    }
}

/// A gateway with `limits` and state in `state`, auditing to a fresh file.
fn gateway_with(limits: Limits, state: Option<StateStore>) -> (Gateway, Audit, std::path::PathBuf) {
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
    let dir = std::env::temp_dir().join(format!("gg-deny-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let audit = Audit::open(&log, 1 << 30, Fingerprinter::new(&[0x5a; 32]).unwrap()).unwrap();
    let state = state.unwrap_or_else(|| {
        StateStore::in_process(
            Namespace::new(Cloud::Global, "t", "app", "test"),
            limits.claims(),
        )
    });
    let gw = Gateway::with_store(policy(), Cloud::Global, broker, http, limits, state)
        .with_audit(audit.clone());
    (gw, audit, log)
}

fn gateway() -> (Gateway, Audit, std::path::PathBuf) {
    gateway_with(Limits::default(), None)
}

/// A request the way a client sends it.
fn request(method: &str, path: &str, key: Option<&str>, body: Value) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let body = match body {
        Value::Null => Bytes::new(),
        v => Bytes::from(v.to_string()),
    };
    req.body(Full::new(body)).unwrap()
}

fn update_body(email: &str, rotation: bool) -> Value {
    json!({"updateWindowsDeviceAccountActionParameter": {
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
}

/// What the caller got: status, error code, and the answer itself.
struct Seen {
    status: u16,
    code: String,
    message: String,
    resp: Response<Full<Bytes>>,
}

async fn send(gw: &Gateway, req: Request<Full<Bytes>>) -> Seen {
    let resp = gw.handle(req).await;
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parts.headers["content-type"], "application/json");
    // Every answer names the request, in the body and the headers alike.
    let id = json["error"]["innerError"]["request-id"].as_str().unwrap();
    assert_eq!(parts.headers["x-graphgate-request-id"], id);
    Seen {
        status,
        code: json["error"]["code"].as_str().unwrap().to_owned(),
        message: json["error"]["message"].as_str().unwrap().to_owned(),
        resp: Response::from_parts(parts, Full::new(bytes)),
    }
}

/// The audit record of the request `seen` answered, if it left one.
async fn record(audit: &Audit, log: &std::path::Path, seen: &Seen) -> Option<Value> {
    audit.flush().await.unwrap();
    let id = seen.resp.headers()["x-graphgate-request-id"]
        .to_str()
        .unwrap();
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["audit_id"] == id)
}

/// `(decision, rule, error code, status)` of a record.
fn summary(r: &Value) -> (&str, Option<&str>, &str, u64) {
    (
        r["decision"].as_str().unwrap(),
        r["rule"].as_str(),
        r["error_code"].as_str().unwrap(),
        r["status"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn requests_without_a_known_caller_get_401_with_a_challenge() {
    let (gw, audit, log) = gateway();
    for key in [None, Some("not-a-known-key")] {
        let seen = send(
            &gw,
            request("POST", UPDATE, key, update_body("a@b.co", true)),
        )
        .await;
        assert_eq!(
            (seen.status, seen.code.as_str()),
            (401, "InvalidAuthenticationToken")
        );
        assert_eq!(
            seen.resp.headers()["www-authenticate"],
            r#"Bearer realm="graphgate""#
        );
        // Sampled per source and recorded without anything the request presented.
        let r = record(&audit, &log, &seen).await.unwrap();
        assert_eq!(r["decision"], "unauthenticated");
        assert!(r["caller"].is_null() && r["operation"].is_null(), "{r}");
    }
}

#[tokio::test]
async fn paths_that_are_no_operation_are_refused_unaudited() {
    let (gw, audit, log) = gateway();
    let unknown = "/v1.0/deviceManagement/managedDevices";
    let seen = send(
        &gw,
        request("POST", unknown, Some("k-rotator"), Value::Null),
    )
    .await;
    assert_eq!((seen.status, seen.code.as_str()), (404, "resourceNotFound"));
    assert!(
        record(&audit, &log, &seen).await.is_none(),
        "not recognised"
    );
    let seen = send(&gw, request("GET", UPDATE, Some("k-rotator"), Value::Null)).await;
    assert_eq!((seen.status, seen.code.as_str()), (405, "methodNotAllowed"));
    assert_eq!(seen.resp.headers()["allow"], "POST");
    assert!(
        record(&audit, &log, &seen).await.is_none(),
        "not recognised"
    );
}

#[tokio::test]
async fn policy_refusals_are_403_and_audited_as_denied() {
    let (gw, audit, log) = gateway();
    // No rule names the caller: refused before its body is read.
    let seen = send(
        &gw,
        request(
            "POST",
            UPDATE,
            Some("k-nobody"),
            update_body("a@rooms.contoso.com", true),
        ),
    )
    .await;
    assert_eq!((seen.status, seen.code.as_str()), (403, "accessDenied"));
    assert!(
        seen.message
            .contains("no policy rule allows caller 'nobody'"),
        "{}",
        seen.message
    );
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(summary(&r), ("denied", None, "accessDenied", 403));
    assert!(r["params"].is_null(), "the body was never read: {r}");
    // A deny rule names itself.
    let off = update_body("a@rooms.contoso.com", false);
    let seen = send(&gw, request("POST", UPDATE, Some("k-rotator"), off)).await;
    assert_eq!(seen.message, "denied by policy rule 'rotation-stays-on'");
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(
        summary(&r),
        ("denied", Some("rotation-stays-on"), "accessDenied", 403)
    );
    // A condition that does not hold: read, then refused.
    let elsewhere = update_body("ceo@contoso.com", true);
    let seen = send(&gw, request("POST", UPDATE, Some("k-rotator"), elsewhere)).await;
    assert_eq!(seen.status, 403);
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(summary(&r), ("denied", None, "accessDenied", 403));
    assert!(r["params"].is_object(), "{r}");
    // A dry run gets exactly the refusal the call would get.
    let mut dry = request(
        "POST",
        UPDATE,
        Some("k-nobody"),
        update_body("a@b.co", true),
    );
    dry.headers_mut()
        .insert("prefer", http::HeaderValue::from_static("dry-run"));
    assert_eq!(send(&gw, dry).await.status, 403);
}

#[tokio::test]
async fn a_bulk_request_is_refused_whole_naming_the_refused_devices() {
    let (gw, audit, log) = gateway();
    let bulk = json!({"actionName": "wipe", "keepUserData": true, "deviceIds": [DEV, DEV2]});
    let path = "/beta/deviceManagement/managedDevices/executeAction";
    let seen = send(&gw, request("POST", path, Some("k-wiper"), bulk)).await;
    assert_eq!((seen.status, seen.code.as_str()), (403, "accessDenied"));
    assert!(
        seen.message.contains(&format!("on device {DEV2} ")),
        "{}",
        seen.message
    );
    assert!(!seen.message.contains(DEV), "{}", seen.message);
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(summary(&r), ("denied", None, "accessDenied", 403));
    assert_eq!(r["device_ids"], json!([DEV, DEV2]));
}

#[tokio::test]
async fn bad_input_is_400_and_audited_as_invalid() {
    let (gw, audit, log) = gateway();
    let bad = json!({"updateWindowsDeviceAccountActionParameter": {"colour": "blue"}});
    let seen = send(&gw, request("POST", UPDATE, Some("k-rotator"), bad)).await;
    assert_eq!((seen.status, seen.code.as_str()), (400, "invalidRequest"));
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(summary(&r), ("invalid", None, "invalidRequest", 400));
    // The allowing rule requires the person and the reason.
    let ok = update_body("a@rooms.contoso.com", true);
    let seen = send(&gw, request("POST", UPDATE, Some("k-helpdesk"), ok)).await;
    assert_eq!(seen.status, 400);
    assert!(
        seen.message.contains("requires initiator and reason"),
        "{}",
        seen.message
    );
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(
        summary(&r),
        (
            "invalid",
            Some("helpdesk-with-a-ticket"),
            "invalidRequest",
            400
        )
    );
}

#[tokio::test]
async fn limits_refuse_with_429_and_retry_after_and_a_token_failure_fails_closed() {
    let (gw, audit, log) = gateway();
    let ok = || update_body("a@rooms.contoso.com", true);
    // The first call passes every check and ends at the token: nothing is sent.
    let seen = send(&gw, request("POST", UPDATE, Some("k-limited"), ok())).await;
    assert_eq!(
        (seen.status, seen.code.as_str()),
        (503, "tokenAcquisitionFailed")
    );
    assert!(seen.resp.headers().contains_key("retry-after"));
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(
        summary(&r),
        ("failed", Some("rooms-only"), "tokenAcquisitionFailed", 503)
    );
    assert_eq!(r["kind"], "request", "no intent: nothing was to be sent");
    // Its rate limit was charged: the second is refused for an hour.
    let seen = send(&gw, request("POST", UPDATE, Some("k-limited"), ok())).await;
    assert_eq!(
        (seen.status, seen.code.as_str()),
        (429, "activityLimitReached")
    );
    let retry: u64 = seen.resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&retry), "{retry}");
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(
        summary(&r),
        (
            "rate_limited",
            Some("rooms-only"),
            "activityLimitReached",
            429
        )
    );
}

#[tokio::test]
async fn in_flight_bounds_shed_load_before_the_body() {
    let limits = |caller, gateway| Limits {
        max_in_flight_per_caller: caller,
        max_in_flight: gateway,
        ..Limits::default()
    };
    let ok = || update_body("a@rooms.contoso.com", true);
    let (gw, audit, log) = gateway_with(limits(0, 10), None);
    let seen = send(&gw, request("POST", UPDATE, Some("k-rotator"), ok())).await;
    assert_eq!(
        (seen.status, seen.code.as_str()),
        (429, "activityLimitReached")
    );
    assert_eq!(seen.resp.headers()["retry-after"], "1");
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(r["status"], 429);
    let (gw, _, _) = gateway_with(limits(10, 0), None);
    let seen = send(&gw, request("POST", UPDATE, Some("k-rotator"), ok())).await;
    assert_eq!(
        (seen.status, seen.code.as_str()),
        (503, "serviceNotAvailable")
    );
    assert_eq!(seen.resp.headers()["retry-after"], "1");
}

#[tokio::test]
async fn a_state_store_that_does_not_answer_refuses_with_503() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let options = StateOptions {
        timeout: Duration::from_millis(200),
        ..StateOptions::default()
    };
    let config = StateConfig::parse(&url, options).unwrap();
    let claims = ClaimSettings {
        capacity: 10,
        window: Duration::from_secs(60),
        wait: Duration::from_secs(1),
    };
    let store = StateStore::open(
        &config,
        Namespace::new(Cloud::Global, "t", "app", "test"),
        claims,
    )
    .unwrap();
    let (gw, audit, log) = gateway_with(Limits::default(), Some(store));
    let ok = update_body("a@rooms.contoso.com", true);
    // The limited caller's rate limit lives in the store: it cannot be checked, so no.
    let seen = send(&gw, request("POST", UPDATE, Some("k-limited"), ok)).await;
    assert_eq!(
        (seen.status, seen.code.as_str()),
        (503, "stateStoreUnavailable")
    );
    assert_eq!(seen.resp.headers()["retry-after"], "2");
    let r = record(&audit, &log, &seen).await.unwrap();
    assert_eq!(r["error_code"], "stateStoreUnavailable");
}

#[tokio::test]
async fn without_a_reloader_readiness_says_so_and_is_not_failed() {
    let (gw, _, _) = gateway();
    assert_eq!(gw.reloader_health(), ReloaderHealth::Off);
    let (_, detail) = crate::admin::readiness(&gw).await;
    assert_eq!(detail["checks"]["policy"]["reloader"], "off");
    assert_eq!(detail["checks"]["policy"]["ok"], true);
}
