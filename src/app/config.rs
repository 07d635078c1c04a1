//! What `graphgate serve` runs with, typed: [`ServeConfig`], built by the binary from its
//! flags and the environment (read once, there) or by a test. Files it names are read by
//! [`super::App::build`] (or only checked, by [`super::check`]); every problem found on the
//! way is collected in [`Problems`] and reported at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::audit::open::AuditSettings;
use crate::audit::reconcile::ReconcileConfig;
use crate::audit::ship::ShipConfig;
use crate::cloud::Cloud;
use crate::credential::Credential;
use crate::gateway::Limits;
use crate::server::ServerLimits;
use crate::state::StateConfig;
use crate::upstream::ConnectRule;

/// Everything a running gateway needs, typed.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The national cloud this deployment serves.
    pub cloud: Cloud,
    /// The app's Entra credential.
    pub credential: Credential,
    /// `AZURE_AUTHORITY_HOST`, if set.
    pub authority_host: Option<String>,
    /// Connect-to overrides for outbound connections (tests and demos).
    pub connect_to: Vec<ConnectRule>,
    /// Extra CA certificates (PEM) trusted for outbound TLS.
    pub extra_ca_pem: Option<String>,
    /// No token is used within this margin of its expiry.
    pub token_expiry_margin: Duration,
    /// Per-request bounds.
    pub limits: Limits,
    /// Connection bounds of the callers' listener.
    pub server: ServerLimits,
    /// TLS on the callers' listener (plain HTTP without).
    pub tls: Option<TlsSource>,
    /// A second callers' listener, serving TLS (client certificates: mTLS callers) beside
    /// the main one (`serve --emulator` serves its mTLS demo caller there); bound by the
    /// caller as [`super::Listeners::extra_tls`].
    pub extra_tls: Option<TlsSource>,
    /// The policy.
    pub policy: PolicySource,
    /// The audit log.
    pub audit: AuditTarget,
    /// Follow up accepted device actions to their final state (`--reconcile-outcomes`).
    pub reconcile: Option<ReconcileConfig>,
    /// Where idempotency claims, limits, budgets and pacing live, and under which deployment
    /// name (`--state-namespace`; by default derived from the app and the policy file, see
    /// [`crate::state::default_deployment`]).
    pub state: StateConfig,
    /// The admin token file (`/metrics` and the console off loopback).
    pub admin_token_file: Option<PathBuf>,
    /// TLS on the admin listener (`--admin-tls-cert`/`--admin-tls-key`; plain HTTP without),
    /// so the admin token never crosses the network in clear. No client certificates.
    pub admin_tls: Option<TlsSource>,
    /// Ship audit records as OTLP log records (OTLP export is configured and `--audit-ship`
    /// is on): the service name and the collector's TLS.
    pub ship: Option<ShipConfig>,
    /// How approval notifications go to the policy's webhooks (`--console-url`,
    /// `--webhook-queue`, `--webhook-timeout-secs`).
    pub notify: crate::notify::Settings,
}

impl ServeConfig {
    /// What is wrong with the configuration itself, before any file is read: every
    /// problem (the app's tenant and client ids so far).
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::default();
        for problem in self.credential.id_problems() {
            problems.push(problem);
        }
        problems
    }
}

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A file, followed by the reloader (SIGHUP and file changes).
    File(PathBuf),
    /// A policy fixed for the process's life (`serve --emulator`'s demo policy): its YAML,
    /// and what error messages call it.
    Fixed {
        /// The policy file's text.
        yaml: String,
        /// Its name in error messages.
        label: String,
    },
}

/// The callers' listener's TLS.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files: certificate chain, key, and for mTLS the client CAs and their CRLs.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
        /// CAs whose client certificates are accepted (mTLS).
        client_ca: Option<PathBuf>,
        /// CRLs from those CAs, re-read when the file changes.
        client_crl: Option<PathBuf>,
    },
    /// A server configuration built already (tests).
    Ready(Arc<rustls::ServerConfig>),
}

/// The audit log a gateway writes.
#[derive(Clone)]
pub enum AuditTarget {
    /// A log to open, as configured.
    Log(Box<AuditSettings>),
    /// A log opened already (tests: a log over a failing sink).
    Opened(Audit),
    /// None at all (`--audit-log none`, benchmarks only).
    Disabled,
}

impl fmt::Debug for AuditTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditTarget::Log(s) => f.debug_tuple("Log").field(&s.log).finish(),
            AuditTarget::Opened(a) => f.debug_tuple("Opened").field(&a.status()).finish(),
            AuditTarget::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Every problem found while configuring or starting, reported together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records one problem.
    pub fn push(&mut self, problem: impl fmt::Display) {
        self.0.push(problem.to_string());
    }

    /// The value, or `None` with its error recorded.
    pub fn take<T, E: fmt::Display>(&mut self, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// Adds every problem of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// `Ok(value)` when none was found, else every problem.
    pub fn or_ok<T>(self, value: T) -> Result<T, Problems> {
        match self.is_empty() {
            true => Ok(value),
            false => Err(self),
        }
    }
}

/// One problem a line.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
