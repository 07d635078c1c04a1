//! Test harness: the gateway started in-process exactly as `graphgate serve` starts it
//! (`graphgate::app::App`: policy file and its reloader, audit log, admin listener) on
//! 127.0.0.1:0, in front of the emulator standing for Microsoft (real hostnames, TLS with
//! certificate checks, connect-to overrides). [`Options`] and [`serve_config`] are the one
//! way a test configures a gateway; [`policy::TestPolicy`] the one way it writes a policy.
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
pub mod policy;
pub mod process;
pub mod redis;
pub mod replicas;
pub mod served;
pub mod tools;

pub use policy::{Caller, Rule, TestPolicy};
pub use tools::{PYTHON_INSTALL, python_tool, require_tool};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphgate::app::{App, AuditTarget, Listeners, PolicySource, ServeConfig, TlsSource};
use graphgate::audit::open::{AuditSettings, HmacKey};
use graphgate::audit::{Audit, AuditConfig, Fingerprinter};
use graphgate::cloud::Cloud;
use graphgate::credential::Credential;
use graphgate::gateway::{Gateway, Limits};
use graphgate::server::ServerLimits;
use graphgate::state::StateConfig;
use graphgate::upstream::ConnectRule;
use graphgate_emulator::{Emulator, EmulatorConfig};
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

/// The standard policy's text ([`TestPolicy::standard`]).
pub fn policy_text() -> String {
    TestPolicy::standard().yaml()
}

/// The standard policy without the tenant write pacing to speak of (10,000 writes a second),
/// for tests that send far more than Intune's 200 writes per 20 s.
pub fn unpaced() -> String {
    TestPolicy::standard()
        .set(
            "pacing",
            serde_json::json!({"tenant_writes": "10000 per 1s"}),
        )
        .yaml()
}

/// How the harness's gateway audits.
pub enum AuditMode {
    /// A fresh log file in the harness's directory, opened as `serve` opens it (the default).
    File,
    /// This audit log (e.g. over a failing sink).
    Custom(Audit),
    /// None at all.
    Disabled,
}

/// The HMAC key the harness's audit uses (fixed, so tests can compute fingerprints).
pub const HMAC_KEY: [u8; 32] = [
    0x47, 0x7c, 0x0c, 0xe4, 0x5e, 0x3d, 0xb0, 0x28, 0x76, 0x89, 0x19, 0xa3, 0x5b, 0xdc, 0x18, 0x0a,
    0x87, 0x9f, 0xd7, 0x61, 0x5c, 0x39, 0x1f, 0xa7, 0xab, 0x84, 0x5e, 0xc9, 0x9f, 0x48, 0x8f, 0x8a,
];

pub fn fingerprinter() -> Fingerprinter {
    Fingerprinter::new(&HMAC_KEY).unwrap()
}

/// The emulator's name for `cloud`.
pub fn ms_cloud(cloud: Cloud) -> graphgate_emulator::Cloud {
    cloud.name().parse().unwrap()
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graphgate-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `contents` to a new file only its owner may read (as key files must be).
pub fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, contents).unwrap();
}

/// What a test changes about the gateway it starts; everything else is as `serve` would
/// have it by default.
pub struct Options {
    pub audit: AuditMode,
    /// Replace the client secret the gateway presents (to make Entra refuse it).
    pub client_secret_override: Option<&'static str>,
    /// The gateway's credential [default: the emulator's demo app, by client secret].
    pub credential: Option<Credential>,
    pub cloud: Cloud,
    pub token_lifetime: Duration,
    pub token_expiry_margin: Duration,
    pub emulator: EmulatorConfig,
    /// Policy text; [`TestPolicy::standard`] when `None`. Written to the gateway's policy
    /// file, which its reloader follows.
    pub policy: Option<String>,
    /// Where that file is [default: `policy.yaml` in the gateway's own directory]. Replicas
    /// of one deployment read one path, as pods mount one: the path names the deployment in
    /// a shared store's keys (see `graphgate::state::default_deployment`).
    pub policy_file: Option<PathBuf>,
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
    /// Where the state lives [default: in the gateway's memory].
    pub state: StateConfig,
    /// Faults the emulator injects from the start (before the gateway's first token).
    pub faults: graphgate_emulator::Faults,
    /// How approval notifications are sent.
    pub notify: graphgate::notify::Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit: AuditMode::File,
            client_secret_override: None,
            credential: None,
            cloud: Cloud::Global,
            token_lifetime: Duration::from_secs(3599),
            token_expiry_margin: Duration::from_secs(300),
            emulator: EmulatorConfig::default(),
            policy: None,
            policy_file: None,
            tls: None,
            limits: Limits::default(),
            server: ServerLimits::default(),
            graph_addr: None,
            reconcile: None,
            state: StateConfig::default(),
            faults: graphgate_emulator::Faults::default(),
            notify: graphgate::notify::Settings::default(),
        }
    }
}

/// Microsoft, as the tests have it: one emulator on 127.0.0.1:0, until dropped.
pub struct Microsoft {
    pub emulator: Arc<Emulator>,
    pub addr: SocketAddr,
    /// The demo app's credential (a client secret).
    pub credential: Credential,
    stop: watch::Sender<bool>,
}

impl Microsoft {
    /// Starts an emulator with `config`.
    pub async fn start(config: EmulatorConfig) -> Microsoft {
        let app = config.apps.first().unwrap();
        let credential = Credential::ClientSecret {
            tenant_id: config.tenant_id.clone(),
            client_id: app.client_id.clone(),
            secret: graphgate::secret::Secret::new(app.client_secret.expose()),
        };
        let emulator = Emulator::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, _) = watch::channel(false);
        let ms = Microsoft {
            emulator,
            addr,
            credential,
            stop,
        };
        tokio::spawn(Arc::clone(&ms.emulator).serve(listener, ms.until_stopped()));
        ms
    }

    /// Resolves when this Microsoft is dropped (for listeners beside it, e.g. IMDS).
    pub fn until_stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Connect-to rules sending every cloud host here, except the Graph hosts when `graph`
    /// is given.
    pub fn connect_to(&self, graph: Option<SocketAddr>) -> Vec<ConnectRule> {
        connect_to(self.addr, graph)
    }
}

impl Drop for Microsoft {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The one settings builder: the configuration of a gateway in front of `ms`, as `opts`
/// describe it, with its files (policy unless `opts` puts it elsewhere, audit log and key)
/// in `dir`.
pub fn serve_config(ms: &Microsoft, opts: &Options, dir: &Path) -> ServeConfig {
    let policy_file = opts
        .policy_file
        .clone()
        .unwrap_or_else(|| dir.join("policy.yaml"));
    let text = opts.policy.clone().unwrap_or_else(policy_text);
    std::fs::write(&policy_file, text).unwrap();
    let credential = match (&opts.credential, opts.client_secret_override) {
        (Some(c), _) => c.clone(),
        (None, Some(wrong)) => match &ms.credential {
            Credential::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => Credential::ClientSecret {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                secret: graphgate::secret::Secret::new(wrong),
            },
            other => other.clone(),
        },
        (None, None) => ms.credential.clone(),
    };
    let audit = match &opts.audit {
        AuditMode::File => {
            let key = dir.join("hmac.key");
            if !key.exists() {
                let hex: String = HMAC_KEY.iter().map(|b| format!("{b:02x}")).collect();
                write_private(&key, hex.as_bytes());
            }
            let config = AuditConfig {
                files: graphgate::audit::store::sink::FileOptions {
                    max_file_bytes: 1 << 30,
                    ..AuditConfig::default().files
                },
                ..AuditConfig::default()
            };
            AuditTarget::Log(Box::new(AuditSettings {
                log: dir.join("audit.jsonl"),
                hmac_key: HmacKey::File(key),
                new_tree: false,
                config,
                checkpoints: None,
            }))
        }
        AuditMode::Custom(audit) => AuditTarget::Opened(audit.clone()),
        AuditMode::Disabled => AuditTarget::Disabled,
    };
    ServeConfig {
        cloud: opts.cloud,
        credential,
        authority_host: None,
        connect_to: ms.connect_to(opts.graph_addr),
        extra_ca_pem: Some(ms.emulator.ca_pem().to_owned()),
        token_expiry_margin: opts.token_expiry_margin,
        limits: opts.limits.clone(),
        server: opts.server.clone(),
        tls: opts.tls.clone().map(TlsSource::Ready),
        policy: PolicySource::File(policy_file),
        audit,
        reconcile: opts.reconcile.clone(),
        state: opts.state.clone(),
        admin_token_file: None,
        admin_tls: None,
        ship: None,
        extra_tls: None,
        notify: opts.notify.clone(),
    }
}

/// A gateway running from a [`ServeConfig`], on 127.0.0.1:0 (callers and admin).
pub struct Running {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), graphgate::app::RunError>>>>,
}

impl Running {
    /// Builds and starts the gateway `config` describes.
    pub async fn start(config: ServeConfig) -> Running {
        let app = App::build(config)
            .await
            .unwrap_or_else(|problems| panic!("the gateway did not start:\n{problems}"));
        let gw = Arc::clone(app.gateway());
        // `run` fetches the first token in the background, as in production; fetched here
        // first, so a test knows how many token requests it made (one, or, when Entra
        // refuses, as many as the breaker lets through).
        let _ = gw.broker().token().await;
        let listeners = Listeners {
            main: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            extra_tls: None,
        };
        let addr = listeners.main.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(app.run(listeners, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Running {
            gw,
            addr,
            admin,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Shuts the gateway down as SIGTERM does (in-flight requests finish, the audit log is
    /// closed cleanly) and returns when it has stopped.
    pub async fn shut_down(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One gateway and the emulator in front of which it runs.
pub struct Harness {
    pub gateway: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`, `/audit`).
    pub admin: SocketAddr,
    /// The emulator's HTTPS address (every cloud host, and the Kubernetes API server).
    pub emulator_addr: SocketAddr,
    pub audit: Audit,
    pub audit_path: Option<PathBuf>,
    /// The gateway's policy file (its reloader follows it).
    pub policy_path: PathBuf,
    pub emulator: Arc<Emulator>,
    pub gw: Arc<Gateway>,
    client: Client<HttpConnector, Full<Bytes>>,
    running: Running,
    ms: Microsoft,
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
    let emulator = EmulatorConfig {
        token_lifetime: opts.token_lifetime,
        ..opts.emulator.clone()
    };
    let ms = Microsoft::start(emulator).await;
    ms.emulator.set_faults(opts.faults.clone());
    let dir = temp_dir("gateway");
    let config = serve_config(&ms, &opts, &dir);
    let audit_path = matches!(opts.audit, AuditMode::File).then(|| dir.join("audit.jsonl"));
    let running = Running::start(config).await;
    Harness {
        gateway: running.addr,
        admin: running.admin,
        emulator_addr: ms.addr,
        audit: running.gw.audit().clone(),
        audit_path,
        policy_path: opts
            .policy_file
            .clone()
            .unwrap_or_else(|| dir.join("policy.yaml")),
        emulator: Arc::clone(&ms.emulator),
        gw: Arc::clone(&running.gw),
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        running,
        ms,
    }
}

/// Connect-to rules sending every cloud host to the emulator at `emulator`, except the
/// Graph hosts when `graph` is given.
fn connect_to(emulator: SocketAddr, graph: Option<SocketAddr>) -> Vec<ConnectRule> {
    let graph_hosts: Vec<String> = Cloud::ALL
        .iter()
        .map(|c| format!("{}:443=", c.endpoints().graph_host))
        .collect();
    let rules: Vec<String> = Emulator::connect_to(emulator)
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

    /// Every audit record of a request so far (after everything queued is durable; after
    /// a shutdown, everything is), as JSON: the log's `start` record, written as the gateway
    /// started, is left out.
    pub async fn audit_records(&self) -> Vec<serde_json::Value> {
        match self.audit.flush().await {
            Ok(()) | Err(graphgate::audit::WriteError::Stopped) => {}
            Err(e) => panic!("the audit log could not be flushed: {e}"),
        }
        let path = self.audit_path.as_ref().expect("a file audit log");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] != "start")
            .collect()
    }

    /// The standard allowed call.
    pub async fn call(&self) -> Reply {
        self.post(ACTION_PATH, Some(ROTATOR_KEY), &body()).await
    }
}

impl Harness {
    /// Shuts the gateway down as SIGTERM does (in-flight requests finish, the audit log is
    /// closed cleanly; the emulator keeps running) and returns when it has stopped.
    pub async fn shut_down(&self) {
        self.running.shut_down().await;
    }

    /// The emulator's clouds' lookups, for listeners beside it (IMDS).
    pub fn microsoft(&self) -> &Microsoft {
        &self.ms
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
