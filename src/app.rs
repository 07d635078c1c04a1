//! Assembles a running gateway from typed settings: outbound client, credential, token
//! broker, policy. `main` reads the environment and flags; everything after is here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Audit;
use crate::cloud::Cloud;
use crate::credential::{self, Credential};
use crate::gateway::{Gateway, Limits};
use crate::policy::Policy;
use crate::state::{Namespace, StateConfig, StateStore};
use crate::token::{TokenBroker, TokenKey};
use crate::upstream::{self, ConnectRule, UpstreamConfig};

/// Everything needed to start a gateway, already parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The national cloud this deployment serves.
    pub cloud: Cloud,
    /// The app's Entra credential.
    pub credential: Credential,
    /// `AZURE_AUTHORITY_HOST`, if set.
    pub authority_host: Option<String>,
    /// Connect-to overrides.
    pub connect_to: Vec<ConnectRule>,
    /// Extra trusted CA certificates (PEM).
    pub extra_ca_pem: Option<String>,
    /// No token is used within this margin of its expiry.
    pub token_expiry_margin: Duration,
    /// Request bounds.
    pub limits: Limits,
    /// The audit log (or, only when explicitly asked for, [`Audit::disabled`]).
    pub audit: Audit,
    /// Follow up accepted device actions to their final state (`--reconcile-outcomes`).
    pub reconcile: Option<crate::audit::reconcile::ReconcileConfig>,
}

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The credential or authority is unusable.
    #[error(transparent)]
    Credential(#[from] credential::CredentialError),
    /// The outbound client could not be built.
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamSetupError),
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The state store setting is unusable.
    #[error(transparent)]
    State(#[from] crate::state::StateSetupError),
    /// A file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Builds the gateway with its state in this process: nothing is contacted until the first
/// request.
pub fn build(settings: &Settings, policy: Policy) -> Result<Arc<Gateway>, StartError> {
    build_with_state(settings, policy, &StateConfig::default())
}

/// Builds the gateway with the state store `state` names (Redis is connected to lazily).
pub fn build_with_state(
    settings: &Settings,
    policy: Policy,
    state: &StateConfig,
) -> Result<Arc<Gateway>, StartError> {
    let http = upstream::build_client(&UpstreamConfig {
        connect_to: settings.connect_to.clone(),
        extra_ca_pem: settings.extra_ca_pem.clone(),
        connect_timeout: settings.limits.connect_timeout,
        pool_idle_timeout: Duration::from_secs(90),
    })?;
    let endpoints = settings.cloud.endpoints();
    let authority_host =
        credential::authority_host(settings.cloud, settings.authority_host.as_deref())?;
    let key = TokenKey {
        authority: authority_host.clone(),
        tenant: settings.credential.tenant_id().to_owned(),
        client: settings.credential.client_id().to_owned(),
        scope: endpoints.scope.to_owned(),
    };
    settings.credential.check()?;
    let source = credential::source(
        http.clone(),
        settings.credential.clone(),
        settings.cloud,
        authority_host,
    )?;
    let broker = TokenBroker::new(key, source, settings.token_expiry_margin);
    // The deployment's name in shared keys: given, or derived from the app (and, as `serve`
    // passes it, the policy file's path).
    let client_id = settings.credential.client_id();
    let deployment = state.deployment().map_or_else(
        || crate::state::default_deployment(client_id, None),
        str::to_owned,
    );
    let namespace = Namespace::new(
        settings.cloud,
        settings.credential.tenant_id(),
        client_id,
        &deployment,
    );
    let store = StateStore::open(state, namespace, settings.limits.claims())?;
    tracing::info!(
        cloud = %settings.cloud,
        graph_host = endpoints.graph_host,
        authority = %broker.key().authority,
        credential = settings.credential.kind(),
        client_id = settings.credential.client_id(),
        callers = policy.callers.len(),
        rules = policy.rules.len(),
        policy_hash = %policy.hash,
        state = %store.describe(),
        state_namespace = %deployment,
        audit = settings.audit.path().map_or_else(|| settings.audit.status().to_owned(), |p| p.display().to_string()),
        "gateway configured"
    );
    if let Some(config) = &settings.reconcile {
        let handle = crate::audit::reconcile::spawn(
            settings.audit.clone(),
            broker.clone(),
            http.clone(),
            settings.cloud,
            config.clone(),
        );
        settings.audit.set_reconciler(handle);
    }
    Ok(Arc::new(
        Gateway::with_store(
            policy,
            settings.cloud,
            broker,
            http,
            settings.limits.clone(),
            store,
        )
        .with_audit(settings.audit.clone()),
    ))
}

/// Obtains the first token ahead of any request and logs the outcome, so the
/// least-privilege report (`Gateway::least_privilege`) is known before traffic arrives.
pub async fn prime_token(gateway: Arc<Gateway>) {
    match gateway.broker().token().await {
        Ok(_) => tracing::info!("first token obtained"),
        Err(err) => {
            tracing::warn!(error = %err, "could not obtain the first token; retrying on the first request")
        }
    }
}
