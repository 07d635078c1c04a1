//! The `graphgate` command line: `serve`, `emulate`, `policy`, `audit`. Flags are defined in
//! `args`; this file reads them and the environment once and hands typed settings to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use graphgate::app::{self, Settings};
use graphgate::credential::Credential;
use graphgate::emulator::{AppRegistration, Emulator, EmulatorConfig};
use graphgate::policy::Policy;
use graphgate::secret::Secret;
use graphgate::server;
use graphgate::telemetry::{self, OtlpConfig};
use graphgate::{demo, upstream};

mod args;
use args::{Cli, Command, EmulateArgs, LogFormat, PolicyCommand, ServeArgs};

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
            Command::Serve(args) => serve(*args).await,
            Command::Emulate(args) => emulate(args).await,
            Command::Policy(cmd) => policy(cmd),
            Command::Audit(cmd) => Ok(graphgate::audit::cli::run(cmd)?),
            Command::Witness(cmd) => Ok(graphgate::witness::run(cmd).await?),
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
    // One answer to "is OTLP configured" for traces and for audit shipping.
    graphgate::audit::ship::otlp_configured().then(|| OtlpConfig {
        traces_endpoint: None,
        service_name: std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "graphgate".into()),
    })
}

async fn serve(args: ServeArgs) -> Fallible<ExitCode> {
    // Mistakes in the flags stop start-up before anything else is done.
    check_listen_addresses(&args)?;
    args.state.config(None)?;
    warn_about_overrides(&args);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut connect_to = upstream::parse_connect_to(args.connect_to.as_deref().unwrap_or(""))?;
    let mut extra_ca_pem = args
        .extra_ca_file
        .as_deref()
        .map(upstream::read_extra_ca)
        .transpose()?;
    let (credential, authority_host, policy) = if args.emulator {
        let mut config = EmulatorConfig {
            token_lifetime: Duration::from_secs(args.emulator_token_lifetime_secs),
            ..EmulatorConfig::default()
        };
        if args.audit.reconcile_outcomes {
            // The demo app may read devices, as reconciliation needs.
            for app in &mut config.apps {
                app.roles
                    .push(graphgate::audit::reconcile::READ_PERMISSION.to_owned());
            }
        }
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
    let audit =
        graphgate::audit::cli::open_for_serve(&args.audit, args.emulator, extra_ca_pem.as_deref())
            .await?;
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
        reconcile: args.audit.reconcile(),
    };
    let tls = server_tls(&args)?;
    let demo_key_accepted = demo::accepts_demo_key(&policy);
    let state = args.state.config(settings.audit.path())?;
    announce_state(&state);
    let gateway = app::build_with_state(&settings, policy, &state)?;
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
    start_shipping(&args, gateway.audit())?;
    // Fetch the first token now, so the least-privilege report (readiness) is known early.
    tokio::spawn(app::prime_token(Arc::clone(&gateway)));
    let listener = bind(args.listen, "--listen / GRAPHGATE_LISTEN").await?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "graphgate listening");
    let admin = bind(args.admin_listen, "--admin-listen / GRAPHGATE_ADMIN_LISTEN").await?;
    let admin_addr = admin.local_addr()?;
    // Every start-up check has passed: only now does the audit log say the gateway started.
    gateway
        .audit()
        .write_start(concat!("graphgate ", env!("CARGO_PKG_VERSION"), " started"))
        .await?;
    tracing::info!(listen = %admin_addr, "admin endpoints (/metrics, /healthz, /readyz, /audit) listening");
    eprintln!("admin endpoints on http://{admin_addr} (/metrics, /healthz, /readyz, /audit)");
    let mut admin_stop = shutdown_rx.clone();
    let admin_options = admin_options(&args, &gateway)?;
    tokio::spawn(graphgate::admin::serve_with(
        admin,
        Arc::clone(&gateway),
        admin_options,
        async move {
            let _ = admin_stop.wait_for(|stop| *stop).await;
        },
    ));
    let signal = shutdown_signal();
    if args.emulator {
        // Only suggest the demo key to a policy that accepts it.
        let key = match demo_key_accepted {
            true => demo::DEMO_API_KEY,
            false => "<an API key of a caller in your policy>",
        };
        eprintln!(
            "graphgate is listening on http://{addr} (emulator mode: Entra and Graph are emulated in-process)\nTry:\n{}",
            demo::curl_example_with_key(addr, args.cloud, key)
        );
    }
    let shutdown = async move {
        signal.await;
        let _ = shutdown_tx.send(true);
    };
    let audit = gateway.audit().clone();
    server::serve(listener, tls, gateway, args.bounds.server(), shutdown).await?;
    // In-flight requests are done: make every queued audit record durable and close the log
    // cleanly (its anchor records the final head) before exiting.
    if let Err(e) = audit.shutdown().await {
        tracing::error!(error = %e, "could not close the audit log cleanly at shutdown");
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ships the audit log's records as OTLP log records, when OTLP export is configured.
fn start_shipping(args: &ServeArgs, audit: &graphgate::audit::Audit) -> Fallible<()> {
    let (Some(otlp), Some(log), Some(durable)) =
        (otlp_from_env(), audit.path(), audit.durable_seq())
    else {
        return Ok(());
    };
    if !args.audit.audit_ship {
        return Ok(());
    }
    let config = graphgate::audit::ship::ShipConfig {
        logs_endpoint: None,
        service_name: otlp.service_name,
    };
    graphgate::audit::ship::spawn(log, durable, &config)?;
    tracing::info!(
        from_seq = graphgate::audit::ship::read_cursor(log) + 1,
        "shipping audit records as OTLP log records"
    );
    Ok(())
}

/// The admin token, and the audit console over the gateway's log (showing whether the log
/// still matches its newest signed checkpoint, when checkpoints are signed).
fn admin_options(
    args: &ServeArgs,
    gateway: &graphgate::gateway::Gateway,
) -> Fallible<graphgate::admin::AdminOptions> {
    use graphgate::console::{Console, auth::AdminToken};
    let token = args
        .admin_token_file
        .as_deref()
        .map(AdminToken::from_file)
        .transpose()?;
    if token.is_none() && !args.admin_listen.ip().is_loopback() {
        tracing::warn!(admin_listen = %args.admin_listen, "no --admin-token-file: off loopback, /metrics and the audit console answer 401 until one is set");
    }
    let verifier = match &args.audit.audit_signing_key_file {
        Some(file) => Some(graphgate::audit::serve::load_signer(file)?.verifier()),
        None => None,
    };
    let audit = gateway.audit();
    let console = audit
        .path()
        .map(|log| Console::start(log, audit.durable_seq(), verifier));
    Ok(graphgate::admin::AdminOptions { token, console })
}

/// Listen addresses that would expose what must stay local are refused.
fn check_listen_addresses(args: &ServeArgs) -> Fallible<()> {
    if args.emulator && !args.listen.ip().is_loopback() {
        return Err(format!(
            "refusing --emulator on {}: emulator mode has a published demo API key and fake credentials, so it listens only on a loopback address (--listen / GRAPHGATE_LISTEN, e.g. 127.0.0.1:8080)",
            args.listen
        )
        .into());
    }
    let tls = args.tls_cert.is_some();
    if !tls && !args.listen.ip().is_loopback() && !args.allow_insecure_listener {
        return Err(format!(
            "refusing plain HTTP on {}: callers' API keys would cross the network in clear. Use --tls-cert/--tls-key, a loopback address, or --allow-insecure-listener",
            args.listen
        )
        .into());
    }
    if !args.admin_listen.ip().is_loopback() {
        tracing::warn!(
            admin_listen = %args.admin_listen,
            "the admin listener is not on a loopback address: /metrics and /readyz are reachable from the network (the policy hash and reload errors are left out of /readyz there)"
        );
    }
    Ok(())
}

/// Overrides meant for the emulator and tests are loud in production: they redirect
/// Graph and Entra traffic, or widen the CAs trusted for it.
fn warn_about_overrides(args: &ServeArgs) {
    if args.emulator {
        return;
    }
    if let Some(rules) = &args.connect_to {
        tracing::warn!(connect_to = %rules, "GRAPHGATE_CONNECT_TO / --connect-to is set outside --emulator: connections to Graph and Entra go to these addresses, not where DNS says");
    }
    if let Some(file) = &args.extra_ca_file {
        tracing::warn!(extra_ca_file = %file.display(), "GRAPHGATE_EXTRA_CA_FILE / --extra-ca-file is set outside --emulator: certificates from these CAs are trusted for Graph and Entra");
    }
}

/// Says where the state lives, and warns when budgets would not survive a restart.
fn announce_state(state: &graphgate::state::StateConfig) {
    use graphgate::state::StateConfig;
    match state {
        StateConfig::Memory { budget_file: None } => tracing::warn!(
            "--state memory without a budget file (no audit log, no GRAPHGATE_BUDGET_FILE): daily budgets start from zero at every restart"
        ),
        StateConfig::Memory {
            budget_file: Some(f),
        } => tracing::info!(
            budget_file = %f.display(),
            "state: memory (this process alone; replicas need --state redis://...)"
        ),
        StateConfig::Redis(r) => tracing::info!(state = r.shown(), "state: shared, in Redis"),
    }
}

/// Binds `addr`; an error names the address and the flag that set it.
async fn bind(addr: std::net::SocketAddr, flag: &str) -> Fallible<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (set by {flag}): {e}").into())
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
        client_crl: args.client_crl.clone(),
    };
    Ok(Some(graphgate::tls::server_config(&tls)?))
}

/// Resolves on SIGTERM or Ctrl-C. SIGTERM is caught from the moment this is called (not
/// first polled): a supervisor may stop the process as soon as its banner is printed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
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
        action_completion: Duration::from_secs(args.action_completion_secs),
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
    let listener = bind(args.listen, "emulate --listen").await?;
    let signal = shutdown_signal();
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
    Arc::clone(&emulator).serve(listener, signal).await?;
    Ok(ExitCode::SUCCESS)
}

fn policy(cmd: PolicyCommand) -> Fallible<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => Ok(policy_check(&file)),
        PolicyCommand::Explain {
            caller,
            request,
            body,
            initiator,
            reason,
            policy,
        } => {
            let said = graphgate::gateway::explain::Said {
                initiator: initiator.as_deref(),
                reason: reason.as_deref(),
            };
            Ok(policy_explain(
                &policy,
                &caller,
                &request,
                body.as_deref(),
                said,
            ))
        }
        PolicyCommand::Test { file, policy } => Ok(policy_test(&file, policy.as_deref())),
        PolicyCommand::HashKey => policy_hash_key(),
    }
}

fn policy_check(file: &std::path::Path) -> ExitCode {
    match Policy::load(file) {
        Ok(p) => {
            println!(
                "{}: OK ({} callers, {} rules, policy hash {})",
                file.display(),
                p.callers.len(),
                p.rules.len(),
                p.hash
            );
            for warning in &p.warnings {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 allow, 1 deny, 2 when there is nothing to decide (bad policy, request or body).
fn policy_explain(
    policy: &std::path::Path,
    caller: &str,
    request: &str,
    body: Option<&std::path::Path>,
    said: graphgate::gateway::explain::Said<'_>,
) -> ExitCode {
    let bad_input = |e: &dyn std::fmt::Display| {
        eprintln!("{e}");
        ExitCode::from(2)
    };
    let policy = match Policy::load(policy) {
        Ok(p) => p,
        Err(e) => return bad_input(&e),
    };
    // The file's bytes, as the gateway would receive them: the same strict parsing.
    let body = match body.map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))) {
        Some(Err(e)) => return bad_input(&e),
        Some(Ok(bytes)) => Some(bytes),
        None => None,
    };
    match graphgate::gateway::explain::explain(&policy, caller, request, body.as_deref(), said) {
        Ok((allowed, text)) => {
            print!("{text}");
            if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => bad_input(&e),
    }
}

fn policy_test(file: &std::path::Path, policy: Option<&std::path::Path>) -> ExitCode {
    match graphgate::gateway::explain::run_fixtures(file, policy) {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            println!("{} passed, {} failed", report.passed, report.failed);
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Hashes the first line of standard input. A key the gateway could never match is refused:
/// an empty one, and one with leading or trailing whitespace (the gateway trims the key it
/// reads from `Authorization: Bearer`), since either would print a valid-looking hash.
fn policy_hash_key() -> Fallible<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let key = line.trim_end_matches(['\r', '\n']);
    let problem = if key.trim().is_empty() {
        Some("no API key on standard input")
    } else if key.trim() != key {
        Some(
            "the API key has leading or trailing whitespace, which no Authorization header can carry",
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        eprintln!("graphgate: {problem}; use: printf '%s' \"$KEY\" | graphgate policy hash-key");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", graphgate::identity::api_key_sha256(key));
    Ok(ExitCode::SUCCESS)
}
