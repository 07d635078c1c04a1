//! Start-up, after the flags: a [`ServeConfig`] becomes a running gateway. [`App::build`]
//! reads what the configuration names (policy, TLS, admin token, audit log) and assembles
//! the gateway, reporting every problem at once; [`App::run`] serves it on listeners bound
//! by the caller until `shutdown`, with everything production runs beside it (policy
//! reload, audit shipping, the admin listener); [`check`] only checks (`serve
//! --check-config`). The binary and the tests start a gateway the same way.

mod build;
pub mod config;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use build::StartError;
pub use config::{AuditTarget, PolicySource, Problems, ServeConfig, TlsSource};

use crate::admin::AdminOptions;
use crate::audit::Audit;
use crate::audit::checkpoints::note::NoteVerifier;
use crate::console::{Console, auth::AdminToken};
use crate::gateway::Gateway;
use crate::policy::Policy;
use crate::ratelimit::ledger::Snapshots;
use crate::reload::Reloader;
use crate::state::{BudgetFile, StateConfig};

/// The two listeners a gateway serves, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// The callers' listener.
    pub main: TcpListener,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`, `/audit`).
    pub admin: TcpListener,
    /// A second callers' listener serving TLS, when [`ServeConfig::extra_tls`] asks for one.
    pub extra_tls: Option<TcpListener>,
}

/// A gateway ready to serve: configured, its files read, its audit log open.
pub struct App {
    gateway: Arc<Gateway>,
    config: ServeConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    extra_tls: Option<Arc<rustls::ServerConfig>>,
    admin: AdminOptions,
    admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// Follows the policy file, when there is one (readiness follows it from now on).
    reloader: Option<Reloader>,
    /// The client approval notifications are sent with.
    notify_client: crate::upstream::HttpClient,
    /// Writes the memory store's budget counts to their file, when it has one.
    snapshots: Option<Snapshots>,
}

/// The gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The audit log did not take the start record: nothing was served.
    #[error("the audit log did not take the start record: {0}")]
    Start(#[source] crate::audit::WriteError),
    /// A listener failed.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// The audit log could not be closed cleanly (its anchor may lag).
    #[error("could not close the audit log cleanly at shutdown: {0}")]
    Close(#[source] crate::audit::WriteError),
}

impl App {
    /// Reads the files `config` names and assembles the gateway. Nothing listens yet; the
    /// audit log is opened only when everything else is usable.
    pub async fn build(config: ServeConfig) -> Result<App, Problems> {
        let mut problems = config.validate();
        let policy = problems.take(load_policy(&config.policy));
        let tls = problems.take(load_tls(config.tls.as_ref())).flatten();
        let extra_tls = problems.take(load_tls(config.extra_tls.as_ref())).flatten();
        let admin_tls = problems.take(load_admin_tls(config.admin_tls.as_ref()));
        check_shipping(&config, &mut problems);
        let token = load_admin_token(&config, &mut problems);
        let verifier = load_verifier(&config.audit, &mut problems);
        if let Some(policy) = &policy {
            check_webhook_secrets(policy, &mut problems);
        }
        let notify_client = problems.take(notify_client(&config));
        let (Some(policy), Some(notify_client), true) =
            (policy, notify_client, problems.is_empty())
        else {
            return Err(problems);
        };
        let audit = match &config.audit {
            AuditTarget::Log(settings) => {
                // Opening refuses a log whose evidence is missing (anchor, checkpoints, tree)
                // unless a new tree is asked for; the witnesses then refuse a log shorter
                // than they cosigned, and their submission tasks start.
                let (connect_to, extra_ca) = (&config.connect_to, config.extra_ca_pem.as_deref());
                let opened = match settings.open(connect_to, extra_ca).await {
                    Ok(audit) => settings.witness(audit, connect_to, extra_ca).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(audit) => audit,
                    Err(e) => {
                        problems.push(e);
                        return Err(problems);
                    }
                }
            }
            AuditTarget::Opened(audit) => audit.clone(),
            AuditTarget::Disabled => {
                tracing::warn!(
                    "auditing is DISABLED (--audit-log none): privileged calls leave no audit record"
                );
                Audit::disabled()
            }
        };
        let gateway = problems.take(build::gateway(&config, policy, audit.clone()));
        let Some(gateway) = gateway.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        problems.take(start_shipping(config.ship.as_ref(), &audit));
        if !problems.is_empty() {
            return Err(problems);
        }
        let console = audit
            .path()
            .map(|log| Console::lazy(log, audit.durable_seq(), verifier));
        let reloader = match &config.policy {
            PolicySource::File(path) => Some(Reloader::new(path.clone(), Arc::clone(&gateway)).0),
            PolicySource::Fixed { .. } => None,
        };
        let snapshots = match &config.state {
            StateConfig::Memory {
                budget_file: Some(file),
                ..
            } => Some(Snapshots::new(BudgetFile::new(file.clone()), &audit)),
            _ => None,
        };
        Ok(App {
            gateway,
            config,
            tls,
            extra_tls,
            admin: AdminOptions { token, console },
            admin_tls: admin_tls.flatten(),
            reloader,
            notify_client,
            snapshots,
        })
    }

    /// The gateway (tests look inside it).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` resolves, then drains (duplicates waiting on a claim are
    /// answered at once, nothing more is sent to Graph, readiness fails, calls already sent
    /// get the grace period to finish; see [`Gateway::begin_drain`]) and closes the audit log
    /// cleanly. The `start` record is written first: only a gateway that passed every
    /// start-up check says it started.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let App {
            gateway,
            config,
            tls,
            extra_tls,
            admin,
            admin_tls,
            reloader,
            notify_client,
            snapshots,
        } = self;
        let (stop_tx, stop) = watch::channel(false);
        let stopped = move || {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        };
        if let Some(reloader) = reloader {
            tokio::spawn(reloader.run(stopped()));
        }
        // The first token now, so the least-privilege report (readiness) is known early.
        tokio::spawn(build::prime_token(Arc::clone(&gateway)));
        // The allocator's free memory returned once the gateway is quiet.
        tokio::spawn(crate::server::trim::run(stopped()));
        // Approvals' deadlines (ttl, execute_within, run leases), on every replica.
        tokio::spawn(Arc::clone(&gateway).keep_approvals_on_time(stopped()));
        // Approvals' changes to the webhooks of the policy in force.
        let in_force = {
            let gateway = Arc::clone(&gateway);
            move || {
                let installed = gateway.installed();
                (
                    installed.policy.hash.clone(),
                    installed.policy.webhooks.clone(),
                )
            }
        };
        tokio::spawn(crate::notify::run(
            gateway.approvals().subscribe(),
            in_force,
            config.notify.clone(),
            notify_client,
            stopped(),
        ));
        let main_addr = listeners.main.local_addr()?;
        tracing::info!(listen = %main_addr, "graphgate listening");
        gateway
            .audit()
            .write_start(concat!("graphgate ", env!("CARGO_PKG_VERSION"), " started"))
            .await
            .map_err(RunError::Start)?;
        let admin_addr = listeners.admin.local_addr()?;
        let on_loopback = admin_addr.ip().is_loopback();
        if admin.token.is_none() && !on_loopback {
            tracing::warn!(admin_listen = %admin_addr, "no --admin-token-file: off loopback, /metrics and the audit console answer 401 until one is set");
        }
        if admin.token.is_some() && !on_loopback && admin_tls.is_none() {
            tracing::warn!(admin_listen = %admin_addr, "the admin listener is off loopback without TLS: the admin token crosses the network in clear (set --admin-tls-cert and --admin-tls-key)");
        }
        let scheme = if admin_tls.is_some() { "https" } else { "http" };
        tracing::info!(listen = %admin_addr, scheme, "admin endpoints (/metrics, /healthz, /readyz, /audit) listening");
        tokio::spawn(crate::admin::serve_with_tls(
            listeners.admin,
            Arc::clone(&gateway),
            admin,
            admin_tls,
            stopped(),
        ));
        let audit = gateway.audit().clone();
        // The memory store's budget counts, written off the request path while serving.
        let snapshots = snapshots.map(|s| {
            let (gateway, stop) = (Arc::clone(&gateway), stopped());
            tokio::spawn(async move { s.run(gateway.state(), stop).await })
        });
        let state = Arc::clone(&gateway);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        // The second (TLS) listener drains with the main one: both stop on the same signal.
        let extra = match (listeners.extra_tls, extra_tls) {
            (Some(listener), Some(extra_tls)) => {
                let addr = listener.local_addr()?;
                tracing::info!(listen = %addr, "graphgate listening (TLS, client certificates)");
                Some(tokio::spawn(crate::server::serve(
                    listener,
                    Some(extra_tls),
                    Arc::clone(&gateway),
                    config.server.clone(),
                    stopped(),
                )))
            }
            _ => None,
        };
        let grace = config.server.shutdown_grace;
        crate::server::serve(listeners.main, tls, gateway, config.server, shutdown).await?;
        if let Some(extra) = extra {
            extra
                .await
                .map_err(|e| RunError::Listener(std::io::Error::other(e)))??;
        }
        // Answers already given whose claims are still being settled in the state store
        // (see `StateStore::finish`): kept for duplicates before the process goes.
        if !state.state().settled(grace).await {
            tracing::warn!(
                "some answers were not kept in the state store within the grace period; duplicates of their keys get 409 until their windows end"
            );
        }
        // In-flight requests are done: make every queued record durable and close the log
        // (its anchor records the final head).
        audit.shutdown().await.map_err(RunError::Close)?;
        // Then the budget counts, exact now that nothing is in flight.
        if let Some(task) = snapshots
            && let Ok(snapshots) = task.await
        {
            snapshots.finish(state.state());
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds the gateway `config` describes and serves it on `listeners` until `shutdown`.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let app = App::build(config).await?;
    Ok(app.run(listeners, shutdown).await?)
}

/// Checks everything `config` names without writing or contacting anything (`serve
/// --check-config`): the policy, TLS files, the admin token, the audit keys and log
/// directory, the credential, the outbound client's CAs.
pub fn check(config: &ServeConfig) -> Problems {
    let mut problems = config.validate();
    let policy = problems.take(load_policy(&config.policy));
    problems.take(load_tls(config.tls.as_ref()));
    problems.take(load_tls(config.extra_tls.as_ref()));
    problems.take(load_admin_tls(config.admin_tls.as_ref()));
    check_shipping(config, &mut problems);
    load_admin_token(config, &mut problems);
    if let AuditTarget::Log(settings) = &config.audit {
        for problem in settings.check() {
            problems.push(problem);
        }
    }
    problems.take(config.credential.check());
    problems.take(crate::credential::authority_host(
        config.cloud,
        config.authority_host.as_deref(),
    ));
    problems.take(crate::upstream::build_client(
        &crate::upstream::UpstreamConfig {
            connect_to: config.connect_to.clone(),
            extra_ca_pem: config.extra_ca_pem.clone(),
            connect_timeout: config.limits.connect_timeout,
            pool_idle_timeout: std::time::Duration::from_secs(90),
        },
    ));
    problems.take(notify_client(config));
    if let Some(policy) = policy {
        check_webhook_secrets(&policy, &mut problems);
        for warning in &policy.warnings {
            tracing::warn!(%warning, "policy");
        }
    }
    problems
}

/// Every webhook's secret file must be readable at start-up (a reload that names an
/// unreadable one is sent unsigned never: its deliveries fail, counted and logged).
fn check_webhook_secrets(policy: &Policy, problems: &mut Problems) {
    for webhook in &policy.webhooks {
        if let Err(e) = crate::secret::read_file(&webhook.secret_file) {
            problems.push(format!(
                "approvals.webhooks secret_file {}: {e}",
                webhook.secret_file.display()
            ));
        }
    }
}

/// The client approval notifications go out with (the outbound CAs and connect-to rules).
fn notify_client(
    config: &ServeConfig,
) -> Result<crate::upstream::HttpClient, crate::upstream::UpstreamSetupError> {
    crate::upstream::side_client(
        &config.connect_to,
        config.extra_ca_pem.as_deref(),
        config.limits.connect_timeout,
    )
}

fn load_policy(source: &PolicySource) -> Result<Policy, crate::policy::PolicyError> {
    match source {
        PolicySource::File(path) => Policy::load(path),
        PolicySource::Fixed { yaml, label } => Policy::from_yaml(yaml, label),
    }
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The callers' listener's TLS configuration, read from its files.
fn load_tls(source: Option<&TlsSource>) -> Fallible<Option<Arc<rustls::ServerConfig>>> {
    Ok(match read_tls(source)? {
        None => None,
        Some(ListenerTls::Ready(config)) => Some(config),
        Some(ListenerTls::Pem(tls)) => Some(crate::tls::server_config(&tls)?),
    })
}

/// The admin listener's TLS configuration (HTTP/1.1, no client certificates).
fn load_admin_tls(source: Option<&TlsSource>) -> Fallible<Option<Arc<rustls::ServerConfig>>> {
    let named = |e: &dyn std::fmt::Display| format!("--admin-tls-cert/--admin-tls-key: {e}");
    Ok(match read_tls(source).map_err(|e| named(&e))? {
        None => None,
        Some(ListenerTls::Ready(config)) => Some(config),
        Some(ListenerTls::Pem(tls)) => Some(crate::admin::admin_tls(&tls).map_err(|e| named(&e))?),
    })
}

/// A listener's TLS, as its source gives it.
enum ListenerTls {
    /// Built already (tests).
    Ready(Arc<rustls::ServerConfig>),
    /// Read from its PEM files, to be built.
    Pem(crate::tls::ServerTls),
}

/// Reads the PEM files `source` names (the one place listener TLS files are read).
fn read_tls(source: Option<&TlsSource>) -> Fallible<Option<ListenerTls>> {
    let (cert, key, client_ca, client_crl) = match source {
        None => return Ok(None),
        Some(TlsSource::Ready(config)) => return Ok(Some(ListenerTls::Ready(Arc::clone(config)))),
        Some(TlsSource::Files {
            cert,
            key,
            client_ca,
            client_crl,
        }) => (cert, key, client_ca, client_crl),
    };
    let read = |p: &std::path::PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
    };
    Ok(Some(ListenerTls::Pem(crate::tls::ServerTls {
        cert_pem: read(cert)?,
        key_pem: crate::secret::Secret::new(read(key)?),
        client_ca_pem: client_ca.as_ref().map(read).transpose()?,
        client_crl: client_crl.clone(),
    })))
}

fn load_admin_token(config: &ServeConfig, problems: &mut Problems) -> Option<AdminToken> {
    let file = config.admin_token_file.as_deref()?;
    problems.take(AdminToken::from_file(file))
}

/// The checkpoints' public key, so the console can show whether the log still matches its
/// newest signed checkpoint.
fn load_verifier(audit: &AuditTarget, problems: &mut Problems) -> Option<NoteVerifier> {
    let AuditTarget::Log(settings) = audit else {
        return None;
    };
    let checkpoints = settings.checkpoints.as_ref()?;
    let signer = crate::audit::open::load_signer(&checkpoints.signing_key_file);
    problems.take(signer).map(|s| s.verifier())
}

/// Whether the collector's TLS files for shipping are usable (nothing is shipped in clear or
/// unchecked instead).
fn check_shipping(config: &ServeConfig, problems: &mut Problems) {
    if let Some(ship) = &config.ship {
        problems.take(crate::otlp::client_config(&ship.tls));
    }
}

/// Ships the audit log's records as OTLP log records as `config` says, when asked and the
/// log is a file.
fn start_shipping(
    config: Option<&crate::audit::ship::ShipConfig>,
    audit: &Audit,
) -> Result<(), crate::otlp::ExportSetupError> {
    let (Some(config), Some(log), Some(durable)) = (config, audit.path(), audit.durable_seq())
    else {
        return Ok(());
    };
    crate::audit::ship::spawn(log, durable, config)?;
    tracing::info!(
        from_seq = crate::audit::store::ship_cursor::read(log) + 1,
        "shipping audit records as OTLP log records"
    );
    Ok(())
}
