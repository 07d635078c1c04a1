//! Hostile input: path tricks, hostile JSON, malformed HTTP framing and headers, HTTP/2
//! cleartext. Every case gets a clear 4xx, nothing is forwarded, nothing panics, and no
//! trick gets past the policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes and returns the status line's code and the whole answer.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    // Half-close: the server sees the end of the request (a truncated body ends here).
    tcp.shutdown().await.unwrap();
    let mut buf = Vec::new();
    // An answer, or the connection closed: a server that does neither within 5 s fails the
    // case (it used to pass as "code 0").
    tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer and no close within 5 s: {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn post_raw(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn path_tricks_are_refused_or_resolve_to_the_same_policy() {
    let h = start().await;
    let d = DEVICE;
    let a = "updateWindowsDeviceAccount";
    let refused = [
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}/../{d}/{a}"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/%2e%2e/{d}/{a}"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}%2f{a}"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}%5c{a}"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement//managedDevices/{d}/{a}"),
            400,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices;x=y/{d}/{a}"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/{d};x=y/{a}"),
            400,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}/{a}/"),
            400,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/{d}/{a}%00"),
            404,
        ),
        (
            format!("/v1.0/deviceManagement/managedDevices/%ff%fe/{a}"),
            400,
        ),
        (
            format!("/v1.0/users/..%2f..%2fadmin/managedDevices/{d}/{a}"),
            400,
        ),
        (
            format!(
                "/v1.0/deviceManagement/managedDevices/{}/{a}",
                "a".repeat(5000)
            ),
            414,
        ),
        (
            format!(
                "/v1.0/deviceManagement/managedDevices/{d}/{a}{}",
                "/x".repeat(40)
            ),
            404,
        ),
        (
            format!(
                "/v1.0/deviceManagement/managedDevices/{d}/{}",
                "A".repeat(1500)
            ),
            404,
        ),
    ];
    for (path, status) in &refused {
        let r = h.post(path, Some(ROTATOR_KEY), &body()).await;
        assert_eq!(r.status.as_u16(), *status, "{path}: {:?}", r.body);
        let v = r.json();
        assert!(v["error"]["code"].is_string(), "{path}: Graph-shaped error");
    }
    assert!(
        h.emulator.graph_requests().is_empty(),
        "no trick was forwarded"
    );

    // Mixed case is Graph's own matching: it resolves to the same operation, and the policy
    // still applies to it.
    let mixed = format!(
        "/V1.0/DEVICEMANAGEMENT/ManagedDevices/{}/UPDATEWINDOWSDEVICEACCOUNT",
        d.to_uppercase()
    );
    assert_eq!(
        h.post(&mixed, Some(OTHER_KEY), &body()).await.status,
        403,
        "no policy bypass by case"
    );
    assert_eq!(h.post(&mixed, Some(ROTATOR_KEY), &body()).await.status, 204);
    assert_eq!(
        h.emulator.graph_requests()[0].path,
        ACTION_PATH,
        "forwarded on the canonical path"
    );

    // Raw bytes that are not valid in a request target never reach the gateway's logic.
    let mut request = post_raw("/v1.0/deviceManagement/managedDevices/XX/x", "", "{}");
    let at = request.windows(2).position(|w| w == b"XX").unwrap();
    request[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let (code, _) = raw(h.gateway, &request).await;
    assert_eq!(code, 400);
    assert_eq!(h.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn hostile_json_is_refused_before_policy_and_forwarding() {
    let h = start().await;
    let wrap = |inner: &str| format!("{{\"updateWindowsDeviceAccountActionParameter\":{inner}}}");
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        wrap(r#"{"exchangeServer":"a","exchangeServer":"b"}"#),
        r#"{"updateWindowsDeviceAccountActionParameter":{},"updateWindowsDeviceAccountActionParameter":{}}"#.to_owned(),
        wrap(&format!(r#"{{"exchangeServer":{deep}}}"#)),
        deep.clone(),
        wrap(r#"{"calendarSyncEnabled":1e999}"#),
        wrap(&format!(r#"{{"calendarSyncEnabled":{}}}"#, "9".repeat(5000))),
        wrap(r#"{"calendarSyncEnabled":"true"}"#),
        wrap(r#"{"deviceAccountEmail":["a@b.c"]}"#),
        wrap(r##"{"deviceAccount":{"@odata.type":"#microsoft.graph.user","password":"x"}}"##),
        wrap(r##"{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAccount/../../user"}}"##),
        wrap(&format!(r#"{{"deviceAccount":{{"@odata.type":"{}"}}}}"#, "#microsoft.graph.".repeat(2000))),
        wrap(r#"{"deviceAccount":{"@odata.type":7}}"#),
        wrap(r#"{"deviceAccount":{"@odata.id":"x"}}"#),
        wrap(r#"{"__proto__":{"admin":true}}"#),
        "{\"updateWindowsDeviceAccountActionParameter\":{\"exchangeServer\":\"\u{0}\"".to_owned(),
        "\u{feff}{}".to_owned(),
        String::new(),
    ];
    for body in &cases {
        let r = h.post(ACTION_PATH, Some(ROTATOR_KEY), body).await;
        assert_eq!(r.status, 400, "{:.120}: {:?}", body, r.body);
        assert_eq!(r.json()["error"]["code"], "invalidRequest");
    }
    // A huge but well-formed string under the body limit is just a long value.
    let long = wrap(&format!(r#"{{"exchangeServer":"{}"}}"#, "x".repeat(60_000)));
    assert_eq!(
        h.post(ACTION_PATH, Some(ROTATOR_KEY), &long).await.status,
        204
    );
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "only the well-formed body was forwarded"
    );
}

#[tokio::test]
async fn malformed_http_framing_and_headers_are_refused() {
    let h = start().await;
    let body = body();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("duplicate content-length", post_raw(ACTION_PATH, &format!("Content-Length: {}\r\n", body.len() + 1), &body)),
        (
            "content-length with transfer-encoding",
            format!("POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n").into_bytes(),
        ),
        (
            "bad chunked encoding",
            format!("POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nnot-hex\r\n{body}\r\n0\r\n\r\n").into_bytes(),
        ),
        ("oversized header", post_raw(ACTION_PATH, &format!("X-Big: {}\r\n", "a".repeat(64 * 1024)), &body)),
        ("too many headers", post_raw(ACTION_PATH, &(0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>(), &body)),
        ("header without colon", post_raw(ACTION_PATH, "NoColonHere\r\n", &body)),
        ("body shorter than content-length", {
            let mut r = post_raw(ACTION_PATH, "", &body);
            r.truncate(r.len() - 10);
            r
        }),
    ];
    for (name, request) in cases {
        let (code, text) = raw(h.gateway, &request).await;
        assert!(
            (400..500).contains(&code) || code == 0,
            "{name}: {code} {text:.200}"
        );
        assert_ne!(code, 204, "{name}");
    }
    assert!(
        h.emulator.graph_requests().is_empty(),
        "nothing was forwarded"
    );
    // The server is still healthy.
    assert_eq!(h.call().await.status, 204);
}

#[tokio::test]
async fn a_forged_host_changes_nothing() {
    let h = start().await;
    let req = post_raw(ACTION_PATH, "", &body());
    let req = String::from_utf8(req)
        .unwrap()
        .replace("Host: gateway", "Host: evil.example");
    let (code, text) = raw(h.gateway, req.as_bytes()).await;
    assert_eq!(code, 204, "{text}");
    let sent = &h.emulator.graph_requests()[0];
    assert_eq!(
        sent.host, "graph.microsoft.com",
        "the configured cloud, not the caller's Host"
    );
}

#[tokio::test]
async fn http2_cleartext_gets_the_same_checks() {
    let h = start().await;
    let tcp = tokio::net::TcpStream::connect(h.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let send = |key: &str, path: &str| {
        http::Request::post(format!("http://gateway{path}"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body())))
            .unwrap()
    };
    let ok = sender
        .send_request(send(ROTATOR_KEY, ACTION_PATH))
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let denied = sender
        .send_request(send(OTHER_KEY, ACTION_PATH))
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let bad = sender
        .send_request(send(ROTATOR_KEY, &format!("{ACTION_PATH}/")))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body = bad.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("invalidRequest"));
    assert_eq!(h.emulator.graph_requests().len(), 1);
}
