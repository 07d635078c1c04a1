//! Every catalog operation through the gateway against the emulator, table-driven: in v1.0
//! and beta where it exists, on every path shape Graph accepts for it (with and without the
//! `microsoft.graph.` namespace), with the emulator checking each request against
//! Microsoft's CSDL; the emulator must have seen exactly the canonical request. Also: the
//! catalog and the CSDL excerpt agree for every v1.0 action, a beta-only operation on /v1.0
//! is refused with nothing sent, and a secret read reaches its caller `no-store`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failing loudly is the point

use crate::common;

use bytes::Bytes;
use graphgate::identity::api_key_sha256;
use graphgate::operation::catalog::{ApiVersion, Binding, CATALOG, Invocation, Operation};
use graphgate::operation::schema::Ty;
use graphgate_emulator::csdl::Csdl;
use graphgate_emulator::{EmulatedDevice, EmulatorConfig, OperatingSystem, demo_devices, supports};
use http::{Method, Request};
use http_body_util::Full;

use common::{Harness, Options, Reply};

pub const KEY: &str = "catalog-runner-key-5e1f";
const DETECTED_APP: &str = "app-7";
const UPN: &str = "room1@contoso.com";

/// A body each operation accepts, as a Graph SDK would send it ("" for none).
fn example_body(op: &Operation) -> &'static str {
    match op.action {
        "wipe" => r#"{"keepUserData":true,"keepEnrollmentData":false}"#,
        "cleanWindowsDevice" => r#"{"keepUserData":false}"#,
        "deleteUserFromSharedAppleDevice" => r#"{"userPrincipalName":"student7@contoso.com"}"#,
        "windowsDefenderScan" => r#"{"quickScan":true}"#,
        "updateWindowsDeviceAccount" => {
            r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"Catalog-Passw0rd","userPrincipalName":"room1@contoso.com"},"deviceAccountEmail":"room1@contoso.com"}}"##
        }
        "enableLostMode" => {
            r#"{"message":"Call IT","phoneNumber":"+1 555 0100","footer":"Contoso"}"#
        }
        "playLostModeSound" => r#"{"durationInMinutes":"2"}"#,
        "setDeviceName" => r#"{"deviceName":"LAPTOP-7"}"#,
        "triggerConfigurationManagerAction" => {
            r#"{"configurationManagerAction":{"action":"refreshMachinePolicy"}}"#
        }
        "sendCustomNotificationToCompanyPortal" => {
            r#"{"notificationTitle":"Reboot","notificationBody":"Please reboot today"}"#
        }
        "initiateOnDemandProactiveRemediation" => r#"{"scriptPolicyId":"script-1"}"#,
        "createDeviceLogCollectionRequest" => r#"{"templateType":{"templateType":"predefined"}}"#,
        _ => "",
    }
}

/// One Windows device per DELETE (each deletes its device).
fn delete_device(n: usize) -> String {
    format!("d0000000-0000-4000-8000-{n:012}")
}

fn all_operations_policy() -> String {
    let ops: Vec<&str> = CATALOG
        .iter()
        .filter(|op| op.binding != Binding::Devices)
        .map(|op| op.name)
        .collect();
    format!(
        "version: 1\ncallers:\n  - name: runner\n    api_key_sha256: \"{}\"\nrules:\n  - name: everything\n    callers: [runner]\n    operations: [{}]\npacing:\n  tenant_writes: 100000 per 20s\n",
        api_key_sha256(KEY),
        ops.join(", ")
    )
}

/// An emulator app holding every permission an operation needs, and the delete devices.
fn emulator() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    let mut roles: Vec<String> = CATALOG.iter().map(|op| op.permission.to_owned()).collect();
    roles.sort();
    roles.dedup();
    config.apps[0].roles = roles;
    config.devices = demo_devices();
    config
        .devices
        .extend((0..40).map(|n| EmulatedDevice::new(delete_device(n), OperatingSystem::Windows)));
    config
}

pub async fn start() -> Harness {
    start_audited(common::AuditMode::File).await
}

pub async fn start_audited(audit: common::AuditMode) -> Harness {
    common::start_with(Options {
        policy: Some(all_operations_policy()),
        emulator: emulator(),
        audit,
        ..Options::default()
    })
    .await
}

/// A device of the demo inventory whose platform offers `action`.
pub fn device_for(action: &str) -> String {
    demo_devices()
        .into_iter()
        .find(|d| supports(d.os, action))
        .map(|d| d.id)
        .unwrap()
}

/// (path sent, canonical path expected) for each shape of `op` in `version` on `device`.
fn paths(op: &Operation, version: ApiVersion, device: &str) -> Vec<(String, String)> {
    let v = version.as_str();
    let segment = match op.invocation {
        Invocation::Action => format!("/{}", op.action),
        Invocation::Function => format!("/{}()", op.action),
        Invocation::Delete => String::new(),
    };
    let namespaced = match op.invocation {
        Invocation::Delete => String::new(),
        _ => segment.replacen('/', "/microsoft.graph.", 1),
    };
    let mut prefixes: Vec<String> = match op.binding {
        Binding::User => vec![format!("/users/{UPN}")],
        Binding::Devices => vec!["/deviceManagement/managedDevices".to_owned()],
        Binding::Device => vec![
            format!("/deviceManagement/managedDevices/{device}"),
            format!("/deviceManagement/detectedApps/{DETECTED_APP}/managedDevices/{device}"),
            format!(
                "/deviceManagement/detectedApps/{DETECTED_APP}/managedDevices/{device}/users/{UPN}/managedDevices/{device}"
            ),
            format!("/users/{UPN}/managedDevices/{device}"),
        ],
    };
    if op.binding == Binding::Device && version == ApiVersion::Beta {
        prefixes.push(format!("/deviceManagement/comanagedDevices/{device}"));
    }
    let mut out = Vec::new();
    for prefix in prefixes {
        let canonical = format!("/{v}{prefix}{segment}");
        out.push((canonical.clone(), canonical.clone()));
        if op.invocation != Invocation::Delete {
            // Graph's casing is restored, and the namespace dropped.
            let sent = format!("/{}{prefix}{namespaced}", v.to_uppercase());
            out.push((sent, canonical));
        }
    }
    out
}

pub async fn send(h: &Harness, method: Method, path: &str, body: &str) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{}", h.gateway, path))
        .header("authorization", format!("Bearer {KEY}"));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    h.send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
}

#[tokio::test]
async fn every_operation_on_every_shape_reaches_graph_as_its_canonical_request() {
    // Some 300 requests: without the audit's fsyncs (audited elsewhere) they take seconds.
    let h = start_audited(common::AuditMode::Disabled).await;
    let mut deletes = 0;
    let mut checked = 0;
    for op in CATALOG.iter().filter(|op| op.binding != Binding::Devices) {
        for &version in op.versions {
            let device = match op.invocation {
                Invocation::Delete => String::new(),
                _ => device_for(op.action),
            };
            let shapes = match op.invocation {
                Invocation::Delete => (0..4)
                    .map(|_| {
                        deletes += 1;
                        delete_device(deletes)
                    })
                    .flat_map(|d| {
                        paths(op, version, &d)
                            .into_iter()
                            .take(1)
                            .collect::<Vec<_>>()
                    })
                    .collect(),
                _ => paths(op, version, &device),
            };
            for (sent, canonical) in shapes {
                let body = example_body(op);
                let before = h.emulator.graph_requests().len();
                let reply = send(&h, op.invocation.method(), &sent, body).await;
                assert_eq!(
                    reply.status.as_u16(),
                    op.success_status,
                    "{} {sent}: {:?}",
                    op.name,
                    reply.body
                );
                let seen = h.emulator.graph_requests();
                assert_eq!(seen.len(), before + 1, "{sent}: one request reached Graph");
                let last = seen.last().unwrap();
                assert_eq!(last.method, op.invocation.method_name(), "{sent}");
                assert_eq!(last.path, canonical, "{sent}");
                assert_eq!(last.body, body, "{sent}: the body as sent");
                assert_eq!(
                    last.status, op.success_status,
                    "{sent}: the emulator accepted it"
                );
                assert_eq!(
                    last.headers.get("content-type").map(String::as_str),
                    (!body.is_empty()).then_some("application/json"),
                    "{sent}"
                );
                if op.discloses_secret() {
                    assert_eq!(reply.headers["cache-control"], "no-store", "{sent}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 250, "{checked} requests checked");
    h.shut_down().await;
}

#[tokio::test]
async fn a_beta_only_operation_on_v1_is_refused_and_nothing_is_sent() {
    let h = start().await;
    for op in CATALOG
        .iter()
        .filter(|op| !op.versions.contains(&ApiVersion::V1))
    {
        let device = device_for(op.action);
        let (path, _) = paths(op, ApiVersion::V1, &device).remove(0);
        let reply = send(&h, op.invocation.method(), &path, example_body(op)).await;
        reply.assert_graph_error(400, "invalidRequest");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("use /beta"), "{message}");
    }
    assert!(h.emulator.graph_requests().is_empty());
    h.shut_down().await;
}

/// Each v1.0 action in the catalog is in Microsoft's CSDL excerpt with the same parameters,
/// types and nullability, and the excerpt has no action the catalog lacks.
#[test]
fn the_catalog_and_the_v1_csdl_agree() {
    let csdl = Csdl::of(graphgate_emulator::ApiVersion::V1).unwrap();
    let v1_ops: Vec<&Operation> = CATALOG
        .iter()
        .filter(|op| op.versions.contains(&ApiVersion::V1) && op.invocation == Invocation::Action)
        .collect();
    let mut names: Vec<&str> = v1_ops.iter().map(|op| op.action).collect();
    names.sort_unstable();
    let csdl_names: Vec<&str> = csdl.operations.keys().map(String::as_str).collect();
    assert_eq!(names, csdl_names);
    for op in v1_ops {
        let action = &csdl.operations[op.action];
        let ours: Vec<(String, String, bool)> = op
            .params
            .iter()
            .map(|p| (p.name.to_owned(), csdl_type(&p.ty), !p.required))
            .collect();
        let theirs: Vec<(String, String, bool)> = action
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.clone(), p.nullable))
            .collect();
        assert_eq!(ours, theirs, "{}", op.name);
        let binding = match op.binding {
            Binding::User => graphgate_emulator::csdl::Binding::User,
            _ => graphgate_emulator::csdl::Binding::Device,
        };
        assert_eq!(action.binding, binding, "{}", op.name);
    }
    // The complex types the seed action uses: the same properties, derived types included.
    for (name, props) in [
        (
            "updateWindowsDeviceAccountActionParameter",
            vec![
                "calendarSyncEnabled",
                "deviceAccount",
                "deviceAccountEmail",
                "exchangeServer",
                "passwordRotationEnabled",
                "sessionInitiationProtocalAddress",
            ],
        ),
        (
            "windowsDeviceADAccount",
            vec!["password", "domainName", "userName"],
        ),
        (
            "windowsDeviceAzureADAccount",
            vec!["password", "userPrincipalName"],
        ),
    ] {
        let theirs: Vec<&str> = csdl
            .properties(name)
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(theirs, props, "{name}");
    }
}

/// The catalog's type in the CSDL's spelling.
fn csdl_type(ty: &Ty) -> String {
    match ty {
        Ty::Bool => "Edm.Boolean".to_owned(),
        Ty::String => "Edm.String".to_owned(),
        Ty::StringList => "Collection(Edm.String)".to_owned(),
        Ty::Enum(_) => "(enum)".to_owned(),
        Ty::Complex(c) => c.name.replace("microsoft.graph.", "graph."),
    }
}

#[tokio::test]
async fn the_simplified_api_covers_every_kind_of_operation() {
    let h = start().await;
    let mac = device_for("getFileVaultKey");
    let win = device_for("wipe");
    // A flat body is Graph's own body; null means not given.
    let reply = send(
        &h,
        Method::POST,
        &format!("/api/v1/managedDevices/{win}/wipe"),
        r#"{"keepUserData":true,"macOsUnlockCode":null}"#,
    )
    .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let last = h.emulator.graph_requests().pop().unwrap();
    assert_eq!(
        last.path,
        format!("/v1.0/deviceManagement/managedDevices/{win}/wipe")
    );
    assert_eq!(last.body, r#"{"keepUserData":true}"#);
    // A beta-only operation goes to beta; a secret read is a GET.
    let reply = send(
        &h,
        Method::GET,
        &format!("/api/v1/managedDevices/{mac}/getFileVaultKey"),
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let last = h.emulator.graph_requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        (
            "GET",
            format!("/beta/deviceManagement/managedDevices/{mac}/getFileVaultKey()").as_str()
        )
    );
    let reply = send(
        &h,
        Method::POST,
        &format!("/api/v1/managedDevices/{mac}/getFileVaultKey"),
        "",
    )
    .await;
    reply.assert_graph_error(405, "methodNotAllowed");
    assert_eq!(reply.headers["allow"], "GET");
    let reply = send(
        &h,
        Method::POST,
        &format!("/api/v1/users/{UPN}/removeAllDevicesFromManagement"),
        "",
    )
    .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let reply = send(
        &h,
        Method::DELETE,
        &format!("/api/v1/managedDevices/{}", delete_device(39)),
        "",
    )
    .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let doc = send(&h, Method::GET, "/api/v1/openapi.json", "")
        .await
        .json();
    // Every operation, and the approval API's six paths.
    assert_eq!(doc["paths"].as_object().unwrap().len(), CATALOG.len() + 6);
    h.shut_down().await;
}

/// Each secret read: the secret reaches the caller, `no-store`, and is in no audit record
/// (which records that a secret was disclosed, to whom, for which device, and its size).
#[tokio::test]
async fn secrets_reach_the_caller_and_not_the_audit() {
    let h = start().await;
    let reads = [
        ("getFileVaultKey", "macOS"),
        ("retrieveRecoveryLockPasscode", "macOS"),
        ("retrieveDeviceLocalAdminAccountDetail", "Windows"),
    ];
    let mut secrets = Vec::new();
    for (function, _) in reads {
        let device = device_for(function);
        let s = h.emulator.device_secrets(&device).unwrap();
        let reply = send(
            &h,
            Method::GET,
            &format!("/beta/deviceManagement/managedDevices/{device}/{function}()"),
            "",
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.headers["cache-control"], "no-store");
        let body = String::from_utf8(reply.body.to_vec()).unwrap();
        let secret = match function {
            "getFileVaultKey" => s.file_vault_key.expose().to_owned(),
            "retrieveRecoveryLockPasscode" => s.recovery_lock_passcode.expose().to_owned(),
            _ => reply.json()["value"]["passwordBase64"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        assert!(
            body.contains(&secret),
            "{function}: the caller gets the secret"
        );
        secrets.push((function, device, secret, reply.body.len()));
    }
    let records = h.audit_records().await;
    let text = serde_json::to_string(&records).unwrap();
    for (function, device, secret, size) in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{function}'s secret in the audit"
        );
        let outcome = records
            .iter()
            .find(|r| {
                r["kind"] == "outcome" && r["operation"] == format!("managedDevices.{function}")
            })
            .unwrap();
        assert_eq!(outcome["caller"], "runner");
        assert_eq!(outcome["device_id"], device.as_str());
        assert_eq!(outcome["tier"], "disclosure");
        assert_eq!(outcome["disclosed_bytes"], *size as u64);
    }
    h.shut_down().await;
}

/// A secret read is never stored for replay, even with an `Idempotency-Key`: the same key
/// twice asks Graph twice (a secret reaches its caller only, and is not kept in the
/// gateway's store: the shared store holds no claim of it), and neither answer is marked
/// replayed.
#[tokio::test]
async fn a_secret_read_with_an_idempotency_key_is_asked_of_graph_each_time() {
    let Some(redis) = common::redis::RedisServer::start().await else {
        return;
    };
    let h = common::start_with(Options {
        policy: Some(all_operations_policy()),
        emulator: emulator(),
        state: crate::shared_state::redis_state(&redis),
        ..Options::default()
    })
    .await;
    let mac = device_for("getFileVaultKey");
    let path = format!("/beta/deviceManagement/managedDevices/{mac}/getFileVaultKey()");
    let secret = h
        .emulator
        .device_secrets(&mac)
        .unwrap()
        .file_vault_key
        .expose()
        .to_owned();
    for _ in 0..2 {
        let req = Request::get(format!("http://{}{path}", h.gateway))
            .header("authorization", format!("Bearer {KEY}"))
            .header("idempotency-key", "read-fv-0001")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = h.send(req).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert!(!reply.headers.contains_key("idempotent-replayed"));
        assert!(String::from_utf8_lossy(&reply.body).contains(&secret));
    }
    let asked = h
        .emulator
        .graph_requests()
        .iter()
        .filter(|r| r.path.contains("getFileVaultKey"))
        .count();
    assert_eq!(asked, 2, "Graph was asked each time");
    // A keyed write beside them is kept for replay: the one claim in the store is its.
    let sync = format!(
        "http://{}/v1.0/deviceManagement/managedDevices/{}/syncDevice",
        h.gateway,
        device_for("syncDevice")
    );
    let req = Request::post(sync)
        .header("authorization", format!("Bearer {KEY}"))
        .header("idempotency-key", "sync-0001")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h.send(req).await.status, 204);
    let keys = redis.keys().await;
    let claims: Vec<_> = keys.iter().filter(|k| k.contains(":idem:")).collect();
    assert_eq!(claims.len(), 1, "the write's claim only: {keys:?}");
    let audit = serde_json::to_string(&h.audit_records().await).unwrap();
    assert!(!audit.contains(&secret));
    h.shut_down().await;
}
