//! HTTP/2 abuse, written frame by frame: control-frame floods (SETTINGS, PING, WINDOW_UPDATE
//! on many streams) are cut off with a GOAWAY, and the attacks h2 already bounds (rapid
//! reset, CONTINUATION floods, HPACK bombs) stay bounded. After each, a caller gets 204.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::h2raw::*;
use common::*;
use graphgate::server::ServerLimits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a test waits for the server to close an abusive connection.
const BOUND: Duration = Duration::from_secs(10);

/// Writes `opening` and then `rounds` batches from `batch` on one connection while reading
/// what the server sends; returns what it sent until it closed (or `BOUND` passed).
async fn abuse(
    h: &Harness,
    opening: Vec<u8>,
    rounds: usize,
    batch: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> Received {
    let tcp = TcpStream::connect(h.gateway).await.unwrap();
    let (read, mut write) = tcp.into_split();
    let reader = tokio::spawn(read_frames(read, BOUND));
    // The writer keeps its half open after the flood: the server, not an EOF, must end it.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&opening).await;
        for round in 0..rounds {
            if write.write_all(&batch(round)).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(write);
    });
    let received = reader.await.unwrap();
    writer.abort();
    received
}

fn repeat(frame: Vec<u8>, times: usize) -> Vec<u8> {
    frame.repeat(times)
}

#[tokio::test]
async fn settings_ping_and_window_update_floods_get_a_goaway() {
    let h = start().await;
    let floods = r#"graphgate_connections_closed_total{reason="http2_control_frame_flood"}"#;
    let before = metric(floods);
    // 20 rounds of 1,000 frames each: twenty times the default budget of 1,000 per second.
    let settings = abuse(&h, opening(), 20, |_| {
        repeat(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]), 1_000)
    })
    .await;
    let pings = abuse(&h, opening(), 20, |_| {
        repeat(frame(PING, 0, 0, &[7; 8]), 1_000)
    })
    .await;
    // Streams 1, 3, ... 99 opened (each refused 401: no key), then window updates on all.
    let mut streams = opening();
    for id in (1..100).step_by(2) {
        streams.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &post_headers(ACTION_PATH, &[]),
        ));
    }
    let windows = abuse(&h, streams, 20, |_| {
        (0..1_000u32)
            .flat_map(|i| frame(WINDOW_UPDATE, 0, (i % 50) * 2 + 1, &[0, 0, 0, 1]))
            .collect()
    })
    .await;
    for (flood, got) in [
        ("SETTINGS", settings),
        ("PING", pings),
        ("WINDOW_UPDATE", windows),
    ] {
        assert!(
            got.closed,
            "{flood}: the connection was still open after {BOUND:?}"
        );
        assert!(
            got.saw(GOAWAY),
            "{flood}: closed with a GOAWAY: {:?}",
            summary(&got)
        );
        let acks = got
            .kinds
            .iter()
            .filter(|k| **k == SETTINGS || **k == PING)
            .count();
        assert!(
            acks < 5_000,
            "{flood}: cut off early, not all acknowledged ({acks})"
        );
    }
    // Other tests may close floods at the same time: at least these three were counted.
    assert!(metric(floods) >= before + 3.0, "counted");
    assert!(h.emulator.graph_requests().is_empty());
    assert_eq!(h.call().await.status, 204, "the gateway still answers");
}

#[tokio::test]
async fn a_budget_below_the_flood_rate_is_configurable_and_normal_traffic_stays_under_it() {
    let h = start_with(Options {
        server: ServerLimits {
            http2_max_control_frames_per_sec: 20,
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    // A well-behaved HTTP/2 client with several requests stays under even this small budget.
    let tcp = TcpStream::connect(h.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..5 {
        let req = http::Request::post(format!("http://gateway{ACTION_PATH}"))
            .header("authorization", format!("Bearer {ROTATOR_KEY}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body())))
            .unwrap();
        assert_eq!(sender.send_request(req).await.unwrap().status(), 204);
    }
    let got = abuse(&h, opening(), 1, |_| repeat(frame(PING, 0, 0, &[1; 8]), 30)).await;
    assert!(
        got.closed && got.saw(GOAWAY),
        "30 pings > 20: {:?}",
        summary(&got)
    );
}

#[tokio::test]
async fn rapid_reset_continuation_floods_and_hpack_bombs_stay_bounded() {
    let h = start().await;
    // Rapid reset: open a stream and cancel it at once, thousands of times.
    let reset = abuse(&h, opening(), 10, |round| {
        (0..500u32)
            .flat_map(|i| {
                let id = (round as u32 * 500 + i) * 2 + 1;
                let mut f = frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    id,
                    &post_headers(ACTION_PATH, &[]),
                );
                f.extend(frame(RST_STREAM, 0, id, &[0, 0, 0, 8]));
                f
            })
            .collect()
    })
    .await;
    assert!(
        reset.closed && reset.saw(GOAWAY),
        "rapid reset: {:?}",
        summary(&reset)
    );

    // CONTINUATION flood: a header block that never ends, 1 KiB at a time.
    let mut start = opening();
    start.extend(frame(HEADERS, 0, 1, &post_headers(ACTION_PATH, &[])));
    let continuation = abuse(&h, start, 20, |round| {
        (0..100)
            .flat_map(|i| {
                let mut block = Vec::new();
                literal(&format!("x-c{round}-{i}"), &"v".repeat(1_000), &mut block);
                frame(CONTINUATION, 0, 1, &block)
            })
            .collect()
    })
    .await;
    assert!(
        continuation.closed,
        "CONTINUATION flood: {:?}",
        summary(&continuation)
    );

    // HPACK bomb: one 4 KB entry in the dynamic table, referenced 10,000 times (40 MB).
    let mut bomb = post_headers(ACTION_PATH, &[]);
    literal_indexed("x-bomb", &"a".repeat(4_000), &mut bomb);
    bomb.extend(std::iter::repeat_n(0xbe, 10_000)); // index 62: the entry just added
    let mut start = opening();
    start.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &bomb));
    let tcp = TcpStream::connect(h.gateway).await.unwrap();
    let (read, mut write) = tcp.into_split();
    write.write_all(&start).await.unwrap();
    let got = read_frames(read, Duration::from_secs(3)).await;
    assert!(
        got.saw(RST_STREAM) || got.saw(GOAWAY) || got.closed,
        "HPACK bomb refused: {:?}",
        summary(&got)
    );
    drop(write);

    assert!(h.emulator.graph_requests().is_empty());
    assert_eq!(h.call().await.status, 204, "the gateway still answers");
}

fn summary(got: &Received) -> String {
    let count = |k: u8| got.kinds.iter().filter(|x| **x == k).count();
    format!(
        "closed={} bytes={} settings={} ping={} goaway={} rst={} headers={}",
        got.closed,
        got.bytes,
        count(SETTINGS),
        count(PING),
        count(GOAWAY),
        count(RST_STREAM),
        count(HEADERS)
    )
}
