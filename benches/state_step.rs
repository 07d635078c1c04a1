//! What the state step adds to a privileged request, with Redis against memory: the steps the
//! gateway takes in the state store for a keyed request under a rate limit and a budget
//! (one step takes the rate limit, the idempotency claim, the budget and a pacing slot; one
//! keeps the answer: 2 round trips to Redis), timed one by one at 1 and at 64 requests in
//! flight, as p50 and p99. The stores: memory in this process alone, memory with its budget
//! file (what `serve` runs with an audit log: its counts are snapshotted off the request
//! path, so the step is the same), and a local `redis-server` started here on a free port
//! without persistence (skipped with a note when there is none).
//!
//!     cargo bench --bench state_step
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphgate::clock::Instant;
use graphgate::cloud::Cloud;
use graphgate::idempotency::{StoredResponse, fingerprint};
use graphgate::policy::Policy;
use graphgate::ratelimit::{PolicyLimits, Taken};
use graphgate::state::config::StateOptions;
use graphgate::state::{ClaimSettings, Idempotency, Namespace, StateConfig, StateStore};
use http_body_util::Full;

const OP: &str = "managedDevices.updateWindowsDeviceAccount";
/// Requests per run at 1 in flight, and per task at 64 in flight.
const SERIAL: usize = 4_000;
const PER_TASK: usize = 100;

/// A caller with a rate limit and a budget, and pacing, all far above what the run sends:
/// every step is taken, none refuses.
const POLICY: &str = r#"version: 1
callers:
  - name: bench
    api_key_sha256: "95ab1ab43a1c769ff93ba02eec3f4f81c077398c1691a00ae8628abd43901779"
    rate_limit: 1000000 per second
    budget: 1000000 per day
rules:
  - name: bench-may-update
    callers: [bench]
    operations: [managedDevices.updateWindowsDeviceAccount]
pacing:
  tenant_writes: 100000 per second
  max_wait_ms: 0
"#;

/// One store and the limits of the bench policy on it.
struct Subject {
    store: StateStore,
    limits: PolicyLimits,
}

impl Subject {
    fn new(config: &StateConfig) -> Subject {
        let ns = Namespace::new(
            Cloud::Global,
            &uuid::Uuid::new_v4().to_string(),
            "bench",
            "bench",
        );
        let claims = ClaimSettings {
            capacity: 1_000_000,
            window: Duration::from_secs(600),
            wait: Duration::from_secs(5),
        };
        let policy = Policy::from_yaml(POLICY, "bench").unwrap();
        Subject {
            limits: PolicyLimits::new(&policy, &ns),
            store: StateStore::open(config, ns, claims).unwrap(),
        }
    }

    /// The state steps of one keyed, allowed request that reached Graph, as the gateway
    /// takes them (`gateway.rs`: execute).
    async fn request(&self, key: &str, answer: &StoredResponse) {
        let op = graphgate::operation::catalog::by_name(OP).unwrap();
        let fingerprint = fingerprint("/v1.0/deviceManagement/managedDevices/x/y", key.as_bytes());
        let idempotency = Idempotency {
            caller: "bench",
            key,
            fingerprint,
        };
        let taken = self
            .limits
            .take(&self.store, (0, 0), op, (1, false), Some(idempotency));
        let Taken::Run(reservation) = taken.await.unwrap() else {
            panic!("a fresh key runs")
        };
        reservation
            .settle(&self.store, true, Some(answer.clone()))
            .await;
    }
}

/// Latencies of `tasks` concurrent loops of `each` requests.
async fn run(subject: &Arc<Subject>, tasks: usize, each: usize) -> Vec<Duration> {
    let answer = {
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::NO_CONTENT;
        StoredResponse::of(&resp, Bytes::new())
    };
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (subject, answer) = (Arc::clone(subject), answer.clone());
        set.spawn(async move {
            let mut took = Vec::with_capacity(each);
            for _ in 0..each {
                let key = uuid::Uuid::new_v4().to_string();
                let started = Instant::now();
                subject.request(&key, &answer).await;
                took.push(started.elapsed());
            }
            took
        });
    }
    let mut all = Vec::with_capacity(tasks * each);
    while let Some(took) = set.join_next().await {
        all.extend(took.unwrap());
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A redis-server of the bench's own: a free loopback port, no persistence, killed at the end.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    async fn start() -> Option<Redis> {
        let dir =
            std::env::temp_dir().join(format!("graphgate-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Redis { child, port, dir })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs the target once with no
    // such flag: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let budget_file = std::env::temp_dir().join(format!(
            "graphgate-bench-{}.budgets.json",
            std::process::id()
        ));
        // `serve`'s default store timeout (--state-timeout-ms).
        let options = || StateOptions {
            timeout: Duration::from_millis(500),
            ..StateOptions::default()
        };
        let memory = StateConfig::parse("memory", options()).unwrap();
        let with_file = StateConfig::parse(
            "memory",
            StateOptions {
                budget_file: Some(budget_file.clone()),
                ..options()
            },
        )
        .unwrap();
        let redis = Redis::start().await;
        let mut stores = vec![("memory", memory), ("memory + budget file", with_file)];
        match &redis {
            Some(r) => {
                let url = format!("redis://127.0.0.1:{}", r.port);
                stores.push(("redis", StateConfig::parse(&url, options()).unwrap()));
            }
            None => {
                eprintln!("SKIPPED redis: redis-server not found (apt-get install redis-server)")
            }
        }
        println!(
            "state step of one keyed request under a rate limit and a budget (2 Redis round trips)"
        );
        println!("| store | in flight | requests | p50 | p99 |");
        println!("|---|---|---|---|---|");
        let mut p = std::collections::BTreeMap::new();
        for (name, config) in &stores {
            let subject = Arc::new(Subject::new(config));
            run(&subject, 1, 200).await; // warm-up: connection, scripts loaded
            for (tasks, each) in [(1, SERIAL), (64, PER_TASK)] {
                let took = run(&subject, tasks, each).await;
                let (p50, p99) = (percentile(&took, 0.50), percentile(&took, 0.99));
                println!(
                    "| {name} | {tasks} | {} | {:.0} µs | {:.0} µs |",
                    took.len(),
                    micros(p50),
                    micros(p99)
                );
                p.insert((*name, tasks), (p50, p99));
            }
        }
        if redis.is_some() {
            for base in ["memory", "memory + budget file"] {
                for tasks in [1, 64] {
                    let (r50, r99) = p[&("redis", tasks)];
                    let (m50, m99) = p[&(base, tasks)];
                    println!(
                        "redis adds over {base} at {tasks} in flight: p50 {:+.0} µs, p99 {:+.0} µs",
                        micros(r50) - micros(m50),
                        micros(r99) - micros(m99)
                    );
                }
            }
        }
        let _ = std::fs::remove_file(&budget_file);
    });
}
