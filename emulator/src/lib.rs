//! graphgate's independent witness of Microsoft: a local HTTPS stand-in for Microsoft
//! Entra's token endpoint and Graph's Intune device actions, in every national cloud, so no
//! test or demo ever reaches Microsoft. It checks requests against Microsoft's CSDL and its
//! own reading of Microsoft's documentation ([`microsoft`]), never against the gateway's
//! code, which it does not depend on. Test and demo builds only: graphgate's `emulator`
//! feature, off in what ships. This file is its public face; the work is in the submodules.

mod callers;
mod claims;
mod clock;
pub mod csdl;
pub mod demo;
mod device_read;
mod devices;
mod entra;
mod entra_assertion;
mod entra_error;
mod faults;
mod graph;
mod graph_reply;
mod idp;
mod idp_control;
mod imds;
mod introspect;
mod maa;
pub mod microsoft;
mod operations;
mod paths;
mod permissions;
mod pki;
mod records;
mod secret;
mod server;
mod signing_key;
mod state;
mod strict_json;
mod test_credentials;
mod wire;
mod workload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use callers::{
    DEMO_API_URI, DEMO_USER_OID, DEMO_USER_UPN, ExposedApi, TestUser, entra_issuer,
    service_principal_id,
};
pub use devices::{
    ActionOutcome, ActionState, DeviceActionResult, DeviceSecrets, EmulatedDevice, OperatingSystem,
    supports,
};
pub use faults::{
    FAULT_SPEC_HELP, Fault, FaultKind, FaultSpec, Faults, FaultsError, MAX_FAULT_DELAY_MS, Target,
};
pub use idp::{JwksFault, JwksMode};
pub use maa::{ApprovalRequest, MaaConfig};
pub use pki::CA_NAME;
pub use records::{DeviceRecord, GraphRequestRecord, MAX_RECORDS, TokenRequestRecord};
pub use test_credentials::{FederatedIssuer, TestCertificate};
pub use wire::MAX_BODY_BYTES;
pub use workload::{
    KUBERNETES_HOST, KUBERNETES_ISSUER, KUBERNETES_JWKS_URL, SPIFFE_TRUST_DOMAIN, WorkloadIssuer,
    service_account_claims, svid_claims,
};

pub use microsoft::{ApiVersion, Cloud};
pub use secret::Secret;

use crate::microsoft::PRIV_OPS;

/// The demo tenant the default configuration serves.
pub const DEMO_TENANT_ID: &str = "6babcaad-604b-40ac-a9d7-9fd97c0b779f";
/// The demo app registration's client id.
pub const DEMO_CLIENT_ID: &str = "3f0c1d8e-5a4b-4c2d-9e8f-7a6b5c4d3e2f";
/// The demo app registration's client secret (it only opens the emulator).
pub const DEMO_CLIENT_SECRET: &str = "demo-client-secret-not-for-production";
/// The Windows devices of the default inventory.
pub const DEMO_DEVICE_IDS: &[&str] = &[
    "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb",
    "1c7a3e2f-2b3c-4d4e-9fa0-112233445566",
    "2d8b4f30-3c4d-4e5f-a0b1-223344556677",
    "3e9c5041-4d5e-4f60-b1c2-334455667788",
];
/// The iOS device of the default inventory.
pub const DEMO_IOS_DEVICE_ID: &str = "4fa0d152-5e6f-4071-82d3-445566778899";
/// The macOS device of the default inventory.
pub const DEMO_MACOS_DEVICE_ID: &str = "5ab1e263-6f70-4182-93e4-5566778899aa";
/// The Android device of the default inventory.
pub const DEMO_ANDROID_DEVICE_ID: &str = "6bc2f374-7081-4293-a4f5-66778899aabb";

/// How long an accepted action stays `pending` by default before it is `done`.
pub const DEFAULT_ACTION_COMPLETION: Duration = Duration::from_secs(5);

/// The default inventory: the Windows demo devices, then one iOS, one macOS and one Android.
pub fn demo_devices() -> Vec<EmulatedDevice> {
    let windows = DEMO_DEVICE_IDS
        .iter()
        .map(|id| EmulatedDevice::new(*id, OperatingSystem::Windows));
    windows
        .chain([
            EmulatedDevice::new(DEMO_IOS_DEVICE_ID, OperatingSystem::Ios),
            EmulatedDevice::new(DEMO_MACOS_DEVICE_ID, OperatingSystem::MacOs),
            EmulatedDevice::new(DEMO_ANDROID_DEVICE_ID, OperatingSystem::Android),
        ])
        .collect()
}

/// Entra's default access-token lifetime as `expires_in` reports it.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// An app registration in the emulated tenant.
#[derive(Debug, Clone)]
pub struct AppRegistration {
    /// Application (client) id.
    pub client_id: String,
    /// Its one client secret.
    pub client_secret: Secret,
    /// Application permissions granted (the token's `roles`).
    pub roles: Vec<String>,
}

/// What the emulator pretends exists.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The one tenant (directory) id served.
    pub tenant_id: String,
    /// App registrations in that tenant.
    pub apps: Vec<AppRegistration>,
    /// Access-token lifetime (`expires_in`, and `exp` - `iat`).
    pub token_lifetime: Duration,
    /// Managed-device inventory: ids (GUIDs; compared case-insensitively) and platforms.
    pub devices: Vec<EmulatedDevice>,
    /// How long an accepted action's `deviceActionResults` entry stays `pending` before it
    /// reaches its end (tokio time: tests advance a paused clock instead of sleeping).
    pub action_completion: Duration,
    /// Arranged ends for actions (`failed`, or `pending` for ever) by device and action;
    /// replaceable at run time with [`Emulator::set_action_outcomes`] or
    /// `PUT /_emulator/action-outcomes`.
    pub action_outcomes: Vec<ActionOutcome>,
    /// Further client secrets of registered apps (Entra holds several at once, which is
    /// how a rotation overlaps).
    pub additional_secrets: Vec<AdditionalSecret>,
    /// Certificates registered on apps (public part only), matched by thumbprint.
    pub certificates: Vec<RegisteredCertificate>,
    /// Federated identity credentials on apps (workload identity).
    pub federated_credentials: Vec<FederatedCredential>,
    /// Client ids of apps that are managed identities, served by IMDS; the first is the
    /// system-assigned one (asked for without `client_id`).
    pub managed_identities: Vec<String>,
    /// APIs exposed in the tenant (graphgate's own): a client-credentials request for
    /// `{app id URI}/.default` gets a token for it, for graphgate's callers.
    pub exposed_apis: Vec<ExposedApi>,
    /// Users of the tenant, for delegated tokens.
    pub users: Vec<TestUser>,
    /// Intune's Multi Admin Approval, holding these writes (`--maa`); off when `None`.
    pub maa: Option<MaaConfig>,
}

/// A further client secret of an app.
#[derive(Debug, Clone)]
pub struct AdditionalSecret {
    /// The app.
    pub client_id: String,
    /// The secret.
    pub secret: Secret,
}

/// A certificate credential on an app: the certificate (DER) whose key signs assertions.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    /// The app.
    pub client_id: String,
    /// The DER certificate.
    pub certificate_der: Vec<u8>,
}

/// A federated identity credential: tokens from `issuer` about `subject`, for `audience`,
/// signed by a key in `jwks`.
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    /// The app.
    pub client_id: String,
    /// The external issuer (`iss`), e.g. a cluster's OIDC issuer URL.
    pub issuer: String,
    /// The subject (`sub`), e.g. `system:serviceaccount:graphgate:graphgate`.
    pub subject: String,
    /// The audience (`aud`); Entra's default is `api://AzureADTokenExchange`.
    pub audience: String,
    /// The issuer's signing keys.
    pub jwks: jsonwebtoken::jwk::JwkSet,
}

/// The audience Entra expects in federated tokens by default.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            tenant_id: DEMO_TENANT_ID.to_owned(),
            apps: vec![AppRegistration {
                client_id: DEMO_CLIENT_ID.to_owned(),
                client_secret: Secret::new(DEMO_CLIENT_SECRET),
                roles: vec![PRIV_OPS.to_owned()],
            }],
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            devices: demo_devices(),
            action_completion: DEFAULT_ACTION_COMPLETION,
            action_outcomes: Vec::new(),
            additional_secrets: Vec::new(),
            certificates: Vec::new(),
            federated_credentials: Vec::new(),
            managed_identities: Vec::new(),
            exposed_apis: vec![ExposedApi {
                app_id_uri: DEMO_API_URI.to_owned(),
                client_id: DEMO_CLIENT_ID.to_owned(),
                token_version: 1,
            }],
            users: vec![TestUser {
                oid: DEMO_USER_OID.to_owned(),
                upn: DEMO_USER_UPN.to_owned(),
                name: "Adele Vance".to_owned(),
            }],
            maa: None,
        }
    }
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Generating the CA, the server certificate or the TLS configuration failed.
    #[error("emulator PKI: {0}")]
    Pki(String),
    /// Generating or using the token-signing key failed.
    #[error("emulator signing key: {0}")]
    Key(String),
    /// The configuration is unusable.
    #[error("emulator configuration: {0}")]
    Config(String),
}

/// A running (or ready to run) Entra + Graph emulator.
pub struct Emulator {
    state: Arc<state::State>,
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("tenant_id", &self.state.config.tenant_id)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Generates the CA, the server certificate and the token-signing key.
    pub fn new(config: EmulatorConfig) -> Result<Arc<Emulator>, EmulatorError> {
        validate(&config)?;
        for version in [
            crate::microsoft::ApiVersion::V1,
            crate::microsoft::ApiVersion::Beta,
        ] {
            csdl::Csdl::of(version).map_err(EmulatorError::Config)?;
        }
        let key = signing_key::signing_key().map_err(EmulatorError::Key)?;
        let pki = pki::generate()?;
        Ok(Arc::new(Emulator {
            state: Arc::new(state::State::new(config, key)),
            acceptor: tokio_rustls::TlsAcceptor::from(pki.server_config),
            ca_pem: pki.ca_pem,
        }))
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Serves HTTPS (HTTP/1.1 and h2 via ALPN) on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(
            self.state.clone(),
            self.acceptor.clone(),
            listener,
            shutdown,
        )
        .await
    }

    /// Serves the managed-identity endpoint (IMDS) over plain HTTP/1.1 on `listener` until
    /// `shutdown` resolves. Point `AZURE_POD_IDENTITY_AUTHORITY_HOST` at `http://{addr}`.
    pub async fn serve_imds(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        imds::serve(self.state.clone(), listener, shutdown).await
    }

    /// curl-style connect-to map sending every Graph and login host (aliases included) of
    /// every cloud, port 443, to `addr`: `graph.microsoft.com:443=127.0.0.1:PORT,...`.
    pub fn connect_to(addr: SocketAddr) -> String {
        pki::served_hosts()
            .iter()
            .map(|host| format!("{host}:443={addr}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Token requests received so far (every attempt, refused ones included).
    pub fn token_request_count(&self) -> u64 {
        self.state.token_count()
    }

    /// The last [`MAX_RECORDS`] token requests, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        self.state.token_requests()
    }

    /// The last [`MAX_RECORDS`] Graph requests, oldest first.
    pub fn graph_requests(&self) -> Vec<GraphRequestRecord> {
        self.state.graph_requests()
    }

    /// Graph requests received so far, counted when a request has been read in full and
    /// before any fault acts (a `slow` fault then holds it): tests wait on this to know a
    /// request is in Graph's hands, e.g. `rx.wait_for(|n| *n >= 1)`.
    pub fn graph_received(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.graph_received()
    }

    /// The device inventory, by id, with each device's action results as of now.
    pub fn devices(&self) -> Vec<DeviceRecord> {
        self.state.devices()
    }

    /// One device as of now (`id` compared case-insensitively).
    pub fn device(&self, id: &str) -> Option<DeviceRecord> {
        self.state.device(id)
    }

    /// A device's current secrets (what the secret-returning functions disclose), for tests
    /// that look for them where they must not be.
    pub fn device_secrets(&self, id: &str) -> Option<DeviceSecrets> {
        self.state.device_secrets(id)
    }

    /// Replaces the arranged action outcomes; they apply to actions accepted from now on.
    pub fn set_action_outcomes(&self, outcomes: Vec<ActionOutcome>) {
        self.state.set_action_outcomes(outcomes);
    }

    /// Test hook: Entra's discovery documents carry these members (e.g. another `issuer`,
    /// a `jwks_uri` on another host) instead of their own; `None` restores them.
    pub fn set_entra_discovery_override(&self, members: Option<serde_json::Value>) {
        self.state.set_discovery_override(members);
    }

    /// Test hook: every device read answers `deviceActionResults` with `answer`, whatever
    /// it is (a hostile Graph: huge, or with long strings); `None` restores the devices' own.
    pub fn set_action_results_answer(&self, answer: Option<serde_json::Value>) {
        self.state.set_results_answer(answer);
    }

    /// Multi Admin Approval's requests so far, oldest first.
    pub fn maa_requests(&self) -> Vec<ApprovalRequest> {
        self.state.maa.requests()
    }

    /// What Multi Admin Approval saw go wrong: a re-send twice, with another body, before
    /// approval, or with an unknown code. Tests assert it is empty.
    pub fn maa_violations(&self) -> Vec<String> {
        self.state.maa.violations()
    }

    /// Test hook (a hostile Graph): Multi Admin Approval's holds carry `code` as their
    /// `x-msft-approval-code`; `None` restores their own.
    pub fn set_maa_code_override(&self, code: Option<String>) {
        self.state.maa.set_code_override(code);
    }

    /// Test hook (a hostile Graph): every read of an `operationApprovalRequest` answers
    /// `doc`; `None` restores the requests' own.
    pub fn set_maa_document_override(&self, doc: Option<serde_json::Value>) {
        self.state.maa.set_document_override(doc);
    }

    /// A person's decision on approval request `code` in the Intune portal: `approve`,
    /// `reject`, `expire` or `cancel`.
    pub fn maa_decide(&self, code: &str, decision: &str) -> Result<ApprovalRequest, String> {
        self.state.maa.decide(code, decision)
    }

    /// The arranged action outcomes in force.
    pub fn action_outcomes(&self) -> Vec<ActionOutcome> {
        self.state.action_outcomes()
    }

    /// Replaces the injected faults (takes effect from the next request; counts start
    /// afresh). Hand-built values can be checked first with [`Faults::validate`].
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// The faults in force, `times` showing the requests each has left.
    pub fn faults(&self) -> Faults {
        self.state.faults().snapshot()
    }

    /// Test hook: a token for a registered app and `cloud`, signed like the token endpoint's,
    /// valid for `lifetime_secs` from now (negative: expired that long ago). Records nothing.
    pub fn mint_token(
        &self,
        cloud: Cloud,
        client_id: &str,
        lifetime_secs: i64,
    ) -> Result<String, EmulatorError> {
        let app = self
            .state
            .config
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .ok_or_else(|| EmulatorError::Config(format!("no app registration '{client_id}'")))?;
        let now = crate::clock::utc_now().timestamp();
        claims::mint(
            self.state.key,
            &self.state.config.tenant_id,
            app,
            cloud,
            now,
            lifetime_secs,
        )
        .map_err(EmulatorError::Key)
    }
}

/// Refuses configurations the emulator could not serve faithfully.
fn validate(config: &EmulatorConfig) -> Result<(), EmulatorError> {
    let mut problems = Vec::new();
    if !crate::microsoft::is_guid(&config.tenant_id) {
        problems.push(format!("tenant_id '{}' is not a GUID", config.tenant_id));
    }
    for d in config
        .devices
        .iter()
        .filter(|d| !crate::microsoft::is_guid(&d.id))
    {
        problems.push(format!("device id '{}' is not a GUID", d.id));
    }
    let mut ids: Vec<String> = config
        .devices
        .iter()
        .map(|d| d.id.to_ascii_lowercase())
        .collect();
    ids.sort_unstable();
    for pair in ids.windows(2).filter(|p| p[0] == p[1]) {
        problems.push(format!("device id '{}' is listed twice", pair[0]));
    }
    let known = |id: &str| {
        config
            .apps
            .iter()
            .any(|a| a.client_id.eq_ignore_ascii_case(id))
    };
    let referenced = config
        .additional_secrets
        .iter()
        .map(|s| &s.client_id)
        .chain(config.certificates.iter().map(|c| &c.client_id))
        .chain(config.federated_credentials.iter().map(|f| &f.client_id))
        .chain(config.managed_identities.iter());
    for id in referenced.filter(|id| !known(id)) {
        problems.push(format!("a credential names unregistered app '{id}'"));
    }
    for app in config.apps.iter().filter(|a| a.client_id.is_empty()) {
        problems.push(format!(
            "an app registration has an empty client_id (roles {:?})",
            app.roles
        ));
    }
    if let Some(maa) = &config.maa
        && !MaaConfig::STATUSES.contains(&maa.status)
    {
        problems.push(format!(
            "MAA status {} is not one a hold is answered with (400, 403 or 412)",
            maa.status
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EmulatorError::Config(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_covers_every_host_once() {
        let map = Emulator::connect_to("127.0.0.1:8443".parse().unwrap());
        assert!(map.starts_with(
            "graph.microsoft.com:443=127.0.0.1:8443,login.microsoftonline.com:443=127.0.0.1:8443"
        ));
        for host in [
            "login.usgovcloudapi.net",
            "dod-graph.microsoft.us",
            "login.chinacloudapi.cn",
        ] {
            assert_eq!(map.matches(&format!("{host}:443=")).count(), 1, "{map}");
        }
    }

    #[test]
    fn default_config_is_the_demo_tenant_and_valid() {
        let c = EmulatorConfig::default();
        assert_eq!(c.tenant_id, DEMO_TENANT_ID);
        assert_eq!(c.apps[0].roles, vec![PRIV_OPS.to_owned()]);
        assert_eq!(c.token_lifetime.as_secs(), 3599);
        assert!(
            c.devices
                .iter()
                .all(|d| crate::microsoft::is_guid(&d.id) && d.id == d.id.to_ascii_lowercase())
        );
        let oses: Vec<OperatingSystem> = c.devices.iter().map(|d| d.os).collect();
        for os in OperatingSystem::ALL {
            assert!(oses.contains(&os), "{os} in the demo inventory");
        }
        assert!(validate(&c).is_ok());
        let bad = EmulatorConfig {
            tenant_id: "x".into(),
            devices: vec![
                EmulatedDevice::new("y", OperatingSystem::Ios),
                EmulatedDevice::new(DEMO_IOS_DEVICE_ID, OperatingSystem::Ios),
                EmulatedDevice::new(DEMO_IOS_DEVICE_ID.to_uppercase(), OperatingSystem::MacOs),
            ],
            ..c
        };
        let err = validate(&bad).unwrap_err().to_string();
        assert!(
            err.contains("tenant_id 'x'")
                && err.contains("device id 'y'")
                && err.contains(&format!("'{DEMO_IOS_DEVICE_ID}' is listed twice")),
            "{err}"
        );
    }
}
