//! `graphgate serve --emulator`: the emulator in-process, a demo caller and policy, and the
//! settings that point the gateway at the emulator exactly as it would point at Microsoft.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cloud::Cloud;
use crate::credential::Credential;
use crate::emulator::{self, Emulator, EmulatorConfig};
use crate::identity::api_key_sha256;
use crate::policy::{Policy, PolicyError};
use crate::secret::Secret;
use crate::upstream::{self, ConnectRule};

/// The demo caller's API key (emulator mode only).
pub const DEMO_API_KEY: &str = "demo-api-key";
/// The demo caller's name.
pub const DEMO_CALLER: &str = "demo-caller";

/// The policy used by `serve --emulator` when no `--policy` is given.
pub fn demo_policy() -> Result<Policy, PolicyError> {
    let text = format!(
        "version: 1\ncallers:\n  - name: {DEMO_CALLER}\n    api_key_sha256: \"{}\"\nrules:\n  - name: demo-may-update-device-accounts\n    callers: [{DEMO_CALLER}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
        api_key_sha256(DEMO_API_KEY)
    );
    Policy::from_yaml(&text, "(built-in demo policy)")
}

/// A running in-process emulator and what the gateway needs to reach it.
pub struct RunningEmulator {
    /// The emulator.
    pub emulator: Arc<Emulator>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connect-to rules sending every cloud host to it.
    pub connect_to: Vec<ConnectRule>,
    /// The demo app's credential.
    pub credential: Credential,
}

/// Starts the emulator with its demo registration on an ephemeral loopback port.
pub async fn start_emulator(
    config: EmulatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningEmulator, Box<dyn std::error::Error + Send + Sync>> {
    let credential = Credential::ClientSecret {
        tenant_id: config.tenant_id.clone(),
        client_id: config
            .apps
            .first()
            .map(|a| a.client_id.clone())
            .unwrap_or_default(),
        secret: config
            .apps
            .first()
            .map(|a| a.client_secret.clone())
            .unwrap_or_else(|| Secret::new("")),
    };
    let emulator = Emulator::new(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connect_to = upstream::parse_connect_to(&Emulator::connect_to(addr))?;
    tokio::spawn(Arc::clone(&emulator).serve(listener, shutdown));
    Ok(RunningEmulator {
        emulator,
        addr,
        connect_to,
        credential,
    })
}

/// Whether `policy` has a caller with the demo API key (a `--policy` file may not).
pub fn accepts_demo_key(policy: &Policy) -> bool {
    use sha2::{Digest, Sha256};
    policy
        .api_key_caller(&Sha256::digest(DEMO_API_KEY.as_bytes()).into())
        .is_some()
}

/// The ready-to-paste request a new user runs first.
pub fn curl_example(gateway: SocketAddr, cloud: Cloud) -> String {
    curl_example_with_key(gateway, cloud, DEMO_API_KEY)
}

/// The ready-to-paste request, with `key` as the API key.
pub fn curl_example_with_key(gateway: SocketAddr, cloud: Cloud, key: &str) -> String {
    let device = emulator::DEMO_DEVICE_IDS
        .first()
        .copied()
        .unwrap_or_default();
    format!(
        "curl -i -X POST 'http://{gateway}/v1.0/deviceManagement/managedDevices/{device}/updateWindowsDeviceAccount' \\\n  \
         -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n  \
         -d '{{\"updateWindowsDeviceAccountActionParameter\":{{\"deviceAccount\":{{\"@odata.type\":\"#microsoft.graph.windowsDeviceAzureADAccount\",\"password\":\"Demo-Passw0rd!\",\"userPrincipalName\":\"room1@contoso.com\"}},\"deviceAccountEmail\":\"room1@contoso.com\",\"exchangeServer\":\"outlook.office365.com\",\"passwordRotationEnabled\":true,\"calendarSyncEnabled\":true,\"sessionInitiationProtocalAddress\":\"sip:room1@contoso.com\"}}}}'\n\
         (cloud: {cloud}; the emulator answers for {})",
        cloud.endpoints().graph_host
    )
}
