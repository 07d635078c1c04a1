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

/// The device the demo policy lets the demo caller wipe (the last demo Windows device).
pub const DEMO_WIPEABLE_DEVICE_ID: &str = "3e9c5041-4d5e-4f60-b1c2-334455667788";

/// The policy used by `serve --emulator` when no `--policy` is given: the demo caller may
/// update device accounts, and (a destructive action, guarded as a real policy would guard
/// it) wipe one device, only keeping user data, a few times an hour. Nothing else: every
/// other catalog operation is denied by default.
pub fn demo_policy() -> Result<Policy, PolicyError> {
    let text = format!(
        "version: 1
callers:
  - name: {DEMO_CALLER}
    api_key_sha256: \"{}\"
rules:
  - name: demo-may-update-device-accounts
    callers: [{DEMO_CALLER}]
    operations: [managedDevices.updateWindowsDeviceAccount]
  - name: demo-may-wipe-one-device-keeping-user-data
    callers: [{DEMO_CALLER}]
    operations: [managedDevices.wipe]
    devices: [\"{DEMO_WIPEABLE_DEVICE_ID}\"]
    when:
      - {{ param: keepUserData, equals: true }}
    rate_limit: 5 per hour
",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::explain::evaluate;

    /// The demo's destructive rule: only its device, only keeping user data; the other
    /// destructive operations stay denied.
    #[test]
    fn the_demo_policy_guards_its_one_destructive_action() {
        let policy = demo_policy().unwrap();
        assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
        let wipe = |device: &str, body: &str| {
            let request = format!("POST /v1.0/deviceManagement/managedDevices/{device}/wipe");
            let (eval, _) = evaluate(
                &policy,
                DEMO_CALLER,
                &request,
                Some(body.as_bytes()),
                Default::default(),
            )
            .unwrap();
            (
                eval.decision.allowed,
                eval.decision.rule_name().map(str::to_owned),
            )
        };
        let keep = r#"{"keepUserData":true}"#;
        assert_eq!(
            wipe(DEMO_WIPEABLE_DEVICE_ID, keep),
            (
                true,
                Some("demo-may-wipe-one-device-keeping-user-data".into())
            )
        );
        assert!(!wipe(DEMO_WIPEABLE_DEVICE_ID, r#"{"keepUserData":false}"#).0);
        assert!(!wipe(DEMO_WIPEABLE_DEVICE_ID, "{}").0);
        assert!(!wipe(emulator::DEMO_DEVICE_IDS[0], keep).0);
        assert!(emulator::DEMO_DEVICE_IDS.contains(&DEMO_WIPEABLE_DEVICE_ID));
        let device = format!("/v1.0/deviceManagement/managedDevices/{DEMO_WIPEABLE_DEVICE_ID}");
        for (request, body) in [
            (format!("POST {device}/retire"), None),
            (format!("POST {device}/cleanWindowsDevice"), Some(keep)),
            (format!("DELETE {device}"), None),
        ] {
            let body = body.map(str::as_bytes);
            let (eval, _) =
                evaluate(&policy, DEMO_CALLER, &request, body, Default::default()).unwrap();
            assert!(!eval.decision.allowed, "{request}");
        }
    }
}
