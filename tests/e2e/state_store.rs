//! The state store as an operator meets it: `graphgate serve --state ...` from the
//! environment, Redis AUTH and TLS, bulk requests counted per device on a shared budget,
//! and the memory store, whose budgets survive a restart (and a crash) through their
//! snapshot and the audit log's intents.

use std::time::Duration;

use graphgate::cloud::Cloud;
use graphgate::gateway::Limits;
use graphgate::policy::Policy;
use graphgate::ratelimit::{LimitRefusal, PolicyLimits, Reservation, Taken};
use graphgate::state::config::StateOptions;
use graphgate::state::{ClaimSettings, Namespace, StateConfig, StateStore};
use graphgate_emulator::{DEMO_TENANT_ID, EmulatorConfig};

use crate::common::pki::Ca;
use crate::common::redis::RedisServer;
use crate::common::replicas::Replicas;
use crate::common::{TestPolicy, policy_text, served, temp_dir};
use serde_json::json;

const OP: &str = "managedDevices.updateWindowsDeviceAccount";

fn with_budget(budget: &str) -> String {
    TestPolicy::standard()
        .with_caller("rooms-rotator", |c| c.set("budget", json!(budget)))
        .yaml()
}

/// What one unkeyed (bulk) request of `devices` takes from `store`, not yet settled.
async fn reserve<'p>(
    limits: &'p PolicyLimits,
    store: &StateStore,
    devices: u32,
) -> Result<Reservation<'p>, LimitRefusal> {
    let op = graphgate::operation::catalog::by_name(OP).unwrap();
    match limits
        .take(store, (0, 0), op, (devices, false), None)
        .await?
    {
        Taken::Run(reservation) => Ok(reservation),
        Taken::Duplicate(_) => panic!("an unkeyed request is no duplicate"),
    }
}

fn state(url: &str, options: StateOptions) -> StateConfig {
    StateConfig::parse(
        url,
        StateOptions {
            timeout: Duration::from_secs(2),
            ..options
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_bulk_request_counts_once_per_device_on_a_shared_budget() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let policy = TestPolicy::standard()
        .with_caller("rooms-rotator", |c| c.set("budget", json!("100 per hour")))
        .set("tenant_budgets", json!({ OP: "10 per day" }))
        .yaml();
    let policy = Policy::from_yaml(&policy, "p").unwrap();
    let claims = ClaimSettings {
        capacity: 10,
        window: Duration::from_secs(60),
        wait: Duration::from_secs(1),
    };
    let ns = Namespace::new(Cloud::Global, "tenant-1", "app", "test");
    // Two replicas' worth of stores on one Redis.
    let a = StateStore::open(
        &state(&redis.url(), StateOptions::default()),
        ns.clone(),
        claims,
    )
    .unwrap();
    let b = StateStore::open(
        &state(&redis.url(), StateOptions::default()),
        ns.clone(),
        claims,
    )
    .unwrap();
    let limits = PolicyLimits::new(&policy, &ns);
    reserve(&limits, &a, 4)
        .await
        .unwrap()
        .settle(&a, true, None)
        .await;
    reserve(&limits, &b, 4)
        .await
        .unwrap()
        .settle(&b, true, None)
        .await;
    // 8 of the tenant's 10 are used: 4 devices more do not fit, whole, on either replica.
    let Err(LimitRefusal::OverBudget { budget, .. }) = reserve(&limits, &a, 4).await else {
        panic!("over budget")
    };
    assert_eq!(budget, format!("tenant:{OP}"));
    // A request that was not sent after all gives its devices back.
    reserve(&limits, &b, 2)
        .await
        .unwrap()
        .settle(&b, false, None)
        .await;
    reserve(&limits, &a, 2)
        .await
        .unwrap()
        .settle(&a, true, None)
        .await;
    assert!(reserve(&limits, &b, 1).await.is_err(), "10 of 10");
    let mut conn = redis.connection().await;
    let day = graphgate::state::wall_clock_secs() / 86_400;
    let key = format!("graphgate:global:tenant-1:d:test:budget:tenant:{OP}:day:{day}");
    let used: u64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(used, 10, "{key}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let to_midnight = 86_400 - graphgate::state::wall_clock_secs() % 86_400;
    assert!(
        ttl.abs_diff(to_midnight as i64 + 60) <= 5,
        "the count expires a minute after its day: {ttl} s left"
    );
}

#[tokio::test]
async fn the_redis_password_comes_from_a_file_and_a_wrong_one_fails_closed() {
    let Some(redis) = RedisServer::start_with(&["--requirepass", "c0rrect-h0rse"]).await else {
        return;
    };
    let dir = temp_dir("state-auth");
    let (good, bad) = (dir.join("good"), dir.join("bad"));
    std::fs::write(&good, "c0rrect-h0rse\n").unwrap();
    std::fs::write(&bad, "battery-staple\n").unwrap();
    let with = |file| {
        state(
            &redis.url(),
            StateOptions {
                password_file: Some(file),
                ..StateOptions::default()
            },
        )
    };
    let r = Replicas::start(1, &policy_text(), with(good), Limits::default()).await;
    assert_eq!(r.call(0, &[]).await.status, 204);
    assert_eq!(r.readyz(0).await.0, 200);
    let wrong = Replicas::start(1, &policy_text(), with(bad), Limits::default()).await;
    wrong
        .call(0, &[])
        .await
        .assert_graph_error(503, "stateStoreUnavailable");
    assert!(
        wrong.emulator.graph_requests().is_empty(),
        "nothing was sent"
    );
    let (status, detail) = wrong.readyz(0).await;
    assert_eq!(status, 503);
    assert_eq!(detail["checks"]["state"]["error_kind"], "auth", "{detail}");
    assert!(!detail.to_string().contains("staple"), "{detail}");
}

#[tokio::test]
async fn rediss_is_verified_against_the_configured_ca() {
    let ca = Ca::new("state CA");
    let leaf = ca.server();
    let dir = temp_dir("state-tls");
    for (name, pem) in [
        ("ca.pem", &ca.pem),
        ("cert.pem", &leaf.cert_pem),
        ("key.pem", &leaf.key_pem),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let file = |name: &str| dir.join(name).display().to_string();
    let tls_args = [
        "--tls-port".to_owned(),
        "{port}".to_owned(),
        "--tls-cert-file".to_owned(),
        file("cert.pem"),
        "--tls-key-file".to_owned(),
        file("key.pem"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ];
    let args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let Some(redis) = RedisServer::start_with(&args).await else {
        return;
    };
    let url = format!("rediss://localhost:{}", redis.port);
    let trusted = state(
        &url,
        StateOptions {
            ca_file: Some(dir.join("ca.pem")),
            ..StateOptions::default()
        },
    );
    let r = Replicas::start(1, &policy_text(), trusted, Limits::default()).await;
    assert_eq!(r.call(0, &[]).await.status, 204);
    let (_, detail) = r.readyz(0).await;
    assert_eq!(
        detail["checks"]["state"]["store"],
        format!("rediss://localhost:{}/0", redis.port)
    );
    // Without the CA, the server's certificate is not trusted: refused, never sent.
    let untrusted = state(&url, StateOptions::default());
    let r = Replicas::start(1, &policy_text(), untrusted, Limits::default()).await;
    r.call(0, &[])
        .await
        .assert_graph_error(503, "stateStoreUnavailable");
    assert!(r.emulator.graph_requests().is_empty());
}

#[tokio::test]
async fn serve_keeps_its_state_in_redis_namespaced_by_cloud_and_tenant() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    // Redis is down when the gateway starts: it starts, is not ready, and refuses.
    redis.stop();
    let backend = served::backend(EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env("GRAPHGATE_STATE", redis.url())
        .env("GRAPHGATE_STATE_TIMEOUT_MS", "1000");
    let gw = backend.serve(cmd).await;
    let ready = gw.admin("/readyz").await;
    assert_eq!(ready.status, 503);
    let detail = ready.json();
    assert_eq!(detail["checks"]["state"]["ok"], false, "{detail}");
    assert_eq!(detail["checks"]["state"]["shared"], true);
    assert_eq!(
        detail["checks"]["state"]["store"],
        format!("redis://127.0.0.1:{}/0", redis.port)
    );
    gw.post(
        crate::common::ACTION_PATH,
        crate::common::ROTATOR_KEY,
        &crate::common::body(),
    )
    .await
    .assert_graph_error(503, "stateStoreUnavailable");
    let metrics = gw.metrics().await;
    assert!(
        crate::common::metrics::value(
            &metrics,
            "graphgate_errors_total{code=\"stateStoreUnavailable\"}"
        ) == 1.0,
        "{metrics}"
    );
    // Redis comes up: the same process serves.
    redis.restart().await;
    crate::common::eventually(
        "the gateway uses Redis",
        Duration::from_secs(30),
        async || {
            let r = gw
                .post(
                    crate::common::ACTION_PATH,
                    crate::common::ROTATOR_KEY,
                    &crate::common::body(),
                )
                .await;
            (r.status == 204).then_some(())
        },
    )
    .await;
    assert_eq!(gw.admin("/readyz").await.status, 200);
    let keys = redis.keys().await;
    let prefix = format!("graphgate:global:{DEMO_TENANT_ID}:");
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with(&prefix)),
        "{keys:?}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("graphgate_state_store_duration_seconds_bucket{le="),
        "{metrics}"
    );
    assert!(
        metrics.contains("graphgate_state_store_errors_total{kind=\"connection\"}"),
        "{metrics}"
    );
    gw.terminate().await;
}

#[tokio::test]
async fn memory_budgets_survive_a_restart_through_the_file_beside_the_audit_log() {
    let backend = served::backend(EmulatorConfig::default()).await;
    std::fs::write(backend.dir.join("policy.yaml"), with_budget("2 per day")).unwrap();
    let gw = backend.serve(backend.serve_command()).await;
    assert_eq!(gw.call().await.status, 204);
    assert_eq!(gw.call().await.status, 204);
    gw.call().await.assert_graph_error(429, "budgetExhausted");
    let (status, _) = gw.terminate().await;
    assert!(status.success());
    // The snapshot written at shutdown, naming the audit record it covers.
    let file = backend.dir.join("audit.budgets.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["budgets"][0]["used"], 2, "{saved}");
    assert!(saved["audit_seq"].as_u64().unwrap() > 0, "{saved}");
    // A new process reads today's count back: still used up.
    let gw = backend.serve(backend.serve_command()).await;
    let again = gw.call().await;
    again.assert_graph_error(429, "budgetExhausted");
    assert!(
        again.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("caller:rooms-rotator")
    );
    assert_eq!(backend.emulator.graph_requests().len(), 2);
    gw.terminate().await;
}

/// No write of its own per admission: a budget's count is durable with the request's audit
/// intent (written before Graph is called), which names the budget. A gateway killed with
/// SIGKILL (no snapshot at shutdown) whose last snapshot is the one from its start comes back
/// with the day's count from its audit log.
#[tokio::test]
async fn a_memory_budget_survives_sigkill_through_the_intents_in_the_audit_log() {
    let backend = served::backend(EmulatorConfig::default()).await;
    std::fs::write(backend.dir.join("policy.yaml"), with_budget("3 per day")).unwrap();
    let gw = backend.serve(backend.serve_command()).await;
    // The snapshot written at start (before the listener): nothing counted yet.
    let file = backend.dir.join("audit.budgets.json");
    let at_start = std::fs::read(&file).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&at_start).unwrap();
    assert_eq!(saved["budgets"], json!([]), "{saved}");
    assert_eq!(gw.call().await.status, 204);
    assert_eq!(gw.call().await.status, 204);
    let records = served::audit_records(&backend.dir.join("audit.jsonl"));
    let intents: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "intent").collect();
    assert_eq!(intents.len(), 2, "{records:#?}");
    let window_end = intents[0]["budgets"][0]["window_end"].as_u64().unwrap();
    assert_eq!(
        intents[0]["budgets"],
        json!([{"budget": "caller:rooms-rotator", "devices": 1, "window": "day", "window_end": window_end}])
    );
    assert_eq!(window_end % 86_400, 0, "the window ends at midnight UTC");
    gw.proc.signal("KILL");
    let _ = gw.proc.wait_exit_async(served::START_STOP).await;
    // Killed before a snapshot took the two (one may have, every 5 s): only the log knows.
    std::fs::write(&file, &at_start).unwrap();
    let gw = backend.serve(backend.serve_command()).await;
    assert_eq!(gw.call().await.status, 204, "two counted, one left");
    gw.call().await.assert_graph_error(429, "budgetExhausted");
    assert_eq!(
        backend.emulator.graph_requests().len(),
        3,
        "the two before the crash and the one left"
    );
    gw.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pacing_holds_in_every_window_as_slots_free_under_load() {
    // One gateway in memory mode: the same test as the shared store's.
    crate::shared_state::pacing_holds_in_every_window_as_slots_free(1, StateConfig::default())
        .await;
}

/// A claim value in Redis longer than any graphgate writes (someone with access to the store
/// replaced a stored answer with a 4 MiB one): it is not read whole, the request is refused
/// (503, fail closed), and nothing is sent; whether met when claiming or while waiting.
#[tokio::test]
async fn a_hostile_claim_value_in_redis_is_refused_unread() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let r = Replicas::start(
        1,
        &policy_text(),
        state(&redis.url(), StateOptions::default()),
        Limits::default(),
    )
    .await;
    assert_eq!(r.call(0, &[("idempotency-key", "k-1")]).await.status, 204);
    let conn = redis.connection().await;
    let namespace = r.replicas[0].gw.state().namespace().clone();
    let claim = |key: &str| namespace.idempotency("rooms-rotator", key);
    // The answer went out first; its settle lands just after (`StateStore::finish`).
    let stored: Vec<u8> =
        crate::common::eventually("a stored answer", Duration::from_secs(10), async || {
            let mut conn = conn.clone();
            let v: Vec<u8> = redis::cmd("GET")
                .arg(claim("k-1"))
                .query_async(&mut conn)
                .await
                .unwrap();
            (v.first() == Some(&b'D')).then_some(v)
        })
        .await;
    let fingerprint = &stored[1..65];
    // A stored answer that decodes, with a 4 MiB body (no Graph answer is over 1 MiB).
    let mut answer: serde_json::Value = serde_json::from_slice(&stored[65..]).unwrap();
    answer["body"] = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(vec![b'x'; 4 << 20])
            .into()
    };
    let hostile = [
        b"D".as_slice(),
        fingerprint,
        &serde_json::to_vec(&answer).unwrap(),
    ]
    .concat();
    let set = |key: String, value: Vec<u8>| {
        let mut conn = conn.clone();
        async move {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    set(claim("k-1"), hostile.clone()).await;
    let refused = r.call(0, &[("idempotency-key", "k-1")]).await;
    refused.assert_graph_error(503, "stateStoreUnavailable");
    assert!(refused.body.len() < 4096, "{} bytes", refused.body.len());
    // Met while waiting: a first request 'running', then its answer turns hostile.
    let running = [b"R".as_slice(), fingerprint, b"another-replica"].concat();
    set(claim("k-2"), running).await;
    let mut monitor = redis.monitor().await;
    let waiting = {
        let addr = r.replicas[0].addr;
        tokio::spawn(async move { call_at(addr, "k-2").await })
    };
    crate::common::eventually(
        "the duplicate polls the claim",
        Duration::from_secs(30),
        async || {
            let seen = monitor.client_commands().await;
            seen.iter().any(|c| c == "GETRANGE").then_some(())
        },
    )
    .await;
    set(claim("k-2"), hostile).await;
    let refused = waiting.await.unwrap();
    refused.assert_graph_error(503, "stateStoreUnavailable");
    assert_eq!(r.emulator.graph_requests().len(), 1, "nothing sent");
}

/// The standard call to the gateway at `addr` with `Idempotency-Key: key`.
async fn call_at(addr: std::net::SocketAddr, key: &str) -> crate::common::Reply {
    let req = http::Request::post(format!("http://{addr}{}", crate::common::ACTION_PATH))
        .header(
            "authorization",
            format!("Bearer {}", crate::common::ROTATOR_KEY),
        )
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            crate::common::body(),
        )))
        .unwrap();
    crate::common::send_to(req).await
}

/// The standard policy, its caller limited to one call a minute.
fn one_call_a_minute() -> String {
    TestPolicy::standard()
        .with_caller("rooms-rotator", |c| {
            c.set("rate_limit", json!("1 per minute"))
        })
        .yaml()
}

/// Two deployments of one tenant on one Redis (`--state-namespace`): each has its own caller
/// counters; the replicas of one deployment share theirs; every key is under its
/// deployment's name (the tenant write pacing aside, which is the app's).
#[tokio::test]
async fn deployments_with_their_own_namespace_do_not_share_counters_and_replicas_do() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = served::backend(EmulatorConfig::default()).await;
    std::fs::write(backend.dir.join("policy.yaml"), one_call_a_minute()).unwrap();
    let serve = async |replica: &str, namespace: &str| {
        let mut cmd = backend.replica_command(replica);
        cmd.env("GRAPHGATE_STATE", redis.url())
            .env("GRAPHGATE_STATE_NAMESPACE", namespace);
        backend.serve(cmd).await
    };
    let rooms = serve("rooms-1", "rooms").await;
    let desks = serve("desks-1", "desks").await;
    let rooms_again = serve("rooms-2", "rooms").await;
    assert_eq!(rooms.call().await.status, 204);
    assert_eq!(desks.call().await.status, 204, "its own counter");
    let limited = rooms_again.call().await;
    limited.assert_graph_error(429, "activityLimitReached");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(backend.emulator.graph_requests().len(), 2);
    let keys = redis.keys().await;
    let tenant = format!("graphgate:global:{DEMO_TENANT_ID}:");
    for key in &keys {
        let rest = key.strip_prefix(&tenant).unwrap_or_else(|| panic!("{key}"));
        assert!(
            rest.starts_with("d:rooms:")
                || rest.starts_with("d:desks:")
                || rest.starts_with("pace:"),
            "{key}"
        );
    }
    assert!(
        keys.iter().any(|k| k.contains(":d:desks:rate:caller:")),
        "{keys:?}"
    );
    // A name that cannot be one stops start-up.
    let mut bad = backend.replica_command("bad");
    bad.env("GRAPHGATE_STATE", redis.url())
        .env("GRAPHGATE_STATE_NAMESPACE", "rooms:desks");
    let (status, _, err) = crate::common::process::run_async(bad, served::START_STOP).await;
    assert!(!status.success());
    assert!(err.contains("GRAPHGATE_STATE_NAMESPACE"), "{err}");
    for gw in [rooms, desks, rooms_again] {
        let (status, out) = gw.terminate().await;
        assert!(status.success(), "{out}");
    }
}

/// Without `--state-namespace`, replicas of a deployment (one app, one policy file) share
/// their counters; a deployment with another policy file does not, and an edit of the
/// policy keeps them.
#[tokio::test]
async fn the_default_namespace_is_shared_by_replicas_and_survives_a_policy_edit() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = served::backend(EmulatorConfig::default()).await;
    let limited = one_call_a_minute();
    std::fs::write(backend.dir.join("policy.yaml"), &limited).unwrap();
    let other_dir = crate::common::temp_dir("other-policy");
    std::fs::write(other_dir.join("policy.yaml"), &limited).unwrap();
    let serve = async |replica: &str, policy: &std::path::Path| {
        let mut cmd = backend.replica_command(replica);
        cmd.env("GRAPHGATE_STATE", redis.url());
        // The same command with its --policy replaced.
        let mut moved = std::process::Command::new(cmd.get_program());
        let mut args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        let at = args.iter().position(|a| a == "--policy").unwrap() + 1;
        args[at] = policy.as_os_str().to_owned();
        moved.args(args).env_clear();
        for (name, value) in cmd.get_envs() {
            if let Some(value) = value {
                moved.env(name, value);
            }
        }
        backend.serve(moved).await
    };
    let call = async |gw: &served::Served| gw.call().await.status;
    let first = serve("one", &backend.dir.join("policy.yaml")).await;
    assert_eq!(call(&first).await, 204);
    // The same deployment's other replica: the caller's one call this minute is spent.
    let second = serve("two", &backend.dir.join("policy.yaml")).await;
    assert_eq!(call(&second).await, 429);
    // Another policy file (another deployment): its own counter.
    let elsewhere = serve("three", &other_dir.join("policy.yaml")).await;
    assert_eq!(call(&elsewhere).await, 204);
    for gw in [first, second, elsewhere] {
        let (status, out) = gw.terminate().await;
        assert!(status.success(), "{out}");
    }
    // An edit of the policy (a comment) and a restart: still the same counters.
    std::fs::write(
        backend.dir.join("policy.yaml"),
        format!("# edited\n{limited}"),
    )
    .unwrap();
    let restarted = serve("one", &backend.dir.join("policy.yaml")).await;
    assert_eq!(call(&restarted).await, 429, "the edit kept the counter");
    let (status, out) = restarted.terminate().await;
    assert!(status.success(), "{out}");
}
