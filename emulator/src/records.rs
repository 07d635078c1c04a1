//! What the emulator remembers: bounded logs of token and Graph requests, and the
//! managed-device inventory with the last settings applied to each device.
//! No record ever holds a client secret or a bearer token.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use serde_json::Value;

use super::devices::{DeviceActionResult, OperatingSystem};

/// Most requests of each kind kept; older records are dropped first.
pub const MAX_RECORDS: usize = 10_000;

/// One request to the Entra token endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRequestRecord {
    /// The `Host` header (or HTTP/2 `:authority`), as sent.
    pub host: String,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// The `{tenant}` path segment.
    pub tenant: String,
    /// The client id (from the body or HTTP Basic).
    pub client_id: Option<String>,
    /// The `scope` parameter.
    pub scope: Option<String>,
    /// The `grant_type` parameter.
    pub grant_type: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The AADSTS error number, on failure.
    pub error_code: Option<u32>,
    /// How the client proved itself, when it did: `client_secret#N` (N = 0 for the app's
    /// own secret, then the additional ones in order), `certificate PS256 x5t#S256=...`,
    /// `certificate RS256 x5t=...` (with ` x5c` when a chain was sent),
    /// `federated <issuer> <subject>`, `managed_identity`.
    pub credential: Option<String>,
}

/// One request to a Graph host.
#[derive(Debug, Clone, Serialize)]
pub struct GraphRequestRecord {
    /// HTTP method.
    pub method: String,
    /// The `Host` header (or HTTP/2 `:authority`), as sent.
    pub host: String,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// Request path and query, as sent.
    pub path: String,
    /// Request headers (lower-case names), `authorization` left out.
    pub headers: BTreeMap<String, String>,
    /// The body as received (lossy UTF-8).
    pub body: String,
    /// Claims of the bearer token, when its signature verified (even if it was then refused
    /// for its lifetime or audience).
    pub token_claims: Option<serde_json::Value>,
    /// HTTP status answered.
    pub status: u16,
    /// When it was answered (Tokio's clock: a paused clock in a test shows there).
    #[serde(skip)]
    pub answered: crate::clock::Instant,
}

/// One managed device: its platform, the actions it was asked to carry out, and the last
/// non-secret account settings applied to it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Managed-device id (lower-case GUID).
    pub id: String,
    /// Its operating system (`Windows`, `iOS`, `macOS`, `Android`).
    pub operating_system: OperatingSystem,
    /// Graph's `deviceActionResults`, oldest first, as of the moment this record was read.
    pub action_results: Vec<DeviceActionResult>,
    /// `deviceAccountEmail` last applied.
    pub device_account_email: Option<String>,
    /// `exchangeServer` last applied.
    pub exchange_server: Option<String>,
    /// `sessionInitiationProtocalAddress` last applied (Graph's spelling).
    pub session_initiation_protocal_address: Option<String>,
    /// `calendarSyncEnabled` last applied.
    pub calendar_sync_enabled: Option<bool>,
    /// `passwordRotationEnabled` last applied.
    pub password_rotation_enabled: Option<bool>,
    /// The `@odata.type` of the last `deviceAccount`, if one was named.
    pub device_account_type: Option<String>,
    /// Whether the last update carried a device-account password (never the value).
    pub password_supplied: bool,
    /// The last action applied.
    pub last_action: Option<String>,
    /// Successful actions applied so far.
    pub update_count: u64,
}

impl DeviceRecord {
    /// A device running `os` with nothing applied yet.
    pub fn new(id: &str, os: OperatingSystem) -> Self {
        DeviceRecord {
            id: id.to_ascii_lowercase(),
            operating_system: os,
            ..Default::default()
        }
    }

    /// Counts one successful action; `updateWindowsDeviceAccount` also records the settings
    /// of its (already checked) body, the password only as "supplied".
    pub(crate) fn apply(&mut self, action: &str, body: &Value) {
        self.last_action = Some(action.to_owned());
        self.update_count += 1;
        if action == "updateWindowsDeviceAccount" {
            self.apply_account(&body["updateWindowsDeviceAccountActionParameter"]);
        }
    }

    fn apply_account(&mut self, params: &Value) {
        let text = |name: &str| params[name].as_str().map(str::to_owned);
        let flag = |name: &str| params[name].as_bool();
        self.device_account_email = text("deviceAccountEmail");
        self.exchange_server = text("exchangeServer");
        self.session_initiation_protocal_address = text("sessionInitiationProtocalAddress");
        self.calendar_sync_enabled = flag("calendarSyncEnabled");
        self.password_rotation_enabled = flag("passwordRotationEnabled");
        let account = &params["deviceAccount"];
        // Recorded in one spelling, however the caller cased it and with or without '#'.
        self.device_account_type = account["@odata.type"].as_str().map(|t| {
            let t = t.trim_start_matches('#');
            [
                "windowsDeviceAccount",
                "windowsDeviceADAccount",
                "windowsDeviceAzureADAccount",
            ]
            .iter()
            .map(|name| format!("microsoft.graph.{name}"))
            .find(|known| known.eq_ignore_ascii_case(t))
            .unwrap_or_else(|| t.to_owned())
        });
        self.password_supplied = account["password"].is_string();
    }
}

/// A log that keeps the last `cap` entries.
#[derive(Debug)]
pub(crate) struct Bounded<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T: Clone> Bounded<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            items: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() >= self.cap {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_the_newest() {
        let mut log = Bounded::new(3);
        for i in 0..5 {
            log.push(i);
        }
        assert_eq!(log.to_vec(), vec![2, 3, 4]);
    }

    #[test]
    fn apply_keeps_settings_but_not_the_password() {
        let mut dev = DeviceRecord::new(
            "0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB",
            OperatingSystem::Windows,
        );
        let params = serde_json::json!({"updateWindowsDeviceAccountActionParameter": {
            "deviceAccountEmail": "room@contoso.com",
            "deviceAccount": {"@odata.type": "#Microsoft.Graph.WindowsDeviceAzureADAccount", "password": "hunter2"},
            "calendarSyncEnabled": true
        }});
        dev.apply("updateWindowsDeviceAccount", &params);
        assert_eq!(dev.id, "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb");
        assert_eq!(
            dev.device_account_email.as_deref(),
            Some("room@contoso.com")
        );
        assert_eq!(dev.calendar_sync_enabled, Some(true));
        assert!(dev.password_supplied);
        assert_eq!(
            dev.device_account_type.as_deref(),
            Some("microsoft.graph.windowsDeviceAzureADAccount")
        );
        assert_eq!(dev.update_count, 1);
        assert!(!serde_json::to_string(&dev).unwrap().contains("hunter2"));
    }
}
