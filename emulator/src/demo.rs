//! The demo `graphgate serve --emulator` runs against this emulator: a demo caller with a
//! published API key, and its policy (graphgate's YAML), which lets it update device accounts
//! and wipe one device, only keeping user data, a few times an hour; nothing else.

use sha2::{Digest, Sha256};

/// The demo caller's API key (emulator mode only; the README prints it).
pub const DEMO_API_KEY: &str = "demo-api-key";
/// The demo caller's name.
pub const DEMO_CALLER: &str = "demo-caller";
/// The device the demo policy lets the demo caller wipe (the last demo Windows device).
pub const DEMO_WIPEABLE_DEVICE_ID: &str = "3e9c5041-4d5e-4f60-b1c2-334455667788";

/// The demo policy, as graphgate's `policy.yaml` text.
pub fn policy_yaml() -> String {
    let key_sha256: String = Sha256::digest(DEMO_API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "version: 1
callers:
  - name: {DEMO_CALLER}
    api_key_sha256: \"{key_sha256}\"
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
"
    )
}
