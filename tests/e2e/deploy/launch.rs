//! Runs one shipped configuration: the real binary with exactly the arguments and environment
//! a manifest gives it, against an in-process emulator standing in for Entra and Graph. The
//! only changes: absolute paths live under a temporary root, listen ports become 0,
//! `GRAPHGATE_CONNECT_TO` / `GRAPHGATE_EXTRA_CA_FILE` point at the emulator, and (where the
//! configuration shares its state in Redis over TLS) `GRAPHGATE_STATE_CA_FILE` trusts the
//! test's redis-server. It must answer its probes with 200, say in `/readyz` whether its
//! state is shared exactly as configured, and answer one allowed request, over mTLS (or, for
//! a [`TokenCaller`], over TLS with the caller's token), with 204; then stop on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use graphgate::audit::Fingerprinter;
use graphgate::cloud::Cloud;
use graphgate::policy::{MtlsIdentity, Policy};
use graphgate::secret::Secret;
use graphgate_emulator::{AppRegistration, Emulator, EmulatorConfig};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::common::pki::{self, Ca};
use crate::common::{DEVICE, temp_dir};

/// The binary under test; manifests call it `/usr/local/bin/graphgate`.
pub const BIN: &str = env!("CARGO_BIN_EXE_graphgate");
/// Longest wait for any one step (start, readiness, the request, the exit).
const DEADLINE: Duration = Duration::from_secs(60);

/// The request every shipped configuration must allow (the policy decides which caller).
pub const SMOKE_REQUEST: &str = "POST /v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount";

/// A body that the shipped policies' conditions (room accounts, Exchange Online) admit.
pub fn smoke_body() -> serde_json::Value {
    serde_json::json!({"updateWindowsDeviceAccountActionParameter": {
        "@odata.type": "#microsoft.graph.updateWindowsDeviceAccountActionParameter",
        "deviceAccount": {
            "@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount",
            "password": "Smoke-Passw0rd-5e1b",
            "userPrincipalName": "room1@rooms.contoso.com"
        },
        "passwordRotationEnabled": true,
        "calendarSyncEnabled": true,
        "deviceAccountEmail": "room1@rooms.contoso.com",
        "exchangeServer": "outlook.office365.com",
        "sessionInitiationProtocalAddress": "sip:room1@rooms.contoso.com"
    }})
}

/// A checkpoint signing key pair, made once by `graphgate audit keygen` as docs/deploy.md
/// says, for every configuration that signs its log's checkpoints.
pub struct SigningKey {
    /// The private key file's bytes (what the Secret holds).
    pub private: Vec<u8>,
    /// The public key keygen printed (what `audit verify --public-key` takes).
    pub public: String,
}

/// The one signing key pair of this test run.
pub fn audit_signing_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let dir = temp_dir("deploy-keygen");
        let out = dir.join("signing.key");
        let keygen = std::process::Command::new(BIN)
            .args(["audit", "keygen", "--name", "graphgate.test/audit", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(keygen.status.success(), "{keygen:?}");
        let key = SigningKey {
            private: std::fs::read(&out).unwrap(),
            public: String::from_utf8(keygen.stdout).unwrap().trim().to_owned(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        key
    })
}

/// The certificate authorities the test plays operator with.
pub struct Pki {
    /// Issues the gateway's server certificate (what callers trust).
    pub server_ca: Ca,
    /// Issues callers' client certificates (the gateway's mTLS client CA).
    pub client_ca: Ca,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            server_ca: Ca::new("deploy smoke server CA"),
            client_ca: Ca::new("deploy smoke client CA"),
        }
    }
}

/// A temporary directory standing for `/`: the manifest's `/x/y` is `root/x/y`.
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(tag: &str) -> Root {
        Root {
            dir: temp_dir(&format!("deploy-{tag}")),
        }
    }

    /// Where the absolute path `abs` lives here.
    pub fn path(&self, abs: &str) -> PathBuf {
        assert!(abs.starts_with('/'), "not an absolute path: {abs}");
        self.dir.join(abs.trim_start_matches('/'))
    }

    /// Writes `bytes` to the absolute path `abs` with `mode`, creating directories.
    pub fn write(&self, abs: &str, bytes: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(abs);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The one rewrite allowed on a configured value: an absolute path moves under the
    /// root, and a socket address keeps its IP but gets port 0.
    pub fn map(&self, value: &str) -> String {
        if value.starts_with('/') {
            return self.path(value).display().to_string();
        }
        match value.parse::<SocketAddr>() {
            Ok(addr) => SocketAddr::new(addr.ip(), 0).to_string(),
            Err(_) => value.to_owned(),
        }
    }
}

/// The app registration a configuration names, as the emulator should hold it.
pub struct Tenant {
    pub tenant_id: String,
    pub client_id: String,
}

impl Tenant {
    /// An emulator config with this tenant and app (granted the privileged permission).
    pub fn emulator_config(&self) -> EmulatorConfig {
        EmulatorConfig {
            tenant_id: self.tenant_id.clone(),
            apps: vec![AppRegistration {
                client_id: self.client_id.clone(),
                client_secret: graphgate_emulator::Secret::new(uuid::Uuid::new_v4().to_string()),
                roles: vec![graphgate::operation::catalog::PRIV_OPS.to_owned()],
            }],
            ..EmulatorConfig::default()
        }
    }
}

/// A shipped configuration, with paths and ports already mapped.
pub struct Shipped {
    /// What it is, for messages ("overlay us-gov", "us-gov.env").
    pub name: String,
    /// argv; argv[0] is [`BIN`].
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited from the test).
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Admin paths that must answer 200, the readiness probe first.
    pub probes: Vec<String>,
    /// The name callers use (SNI, and a name in the server certificate).
    pub server_name: String,
    /// The policy file it loads.
    pub policy: PathBuf,
    /// The audit log it writes.
    pub audit_log: PathBuf,
    /// The caller that makes the allowed request with a token instead of a certificate.
    pub token_caller: Option<TokenCaller>,
}

/// A caller proving who it is with a token from an issuer the emulator plays.
pub struct TokenCaller {
    /// Its name in the policy.
    pub name: String,
    /// Run once the emulator exists, before the gateway starts: provides what the operator
    /// would from the issuer (its keys file, say) and returns the caller's token.
    pub prepare: Box<dyn FnOnce(&Emulator) -> String + Send + Sync>,
}

impl Shipped {
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The national cloud the configuration pins.
    pub fn cloud(&self) -> Cloud {
        let name = self.var("GRAPHGATE_CLOUD").unwrap_or("global");
        name.parse()
            .unwrap_or_else(|e| panic!("{}: GRAPHGATE_CLOUD {name}: {e}", self.name))
    }
}

/// Proves every configuration at once (each with its own emulator, root and ports), then
/// removes their temporary roots; a failure names the configuration.
pub async fn prove_all(runs: Vec<(Shipped, EmulatorConfig, Root)>, pki: Arc<Pki>) {
    let mut set = tokio::task::JoinSet::new();
    for (shipped, config, root) in runs {
        let pki = Arc::clone(&pki);
        set.spawn(async move {
            prove(shipped, config, &pki).await;
            let _ = std::fs::remove_dir_all(&root.dir);
        });
    }
    while let Some(done) = set.join_next().await {
        if let Err(e) = done {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Runs `shipped` against an emulator made from `config`, and checks every promise.
pub async fn prove(mut shipped: Shipped, config: EmulatorConfig, pki: &Pki) {
    let tenant = config.tenant_id.clone();
    let client_id = config.apps[0].client_id.clone();
    let (emulator, stop_emulator) = start_emulator(&mut shipped, config).await;
    let token = (shipped.token_caller.take()).map(|c| (c.name, (c.prepare)(&emulator)));
    let mut running = Running::spawn(&shipped);
    let (listen, (admin, https)) = running.addresses(&shipped.name).await;
    // An admin listener on TLS (the pod's certificate): probed and scraped over TLS, the
    // certificate checked as Prometheus would.
    let admin = Admin {
        addr: admin,
        tls: https.then(|| {
            (
                pki::client_config(&pki.server_ca, None),
                shipped.server_name.clone(),
            )
        }),
    };
    for probe in &shipped.probes {
        running.wait_for_200(&admin, probe, &shipped.name).await;
    }
    assert_state_as_configured(&shipped, &admin).await;
    let (caller, status, body) = match token {
        Some((name, token)) => {
            let bearer = format!("Bearer {token}");
            let (status, body) = exchange(&shipped, listen, pki, None, Some(&bearer)).await;
            (name, status, body)
        }
        None => allowed_request(&shipped, listen, pki).await,
    };
    assert_eq!(
        status,
        204,
        "{}: the allowed request got {status}: {body:?}\n{}",
        shipped.name,
        running.output()
    );
    let metrics = admin_get(&shipped, &admin, "/metrics").await;
    running.stop(&shipped.name).await;
    let _ = stop_emulator.send(());

    // What reached "Graph": exactly the one request, in the configured cloud, with a token
    // for the configured tenant and app.
    let sent = emulator.graph_requests();
    assert_eq!(sent.len(), 1, "{}: {sent:?}", shipped.name);
    let graph_host = shipped.cloud().endpoints().graph_host;
    assert_eq!(sent[0].host, graph_host, "{}", shipped.name);
    assert!(sent[0].path.contains(DEVICE), "{}", shipped.name);
    let claims = sent[0].token_claims.as_ref().unwrap();
    assert_eq!(claims["tid"], tenant.as_str(), "{}", shipped.name);
    assert_eq!(claims["appid"], client_id.as_str(), "{}", shipped.name);
    assert_allowed_is_counted(&metrics, &shipped.name);
    assert_audited(&shipped, &caller);
    assert_checkpointed(&shipped);
}

/// `GET path` on the admin listener as Prometheus or an operator would: with the admin
/// token when one is configured, after checking that without it the answer is 401 when
/// the listener is off loopback.
async fn admin_get(shipped: &Shipped, admin: &Admin, path: &str) -> String {
    let name = &shipped.name;
    let Some(file) = shipped.var("GRAPHGATE_ADMIN_TOKEN_FILE") else {
        return get(admin, path, None).await.unwrap().1;
    };
    if !admin.addr.ip().is_loopback() {
        let (status, _) = get(admin, path, None).await.unwrap();
        assert_eq!(status, 401, "{name}: {path} without the admin token");
    }
    let token = std::fs::read_to_string(file).unwrap();
    let (status, body) = get(admin, path, Some(token.trim())).await.unwrap();
    assert_eq!(status, 200, "{name}: {path} with the admin token: {body}");
    body
}

/// With a signing key, the log has signed checkpoints (the last written at shutdown) that
/// the key pair's public key verifies.
fn assert_checkpointed(shipped: &Shipped) {
    if shipped.var("GRAPHGATE_AUDIT_SIGNING_KEY_FILE").is_none() {
        return;
    }
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--public-key"])
        .arg(&audit_signing_key().public)
        .arg(&shipped.audit_log)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {text}", shipped.name);
    assert!(
        text.contains("signed by graphgate.test/audit+"),
        "{}: {text}",
        shipped.name
    );
}

/// Serves an emulator made from `config` on 127.0.0.1:0 and points `shipped` at it: the two
/// variables that are the only additions to a shipped configuration.
async fn start_emulator(
    shipped: &mut Shipped,
    config: EmulatorConfig,
) -> (Arc<Emulator>, oneshot::Sender<()>) {
    let emulator = Emulator::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&emulator).serve(listener, async move {
        let _ = stopped.await;
    }));
    let ca_file = shipped.cwd.join("emulator-ca.pem");
    std::fs::write(&ca_file, emulator.ca_pem()).unwrap();
    let connect_to = Emulator::connect_to(addr);
    shipped
        .env
        .push(("GRAPHGATE_CONNECT_TO".into(), connect_to));
    let ca = ca_file.display().to_string();
    shipped.env.push(("GRAPHGATE_EXTRA_CA_FILE".into(), ca));
    (emulator, stop)
}

/// The allowed request, over TLS, as the first mTLS caller the policy lets make it: that
/// caller's name and the answer.
async fn allowed_request(shipped: &Shipped, listen: SocketAddr, pki: &Pki) -> (String, u16, Bytes) {
    let policy = Policy::load(&shipped.policy).unwrap();
    let body = serde_json::to_vec(&smoke_body()).unwrap();
    let caller = policy
        .callers
        .iter()
        .filter(|c| c.mtls.is_some())
        .find(|c| {
            graphgate::gateway::explain::evaluate(
                &policy,
                &c.name,
                SMOKE_REQUEST,
                Some(&body),
                Default::default(),
            )
            .is_ok_and(|(eval, _)| eval.allowed())
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: the shipped policy lets no mTLS caller make the smoke request",
                shipped.name
            )
        });
    let leaf = match caller.mtls.as_ref().unwrap() {
        MtlsIdentity::UriSan(uri) => pki.client_ca.client(Some(uri), "deploy-smoke"),
        MtlsIdentity::SubjectCn(cn) => pki.client_ca.client(None, cn),
    };
    let (status, body) = exchange(shipped, listen, pki, Some(&leaf), None).await;
    (caller.name.clone(), status, body)
}

/// The smoke request over TLS, with `leaf` as the client certificate and `authorization`
/// as that header, if given: its status and body.
async fn exchange(
    shipped: &Shipped,
    listen: SocketAddr,
    pki: &Pki,
    leaf: Option<&pki::Leaf>,
    authorization: Option<&str>,
) -> (u16, Bytes) {
    let body = serde_json::to_vec(&smoke_body()).unwrap();
    let tls = pki::client_config(&pki.server_ca, leaf);
    let tcp = TcpStream::connect(("127.0.0.1", listen.port()))
        .await
        .unwrap();
    let name = ServerName::try_from(shipped.server_name.clone()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("{}: TLS handshake: {e}", shipped.name));
    let path = SMOKE_REQUEST.trim_start_matches("POST ");
    let mut req = Request::post(path)
        .header("host", &shipped.server_name)
        .header("content-type", "application/json");
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let response = tokio::time::timeout(DEADLINE, send(TokioIo::new(stream), req))
        .await
        .unwrap_or_else(|_| panic!("{}: no answer within {DEADLINE:?}", shipped.name));
    response.unwrap()
}

/// One HTTP/1.1 exchange on `io`.
async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// The admin listener: its address, and the client TLS and server name when it serves TLS.
struct Admin {
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

/// `GET path` on the admin listener (with a bearer token if given); `None` if it cannot be
/// reached (yet).
async fn get(admin: &Admin, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let tcp = TcpStream::connect(("127.0.0.1", admin.addr.port()))
        .await
        .ok()?;
    let mut req = Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let (status, body) = match &admin.tls {
        None => send(TokioIo::new(tcp), req).await.ok()?,
        Some((config, name)) => {
            let name = ServerName::try_from(name.clone()).ok()?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .ok()?;
            send(TokioIo::new(tls), req).await.ok()?
        }
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Ready, with the state store the configuration names: shared (Redis, answering) or this
/// process's memory.
async fn assert_state_as_configured(shipped: &Shipped, admin: &Admin) {
    let shared = shipped
        .var("GRAPHGATE_STATE")
        .is_some_and(|s| s != "memory");
    let (status, body) = get(admin, "/readyz", None).await.unwrap();
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let state = &detail["checks"]["state"];
    assert_eq!(status, 200, "{}: {detail}", shipped.name);
    assert_eq!(state["ok"], true, "{}: {detail}", shipped.name);
    assert_eq!(state["shared"], shared, "{}: {detail}", shipped.name);
}

fn assert_allowed_is_counted(metrics: &str, name: &str) {
    let allowed = metrics.lines().find(|l| {
        l.starts_with("graphgate_requests_total{")
            && l.contains("decision=\"allowed\"")
            && l.contains("status_class=\"2xx\"")
    });
    let value = allowed.and_then(|l| l.rsplit(' ').next());
    assert_eq!(value, Some("1"), "{name}: {metrics}");
}

/// The audit log holds the allowed request's outcome, with the password fingerprinted under
/// the configured HMAC key, and its hash chain verifies.
fn assert_audited(shipped: &Shipped, caller: &str) {
    let name = &shipped.name;
    let text = std::fs::read_to_string(&shipped.audit_log)
        .unwrap_or_else(|e| panic!("{name}: {}: {e}", shipped.audit_log.display()));
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcome = records
        .iter()
        .find(|r| r["kind"] == "outcome")
        .unwrap_or_else(|| panic!("{name}: no outcome record: {text}"));
    assert_eq!(outcome["decision"], "allowed", "{name}: {outcome}");
    assert_eq!(outcome["caller"], caller, "{name}: {outcome}");
    assert_eq!(
        outcome["cloud"],
        shipped.cloud().name(),
        "{name}: {outcome}"
    );
    let key = PathBuf::from(shipped.var("GRAPHGATE_AUDIT_HMAC_KEY_FILE").unwrap());
    let password =
        smoke_body()["updateWindowsDeviceAccountActionParameter"]["deviceAccount"]["password"]
            .as_str()
            .unwrap()
            .to_owned();
    let expected = Fingerprinter::from_file(&key)
        .unwrap()
        .fingerprint(&Secret::new(password));
    let recorded = &outcome["params"]["deviceAccount.password"]["hmac_sha256"];
    assert_eq!(
        recorded, &expected,
        "{name}: fingerprinted with the key file"
    );
    let report = graphgate::audit::read::verify::verify(std::slice::from_ref(&shipped.audit_log));
    let report = report.unwrap();
    assert!(report.problem.is_none(), "{name}: {text}");
}

/// The child process and everything it printed.
struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    printed: watch::Receiver<usize>,
}

impl Running {
    fn spawn(shipped: &Shipped) -> Running {
        let mut child = tokio::process::Command::new(&shipped.argv[0])
            .args(&shipped.argv[1..])
            .env_clear()
            .envs(shipped.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&shipped.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {}: {e}", shipped.name, shipped.argv[0]));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, printed) = watch::channel(0);
        let tx = Arc::new(tx);
        collect(child.stdout.take().unwrap(), &lines, &tx);
        collect(child.stderr.take().unwrap(), &lines, &tx);
        Running {
            child,
            lines,
            printed,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The callers' and the admin listener's addresses (and whether the admin listener
    /// serves TLS), from the start-up lines.
    async fn addresses(&mut self, name: &str) -> (SocketAddr, (SocketAddr, bool)) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found = {
                let lines = self.lines.lock().unwrap();
                let listen = lines.iter().find_map(|l| listen_addr(l));
                let admin = lines.iter().find_map(|l| admin_addr(l));
                listen.zip(admin)
            };
            if let Some(addrs) = found {
                return addrs;
            }
            tokio::select! {
                changed = self.printed.changed() => if changed.is_err() {
                    let status = self.child.wait().await;
                    panic!("{name}: exited before listening ({status:?}):\n{}", self.output());
                },
                () = tokio::time::sleep_until(deadline) => {
                    panic!("{name}: not listening after {DEADLINE:?}:\n{}", self.output());
                }
            }
        }
    }

    /// Polls `path` on the admin listener, like the kubelet's probe, until it answers 200.
    async fn wait_for_200(&self, admin: &Admin, path: &str, name: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            tick.tick().await;
            last = get(admin, path, None).await;
            if last.as_ref().is_some_and(|(status, _)| *status == 200) {
                return;
            }
        }
        panic!(
            "{name}: {path} never answered 200 (last: {last:?}):\n{}",
            self.output()
        );
    }

    /// SIGTERM, then a clean exit (the audit log flushed) within the deadline.
    async fn stop(mut self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name}: still running {DEADLINE:?} after SIGTERM"))
            .unwrap();
        assert!(
            status.success(),
            "{name}: exit {status}:\n{}",
            self.output()
        );
    }
}

/// Appends each line `stream` prints to `lines`, announcing it on `tx`.
fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    lines: &Arc<Mutex<Vec<String>>>,
    tx: &Arc<watch::Sender<usize>>,
) {
    let (lines, tx) = (Arc::clone(lines), Arc::clone(tx));
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().unwrap().push(line);
            tx.send_modify(|n| *n += 1);
        }
    });
}

/// The address in the "graphgate listening" log line (JSON or text format).
fn listen_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("graphgate listening") {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["listen"].as_str()?.parse().ok();
    }
    let rest = &line[line.find("listen=")? + "listen=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The address in the "admin endpoints on http[s]://ADDR" line, and whether it is https.
fn admin_addr(line: &str) -> Option<(SocketAddr, bool)> {
    let rest = &line[line.find("admin endpoints on ")? + 19..];
    let (https, rest) = match rest.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, rest.strip_prefix("http://")?),
    };
    Some((rest.split_whitespace().next()?.parse().ok()?, https))
}
