//! Which application permissions the emulated Graph accepts for each operation: what
//! Microsoft documents plus what the service was seen to demand where the two differ
//! (wipe and rotateLocalAdminPassword need PrivilegedOperations.All; see the reference
//! notes). The emulator's own table, not the gateway's catalog.

use crate::microsoft::PRIV_OPS;

const RW: &str = "DeviceManagementManagedDevices.ReadWrite.All";
const CONFIG_RW: &str = "DeviceManagementConfiguration.ReadWrite.All";
const CONFIG_READ: &str = "DeviceManagementConfiguration.Read.All";

/// The roles any one of which lets an app run operation `name` (`delete` for the DELETE of
/// a device).
pub(crate) fn accepted_roles(name: &str) -> &'static [&'static str] {
    match name {
        "delete"
        | "requestRemoteAssistance"
        | "createDeviceLogCollectionRequest"
        | "rotateRecoveryLockPasscode" => &[RW, PRIV_OPS],
        "rotateBitLockerKeys" => &[CONFIG_RW, RW, PRIV_OPS],
        "sendCustomNotificationToCompanyPortal" => &[CONFIG_RW, PRIV_OPS],
        "getFileVaultKey" | "initiateOnDemandProactiveRemediation" => &[CONFIG_READ, PRIV_OPS],
        // Documented as ReadWrite.All, refused with it on Windows (docs-contrib#2079);
        // documented as Configuration.Read.All, the service demands PrivilegedOperations
        // (docs-contrib#87).
        _ => &[PRIV_OPS],
    }
}
