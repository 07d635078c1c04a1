//! The emulator's device model: each managed device's operating system, which device actions
//! each platform supports, and the `deviceActionResults` an accepted action leaves behind
//! (`pending`, then `done` after a configurable delay, or the end a test arranged).
//! Time is tokio's clock, so tests move an action from `pending` to `done` without sleeping.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A managed device's operating system, as Graph's `operatingSystem` spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperatingSystem {
    /// Windows (10/11, Surface Hub); the default.
    #[default]
    Windows,
    /// iOS and iPadOS.
    #[serde(rename = "iOS")]
    Ios,
    /// macOS.
    #[serde(rename = "macOS")]
    MacOs,
    /// Android.
    Android,
}

impl OperatingSystem {
    /// Every platform the emulator models.
    pub const ALL: [OperatingSystem; 4] = [Self::Windows, Self::Ios, Self::MacOs, Self::Android];

    /// Graph's spelling (`Windows`, `iOS`, `macOS`, `Android`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Windows => "Windows",
            Self::Ios => "iOS",
            Self::MacOs => "macOS",
            Self::Android => "Android",
        }
    }
}

impl fmt::Display for OperatingSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatingSystem {
    type Err = String;

    /// Case-insensitive: `windows`, `ios`, `macos`, `android`.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|os| os.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown operating system {s:?}: use windows, ios, macos or android")
            })
    }
}

/// One device of the emulated inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedDevice {
    /// Managed-device id (a GUID; compared case-insensitively).
    pub id: String,
    /// Its platform: decides which actions Graph accepts for it.
    pub os: OperatingSystem,
}

impl EmulatedDevice {
    /// A device `id` running `os`.
    pub fn new(id: impl Into<String>, os: OperatingSystem) -> Self {
        EmulatedDevice { id: id.into(), os }
    }
}

impl FromStr for EmulatedDevice {
    type Err = String;

    /// `ID[:OS]`, as `graphgate emulate --device` takes it; the OS defaults to Windows.
    fn from_str(spec: &str) -> Result<Self, String> {
        let (id, os) = match spec.split_once(':') {
            Some((id, os)) => (id, os.parse()?),
            None => (spec, OperatingSystem::Windows),
        };
        if !crate::microsoft::is_guid(id) {
            return Err(format!("device id {id:?} is not a GUID (ID[:OS])"));
        }
        Ok(EmulatedDevice::new(id.to_ascii_lowercase(), os))
    }
}

/// The secrets Graph discloses about a device (the beta secret-returning functions), made
/// up per device when the emulator starts and renewed by the matching `rotate*` action.
/// Tests read them with `Emulator::device_secrets` to look for them where they must not be.
#[derive(Debug, Clone)]
pub struct DeviceSecrets {
    /// What `getFileVaultKey()` answers (macOS).
    pub file_vault_key: crate::secret::Secret,
    /// The local administrator password `retrieveDeviceLocalAdminAccountDetail()` answers,
    /// base64-encoded there (Windows LAPS).
    pub local_admin_password: crate::secret::Secret,
    /// What `retrieveRecoveryLockPasscode()` answers (macOS).
    pub recovery_lock_passcode: crate::secret::Secret,
}

impl DeviceSecrets {
    /// Fresh, recognisable, random secrets.
    pub(crate) fn generate() -> Self {
        let fresh = |kind: &str| {
            let id = uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .to_ascii_uppercase();
            crate::secret::Secret::new(format!("{kind}-{id}"))
        };
        DeviceSecrets {
            file_vault_key: fresh("FVK"),
            local_admin_password: fresh("LAPS"),
            recovery_lock_passcode: fresh("RLP"),
        }
    }

    /// Renews the secret an action rotates, if it rotates one.
    pub(crate) fn rotate(&mut self, action: &str) {
        let fresh = Self::generate();
        match action {
            "rotateFileVaultKey" => self.file_vault_key = fresh.file_vault_key,
            "rotateLocalAdminPassword" => self.local_admin_password = fresh.local_admin_password,
            "rotateRecoveryLockPasscode" => {
                self.recovery_lock_passcode = fresh.recovery_lock_passcode;
            }
            _ => {}
        }
    }
}

/// Where an action's state goes, in Graph's `actionState` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionState {
    /// Queued for the device (or, as an arranged end, never leaving that state).
    Pending,
    /// The device carried it out.
    Done,
    /// The device reported failure.
    Failed,
}

/// A test's arrangement: actions matching `device` and `action` end in `state` instead of
/// `done`. Absent fields match anything. Applied when an action is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionOutcome {
    /// The managed-device id (any device when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The action's name as Graph spells it, e.g. `wipe` (any action when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// How it ends: `done`, `failed`, or `pending` (stays pending).
    pub state: ActionState,
}

impl ActionOutcome {
    fn matches(&self, device: &str, action: &str) -> bool {
        self.device
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(device))
            && self
                .action
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(action))
    }
}

/// The end an action accepted now will reach: the first arrangement matching it, else `done`.
pub(crate) fn planned_end(outcomes: &[ActionOutcome], device: &str, action: &str) -> ActionState {
    outcomes
        .iter()
        .find(|o| o.matches(device, action))
        .map_or(ActionState::Done, |o| o.state)
}

/// One entry of Graph's `deviceActionResults`, as Graph serialises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceActionResult {
    /// The action, e.g. `wipe`.
    pub action_name: String,
    /// `pending`, `done` or `failed`.
    pub action_state: ActionState,
    /// When it was accepted (RFC 3339, UTC).
    pub start_date_time: String,
    /// When its state last changed (RFC 3339, UTC).
    pub last_updated_date_time: String,
}

/// Most action results kept per device; the oldest go first.
pub(crate) const MAX_ACTION_RESULTS: usize = 100;

/// An accepted action, its state computed when read.
#[derive(Debug, Clone)]
pub(crate) struct ActionEntry {
    pub(crate) action: String,
    pub(crate) started: Instant,
    pub(crate) end: ActionState,
}

/// The emulator's clock: tokio's `Instant` (pausable in tests), shown as wall-clock time
/// counted from the moment the emulator started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall: chrono::DateTime<chrono::Utc>,
    base: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Clock {
            wall: crate::clock::utc_now(),
            base: Instant::now(),
        }
    }

    /// `at` as Graph's `DateTimeOffset` text.
    pub(crate) fn show(&self, at: Instant) -> String {
        let since =
            chrono::Duration::from_std(at.saturating_duration_since(self.base)).unwrap_or_default();
        (self.wall + since).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

impl ActionEntry {
    /// Its result as of `now`: `pending` until `delay` has passed, then its planned end.
    pub(crate) fn result(
        &self,
        now: Instant,
        delay: std::time::Duration,
        clock: &Clock,
    ) -> DeviceActionResult {
        let settled = self.started + delay;
        let (state, updated) = if self.end != ActionState::Pending && now >= settled {
            (self.end, settled)
        } else {
            (ActionState::Pending, self.started)
        };
        DeviceActionResult {
            action_name: self.action.clone(),
            action_state: state,
            start_date_time: clock.show(self.started),
            last_updated_date_time: clock.show(updated),
        }
    }
}

/// Whether Intune carries out `action` on a device running `os`. The table follows Intune's
/// device-action documentation (which platforms offer which remote action); actions it does
/// not list (sync, retire, wipe, delete, ...) run everywhere. Graph answers the rest with 400.
pub fn supports(os: OperatingSystem, action: &str) -> bool {
    use OperatingSystem::{Android, Ios, MacOs, Windows};
    let platforms: &[OperatingSystem] = match action {
        "cleanWindowsDevice"
        | "windowsDefenderScan"
        | "windowsDefenderUpdateSignatures"
        | "updateWindowsDeviceAccount"
        | "rotateLocalAdminPassword"
        | "rotateBitLockerKeys"
        | "triggerConfigurationManagerAction"
        | "initiateOnDemandProactiveRemediation"
        | "createDeviceLogCollectionRequest"
        | "retrieveDeviceLocalAdminAccountDetail" => &[Windows],
        "rotateFileVaultKey"
        | "getFileVaultKey"
        | "rotateRecoveryLockPasscode"
        | "retrieveRecoveryLockPasscode" => &[MacOs],
        "enableLostMode"
        | "disableLostMode"
        | "playLostModeSound"
        | "logoutSharedAppleDeviceActiveUser"
        | "deleteUserFromSharedAppleDevice" => &[Ios],
        "bypassActivationLock" | "shutDown" | "revokeAppleVppLicenses" => &[Ios, MacOs],
        "remoteLock" => &[Ios, MacOs, Android],
        "resetPasscode" | "recoverPasscode" | "sendCustomNotificationToCompanyPortal" => {
            &[Ios, Android]
        }
        "locateDevice" => &[Ios, Windows, Android],
        "setDeviceName" => &[Windows, Ios, MacOs],
        _ => return true,
    };
    platforms.contains(&os)
}

/// The device action a bulk `executeAction`'s `actionName` runs on each device, if it is one
/// the emulated platforms offer (`deprovision`, `disable`, ... are ChromeOS actions).
pub(crate) fn bulk_action(action_name: &str) -> Option<&'static str> {
    Some(match action_name {
        "retire" => "retire",
        "delete" => "delete",
        "wipe" => "wipe",
        "fullScan" | "quickScan" => "windowsDefenderScan",
        "signatureUpdate" => "windowsDefenderUpdateSignatures",
        "customTextNotification" => "sendCustomNotificationToCompanyPortal",
        "rebootNow" => "rebootNow",
        "setDeviceName" => "setDeviceName",
        "syncDevice" => "syncDevice",
        "initiateOnDemandProactiveRemediation" => "initiateOnDemandProactiveRemediation",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn device_specs_parse_with_a_default_os() {
        let d: EmulatedDevice = "0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB".parse().unwrap();
        assert_eq!(d.id, "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb");
        assert_eq!(d.os, OperatingSystem::Windows);
        let d: EmulatedDevice = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb:IOS".parse().unwrap();
        assert_eq!(d.os, OperatingSystem::Ios);
        assert!(
            "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb:beos"
                .parse::<EmulatedDevice>()
                .unwrap_err()
                .contains("windows, ios, macos or android")
        );
        assert!("x:ios".parse::<EmulatedDevice>().is_err());
        assert_eq!(
            serde_json::to_value(OperatingSystem::MacOs).unwrap(),
            "macOS"
        );
    }

    #[test]
    fn platforms_decide_which_actions_run() {
        assert!(supports(
            OperatingSystem::Windows,
            "updateWindowsDeviceAccount"
        ));
        assert!(!supports(
            OperatingSystem::Ios,
            "updateWindowsDeviceAccount"
        ));
        assert!(!supports(OperatingSystem::Windows, "remoteLock"));
        assert!(supports(OperatingSystem::Android, "remoteLock"));
        for os in OperatingSystem::ALL {
            assert!(supports(os, "wipe") && supports(os, "syncDevice"), "{os}");
        }
    }

    #[test]
    fn arranged_ends_match_by_device_and_action() {
        let rules = [
            ActionOutcome {
                device: Some("AA".into()),
                action: Some("wipe".into()),
                state: ActionState::Failed,
            },
            ActionOutcome {
                device: None,
                action: Some("retire".into()),
                state: ActionState::Pending,
            },
        ];
        assert_eq!(planned_end(&rules, "aa", "Wipe"), ActionState::Failed);
        assert_eq!(planned_end(&rules, "bb", "wipe"), ActionState::Done);
        assert_eq!(planned_end(&rules, "bb", "retire"), ActionState::Pending);
    }

    #[tokio::test(start_paused = true)]
    async fn an_action_is_pending_until_its_delay_has_passed() {
        let clock = Clock::start();
        let delay = Duration::from_secs(5);
        let entry = ActionEntry {
            action: "wipe".into(),
            started: Instant::now(),
            end: ActionState::Done,
        };
        let r = entry.result(Instant::now(), delay, &clock);
        assert_eq!(r.action_state, ActionState::Pending);
        assert_eq!(r.start_date_time, r.last_updated_date_time);
        tokio::time::advance(Duration::from_secs(5)).await;
        let r = entry.result(Instant::now(), delay, &clock);
        assert_eq!(r.action_state, ActionState::Done);
        assert_ne!(r.start_date_time, r.last_updated_date_time);
        let stuck = ActionEntry {
            end: ActionState::Pending,
            ..entry
        };
        assert_eq!(
            stuck.result(Instant::now(), delay, &clock).action_state,
            ActionState::Pending
        );
    }
}
