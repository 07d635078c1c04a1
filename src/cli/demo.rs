//! `graphgate serve --emulator`: the emulator in-process with its demo registration, the demo
//! caller and policy, and what points the gateway at the emulator exactly as it would point
//! at Microsoft.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use graphgate::cloud::Cloud;
use graphgate::credential::Credential;
use graphgate::policy::Policy;
use graphgate::secret::Secret;
use graphgate::upstream::{self, ConnectRule};
use graphgate_emulator::demo::DEMO_API_KEY;
use graphgate_emulator::{Emulator, EmulatorConfig};

use super::Fallible;

/// A running in-process emulator and what the gateway needs to reach it.
pub struct RunningEmulator {
    /// Connect-to rules sending every cloud host to it.
    pub connect_to: Vec<ConnectRule>,
    /// Its CA certificate (PEM), to trust for those hosts.
    pub ca_pem: String,
    /// The demo app's credential.
    pub credential: Credential,
}

/// Starts the emulator with `config` on an ephemeral loopback port until `shutdown`.
pub async fn start_emulator(
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Fallible<RunningEmulator> {
    let app = config.apps.first();
    let credential = Credential::ClientSecret {
        tenant_id: config.tenant_id.clone(),
        client_id: app.map(|a| a.client_id.clone()).unwrap_or_default(),
        secret: Secret::new(app.map_or("", |a| a.client_secret.expose())),
    };
    let emulator = Emulator::new(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connect_to = upstream::parse_connect_to(&Emulator::connect_to(addr))?;
    let ca_pem = emulator.ca_pem().to_owned();
    tokio::spawn(Arc::clone(&emulator).serve(listener, shutdown));
    Ok(RunningEmulator {
        connect_to,
        ca_pem,
        credential,
    })
}

/// What error messages call the demo policy.
pub const DEMO_POLICY_LABEL: &str = "(built-in demo policy)";

/// The policy `serve --emulator` uses when no `--policy` is given.
#[cfg(test)]
fn demo_policy() -> Result<Policy, graphgate::policy::PolicyError> {
    Policy::from_yaml(&graphgate_emulator::demo::policy_yaml(), DEMO_POLICY_LABEL)
}

/// Whether `policy` has a caller with the demo API key (a `--policy` file may not).
pub fn accepts_demo_key(policy: &Policy) -> bool {
    use sha2::{Digest, Sha256};
    policy
        .api_key_caller(&Sha256::digest(DEMO_API_KEY.as_bytes()).into())
        .is_some()
}

/// The ready-to-paste request a new user runs first, with `key` as the API key.
pub fn curl_example(gateway: SocketAddr, cloud: Cloud, key: &str) -> String {
    let device = graphgate_emulator::DEMO_DEVICE_IDS
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
    #![allow(clippy::unwrap_used)]
    use graphgate::gateway::explain::evaluate;
    use graphgate_emulator::demo::{DEMO_CALLER, DEMO_WIPEABLE_DEVICE_ID};

    use super::*;

    /// The demo's destructive rule: only its device, only keeping user data; the other
    /// destructive operations stay denied.
    #[test]
    fn the_demo_policy_guards_its_one_destructive_action() {
        let policy = demo_policy().unwrap();
        assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
        assert!(accepts_demo_key(&policy));
        let decide = |request: &str, body: Option<&str>| {
            let (eval, _) = evaluate(
                &policy,
                DEMO_CALLER,
                request,
                body.map(str::as_bytes),
                Default::default(),
            )
            .unwrap();
            (eval.allowed(), eval.rule_name().map(str::to_owned))
        };
        let wipe = |device: &str, body: &str| {
            let request = format!("POST /v1.0/deviceManagement/managedDevices/{device}/wipe");
            decide(&request, Some(body))
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
        assert!(!wipe(graphgate_emulator::DEMO_DEVICE_IDS[0], keep).0);
        assert!(graphgate_emulator::DEMO_DEVICE_IDS.contains(&DEMO_WIPEABLE_DEVICE_ID));
        let device = format!("/v1.0/deviceManagement/managedDevices/{DEMO_WIPEABLE_DEVICE_ID}");
        for (request, body) in [
            (format!("POST {device}/retire"), None),
            (format!("POST {device}/cleanWindowsDevice"), Some(keep)),
            (format!("DELETE {device}"), None),
        ] {
            assert!(!decide(&request, body).0, "{request}");
        }
    }
}
