//! Several gateway replicas in this process, as a load balancer sees them: each its own
//! gateway, listener and audit log, all in front of one emulator (one Microsoft) and one
//! state store setting (e.g. one redis-server). `restart_all` stops every replica and starts
//! fresh ones with the same settings, as a rolling restart ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use graphgate::app::{self, Settings};
use graphgate::audit::Audit;
use graphgate::cloud::Cloud;
use graphgate::emulator::{Emulator, EmulatorConfig};
use graphgate::gateway::{Gateway, Limits};
use graphgate::policy::Policy;
use graphgate::server::{self, ServerLimits};
use graphgate::state::StateConfig;
use http::Request;
use http_body_util::Full;
use tokio::sync::watch;

use super::{ACTION_PATH, ROTATOR_KEY, Reply, body, fingerprinter, temp_dir};

/// One replica: a gateway and its listener.
pub struct Replica {
    /// Its callers' address.
    pub addr: SocketAddr,
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// Its audit log.
    pub audit_path: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// N replicas, one emulator.
pub struct Replicas {
    pub emulator: Arc<Emulator>,
    pub replicas: Vec<Replica>,
    settings: Settings,
    policy: String,
    state: StateConfig,
    dir: PathBuf,
    _emulator_stop: watch::Sender<bool>,
}

impl Replicas {
    /// `n` replicas enforcing `policy`, with state in `state`, and `limits`.
    pub async fn start(n: usize, policy: &str, state: StateConfig, limits: Limits) -> Replicas {
        let (emulator_stop, mut stopped) = watch::channel(false);
        let emu = graphgate::demo::start_emulator(EmulatorConfig::default(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
        .unwrap();
        let settings = Settings {
            cloud: Cloud::Global,
            credential: emu.credential.clone(),
            authority_host: None,
            connect_to: super::connect_to(emu.addr, None),
            extra_ca_pem: Some(emu.emulator.ca_pem().to_owned()),
            token_expiry_margin: std::time::Duration::from_secs(300),
            limits,
            audit: Audit::disabled(),
            reconcile: None,
        };
        let mut all = Replicas {
            emulator: emu.emulator,
            replicas: Vec::new(),
            settings,
            policy: policy.to_owned(),
            state,
            dir: temp_dir("replicas"),
            _emulator_stop: emulator_stop,
        };
        for i in 0..n {
            let replica = all.replica(i).await;
            all.replicas.push(replica);
        }
        all
    }

    async fn replica(&self, i: usize) -> Replica {
        // Each replica its own audit log (like one file per pod), continued across restarts.
        let audit_path = self.dir.join(format!("replica-{i}.jsonl"));
        let audit = Audit::open(&audit_path, 1 << 30, fingerprinter()).unwrap();
        let settings = Settings {
            audit,
            ..self.settings.clone()
        };
        let policy = Policy::from_yaml(&self.policy, "replicas-policy").unwrap();
        let gw = app::build_with_state(&settings, policy, &self.state).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(
            listener,
            None,
            Arc::clone(&gw),
            ServerLimits::default(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        Replica {
            addr,
            gw,
            audit_path,
            stop,
            task: Some(task),
        }
    }

    /// Stops every replica (draining each, closing its audit log) and starts new ones with
    /// the same settings: nothing in any process's memory survives.
    pub async fn restart_all(&mut self) {
        for r in &mut self.replicas {
            let _ = r.stop.send(true);
            if let Some(task) = r.task.take() {
                task.await.unwrap().unwrap();
            }
            r.gw.audit().shutdown().await.unwrap();
        }
        let n = self.replicas.len();
        self.replicas.clear();
        for i in 0..n {
            let replica = self.replica(i).await;
            self.replicas.push(replica);
        }
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

impl Drop for Replicas {
    fn drop(&mut self) {
        for r in &self.replicas {
            let _ = r.stop.send(true);
        }
    }
}
