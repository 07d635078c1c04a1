//! The `graphgate` command line: `serve`, `emulate`, `policy`. It reads flags and the
//! environment once, here, and hands typed settings to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use graphgate::app::{self, Settings};
use graphgate::audit::cli::{AuditCommand, ServeAuditArgs};
use graphgate::cloud::Cloud;
use graphgate::credential::Credential;
use graphgate::emulator::{AppRegistration, Emulator, EmulatorConfig};
use graphgate::gateway::Limits;
use graphgate::policy::Policy;
use graphgate::secret::Secret;
use graphgate::server::{self, ServerLimits};
use graphgate::telemetry::{self, OtlpConfig};
use graphgate::{demo, upstream};

#[derive(Parser)]
#[command(
    name = "graphgate",
    version,
    about = "Authenticating gateway for privileged Microsoft Graph (Intune) actions"
)]
struct Cli {
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the Entra + Graph emulator on its own.
    Emulate(EmulateArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify and query audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Start the Entra + Graph emulator in-process and use it, with demo credentials.
    #[arg(long)]
    emulator: bool,
    /// Address to listen on.
    #[arg(long, env = "GRAPHGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Policy file [default: ./policy.yaml; with --emulator, a built-in demo policy].
    #[arg(long, env = "GRAPHGATE_POLICY")]
    policy: Option<PathBuf>,
    /// National cloud: global, us-gov, us-dod or china.
    #[arg(long, env = "GRAPHGATE_CLOUD", default_value = "global")]
    cloud: Cloud,
    /// Connection overrides, curl style: host:port=ip:port[,...] (tests and demos).
    #[arg(long, env = "GRAPHGATE_CONNECT_TO")]
    connect_to: Option<String>,
    /// Extra PEM CA certificates to trust for outbound TLS.
    #[arg(long, env = "GRAPHGATE_EXTRA_CA_FILE")]
    extra_ca_file: Option<PathBuf>,
    /// Never use a token this close to its expiry.
    #[arg(long, default_value_t = 300)]
    token_expiry_margin_secs: u64,
    #[command(flatten)]
    bounds: BoundArgs,
    /// Token lifetime the in-process emulator issues (with --emulator).
    #[arg(long, default_value_t = 3599)]
    emulator_token_lifetime_secs: u64,
    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "GRAPHGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "GRAPHGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept client certificates issued by these PEM CAs (mTLS callers; needs --tls-cert).
    #[arg(long, env = "GRAPHGATE_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (callers' API keys then cross the network in clear).
    #[arg(long)]
    allow_insecure_listener: bool,
    /// Admin listener (/metrics, /healthz, /readyz); keep it off the callers' network.
    #[arg(long, env = "GRAPHGATE_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    #[command(flatten)]
    audit: ServeAuditArgs,
}

/// Sizes, timeouts and queue bounds.
#[derive(Args)]
struct BoundArgs {
    /// Largest request body accepted.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Longest time to receive a request's headers; also how long an idle keep-alive connection stays open.
    #[arg(long, default_value_t = 20)]
    header_read_timeout_secs: u64,
    /// Longest time to receive a request body.
    #[arg(long, default_value_t = 10)]
    body_read_timeout_secs: u64,
    /// Longest inbound TLS handshake.
    #[arg(long, default_value_t = 10)]
    tls_handshake_timeout_secs: u64,
    /// Longest TCP connect to Entra or Graph.
    #[arg(long, default_value_t = 5)]
    connect_timeout_secs: u64,
    /// Longest wait for one complete Graph answer.
    #[arg(long, default_value_t = 30)]
    upstream_timeout_secs: u64,
    /// Longest total wait when retrying throttled Graph calls (429, 503 with Retry-After).
    #[arg(long, default_value_t = 10)]
    upstream_retry_max_wait_secs: u64,
    /// Most requests in flight; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Most client connections; more wait in the listen backlog.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// How long an Idempotency-Key (or client-request-id) is remembered.
    #[arg(long, default_value_t = 600)]
    idempotency_window_secs: u64,
    /// Longest time in-flight requests get to finish on shutdown.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
}

impl BoundArgs {
    fn limits(&self) -> Limits {
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
            idempotency_window: secs(self.idempotency_window_secs),
            ..Limits::default()
        }
    }

    fn server(&self) -> ServerLimits {
        let secs = Duration::from_secs;
        ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: secs(self.header_read_timeout_secs),
            shutdown_grace: secs(self.shutdown_grace_secs),
            tls_handshake_timeout: secs(self.tls_handshake_timeout_secs),
            ..ServerLimits::default()
        }
    }
}

#[derive(Args)]
struct EmulateArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Write the emulator's CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Tenant id of the emulated directory.
    #[arg(long, default_value = graphgate::emulator::DEMO_TENANT_ID)]
    tenant_id: String,
    /// Client id of the registered app.
    #[arg(long, default_value = graphgate::emulator::DEMO_CLIENT_ID)]
    client_id: String,
    /// Client secret of the registered app.
    #[arg(long, env = "GRAPHGATE_EMULATOR_CLIENT_SECRET", default_value = graphgate::emulator::DEMO_CLIENT_SECRET, hide_default_value = true)]
    client_secret: String,
    /// Application permissions granted to the app (repeatable).
    #[arg(long = "role", default_value = graphgate::catalog::PRIV_OPS)]
    roles: Vec<String>,
    /// Lifetime of issued tokens.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_secs: u64,
    /// Managed-device ids in the inventory (repeatable) [default: the demo devices].
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Inject a fault, e.g. token-down, graph-429:retry-after=5,times=2 (repeatable; see --help).
    #[arg(long = "fault", value_name = "SPEC", long_help = graphgate::emulator::FAULT_SPEC_HELP, value_parser = parse_fault)]
    faults: Vec<graphgate::emulator::FaultSpec>,
}

/// One `--fault` spec (clap reports the error with the flag).
fn parse_fault(spec: &str) -> Result<graphgate::emulator::FaultSpec, String> {
    spec.parse()
}

#[derive(Subcommand)]
enum PolicyCommand {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graphgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let otlp = matches!(cli.command, Command::Serve(_))
            .then(otlp_from_env)
            .flatten();
        let telemetry = telemetry::init(matches!(cli.log_format, LogFormat::Json), otlp)?;
        let result = match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Emulate(args) => emulate(args).await,
            Command::Policy(cmd) => policy(cmd),
            Command::Audit(cmd) => Ok(graphgate::audit::cli::run(cmd)?),
        };
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("graphgate: {e}");
            ExitCode::FAILURE
        }
    }
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Trace export is on when the standard OpenTelemetry variables ask for it.
fn otlp_from_env() -> Option<OtlpConfig> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    set("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .map(|_| OtlpConfig {
            traces_endpoint: None,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| "graphgate".into()),
        })
}

async fn serve(args: ServeArgs) -> Fallible<ExitCode> {
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut connect_to = upstream::parse_connect_to(args.connect_to.as_deref().unwrap_or(""))?;
    let mut extra_ca_pem = args
        .extra_ca_file
        .as_deref()
        .map(upstream::read_extra_ca)
        .transpose()?;
    let (credential, authority_host, policy) = if args.emulator {
        let config = EmulatorConfig {
            token_lifetime: Duration::from_secs(args.emulator_token_lifetime_secs),
            ..EmulatorConfig::default()
        };
        let mut rx = shutdown_rx.clone();
        let emu = demo::start_emulator(config, async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await?;
        connect_to.extend(emu.connect_to);
        let ca = emu.emulator.ca_pem();
        extra_ca_pem =
            Some(extra_ca_pem.map_or_else(|| ca.to_owned(), |mine| format!("{mine}\n{ca}")));
        let policy = match &args.policy {
            Some(path) => Policy::load(path)?,
            None => demo::demo_policy()?,
        };
        (emu.credential, None, policy)
    } else {
        let credential = Credential::from_env(|name| std::env::var(name).ok())?;
        let path = args
            .policy
            .clone()
            .unwrap_or_else(|| PathBuf::from("policy.yaml"));
        (
            credential,
            std::env::var("AZURE_AUTHORITY_HOST").ok(),
            Policy::load(&path)?,
        )
    };
    let audit = graphgate::audit::cli::open_for_serve(&args.audit, args.emulator).await?;
    if let Some(path) = audit.path() {
        eprintln!("audit log: {}", path.display());
    }
    let settings = Settings {
        cloud: args.cloud,
        credential,
        authority_host,
        connect_to,
        extra_ca_pem,
        token_expiry_margin: Duration::from_secs(args.token_expiry_margin_secs),
        limits: args.bounds.limits(),
        audit,
    };
    let tls = server_tls(&args)?;
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_insecure_listener {
        return Err(format!(
            "refusing plain HTTP on {}: callers' API keys would cross the network in clear. Use --tls-cert/--tls-key, a loopback address, or --allow-insecure-listener",
            args.listen
        )
        .into());
    }
    let gateway = app::build(&settings, policy)?;
    let reload_path = (args.policy.is_some() || !args.emulator).then(|| {
        args.policy
            .clone()
            .unwrap_or_else(|| PathBuf::from("policy.yaml"))
    });
    if let Some(path) = reload_path {
        let (reloader, _status) = graphgate::reload::Reloader::new(path, Arc::clone(&gateway));
        let mut rx = shutdown_rx.clone();
        tokio::spawn(reloader.run(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    // Fetch the first token now, so the least-privilege report (readiness) is known early.
    tokio::spawn(app::prime_token(Arc::clone(&gateway)));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "graphgate listening");
    let admin = tokio::net::TcpListener::bind(args.admin_listen).await?;
    let admin_addr = admin.local_addr()?;
    tracing::info!(listen = %admin_addr, "admin endpoints (/metrics, /healthz, /readyz) listening");
    eprintln!("admin endpoints on http://{admin_addr} (/metrics, /healthz, /readyz)");
    let mut admin_stop = shutdown_rx.clone();
    tokio::spawn(graphgate::admin::serve(
        admin,
        Arc::clone(&gateway),
        async move {
            let _ = admin_stop.wait_for(|stop| *stop).await;
        },
    ));
    if args.emulator {
        eprintln!(
            "graphgate is listening on http://{addr} (emulator mode: Entra and Graph are emulated in-process)\nTry:\n{}",
            demo::curl_example(addr, args.cloud)
        );
    }
    let shutdown = async move {
        shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    };
    let audit = gateway.audit().clone();
    server::serve(listener, tls, gateway, args.bounds.server(), shutdown).await?;
    // In-flight requests are done: make every queued audit record durable before exiting.
    if let Err(e) = audit.flush().await {
        tracing::error!(error = %e, "could not flush the audit log at shutdown");
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn server_tls(args: &ServeArgs) -> Fallible<Option<Arc<rustls::ServerConfig>>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let tls = graphgate::tls::ServerTls {
        cert_pem: read(cert)?,
        key_pem: Secret::new(read(key)?),
        client_ca_pem: args.client_ca.as_ref().map(read).transpose()?,
    };
    Ok(Some(graphgate::tls::server_config(&tls)?))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn emulate(args: EmulateArgs) -> Fallible<ExitCode> {
    let defaults = EmulatorConfig::default();
    let config = EmulatorConfig {
        tenant_id: args.tenant_id,
        apps: vec![AppRegistration {
            client_id: args.client_id,
            client_secret: Secret::new(args.client_secret),
            roles: args.roles,
        }],
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        devices: if args.devices.is_empty() {
            defaults.devices
        } else {
            args.devices
        },
        ..defaults
    };
    let emulator = Emulator::new(config)?;
    let mut faults = graphgate::emulator::Faults::default();
    for graphgate::emulator::FaultSpec(target, fault) in args.faults {
        match target {
            graphgate::emulator::Target::Token => faults.token.push(fault),
            graphgate::emulator::Target::Graph => faults.graph.push(fault),
        }
    }
    if faults != graphgate::emulator::Faults::default() {
        eprintln!(
            "injecting faults: {}",
            serde_json::to_string(&faults).unwrap_or_default()
        );
    }
    emulator.set_faults(faults);
    if let Some(path) = &args.ca_out {
        std::fs::write(path, emulator.ca_pem())?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "graphgate emulator listening on https://{addr}\nPoint a gateway at it with:\n  GRAPHGATE_CONNECT_TO='{}'\n  GRAPHGATE_EXTRA_CA_FILE={}",
        Emulator::connect_to(addr),
        args.ca_out
            .as_ref()
            .map_or("<write it with --ca-out FILE>".into(), |p| p
                .display()
                .to_string()),
    );
    Arc::clone(&emulator)
        .serve(listener, shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

fn policy(cmd: PolicyCommand) -> Fallible<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => match Policy::load(&file) {
            Ok(p) => {
                println!(
                    "{}: OK ({} callers, {} rules, policy hash {})",
                    file.display(),
                    p.callers.len(),
                    p.rules.len(),
                    p.hash
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        PolicyCommand::Explain {
            caller,
            request,
            body,
            policy,
        } => {
            let policy = match Policy::load(&policy) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let body = body
                .map(|p| -> Fallible<serde_json::Value> {
                    Ok(serde_json::from_str(&std::fs::read_to_string(&p)?)?)
                })
                .transpose()?;
            match graphgate::explain::explain(&policy, &caller, &request, body.as_ref()) {
                Ok((allowed, text)) => {
                    print!("{text}");
                    Ok(if allowed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        PolicyCommand::Test { file, policy } => {
            match graphgate::explain::run_fixtures(&file, policy.as_deref()) {
                Ok(report) => {
                    for line in &report.lines {
                        println!("{line}");
                    }
                    println!("{} passed, {} failed", report.passed, report.failed);
                    Ok(if report.failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        PolicyCommand::HashKey => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key)?;
            println!(
                "{}",
                graphgate::identity::api_key_sha256(key.trim_end_matches(['\r', '\n']))
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
