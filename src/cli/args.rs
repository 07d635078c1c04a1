//! The command line's shape: every subcommand, flag and environment variable, as clap
//! definitions (the audit flags of `serve` are in `serve_audit`, `emulate`'s in `emulate`),
//! plus the conversion of the bound flags into the library's limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::audit::AuditCommand;
use super::serve_audit::ServeAuditArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use graphgate::cloud::Cloud;
use graphgate::gateway::Limits;
use graphgate::server::ServerLimits;

#[derive(Parser)]
#[command(
    name = "graphgate",
    // The commit comes from build.rs (git, or GRAPHGATE_BUILD_COMMIT for builds without .git).
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GRAPHGATE_BUILD_COMMIT"), ")"),
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
    #[cfg(feature = "emulator")]
    Emulate(super::emulate::EmulateArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify and query audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a witness that cosigns audit checkpoints (on infrastructure of its own).
    #[command(subcommand)]
    Witness(super::witness::WitnessCommand),
    /// List, show, approve, reject or cancel four-eyes approvals on a running gateway.
    Approvals(super::approvals::ApprovalsArgs),
    /// The operations graphgate gates: paths, parameters, tier, permissions (offline).
    Operations(super::operations::OperationsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page, graphgate(1) (or write every page with --out-dir).
    Man(ManArgs),
}

/// `graphgate completions SHELL`
#[derive(Debug, Args)]
#[command(after_help = "Install, for example:
  bash:  graphgate completions bash > /etc/bash_completion.d/graphgate   (or: source <(graphgate completions bash))
  zsh:   graphgate completions zsh > \"${fpath[1]}/_graphgate\"
  fish:  graphgate completions fish > ~/.config/fish/completions/graphgate.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `graphgate man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write graphgate.1 and a page per command (graphgate-serve.1, ...) into this
    /// directory instead of printing graphgate(1).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Start the Entra + Graph emulator in-process and use it, with demo credentials and
    /// demo callers of every kind (an API key, a client certificate, a Kubernetes service
    /// account), whose ready-made requests it prints.
    #[arg(long)]
    pub emulator: bool,
    /// Print the demo policy `--emulator` uses (its callers and rules) and exit.
    #[arg(long)]
    pub print_policy: bool,
    /// Check the configuration (flags, environment, and the files they name) without
    /// starting: print every problem and exit, non-zero if there is any.
    #[arg(long)]
    pub check_config: bool,
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
    /// Serve the admin listener over TLS with this PEM certificate chain (with
    /// --admin-tls-key), so the admin token never crosses the network in clear.
    #[arg(long, env = "GRAPHGATE_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of --admin-tls-cert.
    #[arg(long, env = "GRAPHGATE_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// The audit console's base URL as people reach it (e.g. https://graphgate-admin.example.com,
    /// behind whatever proxy fronts the admin listener): approval notifications link to
    /// <URL>/audit/approvals/<id>. Without it they carry no link.
    #[arg(long, env = "GRAPHGATE_CONSOLE_URL")]
    pub console_url: Option<String>,
    /// Approval notifications each webhook's queue holds; past it the oldest is dropped
    /// (graphgate_webhook_dropped_total).
    #[arg(long, env = "GRAPHGATE_WEBHOOK_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub webhook_queue: u32,
    /// Longest one webhook delivery attempt may take, in seconds (then it is retried).
    #[arg(long, env = "GRAPHGATE_WEBHOOK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,
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
    /// Most bulk executeAction requests in flight, all callers together (each within its
    /// caller's bound too); more are answered 429 with Retry-After.
    #[arg(
        long,
        env = "GRAPHGATE_MAX_BULK_IN_FLIGHT",
        default_value_t = graphgate::gateway::DEFAULT_MAX_BULK_IN_FLIGHT,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_bulk_in_flight: u32,
    /// Dry runs (Prefer: dry-run) one caller may make per second (also the burst); more are
    /// answered 429 with Retry-After. Shared by the replicas on one state store.
    #[arg(
        long,
        env = "GRAPHGATE_DRY_RUNS_PER_SEC",
        default_value_t = graphgate::gateway::DEFAULT_DRY_RUNS_PER_SEC,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub dry_runs_per_sec: u32,
    /// Log lines of refused requests written per caller per second, and of failed
    /// authentications per source address; the rest are counted (`suppressed` on the next
    /// line, and graphgate_log_suppressed_total). 0: log every one.
    #[arg(
        long,
        env = "GRAPHGATE_LOG_REFUSALS_PER_SEC",
        default_value_t = graphgate::gateway::DEFAULT_LOG_REFUSALS_PER_SEC
    )]
    pub log_refusals_per_sec: u32,
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
    /// How long an HTTP/1.1 connection rests before it is parked outside the HTTP engine
    /// (hidden: tests set a long one to see the cap on live HTTP engines alone at work).
    #[arg(
        long,
        env = "GRAPHGATE_PARK_AFTER_MS",
        default_value_t = 1_000,
        hide = true
    )]
    pub park_after_ms: u64,
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
    /// Longest time calls already sent to Graph get to finish after SIGTERM (duplicates
    /// waiting on a claim are answered 409 at once, nothing new is sent); then the audit is
    /// flushed and the process exits. Keep it below the pod's terminationGracePeriodSeconds
    /// (30 in the Kubernetes base) and systemd's TimeoutStopSec, with room for the flush.
    #[arg(long, env = "GRAPHGATE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Most requests one caller may have waiting for approval; more are answered 429.
    #[arg(
        long,
        env = "GRAPHGATE_MAX_PENDING_APPROVALS_PER_CALLER",
        default_value_t = 20,
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub max_pending_approvals_per_caller: u16,
    /// Handle Intune's Multi Admin Approval for callers: writes it can hold carry a
    /// justification; a write Graph answers with `x-msft-approval-code` becomes an approval
    /// in `external_approval_pending`, sent again once when a person approves it in Intune.
    /// Needs DeviceManagementRBAC.Read.All (or DeviceManagementConfiguration.Read.All).
    #[arg(long, env = "GRAPHGATE_MAA_HANDLING")]
    pub maa_handling: bool,
    /// With --maa-handling, the operations whose writes carry `x-msft-approval-justification`
    /// (the tenant's access policies decide which Intune holds; wipe, retire and delete are
    /// the device actions MAA covers). A name that is not a write of `graphgate operations`
    /// is refused.
    #[arg(
        long,
        env = "GRAPHGATE_MAA_JUSTIFY",
        value_delimiter = ',',
        default_value = "managedDevices.wipe,managedDevices.retire,managedDevices.delete",
        value_parser = parse_maa_justify
    )]
    pub maa_justify: Vec<String>,
    /// With --maa-handling, the first wait before Intune's approval request is read, doubled
    /// after each read up to --maa-poll-max-secs.
    #[arg(long, env = "GRAPHGATE_MAA_POLL_MIN_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub maa_poll_min_secs: u64,
    /// With --maa-handling, the longest wait between two reads of Intune's approval request.
    #[arg(long, env = "GRAPHGATE_MAA_POLL_MAX_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub maa_poll_max_secs: u64,
}

/// One `--maa-justify` name: an operation of the catalog that Intune's Multi Admin Approval
/// can hold (a write; reads are never held). Any other name is refused, with the valid ones.
fn parse_maa_justify(name: &str) -> Result<String, String> {
    use graphgate::operation::catalog::{CATALOG, MaaCoverage};
    let holdable = || {
        CATALOG
            .iter()
            .filter(|op| op.maa() != MaaCoverage::Never)
            .map(|op| op.name)
    };
    if holdable().any(|op| op == name) {
        return Ok(name.to_owned());
    }
    let why = match CATALOG.iter().any(|op| op.name == name) {
        true => " is a read, which Multi Admin Approval never holds".to_owned(),
        false => format!(
            " is not an operation{}",
            graphgate::words::did_you_mean(name, holdable())
        ),
    };
    Err(format!(
        "'{name}'{why}; the operations it can hold (see `graphgate operations`): {}",
        holdable().collect::<Vec<_>>().join(", ")
    ))
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
            max_bulk_in_flight: self.max_bulk_in_flight as usize,
            dry_runs_per_sec: self.dry_runs_per_sec,
            log_refusals_per_sec: self.log_refusals_per_sec,
            max_bulk_devices: usize::from(self.max_bulk_devices),
            idempotency_window: secs(self.idempotency_window_secs),
            max_pending_approvals_per_caller: usize::from(self.max_pending_approvals_per_caller),
            maa: self
                .maa_handling
                .then(|| graphgate::approval::maa::Settings {
                    justify: self.maa_justify.clone(),
                    first_poll: secs(self.maa_poll_min_secs),
                    max_poll: secs(self.maa_poll_max_secs.max(self.maa_poll_min_secs)),
                    ..Default::default()
                }),
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
    // The URL may carry the password: `--help` must not print the variable's value.
    #[arg(
        long = "state",
        env = "GRAPHGATE_STATE",
        default_value = "memory",
        hide_env_values = true
    )]
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
    /// With --state memory: where approvals (pending, approved, decided) survive restarts
    /// [default: beside the audit log, <log name>.approvals.json].
    #[arg(long, env = "GRAPHGATE_APPROVALS_FILE")]
    pub approvals_file: Option<PathBuf>,
    /// The deployment's name in a shared store's keys (1 to 64 letters, digits, '.', '_',
    /// '-'): the replicas of one deployment share it, other deployments of the tenant on the
    /// same Redis keep their own counters and claims [default: derived from the app's client
    /// id and the policy file's path].
    #[arg(long, env = "GRAPHGATE_STATE_NAMESPACE")]
    pub state_namespace: Option<String>,
}

impl StateArgs {
    /// The state setting; the memory store's budget file defaults to one beside `audit_log`.
    /// Without `--state-namespace`, the gateway derives the deployment's name from its app and
    /// policy file (see `graphgate::state::default_deployment`).
    pub fn config(
        &self,
        audit_log: Option<&std::path::Path>,
    ) -> Result<graphgate::state::StateConfig, graphgate::state::StateSetupError> {
        let memory = self.state == "memory";
        let beside_log = |extension: &str| {
            memory
                .then(|| audit_log.map(|p| p.with_extension(extension)))
                .flatten()
        };
        let budget_file = self
            .budget_file
            .clone()
            .or_else(|| beside_log("budgets.json"));
        let approvals_file = self
            .approvals_file
            .clone()
            .or_else(|| beside_log("approvals.json"));
        graphgate::state::StateConfig::parse(
            &self.state,
            graphgate::state::config::StateOptions {
                password_file: self.state_password_file.clone(),
                ca_file: self.state_ca_file.clone(),
                timeout: Duration::from_millis(self.state_timeout_ms.max(1)),
                budget_file,
                approvals_file,
                namespace: self.state_namespace.clone(),
            },
        )
    }
}
