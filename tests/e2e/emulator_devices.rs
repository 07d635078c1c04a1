//! The emulator's device model over real TLS on 127.0.0.1:0: each device's platform decides
//! which actions Graph accepts, accepted actions show up in the device's
//! `deviceActionResults` (read with `GET .../managedDevices/{id}?$select=...`, token and role
//! checked) moving from `pending` to `done` on a paused clock, arranged ends (`failed`,
//! `pending` for ever), `/_emulator/devices`, and `graphgate emulate --device ID:OS`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use graphgate_emulator::Cloud;
use graphgate_emulator::Secret;
use graphgate_emulator::{
    ActionOutcome, ActionState, AppRegistration, DEMO_CLIENT_ID, DEMO_IOS_DEVICE_ID,
    EmulatedDevice, EmulatorConfig, OperatingSystem,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use common::clock::{FrozenClock, within_real_time};
use common::emu::{self, Harness, Reply, request, send_to};

const GRAPH: &str = "graph.microsoft.com";
const WINDOWS: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const WINDOWS_B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";
const READER: &str = "c0ffee00-1111-4222-8333-444455556666";
const NO_ROLE: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const COMPLETION: Duration = Duration::from_secs(30);
const LIMIT: Duration = Duration::from_secs(60);

fn config() -> EmulatorConfig {
    let mut config = EmulatorConfig {
        action_completion: COMPLETION,
        ..EmulatorConfig::default()
    };
    for (client_id, roles) in [
        (
            READER,
            vec!["DeviceManagementManagedDevices.Read.All".to_owned()],
        ),
        (NO_ROLE, vec![]),
    ] {
        config.apps.push(AppRegistration {
            client_id: client_id.into(),
            client_secret: Secret::new("unused-secret"),
            roles,
        });
    }
    config
}

fn token(h: &Harness, client_id: &str) -> String {
    h.emu.mint_token(Cloud::Global, client_id, 3600).unwrap()
}

fn action_body() -> String {
    json!({"updateWindowsDeviceAccountActionParameter": {
        "deviceAccount": {"password": "Room-P@ssw0rd"},
        "deviceAccountEmail": "room1@contoso.com"
    }})
    .to_string()
}

async fn update_account(h: &Harness, device: &str) -> Reply {
    let auth = format!("Bearer {}", token(h, DEMO_CLIENT_ID));
    let path = format!("/v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    h.send(GRAPH, Method::POST, &path, &headers, &action_body())
        .await
}

async fn read_device(h: &Harness, device: &str, query: &str, bearer: Option<&str>) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let path = format!("/beta/deviceManagement/managedDevices/{device}{query}");
    h.send(GRAPH, Method::GET, &path, &headers, "").await
}

/// The device's `deviceActionResults`, read as a caller of Graph would.
async fn action_results(h: &Harness, device: &str) -> Vec<Value> {
    let reader = token(h, READER);
    let reply = read_device(h, device, "?$select=deviceActionResults", Some(&reader)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.json()["deviceActionResults"]
        .as_array()
        .unwrap()
        .clone()
}

fn states(results: &[Value]) -> Vec<(String, String)> {
    results
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("actionName"), s("actionState"))
        })
        .collect()
}

fn pair(action: &str, state: &str) -> (String, String) {
    (action.to_owned(), state.to_owned())
}

#[tokio::test]
async fn accepted_actions_move_from_pending_to_done_on_the_emulators_clock() {
    let clock = FrozenClock::freeze();
    within_real_time("pending to done", LIMIT, async {
        let h = emu::start(config()).await;
        assert_eq!(action_results(&h, WINDOWS).await, Vec::<Value>::new());
        let reply = update_account(&h, WINDOWS).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);

        let reader = token(&h, READER);
        let reply = read_device(&h, WINDOWS, "?$select=deviceActionResults", Some(&reader)).await;
        assert_eq!(
            reply.text_header("content-type"),
            "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
        );
        let body = reply.json();
        assert_eq!(
            body["@odata.context"],
            "https://graph.microsoft.com/beta/$metadata#deviceManagement/managedDevices(deviceActionResults)/$entity"
        );
        let results = body["deviceActionResults"].as_array().unwrap();
        assert_eq!(
            states(results),
            [pair("updateWindowsDeviceAccount", "pending")]
        );
        let started = results[0]["startDateTime"].as_str().unwrap().to_owned();
        assert!(chrono::DateTime::parse_from_rfc3339(&started).is_ok(), "{started}");
        assert_eq!(results[0]["lastUpdatedDateTime"], started);

        // One second short of the delay it is still pending; at the delay it is done.
        clock.advance(COMPLETION - Duration::from_secs(1)).await;
        let results = action_results(&h, WINDOWS).await;
        assert_eq!(states(&results), [pair("updateWindowsDeviceAccount", "pending")]);
        clock.advance(Duration::from_secs(1)).await;
        let results = action_results(&h, WINDOWS).await;
        assert_eq!(states(&results), [pair("updateWindowsDeviceAccount", "done")]);
        let updated = chrono::DateTime::parse_from_rfc3339(results[0]["lastUpdatedDateTime"].as_str().unwrap()).unwrap();
        let started = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
        assert_eq!((updated - started).num_seconds(), COMPLETION.as_secs() as i64);

        // A second action appends; the first keeps its result.
        assert_eq!(update_account(&h, WINDOWS).await.status, StatusCode::NO_CONTENT);
        let results = action_results(&h, WINDOWS).await;
        assert_eq!(
            states(&results),
            [
                pair("updateWindowsDeviceAccount", "done"),
                pair("updateWindowsDeviceAccount", "pending")
            ]
        );
        // The other device has none.
        assert_eq!(action_results(&h, WINDOWS_B).await, Vec::<Value>::new());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_action_the_platform_does_not_offer_gets_graphs_400_and_leaves_no_result() {
    let h = emu::start(config()).await;
    let reply = update_account(&h, DEMO_IOS_DEVICE_ID).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "BadRequest");
    // Intune's message is a JSON document inside the string (docs-contrib#4523).
    let inner: Value = serde_json::from_str(body["error"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner["CustomApiErrorPhrase"],
        "updateWindowsDeviceAccount is not supported on iOS devices."
    );
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
    let ios = h.emu.device(DEMO_IOS_DEVICE_ID).unwrap();
    assert_eq!(ios.operating_system, OperatingSystem::Ios);
    assert_eq!((ios.update_count, ios.action_results.len()), (0, 0));
    assert_eq!(
        action_results(&h, DEMO_IOS_DEVICE_ID).await,
        Vec::<Value>::new()
    );
    h.stop().await;
}

#[tokio::test]
async fn reading_a_device_takes_a_valid_token_with_a_read_permission() {
    let h = emu::start(config()).await;
    let select = "?$select=deviceActionResults";
    let reply = read_device(&h, WINDOWS, select, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "InvalidAuthenticationToken");
    let reply = read_device(&h, WINDOWS, select, Some("not-a-jwt")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let no_role = token(&h, NO_ROLE);
    let reply = read_device(&h, WINDOWS, select, Some(&no_role)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("DeviceManagementManagedDevices.Read.All"),
        "{message}"
    );

    // Read.All, and the privileged-operations permission, both read.
    for client in [READER, DEMO_CLIENT_ID] {
        let t = token(&h, client);
        let reply = read_device(&h, WINDOWS, "", Some(&t)).await;
        assert_eq!(reply.status, StatusCode::OK, "{client}: {:?}", reply.body);
        let body = reply.json();
        assert_eq!(body["id"], WINDOWS);
        assert_eq!(body["operatingSystem"], "Windows");
        assert_eq!(body["deviceActionResults"], json!([]));
    }
    let reader = token(&h, READER);
    let reply = read_device(
        &h,
        DEMO_IOS_DEVICE_ID,
        "?%24select=id,operatingSystem",
        Some(&reader),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({
            "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/managedDevices(id,operatingSystem)/$entity",
            "id": DEMO_IOS_DEVICE_ID,
            "operatingSystem": "iOS"
        })
    );
    let reply = read_device(&h, WINDOWS, "?$select=serialNumber", Some(&reader)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let unknown = "99999999-8888-4777-8666-555555555555";
    let reply = read_device(&h, unknown, select, Some(&reader)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"]["code"], "ResourceNotFound");
    // Reads are recorded like every Graph request, without the token.
    let last = h.emu.graph_requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("GET", 404));
    assert!(!last.headers.contains_key("authorization"));
    h.stop().await;
}

#[tokio::test]
async fn arranged_outcomes_end_actions_failed_or_keep_them_pending() {
    let clock = FrozenClock::freeze();
    within_real_time("arranged outcomes", LIMIT, async {
        let h = emu::start(EmulatorConfig {
            action_outcomes: vec![ActionOutcome {
                device: Some(WINDOWS_B.to_uppercase()),
                action: None,
                state: ActionState::Pending,
            }],
            ..config()
        })
        .await;
        // The control API replaces the configured arrangement.
        let ct = [("content-type", "application/json")];
        let put =
            json!([{"device": WINDOWS, "action": "updateWindowsDeviceAccount", "state": "failed"}]);
        let reply = h
            .send(
                GRAPH,
                Method::PUT,
                "/_emulator/action-outcomes",
                &ct,
                &put.to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.json(), json!({ "outcomes": put }));
        let reply = h
            .send(
                GRAPH,
                Method::PUT,
                "/_emulator/action-outcomes",
                &ct,
                r#"[{"state":"exploded"}]"#,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            h.emu.action_outcomes().len(),
            1,
            "a bad document changes nothing"
        );

        for device in [WINDOWS, WINDOWS_B] {
            assert_eq!(
                update_account(&h, device).await.status,
                StatusCode::NO_CONTENT
            );
        }
        // Device B is no longer arranged to stay pending; a library call arranges it again.
        h.emu.set_action_outcomes(vec![
            ActionOutcome {
                device: Some(WINDOWS.into()),
                action: Some("updateWindowsDeviceAccount".into()),
                state: ActionState::Failed,
            },
            ActionOutcome {
                device: Some(WINDOWS_B.into()),
                action: None,
                state: ActionState::Pending,
            },
        ]);
        assert_eq!(
            update_account(&h, WINDOWS_B).await.status,
            StatusCode::NO_CONTENT
        );
        clock.advance(COMPLETION * 10).await;
        assert_eq!(
            states(&action_results(&h, WINDOWS).await),
            [pair("updateWindowsDeviceAccount", "failed")]
        );
        assert_eq!(
            states(&action_results(&h, WINDOWS_B).await),
            [
                pair("updateWindowsDeviceAccount", "done"),
                pair("updateWindowsDeviceAccount", "pending")
            ]
        );
        let reply = h
            .send(GRAPH, Method::DELETE, "/_emulator/action-outcomes", &[], "")
            .await;
        assert_eq!(reply.json(), json!({ "outcomes": [] }));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn introspection_shows_each_devices_os_and_action_results() {
    let h = emu::start(EmulatorConfig {
        devices: vec![
            EmulatedDevice::new(WINDOWS, OperatingSystem::Windows),
            EmulatedDevice::new(DEMO_IOS_DEVICE_ID, OperatingSystem::Ios),
        ],
        ..config()
    })
    .await;
    assert_eq!(
        update_account(&h, WINDOWS).await.status,
        StatusCode::NO_CONTENT
    );
    let reply = h
        .send(GRAPH, Method::GET, "/_emulator/devices", &[], "")
        .await;
    let devices = reply.json()["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["id"], WINDOWS);
    assert_eq!(devices[0]["operating_system"], "Windows");
    assert_eq!(
        devices[0]["action_results"][0]["actionName"],
        "updateWindowsDeviceAccount"
    );
    assert_eq!(devices[0]["action_results"][0]["actionState"], "pending");
    assert_eq!(devices[1]["operating_system"], "iOS");
    assert_eq!(devices[1]["action_results"], json!([]));
    h.stop().await;
}

#[tokio::test]
async fn emulate_takes_devices_with_their_os() {
    let dir = common::temp_dir("devices-ca");
    let ca = dir.join("ca.pem");
    let mut child = common::process::Proc::spawn(
        std::process::Command::new(common::process::BIN)
            .args(["emulate", "--listen", "127.0.0.1:0", "--ca-out"])
            .arg(&ca)
            .args([
                "--device",
                &format!("{WINDOWS}:MacOS"),
                "--device",
                WINDOWS_B,
            ]),
    );
    let prefix = "graphgate emulator listening on https://";
    let line = child
        .stderr
        .wait_for_async(Duration::from_secs(30), move |l| l.starts_with(prefix))
        .await
        .unwrap_or_else(|| panic!("the emulator did not start:\n{}", child.stderr.text()));
    let addr: SocketAddr = line.strip_prefix(prefix).unwrap().trim().parse().unwrap();
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let req = request(GRAPH, Method::GET, "/_emulator/devices", &[], "");
    let reply = send_to(addr, &ca_pem, GRAPH, req, false).await.unwrap();
    let devices = reply.json()["devices"].clone();
    let shown: Vec<(&str, &str)> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap(),
                d["operating_system"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, [(WINDOWS, "macOS"), (WINDOWS_B, "Windows")]);
    drop(child);

    let (status, _, stderr) = common::process::run(
        std::process::Command::new(common::process::BIN).args([
            "emulate",
            "--device",
            &format!("{WINDOWS}:beos"),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("use windows, ios, macos or android"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
