//! End-to-end tests of the embedded Entra + Graph emulator, over real TLS on 127.0.0.1:0,
//! with a tiny client that trusts only the emulator's CA and names the cloud host by SNI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use graphgate::operation::catalog::PRIV_OPS;
use graphgate_emulator::Cloud;
use graphgate_emulator::Secret;
use graphgate_emulator::{
    AppRegistration, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DEVICE_IDS, DEMO_TENANT_ID, Emulator,
    EmulatorConfig,
};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use common::emu::{self, Harness, Reply, jwt_part};

const GLOBAL_GRAPH: &str = "graph.microsoft.com";
const GLOBAL_LOGIN: &str = "login.microsoftonline.com";
const DEVICE: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const UNKNOWN_DEVICE: &str = "99999999-8888-4777-8666-555555555555";
const NO_ROLE_CLIENT: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const NO_ROLE_SECRET: &str = "no-role-app-secret-value";
const PASSWORD: &str = "Room-P@ssw0rd-never-recorded-in-clear?";

fn config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.apps.push(AppRegistration {
        client_id: NO_ROLE_CLIENT.into(),
        client_secret: Secret::new(NO_ROLE_SECRET),
        roles: vec![],
    });
    config
}

impl Harness {
    async fn token_request(&self, login_host: &str, tenant: &str, form: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let path = format!("/{tenant}/oauth2/v2.0/token");
        let ct = [("content-type", "application/x-www-form-urlencoded")];
        self.send(login_host, Method::POST, &path, &ct, &body).await
    }

    async fn token(&self, cloud: Cloud, client_id: &str, secret: &str) -> String {
        let e = cloud.endpoints();
        let form = [
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", e.scope),
            ("grant_type", "client_credentials"),
        ];
        let reply = self
            .token_request(e.login_host, DEMO_TENANT_ID, &form)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn graph(
        &self,
        host: &str,
        path: &str,
        token: Option<&str>,
        ct: &str,
        body: &str,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", ct)];
        if let Some(auth) = auth.as_deref() {
            headers.push(("authorization", auth));
        }
        self.send(host, Method::POST, path, &headers, body).await
    }
}

fn action_path(device: &str) -> String {
    format!("/v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount")
}

fn action_body() -> String {
    json!({"updateWindowsDeviceAccountActionParameter": {
        "deviceAccount": {"@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount",
                          "password": PASSWORD, "userPrincipalName": "room1@contoso.com"},
        "deviceAccountEmail": "room1@contoso.com",
        "exchangeServer": "outlook.office365.com",
        "calendarSyncEnabled": true,
        "passwordRotationEnabled": false,
        "sessionInitiationProtocalAddress": "sip:room1@contoso.com"
    }})
    .to_string()
}

#[tokio::test]
async fn issues_a_token_for_each_cloud() {
    let h = emu::start(config()).await;
    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        let form = [
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", e.scope),
            ("grant_type", "client_credentials"),
        ];
        let reply = h.token_request(e.login_host, DEMO_TENANT_ID, &form).await;
        assert_eq!(reply.status, StatusCode::OK, "{cloud}: {:?}", reply.body);
        assert_eq!(
            reply.text_header("content-type"),
            "application/json; charset=utf-8"
        );
        let body = reply.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["ext_expires_in"], 3599);
        let token = body["access_token"].as_str().unwrap();
        let header = jwt_part(token, 0);
        assert_eq!(header["alg"], "RS256");
        assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
        let claims = jwt_part(token, 1);
        assert_eq!(claims["aud"], e.resource, "{cloud}");
        assert_eq!(claims["tid"], DEMO_TENANT_ID);
        assert_eq!(
            claims["iss"],
            format!("https://sts.windows.net/{DEMO_TENANT_ID}/")
        );
        assert_eq!(claims["appid"], DEMO_CLIENT_ID);
        assert_eq!(claims["appidacr"], "1");
        assert_eq!(claims["roles"], json!([PRIV_OPS]));
        assert_eq!(claims["idtyp"], "app");
        assert_eq!(claims["ver"], "1.0");
        assert_eq!(claims["oid"], claims["sub"]);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3599
        );
        let record = h.emu.token_requests().pop().unwrap();
        assert_eq!(record.host, e.login_host);
        assert_eq!(record.sni.as_deref(), Some(e.login_host));
        assert_eq!(record.scope.as_deref(), Some(e.scope));
        assert_eq!(record.client_id.as_deref(), Some(DEMO_CLIENT_ID));
        assert_eq!((record.status, record.error_code), (200, None));
    }
    assert_eq!(h.emu.token_request_count(), 4);
    h.stop().await;
}

#[tokio::test]
async fn accepts_http_basic_and_login_aliases() {
    let h = emu::start(config()).await;
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}"))
    );
    let body = format!(
        "grant_type=client_credentials&scope={}",
        "https%3A%2F%2Fdod-graph.microsoft.us%2F.default"
    );
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", basic.as_str()),
    ];
    let path = format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token");
    let reply = h
        .send(
            "login.usgovcloudapi.net",
            Method::POST,
            &path,
            &headers,
            &body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let claims = jwt_part(reply.json()["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["aud"], "https://dod-graph.microsoft.us");
    assert_eq!(
        h.emu.token_requests()[0].client_id.as_deref(),
        Some(DEMO_CLIENT_ID)
    );
    h.stop().await;
}

/// One token request, as a variation of a valid one.
#[derive(Clone, Copy)]
struct Attempt {
    host: &'static str,
    tenant: &'static str,
    client_id: &'static str,
    secret: Option<&'static str>,
    scope: &'static str,
    grant: Option<&'static str>,
}

const VALID: Attempt = Attempt {
    host: GLOBAL_LOGIN,
    tenant: DEMO_TENANT_ID,
    client_id: DEMO_CLIENT_ID,
    secret: Some(DEMO_CLIENT_SECRET),
    scope: "https://graph.microsoft.com/.default",
    grant: Some("client_credentials"),
};

impl Attempt {
    fn form(&self) -> Vec<(&'static str, &'static str)> {
        let mut form = vec![("client_id", self.client_id), ("scope", self.scope)];
        form.extend(self.secret.map(|s| ("client_secret", s)));
        form.extend(self.grant.map(|g| ("grant_type", g)));
        form
    }
}

#[tokio::test]
async fn entra_errors_have_entras_shape_and_never_echo_secrets() {
    let h = emu::start(config()).await;
    let wrong_secret = "wrong-secret-value-1234";
    let cases = [
        (
            Attempt {
                tenant: "00000000-0000-0000-0000-000000000001",
                ..VALID
            },
            400,
            "invalid_request",
            90002,
        ),
        (
            Attempt {
                grant: Some("password"),
                ..VALID
            },
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            Attempt {
                client_id: "11111111-2222-4333-8444-555555555555",
                ..VALID
            },
            400,
            "unauthorized_client",
            700016,
        ),
        (
            Attempt {
                secret: None,
                ..VALID
            },
            400,
            "invalid_client",
            7000218,
        ),
        (
            Attempt {
                secret: Some(wrong_secret),
                ..VALID
            },
            401,
            "invalid_client",
            7000215,
        ),
        (
            Attempt {
                scope: "https://graph.microsoft.us/.default",
                ..VALID
            },
            400,
            "invalid_scope",
            70011,
        ),
        (
            Attempt {
                host: "login.microsoftonline.us",
                ..VALID
            },
            400,
            "invalid_scope",
            70011,
        ),
        (
            Attempt {
                grant: None,
                ..VALID
            },
            400,
            "invalid_request",
            900144,
        ),
    ];
    for (attempt, status, error, code) in cases {
        let (host, form) = (attempt.host, attempt.form());
        let reply = h.token_request(host, attempt.tenant, &form).await;
        let what = format!("{error}/{code}");
        assert_eq!(reply.status.as_u16(), status, "{what}: {:?}", reply.body);
        assert_eq!(
            reply.text_header("content-type"),
            "application/json; charset=utf-8"
        );
        let body = reply.json();
        assert_eq!(body["error"], error, "{what}");
        assert_eq!(body["error_codes"], json!([code]), "{what}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{description}"
        );
        let trace = body["trace_id"].as_str().unwrap();
        let correlation = body["correlation_id"].as_str().unwrap();
        assert!(description.contains(&format!(
            "\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: "
        )));
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            body["error_uri"],
            format!("https://{host}/error?code={code}")
        );
        let text = String::from_utf8_lossy(&reply.body);
        assert!(
            !text.contains(DEMO_CLIENT_SECRET) && !text.contains(wrong_secret),
            "{what}: secret echoed"
        );
        let record = h.emu.token_requests().pop().unwrap();
        assert_eq!(
            (record.status, record.error_code),
            (status, Some(code)),
            "{what}"
        );
    }
    let tenant_case = &h.emu.token_requests()[0];
    assert_eq!(tenant_case.tenant, "00000000-0000-0000-0000-000000000001");
    h.stop().await;
}

#[tokio::test]
async fn graph_accepts_every_path_shape_with_a_valid_token() {
    let h = emu::start(config()).await;
    let token = h
        .token(Cloud::Global, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let dev_upper = DEVICE.to_ascii_uppercase();
    let paths = [
        action_path(DEVICE),
        format!(
            "/beta/deviceManagement/detectedApps/app-1/managedDevices/{DEVICE}/updateWindowsDeviceAccount"
        ),
        format!(
            "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{}/users/room@contoso.com/managedDevices/{DEVICE}/updateWindowsDeviceAccount",
            DEMO_DEVICE_IDS[1]
        ),
        format!(
            "/v1.0/users/room@contoso.com/managedDevices/{DEVICE}/microsoft.graph.updateWindowsDeviceAccount"
        ),
        format!(
            "/V1.0/DEVICEMANAGEMENT/manageddevices/{dev_upper}/Microsoft.Graph.UpdateWindowsDeviceAccount"
        ),
    ];
    for (i, path) in paths.iter().enumerate() {
        let crid = format!("00000000-0000-4000-8000-00000000000{i}");
        let headers = [
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {token}")),
            ("client-request-id", crid.as_str()),
        ];
        let reply = h
            .send(GLOBAL_GRAPH, Method::POST, path, &headers, &action_body())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{path}: {:?}",
            reply.body
        );
        assert!(reply.body.is_empty());
        assert_eq!(reply.text_header("client-request-id"), crid);
        assert!(graphgate::operation::route::is_guid(
            reply.text_header("request-id")
        ));
        assert!(
            reply
                .text_header("x-ms-ags-diagnostic")
                .contains("ServerInfo")
        );
        assert!(!reply.text_header("date").is_empty());
    }
    let device = h
        .emu
        .devices()
        .into_iter()
        .find(|d| d.id == DEVICE)
        .unwrap();
    assert_eq!(device.update_count, paths.len() as u64);
    assert_eq!(
        device.device_account_email.as_deref(),
        Some("room1@contoso.com")
    );
    assert_eq!(device.calendar_sync_enabled, Some(true));
    assert_eq!(
        device.device_account_type.as_deref(),
        Some("microsoft.graph.windowsDeviceAzureADAccount")
    );
    assert!(device.password_supplied);
    let record = h.emu.graph_requests().pop().unwrap();
    assert_eq!(record.status, 204);
    assert_eq!(record.sni.as_deref(), Some(GLOBAL_GRAPH));
    assert_eq!(record.path, paths[4]);
    assert_eq!(record.body, action_body());
    assert_eq!(
        record.token_claims.as_ref().unwrap()["aud"],
        "https://graph.microsoft.com"
    );
    assert!(!record.headers.contains_key("authorization"));
    assert_eq!(record.headers["content-type"], "application/json");
    h.stop().await;
}

#[tokio::test]
async fn graph_serves_h2_and_each_cloud_with_its_own_token() {
    let h = emu::start(config()).await;
    for cloud in Cloud::ALL {
        let token = h.token(cloud, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
        let host = cloud.endpoints().graph_host;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{host}{}", action_path(DEVICE)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(action_body())))
            .unwrap();
        let reply = h.try_send(host, req, true).await.unwrap();
        assert_eq!(reply.version, http::Version::HTTP_2);
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{cloud}: {:?}",
            reply.body
        );
        assert_eq!(h.emu.graph_requests().pop().unwrap().host, host);
    }
    h.stop().await;
}

fn assert_graph_error(reply: &Reply, status: StatusCode, code: &str, message_part: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        reply.text_header("request-id")
    );
    assert_eq!(
        body["error"]["innerError"]["client-request-id"],
        reply.text_header("client-request-id")
    );
    assert!(graphgate::operation::route::is_guid(
        reply.text_header("request-id")
    ));
}

#[tokio::test]
async fn graph_refuses_missing_garbage_foreign_forged_and_expired_tokens() {
    let h = emu::start(config()).await;
    let path = action_path(DEVICE);
    let ct = "application/json";
    let body = action_body();
    let gov_token = h
        .token(Cloud::UsGov, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let expired = h
        .emu
        .mint_token(Cloud::Global, DEMO_CLIENT_ID, -60)
        .unwrap();
    let good = h
        .emu
        .mint_token(Cloud::Global, DEMO_CLIENT_ID, 600)
        .unwrap();
    let forged = format!("{}AAAA", &good[..good.len() - 4]);
    let cases: [(Option<&str>, &str); 5] = [
        (None, "Access token is empty."),
        (Some("not-a-jwt"), "not well formed"),
        (Some(&gov_token), "Invalid audience"),
        (Some(&forged), "signature"),
        (Some(&expired), "expired"),
    ];
    for (token, message) in cases {
        let reply = h.graph(GLOBAL_GRAPH, &path, token, ct, &body).await;
        assert_graph_error(
            &reply,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        );
        assert!(reply.text_header("www-authenticate").starts_with("Bearer "));
    }
    let records = h.emu.graph_requests();
    assert!(records.iter().all(|r| r.status == 401));
    assert!(records[0].token_claims.is_none() && records[3].token_claims.is_none());
    assert_eq!(
        records[2].token_claims.as_ref().unwrap()["aud"],
        "https://graph.microsoft.us"
    );
    // The same us-gov token is good on its own cloud's host.
    let reply = h
        .graph("graph.microsoft.us", &path, Some(&gov_token), ct, &body)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    h.stop().await;
}

#[tokio::test]
async fn graph_refuses_an_app_without_the_permission() {
    let h = emu::start(config()).await;
    let token = h.token(Cloud::Global, NO_ROLE_CLIENT, NO_ROLE_SECRET).await;
    assert!(
        jwt_part(&token, 1).get("roles").is_none(),
        "no roles claim without a role"
    );
    let reply = h
        .graph(
            GLOBAL_GRAPH,
            &action_path(DEVICE),
            Some(&token),
            "application/json",
            &action_body(),
        )
        .await;
    assert_graph_error(&reply, StatusCode::FORBIDDEN, "Forbidden", PRIV_OPS);
    assert_eq!(h.emu.devices()[0].update_count, 0);
    h.stop().await;
}

#[tokio::test]
async fn graph_checks_media_type_schema_device_and_path() {
    let h = emu::start(config()).await;
    let t = h
        .token(Cloud::Global, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let t = Some(t.as_str());
    let path = action_path(DEVICE);
    let reply = h
        .graph(GLOBAL_GRAPH, &path, t, "text/plain", &action_body())
        .await;
    assert_graph_error(
        &reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        "text/plain",
    );
    let unknown =
        r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccountEmale":"x@contoso.com"}}"#;
    let reply = h
        .graph(
            GLOBAL_GRAPH,
            &path,
            t,
            "application/json; charset=utf-8",
            unknown,
        )
        .await;
    assert_graph_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "deviceAccountEmale",
    );
    let reply = h
        .graph(GLOBAL_GRAPH, &path, t, "application/json", "{not json")
        .await;
    assert_graph_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "not valid JSON",
    );
    let reply = h
        .graph(
            GLOBAL_GRAPH,
            &action_path(UNKNOWN_DEVICE),
            t,
            "application/json",
            &action_body(),
        )
        .await;
    assert_graph_error(
        &reply,
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "Activity ID",
    );
    let bad_path = format!("/v1.0/deviceManagement/managedDevices/{DEVICE}/wipeAll");
    let reply = h
        .graph(GLOBAL_GRAPH, &bad_path, t, "application/json", "{}")
        .await;
    assert_graph_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Resource not found for the segment 'wipeAll'.",
    );
    let reply = h.send(GLOBAL_GRAPH, Method::GET, &path, &[], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.text_header("allow"), "POST");
    assert!(h.emu.devices().iter().all(|d| d.update_count == 0));
    h.stop().await;
}

#[tokio::test]
async fn records_and_introspection_hold_no_secret_or_token() {
    let h = emu::start(config()).await;
    let token = h
        .token(Cloud::Global, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let wrong = [
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", "wrong-secret-zzz"),
        ("grant_type", "client_credentials"),
    ];
    h.token_request(GLOBAL_LOGIN, DEMO_TENANT_ID, &wrong).await;
    let reply = h
        .graph(
            GLOBAL_GRAPH,
            &action_path(DEVICE),
            Some(&token),
            "application/json",
            &action_body(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let mut dumps = vec![
        serde_json::to_string(&h.emu.token_requests()).unwrap(),
        serde_json::to_string(&h.emu.graph_requests()).unwrap(),
        format!("{:?}{:?}", h.emu.token_requests(), h.emu.graph_requests()),
    ];
    for endpoint in ["devices", "requests", "token-requests"] {
        let reply = h
            .send(
                "localhost",
                Method::GET,
                &format!("/_emulator/{endpoint}"),
                &[],
                "",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{endpoint}");
        dumps.push(String::from_utf8(reply.body.to_vec()).unwrap());
    }
    let token_requests: Value = serde_json::from_str(&dumps[5]).unwrap();
    assert_eq!(token_requests["count"], 2);
    assert_eq!(token_requests["requests"][1]["error_code"], 7000215);
    let devices: Value = serde_json::from_str(&dumps[3]).unwrap();
    assert_eq!(devices["devices"][0]["update_count"], 1);
    assert!(
        !dumps[3].contains(PASSWORD),
        "device records keep no password"
    );
    for dump in &dumps {
        for secret in [
            DEMO_CLIENT_SECRET,
            "wrong-secret-zzz",
            token.as_str(),
            "Bearer",
            "authorization",
        ] {
            assert!(!dump.contains(secret), "record holds {secret:?}: {dump}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn unknown_hosts_are_misdirected_and_shutdown_drains() {
    let h = emu::start(config()).await;
    let path = format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token");
    let reply = h
        .send(
            "localhost",
            Method::POST,
            &path,
            &[],
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(h.emu.token_requests()[0].status, 421);
    let reply = h
        .send(
            GLOBAL_LOGIN,
            Method::GET,
            &format!("/{DEMO_TENANT_ID}/discovery/v2.0/keys"),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["keys"][0]["kty"], "RSA");

    // Shutdown drains: a call Graph holds when the stop is asked for is answered before the
    // stop returns, and nothing new is accepted after it.
    let hold = std::time::Duration::from_millis(500);
    h.emu.set_faults(
        graphgate_emulator::Faults::default()
            .with_graph(graphgate_emulator::Fault::slow(hold).times(1)),
    );
    let token = h
        .token(Cloud::Global, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let auth = format!("Bearer {token}");
    let req = emu::request(
        GLOBAL_GRAPH,
        Method::POST,
        &action_path(DEVICE),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        &action_body(),
    );
    let (addr, ca) = (h.addr, h.emu.ca_pem().to_owned());
    let in_flight =
        tokio::spawn(async move { emu::send_to(addr, &ca, GLOBAL_GRAPH, req, false).await });
    common::graph_received(&h.emu, 1).await;
    let emulator = std::sync::Arc::clone(&h.emu);
    assert!(emulator.graph_requests().is_empty(), "still held");
    tokio::time::timeout(std::time::Duration::from_secs(10), h.stop())
        .await
        .expect("the emulator stopped once drained");
    assert_eq!(
        emulator.graph_requests().len(),
        1,
        "the held call was finished before the stop returned"
    );
    let reply = in_flight
        .await
        .unwrap()
        .expect("the held call was answered");
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after the stop"
    );
}

#[test]
fn connect_to_maps_every_cloud_host() {
    let map = Emulator::connect_to("127.0.0.1:4443".parse().unwrap());
    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        assert!(map.contains(&format!("{}:443=127.0.0.1:4443", e.graph_host)));
        assert!(map.contains(&format!("{}:443=127.0.0.1:4443", e.login_host)));
        for alias in e.login_aliases {
            assert!(map.contains(&format!("{alias}:443=127.0.0.1:4443")));
        }
    }
}
