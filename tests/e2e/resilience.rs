//! Resilience: no double execution, retries only where safe, identity-provider and Graph
//! failures told apart, load shedding and graceful shutdown.
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
    let policy = policy_text().replace(
        "callers: [rooms-rotator]",
        "callers: [rooms-rotator, other-service]",
    );
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

use graphgate::emulator::{Fault, Faults};
use graphgate::forward::RetryPolicy;
use graphgate::gateway::Limits;

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
    let h = start_with(Options {
        limits,
        ..Options::default()
    })
    .await;
    h.emulator.set_faults(faults);
    h
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
            !message.contains("<html")
                && !message.contains(graphgate::emulator::DEMO_CLIENT_SECRET),
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
    for _ in 0..20 {
        assert_eq!(h.call().await.status, 503);
    }
    assert_eq!(
        h.emulator.token_request_count(),
        2,
        "two failures open the breaker; then Entra is left alone"
    );
    h.emulator.set_faults(Faults::default());
    // The breaker's first interval is under a second; calls succeed once it half-opens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut status = 503;
    while status != 204 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = h.call().await.status.as_u16();
    }
    assert_eq!(status, 204);
}

#[tokio::test]
async fn an_outage_longer_than_the_token_never_sends_an_expired_token() {
    let h = Arc::new(
        start_with(Options {
            token_lifetime: Duration::from_secs(3),
            token_expiry_margin: Duration::from_secs(1),
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
    let h = Arc::new(
        faulted(
            limits,
            Faults::default().with_graph(Fault::slow(Duration::from_millis(800))),
        )
        .await,
    );
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.call().await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 503 {
            r.assert_graph_error(503, "serviceNotAvailable");
            assert_eq!(r.headers["retry-after"], "1");
        }
        statuses.push(r.status.as_u16());
    }
    let ok = statuses.iter().filter(|s| **s == 204).count();
    assert!(ok >= 1 && statuses.contains(&503), "{statuses:?}");
    assert_eq!(
        h.emulator.graph_requests().len(),
        ok,
        "shed requests never reached Graph"
    );
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
    // All three are past the audit intent, i.e. on their way to Graph.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h
        .audit_records()
        .await
        .iter()
        .filter(|r| r["kind"] == "intent")
        .count()
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    let report =
        graphgate::audit::verify::verify(std::slice::from_ref(h.audit_path.as_ref().unwrap()))
            .unwrap();
    assert!(report.is_ok(), "{report:?}");
}
