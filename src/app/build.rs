//! Assembles the gateway from its configuration: outbound client, credential, token
//! broker, state store, policy and audit log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{PolicySource, ServeConfig};
use crate::audit::Audit;
use crate::credential;
use crate::gateway::Gateway;
use crate::policy::Policy;
use crate::ratelimit::ledger;
use crate::state::{BudgetFile, Namespace, RecordFile, StateConfig, StateStore};
use crate::token::{TokenBroker, TokenKey};
use crate::upstream::{self, UpstreamConfig};

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

/// Builds the gateway `config` describes, enforcing `policy` and writing `audit` (the state
/// store is connected to lazily: a gateway starts while Redis is down).
pub(super) fn gateway(
    config: &ServeConfig,
    policy: Policy,
    audit: Audit,
) -> Result<Arc<Gateway>, StartError> {
    let http = upstream::build_client(&UpstreamConfig {
        connect_to: config.connect_to.clone(),
        extra_ca_pem: config.extra_ca_pem.clone(),
        connect_timeout: config.limits.connect_timeout,
        pool_idle_timeout: Duration::from_secs(90),
    })?;
    let endpoints = config.cloud.endpoints();
    let authority_host =
        credential::authority_host(config.cloud, config.authority_host.as_deref())?;
    let key = TokenKey {
        authority: authority_host.clone(),
        tenant: config.credential.tenant_id().to_owned(),
        client: config.credential.client_id().to_owned(),
        scope: endpoints.scope.to_owned(),
    };
    config.credential.check()?;
    let source = credential::source(
        http.clone(),
        config.credential.clone(),
        config.cloud,
        authority_host,
    )?;
    let broker = TokenBroker::new(key, source, config.token_expiry_margin);
    // The deployment's name in shared keys: given, or derived from the app and the policy
    // file's path, so replicas of one deployment share their counters and claims and another
    // deployment of the tenant on the same Redis does not.
    let client_id = config.credential.client_id();
    let policy_path = match &config.policy {
        PolicySource::File(path) => Some(path.as_path()),
        PolicySource::Fixed { .. } => None,
    };
    let deployment = config.state.deployment().map_or_else(
        || crate::state::default_deployment(client_id, policy_path),
        str::to_owned,
    );
    let tenant = config.credential.tenant_id();
    let namespace = Namespace::new(config.cloud, tenant, client_id, &deployment);
    let claims = config.limits.claims();
    let store = match &config.state {
        // The memory store's budget counts: its snapshot, and the audit log's intents since.
        StateConfig::Memory {
            budget_file: Some(file),
            approvals_file,
        } => {
            let records = approvals_file.clone().map(RecordFile::new);
            let file = BudgetFile::new(file.clone());
            ledger::restore(&file, records, &audit, namespace, claims)?
        }
        state => StateStore::open(state, namespace, claims)?,
    };
    tracing::info!(
        cloud = %config.cloud,
        graph_host = endpoints.graph_host,
        authority = %broker.key().authority,
        credential = config.credential.kind(),
        client_id = config.credential.client_id(),
        callers = policy.callers.len(),
        rules = policy.rules.len(),
        policy_hash = %policy.hash,
        state = %store.describe(),
        state_namespace = %deployment,
        audit = audit.path().map_or_else(|| audit.status().to_owned(), |p| p.display().to_string()),
        "gateway configured"
    );
    let reconciler = config.reconcile.as_ref().map(|reconcile| {
        let handle = crate::audit::reconcile::spawn(
            audit.clone(),
            broker.clone(),
            http.clone(),
            config.cloud,
            reconcile.clone(),
        );
        audit.set_reconciler(handle.clone());
        handle
    });
    let gateway = Arc::new(
        Gateway::with_store(
            policy,
            config.cloud,
            broker,
            http,
            config.limits.clone(),
            store,
        )
        .with_audit(audit),
    );
    // An action run under an approval: what the device says of it is recorded there.
    if let Some(handle) = reconciler {
        tokio::spawn(Arc::clone(&gateway).record_device_actions(handle.completions()));
    }
    Ok(gateway)
}

/// Obtains the first token ahead of any request and logs the outcome, so the
/// least-privilege report (`Gateway::least_privilege`) is known before traffic arrives.
pub(super) async fn prime_token(gateway: Arc<Gateway>) {
    match gateway.broker().token().await {
        Ok(_) => tracing::info!("first token obtained"),
        Err(err) => {
            tracing::warn!(error = %err, "could not obtain the first token; retrying on the first request")
        }
    }
}
