//! `graphgate serve`: flags and the environment become a [`ServeConfig`] (every problem
//! reported at once), then the listeners are bound and [`App::run`] serves until SIGTERM or
//! Ctrl-C. `--check-config` stops after checking, printing what it found.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use graphgate::app::{App, AuditTarget, Listeners, PolicySource, Problems, ServeConfig, TlsSource};
use graphgate::credential::Credential;
use graphgate::secret::Secret;
use graphgate::state::StateConfig;
use graphgate::upstream;
use tokio::sync::watch;

use super::args::ServeArgs;
use super::serve_demo::{
    Emulated, demo_files, emulated, print_demo, print_demo_policy, start_token_renewal,
};
use super::{Env, Fallible, bind, shutdown_signal};

/// The policy file when `--policy` is not given (and not `--emulator`).
const DEFAULT_POLICY: &str = "policy.yaml";

/// Where `--emulator`'s TLS listener binds: loopback, a free port.
const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Runs `graphgate serve`: parse → config → bind → run.
pub async fn run(args: ServeArgs, env: &Env) -> Fallible<ExitCode> {
    if args.print_policy {
        return print_demo_policy();
    }
    // SIGTERM is caught from here on: a supervisor may stop the process at any point.
    let signal = shutdown_signal();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut problems = Problems::default();
    let emulated = emulated(&args, stop_rx, &mut problems).await;
    let mut config = config(&args, env, emulated.as_ref(), &mut problems);
    if args.check_config {
        problems.extend(graphgate::app::check(&config));
        return Ok(report_check(&problems));
    }
    if !problems.is_empty() {
        return Err(Box::new(problems));
    }
    let demo = demo_files(&args, emulated.as_ref(), &mut config)?;
    let policy_path = match &config.policy {
        PolicySource::File(path) => Some(path.clone()),
        PolicySource::Fixed { .. } => None,
    };
    let app = App::build(config).await?;
    if let Some(path) = app.gateway().audit().path() {
        eprintln!("audit log: {}", path.display());
    }
    let extra_tls = match demo {
        Some(_) => Some(bind(LOOPBACK_ANY_PORT, "--emulator's TLS listener").await?),
        None => None,
    };
    let listeners = Listeners {
        main: bind(args.listen, "--listen / GRAPHGATE_LISTEN").await?,
        admin: bind(args.admin_listen, "--admin-listen / GRAPHGATE_ADMIN_LISTEN").await?,
        extra_tls,
    };
    let admin = listeners.admin.local_addr()?;
    let scheme = if args.admin_tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("admin endpoints on {scheme}://{admin} (/metrics, /healthz, /readyz, /audit)");
    if let (Some(emu), Some(files)) = (&emulated, &demo) {
        print_demo(&args, &app, &listeners, emu, files, policy_path.as_deref())?;
        start_token_renewal(emu, files, stop_tx.subscribe());
    }
    let shutdown = async move {
        signal.await;
        let _ = stop_tx.send(true);
    };
    match app.run(listeners, shutdown).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ graphgate::app::RunError::Close(_)) => {
            tracing::error!(error = %e, "stopped");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The configuration the flags and environment describe; every problem goes to `problems`
/// (a piece with a problem is left at a harmless default, never used: start-up stops).
fn config(
    args: &ServeArgs,
    env: &Env,
    emulated: Option<&Emulated>,
    problems: &mut Problems,
) -> ServeConfig {
    check_listen_addresses(args, problems);
    warn_about_overrides(args);
    let (connect_to, extra_ca_pem) = outbound(args, emulated, problems);
    let (credential, authority_host, policy) = app_and_policy(args, env, emulated, problems);
    let shipped = env.otlp_configured();
    // The collector's TLS files are checked with everything else (traces are not exported
    // while they are unusable, see main); shipping's, when they are others, by the app.
    let ship = env.ship().filter(|_| args.audit.audit_ship);
    if let Some(traces) = env.otlp()
        && ship.as_ref().is_none_or(|s| s.tls != traces.tls)
    {
        problems.take(graphgate::otlp::client_config(&traces.tls));
    }
    let audit = match args.audit.settings(args.emulator, shipped, problems) {
        Some(settings) => AuditTarget::Log(Box::new(settings)),
        None => AuditTarget::Disabled,
    };
    let audit_log = match &audit {
        AuditTarget::Log(settings) => Some(settings.log.as_path()),
        _ => None,
    };
    let state = problems.take(args.state.config(audit_log));
    // A setting with a problem is not announced as the memory store it falls back to.
    if let Some(state) = &state {
        announce_state(state);
    }
    let state = state.unwrap_or_default();
    graphgate::server::park::set_park_after(std::time::Duration::from_millis(
        args.bounds.park_after_ms,
    ));
    ServeConfig {
        cloud: args.cloud,
        credential,
        authority_host,
        connect_to,
        extra_ca_pem,
        token_expiry_margin: std::time::Duration::from_secs(args.token_expiry_margin_secs),
        limits: args.bounds.limits(),
        server: args.bounds.server(),
        tls: tls_files(args),
        // `--emulator`'s TLS listener is added once its files are written (not by a check).
        extra_tls: None,
        policy,
        audit,
        reconcile: args.audit.reconcile(),
        state,
        admin_token_file: args.admin_token_file.clone(),
        admin_tls: admin_tls_files(args),
        ship,
        notify: notify_settings(args, problems),
    }
}

/// How approval notifications are sent: `--console-url` must be an absolute http(s) URL.
fn notify_settings(args: &ServeArgs, problems: &mut Problems) -> graphgate::notify::Settings {
    let console_url = args
        .console_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(url) = console_url {
        let ok = url
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some());
        if !ok {
            problems.push(format!(
                "--console-url {url:?}: an absolute http(s) URL, e.g. https://graphgate-admin.example.com"
            ));
        }
    }
    graphgate::notify::Settings {
        console_url: console_url.map(str::to_owned),
        queue: args.webhook_queue as usize,
        timeout: std::time::Duration::from_secs(args.webhook_timeout_secs),
        ..graphgate::notify::Settings::default()
    }
}

/// Where outbound connections go and which extra CAs they trust: the flags', and with the
/// emulator its hosts and CA.
fn outbound(
    args: &ServeArgs,
    emulated: Option<&Emulated>,
    problems: &mut Problems,
) -> (Vec<upstream::ConnectRule>, Option<String>) {
    let rules = args.connect_to.as_deref().unwrap_or("");
    #[cfg_attr(not(feature = "emulator"), allow(unused_mut))]
    let mut connect_to = problems
        .take(upstream::parse_connect_to(rules))
        .unwrap_or_default();
    let read_ca = args.extra_ca_file.as_deref().map(upstream::read_extra_ca);
    #[cfg_attr(not(feature = "emulator"), allow(unused_mut))]
    let mut extra_ca_pem = problems.take(read_ca.transpose()).flatten();
    if let Some(emu) = emulated {
        #[cfg(feature = "emulator")]
        {
            connect_to.extend(emu.connect_to.iter().cloned());
            extra_ca_pem = Some(match extra_ca_pem {
                Some(mine) => format!("{mine}\n{}", emu.ca_pem),
                None => emu.ca_pem.clone(),
            });
        }
        #[cfg(not(feature = "emulator"))]
        match *emu {}
    }
    (connect_to, extra_ca_pem)
}

/// The app's credential and authority (the environment's, or the emulator's demo app) and
/// the policy (`--policy`, else `./policy.yaml`, else with the emulator its demo policy).
fn app_and_policy(
    args: &ServeArgs,
    env: &Env,
    emulated: Option<&Emulated>,
    problems: &mut Problems,
) -> (Credential, Option<String>, PolicySource) {
    let file = || {
        let path = args.policy.clone();
        PolicySource::File(path.unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY)))
    };
    match emulated {
        #[cfg(feature = "emulator")]
        Some(emu) => {
            let policy = match &args.policy {
                Some(path) => PolicySource::File(path.clone()),
                None => PolicySource::Fixed {
                    yaml: graphgate_emulator::demo::policy_yaml(),
                    label: super::demo::DEMO_POLICY_LABEL.to_owned(),
                },
            };
            (emu.credential.clone(), None, policy)
        }
        #[cfg(not(feature = "emulator"))]
        Some(never) => match *never {},
        // `--emulator` that could not start (or is not in this build): said already.
        None if args.emulator => (placeholder(), None, file()),
        None => {
            let credential = problems.take(Credential::from_env(|name| env.var(name)));
            // Without a credential its ids are judged here (ServeConfig::validate judges a
            // credential's own), so every problem is reported at once.
            if credential.is_none() {
                let (tenant, client) = (env.var("AZURE_TENANT_ID"), env.var("AZURE_CLIENT_ID"));
                for problem in
                    graphgate::credential::id_problems(tenant.as_deref(), client.as_deref())
                {
                    problems.push(problem);
                }
            }
            let credential = credential.unwrap_or_else(placeholder);
            (credential, env.var("AZURE_AUTHORITY_HOST"), file())
        }
    }
}

/// A credential standing in for one the environment did not give (start-up stops anyway).
fn placeholder() -> Credential {
    Credential::ClientSecret {
        tenant_id: String::new(),
        client_id: String::new(),
        secret: Secret::new(""),
    }
}

fn tls_files(args: &ServeArgs) -> Option<TlsSource> {
    let (cert, key) = (args.tls_cert.clone()?, args.tls_key.clone()?);
    Some(TlsSource::Files {
        cert,
        key,
        client_ca: args.client_ca.clone(),
        client_crl: args.client_crl.clone(),
    })
}

/// `--admin-tls-cert` and `--admin-tls-key` (clap requires both or neither).
fn admin_tls_files(args: &ServeArgs) -> Option<TlsSource> {
    let (cert, key) = (args.admin_tls_cert.clone()?, args.admin_tls_key.clone()?);
    Some(TlsSource::Files {
        cert,
        key,
        client_ca: None,
        client_crl: None,
    })
}

/// `--check-config`'s verdict: every problem, or that there is none.
fn report_check(problems: &Problems) -> ExitCode {
    if problems.is_empty() {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    for problem in problems.iter() {
        println!("problem: {problem}");
    }
    ExitCode::FAILURE
}

/// Listen addresses that would expose what must stay local are refused.
fn check_listen_addresses(args: &ServeArgs, problems: &mut Problems) {
    if args.emulator && !args.listen.ip().is_loopback() {
        problems.push(format!(
            "refusing --emulator on {}: emulator mode has a published demo API key and fake credentials, so it listens only on a loopback address (--listen / GRAPHGATE_LISTEN, e.g. 127.0.0.1:8080)",
            args.listen
        ));
    }
    let tls = args.tls_cert.is_some();
    if !tls && !args.listen.ip().is_loopback() && !args.allow_insecure_listener {
        problems.push(format!(
            "refusing plain HTTP on {}: callers' API keys would cross the network in clear. Use --tls-cert/--tls-key, a loopback address, or --allow-insecure-listener",
            args.listen
        ));
    }
    if !args.admin_listen.ip().is_loopback() {
        tracing::warn!(
            admin_listen = %args.admin_listen,
            "the admin listener is not on a loopback address: /metrics and /readyz are reachable from the network (the policy hash and reload errors are left out of /readyz there)"
        );
    }
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
fn announce_state(state: &StateConfig) {
    match state {
        StateConfig::Memory {
            budget_file: None, ..
        } => tracing::warn!(
            "--state memory without a budget file (no audit log, no GRAPHGATE_BUDGET_FILE): daily budgets start from zero at every restart"
        ),
        StateConfig::Memory {
            budget_file: Some(f),
            approvals_file,
        } => tracing::info!(
            budget_file = %f.display(),
            approvals_file = %approvals_file.as_deref().map(|a| a.display().to_string()).unwrap_or_default(),
            "state: memory (this process alone; replicas need --state redis://...)"
        ),
        StateConfig::Redis(r) => tracing::info!(state = r.shown(), "state: shared, in Redis"),
    }
}
