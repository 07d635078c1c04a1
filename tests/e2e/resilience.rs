//! Resilience: no double execution (idempotency keys, their window and bound), retries only
//! where safe, identity-provider and Graph failures told apart (Graph unreachable, outcome
//! unknown), a client's disconnect never cancelling a sent call, load shedding and graceful
//! shutdown. Waits are on signals (the emulator's `graph_received`) or a frozen clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::Full;

async fn keyed(h: &Harness, key: &str, caller_key: &str, body: &str) -> Reply {
    let req = h
        .request(ACTION_PATH)
        .header("authorization", format!("Bearer {caller_key}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn a_repeated_idempotency_key_reaches_graph_once() {
    let h = start().await;
    let first = keyed(&h, "rotate-room1-2026-11-28", ROTATOR_KEY, &body()).await;
    assert_eq!(first.status, 204);
    let again = keyed(&h, "rotate-room1-2026-11-28", ROTATOR_KEY, &body()).await;
    assert_eq!(again.status, 204);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        again.headers["request-id"], first.headers["request-id"],
        "the first answer, replayed"
    );
    assert_eq!(h.emulator.graph_requests().len(), 1);

    // The same key for a different request is refused, not replayed.
    let other = keyed(
        &h,
        "rotate-room1-2026-11-28",
        ROTATOR_KEY,
        &body().replace("outlook.office365.com", "other.example"),
    )
    .await;
    other.assert_graph_error(422, "idempotencyKeyReused");
    // A GUID client-request-id works as a key too (Graph SDKs resend it on retries).
    let crid = "7e57c0de-0000-4000-8000-000000000001";
    for _ in 0..3 {
        let req = h
            .request(ACTION_PATH)
            .header("authorization", format!("Bearer {ROTATOR_KEY}"))
            .header("content-type", "application/json")
            .header("client-request-id", crid)
            .header("retry-attempt", "1")
            .body(Full::new(Bytes::from(body())))
            .unwrap();
        assert_eq!(h.send(req).await.status, 204);
    }
    assert_eq!(h.emulator.graph_requests().len(), 2);
}

#[tokio::test]
async fn concurrent_duplicates_wait_for_the_first() {
    let h = Arc::new(start().await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { keyed(&h, "same-key", ROTATOR_KEY, &body()).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "twenty concurrent duplicates, one execution"
    );
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_caller() {
    let policy = TestPolicy::standard()
        .with_rule("rotator-updates-room-accounts", |r| {
            r.callers(&["rooms-rotator", "other-service"])
        })
        .yaml();
    let h = start_with(Options {
        policy: Some(policy),
        ..Options::default()
    })
    .await;
    assert_eq!(
        keyed(&h, "shared-name", ROTATOR_KEY, &body()).await.status,
        204
    );
    let other = keyed(&h, "shared-name", OTHER_KEY, &body()).await;
    assert_eq!(other.status, 204);
    assert!(
        !other.headers.contains_key("idempotent-replayed"),
        "another caller's key is its own"
    );
    assert_eq!(h.emulator.graph_requests().len(), 2);
}

#[tokio::test]
async fn refused_requests_do_not_burn_the_key() {
    let h = start().await;
    // Refused before forwarding (bad body): the key stays free for the corrected request.
    keyed(&h, "k1", ROTATOR_KEY, "{\"nope\":1}")
        .await
        .assert_graph_error(400, "invalidRequest");
    assert_eq!(keyed(&h, "k1", ROTATOR_KEY, &body()).await.status, 204);
    assert_eq!(h.emulator.graph_requests().len(), 1);
    keyed(&h, &"x".repeat(300), ROTATOR_KEY, &body())
        .await
        .assert_graph_error(400, "invalidRequest");
}

use std::time::Duration;

use common::clock::{FrozenClock, within_real_time};
use common::metrics::{OP, Snapshot, errors, requests};
use graphgate::forward::RetryPolicy;
use graphgate::gateway::Limits;
use graphgate_emulator::{Fault, Faults};

fn quick_retries(max_total_wait: Duration) -> Limits {
    Limits {
        retry: RetryPolicy {
            max_attempts: 3,
            max_total_wait,
            default_retry_after: Duration::from_millis(200),
        },
        ..Limits::default()
    }
}

async fn faulted(limits: Limits, faults: Faults) -> Harness {
    start_with(Options {
        limits,
        faults,
        ..Options::default()
    })
    .await
}

fn graph_statuses(h: &Harness) -> Vec<u16> {
    h.emulator
        .graph_requests()
        .iter()
        .map(|g| g.status)
        .collect()
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_within_the_budget() {
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::status(429).retry_after(1).times(2)),
    )
    .await;
    let r = h.call().await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(graph_statuses(&h), vec![429, 429, 204]);
    assert_eq!(h.emulator.token_request_count(), 1);
}

#[tokio::test]
async fn a_429_without_retry_after_gets_a_default_backoff() {
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::status(429).times(1)),
    )
    .await;
    assert_eq!(h.call().await.status, 204);
    assert_eq!(graph_statuses(&h), vec![429, 204]);
}

#[tokio::test]
async fn throttling_past_the_budget_is_passed_on_with_retry_after() {
    let h = faulted(
        quick_retries(Duration::from_millis(1500)),
        Faults::default().with_graph(Fault::status(429).retry_after(1)),
    )
    .await;
    let r = h.call().await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(
        graph_statuses(&h),
        vec![429, 429],
        "one retry fits in 1.5 s, the next would not"
    );
    // Intune omits Retry-After sometimes: the caller still gets one.
    let h = faulted(
        quick_retries(Duration::ZERO),
        Faults::default().with_graph(Fault::status(429)),
    )
    .await;
    let r = h.call().await;
    assert_eq!(r.status, 429);
    assert!(
        r.headers.contains_key("retry-after"),
        "graphgate adds Retry-After when Graph sent none"
    );
    assert_eq!(h.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn a_503_is_retried_only_with_retry_after() {
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::status(503).retry_after(1).times(1)),
    )
    .await;
    assert_eq!(h.call().await.status, 204);
    assert_eq!(graph_statuses(&h), vec![503, 204]);
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::status(503).times(1)),
    )
    .await;
    assert_eq!(
        h.call().await.status,
        503,
        "no Retry-After: not documented as retryable, passed on"
    );
    assert_eq!(graph_statuses(&h), vec![503]);
}

#[tokio::test]
async fn outcome_unknown_is_never_retried_and_says_so() {
    for (fault, status) in [
        (Fault::status(504), 504),
        (Fault::status(502).html(), 502),
        (Fault::reset(), 502),
    ] {
        let h = faulted(
            quick_retries(Duration::from_secs(5)),
            Faults::default().with_graph(fault.times(1)),
        )
        .await;
        let r = h.call().await;
        r.assert_graph_error(status, "upstreamOutcomeUnknown");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may or may not have run")
        );
        assert_eq!(
            h.emulator.graph_requests().len(),
            1,
            "{status}: never retried"
        );
    }
    // The audit tells ops to check the device: a distinct outcome, with the intent before it.
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::reset().times(1)),
    )
    .await;
    h.call()
        .await
        .assert_graph_error(502, "upstreamOutcomeUnknown");
    let records = h.audit_records().await;
    let kinds: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("intent", "allowed"), ("outcome", "outcome_unknown")]
    );
    // Graph slower than the upstream timeout: the same, as 504.
    let limits = Limits {
        upstream_timeout: Duration::from_millis(300),
        ..quick_retries(Duration::from_secs(5))
    };
    let h = faulted(
        limits,
        Faults::default().with_graph(Fault::slow(Duration::from_millis(1500)).times(1)),
    )
    .await;
    h.call()
        .await
        .assert_graph_error(504, "upstreamOutcomeUnknown");
}

#[tokio::test]
async fn a_duplicate_after_an_unknown_outcome_is_not_run_again() {
    let h = faulted(
        quick_retries(Duration::from_secs(5)),
        Faults::default().with_graph(Fault::reset().times(1)),
    )
    .await;
    keyed(&h, "k", ROTATOR_KEY, &body())
        .await
        .assert_graph_error(502, "upstreamOutcomeUnknown");
    let again = keyed(&h, "k", ROTATOR_KEY, &body()).await;
    again.assert_graph_error(502, "upstreamOutcomeUnknown");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        h.emulator.graph_requests().len(),
        1,
        "the action may have run: the retry must not run it again"
    );
    // Throttled is certainly-not-run: the same key may run afterwards.
    let h = faulted(
        quick_retries(Duration::ZERO),
        Faults::default().with_graph(Fault::status(429).times(1)),
    )
    .await;
    assert_eq!(keyed(&h, "k", ROTATOR_KEY, &body()).await.status, 429);
    assert_eq!(keyed(&h, "k", ROTATOR_KEY, &body()).await.status, 204);
    assert_eq!(graph_statuses(&h), vec![429, 204]);
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_call_retried_once() {
    for fault in [
        Fault::expired_token().times(1),
        Fault::bad_signature_token().times(1),
    ] {
        let h = faulted(Limits::default(), Faults::default().with_token(fault)).await;
        assert_eq!(h.call().await.status, 204);
        assert_eq!(graph_statuses(&h), vec![401, 204]);
        assert_eq!(h.emulator.token_request_count(), 2);
    }
    // Graph keeps refusing: one retry only, then the 401 is passed on.
    let h = faulted(
        Limits::default(),
        Faults::default().with_graph(Fault::status(401)),
    )
    .await;
    assert_eq!(h.call().await.status, 401);
    assert_eq!(graph_statuses(&h), vec![401, 401]);
}

#[tokio::test]
async fn identity_provider_failures_are_503_with_entras_code_and_forward_nothing() {
    let cases = [
        (Fault::reset(), None),
        (Fault::temporarily_unavailable(), Some("AADSTS90033")),
        (Fault::status(500).html(), None),
    ];
    for (fault, code) in cases {
        let h = faulted(Limits::default(), Faults::default().with_token(fault)).await;
        let r = h.call().await;
        r.assert_graph_error(503, "tokenAcquisitionFailed");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        if let Some(code) = code {
            assert!(
                message.contains(code) && message.contains("trace id"),
                "{message}"
            );
        }
        assert!(
            !message.contains("<html") && !message.contains(graphgate_emulator::DEMO_CLIENT_SECRET),
            "{message}"
        );
        assert!(h.emulator.graph_requests().is_empty());
    }
}

#[tokio::test]
async fn the_breaker_spares_entra_during_an_outage_and_recovers() {
    let h = faulted(
        Limits::default(),
        Faults::default().with_token(Fault::temporarily_unavailable()),
    )
    .await;
    // The breaker times its window (0.5 s, plus up to 25 % jitter) on Tokio's clock: frozen,
    // the window lasts exactly as long as the test says, however slow the calls are.
    let clock = FrozenClock::freeze();
    within_real_time("the breaker test", Duration::from_secs(60), async {
        for _ in 0..20 {
            h.call()
                .await
                .assert_graph_error(503, "tokenAcquisitionFailed");
        }
        assert_eq!(
            h.emulator.token_request_count(),
            2,
            "two failures open the breaker; then Entra is left alone"
        );
        h.emulator.set_faults(Faults::default());
        // Still open just before the shortest first interval ends: answered at once.
        clock.advance(Duration::from_millis(499)).await;
        h.call()
            .await
            .assert_graph_error(503, "tokenAcquisitionFailed");
        assert_eq!(h.emulator.token_request_count(), 2, "still open at 499 ms");
        // Past the longest first interval (625 ms): half-open, one probe, which succeeds.
        clock.advance(Duration::from_millis(127)).await;
        assert_eq!(h.call().await.status, 204);
        assert_eq!(h.emulator.token_request_count(), 3, "one probe");
        // Closed again: the new token is cached.
        assert_eq!(h.call().await.status, 204);
        assert_eq!(h.emulator.token_request_count(), 3);
    })
    .await;
}

#[tokio::test]
async fn an_outage_longer_than_the_token_never_sends_an_expired_token() {
    // The loop sends far more than Intune's 200 writes per 20 s: pacing is lifted here.
    let h = Arc::new(
        start_with(Options {
            token_lifetime: Duration::from_secs(3),
            token_expiry_margin: Duration::from_secs(1),
            policy: Some(common::unpaced()),
            ..Options::default()
        })
        .await,
    );
    assert_eq!(h.call().await.status, 204);
    h.emulator
        .set_faults(Faults::default().with_token(Fault::reset()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let (mut ok, mut unavailable) = (0, 0);
    while tokio::time::Instant::now() < deadline {
        match h.call().await.status.as_u16() {
            204 => ok += 1,
            503 => unavailable += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        ok > 0 && unavailable > 0,
        "served from cache, then refused: {ok} / {unavailable}"
    );
    let graph = h.emulator.graph_requests();
    assert!(
        graph.iter().all(|g| g.status == 204),
        "Graph never saw an expired token: {:?}",
        graph_statuses(&h)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for g in &graph {
        let exp = g.token_claims.as_ref().unwrap()["exp"].as_u64().unwrap();
        assert!(
            exp + 4 >= now,
            "every token Graph received was within its life"
        );
    }
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    let limits = Limits {
        max_in_flight: 1,
        ..Limits::default()
    };
    // Graph holds the first call until the (frozen) clock is moved on.
    let hold = Duration::from_secs(2);
    let h = Arc::new(
        faulted(
            limits,
            Faults::default().with_graph(Fault::slow(hold).times(1)),
        )
        .await,
    );
    let clock = FrozenClock::freeze();
    within_real_time("the overload test", Duration::from_secs(60), async {
        let first = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.call().await })
        };
        // The only in-flight slot is taken: the call is in Graph's hands.
        graph_received(&h.emulator, 1).await;
        for _ in 0..5 {
            let r = h.call().await;
            r.assert_graph_error(503, "serviceNotAvailable");
            assert_eq!(r.headers["retry-after"], "1");
        }
        // (Timers fire on whole-millisecond ticks: a little past the hold.)
        clock.advance(hold + Duration::from_millis(5)).await;
        assert_eq!(first.await.unwrap().status, 204);
        assert_eq!(
            h.emulator.graph_requests().len(),
            1,
            "shed requests never reached Graph"
        );
        // The slot is free again.
        assert_eq!(h.call().await.status, 204);
    })
    .await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_refuses_new_ones_and_leaves_a_verified_log() {
    let h = Arc::new(
        faulted(
            Limits::default(),
            Faults::default().with_graph(Fault::slow(Duration::from_millis(700))),
        )
        .await,
    );
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.call().await.status })
        })
        .collect();
    // All three are in Graph's hands (so past their durable intent), held by the slow fault.
    graph_received(&h.emulator, 3).await;
    let shutdown = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.shut_down().await })
    };
    // The listener closes at once: new connections are refused while the others drain.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(h.gateway).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::task::yield_now().await;
    }
    for t in in_flight {
        assert_eq!(t.await.unwrap(), 204, "in-flight requests complete");
    }
    shutdown.await.unwrap();
    let records = h.audit_records().await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r["kind"] == "outcome" && r["status"] == 204)
            .count(),
        3
    );
    let report = graphgate::audit::read::verify::verify(std::slice::from_ref(
        h.audit_path.as_ref().unwrap(),
    ))
    .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// A loopback port nothing listens on: connections to it are refused at once.
async fn closed_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn graph_unreachable_is_502_upstream_unavailable_and_nothing_is_sent() {
    let h = start_with(Options {
        graph_addr: Some(closed_port().await),
        ..Options::default()
    })
    .await;
    let before = Snapshot::now();
    let r = h.call().await;
    r.assert_graph_error(502, "upstreamUnavailable");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    // Fixed words: no transport error chain reaches the caller (it goes to the log).
    assert_eq!(
        message,
        "Microsoft Graph could not be reached; the request was not sent"
    );
    // Entra answered; Graph never saw a byte.
    assert_eq!(h.emulator.token_request_count(), 1);
    assert!(h.emulator.graph_requests().is_empty());
    assert_eq!(*h.emulator.graph_received().borrow(), 0);
    // The intent was durable before the attempt; the outcome says what happened.
    let records = h.audit_records().await;
    let kinds: Vec<_> = records
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["decision"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("intent", "allowed"), ("outcome", "failed")]);
    assert_eq!(records[1]["error_code"], "upstreamUnavailable");
    assert_eq!(records[1]["status"], 502);
    assert!(records[1]["upstream_status"].is_null(), "{}", records[1]);
    // Counted (>=: the series is this test's, but the registry is the whole binary's).
    let after = Snapshot::now();
    assert!(before.delta(&after, &errors("upstreamUnavailable")) >= 1.0);
    assert!(before.delta(&after, &requests(OP, "failed", "5xx")) >= 1.0);
    // Not retried: a second call is a second attempt, not a replay.
    h.call()
        .await
        .assert_graph_error(502, "upstreamUnavailable");
    assert_eq!(
        h.emulator.token_request_count(),
        1,
        "the token stays cached"
    );
}

/// Sends the standard call over HTTP/1.1 or HTTP/2 (cleartext), waits until Graph holds it,
/// then gives up: HTTP/1.1 resets the connection; HTTP/2 cancels the stream (RST_STREAM),
/// then closes the connection.
async fn give_up_mid_call(h: &Harness, h2: bool) {
    let tcp = tokio::net::TcpStream::connect(h.gateway).await.unwrap();
    if !h2 {
        let request = format!(
            "POST {ACTION_PATH} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {ROTATOR_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body().len(),
            body()
        );
        let mut tcp = tcp;
        tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
            .await
            .unwrap();
        graph_received(&h.emulator, 1).await;
        tcp.set_zero_linger().unwrap();
        drop(tcp);
        return;
    }
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::post(format!("http://gateway{ACTION_PATH}"))
        .header("authorization", format!("Bearer {ROTATOR_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body())))
        .unwrap();
    let call = tokio::spawn(async move { sender.send_request(req).await.map(|_| ()) });
    graph_received(&h.emulator, 1).await;
    call.abort();
    let _ = call.await;
    conn.abort();
    let _ = conn.await;
}

#[tokio::test]
async fn a_client_that_disconnects_never_cancels_a_call_sent_to_graph() {
    for h2 in [false, true] {
        // Graph holds the answer until the (frozen) clock is moved on.
        let hold = Duration::from_secs(1);
        let h = faulted(
            Limits::default(),
            Faults::default().with_graph(Fault::slow(hold).times(1)),
        )
        .await;
        let clock = FrozenClock::freeze();
        within_real_time("the disconnect test", Duration::from_secs(60), async {
            give_up_mid_call(&h, h2).await;
            // Let the server see it (yield_now resumes after the I/O driver was polled).
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            clock.advance(hold + Duration::from_millis(5)).await;
        })
        .await;
        drop(clock);
        // The call ran to its end: Graph answered once, and the audit has the outcome.
        let records = eventually("the outcome record", Duration::from_secs(30), async || {
            let records = h.audit_records().await;
            records
                .iter()
                .any(|r| r["kind"] == "outcome")
                .then_some(records)
        })
        .await;
        let graph = h.emulator.graph_requests();
        assert_eq!(graph.len(), 1, "h2={h2}: sent once, never again");
        assert_eq!(graph[0].status, 204);
        let device = h
            .emulator
            .devices()
            .into_iter()
            .find(|d| d.id.eq_ignore_ascii_case(DEVICE))
            .unwrap();
        assert_eq!(device.update_count, 1);
        let kinds: Vec<_> = records
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["intent", "outcome"], "h2={h2}");
        assert_eq!(records[1]["status"], 204);
        assert_eq!(records[1]["upstream_status"], 204);
        assert_eq!(records[1]["decision"], "allowed");
        assert_eq!(records[0]["audit_id"], records[1]["audit_id"]);
    }
}

#[tokio::test]
async fn idempotency_keys_expire_after_their_window() {
    let window = Duration::from_secs(1);
    let h = start_with(Options {
        limits: Limits {
            idempotency_window: window,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    // Within the window, a duplicate is replayed. (The store times keys on its own clock,
    // not Tokio's, so real time passes here; a duplicate that arrives late on a loaded
    // machine is retried with a fresh key rather than judged.)
    let mut attempt = 0;
    let (key, sent) = loop {
        attempt += 1;
        assert!(
            attempt <= 5,
            "no duplicate arrived within {window:?} in 5 tries"
        );
        let key = format!("expiry-{attempt}");
        let sent = std::time::Instant::now();
        assert_eq!(keyed(&h, &key, ROTATOR_KEY, &body()).await.status, 204);
        let again = keyed(&h, &key, ROTATOR_KEY, &body()).await;
        if sent.elapsed() < window {
            assert_eq!(again.headers["idempotent-replayed"], "true");
            break (key, sent);
        }
    };
    let ran = h.emulator.graph_requests().len();
    // Replayed until the window has passed since it was stored (after `sent`); then the
    // same key runs the action again, once.
    let ran_again = eventually(
        "the key expires",
        window + Duration::from_secs(10),
        async || {
            let r = keyed(&h, &key, ROTATOR_KEY, &body()).await;
            assert_eq!(r.status, 204);
            (!r.headers.contains_key("idempotent-replayed")).then(std::time::Instant::now)
        },
    )
    .await;
    let kept_for = ran_again.duration_since(sent);
    assert!(
        kept_for >= window - Duration::from_millis(10),
        "ran again {kept_for:?} after it was sent"
    );
    assert_eq!(
        h.emulator.graph_requests().len(),
        ran + 1,
        "an expired key runs again, once"
    );
}
