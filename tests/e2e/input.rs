//! Request input the gateway must not take at face value: a path naming two devices, string
//! parameters carrying control characters or more than one address, explicit nulls, bodies
//! without their wrapper, and caller-chosen JSON keys in error messages. Each gets a clear
//! 400 in Graph's error JSON, is audited where refusals are audited, and reaches nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use graphgate::identity::api_key_sha256;

/// The second device of the emulator's inventory.
const DEVICE_B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";
const WRAPPER: &str = "updateWindowsDeviceAccountActionParameter";

fn policy(rules: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\nrules:\n{rules}",
        api_key_sha256(ROTATOR_KEY)
    )
}

async fn harness(rules: &str) -> Harness {
    start_with(Options {
        policy: Some(policy(rules)),
        ..Options::default()
    })
    .await
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"].as_str().unwrap().to_owned()
}

/// Graph's third path shape, with its two `managedDevices/{id}` segments filled in.
fn two_device_path(first: &str, last: &str) -> String {
    format!(
        "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{first}/users/room1@contoso.com/managedDevices/{last}/updateWindowsDeviceAccount"
    )
}

/// The standard body with `"name":"value"` (JSON text) in place of `"name":"<standard>"`.
fn body_with(name: &str, standard: &str, replacement: &str) -> String {
    let from = format!("\"{name}\":\"{standard}\"");
    let body = body();
    assert!(body.contains(&from), "{from} in {body}");
    body.replacen(&from, &format!("\"{name}\":{replacement}"), 1)
}

/// Every record of a refused request: a lone `request` record, decision `invalid`, 400.
fn assert_refusals_audited(records: &[serde_json::Value], count: usize) {
    assert_eq!(records.len(), count, "{records:#?}");
    for r in records {
        assert_eq!(r["kind"], "request", "{r}");
        assert_eq!(r["decision"], "invalid", "{r}");
        assert_eq!(r["status"], 400, "{r}");
        assert_eq!(r["error_code"], "invalidRequest", "{r}");
        assert_eq!(r["caller"], "rooms-rotator", "{r}");
    }
}

#[tokio::test]
async fn a_path_naming_two_devices_is_refused_and_one_device_named_twice_is_forwarded_as_named() {
    // The caller may act on DEVICE only: the last id is what the policy is asked about.
    let h = harness(&format!(
        "  - name: one-device\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    devices: [\"{DEVICE}\"]\n"
    ))
    .await;
    for (first, last) in [(DEVICE_B, DEVICE), (DEVICE, DEVICE_B)] {
        let r = h
            .post(&two_device_path(first, last), Some(ROTATOR_KEY), &body())
            .await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(
            m.contains(first) && m.contains(last) && m.contains("two different managed devices"),
            "{m}"
        );
    }
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing reached Graph"
    );

    // The same device in both places, in any case, is one device: decided, audited and
    // forwarded as that device, and Graph acts on it alone.
    let r = h
        .post(
            &two_device_path(&DEVICE.to_uppercase(), DEVICE),
            Some(ROTATOR_KEY),
            &body(),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let sent = h.emulator.graph_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, two_device_path(DEVICE, DEVICE));
    let updates = |id: &str| {
        h.emulator
            .devices()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
            .update_count
    };
    assert_eq!((updates(DEVICE), updates(DEVICE_B)), (1, 0));
    // Like every path graphgate does not recognise, the refused ones leave no record; the
    // forwarded call's intent and outcome name the one device.
    let records = h.audit_records().await;
    let kinds: Vec<_> = records.iter().map(|r| r["kind"].clone()).collect();
    assert_eq!(kinds, ["intent", "outcome"], "{records:#?}");
    assert!(
        records.iter().all(|r| r["device_id"] == DEVICE),
        "{records:#?}"
    );
}

#[tokio::test]
async fn string_parameters_carry_one_plain_value_each() {
    let h = harness(
        "  - name: contoso-rooms\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: deviceAccountEmail, suffix: \"@contoso.com\" }\n      - { param: deviceAccount.userPrincipalName, suffix: \"@contoso.com\" }\n",
    )
    .await;
    let email = "deviceAccountEmail";
    let upn = "userPrincipalName";
    let std_email = "room1@contoso.com";
    // (parameter, JSON value, path named in the answer): every one would pass the suffix
    // test as text, and every one is more (or other) than one plain value.
    let cases = [
        (email, r#""ceo@evil.example\u0000@contoso.com""#, email),
        (email, r#""ceo@evil.example@contoso.com""#, email),
        (email, r#""ceo@evil.example,room1@contoso.com""#, email),
        (email, r#""ceo@evil.example, room1@contoso.com""#, email),
        (
            email,
            r#""room1@contoso.com\r\nBcc: ceo@evil.example""#,
            email,
        ),
        (email, r#""\"ceo@evil.example\"@contoso.com""#, email),
        (email, r#""Room <ceo@evil.example>@contoso.com""#, email),
        (
            upn,
            r#""ceo@evil.example@contoso.com""#,
            "deviceAccount.userPrincipalName",
        ),
        (
            upn,
            r#""ceo@evil.example\n@contoso.com""#,
            "deviceAccount.userPrincipalName",
        ),
    ];
    for (name, value, named) in cases {
        let r = h
            .post(
                ACTION_PATH,
                Some(ROTATOR_KEY),
                &body_with(name, std_email, value),
            )
            .await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(m.contains(&format!("'{named}'")), "{value}: {m}");
        assert!(!m.contains("evil"), "the value is not echoed: {m}");
    }
    // Control characters anywhere, a password included (never echoed).
    let others = [
        body_with(
            "exchangeServer",
            "outlook.office365.com",
            r#""outlook.office365.com\r\nX-Injected: 1""#,
        ),
        body_with(
            "sessionInitiationProtocalAddress",
            "sip:room1@contoso.com",
            r#""sip:room1@contoso.com\u202e""#,
        ),
        body_with("password", PASSWORD, &format!(r#""{PASSWORD}\u0000""#)),
    ];
    for body in &others {
        let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), body).await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(m.contains("control character"), "{m}");
        assert!(!m.contains(PASSWORD) && !m.contains("Injected"), "{m}");
    }
    // The simplified API names the field the caller sent, not its Graph path.
    let simple = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    let flat = [
        (
            r#""accountType":"azureAD","userPrincipalName":"ceo@evil.example@contoso.com""#,
            "userPrincipalName",
        ),
        (
            r#""sessionInitiationProtocolAddress":"sip:room1@contoso.com\r\n""#,
            "sessionInitiationProtocolAddress",
        ),
    ];
    for (fields, named) in flat {
        let body = format!(
            r#"{{"deviceAccountEmail":"room1@contoso.com","password":"{PASSWORD}",{fields}}}"#
        );
        let r = h.post(&simple, Some(ROTATOR_KEY), &body).await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(m.contains(&format!("the parameter '{named}'")), "{m}");
    }
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing reached Graph"
    );
    let records = h.audit_records().await;
    assert_refusals_audited(&records, cases.len() + others.len() + flat.len());

    // The plain request still goes through.
    assert_eq!(h.call().await.status, 204);
    assert_eq!(h.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn explicit_nulls_are_refused_so_no_deny_rule_is_dodged() {
    let h = harness(
        "  - name: rotate\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n  - name: calendar-sync-stays-on\n    effect: deny\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: calendarSyncEnabled, equals: false }\n",
    )
    .await;
    let sync_null = body().replace(
        "\"calendarSyncEnabled\":true",
        "\"calendarSyncEnabled\":null",
    );
    let account_null = format!(
        r#"{{"{WRAPPER}":{{"deviceAccountEmail":"room1@contoso.com","deviceAccount":null}}}}"#
    );
    let wrapper_null = format!(r#"{{"{WRAPPER}":null}}"#);
    for (body, named) in [
        (&sync_null, "calendarSyncEnabled"),
        (&account_null, "deviceAccount"),
        (&wrapper_null, WRAPPER),
    ] {
        let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), body).await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(m.contains(&format!("'{named}' is null")), "{m}");
    }
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing reached Graph"
    );
    assert_refusals_audited(&h.audit_records().await, 3);

    // The deny rule still decides what it names.
    let sync_off = body().replace(
        "\"calendarSyncEnabled\":true",
        "\"calendarSyncEnabled\":false",
    );
    h.post(ACTION_PATH, Some(ROTATOR_KEY), &sync_off)
        .await
        .assert_graph_error(403, "accessDenied");

    // On the simplified API a null field means "not given": it is left out of the Graph
    // body, so the policy and Graph see the same absence.
    let flat = format!(
        r#"{{"deviceAccountEmail":"room1@contoso.com","password":"{PASSWORD}","calendarSyncEnabled":null}}"#
    );
    let simple = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    assert_eq!(h.post(&simple, Some(ROTATOR_KEY), &flat).await.status, 204);
    let sent = h.emulator.graph_requests();
    assert_eq!(sent.len(), 1);
    let forwarded: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert!(
        forwarded[WRAPPER].get("calendarSyncEnabled").is_none(),
        "{forwarded}"
    );
}

#[tokio::test]
async fn a_body_without_its_wrapper_is_refused_naming_the_wrapper() {
    let h = harness(
        "  - name: rotate\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    )
    .await;
    let flat = format!(
        r#"{{"deviceAccountEmail":"room1@contoso.com","deviceAccount":{{"password":"{PASSWORD}"}}}}"#
    );
    for (body, hint) in [(flat.as_str(), Some("deviceAccount")), ("{}", None)] {
        let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), body).await;
        r.assert_graph_error(400, "invalidRequest");
        let m = message(&r);
        assert!(
            m.contains(&format!("must be wrapped in '{WRAPPER}'")),
            "{body}: {m}"
        );
        if let Some(member) = hint {
            assert!(m.contains(&format!("'{member}' belongs inside it")), "{m}");
        }
    }
    assert!(h.emulator.graph_requests().is_empty());
    assert_refusals_audited(&h.audit_records().await, 2);
}

#[tokio::test]
async fn caller_keys_that_are_not_names_are_never_echoed() {
    let h = harness(
        "  - name: rotate\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
    )
    .await;
    let secret = "Sup3r Secret!9f2";
    let dup_secret = body().replace(
        "\"passwordRotationEnabled\":true",
        &format!("\"{secret}\":1,\"{secret}\":2"),
    );
    let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), &dup_secret).await;
    r.assert_graph_error(400, "invalidRequest");
    let m = message(&r);
    assert!(
        m.contains("duplicate key") && m.contains("not shown"),
        "{m}"
    );
    assert!(!m.contains("Sup3r"), "{m}");
    // A key that is a name is still named: that is what helps the caller.
    let dup_name = body().replace(
        "\"passwordRotationEnabled\":true",
        "\"passwordRotationEnabled\":true,\"passwordRotationEnabled\":false",
    );
    let m = message(&h.post(ACTION_PATH, Some(ROTATOR_KEY), &dup_name).await);
    assert!(
        m.contains("duplicate key \"passwordRotationEnabled\""),
        "{m}"
    );

    let simple = format!("/api/v1/managedDevices/{DEVICE}/updateWindowsDeviceAccount");
    let flat = format!(
        r#"{{"deviceAccountEmail":"room1@contoso.com","password":"{PASSWORD}","{secret}":1,"colour":2}}"#
    );
    let r = h.post(&simple, Some(ROTATOR_KEY), &flat).await;
    r.assert_graph_error(400, "invalidRequest");
    let m = message(&r);
    assert!(m.contains("colour") && m.contains("not shown"), "{m}");
    assert!(!m.contains("Sup3r"), "{m}");

    assert!(h.emulator.graph_requests().is_empty());
    let records = h.audit_records().await;
    assert_refusals_audited(&records, 3);
    let log = std::fs::read_to_string(h.audit_path.as_ref().unwrap()).unwrap();
    assert!(!log.contains("Sup3r"), "the audit log holds no caller key");
}
