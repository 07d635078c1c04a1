//! End-to-end: caller → gateway → emulated Entra and Graph, per cloud and per path shape,
//! plus every refusal the gateway makes before forwarding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use graphgate::cloud::Cloud;
use http_body_util::Full;

#[tokio::test]
async fn each_cloud_gets_its_own_token_and_graph_host() {
    for cloud in Cloud::ALL {
        let h = start_with(Options {
            cloud,
            ..Options::default()
        })
        .await;
        let r = h.call().await;
        assert_eq!(r.status, 204, "{cloud}: {:?}", r.body);
        let e = cloud.endpoints();

        let tokens = h.emulator.token_requests();
        assert_eq!(tokens.len(), 1, "{cloud}");
        assert_eq!(
            tokens[0].host, e.login_host,
            "{cloud}: token from the cloud's authority"
        );
        assert_eq!(tokens[0].sni.as_deref(), Some(e.login_host));
        assert_eq!(
            tokens[0].scope.as_deref(),
            Some(e.scope),
            "{cloud}: the cloud's scope"
        );
        assert_eq!(tokens[0].status, 200);

        let graph = h.emulator.graph_requests();
        assert_eq!(graph.len(), 1, "{cloud}");
        assert_eq!(graph[0].host, e.graph_host, "{cloud}: Host header");
        assert_eq!(graph[0].sni.as_deref(), Some(e.graph_host), "{cloud}: SNI");
        assert_eq!(graph[0].path, ACTION_PATH);
        let claims = graph[0]
            .token_claims
            .as_ref()
            .expect("a valid token reached Graph");
        assert_eq!(claims["aud"], e.resource, "{cloud}: token audience");
        assert_eq!(claims["idtyp"], "app");
        assert_eq!(graph[0].status, 204);
    }
}

#[tokio::test]
async fn every_path_shape_reaches_graph_as_one_canonical_path() {
    let h = start().await;
    let d = DEVICE;
    let other = "11111111-2222-3333-4444-555555555555";
    let cases = [
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}/updateWindowsDeviceAccount"),
            format!("/v1.0/deviceManagement/managedDevices/{d}/updateWindowsDeviceAccount"),
        ),
        (
            format!(
                "/v1.0/deviceManagement/detectedApps/app1/managedDevices/{d}/updateWindowsDeviceAccount"
            ),
            format!(
                "/v1.0/deviceManagement/detectedApps/app1/managedDevices/{d}/updateWindowsDeviceAccount"
            ),
        ),
        (
            format!(
                "/beta/deviceManagement/detectedApps/app1/managedDevices/{d}/users/room1@contoso.com/managedDevices/{d}/updateWindowsDeviceAccount"
            ),
            format!(
                "/beta/deviceManagement/detectedApps/app1/managedDevices/{d}/users/room1@contoso.com/managedDevices/{d}/updateWindowsDeviceAccount"
            ),
        ),
        (
            format!("/v1.0/users/{other}/managedDevices/{d}/updateWindowsDeviceAccount"),
            format!("/v1.0/users/{other}/managedDevices/{d}/updateWindowsDeviceAccount"),
        ),
        (
            format!(
                "/v1.0/deviceManagement/managedDevices/{d}/microsoft.graph.updateWindowsDeviceAccount"
            ),
            format!("/v1.0/deviceManagement/managedDevices/{d}/updateWindowsDeviceAccount"),
        ),
        (
            format!(
                "/V1.0/DeviceManagement/MANAGEDDEVICES/{}/UpdateWindowsDeviceAccount",
                d.to_uppercase()
            ),
            format!("/v1.0/deviceManagement/managedDevices/{d}/updateWindowsDeviceAccount"),
        ),
    ];
    for (i, (path, forwarded)) in cases.iter().enumerate() {
        let r = h.post(path, Some(ROTATOR_KEY), &body()).await;
        assert_eq!(r.status, 204, "{path}: {:?}", r.body);
        let graph = h.emulator.graph_requests();
        assert_eq!(graph.len(), i + 1);
        assert_eq!(&graph[i].path, forwarded, "{path}");
        assert_eq!(graph[i].body, body(), "the body is forwarded as sent");
    }
}

#[tokio::test]
async fn forwarded_headers_are_built_not_copied() {
    let h = start().await;
    let crid = "5a6b7c8d-1111-2222-3333-444455556666";
    let req = h
        .request(ACTION_PATH)
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .header("cookie", "session=abc")
        .header("x-forwarded-for", "10.0.0.1")
        .header("client-request-id", crid)
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["client-request-id"], crid);
    assert!(
        r.headers.contains_key("request-id"),
        "Graph's request-id is returned"
    );
    assert!(
        !r.headers.contains_key("x-ms-ags-diagnostic"),
        "only the headers callers need"
    );
    let sent = &h.emulator.graph_requests()[0];
    assert_eq!(
        sent.headers.get("client-request-id").map(String::as_str),
        Some(crid)
    );
    for stripped in ["cookie", "x-forwarded-for", "authorization"] {
        assert!(
            !sent.headers.contains_key(stripped),
            "{stripped} reached Graph: {:?}",
            sent.headers
        );
    }
    let claims = sent.token_claims.as_ref().unwrap();
    assert_eq!(
        claims["appid"],
        graphgate_emulator::DEMO_CLIENT_ID,
        "the gateway's own token, not the caller's key"
    );

    // A client-request-id that is not a GUID is replaced by a fresh one.
    let req = h
        .request(ACTION_PATH)
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .header("client-request-id", "not-a-guid")
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    let r = h.send(req).await;
    let given = r.headers["client-request-id"].to_str().unwrap().to_owned();
    assert!(graphgate::operation::route::is_guid(&given), "{given}");
    assert_eq!(
        h.emulator.graph_requests()[1].headers["client-request-id"],
        given
    );
}

#[tokio::test]
async fn refusals_are_graph_shaped_and_forward_nothing() {
    let h = start().await;
    let missing = h.post(ACTION_PATH, None, &body()).await;
    missing.assert_graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(
        missing.headers["www-authenticate"],
        r#"Bearer realm="graphgate""#
    );
    let unknown = h.post(ACTION_PATH, Some("not-a-known-key"), &body()).await;
    unknown.assert_graph_error(401, "InvalidAuthenticationToken");
    assert!(unknown.headers.contains_key("www-authenticate"));

    let denied = h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await;
    denied.assert_graph_error(403, "accessDenied");
    let msg = denied.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("other-service") && msg.contains("managedDevices.updateWindowsDeviceAccount"),
        "{msg}"
    );
    assert!(
        !msg.contains("rotator"),
        "a 403 never reveals other callers' rules: {msg}"
    );

    h.post(
        "/v1.0/deviceManagement/managedDevices",
        Some(ROTATOR_KEY),
        &body(),
    )
    .await
    .assert_graph_error(404, "resourceNotFound");
    h.post(
        &ACTION_PATH.replace("updateWindowsDeviceAccount", "wipeEverything"),
        Some(ROTATOR_KEY),
        "{}",
    )
    .await
    .assert_graph_error(404, "resourceNotFound");
    h.post(
        &ACTION_PATH.replace(DEVICE, "not-a-device-id"),
        Some(ROTATOR_KEY),
        &body(),
    )
    .await
    .assert_graph_error(400, "invalidRequest");
    h.post(
        &format!("{ACTION_PATH}?$select=id"),
        Some(ROTATOR_KEY),
        &body(),
    )
    .await
    .assert_graph_error(400, "invalidRequest");

    let get = h
        .send(
            http::Request::get(format!("http://{}{ACTION_PATH}", h.gateway))
                .header("authorization", format!("Bearer {ROTATOR_KEY}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    get.assert_graph_error(405, "methodNotAllowed");
    assert_eq!(get.headers["allow"], "POST");

    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing was forwarded"
    );
    assert_eq!(
        h.emulator.token_request_count(),
        1,
        "no token was fetched beyond the one at start"
    );
}

#[tokio::test]
async fn bad_bodies_get_clear_4xx_and_forward_nothing() {
    let h = start().await;
    let big = format!(
        "{{\"updateWindowsDeviceAccountActionParameter\":{{\"exchangeServer\":\"{}\"}}}}",
        "x".repeat(70 * 1024)
    );
    h.post(ACTION_PATH, Some(ROTATOR_KEY), &big)
        .await
        .assert_graph_error(413, "requestEntityTooLarge");
    h.post(ACTION_PATH, Some(ROTATOR_KEY), "this is not json")
        .await
        .assert_graph_error(400, "invalidRequest");
    h.post(
        ACTION_PATH,
        Some(ROTATOR_KEY),
        r#"{"updateWindowsDeviceAccountActionParameter":{"bogusField":1}}"#,
    )
    .await
    .assert_graph_error(400, "invalidRequest");
    h.post(ACTION_PATH, Some(ROTATOR_KEY), r#"{"updateWindowsDeviceAccountActionParameter":{"exchangeServer":"a","exchangeServer":"b"}}"#).await.assert_graph_error(400, "invalidRequest");
    let wrong_type = h
        .send(
            h.request(ACTION_PATH)
                .header("authorization", format!("Bearer {ROTATOR_KEY}"))
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(body())))
                .unwrap(),
        )
        .await;
    wrong_type.assert_graph_error(415, "unsupportedMediaType");
    // A schema error names the member but never echoes its value.
    let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), &format!(r#"{{"updateWindowsDeviceAccountActionParameter":{{"deviceAccount":"{PASSWORD}"}}}}"#)).await;
    r.assert_graph_error(400, "invalidRequest");
    assert!(!String::from_utf8_lossy(&r.body).contains(PASSWORD));
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn cold_cache_concurrency_makes_exactly_one_token_request() {
    let h = std::sync::Arc::new(start().await);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { h.call().await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    assert_eq!(h.emulator.token_request_count(), 1);
    assert_eq!(h.emulator.graph_requests().len(), 200);
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_without_a_failed_request() {
    // Tokens live 3 s and are never used in their last second; refresh-ahead starts at 1.5 s.
    // The workers send far more than Intune's 200 writes per 20 s: pacing is lifted here.
    let h = std::sync::Arc::new(
        start_with(Options {
            token_lifetime: Duration::from_secs(3),
            token_expiry_margin: Duration::from_secs(1),
            policy: Some(unpaced()),
            ..Options::default()
        })
        .await,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move {
                let mut done = 0u32;
                while tokio::time::Instant::now() < deadline {
                    let r = h.call().await;
                    assert_eq!(r.status, 204, "{:?}", r.body);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let graph = h.emulator.graph_requests();
    assert_eq!(graph.len() as u32, total);
    assert!(graph.iter().all(|g| g.status == 204));
    let tokens = h.emulator.token_request_count();
    assert!(
        tokens >= 4,
        "8 s of 3 s tokens needs several refreshes, saw {tokens}"
    );
    // The emulator checks expiry on every call and all answered 204: no expired token was sent.
    let distinct: std::collections::BTreeSet<_> = graph
        .iter()
        .filter_map(|g| g.token_claims.as_ref().map(|c| c["uti"].to_string()))
        .collect();
    assert!(
        distinct.len() >= 4,
        "requests used {} distinct tokens",
        distinct.len()
    );
}
