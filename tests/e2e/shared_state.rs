//! Replicas that share one truth: three gateways in front of one emulator, their state in
//! one real redis-server. The same idempotency key reaches Graph once whichever replicas get
//! it; the tenant pacing and the budgets are one budget for all; a Redis outage refuses
//! (503) rather than forgetting, and the gateways recover by themselves when it returns.
//! Tests skip without redis-server (and fail without it under CI=true).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use graphgate::gateway::Limits;
use graphgate::state::StateConfig;
use graphgate::state::config::StateOptions;
use graphgate_emulator::{Fault, Faults};

use crate::common::metrics::{Snapshot, errors};
use crate::common::redis::RedisServer;
use crate::common::replicas::Replicas;
use crate::common::{Reply, TestPolicy, body, eventually, graph_received, policy_text};
use serde_json::json;

/// A Redis state with a timeout generous enough for a loaded CI machine.
pub fn redis_state(redis: &RedisServer) -> StateConfig {
    StateConfig::parse(
        &redis.url(),
        StateOptions {
            timeout: Duration::from_secs(2),
            ..StateOptions::default()
        },
    )
    .unwrap()
}

async fn three(redis: &RedisServer, policy: &str) -> Replicas {
    Replicas::start(3, policy, redis_state(redis), Limits::default()).await
}

fn replayed(r: &Reply) -> bool {
    r.headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_to_three_replicas_reaches_graph_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let r = Arc::new(three(&redis, &policy_text()).await);
    // Graph takes its time, so every duplicate arrives while the first is in its hands.
    r.emulator
        .set_faults(Faults::default().with_graph(Fault::slow(Duration::from_millis(800)).times(1)));
    let key = "wipe-7f3a-0001";
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..9 {
        let r = Arc::clone(&r);
        calls.spawn(async move { r.call(i % 3, &[("idempotency-key", key)]).await });
    }
    let replies = calls.join_all().await;
    assert!(
        replies.iter().all(|x| x.status == 204),
        "every caller got 204"
    );
    assert_eq!(
        replies.iter().filter(|x| !replayed(x)).count(),
        1,
        "one ran; eight got its answer"
    );
    assert_eq!(r.emulator.graph_requests().len(), 1, "Graph saw it once");
    // Repeated later, to each replica: the stored answer, still nothing sent.
    for i in 0..3 {
        let again = r.call(i, &[("idempotency-key", key)]).await;
        assert_eq!(again.status, 204);
        assert!(replayed(&again), "replica {i} replayed it");
    }
    assert_eq!(r.emulator.graph_requests().len(), 1);
    // The same key for another request is refused on any replica.
    let other = body().replace("room1@contoso.com", "room2@contoso.com");
    r.post(2, &other, &[("idempotency-key", key)])
        .await
        .assert_graph_error(422, "idempotencyKeyReused");
    assert_eq!(r.emulator.graph_requests().len(), 1);
}

#[tokio::test]
async fn an_outcome_unknown_is_replayed_by_another_replica_never_sent_again() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let r = three(&redis, &policy_text()).await;
    r.emulator
        .set_faults(Faults::default().with_graph(Fault::status(504).times(1)));
    let key = [("idempotency-key", "retire-42")];
    let first = r.call(0, &key).await;
    first.assert_graph_error(504, "upstreamOutcomeUnknown");
    // A Kiota SDK re-sends after a 504; the load balancer picks another replica.
    let again = r.call(1, &key).await;
    assert_eq!(again.status, 504);
    assert!(replayed(&again));
    assert_eq!(again.json()["error"]["code"], "upstreamOutcomeUnknown");
    assert_eq!(r.emulator.graph_requests().len(), 1, "never sent twice");
}

#[tokio::test]
async fn a_duplicate_waits_for_the_first_only_up_to_its_bound_then_gets_409() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limits = Limits {
        idempotency_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = Arc::new(Replicas::start(2, &policy_text(), redis_state(&redis), limits).await);
    r.emulator.set_faults(
        Faults::default().with_graph(Fault::slow(Duration::from_millis(1500)).times(1)),
    );
    let key = [("idempotency-key", "sync-9")];
    let first = {
        let r = Arc::clone(&r);
        tokio::spawn(async move { r.call(0, &key).await })
    };
    graph_received(&r.emulator, 1).await;
    let waited = r.call(1, &key).await;
    waited.assert_graph_error(409, "idempotencyKeyInFlight");
    assert!(waited.headers.contains_key("retry-after"));
    assert_eq!(first.await.unwrap().status, 204);
    let after = r.call(1, &key).await;
    assert_eq!((after.status.as_u16(), replayed(&after)), (204, true));
    assert_eq!(r.emulator.graph_requests().len(), 1);
}

/// Records when each Graph request reaches the emulator.
pub fn arrivals(
    emulator: &graphgate_emulator::Emulator,
) -> (
    Arc<std::sync::Mutex<Vec<Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rx = emulator.graph_received();
    let log = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut last = *rx.borrow_and_update();
        while rx.changed().await.is_ok() {
            let now = *rx.borrow_and_update();
            let at = Instant::now();
            log.lock().unwrap().extend((last..now).map(|_| at));
            last = now;
        }
    });
    (seen, task)
}

/// No `window` holds more than `count` of `times` (sorted).
pub fn assert_no_window_over(times: &[Instant], count: usize, window: Duration) {
    for (i, w) in times.windows(count + 1).enumerate() {
        let span = w[count] - w[0];
        assert!(
            span >= window,
            "writes {i}..={} reached Graph within {span:?} (< {window:?})",
            i + count
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_pacing_is_one_budget_across_three_replicas_under_load() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let policy = TestPolicy::standard()
        .set(
            "pacing",
            json!({"tenant_writes": "30 per 10s", "max_wait_ms": 0}),
        )
        .yaml();
    let r = Arc::new(three(&redis, &policy).await);
    let (seen, recorder) = arrivals(&r.emulator);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..90 {
        let r = Arc::clone(&r);
        calls.spawn(async move { r.call(i % 3, &[]).await });
    }
    let replies = calls.join_all().await;
    let sent: Vec<&Reply> = replies.iter().filter(|x| x.status == 204).collect();
    assert_eq!(
        sent.len(),
        30,
        "exactly the tenant's 30 went, across all three replicas"
    );
    for refused in replies.iter().filter(|x| x.status != 204) {
        refused.assert_graph_error(429, "activityLimitReached");
        assert!(message(refused).contains("tenant write pacing"));
        let retry: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=11).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(r.emulator.graph_requests().len(), 30);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "all within one window"
    );
    recorder.abort();
    assert_eq!(seen.lock().unwrap().len(), 30);
}

/// The tenant pacing with a short window, so refills happen within the test (4 writes per
/// second, callers waiting up to 1.5 s for a slot), under load from nine workers across
/// `replicas` gateways sharing `state`: no second ever holds more than 4 writes, and slots
/// that free are used again.
pub async fn pacing_holds_in_every_window_as_slots_free(replicas: usize, state: StateConfig) {
    let policy = TestPolicy::standard()
        .set(
            "pacing",
            json!({"tenant_writes": "4 per 1s", "max_wait_ms": 1500}),
        )
        .yaml();
    let r = Arc::new(Replicas::start(replicas, &policy, state, Limits::default()).await);
    let (seen, recorder) = arrivals(&r.emulator);
    let until = Instant::now() + Duration::from_secs(3);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..9 {
        let r = Arc::clone(&r);
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                if Instant::now() > until {
                    break;
                }
                let reply = r.call(w % replicas, &[]).await;
                if reply.status != 204 {
                    reply.assert_graph_error(429, "activityLimitReached");
                    assert!(reply.headers.contains_key("retry-after"));
                }
                statuses.push(reply.status.as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = workers.join_all().await.concat();
    recorder.abort();
    let times = seen.lock().unwrap().clone();
    let sent = statuses.iter().filter(|s| **s == 204).count();
    assert_eq!(times.len(), sent, "every 204 reached Graph once");
    assert!(sent >= 8, "slots freed and were used again: {sent} sent");
    assert!(statuses.contains(&429), "some waited past their limit");
    assert_no_window_over(&times, 4, Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_holds_in_every_window_as_slots_free_under_load() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    pacing_holds_in_every_window_as_slots_free(3, redis_state(&redis)).await;
}

/// Waits, if the UTC day ends within a minute, until it has: a daily budget test must not
/// straddle midnight (at most 61 s; in practice never).
async fn away_from_midnight() {
    let left = 86_400 - graphgate::state::wall_clock_secs() % 86_400;
    if left <= 60 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

#[tokio::test]
async fn a_caller_budget_is_one_across_replicas_and_survives_restarting_them_all() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    away_from_midnight().await;
    let policy = TestPolicy::standard()
        .with_caller("rooms-rotator", |c| c.set("budget", json!("5 per day")))
        .yaml();
    let mut r = three(&redis, &policy).await;
    for i in 0..5 {
        assert_eq!(r.call(i % 3, &[]).await.status, 204, "call {i}");
    }
    let check_refused = |reply: Reply| {
        reply.assert_graph_error(429, "budgetExhausted");
        let text = message(&reply);
        assert!(
            text.contains("caller:rooms-rotator") && text.contains("5 per day"),
            "{text}"
        );
        let retry: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let midnight = 86_400 - graphgate::state::wall_clock_secs() % 86_400;
        assert!(
            retry.abs_diff(midnight) <= 5,
            "Retry-After {retry}, midnight in {midnight}"
        );
    };
    for i in 0..3 {
        check_refused(r.call(i, &[]).await);
    }
    assert!(Snapshot::now().get("graphgate_budget_used{budget=\"caller:rooms-rotator\"}") >= 5.0);
    // The refusal is audited as a limit, naming the rule that would have allowed it.
    r.replicas[0].gw.audit().flush().await.unwrap();
    let audit = std::fs::read_to_string(&r.replicas[0].audit_path).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"rate_limited\"") && l.contains("budgetExhausted")),
        "{audit}"
    );
    r.restart_all().await;
    for i in 0..3 {
        check_refused(r.call(i, &[]).await);
    }
    assert_eq!(
        r.emulator.graph_requests().len(),
        5,
        "five devices, and no more"
    );
}

/// One request of the load run, and what came of it.
struct Sent {
    key: String,
    crid: String,
    status: u16,
    code: Option<String>,
}

async fn keyed(r: &Replicas, i: usize, key: &str, crid: &str) -> Reply {
    r.call(i, &[("idempotency-key", key), ("client-request-id", crid)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_under_load_refuses_with_503_and_recovers_without_restarts() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let r = Arc::new(three(&redis, &policy_text()).await);
    let before = Snapshot::now();
    let log = Arc::new(std::sync::Mutex::new(Vec::<Sent>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..3 {
        let (r, log, stop) = (Arc::clone(&r), Arc::clone(&log), Arc::clone(&stop));
        workers.spawn(async move {
            for n in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (key, crid) = (format!("load-{w}-{n}"), uuid::Uuid::new_v4().to_string());
                let reply = keyed(&r, w, &key, &crid).await;
                let code = (reply.status != 204).then(|| reply.json()["error"]["code"].to_string());
                let status = reply.status.as_u16();
                log.lock().unwrap().push(Sent {
                    key,
                    crid,
                    status,
                    code,
                });
            }
        });
    }
    let count = |status: u16| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.status == status)
            .count()
    };
    eventually(
        "a few calls went through",
        Duration::from_secs(30),
        async || (count(204) >= 9).then_some(()),
    )
    .await;
    redis.stop();
    eventually("calls are refused", Duration::from_secs(30), async || {
        (count(503) >= 9).then_some(())
    })
    .await;
    for i in 0..3 {
        let (status, detail) = r.readyz(i).await;
        assert_eq!(status, 503, "{detail}");
        let state = &detail["checks"]["state"];
        assert_eq!(state["ok"], false, "{detail}");
        assert_eq!(
            state["store"],
            format!("redis://127.0.0.1:{}/0", redis.port)
        );
        assert!(
            state["status"].as_str().unwrap().starts_with("error:"),
            "{detail}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    workers.join_all().await;
    let outcomes = std::mem::take(&mut *log.lock().unwrap());
    for s in &outcomes {
        assert!(
            s.status == 204
                || (s.status == 503 && s.code.as_deref() == Some("\"stateStoreUnavailable\"")),
            "{} {:?}",
            s.status,
            s.code
        );
    }
    // Nothing refused was sent, nothing sent was sent twice.
    let at_graph = |crid: &str| {
        r.emulator
            .graph_requests()
            .iter()
            .filter(|g| {
                g.headers
                    .get("client-request-id")
                    .is_some_and(|c| c == crid)
            })
            .count()
    };
    for s in &outcomes {
        assert_eq!(
            at_graph(&s.crid),
            usize::from(s.status == 204),
            "{} ({})",
            s.key,
            s.status
        );
    }
    let refused = outcomes.iter().filter(|s| s.status == 503).count();
    let forwarded = |status: u16| {
        (outcomes.iter())
            .filter(|s| s.status == status)
            .map(|s| at_graph(&s.crid))
            .sum::<usize>()
    };
    // The figure for the report (printed with --nocapture); every number is asserted above.
    eprintln!(
        "redis stopped mid-run, 3 replicas under load: {} requests; {} answered 204, reaching Graph {} times; {refused} answered 503 stateStoreUnavailable, reaching Graph {} times",
        outcomes.len(),
        outcomes.len() - refused,
        forwarded(204),
        forwarded(503)
    );
    let after = Snapshot::now();
    assert!(before.delta(&after, &errors("stateStoreUnavailable")) >= refused as f64);
    assert!(
        before.delta(
            &after,
            "graphgate_state_store_errors_total{kind=\"connection\"}"
        ) >= 1.0
    );

    // Redis comes back (empty): every replica recovers by itself, no gateway restarted.
    redis.restart().await;
    for i in 0..3 {
        eventually(
            "the replica serves again",
            Duration::from_secs(30),
            async || {
                let crid = uuid::Uuid::new_v4().to_string();
                (keyed(&r, i, &format!("back-{crid}"), &crid).await.status == 204).then_some(())
            },
        )
        .await;
        assert_eq!(r.readyz(i).await.0, 200);
    }
    // The callers' retries of the refused calls (same key, same id) now run, once each.
    let mut retried = HashMap::new();
    for (n, s) in outcomes.iter().filter(|s| s.status == 503).enumerate() {
        assert_eq!(keyed(&r, n % 3, &s.key, &s.crid).await.status, 204);
        retried.insert(s.crid.clone(), ());
    }
    for crid in retried.keys() {
        assert_eq!(at_graph(crid), 1);
    }
}

/// A privileged request costs one round trip to Redis before Graph is called (one script
/// takes its rate limits, its idempotency claim, its budget and a tenant write slot) and at
/// most one after (its answer kept for duplicates), whatever it carries. Graph holds each
/// answer a moment, so the monitor sees what ran before Graph answered, then what ran after.
#[tokio::test]
async fn a_privileged_request_costs_one_redis_round_trip_before_graph_and_one_after() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limited = TestPolicy::standard()
        .with_caller("rooms-rotator", |c| {
            c.set("rate_limit", json!("1000 per second"))
                .set("budget", json!("1000 per day"))
        })
        .yaml();
    let mut figures = Vec::new();
    for (what, policy, key, after) in [
        ("no key, no limits", policy_text(), false, 0),
        ("Idempotency-Key", policy_text(), true, 1),
        ("Idempotency-Key, rate limit and budget", limited, true, 1),
    ] {
        let r = Replicas::start(1, &policy, redis_state(&redis), Limits::default()).await;
        // The first calls load the scripts (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
        let warm_up = format!("warm-up-{what}");
        assert_eq!(
            r.call(0, &[("idempotency-key", &warm_up)]).await.status,
            204
        );
        assert_eq!(r.call(0, &[]).await.status, 204);
        r.emulator
            .set_faults(Faults::default().with_graph(Fault::slow(Duration::from_millis(500))));
        let mut monitor = redis.monitor().await;
        let count_me = format!("count-me-{what}");
        let headers: &[(&str, &str)] = if key {
            &[("idempotency-key", &count_me)]
        } else {
            &[]
        };
        let received = *r.emulator.graph_received().borrow();
        let (reply, before) = tokio::join!(r.call(0, headers), async {
            graph_received(&r.emulator, received + 1).await;
            monitor.client_commands().await
        });
        assert_eq!(reply.status, 204);
        let mut after_graph = monitor.client_commands().await;
        // The answer goes out first; its settle lands just after (`StateStore::finish`).
        let deadline = Instant::now() + Duration::from_secs(10);
        while after_graph.len() < after && Instant::now() < deadline {
            after_graph.extend(monitor.client_commands().await);
        }
        assert_eq!(before, ["EVALSHA"], "{what}: one script before Graph");
        assert!(
            after_graph.iter().all(|c| c == "EVALSHA") && after_graph.len() == after,
            "{what}: {after} after Graph: {after_graph:?}"
        );
        figures.push(format!("{what}: 1 + {after}"));
    }
    eprintln!(
        "redis round trips per privileged request (before Graph + after): {}",
        figures.join("; ")
    );
}

/// A caller's rate limit lives in Redis: two replicas share it, and the one that refuses
/// says when a slot frees (`Retry-After`), whichever replica the call reached.
#[tokio::test]
async fn a_redis_rate_limit_refuses_across_two_replicas_with_its_retry_after() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let policy = TestPolicy::standard()
        .with_caller("rooms-rotator", |c| {
            c.set("rate_limit", json!("2 per minute"))
        })
        .yaml();
    let r = Replicas::start(2, &policy, redis_state(&redis), Limits::default()).await;
    assert_eq!(r.call(0, &[]).await.status, 204);
    assert_eq!(r.call(1, &[]).await.status, 204);
    for i in [0, 1] {
        let refused = r.call(i, &[]).await;
        refused.assert_graph_error(429, "activityLimitReached");
        assert!(
            message(&refused).contains("caller"),
            "{}",
            message(&refused)
        );
        let retry: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // 2 per minute: a slot frees every 30 s.
        assert!(
            (1..=30).contains(&retry),
            "replica {i}: Retry-After {retry}"
        );
    }
    assert_eq!(r.emulator.graph_requests().len(), 2, "two calls, no more");
}

/// A keyed request refused after it claimed its key (here: its budget is used up) lets the
/// key go: the client's retry on another replica gets the same refusal, not a 409 for a key
/// "still in progress", and nothing is sent.
#[tokio::test]
async fn a_keyed_refusal_after_its_claim_releases_the_key_for_a_retry_on_another_replica() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    away_from_midnight().await;
    let policy = TestPolicy::standard()
        .with_caller("rooms-rotator", |c| c.set("budget", json!("1 per day")))
        .yaml();
    let limits = Limits {
        idempotency_wait: Duration::from_secs(2),
        ..Limits::default()
    };
    let r = Replicas::start(2, &policy, redis_state(&redis), limits).await;
    assert_eq!(
        r.call(0, &[("idempotency-key", "first-0001")]).await.status,
        204
    );
    let key = [("idempotency-key", "second-0002")];
    r.call(0, &key)
        .await
        .assert_graph_error(429, "budgetExhausted");
    let retry = r.call(1, &key).await;
    retry.assert_graph_error(429, "budgetExhausted");
    assert!(!replayed(&retry), "decided again, not replayed");
    assert_eq!(
        r.emulator.graph_requests().len(),
        1,
        "nothing else was sent"
    );
}

/// A Redis that hangs (paused by `CLIENT PAUSE`, as a frozen or overloaded server would be)
/// is waited for no longer than the state timeout: the request is refused with 503 and
/// nothing is sent.
#[tokio::test]
async fn a_hanging_redis_is_a_503_within_the_state_timeout_with_nothing_sent() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let state = StateConfig::parse(
        &redis.url(),
        StateOptions {
            timeout,
            ..StateOptions::default()
        },
    )
    .unwrap();
    let r = Replicas::start(1, &policy_text(), state, Limits::default()).await;
    assert_eq!(r.call(0, &[]).await.status, 204, "connected and working");
    let mut conn = redis.connection().await;
    // Every client's commands now wait 30 s: far past the timeout.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    let refused = r.call(0, &[("idempotency-key", "hang-0001")]).await;
    let took = started.elapsed();
    refused.assert_graph_error(503, "stateStoreUnavailable");
    assert!(
        message(&refused).contains("timeout"),
        "{}",
        message(&refused)
    );
    assert!(refused.headers.contains_key("retry-after"));
    // Bounded by the timeout (a few of them on a loaded machine), not by the 30 s pause.
    assert!(took >= timeout, "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        r.emulator.graph_requests().len(),
        1,
        "nothing more was sent"
    );
    // (The server, still paused, is killed with the test.)
}

/// The answer of a keyed request goes out before its settle lands in Redis: the caller does
/// not wait a round trip for the answer to be kept. Until the settle lands the claim stays
/// held (running), so a duplicate sent meanwhile, to another replica, waits for the kept
/// answer and is never sent again. Redis's writes are paused (`CLIENT PAUSE ... WRITE`)
/// while Graph holds the first request, so its settle cannot land until the test lets it.
#[tokio::test]
async fn a_keyed_answer_goes_out_before_its_settle_lands_and_a_duplicate_meanwhile_is_not_sent() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // A state timeout far past the bound on the first answer below: a gateway that waited
    // for the settle before answering would not answer within it.
    let state = StateConfig::parse(
        &redis.url(),
        StateOptions {
            timeout: Duration::from_secs(20),
            ..StateOptions::default()
        },
    )
    .unwrap();
    let limits = Limits {
        idempotency_wait: Duration::from_secs(20),
        ..Limits::default()
    };
    let r = Arc::new(Replicas::start(2, &policy_text(), state, limits).await);
    // The scripts are loaded (EVALSHA, NOSCRIPT, SCRIPT LOAD) before writes are paused.
    for i in 0..2 {
        let warm_up = format!("warm-up-{i}");
        assert_eq!(
            r.call(i, &[("idempotency-key", &warm_up)]).await.status,
            204
        );
    }
    let sent_before = r.emulator.graph_requests().len();
    r.emulator
        .set_faults(Faults::default().with_graph(Fault::slow(Duration::from_millis(300)).times(1)));
    let key = [("idempotency-key", "settle-later-0001")];
    let received = *r.emulator.graph_received().borrow();
    let first = {
        let r = Arc::clone(&r);
        tokio::spawn(async move { r.call(0, &key).await })
    };
    graph_received(&r.emulator, received + 1).await;
    // Graph holds the first request: from now on no write reaches Redis (reads do).
    let mut conn = redis.pause_writes().await;
    let first = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("answered while its settle waits on the paused Redis")
        .unwrap();
    assert_eq!((first.status.as_u16(), replayed(&first)), (204, false));
    // Its claim still reads as running: the answer is not kept yet.
    let claims: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("idem:"))
        .collect();
    let mut running = Vec::new();
    for k in &claims {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        if v.first() == Some(&b'R') {
            running.push(k.clone());
        }
    }
    assert_eq!(running.len(), 1, "one claim still running: {claims:?}");
    // A duplicate on the other replica meanwhile: it waits, and gets the kept answer.
    let duplicate = {
        let r = Arc::clone(&r);
        tokio::spawn(async move { r.call(1, &key).await })
    };
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let duplicate = duplicate.await.unwrap();
    assert_eq!(
        (duplicate.status.as_u16(), replayed(&duplicate)),
        (204, true)
    );
    let v: Vec<u8> = redis::cmd("GET")
        .arg(&running[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.first(), Some(&b'D'), "the answer is kept");
    assert_eq!(
        r.emulator.graph_requests().len(),
        sent_before + 1,
        "sent once"
    );
}
