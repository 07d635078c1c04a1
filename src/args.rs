//! The command line's shape (binary only): every subcommand, flag and environment variable,
//! as clap definitions, plus the conversion of the bound flags into the library's limits.
//! `main.rs` acts on what is parsed here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use graphgate::audit::cli::{AuditCommand, ServeAuditArgs};
use graphgate::cloud::Cloud;
use graphgate::gateway::Limits;
use graphgate::server::ServerLimits;

#[derive(Parser)]
#[command(
    name = "graphgate",
    version,
    about = "Authenticating gateway for privileged Microsoft Graph (Intune) actions"
)]
pub struct Cli {
    /// Log format on stdout.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "GRAPHGATE_LOG_FORMAT",
        default_value = "json"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Run the Entra + Graph emulator on its own.
    Emulate(EmulateArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify and query audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a witness that cosigns audit checkpoints (on infrastructure of its own).
    #[command(subcommand)]
    Witness(graphgate::witness::WitnessCommand),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Start the Entra + Graph emulator in-process and use it, with demo credentials.
    #[arg(long)]
    pub emulator: bool,
    /// Address to listen on.
    #[arg(long, env = "GRAPHGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Policy file [default: ./policy.yaml; with --emulator, a built-in demo policy].
    #[arg(long, env = "GRAPHGATE_POLICY")]
    pub policy: Option<PathBuf>,
    /// National cloud: global, us-gov, us-dod or china.
    #[arg(long, env = "GRAPHGATE_CLOUD", default_value = "global")]
    pub cloud: Cloud,
    /// Connection overrides, curl style: host:port=ip:port[,...] (tests and demos).
    #[arg(long, env = "GRAPHGATE_CONNECT_TO")]
    pub connect_to: Option<String>,
    /// Extra PEM CA certificates to trust for outbound TLS.
    #[arg(long, env = "GRAPHGATE_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    /// Never use a token this close to its expiry.
    #[arg(
        long,
        env = "GRAPHGATE_TOKEN_EXPIRY_MARGIN_SECS",
        default_value_t = 300
    )]
    pub token_expiry_margin_secs: u64,
    #[command(flatten)]
    pub bounds: BoundArgs,
    /// Token lifetime the in-process emulator issues (with --emulator).
    #[arg(
        long,
        env = "GRAPHGATE_EMULATOR_TOKEN_LIFETIME_SECS",
        default_value_t = 3599
    )]
    pub emulator_token_lifetime_secs: u64,
    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "GRAPHGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "GRAPHGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates issued by these PEM CAs (mTLS callers; needs --tls-cert).
    #[arg(long, env = "GRAPHGATE_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// PEM file of CRLs from the client CAs; re-read when it changes (needs --client-ca).
    #[arg(long, env = "GRAPHGATE_CLIENT_CRL", requires = "client_ca")]
    pub client_crl: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (callers' API keys then cross the network in clear).
    #[arg(long, env = "GRAPHGATE_ALLOW_INSECURE_LISTENER")]
    pub allow_insecure_listener: bool,
    /// Admin listener (/metrics, /healthz, /readyz); keep it off the callers' network.
    #[arg(long, env = "GRAPHGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// File holding the admin token (mode 0600, at least 16 characters) that /metrics and the
    /// audit console need when the admin listener is not on loopback.
    #[arg(long, env = "GRAPHGATE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub audit: ServeAuditArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Sizes, timeouts and queue bounds.
#[derive(Args)]
pub struct BoundArgs {
    /// Largest request body accepted.
    #[arg(long, env = "GRAPHGATE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Longest time to receive a request's headers; also the deadline for a new connection's
    /// first request, and how long an idle HTTP/1.1 keep-alive connection stays open.
    #[arg(long, env = "GRAPHGATE_HEADER_READ_TIMEOUT_SECS", default_value_t = 20)]
    pub header_read_timeout_secs: u64,
    /// Longest time to receive a request body.
    #[arg(long, env = "GRAPHGATE_BODY_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub body_read_timeout_secs: u64,
    /// Longest inbound TLS handshake.
    #[arg(
        long,
        env = "GRAPHGATE_TLS_HANDSHAKE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub tls_handshake_timeout_secs: u64,
    /// Longest TCP connect to Entra or Graph.
    #[arg(long, env = "GRAPHGATE_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub connect_timeout_secs: u64,
    /// Longest wait for one complete Graph answer.
    #[arg(long, env = "GRAPHGATE_UPSTREAM_TIMEOUT_SECS", default_value_t = 30)]
    pub upstream_timeout_secs: u64,
    /// Longest total wait when retrying throttled Graph calls (429, 503 with Retry-After).
    #[arg(
        long,
        env = "GRAPHGATE_UPSTREAM_RETRY_MAX_WAIT_SECS",
        default_value_t = 10
    )]
    pub upstream_retry_max_wait_secs: u64,
    /// Most requests in flight; more are answered 503 with Retry-After.
    #[arg(long, env = "GRAPHGATE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Most requests in flight for one caller; more are answered 429 with Retry-After.
    #[arg(
        long,
        env = "GRAPHGATE_MAX_IN_FLIGHT_PER_CALLER",
        default_value_t = 256
    )]
    pub max_in_flight_per_caller: usize,
    /// Most devices one bulk executeAction may list (Intune's own bulk limit is 100); more
    /// are answered 400 and nothing is sent.
    #[arg(
        long,
        env = "GRAPHGATE_MAX_BULK_DEVICES",
        default_value_t = 100,
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub max_bulk_devices: u16,
    /// Most client connections; more are refused at once (503 on plain HTTP, closed on TLS).
    #[arg(long, env = "GRAPHGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections from one source IP address; more are refused like --max-connections.
    #[arg(
        long,
        env = "GRAPHGATE_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 1_000
    )]
    pub max_connections_per_source: usize,
    /// Longest time a connection stays open with no request in flight (HTTP/2: then GOAWAY).
    #[arg(long, env = "GRAPHGATE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// How often an HTTP/2 connection is pinged to check the client is there (0: never).
    #[arg(
        long,
        env = "GRAPHGATE_HTTP2_KEEP_ALIVE_INTERVAL_SECS",
        default_value_t = 20
    )]
    pub http2_keep_alive_interval_secs: u64,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(
        long,
        env = "GRAPHGATE_HTTP2_KEEP_ALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http2_keep_alive_timeout_secs: u64,
    /// HTTP/2 control frames (SETTINGS, PING, WINDOW_UPDATE...) one connection may send per
    /// second; past that it is closed with GOAWAY.
    #[arg(
        long,
        env = "GRAPHGATE_HTTP2_MAX_CONTROL_FRAMES_PER_SEC",
        default_value_t = 1_000
    )]
    pub http2_max_control_frames_per_sec: u32,
    /// How long an Idempotency-Key (or client-request-id) is remembered.
    #[arg(long, env = "GRAPHGATE_IDEMPOTENCY_WINDOW_SECS", default_value_t = 600)]
    pub idempotency_window_secs: u64,
    /// Longest time in-flight requests get to finish on shutdown.
    #[arg(long, env = "GRAPHGATE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

impl BoundArgs {
    pub fn limits(&self) -> Limits {
        let secs = Duration::from_secs;
        Limits {
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: secs(self.body_read_timeout_secs),
            upstream_timeout: secs(self.upstream_timeout_secs),
            connect_timeout: secs(self.connect_timeout_secs),
            retry: graphgate::forward::RetryPolicy {
                max_total_wait: secs(self.upstream_retry_max_wait_secs),
                ..Default::default()
            },
            max_in_flight: self.max_in_flight,
            max_in_flight_per_caller: self.max_in_flight_per_caller,
            max_bulk_devices: usize::from(self.max_bulk_devices),
            idempotency_window: secs(self.idempotency_window_secs),
            ..Limits::default()
        }
    }

    pub fn server(&self) -> ServerLimits {
        let secs = Duration::from_secs;
        ServerLimits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            idle_timeout: secs(self.idle_timeout_secs),
            http2_keep_alive_interval: secs(self.http2_keep_alive_interval_secs),
            http2_keep_alive_timeout: secs(self.http2_keep_alive_timeout_secs),
            http2_max_control_frames_per_sec: self.http2_max_control_frames_per_sec,
            header_read_timeout: secs(self.header_read_timeout_secs),
            shutdown_grace: secs(self.shutdown_grace_secs),
            tls_handshake_timeout: secs(self.tls_handshake_timeout_secs),
            ..ServerLimits::default()
        }
    }
}

#[derive(Args)]
pub struct EmulateArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Write the emulator's CA certificate (PEM) here.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Tenant id of the emulated directory.
    #[arg(long, default_value = graphgate::emulator::DEMO_TENANT_ID)]
    pub tenant_id: String,
    /// Client id of the registered app.
    #[arg(long, default_value = graphgate::emulator::DEMO_CLIENT_ID)]
    pub client_id: String,
    /// Client secret of the registered app.
    #[arg(long, env = "GRAPHGATE_EMULATOR_CLIENT_SECRET", default_value = graphgate::emulator::DEMO_CLIENT_SECRET, hide_default_value = true)]
    pub client_secret: String,
    /// Application permissions granted to the app (repeatable).
    #[arg(long = "role", default_value = graphgate::operation::catalog::PRIV_OPS)]
    pub roles: Vec<String>,
    /// Lifetime of issued tokens.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// A managed device in the inventory, ID[:OS] with OS windows (the default), ios, macos
    /// or android (repeatable) [default: the demo devices].
    #[arg(long = "device", value_name = "ID[:OS]")]
    pub devices: Vec<graphgate::emulator::EmulatedDevice>,
    /// How long an accepted action stays pending in the device's deviceActionResults before
    /// it is done.
    #[arg(long, default_value_t = graphgate::emulator::DEFAULT_ACTION_COMPLETION.as_secs())]
    pub action_completion_secs: u64,
    /// Inject a fault, e.g. token-down, graph-429:retry-after=5,times=2 (repeatable; see --help).
    #[arg(long = "fault", value_name = "SPEC", long_help = graphgate::emulator::FAULT_SPEC_HELP, value_parser = parse_fault)]
    pub faults: Vec<graphgate::emulator::FaultSpec>,
}

/// One `--fault` spec (clap reports the error with the flag).
fn parse_fault(spec: &str) -> Result<graphgate::emulator::FaultSpec, String> {
    spec.parse()
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; exits non-zero on any error.
    Check {
        /// The file [default: ./policy.yaml].
        #[arg(env = "GRAPHGATE_POLICY", default_value = "policy.yaml")]
        file: PathBuf,
    },
    /// Print the api_key_sha256 value for an API key read from standard input.
    HashKey,
    /// Say what the policy decides for one request, and why. Exit 0 allow, 1 deny, 2 error.
    Explain {
        /// The caller's name.
        #[arg(long)]
        caller: String,
        /// The request, e.g. 'POST /v1.0/deviceManagement/managedDevices/<id>/updateWindowsDeviceAccount'.
        request: String,
        /// A JSON file with the request body.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The person the request is made for, as X-Graphgate-Initiator would state it.
        #[arg(long)]
        initiator: Option<String>,
        /// Why, as X-Graphgate-Reason would state it.
        #[arg(long)]
        reason: Option<String>,
        /// The policy file.
        #[arg(long, env = "GRAPHGATE_POLICY", default_value = "policy.yaml")]
        policy: PathBuf,
    },
    /// Run YAML fixtures (request + expected decision and rule); exits 1 on any mismatch.
    Test {
        /// The fixture file.
        file: PathBuf,
        /// The policy file [default: the fixture's 'policy:' entry].
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

/// Where idempotency claims, rate limits, pacing and budgets are kept.
#[derive(Args)]
pub struct StateArgs {
    /// 'memory' (this process alone) or a redis:// or rediss:// URL (Redis 6+ or Valkey),
    /// shared by every replica pointed at it.
    #[arg(long = "state", env = "GRAPHGATE_STATE", default_value = "memory")]
    pub state: String,
    /// A file holding the Redis password (instead of putting it in the URL).
    #[arg(long, env = "GRAPHGATE_STATE_PASSWORD_FILE")]
    pub state_password_file: Option<PathBuf>,
    /// PEM CA certificates to trust for a rediss:// server [default: the system's roots].
    #[arg(long, env = "GRAPHGATE_STATE_CA_FILE")]
    pub state_ca_file: Option<PathBuf>,
    /// Longest wait for the state store to answer; then the request is refused with 503.
    #[arg(long, env = "GRAPHGATE_STATE_TIMEOUT_MS", default_value_t = 500)]
    pub state_timeout_ms: u64,
    /// With --state memory: where daily budget counts survive restarts [default: beside the
    /// audit log, <log name>.budgets.json].
    #[arg(long, env = "GRAPHGATE_BUDGET_FILE")]
    pub budget_file: Option<PathBuf>,
}

impl StateArgs {
    /// The state setting; the memory store's budget file defaults to one beside `audit_log`.
    pub fn config(
        &self,
        audit_log: Option<&std::path::Path>,
    ) -> Result<graphgate::state::StateConfig, graphgate::state::StateSetupError> {
        let memory = self.state == "memory";
        let budget_file = self.budget_file.clone().or_else(|| {
            memory
                .then(|| audit_log.map(|p| p.with_extension("budgets.json")))
                .flatten()
        });
        graphgate::state::StateConfig::parse(
            &self.state,
            graphgate::state::config::StateOptions {
                password_file: self.state_password_file.clone(),
                ca_file: self.state_ca_file.clone(),
                timeout: Duration::from_millis(self.state_timeout_ms.max(1)),
                budget_file,
            },
        )
    }
}
