//! In-flight slots under callers that declare bodies they never send: a caller no rule could
//! allow is refused before its body is read, and a caller with permission holds at most its
//! own share of the slots, so other callers keep getting answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use graphgate::gateway::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Opens a connection and sends a request head declaring a body of 500 bytes, then 10 of them.
async fn stalled_request(h: &Harness, key: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(h.gateway).await.unwrap();
    let head = format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"update"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Reads one HTTP/1.1 answer's status line within `within` (0 if none came).
async fn status_within(tcp: &mut TcpStream, within: Duration) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, tcp.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        _ => 0,
    }
}

fn slow_bodies() -> Limits {
    Limits {
        max_in_flight: 4,
        body_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_caller_without_permission_is_refused_before_its_body_and_takes_no_slot() {
    let h = start_with(Options {
        limits: slow_bodies(),
        ..Options::default()
    })
    .await;
    // Ten stalled requests from a caller no rule allows: each is refused at once, unread.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(stalled_request(&h, OTHER_KEY).await);
    }
    let started = Instant::now();
    for tcp in &mut stalled {
        assert_eq!(status_within(tcp, Duration::from_secs(5)).await, 403);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // With all ten connections still open, the permitted caller gets its answer.
    assert_eq!(h.call().await.status, 204);
    let records = h.audit_records().await;
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["caller"] == "other-service")
        .collect();
    assert_eq!(refused.len(), 10, "each refusal is audited");
    for r in refused {
        assert_eq!(r["decision"], "denied", "{r}");
        assert_eq!(r["status"], 403, "{r}");
        assert!(r["params"].is_null(), "nothing of the body was read: {r}");
        assert!(
            r["note"].as_str().unwrap().contains("before the body"),
            "{r}"
        );
    }
    assert_eq!(h.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn one_permitted_caller_cannot_take_every_slot() {
    let h = start_with(Options {
        limits: Limits {
            max_in_flight_per_caller: 2,
            ..slow_bodies()
        },
        policy: Some(
            TestPolicy::standard()
                .rule(
                    Rule::allow("other-too")
                        .callers(&["other-service"])
                        .operations(&["managedDevices.updateWindowsDeviceAccount"]),
                )
                .yaml(),
        ),
        ..Options::default()
    })
    .await;
    let _held = [
        stalled_request(&h, ROTATOR_KEY).await,
        stalled_request(&h, ROTATOR_KEY).await,
    ];
    // Wait (bounded) until both stalled requests hold their caller's slots.
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.gw.caller_in_flight("rooms-rotator") < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stalled requests reach the body read");
    let third = h.call().await;
    third.assert_graph_error(429, "activityLimitReached");
    assert_eq!(third.headers["retry-after"], "1");
    // Another caller is not affected by the rotator's stalled requests.
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204
    );
    assert_eq!(
        h.gw.caller_in_flight("other-service"),
        0,
        "its slot was freed"
    );
}

const BULK_PATH: &str = "/beta/deviceManagement/managedDevices/executeAction";

/// A bulk request head declaring a body of 500 bytes, then 10 of them.
async fn stalled_bulk(h: &Harness, key: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(h.gateway).await.unwrap();
    let head = format!(
        "POST {BULK_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"actionNa"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// The rotator may update room accounts (no operation a bulk request can run); the other
/// service may sync any device (which `executeAction` can run).
fn bulk_policy() -> TestPolicy {
    TestPolicy::standard().rule(
        Rule::allow("other-syncs")
            .callers(&["other-service"])
            .operations(&["managedDevices.syncDevice"]),
    )
}

#[tokio::test]
async fn callers_without_bulk_rights_cannot_hold_bulk_slots() {
    let h = start_with(Options {
        limits: Limits {
            max_bulk_in_flight: 2,
            ..slow_bodies()
        },
        policy: Some(bulk_policy().yaml()),
        ..Options::default()
    })
    .await;
    // Ten stalled bulk requests from a caller with no right to any bulk operation: each is
    // refused at once, unread, holding nothing.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(stalled_bulk(&h, ROTATOR_KEY).await);
    }
    for tcp in &mut stalled {
        assert_eq!(status_within(tcp, Duration::from_secs(5)).await, 403);
    }
    assert_eq!(h.gw.bulk_in_flight(), 0);
    assert_eq!(h.gw.caller_in_flight("rooms-rotator"), 0);
    // With all ten connections still open, the permitted caller's bulk request goes through.
    let sync = format!(r#"{{"actionName":"syncDevice","deviceIds":["{DEVICE}"]}}"#);
    let reply = h.post(BULK_PATH, Some(OTHER_KEY), &sync).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let records = h.audit_records().await;
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["caller"] == "rooms-rotator")
        .collect();
    assert_eq!(refused.len(), 10, "each refusal is audited");
    for r in refused {
        assert_eq!(r["decision"], "denied", "{r}");
        assert!(
            r["device_ids"].is_null(),
            "nothing of the body was read: {r}"
        );
    }
    assert_eq!(h.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn bulk_requests_have_their_own_smaller_in_flight_bound() {
    let h = start_with(Options {
        limits: Limits {
            max_bulk_in_flight: 2,
            ..slow_bodies()
        },
        policy: Some(
            bulk_policy()
                .rule(
                    Rule::allow("other-updates")
                        .callers(&["other-service"])
                        .operations(&["managedDevices.updateWindowsDeviceAccount"]),
                )
                .yaml(),
        ),
        ..Options::default()
    })
    .await;
    let _held = [
        stalled_bulk(&h, OTHER_KEY).await,
        stalled_bulk(&h, OTHER_KEY).await,
    ];
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.gw.bulk_in_flight() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stalled bulk requests reach the body read");
    let sync = format!(r#"{{"actionName":"syncDevice","deviceIds":["{DEVICE}"]}}"#);
    let third = h.post(BULK_PATH, Some(OTHER_KEY), &sync).await;
    third.assert_graph_error(429, "activityLimitReached");
    assert_eq!(third.headers["retry-after"], "1");
    assert!(
        third.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bulk requests in flight")
    );
    // Single calls, the same caller's included, are not held up by them.
    assert_eq!(
        h.post(ACTION_PATH, Some(OTHER_KEY), &body()).await.status,
        204
    );
    assert_eq!(h.call().await.status, 204);
}
