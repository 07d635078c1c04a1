//! `graphgate serve --emulator`: the emulator in-process with its demo registration, what
//! points the gateway at it exactly as it would point at Microsoft, the demo callers' files
//! ([`files`]) and the ready-made requests the banner prints ([`calls`]).

pub mod calls;
pub mod files;

use std::fmt::Write;
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
use calls::{Call, Identity};
use files::DemoFiles;

/// A running in-process emulator and what the gateway needs to reach it.
pub struct RunningEmulator {
    /// The emulator (it mints the demo service account's tokens).
    pub emulator: Arc<Emulator>,
    /// Where it listens.
    pub addr: SocketAddr,
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
        emulator,
        addr,
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

/// Where the banner's requests go.
pub struct Addresses {
    /// The callers' plain-HTTP listener.
    pub gateway: SocketAddr,
    /// The callers' TLS listener (client certificates).
    pub tls: SocketAddr,
    /// The emulator.
    pub emulator: SocketAddr,
}

/// What `serve --emulator` prints once it listens: where everything is, and a request of
/// each demo identity the policy in force allows (or that it allows none), ready to paste.
pub fn banner(
    policy: &Policy,
    policy_path: &std::path::Path,
    demo_policy: bool,
    at: &Addresses,
    files: &DemoFiles,
    cloud: Cloud,
    credential: &Credential,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "graphgate is listening on http://{} (emulator mode: Entra and Graph are emulated in-process)",
        at.gateway
    );
    let _ = writeln!(
        out,
        "  and on https://{} for callers with client certificates (mTLS; the demo CA signed both ends)",
        at.tls
    );
    let _ = writeln!(
        out,
        "  emulator (Entra, Graph, a Kubernetes API server): https://{}, tenant {}, app {}; CA {}",
        at.emulator,
        credential.tenant_id(),
        credential.client_id(),
        files.emulator_ca.display()
    );
    let which = match demo_policy {
        true => {
            "the demo policy: edit it and the gateway reloads it; --print-policy prints the original"
        }
        false => "yours",
    };
    let _ = writeln!(out, "  policy: {} ({which})", policy_path.display());
    let _ = writeln!(
        out,
        "  demo callers' files (certificates, a service-account token renewed every 30 minutes): {}",
        files.dir.display()
    );
    let calls: Vec<Call> = Identity::ALL
        .iter()
        .filter_map(|i| calls::find(policy, *i))
        .collect();
    if calls.is_empty() {
        let _ = writeln!(
            out,
            "\nThis policy allows no request any demo identity can make: it names none of {}, {} and {} in a caller with a rule the emulator could run. Try a request with `graphgate policy explain`, or call with your callers' own credentials.",
            Identity::ApiKey.describe(),
            Identity::Certificate.describe(),
            Identity::ServiceAccount.describe()
        );
    }
    for call in &calls {
        let _ = writeln!(
            out,
            "\nAs {}, caller {:?} may run {} (rule {:?}):",
            call.identity.describe(),
            call.caller,
            call.op.name,
            call.rule
        );
        let _ = writeln!(out, "{}", curl(call, at, files));
    }
    let _ = write!(
        out,
        "(cloud: {cloud}; the emulator answers for {})",
        cloud.endpoints().graph_host
    );
    out
}

/// `call` as a curl command, one option group a line.
pub fn curl(call: &Call, at: &Addresses, files: &DemoFiles) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let path = |p: &std::path::Path| quote(&p.display().to_string());
    let method = match call.op.invocation.method_name() {
        "GET" => String::new(),
        m => format!(" -X {m}"),
    };
    let mut lines = Vec::new();
    match call.identity {
        Identity::ApiKey | Identity::ServiceAccount => lines.push(format!(
            "curl -i{method} {}",
            quote(&format!("http://{}{}", at.gateway, call.path))
        )),
        Identity::Certificate => lines.push(format!(
            "curl -i{method} {}",
            quote(&format!("https://{}{}", at.tls, call.path))
        )),
    }
    lines.push(match call.identity {
        Identity::ApiKey => format!("-H 'Authorization: Bearer {DEMO_API_KEY}'"),
        Identity::Certificate => format!(
            "--cacert {} --cert {} --key {}",
            path(&files.ca),
            path(&files.client_cert),
            path(&files.client_key)
        ),
        Identity::ServiceAccount => {
            format!("-H \"Authorization: Bearer $(cat {})\"", path(&files.token))
        }
    });
    let stated: Vec<String> = [
        ("X-Graphgate-Initiator", call.initiator),
        ("X-Graphgate-Reason", call.reason),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!("-H {}", quote(&format!("{name}: {}", value?)))))
    .collect();
    if !stated.is_empty() {
        lines.push(stated.join(" "));
    }
    if let Some(body) = &call.body {
        lines.push(format!(
            "-H 'Content-Type: application/json' -d {}",
            quote(body)
        ));
    }
    lines.join(" \\\n  ")
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
        assert_eq!(
            calls::caller_of(&policy, Identity::ApiKey),
            policy.caller_index(DEMO_CALLER)
        );
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
