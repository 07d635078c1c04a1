//! The emulated Graph as an independent witness: it reads paths and checks bodies against
//! Microsoft's CSDL excerpt (shipped as data), not the gateway's route and schema code. Each
//! kind of operation the catalog covers is exercised directly against it here: device
//! actions with and without parameters, beta-only parameters and actions, the DELETE of a
//! device, a user-bound action, the secret-returning functions, an action answering 200 with
//! a body, and the bulk `executeAction`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use base64::Engine;
use graphgate_emulator::Cloud;
use graphgate_emulator::{
    DEMO_ANDROID_DEVICE_ID, DEMO_CLIENT_ID, DEMO_IOS_DEVICE_ID, DEMO_MACOS_DEVICE_ID,
    EmulatorConfig,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use common::emu::{self, Harness, Reply};

const GRAPH: &str = "graph.microsoft.com";
const WINDOWS: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
const WINDOWS_B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";
const UNKNOWN: &str = "99999999-8888-4777-8666-555555555555";

/// Every role any operation needs, so the checks below are about paths and bodies.
fn config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.apps[0].roles.extend(
        [
            "DeviceManagementManagedDevices.ReadWrite.All",
            "DeviceManagementConfiguration.ReadWrite.All",
        ]
        .map(str::to_owned),
    );
    config
}

async fn call(h: &Harness, method: Method, path: &str, body: &str) -> Reply {
    let auth = format!(
        "Bearer {}",
        h.emu
            .mint_token(Cloud::Global, DEMO_CLIENT_ID, 3600)
            .unwrap()
    );
    let mut headers = vec![("authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    h.send(GRAPH, method, path, &headers, body).await
}

fn item(version: &str, device: &str, op: &str) -> String {
    format!("/{version}/deviceManagement/managedDevices/{device}/{op}")
}

fn assert_refused(reply: &Reply, status: StatusCode, part: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(part), "{message}");
}

#[tokio::test]
async fn device_actions_are_checked_against_the_csdl_of_their_version() {
    let h = emu::start(config()).await;
    let post = |path: String, body: &'static str| {
        let h = &h;
        async move { call(h, Method::POST, &path, body).await }
    };
    // Parameterless actions take no body or an empty object; not a parameter.
    assert_eq!(
        post(item("v1.0", WINDOWS, "retire"), "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post(item("beta", WINDOWS, "syncDevice"), "{}").await.status,
        StatusCode::NO_CONTENT
    );
    let reply = post(item("v1.0", WINDOWS, "retire"), r#"{"keepUserData":true}"#).await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "'keepUserData' in the request payload is not a valid parameter for the operation 'retire'",
    );
    // Types, nullability and version: obliterationBehavior is a beta parameter of wipe.
    let reply = post(item("v1.0", WINDOWS, "cleanWindowsDevice"), "{}").await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "'keepUserData' is missing");
    let reply = post(
        item("v1.0", WINDOWS, "windowsDefenderScan"),
        r#"{"quickScan":"yes"}"#,
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "'Edm.Boolean'");
    let wipe = r#"{"keepUserData":true,"obliterationBehavior":"always"}"#;
    let reply = post(item("v1.0", WINDOWS, "wipe"), wipe).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "'obliterationBehavior'");
    assert_eq!(
        post(item("beta", WINDOWS, "wipe"), wipe).await.status,
        StatusCode::NO_CONTENT
    );
    let reply = post(
        item("beta", WINDOWS, "wipe"),
        r#"{"keepUserData":true,"keepUserData":false}"#,
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "duplicate");
    // A beta-only action does not exist in v1.0; a beta one runs on its platform only.
    let reply = post(item("v1.0", DEMO_IOS_DEVICE_ID, "enableLostMode"), "{}").await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "segment 'enableLostMode'");
    let lost = r#"{"message":"Call me","phoneNumber":"+1 555 0100","footer":"IT"}"#;
    assert_eq!(
        post(item("beta", DEMO_IOS_DEVICE_ID, "enableLostMode"), lost)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let reply = post(item("beta", DEMO_ANDROID_DEVICE_ID, "enableLostMode"), lost).await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "enableLostMode is not supported on Android devices.",
    );
    // beta's comanagedDevices binds the same actions; v1.0 has no such navigation.
    let co = format!("/beta/deviceManagement/comanagedDevices/{WINDOWS}/microsoft.graph.rebootNow");
    assert_eq!(post(co, "").await.status, StatusCode::NO_CONTENT);
    let co = format!("/v1.0/deviceManagement/comanagedDevices/{WINDOWS}/rebootNow");
    assert_refused(
        &post(co, "").await,
        StatusCode::BAD_REQUEST,
        "comanagedDevices",
    );
    // An action takes POST; a function GET.
    let reply = call(&h, Method::GET, &item("v1.0", WINDOWS, "retire"), "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.text_header("allow"), "POST");
    let reply = post(item("beta", DEMO_MACOS_DEVICE_ID, "getFileVaultKey()"), "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.text_header("allow"), "GET");
    let results = h.emu.device(WINDOWS).unwrap().action_results;
    let names: Vec<&str> = results.iter().map(|r| r.action_name.as_str()).collect();
    assert_eq!(names, ["retire", "syncDevice", "wipe", "rebootNow"]);
    h.stop().await;
}

#[tokio::test]
async fn delete_user_actions_and_a_returned_body() {
    let h = emu::start(config()).await;
    let path = format!("/v1.0/deviceManagement/managedDevices/{WINDOWS_B}");
    let reply = call(&h, Method::DELETE, &path, "{}").await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "not allowed with DELETE");
    assert_eq!(
        call(&h, Method::DELETE, &path, "").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(h.emu.device(WINDOWS_B).is_none());
    assert_eq!(
        call(&h, Method::DELETE, &path, "").await.status,
        StatusCode::NOT_FOUND
    );

    let user = "/beta/users/room1@contoso.com/microsoft.graph.removeAllDevicesFromManagement";
    assert_eq!(
        call(&h, Method::POST, user, "").await.status,
        StatusCode::NO_CONTENT
    );

    let body = r#"{"templateType":{"templateType":"predefined"}}"#;
    let reply = call(
        &h,
        Method::POST,
        &item("beta", WINDOWS, "createDeviceLogCollectionRequest"),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let value = &reply.json()["value"];
    assert_eq!(
        value["@odata.type"],
        "microsoft.graph.deviceLogCollectionResponse"
    );
    assert_eq!(value["managedDeviceId"], WINDOWS);
    let reply = call(
        &h,
        Method::POST,
        &item("beta", WINDOWS, "createDeviceLogCollectionRequest"),
        r#"{"templateType":{"templateType":"custom"}}"#,
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "templateType");
    h.stop().await;
}

#[tokio::test]
async fn secret_functions_answer_the_devices_secret_and_rotations_renew_it() {
    let h = emu::start(config()).await;
    let get = |device: &'static str, function: &'static str| {
        let h = &h;
        async move { call(h, Method::GET, &item("beta", device, function), "").await }
    };
    let secrets = h.emu.device_secrets(DEMO_MACOS_DEVICE_ID).unwrap();
    let reply = get(DEMO_MACOS_DEVICE_ID, "getFileVaultKey()").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"@odata.context": "https://graph.microsoft.com/beta/$metadata#Edm.String",
               "value": secrets.file_vault_key.expose()})
    );
    let reply = get(DEMO_MACOS_DEVICE_ID, "retrieveRecoveryLockPasscode()").await;
    assert_eq!(
        reply.json()["value"],
        secrets.recovery_lock_passcode.expose()
    );
    let windows = h.emu.device_secrets(WINDOWS).unwrap();
    let reply = get(
        WINDOWS,
        "microsoft.graph.retrieveDeviceLocalAdminAccountDetail()",
    )
    .await;
    let encoded = reply.json()["value"]["passwordBase64"]
        .as_str()
        .unwrap()
        .to_owned();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(decoded, windows.local_admin_password.expose().as_bytes());
    // On a platform without it: 400; unknown device: 404; not in v1.0.
    assert_refused(
        &get(WINDOWS, "getFileVaultKey()").await,
        StatusCode::BAD_REQUEST,
        "not supported on Windows",
    );
    let reply = call(
        &h,
        Method::GET,
        &item("v1.0", DEMO_MACOS_DEVICE_ID, "getFileVaultKey()"),
        "",
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "getFileVaultKey");
    // A rotation renews the key.
    let rotate = call(
        &h,
        Method::POST,
        &item("beta", DEMO_MACOS_DEVICE_ID, "rotateFileVaultKey"),
        "",
    )
    .await;
    assert_eq!(rotate.status, StatusCode::NO_CONTENT);
    let renewed = h.emu.device_secrets(DEMO_MACOS_DEVICE_ID).unwrap();
    assert_ne!(
        renewed.file_vault_key.expose(),
        secrets.file_vault_key.expose()
    );
    assert_eq!(
        renewed.recovery_lock_passcode.expose(),
        secrets.recovery_lock_passcode.expose()
    );
    // Nothing of it reaches the records or introspection (records keep bodies, and a GET has none).
    let dump = serde_json::to_string(&h.emu.graph_requests()).unwrap()
        + &serde_json::to_string(&h.emu.devices()).unwrap();
    assert!(!dump.contains(secrets.file_vault_key.expose()));
    h.stop().await;
}

#[tokio::test]
async fn bulk_execute_action_answers_per_device_in_a_200() {
    let h = emu::start(config()).await;
    let body = json!({
        "actionName": "remoteLockIsNotOne", "deviceIds": [WINDOWS]
    });
    let path = "/beta/deviceManagement/managedDevices/executeAction";
    let reply = call(&h, Method::POST, path, &body.to_string()).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "'actionName'");
    let body = json!({
        "actionName": "signatureUpdate",
        "deviceIds": [WINDOWS, UNKNOWN, DEMO_IOS_DEVICE_ID]
    });
    let reply = call(&h, Method::POST, path, &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let value: Value = reply.json()["value"].clone();
    assert_eq!(value["successfulDeviceIds"], json!([WINDOWS]));
    assert_eq!(value["notFoundDeviceIds"], json!([UNKNOWN]));
    assert_eq!(value["notSupportedDeviceIds"], json!([DEMO_IOS_DEVICE_ID]));
    assert_eq!(value["failedDeviceIds"], json!([]));
    let results = h.emu.device(WINDOWS).unwrap().action_results;
    assert_eq!(results[0].action_name, "windowsDefenderUpdateSignatures");
    let co = "/beta/deviceManagement/comanagedDevices/executeAction";
    let body = json!({"actionName": "syncDevice", "deviceIds": [WINDOWS]});
    assert_eq!(
        call(&h, Method::POST, co, &body.to_string()).await.status,
        StatusCode::OK
    );
    let v1 = "/v1.0/deviceManagement/managedDevices/executeAction";
    assert_refused(
        &call(&h, Method::POST, v1, &body.to_string()).await,
        StatusCode::BAD_REQUEST,
        "executeAction",
    );
    h.stop().await;
}

#[test]
fn the_emulator_reads_no_gateway_code() {
    // The witness must not share the code it checks: its crate does not depend on the
    // gateway's library, and none of its sources names it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("emulator");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap();
    assert!(
        !dependencies.lines().any(|l| l.starts_with("graphgate ")
            || l.starts_with("graphgate=")
            || l.contains("path = \"..")),
        "the emulator depends on the gateway: {dependencies}"
    );
    let mut files = vec![root.join("src")];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("graphgate::"),
                "{} names the gateway's code",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} files");
}
