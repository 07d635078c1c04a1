//! Injected faults of the embedded emulator, seen from a client over real TLS on
//! 127.0.0.1:0: each fault, its count, the `/_emulator/faults` control endpoint, the
//! records of faulted requests, and `graphgate emulate --fault`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use graphgate_emulator::Cloud;
use graphgate_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, EmulatorConfig, Fault, Faults,
};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

use common::emu::{self, Harness, Reply, jwt_part, request, send_to};

const GRAPH: &str = "graph.microsoft.com";
const LOGIN: &str = "login.microsoftonline.com";
const DEVICE: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const CORRELATION: &str = "5e3c9a8b-1d2f-4e6a-9b7c-0a1b2c3d4e5f";

impl Harness {
    fn token_form() -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("scope", Cloud::Global.endpoints().scope),
                ("grant_type", "client_credentials"),
            ])
            .finish()
    }

    async fn try_token_request(&self) -> Result<Reply, hyper::Error> {
        let path = format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token");
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("client-request-id", CORRELATION),
        ];
        let req = request(LOGIN, Method::POST, &path, &headers, &Self::token_form());
        self.try_send(LOGIN, req, false).await
    }

    async fn demo_token_request(&self) -> Reply {
        self.try_token_request().await.unwrap()
    }

    async fn demo_token(&self) -> String {
        let reply = self.demo_token_request().await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    fn action(token: &str) -> Request<Full<Bytes>> {
        let auth = format!("Bearer {token}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        request(
            GRAPH,
            Method::POST,
            &action_path(),
            &headers,
            &action_body(),
        )
    }

    async fn try_graph(&self, token: &str, h2: bool) -> Result<Reply, hyper::Error> {
        self.try_send(GRAPH, Self::action(token), h2).await
    }

    async fn demo_action(&self, token: &str) -> Reply {
        self.try_graph(token, false).await.unwrap()
    }

    async fn control(&self, method: Method, body: &str) -> Reply {
        let ct = [("content-type", "application/json")];
        self.send(GRAPH, method, "/_emulator/faults", &ct, body)
            .await
    }

    fn graph_statuses(&self) -> Vec<u16> {
        self.emu.graph_requests().iter().map(|r| r.status).collect()
    }

    fn token_statuses(&self) -> Vec<u16> {
        self.emu.token_requests().iter().map(|r| r.status).collect()
    }
}

fn action_path() -> String {
    format!("/v1.0/deviceManagement/managedDevices/{DEVICE}/updateWindowsDeviceAccount")
}

fn action_body() -> String {
    json!({"updateWindowsDeviceAccountActionParameter": {
        "deviceAccount": {"@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount",
                          "password": "Room-P@ssw0rd", "userPrincipalName": "room1@contoso.com"},
        "deviceAccountEmail": "room1@contoso.com",
        "exchangeServer": "outlook.office365.com",
        "calendarSyncEnabled": true,
        "passwordRotationEnabled": false,
        "sessionInitiationProtocalAddress": "sip:room1@contoso.com"
    }})
    .to_string()
}

/// The connection ended before any response: cut mid-TLS (no close_notify) or closed.
fn no_answer(err: &hyper::Error) -> bool {
    let eof = std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof);
    eof || err.is_incomplete_message() || err.is_closed()
}

fn assert_graph_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
    assert!(reply.header("request-id").is_some());
    assert!(reply.header("x-ms-ags-diagnostic").is_some());
}

#[tokio::test]
async fn graph_429_with_retry_after_for_two_calls_then_normal() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    h.emu
        .set_faults(Faults::default().with_graph(Fault::status(429).retry_after(1).times(2)));
    for _ in 0..2 {
        let reply = h.demo_action(&token).await;
        assert_graph_error(&reply, 429, "TooManyRequests");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    let reply = h.demo_action(&token).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert_eq!(reply.header("retry-after"), None);
    // Every call reached Graph and was recorded; only the last one changed the device.
    assert_eq!(h.graph_statuses(), [429, 429, 204]);
    let records = h.emu.graph_requests();
    assert_eq!(records[0].path, action_path());
    assert!(records[0].token_claims.is_some());
    assert_eq!(h.emu.devices()[0].update_count, 1);
    assert_eq!(h.emu.faults().graph[0].times, Some(0));
    h.stop().await;
}

#[tokio::test]
async fn graph_fault_script_429_without_retry_after_503_and_504() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    h.emu.set_faults(
        Faults::default()
            .with_graph(Fault::status(429).times(1))
            .with_graph(Fault::status(503).retry_after(7).times(1))
            .with_graph(Fault::status(503).times(1))
            .with_graph(Fault::status(504).times(1))
            .with_graph(Fault::status(502).html().times(1)),
    );
    let r = h.demo_action(&token).await;
    assert_graph_error(&r, 429, "TooManyRequests");
    assert_eq!(
        r.header("retry-after"),
        None,
        "Intune throttles without Retry-After"
    );
    let r = h.demo_action(&token).await;
    assert_graph_error(&r, 503, "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = h.demo_action(&token).await;
    assert_graph_error(&r, 503, "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), None);
    let r = h.demo_action(&token).await;
    assert_graph_error(&r, 504, "GatewayTimeout");
    let r = h.demo_action(&token).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(String::from_utf8_lossy(&r.body).contains("<title>502 Bad Gateway</title>"));
    assert_eq!(h.demo_action(&token).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.graph_statuses(), [429, 503, 503, 504, 502, 204]);
    h.stop().await;
}

#[tokio::test]
async fn graph_401_for_the_next_requests_even_with_a_valid_token() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    h.emu
        .set_faults(Faults::default().with_graph(Fault::status(401).times(2)));
    for _ in 0..2 {
        let r = h.demo_action(&token).await;
        assert_graph_error(&r, 401, "InvalidAuthenticationToken");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer "));
    }
    assert_eq!(h.demo_action(&token).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.graph_statuses(), [401, 401, 204]);
    h.stop().await;
}

#[tokio::test]
async fn graph_reset_reads_the_request_then_drops_the_connection() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    h.emu
        .set_faults(Faults::default().with_graph(Fault::reset().times(2)));
    let err = h.try_graph(&token, false).await.unwrap_err();
    assert!(no_answer(&err), "{err:?}");
    // Over h2 the stream is reset instead.
    assert!(h.try_graph(&token, true).await.is_err());
    assert_eq!(h.demo_action(&token).await.status, StatusCode::NO_CONTENT);
    // The dropped requests were read in full and recorded with status 0.
    let records = h.emu.graph_requests();
    assert_eq!(h.graph_statuses(), [0, 0, 204]);
    assert_eq!(records[0].body, action_body());
    assert_eq!(records[0].method, "POST");
    // Only the answered one reached the device.
    assert_eq!(h.emu.devices()[0].update_count, 1);
    h.stop().await;
}

#[tokio::test]
async fn graph_latency_delays_the_normal_answer() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    let delay = Duration::from_millis(300);
    h.emu
        .set_faults(Faults::default().with_graph(Fault::slow(delay).times(1)));
    let started = Instant::now();
    let r = h.demo_action(&token).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.graph_statuses(), [204]);
    h.stop().await;
}

#[tokio::test]
async fn token_down_closes_without_an_answer_then_recovers() {
    let h = emu::start(EmulatorConfig::default()).await;
    h.emu
        .set_faults(Faults::default().with_token(Fault::reset().times(2)));
    for _ in 0..2 {
        let err = h.try_token_request().await.unwrap_err();
        assert!(no_answer(&err), "{err:?}");
    }
    let _ = h.demo_token().await;
    assert_eq!(h.emu.token_request_count(), 3);
    assert_eq!(h.token_statuses(), [0, 0, 200]);
    let first = &h.emu.token_requests()[0];
    assert_eq!(first.client_id.as_deref(), Some(DEMO_CLIENT_ID));
    assert_eq!(first.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(first.error_code, None);
    h.stop().await;
}

#[tokio::test]
async fn token_temporarily_unavailable_has_entras_full_error_shape() {
    let h = emu::start(EmulatorConfig::default()).await;
    h.emu.set_faults(
        Faults::default().with_token(Fault::temporarily_unavailable().retry_after(2).times(1)),
    );
    let r = h.demo_token_request().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["error_codes"], json!([90033]));
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with("AADSTS90033: A transient error has occurred."),
        "{description}"
    );
    let trace_id = body["trace_id"].as_str().unwrap();
    assert!(description.contains(&format!("\r\nTrace ID: {trace_id}\r\n")));
    assert_eq!(body["correlation_id"], CORRELATION);
    assert!(description.contains(&format!("Correlation ID: {CORRELATION}")));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["error_uri"],
        format!("https://{LOGIN}/error?code=90033")
    );
    assert_eq!(r.header("x-ms-request-id"), Some(trace_id));
    let _ = h.demo_token().await;
    let records = h.emu.token_requests();
    assert_eq!(h.token_statuses(), [503, 200]);
    assert_eq!(records[0].error_code, Some(90033));
    h.stop().await;
}

#[tokio::test]
async fn token_5xx_as_entra_json_or_html() {
    let h = emu::start(EmulatorConfig::default()).await;
    h.emu.set_faults(
        Faults::default()
            .with_token(Fault::status(500).times(1))
            .with_token(Fault::status(503).html().retry_after(5).times(1)),
    );
    let r = h.demo_token_request().await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.json();
    assert_eq!(body["error"], "server_error");
    assert_eq!(body["error_codes"], json!([50000]));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50000: ")
    );
    let r = h.demo_token_request().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(String::from_utf8_lossy(&r.body).starts_with("<!DOCTYPE html>"));
    let _ = h.demo_token().await;
    assert_eq!(h.token_statuses(), [500, 503, 200]);
    let codes: Vec<Option<u32>> = h
        .emu
        .token_requests()
        .iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(codes, [Some(50000), None, None]);
    h.stop().await;
}

#[tokio::test]
async fn token_slow_answers_late() {
    let h = emu::start(EmulatorConfig::default()).await;
    let delay = Duration::from_millis(300);
    h.emu
        .set_faults(Faults::default().with_token(Fault::slow(delay)));
    let started = Instant::now();
    let _ = h.demo_token().await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    // Until cleared: the fault is still there.
    assert_eq!(h.emu.faults().token[0].times, None);
    h.emu.set_faults(Faults::default());
    assert_eq!(h.emu.faults(), Faults::default());
    h.stop().await;
}

#[tokio::test]
async fn expired_token_claims_a_long_life_and_graph_refuses_it() {
    let h = emu::start(EmulatorConfig::default()).await;
    h.emu
        .set_faults(Faults::default().with_token(Fault::expired_token().times(1)));
    let r = h.demo_token_request().await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let claims = jwt_part(token, 1);
    let now = chrono::Utc::now().timestamp();
    assert!(claims["exp"].as_i64().unwrap() < now, "{claims}");
    let reply = h.demo_action(token).await;
    assert_graph_error(&reply, 401, "InvalidAuthenticationToken");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // The next token is a good one.
    let good = h.demo_token().await;
    assert_eq!(h.demo_action(&good).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.graph_statuses(), [401, 204]);
    h.stop().await;
}

#[tokio::test]
async fn bad_signature_token_looks_right_but_graph_refuses_it() {
    let h = emu::start(EmulatorConfig::default()).await;
    h.emu
        .set_faults(Faults::default().with_token(Fault::bad_signature_token().times(1)));
    let token = h.demo_token().await;
    let jwks = h
        .send(
            LOGIN,
            Method::GET,
            &format!("/{DEMO_TENANT_ID}/discovery/v2.0/keys"),
            &[],
            "",
        )
        .await
        .json();
    assert_eq!(jwt_part(&token, 0)["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(jwt_part(&token, 1)["appid"], DEMO_CLIENT_ID);
    let reply = h.demo_action(&token).await;
    assert_graph_error(&reply, 401, "InvalidAuthenticationToken");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    assert!(h.emu.graph_requests()[0].token_claims.is_none());
    let good = h.demo_token().await;
    assert_eq!(h.demo_action(&good).await.status, StatusCode::NO_CONTENT);
    h.stop().await;
}

#[tokio::test]
async fn control_endpoint_round_trips() {
    let h = emu::start(EmulatorConfig::default()).await;
    let empty = json!({"reject_ps256_assertions": false, "token": [], "graph": []});
    assert_eq!(h.control(Method::GET, "").await.json(), empty);

    let wanted = json!({
        "token": [{"kind": "down", "times": 1}],
        "graph": [{"kind": "status", "status": 429, "retry_after_secs": 1, "times": 2},
                  {"kind": "slow", "delay_ms": 10}],
    });
    let r = h.control(Method::PUT, &wanted.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let set = json!({
        "reject_ps256_assertions": false,
        "token": [{"kind": "reset", "times": 1}],
        "graph": [{"kind": "status", "status": 429, "retry_after_secs": 1, "times": 2},
                  {"kind": "slow", "delay_ms": 10}],
    });
    assert_eq!(r.json(), set);
    assert_eq!(h.control(Method::GET, "").await.json(), set);

    // The faults act, and GET shows what is left.
    assert!(h.try_token_request().await.is_err());
    let token = h.demo_token().await;
    assert_eq!(
        h.demo_action(&token).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let left = h.control(Method::GET, "").await.json();
    assert_eq!(left["token"][0]["times"], 0);
    assert_eq!(left["graph"][0]["times"], 1);
    assert_eq!(h.emu.faults().graph[0].times, Some(1));

    // The control endpoint itself is never faulted, on any host.
    let r = h
        .send(LOGIN, Method::GET, "/_emulator/faults", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Bad documents are refused with every problem; the faults in force stay.
    let bad = json!({"token": [{"kind": "status", "status": 404}],
                     "graph": [{"kind": "expired_token"}, {"kind": "slow"}]});
    let r = h.control(Method::PUT, &bad.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["errors"].as_array().unwrap().len(),
        3,
        "{}",
        r.json()
    );
    let r = h
        .control(Method::PUT, r#"{"graph":[{"kind":"reset","tmes":1}]}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("tmes"));
    assert_eq!(h.emu.faults().graph[0].times, Some(1));

    let r = h.control(Method::POST, "{}").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));

    let r = h.control(Method::DELETE, "").await;
    assert_eq!(r.json(), empty);
    assert_eq!(h.emu.faults(), Faults::default());
    assert_eq!(h.demo_action(&token).await.status, StatusCode::NO_CONTENT);
    h.stop().await;
}

#[tokio::test]
async fn setting_faults_restarts_their_counts() {
    let h = emu::start(EmulatorConfig::default()).await;
    let token = h.demo_token().await;
    let faults = Faults::default().with_graph(Fault::status(503).times(1));
    h.emu.set_faults(faults.clone());
    assert_eq!(
        h.demo_action(&token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(h.demo_action(&token).await.status, StatusCode::NO_CONTENT);
    h.emu.set_faults(faults);
    assert_eq!(
        h.demo_action(&token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Graph faults leave the token endpoint alone, and the reverse.
    let _ = h.demo_token().await;
    assert_eq!(h.graph_statuses(), [503, 204, 503]);
    h.stop().await;
}

#[test]
fn emulate_refuses_bad_fault_specs() {
    use common::process::{BIN, run};
    // Bounded: an emulator that accepted the spec would serve until killed.
    let (status, _, stderr) = run(
        std::process::Command::new(BIN).args(["emulate", "--fault", "graph-expired"]),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("'expired_token' is a token-endpoint fault"),
        "{stderr}"
    );

    let (_, help, _) = run(
        std::process::Command::new(BIN).args(["emulate", "--help"]),
        Duration::from_secs(30),
    );
    assert!(
        help.contains("--fault <SPEC>") && help.contains("retry-after=S"),
        "{help}"
    );
}

#[tokio::test]
async fn emulate_flags_arm_the_faults() {
    let dir = common::temp_dir("faults-ca");
    let ca = dir.join("ca.pem");
    let mut child = common::process::Proc::spawn(
        std::process::Command::new(common::process::BIN)
            .args(["emulate", "--listen", "127.0.0.1:0", "--ca-out"])
            .arg(&ca)
            .args([
                "--fault",
                "token-down:times=1",
                "--fault",
                "graph-429:retry-after=5,times=2",
            ]),
    );
    let prefix = "graphgate emulator listening on https://";
    let line = child
        .stderr
        .wait_for_async(Duration::from_secs(30), move |l| l.starts_with(prefix))
        .await
        .unwrap_or_else(|| panic!("the emulator did not start:\n{}", child.stderr.text()));
    let addr: SocketAddr = line.strip_prefix(prefix).unwrap().parse().unwrap();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let send = async |host: &str, req| send_to(addr, &ca_pem, host, req, false).await;
    // The control endpoint shows what the flags armed...
    let req = request(GRAPH, Method::GET, "/_emulator/faults", &[], "");
    let reply = send(GRAPH, req).await.unwrap();
    assert_eq!(
        reply.json(),
        json!({
            "reject_ps256_assertions": false,
            "token": [{"kind": "reset", "times": 1}],
            "graph": [{"kind": "status", "status": 429, "retry_after_secs": 5, "times": 2}],
        })
    );
    // ...and they act, each for as many requests as it was given.
    let token_request = || {
        let path = format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token");
        let ct = [("content-type", "application/x-www-form-urlencoded")];
        request(LOGIN, Method::POST, &path, &ct, &Harness::token_form())
    };
    let err = send(LOGIN, token_request()).await.unwrap_err();
    assert!(no_answer(&err), "token-down: {err:?}");
    let reply = send(LOGIN, token_request()).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let reply = send(GRAPH, Harness::action(&token)).await.unwrap();
        assert_graph_error(&reply, 429, "TooManyRequests");
        assert_eq!(reply.header("retry-after"), Some("5"));
    }
    let reply = send(GRAPH, Harness::action(&token)).await.unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
