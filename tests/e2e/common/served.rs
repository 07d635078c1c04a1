//! The graphgate binary as an operator runs it (`serve`, not `--emulator`): configured from
//! the environment like a deployment (tenant, app, secret, cloud, `AZURE_AUTHORITY_HOST`,
//! `OTEL_*`), pointed at an emulator running in the test with `GRAPHGATE_CONNECT_TO` and
//! `GRAPHGATE_EXTRA_CA_FILE`. The process has a metrics registry of its own, so its
//! `/metrics` values are exact.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use graphgate_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Emulator, EmulatorConfig,
};

use super::process::{BIN, Proc};

/// How long the binary gets to start, and to stop.
pub const START_STOP: Duration = Duration::from_secs(30);

/// An emulator in this test, reachable by a child process.
pub struct Backend {
    /// The emulator (its records and faults).
    pub emulator: Arc<Emulator>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// A directory for the gateway's files: `ca.pem`, `policy.yaml`, `hmac.key`, the audit log.
    pub dir: PathBuf,
    _ms: super::Microsoft,
}

/// Starts an emulator with `config` and writes its CA certificate for the gateway.
pub async fn backend(config: EmulatorConfig) -> Backend {
    let ms = super::Microsoft::start(config).await;
    let dir = super::temp_dir("served");
    std::fs::write(dir.join("ca.pem"), ms.emulator.ca_pem()).unwrap();
    std::fs::write(dir.join("policy.yaml"), super::policy_text()).unwrap();
    let key: String = (0..2)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    super::write_private(&dir.join("hmac.key"), key.as_bytes());
    Backend {
        emulator: Arc::clone(&ms.emulator),
        addr: ms.addr,
        dir,
        _ms: ms,
    }
}

impl Backend {
    /// `graphgate serve` configured for the demo app in this emulator, on 127.0.0.1:0 (main
    /// and admin), with a clean environment: nothing of the test runner's leaks in. Add
    /// variables with `.env(..)` before spawning.
    pub fn serve_command(&self) -> Command {
        self.replica_command("audit")
    }

    /// [`Backend::serve_command`] for one of several replicas: its audit log is
    /// `<name>.jsonl` in the backend's directory (one file per replica, as one per pod).
    pub fn replica_command(&self, name: &str) -> Command {
        let d = &self.dir;
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("AZURE_TENANT_ID", DEMO_TENANT_ID)
            .env("AZURE_CLIENT_ID", DEMO_CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", DEMO_CLIENT_SECRET)
            .env("GRAPHGATE_CONNECT_TO", Emulator::connect_to(self.addr))
            .env("GRAPHGATE_EXTRA_CA_FILE", d.join("ca.pem"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--policy")
            .arg(d.join("policy.yaml"))
            .arg("--audit-log")
            .arg(d.join(format!("{name}.jsonl")))
            .arg("--audit-hmac-key-file")
            .arg(d.join("hmac.key"));
        cmd
    }

    /// Spawns `cmd` (from [`Backend::serve_command`]) and waits until both listeners are up.
    pub async fn serve(&self, mut cmd: Command) -> Served {
        let mut proc = Proc::spawn(&mut cmd);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        // The JSON log names the main listener, then the admin listener.
        for message in ["graphgate listening", "admin endpoints"] {
            let needle = format!("\"message\":\"{message}");
            let line = proc
                .stdout
                .wait_for_async(START_STOP, move |l| l.contains(&needle))
                .await;
            let Some(line) = line else {
                let out = proc.stdout.text();
                let (status, mut proc) = proc.wait_exit_async(START_STOP).await;
                panic!(
                    "graphgate did not log {message:?} ({status}):\n{out}{}",
                    proc.stderr.read_to_end(Duration::from_secs(1))
                );
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            addrs.push(v["listen"].as_str().unwrap().parse().unwrap());
        }
        Served {
            proc,
            addr: addrs[0],
            admin: addrs[1],
        }
    }
}

/// A running `graphgate serve`.
pub struct Served {
    /// The process (killed when dropped).
    pub proc: Proc,
    /// The callers' listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

impl Served {
    /// The standard allowed call (the rotator's key, the standard body).
    pub async fn call(&self) -> super::Reply {
        self.post(super::ACTION_PATH, super::ROTATOR_KEY, &super::body())
            .await
    }

    /// POSTs the standard body to `path` with API key `key`.
    pub async fn post(&self, path: &str, key: &str, body: &str) -> super::Reply {
        self.post_with(path, key, body, &[]).await
    }

    /// [`Served::post`] with `headers` added.
    pub async fn post_with(
        &self,
        path: &str,
        key: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> super::Reply {
        let mut req = http::Request::post(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap();
        super::send_to(req).await
    }

    /// GETs `path` from the admin listener.
    pub async fn admin(&self, path: &str) -> super::Reply {
        let req = http::Request::get(format!("http://{}{path}", self.admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        super::send_to(req).await
    }

    /// `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        let r = self.admin("/metrics").await;
        assert_eq!(r.status, 200);
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the status and everything the
    /// process wrote (stdout, then stderr).
    pub async fn terminate(self) -> (ExitStatus, String) {
        self.proc.signal("TERM");
        let (status, mut proc) = self.proc.wait_exit_async(START_STOP).await;
        let out = proc.stdout.read_to_end(Duration::from_secs(5));
        let err = proc.stderr.read_to_end(Duration::from_secs(5));
        (status, format!("{out}{err}"))
    }
}

/// The records of the audit log at `path`, parsed.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
