//! HTTP/1.1 keep-alive connections at rest are parked outside hyper and rebuilt when bytes
//! arrive: a connection used more often than the park delay (1 s) is not parked between its
//! requests, requests on one connection are answered across parks (bodies, pipelined pairs, a
//! request split across the park), a parked connection still closes at its idle deadline and
//! at once on shutdown (while a request in flight finishes), and a TLS client keeps its
//! certificate identity across parks. Past `HYPER_MAX` live HTTP engines, a connection at rest
//! is parked at once; once the gateway is quiet it returns its allocator's free memory. Each
//! test runs its own gateway process and waits on its `graphgate_connections_parked` gauge
//! (or its `graphgate_memory_trims_total` counter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use graphgate_emulator::{EmulatorConfig, Fault, Faults};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::pki::{Ca, client_config};
use crate::common::policy::{Caller, TestPolicy};
use crate::common::served::{self, Served};
use crate::common::{
    ACTION_PATH, OTHER_KEY, ROTATOR_KEY, body, eventually, graph_received, metrics,
    read_until_closed,
};

const PARKED: &str = "graphgate_connections_parked";
const TRIMS: &str = "graphgate_memory_trims_total";

/// Waits until the gateway has exactly `n` connections parked.
async fn until_parked(gw: &Served, n: u64) {
    eventually(
        &format!("{n} connection(s) parked"),
        Duration::from_secs(10),
        async || (metrics::value(&gw.metrics().await, PARKED) == n as f64).then_some(()),
    )
    .await;
}

/// The standard request as bytes, with `key`.
fn request(key: &str) -> Vec<u8> {
    let body = body();
    format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One HTTP/1.1 response read off a stream: status, head (lowercase), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// A raw HTTP/1.1 client connection that keeps what it read past a response.
struct Raw<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    fn new(stream: S) -> Self {
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next response (bounded wait).
    async fn answer(&mut self) -> Answer {
        tokio::time::timeout(Duration::from_secs(20), self.read_answer())
            .await
            .expect("an answer within 20 s")
    }

    async fn read_answer(&mut self) -> Answer {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        while self.buf.len() < end + length {
            self.fill().await;
        }
        let body = String::from_utf8_lossy(&self.buf[end..end + length]).into_owned();
        self.buf.drain(..end + length);
        Answer { status, head, body }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the gateway closed the connection: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// An answer that keeps the connection open.
fn assert_kept_alive(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}{}", a.head, a.body);
    assert!(!a.head.contains("connection: close"), "{}", a.head);
}

#[tokio::test]
async fn requests_on_one_connection_are_answered_across_parks_whole_split_and_pipelined() {
    let backend = served::backend(EmulatorConfig::default()).await;
    let gw = backend.serve(backend.serve_command()).await;
    let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());

    // Sequential requests with bodies, each after the connection was parked.
    c.send(&request(ROTATOR_KEY)).await;
    assert_kept_alive(&c.answer().await, 204);
    until_parked(&gw, 1).await;
    c.send(&request("not-a-key")).await;
    let refused = c.answer().await;
    assert_kept_alive(&refused, 401);
    assert!(refused.body.contains("\"error\""), "{}", refused.body);
    until_parked(&gw, 1).await;
    c.send(&request(OTHER_KEY)).await;
    assert_kept_alive(&c.answer().await, 403);
    until_parked(&gw, 1).await;

    // A request whose first bytes wake the parked connection and whose rest follows.
    let whole = request(ROTATOR_KEY);
    let (first, rest) = whole.split_at(40);
    c.send(first).await;
    until_parked(&gw, 0).await;
    c.send(rest).await;
    assert_kept_alive(&c.answer().await, 204);
    until_parked(&gw, 1).await;

    // A pipelined pair, the second request's first part in the same write as the first
    // request: hyper reads ahead, is taken apart at rest holding those bytes, and the next
    // hyper connection gets them first.
    let mut pair = request(OTHER_KEY);
    let second = request(ROTATOR_KEY);
    let (head_part, tail_part) = second.split_at(60);
    pair.extend_from_slice(head_part);
    c.send(&pair).await;
    assert_kept_alive(&c.answer().await, 403);
    c.send(tail_part).await;
    assert_kept_alive(&c.answer().await, 204);
    // And a whole pipelined pair, answered in order.
    let mut pair = request(ROTATOR_KEY);
    pair.extend_from_slice(&request(OTHER_KEY));
    c.send(&pair).await;
    assert_kept_alive(&c.answer().await, 204);
    assert_kept_alive(&c.answer().await, 403);
    until_parked(&gw, 1).await;

    assert_eq!(
        backend.emulator.graph_requests().len(),
        4,
        "each allowed call reached Graph once"
    );
    drop(c);
    until_parked(&gw, 0).await;
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

/// A connection whose requests come more often than the park delay keeps its hyper
/// connection: after each answer and a pause shorter than the delay, nothing is parked; once
/// it rests, it is.
#[tokio::test]
async fn a_connection_in_steady_use_is_not_parked_between_its_requests() {
    /// The client's pause between an answer and its next request: well under the 1 s delay
    /// (reading the metrics adds a little).
    const PAUSE: Duration = Duration::from_millis(200);
    let backend = served::backend(EmulatorConfig::default()).await;
    let gw = backend.serve(backend.serve_command()).await;
    let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    let started = Instant::now();
    let mut answered = 0;
    // Longer in all than the delay, so a delay counted from the first request would show.
    while started.elapsed() < Duration::from_millis(2_500) {
        c.send(&request(ROTATOR_KEY)).await;
        assert_kept_alive(&c.answer().await, 204);
        answered += 1;
        tokio::time::sleep(PAUSE).await;
        let parked = metrics::value(&gw.metrics().await, PARKED);
        assert_eq!(
            parked,
            0.0,
            "parked {PAUSE:?} after answer {answered}, {:?} into steady use",
            started.elapsed()
        );
    }
    assert!(answered >= 5, "{answered} requests");
    // At rest, it is parked, and still serves.
    until_parked(&gw, 1).await;
    c.send(&request(ROTATOR_KEY)).await;
    assert_kept_alive(&c.answer().await, 204);
    assert_eq!(backend.emulator.graph_requests().len(), answered + 1);
}

#[tokio::test]
async fn a_parked_connection_closes_at_its_idle_deadline_and_is_counted() {
    const IDLE: Duration = Duration::from_secs(3);
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    // Longer than the park delay (1 s): the connection is parked first, then closed.
    cmd.env("GRAPHGATE_IDLE_TIMEOUT_SECS", IDLE.as_secs().to_string());
    let gw = backend.serve(cmd).await;
    let series = r#"graphgate_connections_closed_total{reason="idle_timeout"}"#;
    let before = metrics::value(&gw.metrics().await, series);
    let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    c.send(&request(ROTATOR_KEY)).await;
    assert_kept_alive(&c.answer().await, 204);
    let idle_from = Instant::now();
    until_parked(&gw, 1).await;
    let (bytes, closed) = read_until_closed(&mut c.stream, IDLE + Duration::from_secs(1 + 4)).await;
    assert!(
        closed && bytes.is_empty(),
        "closed, nothing sent: {bytes:?}"
    );
    assert!(
        idle_from.elapsed() >= IDLE - Duration::from_millis(100),
        "{:?}",
        idle_from.elapsed()
    );
    let text = gw.metrics().await;
    assert_eq!(metrics::value(&text, series) - before, 1.0, "{series}");
    assert_eq!(metrics::value(&text, PARKED), 0.0);
}

/// Slowloris across a park: half a request head woken out of the park is still closed by
/// the header-read timeout (hyper's timer in the rebuilt connection, never re-armed by a
/// park in between).
#[tokio::test]
async fn half_a_head_after_a_park_is_closed_by_the_header_read_timeout() {
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    // Longer than the park delay (1 s): the connection is parked before hyper's timer ends it.
    cmd.env("GRAPHGATE_HEADER_READ_TIMEOUT_SECS", "3");
    let gw = backend.serve(cmd).await;
    let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    c.send(&request(ROTATOR_KEY)).await;
    assert_kept_alive(&c.answer().await, 204);
    until_parked(&gw, 1).await;
    c.send(b"POST /v1.0/x HTTP/1.1\r\nHost: g\r\nX-Slow: ")
        .await;
    let started = Instant::now();
    let (bytes, closed) = read_until_closed(&mut c.stream, Duration::from_secs(3 + 1 + 4)).await;
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(2_800),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains(" 2"),
        "no answer: {bytes:?}"
    );
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once_and_lets_a_request_in_flight_finish() {
    const GRAPH_DELAY: Duration = Duration::from_secs(3);
    let backend = served::backend(EmulatorConfig::default()).await;
    let gw = backend.serve(backend.serve_command()).await;
    let mut parked = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    parked.send(&request(ROTATOR_KEY)).await;
    assert_kept_alive(&parked.answer().await, 204);
    until_parked(&gw, 1).await;

    backend
        .emulator
        .set_faults(Faults::default().with_graph(Fault::slow(GRAPH_DELAY)));
    let mut busy = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    busy.send(&request(ROTATOR_KEY)).await;
    graph_received(&backend.emulator, 2).await;
    let in_graph = Instant::now();
    gw.proc.signal("TERM");

    let (bytes, closed) = read_until_closed(&mut parked.stream, Duration::from_secs(10)).await;
    assert!(
        closed && bytes.is_empty(),
        "the parked connection closed: {bytes:?}"
    );
    assert!(
        in_graph.elapsed() < GRAPH_DELAY,
        "closed at once, before the call in flight was done ({:?})",
        in_graph.elapsed()
    );
    let answer = busy.answer().await;
    assert_eq!(answer.status, 204, "{}{}", answer.head, answer.body);
    let (status, mut proc) = gw.proc.wait_exit_async(served::START_STOP).await;
    assert!(
        status.success(),
        "{}",
        proc.stderr.read_to_end(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn tls_and_mtls_clients_keep_their_connection_and_identity_across_parks() {
    const CN: &str = "rotator.corp.example";
    let backend = served::backend(EmulatorConfig::default()).await;
    let policy = TestPolicy::standard()
        .caller(Caller::named("cert-rotator").set("mtls", serde_json::json!({"subject_cn": CN})))
        .with_rule("rotator-updates-room-accounts", |r| {
            r.callers(&["rooms-rotator", "cert-rotator"])
        });
    std::fs::write(backend.dir.join("policy.yaml"), policy.yaml()).unwrap();
    let (server_ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
    let leaf = server_ca.server();
    let d = &backend.dir;
    std::fs::write(d.join("tls.crt"), &leaf.cert_pem).unwrap();
    crate::common::write_private(&d.join("tls.key"), leaf.key_pem.as_bytes());
    std::fs::write(d.join("client-ca.pem"), &client_ca.pem).unwrap();
    let mut cmd = backend.serve_command();
    cmd.arg("--tls-cert")
        .arg(d.join("tls.crt"))
        .arg("--tls-key")
        .arg(d.join("tls.key"))
        .arg("--client-ca")
        .arg(d.join("client-ca.pem"));
    let gw = backend.serve(cmd).await;

    let client = client_ca.client(None, CN);
    for (who, config, key) in [
        ("mTLS", client_config(&server_ca, Some(&client)), None),
        (
            "TLS with an API key",
            client_config(&server_ca, None),
            Some(ROTATOR_KEY),
        ),
    ] {
        let tcp = TcpStream::connect(gw.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(name, tcp)
            .await
            .unwrap();
        let mut c = Raw::new(tls);
        let req = match key {
            Some(key) => request(key),
            None => request_without_key(),
        };
        for round in 0..3 {
            c.send(&req).await;
            let a = c.answer().await;
            assert_eq!(
                a.status, 204,
                "{who}, request {round}: {}{}",
                a.head, a.body
            );
            assert!(!a.head.contains("connection: close"), "{}", a.head);
            until_parked(&gw, 1).await;
        }
        // A client that goes away wakes its parked connection, which closes.
        drop(c);
        until_parked(&gw, 0).await;
    }
    assert_eq!(backend.emulator.graph_requests().len(), 6);
    // Without a key, only the certificate could name the caller: each request of each
    // client is recorded under its own caller (an intent and an outcome each).
    let callers = eventually("the audit records", Duration::from_secs(10), async || {
        let callers: Vec<String> = served::audit_records(&d.join("audit.jsonl"))
            .iter()
            .filter_map(|r| r["caller"].as_str().map(str::to_owned))
            .collect();
        (callers.len() >= 12).then_some(callers)
    })
    .await;
    let count = |name: &str| callers.iter().filter(|c| *c == name).count();
    assert_eq!(
        (count("cert-rotator"), count("rooms-rotator")),
        (6, 6),
        "{callers:?}"
    );
}

/// The standard request with no `Authorization` header (the caller is its certificate).
fn request_without_key() -> Vec<u8> {
    let body = body();
    format!(
        "POST {ACTION_PATH} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Past `HYPER_MAX` live hyper connections, a connection at rest is parked at once: with the
/// park delay set to an hour, only the cap can park. Connections opened one after another,
/// each answered: the first `HYPER_MAX` stay in hyper, every one after them is parked.
#[tokio::test]
async fn past_the_cap_on_live_http_engines_connections_at_rest_are_parked_at_once() {
    const EXTRA: usize = 6;
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.args(["--park-after-ms", "3600000"]);
    let gw = backend.serve(cmd).await;
    let mut open = Vec::new();
    for _ in 0..graphgate::server::park::HYPER_MAX + EXTRA {
        let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
        c.send(&request(OTHER_KEY)).await;
        assert_kept_alive(&c.answer().await, 403);
        open.push(c);
    }
    until_parked(&gw, EXTRA as u64).await;
    // A parked one still answers, and is parked again at once.
    let c = open.last_mut().unwrap();
    c.send(&request(OTHER_KEY)).await;
    assert_kept_alive(&c.answer().await, 403);
    until_parked(&gw, EXTRA as u64).await;
    drop(open);
    until_parked(&gw, 0).await;
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

/// Once no request has started for a while (and none is in flight), the gateway asks the
/// allocator once to return its free memory: counted once per quiet period.
#[tokio::test]
async fn a_quiet_gateway_returns_the_allocators_free_memory_once() {
    let backend = served::backend(EmulatorConfig::default()).await;
    let gw = backend.serve(backend.serve_command()).await;
    let before = metrics::value(&gw.metrics().await, TRIMS);
    let mut c = Raw::new(TcpStream::connect(gw.addr).await.unwrap());
    c.send(&request(OTHER_KEY)).await;
    assert_kept_alive(&c.answer().await, 403);
    let trimmed = |n: f64| {
        let gw = &gw;
        async move {
            eventually(
                &format!("{n} trim(s)"),
                Duration::from_secs(20),
                async || (metrics::value(&gw.metrics().await, TRIMS) == n).then_some(()),
            )
            .await;
        }
    };
    trimmed(before + 1.0).await;
    // The next quiet period (after another request) trims once more.
    c.send(&request(OTHER_KEY)).await;
    assert_kept_alive(&c.answer().await, 403);
    trimmed(before + 2.0).await;
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}
