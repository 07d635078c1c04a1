//! The demo `graphgate serve --emulator` runs against this emulator: three demo callers, one
//! of each kind (a published API key, a client certificate, a Kubernetes service account's
//! token from the emulated cluster), and their policy (graphgate's YAML): update device
//! accounts and wipe one device keeping user data (the API key), sync devices (the
//! certificate), quick Defender scans (the service account); nothing else.

use sha2::{Digest, Sha256};

use crate::KUBERNETES_ISSUER;

/// The demo caller's API key (emulator mode only; the README prints it).
pub const DEMO_API_KEY: &str = "demo-api-key";
/// The demo caller's name.
pub const DEMO_CALLER: &str = "demo-caller";
/// The device the demo policy lets the demo caller wipe (the last demo Windows device).
pub const DEMO_WIPEABLE_DEVICE_ID: &str = "3e9c5041-4d5e-4f60-b1c2-334455667788";
/// The demo mTLS caller's name.
pub const DEMO_MTLS_CALLER: &str = "demo-mtls-caller";
/// The URI SAN of the demo mTLS caller's client certificate (a SPIFFE id).
pub const DEMO_MTLS_URI_SAN: &str = "spiffe://corp.example/ns/demo/sa/demo-mtls-caller";
/// The demo Kubernetes caller's name.
pub const DEMO_K8S_CALLER: &str = "demo-k8s-caller";
/// The namespace of the demo Kubernetes service account.
pub const DEMO_K8S_NAMESPACE: &str = "demo";
/// The demo Kubernetes service account's name.
pub const DEMO_K8S_SERVICE_ACCOUNT: &str = "demo-k8s-caller";
/// The audience the demo policy accepts on callers' tokens.
pub const DEMO_TOKEN_AUDIENCE: &str = "graphgate";

/// The `sub` of the demo service account's tokens.
pub fn demo_k8s_subject() -> String {
    format!("system:serviceaccount:{DEMO_K8S_NAMESPACE}:{DEMO_K8S_SERVICE_ACCOUNT}")
}

/// The demo policy, as graphgate's `policy.yaml` text.
pub fn policy_yaml() -> String {
    let key_sha256: String = Sha256::digest(DEMO_API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let subject = demo_k8s_subject();
    format!(
        "# graphgate's demo policy (`graphgate serve --emulator`; `--print-policy` prints it).
# Deny by default: each rule below allows one caller some operations, nothing else.
version: 1
# The emulated cluster's service-account issuer; its keys come from its discovery document.
jwt_issuers:
  - issuer: \"{KUBERNETES_ISSUER}\"
    audiences: [{DEMO_TOKEN_AUDIENCE}]
    keys: {{ discovery: \"{KUBERNETES_ISSUER}/.well-known/openid-configuration\" }}
callers:
  # An API key (`Authorization: Bearer {DEMO_API_KEY}`), stored as its SHA-256.
  - name: {DEMO_CALLER}
    api_key_sha256: \"{key_sha256}\"
  # A client certificate (mTLS) naming this SPIFFE id, from the demo CA.
  - name: {DEMO_MTLS_CALLER}
    mtls: {{ uri_san: \"{DEMO_MTLS_URI_SAN}\" }}
  # A Kubernetes service account's projected token (`Authorization: Bearer <token>`).
  - name: {DEMO_K8S_CALLER}
    jwt: {{ issuer: \"{KUBERNETES_ISSUER}\", subject: \"{subject}\" }}
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
  - name: demo-mtls-may-sync-devices
    callers: [{DEMO_MTLS_CALLER}]
    operations: [managedDevices.syncDevice]
  - name: demo-k8s-may-run-quick-scans
    callers: [{DEMO_K8S_CALLER}]
    operations: [managedDevices.windowsDefenderScan]
    when:
      - {{ param: quickScan, equals: true }}
"
    )
}
