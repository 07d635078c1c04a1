//! Shutdown with a bound: on SIGTERM a replica stops accepting, answers the duplicates
//! waiting on another replica's claim at once (409 with `Retry-After`), sends nothing more
//! (a request still waiting for a pacing slot gets 503 with `Retry-After`, its key let go),
//! lets the call it has already sent to Graph finish and audits it, and exits within its
//! grace period. Nothing is sent twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use graphgate_emulator::{EmulatorConfig, Fault, Faults};

use crate::common::redis::RedisServer;
use crate::common::{
    ACTION_PATH, ROTATOR_KEY, TestPolicy, body, eventually, graph_received, metrics, served,
};

/// The test's grace period: long enough for the delayed call, far shorter than the
/// duplicate's own wait bound (60 s), so only an answer at once passes.
const GRACE_SECS: u64 = 15;
/// How long the emulated Graph holds each answer.
const GRAPH_DELAY: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_replica_sent_sigterm_answers_waiting_duplicates_finishes_what_it_sent_and_exits() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = served::backend(EmulatorConfig::default()).await;
    // Two writes per 5 s: a third call waits (up to 8 s) for a slot.
    let paced = TestPolicy::standard()
        .set(
            "pacing",
            serde_json::json!({"tenant_writes": "2 per 5s", "max_wait_ms": 8000}),
        )
        .yaml();
    std::fs::write(backend.dir.join("policy.yaml"), paced).unwrap();
    let replica = |name: &str| {
        let mut cmd = backend.replica_command(name);
        cmd.env("GRAPHGATE_STATE", redis.url())
            .env("GRAPHGATE_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string());
        cmd
    };
    let a = backend.serve(replica("a")).await;
    let b = backend.serve(replica("b")).await;
    backend
        .emulator
        .set_faults(Faults::default().with_graph(Fault::slow(GRAPH_DELAY)));
    let post = |gw: &served::Served, key: &'static str| {
        let (addr, req_body) = (gw.addr, body());
        async move {
            let req = http::Request::post(format!("http://{addr}{ACTION_PATH}"))
                .header("authorization", format!("Bearer {ROTATOR_KEY}"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(http_body_util::Full::new(bytes::Bytes::from(req_body)))
                .unwrap();
            crate::common::send_to(req).await
        }
    };
    // Replica A has sent the first call with key-1 to Graph: A holds key-1's claim.
    let first = tokio::spawn(post(&a, "key-1"));
    graph_received(&backend.emulator, 1).await;
    // Replica B has sent a call of its own (key-2) to Graph...
    let in_flight = tokio::spawn(post(&b, "key-2"));
    graph_received(&backend.emulator, 2).await;
    // ...a retry of key-1 reached B, where it waits on A's claim (it looks in Redis), and a
    // third call (key-3) waits there for a pacing slot. B's own metrics say when.
    let duplicate = tokio::spawn(post(&b, "key-1"));
    let paced = tokio::spawn(post(&b, "key-3"));
    eventually("both wait on B", Duration::from_secs(30), async || {
        let text = b.metrics().await;
        let count = |op: &str| {
            let series = format!("graphgate_state_store_duration_seconds_count{{op=\"{op}\"}}");
            metrics::value(&text, &series)
        };
        // B's own call, the duplicate and the paced one each took one step.
        (count("poll") >= 1.0 && count("take") >= 3.0).then_some(())
    })
    .await;
    b.proc.signal("TERM");
    // The duplicate is answered at once, while B's own call is still in Graph's hands.
    let answered = duplicate.await.unwrap();
    answered.assert_graph_error(409, "idempotencyKeyInFlight");
    assert_eq!(answered.headers["retry-after"], "5");
    assert!(
        !in_flight.is_finished(),
        "answered before the call in flight ended"
    );
    // The call B had sent finishes and is answered; the waiting one is not sent; then B
    // exits, within its grace period.
    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status, 204, "{:?}", finished.body);
    let unsent = paced.await.unwrap();
    unsent.assert_graph_error(503, "serviceNotAvailable");
    assert_eq!(unsent.headers["retry-after"], "1");
    let (status, mut proc) = b
        .proc
        .wait_exit_async(Duration::from_secs(GRACE_SECS))
        .await;
    let log = proc.stdout.read_to_end(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    // B's audit: the call it sent, with its outcome; the duplicate's 409; a clean close.
    let records = served::audit_records(&backend.dir.join("b.jsonl"));
    let outcomes: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(outcomes.contains(&(204, "allowed")), "{outcomes:?}");
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 409 && r["error_code"] == "idempotencyKeyInFlight"),
        "{records:?}"
    );
    // A answers key-1, and the retry (now to A) gets that answer: Graph saw each call once.
    assert_eq!(first.await.unwrap().status, 204);
    backend.emulator.set_faults(Faults::default());
    let retried = post(&a, "key-1").await;
    assert_eq!(retried.status, 204);
    assert_eq!(
        backend.emulator.graph_requests().len(),
        2,
        "nothing sent twice"
    );
    // The call B did not send was let go: its retry runs, once.
    let third = post(&a, "key-3").await;
    assert_eq!(third.status, 204, "{:?}", third.body);
    assert!(third.headers.get("idempotent-replayed").is_none());
    assert_eq!(backend.emulator.graph_requests().len(), 3);
    a.terminate().await;
}

/// A keyed answer goes out before its settle lands in Redis (see `shared_state`); a replica
/// that stops waits for those settles before it exits, so the answer it gave is kept for
/// duplicates and no claim is left running. Redis's writes are paused while Graph holds the
/// request, so the settle is still waiting when SIGTERM arrives.
#[tokio::test]
async fn a_replica_stopping_waits_for_the_settles_of_the_answers_it_gave() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env("GRAPHGATE_STATE", redis.url())
        .env("GRAPHGATE_STATE_TIMEOUT_MS", "30000")
        .env("GRAPHGATE_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string());
    let a = backend.serve(cmd).await;
    // The scripts are loaded before writes are paused.
    let warm = [("idempotency-key", "warm-0001")];
    let warm = a.post_with(ACTION_PATH, ROTATOR_KEY, &body(), &warm).await;
    assert_eq!(warm.status, 204);
    backend
        .emulator
        .set_faults(Faults::default().with_graph(Fault::slow(Duration::from_millis(300)).times(1)));
    let call = {
        let addr = a.addr;
        tokio::spawn(async move {
            let req = http::Request::post(format!("http://{addr}{ACTION_PATH}"))
                .header("authorization", format!("Bearer {ROTATOR_KEY}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "kept-0001")
                .body(http_body_util::Full::new(bytes::Bytes::from(body())))
                .unwrap();
            crate::common::send_to(req).await
        })
    };
    graph_received(&backend.emulator, 2).await;
    let mut conn = redis.pause_writes().await;
    assert_eq!(
        call.await.unwrap().status,
        204,
        "answered before its settle"
    );
    a.proc.signal("TERM");
    let mut proc = a.proc;
    let waiting = proc
        .stdout
        .wait_for_async(Duration::from_secs(GRACE_SECS), |l| {
            l.contains("waiting for the state store to keep")
        })
        .await;
    assert!(waiting.is_some(), "{}", proc.stdout.text());
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (status, mut proc) = proc.wait_exit_async(Duration::from_secs(GRACE_SECS)).await;
    let log = proc.stdout.read_to_end(Duration::from_secs(5));
    assert!(status.success(), "{status}\n{log}");
    // Every claim holds its kept answer ('D'), none is left running ('R').
    let mut kinds = Vec::new();
    for k in redis.keys().await.iter().filter(|k| k.contains("idem:")) {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        kinds.push(v.first().copied().map(char::from));
    }
    assert_eq!(kinds, [Some('D'), Some('D')], "{log}");
    assert_eq!(backend.emulator.graph_requests().len(), 2);
}
