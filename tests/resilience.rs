//! Resilience: no double execution, retries only where safe, identity-provider and Graph
//! failures told apart, load shedding and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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
