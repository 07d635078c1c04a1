//! Test harness: the emulator and a gateway in-process on 127.0.0.1:0, wired exactly as in
//! production (real hostnames, TLS with certificate checks, connect-to overrides).
//! Beside it: `served` (the binary as an operator runs it), `process` (child processes
//! with bounded waits), `tools` (external tools: skip, or fail under CI), `metrics`
//! (metric values), `clock` (a paused clock over real sockets), `emu` and `pki`, `redis` (a
//! real redis-server per test) and `replicas` (several gateways sharing one state store).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod clock;
pub mod emu;
pub mod h2raw;
pub mod jwt;
pub mod metrics;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod redis;
pub mod replicas;
pub mod served;
pub mod tools;

pub use tools::{PYTHON_INSTALL, python_tool, require_tool};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphgate::app::{self, Settings};
use graphgate::audit::{Audit, Fingerprinter};
use graphgate::cloud::Cloud;
use graphgate::emulator::{Emulator, EmulatorConfig};
use graphgate::gateway::Limits;
use graphgate::identity::api_key_sha256;
use graphgate::policy::Policy;
use graphgate::server::{self, ServerLimits};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

pub const ROTATOR_KEY: &str = "rotator-key-7d1c0e5a";
pub const OTHER_KEY: &str = "other-key-4b9f2a11";
pub const DEVICE: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
pub const ACTION_PATH: &str = "/v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount";
pub const PASSWORD: &str = "Sentinel-Passw0rd-9c41";

/// A valid body, as the Python Graph SDK sends it, carrying [`PASSWORD`].
pub fn body() -> String {
    format!(
        r##"{{"updateWindowsDeviceAccountActionParameter":{{"calendarSyncEnabled":true,"deviceAccount":{{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"{PASSWORD}","userPrincipalName":"room1@contoso.com"}},"deviceAccountEmail":"room1@contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true,"sessionInitiationProtocalAddress":"sip:room1@contoso.com"}}}}"##
    )
}

pub fn policy_text() -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n  - name: other-service\n    api_key_sha256: \"{}\"\nrules:\n  - name: rotator-updates-room-accounts\n    callers: [rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
        api_key_sha256(ROTATOR_KEY),
        api_key_sha256(OTHER_KEY)
    )
}

/// How the harness's gateway audits.
pub enum AuditMode {
    /// A fresh log file in a temporary directory (the default).
    File,
    /// This audit log (e.g. over a failing sink).
    Custom(Audit),
    /// None at all.
    Disabled,
}

/// The HMAC key the harness's audit uses.
pub const HMAC_KEY: [u8; 32] = [0x42; 32];

pub fn fingerprinter() -> Fingerprinter {
    Fingerprinter::new(&HMAC_KEY).unwrap()
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graphgate-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Options {
    pub audit: AuditMode,
    /// Replace the client secret the gateway presents (to make Entra refuse it).
    pub client_secret_override: Option<&'static str>,
    pub cloud: Cloud,
    pub token_lifetime: Duration,
    pub token_expiry_margin: Duration,
    pub emulator: EmulatorConfig,
    /// Policy text; the default policy when `None`.
    pub policy: Option<String>,
    /// Serve TLS (and mTLS) with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Request bounds.
    pub limits: Limits,
    /// Connection bounds.
    pub server: ServerLimits,
    /// Send the Graph hosts' connections here instead of to the emulator (e.g. a closed
    /// port: Graph unreachable while Entra answers).
    pub graph_addr: Option<SocketAddr>,
    /// Follow up accepted device actions (outcome reconciliation).
    pub reconcile: Option<graphgate::audit::reconcile::ReconcileConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit: AuditMode::File,
            client_secret_override: None,
            cloud: Cloud::Global,
            token_lifetime: Duration::from_secs(3599),
            token_expiry_margin: Duration::from_secs(300),
            emulator: EmulatorConfig::default(),
            policy: None,
            tls: None,
            limits: Limits::default(),
            server: ServerLimits::default(),
            graph_addr: None,
            reconcile: None,
        }
    }
}

pub struct Harness {
    pub gateway: SocketAddr,
    /// The emulator's HTTPS address (every cloud host, and the Kubernetes API server).
    pub emulator_addr: SocketAddr,
    pub audit: Audit,
    pub audit_path: Option<PathBuf>,
    server_task: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    pub emulator: Arc<Emulator>,
    pub gw: Arc<graphgate::gateway::Gateway>,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: watch::Sender<bool>,
    emulator_stop: watch::Sender<bool>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts a Graph-shaped error with this status and code.
    pub fn assert_graph_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        let inner = &v["error"]["innerError"];
        assert!(
            inner["request-id"].is_string()
                && inner["client-request-id"].is_string()
                && inner["date"].is_string(),
            "{v}"
        );
        assert_eq!(self.headers["content-type"], "application/json");
    }
}

pub async fn start() -> Harness {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> Harness {
    let (stop, stop_rx) = watch::channel(false);
    // The emulator outlives a gateway shutdown (it stands for Microsoft, which does not stop).
    let (emulator_stop, emulator_stop_rx) = watch::channel(false);
    let until_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let emulator_config = EmulatorConfig {
        token_lifetime: opts.token_lifetime,
        ..opts.emulator
    };
    let emu = graphgate::demo::start_emulator(emulator_config, until_stop(emulator_stop_rx))
        .await
        .unwrap();
    let (audit, audit_path) = match opts.audit {
        AuditMode::File => {
            let path = temp_dir("audit").join("audit.jsonl");
            let audit = Audit::open(&path, 1 << 30, fingerprinter()).unwrap();
            (audit, Some(path))
        }
        AuditMode::Custom(audit) => (audit, None),
        AuditMode::Disabled => (Audit::disabled(), None),
    };
    let credential = match (opts.client_secret_override, &emu.credential) {
        (
            Some(wrong),
            graphgate::credential::Credential::ClientSecret {
                tenant_id,
                client_id,
                ..
            },
        ) => graphgate::credential::Credential::ClientSecret {
            tenant_id: tenant_id.clone(),
            client_id: client_id.clone(),
            secret: graphgate::secret::Secret::new(wrong),
        },
        (_, c) => c.clone(),
    };
    let settings = Settings {
        cloud: opts.cloud,
        credential,
        authority_host: None,
        connect_to: connect_to(emu.addr, opts.graph_addr),
        extra_ca_pem: Some(emu.emulator.ca_pem().to_owned()),
        token_expiry_margin: opts.token_expiry_margin,
        limits: opts.limits.clone(),
        audit: audit.clone(),
        reconcile: opts.reconcile.clone(),
    };
    let policy = Policy::from_yaml(
        opts.policy.as_deref().unwrap_or(&policy_text()),
        "test-policy",
    )
    .unwrap();
    let gw = app::build(&settings, policy).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let server_task = tokio::spawn(server::serve(
        listener,
        opts.tls.clone(),
        Arc::clone(&gw),
        opts.server.clone(),
        until_stop(stop_rx),
    ));
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    Harness {
        gateway,
        emulator_addr: emu.addr,
        audit,
        audit_path,
        server_task: std::sync::Mutex::new(Some(server_task)),
        emulator: emu.emulator,
        gw,
        client,
        stop,
        emulator_stop,
    }
}

/// Connect-to rules sending every cloud host to the emulator at `emulator`, except the
/// Graph hosts when `graph` is given.
fn connect_to(
    emulator: SocketAddr,
    graph: Option<SocketAddr>,
) -> Vec<graphgate::upstream::ConnectRule> {
    let graph_hosts: Vec<String> = Cloud::ALL
        .iter()
        .map(|c| format!("{}:443=", c.endpoints().graph_host))
        .collect();
    let rules: Vec<String> = graphgate::emulator::Emulator::connect_to(emulator)
        .split(',')
        .map(|rule| match graph {
            Some(to) if graph_hosts.iter().any(|g| rule.starts_with(g.as_str())) => {
                format!("{}{to}", &rule[..=rule.find('=').unwrap()])
            }
            _ => rule.to_owned(),
        })
        .collect();
    graphgate::upstream::parse_connect_to(&rules.join(",")).unwrap()
}

/// Longest a test waits for one answer from a gateway: every wait in these tests is bounded.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `req` on a connection of its own and collects the answer (at most [`ANSWER_TIMEOUT`]).
pub async fn send_to(req: Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    collect(&client, req).await
}

async fn collect(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Reply {
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async {
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_TIMEOUT:?}"))
}

/// Waits until `check` gives a value, looking again every 10 ms, at most `timeout`; panics
/// naming `what` if it never does. For conditions nothing signals (a record reaching a
/// file); where something does signal (a watch channel, the emulator's
/// [`Emulator::graph_received`]), wait on that instead.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most 30 s) until the emulator has received `n` Graph requests in all: each is
/// then in Graph's hands (a `slow` fault holds its answer).
pub async fn graph_received(emulator: &Emulator, n: u64) {
    let mut rx = emulator.graph_received();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|got| *got >= n))
        .await
        .unwrap_or_else(|_| panic!("the emulator did not receive {n} Graph request(s) within 30 s"))
        .unwrap();
}

impl Harness {
    /// Sends `req` (at most [`ANSWER_TIMEOUT`] for the answer).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        collect(&self.client, req).await
    }

    pub fn request(&self, path: &str) -> http::request::Builder {
        Request::post(format!("http://{}{}", self.gateway, path))
    }

    /// POSTs `body` as JSON to `path` with API key `key`.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut req = self
            .request(path)
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        self.send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
    }

    /// Every audit record so far (after everything queued is durable), as JSON.
    pub async fn audit_records(&self) -> Vec<serde_json::Value> {
        self.audit.flush().await.unwrap();
        let path = self.audit_path.as_ref().expect("a file audit log");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The standard allowed call.
    pub async fn call(&self) -> Reply {
        self.post(ACTION_PATH, Some(ROTATOR_KEY), &body()).await
    }
}

impl Harness {
    /// Starts a graceful shutdown of the gateway's listener (the emulator keeps running) and
    /// returns when the server has drained.
    pub async fn shut_down(&self) {
        let _ = self.stop.send(true);
        let task = self.server_task.lock().unwrap().take();
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.emulator_stop.send(true);
    }
}

/// Raises this process's soft limit on open files to at least `want` (up to the hard limit),
/// for tests that hold thousands of sockets; fails naming both limits if it cannot.
pub fn raise_fd_limit(want: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= want {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= want,
        "this test holds {want} sockets, but the hard RLIMIT_NOFILE is {hard}: raise it (ulimit -Hn)"
    );
    let raised = rustix::process::Rlimit {
        current: Some(want),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).unwrap();
}

/// A TCP connection to `to` from the loopback address `from` (e.g. 127.0.0.2), so tests can
/// stand for several client hosts.
pub async fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the peer closes (EOF or reset) or `within` passes; what was read, and whether
/// the close came.
pub async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    (buf, closed)
}

/// Sends one request over TLS, optionally with a client certificate.
pub async fn tls_call(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    key: Option<&str>,
) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::post(ACTION_PATH)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body()))).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The value of one sample in the gateway's metrics (`name{labels}` exactly), 0 if absent.
pub fn metric(sample: &str) -> f64 {
    graphgate::metrics::encode()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
