//! Several gateway replicas in this process, as a load balancer sees them: each its own
//! gateway, listener and audit log, all in front of one emulator (one Microsoft), one state
//! store setting (e.g. one redis-server) and one policy file path (as every pod of a
//! deployment mounts its policy at one path; the path and the app name the deployment's
//! keys in a shared store). `restart_all` stops every replica and starts
//! fresh ones with the same settings, as a rolling restart ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use graphgate::gateway::{Gateway, Limits};
use graphgate::state::StateConfig;
use graphgate_emulator::Emulator;
use http::Request;
use http_body_util::Full;

use super::{ACTION_PATH, Microsoft, Options, ROTATOR_KEY, Reply, Running, body, temp_dir};

/// One replica: a gateway and its listeners.
pub struct Replica {
    /// Its callers' address.
    pub addr: SocketAddr,
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// Its audit log.
    pub audit_path: PathBuf,
    running: Running,
}

/// N replicas, one emulator.
pub struct Replicas {
    pub emulator: Arc<Emulator>,
    pub replicas: Vec<Replica>,
    opts: Options,
    dir: PathBuf,
    ms: Microsoft,
}

impl Replicas {
    /// `n` replicas enforcing `policy`, with state in `state`, and `limits`.
    pub async fn start(n: usize, policy: &str, state: StateConfig, limits: Limits) -> Replicas {
        let opts = Options {
            state,
            limits,
            ..Options::default()
        };
        Replicas::start_with(n, policy, opts).await
    }

    /// `n` replicas enforcing `policy`, otherwise set up as `opts` says (the emulator too).
    pub async fn start_with(n: usize, policy: &str, opts: Options) -> Replicas {
        let ms = Microsoft::start(opts.emulator.clone()).await;
        let dir = temp_dir("replicas");
        let opts = Options {
            policy: Some(policy.to_owned()),
            policy_file: Some(dir.join("policy.yaml")),
            ..opts
        };
        let mut all = Replicas {
            emulator: Arc::clone(&ms.emulator),
            replicas: Vec::new(),
            opts,
            dir,
            ms,
        };
        for i in 0..n {
            let replica = all.replica(i).await;
            all.replicas.push(replica);
        }
        all
    }

    async fn replica(&self, i: usize) -> Replica {
        // Each replica its own files (its audit log, like one per pod), kept across restarts.
        let dir = self.dir.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let running = Running::start(super::serve_config(&self.ms, &self.opts, &dir)).await;
        Replica {
            addr: running.addr,
            gw: Arc::clone(&running.gw),
            audit_path: dir.join("audit.jsonl"),
            running,
        }
    }

    /// Stops every replica (draining each, closing its audit log) and starts new ones with
    /// the same settings: nothing in any process's memory survives.
    pub async fn restart_all(&mut self) {
        for r in &self.replicas {
            r.running.shut_down().await;
        }
        let n = self.replicas.len();
        self.replicas.clear();
        for i in 0..n {
            let replica = self.replica(i).await;
            self.replicas.push(replica);
        }
    }

    /// Where the emulator (Microsoft) listens.
    pub fn emulator_addr(&self) -> std::net::SocketAddr {
        self.ms.addr
    }

    /// The policy file every replica's reloader follows.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    /// Every audit record of every replica so far (after what each has queued is durable),
    /// `start` records left out.
    pub async fn audit_records(&self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        for r in &self.replicas {
            match r.gw.audit().flush().await {
                Ok(()) | Err(graphgate::audit::WriteError::Stopped) => {}
                Err(e) => panic!("the audit log could not be flushed: {e}"),
            }
            let text = std::fs::read_to_string(&r.audit_path).unwrap_or_default();
            all.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .filter(|r| r["kind"] != "start"),
            );
        }
        all
    }

    /// POSTs the standard allowed call to replica `i`, with `headers` added.
    pub async fn call(&self, i: usize, headers: &[(&str, &str)]) -> Reply {
        self.post(i, &body(), headers).await
    }

    /// POSTs `body` to the standard action on replica `i` as the rotator, with `headers`.
    pub async fn post(&self, i: usize, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::post(format!("http://{}{ACTION_PATH}", self.replicas[i].addr))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {ROTATOR_KEY}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        super::send_to(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
    }

    /// Replica `i`'s `/readyz`: status and detail.
    pub async fn readyz(&self, i: usize) -> (u16, serde_json::Value) {
        let req = Request::get("/readyz").body(()).unwrap();
        let resp = graphgate::admin::handle(&self.replicas[i].gw, &req).await;
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}
