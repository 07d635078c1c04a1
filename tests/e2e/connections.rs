//! The listener under idle, slow and greedy clients: every connection state has a deadline
//! (silent sockets, half-sent prefaces, h2c and TLS connections that never send a request,
//! idle HTTP/2, unanswered pings), connections are capped in total and per source address
//! and answered at once past a cap, and a normal caller keeps getting answers throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::h2raw;
use common::pki::{Ca, client_config};
use common::*;
use graphgate::server::ServerLimits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The deadline these tests configure for a connection's first request.
const FIRST_REQUEST: Duration = Duration::from_secs(3);
/// How long a test waits for a close it expects: the deadline, the server's 1 s close grace,
/// and room for a loaded machine.
const CLOSE_BOUND: Duration = Duration::from_secs(3 + 1 + 4);

fn short_deadlines() -> ServerLimits {
    ServerLimits {
        header_read_timeout: FIRST_REQUEST,
        ..ServerLimits::default()
    }
}

/// Silent sockets from several client addresses (the per-source cap is not what is tested).
const SOURCES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
    Ipv4Addr::new(127, 0, 0, 5),
];

/// Opens `n` connections that each first write `opening` (maybe nothing) and then stay
/// silent; each task reports how long its connection lived and whether the server closed it.
async fn silent_connections(
    gateway: std::net::SocketAddr,
    n: usize,
    opening: &'static [u8],
) -> Vec<tokio::task::JoinHandle<(Duration, bool)>> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut tcp = connect_from(SOURCES[i % SOURCES.len()], gateway).await;
        let opened = Instant::now();
        tasks.push(tokio::spawn(async move {
            if !opening.is_empty() {
                tcp.write_all(opening).await.unwrap();
            }
            let (_, closed) = read_until_closed(&mut tcp, CLOSE_BOUND).await;
            (opened.elapsed(), closed)
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_in_every_state_are_closed_while_callers_get_answers() {
    const SILENT: usize = 2_000;
    // Each silent connection is two descriptors here (client and server side).
    raise_fd_limit(2 * SILENT as u64 + 1_000);
    let h = start_with(Options {
        server: short_deadlines(),
        ..Options::default()
    })
    .await;
    let tcp = silent_connections(h.gateway, SILENT, b"").await;
    let half_preface = silent_connections(h.gateway, 5, b"PRI * HTTP/2.0\r\n").await;
    let h2c = silent_connections(h.gateway, 5, h2raw_opening()).await;
    let half_head = silent_connections(h.gateway, 5, b"POST /v1.0/x HTTP/1.1\r\nHost: g\r\n").await;

    // With all of them open, a caller still gets its answer.
    assert_eq!(h.call().await.status, 204);
    let still_open = tcp.iter().filter(|t| !t.is_finished()).count();
    assert!(
        still_open > SILENT / 2,
        "the silent connections were open during the call ({still_open} of {SILENT})"
    );

    for (state, tasks) in [
        ("silent TCP", tcp),
        ("half an HTTP/2 preface", half_preface),
        ("h2c after its preface", h2c),
        ("half a request head", half_head),
    ] {
        let n = tasks.len();
        let mut longest = Duration::ZERO;
        for task in tasks {
            let (lived, closed) = task.await.unwrap();
            assert!(
                closed,
                "{state}: a connection was still open after {lived:?}"
            );
            longest = longest.max(lived);
        }
        assert!(
            longest >= FIRST_REQUEST - Duration::from_millis(200) && longest < CLOSE_BOUND,
            "{state}: {n} connections closed by their deadline (longest lived {longest:?})"
        );
    }
    // And after them, too.
    assert_eq!(h.call().await.status, 204);
}

/// The opening bytes of an HTTP/2 connection, as a `'static` slice.
fn h2raw_opening() -> &'static [u8] {
    static OPENING: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    OPENING.get_or_init(h2raw::opening)
}

/// A TLS listener with a server certificate from `ca` (no client certificates).
fn tls(ca: &Ca) -> Arc<rustls::ServerConfig> {
    let server = ca.server();
    graphgate::tls::server_config(&graphgate::tls::ServerTls {
        cert_pem: server.cert_pem,
        key_pem: graphgate::secret::Secret::new(server.key_pem),
        client_ca_pem: None,
        client_crl: None,
    })
    .unwrap()
}

#[tokio::test]
async fn tls_connections_silent_after_the_handshake_are_closed() {
    let ca = Ca::new("server CA");
    let h = start_with(Options {
        tls: Some(tls(&ca)),
        server: short_deadlines(),
        ..Options::default()
    })
    .await;
    let mut silent = Vec::new();
    for alpn in [None, Some(b"h2".to_vec())] {
        let mut config = (*client_config(&ca, None)).clone();
        config.alpn_protocols = alpn.into_iter().collect();
        let tcp = TcpStream::connect(h.gateway).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let opened = Instant::now();
        silent.push(tokio::spawn(async move {
            let mut tls = tls;
            let (_, closed) = read_until_closed(&mut tls, CLOSE_BOUND).await;
            (opened.elapsed(), closed)
        }));
    }
    let (status, body) = tls_call(h.gateway, client_config(&ca, None), Some(ROTATOR_KEY))
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");
    for task in silent {
        let (lived, closed) = task.await.unwrap();
        assert!(closed, "still open after {lived:?}");
        assert!(
            lived >= FIRST_REQUEST - Duration::from_millis(200),
            "{lived:?}"
        );
    }
}

#[tokio::test]
async fn past_max_connections_callers_are_answered_at_once() {
    let h = start_with(Options {
        server: ServerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let _held: Vec<TcpStream> = [
        TcpStream::connect(h.gateway).await.unwrap(),
        TcpStream::connect(h.gateway).await.unwrap(),
    ]
    .into();
    let started = Instant::now();
    let (code, text) = raw_request(h.gateway, Ipv4Addr::LOCALHOST).await;
    assert_eq!(code, 503, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at once"
    );
    assert!(text.contains("\"code\":\"serviceNotAvailable\""), "{text}");
    assert!(text.contains("--max-connections"), "names the cap: {text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
}

/// A raw HTTP/1.1 request from `from`; the status and the whole answer (bounded wait).
async fn raw_request(gateway: std::net::SocketAddr, from: Ipv4Addr) -> (u16, String) {
    let mut tcp = connect_from(from, gateway).await;
    let request = format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        body().len(),
        body()
    );
    // The server may have answered and closed already: a failed write still leaves the answer.
    let _ = tcp.write_all(request.as_bytes()).await;
    let (bytes, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        closed,
        "no answer within 5 s: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[tokio::test]
async fn past_the_per_source_cap_that_source_is_answered_at_once_and_others_are_served() {
    let h = start_with(Options {
        server: ServerLimits {
            max_connections_per_source: 3,
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let refused = r#"graphgate_connections_closed_total{reason="max_connections_per_source"}"#;
    let before = metric(refused);
    let greedy = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(greedy, h.gateway).await);
    }
    let (code, text) = raw_request(h.gateway, greedy).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("--max-connections-per-source"), "{text}");
    assert_eq!(metric(refused), before + 1.0, "counted");
    // Another source is not affected.
    let (code, text) = raw_request(h.gateway, Ipv4Addr::new(127, 0, 0, 3)).await;
    assert_eq!(code, 204, "{text}");
    // A closed connection frees its place: once the server has seen the close, the greedy
    // source is served again (bounded wait; each try is a real request).
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (code, _) = raw_request(h.gateway, greedy).await;
            if code == 204 {
                return;
            }
            assert_eq!(code, 503);
        }
    })
    .await;
    assert!(served.is_ok(), "the freed place was never given back");
}

#[tokio::test]
async fn idle_http2_connections_get_a_goaway_and_unanswered_pings_close_busy_ones() {
    let h = start_with(Options {
        server: ServerLimits {
            idle_timeout: Duration::from_secs(2),
            http2_keep_alive_interval: Duration::from_secs(1),
            http2_keep_alive_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        },
        limits: graphgate::gateway::Limits {
            body_read_timeout: Duration::from_secs(60),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    // Idle: one request, then nothing. The client answers pings (hyper does), so only the
    // idle deadline can end it.
    let tcp = TcpStream::connect(h.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::post(format!("http://gateway{ACTION_PATH}"))
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body())))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 204);
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(2 + 1 + 4), driver)
        .await
        .expect("the idle connection was closed")
        .unwrap()
        .ok();
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1_800),
        "{:?}",
        idle_from.elapsed()
    );

    // Busy but deaf: a request in flight (its body never comes) on a client that never
    // answers the server's pings. The ping timeout closes it long before the body timeout.
    let mut tcp = TcpStream::connect(h.gateway).await.unwrap();
    let mut opening = h2raw::opening();
    let auth = format!("Bearer {ROTATOR_KEY}");
    let block = h2raw::post_headers(
        ACTION_PATH,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-length", "500"),
        ],
    );
    opening.extend(h2raw::frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &block));
    tcp.write_all(&opening).await.unwrap();
    let got = h2raw::read_frames(tcp, Duration::from_secs(1 + 1 + 1 + 4)).await;
    assert!(got.saw(h2raw::PING), "the server pinged");
    assert!(got.closed, "closed for the unanswered ping");
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_a_head_that_does_gets_closed() {
    let h = start_with(Options {
        limits: graphgate::gateway::Limits {
            body_read_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        server: short_deadlines(),
        ..Options::default()
    })
    .await;
    let mut tcp = TcpStream::connect(h.gateway).await.unwrap();
    let head = format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"upd"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (bytes, _) = read_until_closed(&mut tcp, Duration::from_secs(1 + 4)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"requestTimeout\""), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(h.emulator.graph_requests().is_empty());

    // A request head that stops half-way: closed by the header-read timeout, no answer.
    let mut tcp = TcpStream::connect(h.gateway).await.unwrap();
    tcp.write_all(b"POST /v1.0/x HTTP/1.1\r\nHost: g\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, CLOSE_BOUND).await;
    assert!(closed && started.elapsed() >= FIRST_REQUEST - Duration::from_millis(200));
}

#[tokio::test]
async fn past_the_cap_a_tls_connection_is_closed_at_once_without_a_handshake() {
    let ca = Ca::new("server CA");
    let h = start_with(Options {
        tls: Some(tls(&ca)),
        server: ServerLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let _held = TcpStream::connect(h.gateway).await.unwrap();
    let mut over = TcpStream::connect(h.gateway).await.unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_until_closed(&mut over, Duration::from_secs(3)).await;
    assert!(
        closed && bytes.is_empty(),
        "closed, nothing sent: {bytes:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A TLS handshake that stalls midway (a ClientHello announced, a few of its bytes sent) is
/// closed at `--tls-handshake-timeout-secs`, counted under its own close reason in the
/// metrics of the gateway process this test runs.
#[tokio::test]
async fn a_tls_handshake_stalled_midway_is_closed_at_its_deadline_with_its_reason() {
    let backend = served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let ca = Ca::new("server CA");
    let leaf = ca.server();
    let (cert, key) = (backend.dir.join("tls.crt"), backend.dir.join("tls.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = backend.serve_command();
    cmd.arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("GRAPHGATE_TLS_HANDSHAKE_TIMEOUT_SECS", "1");
    let gw = backend.serve(cmd).await;
    let series = r#"graphgate_connections_closed_total{reason="tls_handshake_timeout"}"#;
    let before = metrics::value(&gw.metrics().await, series);
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    // A handshake record of 512 bytes is announced; its first 6 bytes follow, then nothing.
    tcp.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();
    let opened = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    let lived = opened.elapsed();
    assert!(closed, "still open after {lived:?}");
    assert!(
        lived >= Duration::from_millis(800),
        "closed at its deadline: {lived:?}"
    );
    let after = metrics::value(&gw.metrics().await, series);
    assert_eq!(after - before, 1.0, "{series}: {before} -> {after}");
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}
