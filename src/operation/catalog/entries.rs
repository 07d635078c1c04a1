//! The catalog's entries: every v1.0 operation bound to managedDevice (and user), the
//! privileged beta-only actions, the secret-returning beta functions and the bulk
//! `executeAction`. Parameters follow Microsoft's CSDL (v1.0) and the beta SDK (beta);
//! permissions follow `shared/reference/intune-actions.md`. A test checks the v1.0 entries
//! against the CSDL excerpt the emulator ships.

use super::{
    ApiVersion, Binding, BulkAction, CONFIGURATION_READ, CONFIGURATION_RW, Invocation,
    MANAGED_DEVICES_RW, Operation, PRIV_OPS, Tier, UPDATE_WINDOWS_DEVICE_ACCOUNT_SIMPLE,
};
use crate::operation::schema::{ComplexType, Prop, Ty};

const BOTH: &[ApiVersion] = &[ApiVersion::V1, ApiVersion::Beta];
const BETA: &[ApiVersion] = &[ApiVersion::Beta];

static WINDOWS_DEVICE_AD_ACCOUNT: ComplexType = ComplexType {
    name: "microsoft.graph.windowsDeviceADAccount",
    props: &[
        Prop::secret("password", Ty::String),
        Prop::new("domainName", Ty::String),
        Prop::new("userName", Ty::String),
    ],
    derived: &[],
};

static WINDOWS_DEVICE_AZURE_AD_ACCOUNT: ComplexType = ComplexType {
    name: "microsoft.graph.windowsDeviceAzureADAccount",
    props: &[
        Prop::secret("password", Ty::String),
        Prop::new("userPrincipalName", Ty::String).address(),
    ],
    derived: &[],
};

static WINDOWS_DEVICE_ACCOUNT: ComplexType = ComplexType {
    name: "microsoft.graph.windowsDeviceAccount",
    props: &[Prop::secret("password", Ty::String)],
    derived: &[&WINDOWS_DEVICE_AD_ACCOUNT, &WINDOWS_DEVICE_AZURE_AD_ACCOUNT],
};

static UPDATE_WINDOWS_DEVICE_ACCOUNT_PARAMETER: ComplexType = ComplexType {
    name: "microsoft.graph.updateWindowsDeviceAccountActionParameter",
    props: &[
        Prop::new("calendarSyncEnabled", Ty::Bool),
        Prop::new("deviceAccount", Ty::Complex(&WINDOWS_DEVICE_ACCOUNT)),
        Prop::new("deviceAccountEmail", Ty::String).address(),
        Prop::new("exchangeServer", Ty::String),
        Prop::new("passwordRotationEnabled", Ty::Bool),
        // Graph's real wire name carries this misspelling.
        Prop::new("sessionInitiationProtocalAddress", Ty::String),
    ],
    derived: &[],
};

static CONFIGURATION_MANAGER_ACTION: ComplexType = ComplexType {
    name: "microsoft.graph.configurationManagerAction",
    props: &[Prop::required(
        "action",
        Ty::Enum(&[
            "refreshMachinePolicy",
            "refreshUserPolicy",
            "wakeUpClient",
            "appEvaluation",
            "quickScan",
            "fullScan",
            "windowsDefenderUpdateSignatures",
        ]),
    )],
    derived: &[],
};

static DEVICE_LOG_COLLECTION_REQUEST: ComplexType = ComplexType {
    name: "microsoft.graph.deviceLogCollectionRequest",
    props: &[
        Prop::new("id", Ty::String),
        Prop::required(
            "templateType",
            Ty::Enum(&["predefined", "unknownFutureValue"]),
        ),
    ],
    derived: &[],
};

/// The `actionName`s graphgate offers in a bulk `executeAction`: the catalog operation each
/// runs on every listed device, and the parameter it implies.
pub static BULK_ACTIONS: &[BulkAction] = &[
    BulkAction::new("retire", "managedDevices.retire", None),
    BulkAction::new("delete", "managedDevices.delete", None),
    BulkAction::new("wipe", "managedDevices.wipe", None),
    BulkAction::new(
        "fullScan",
        "managedDevices.windowsDefenderScan",
        Some(("quickScan", false)),
    ),
    BulkAction::new(
        "quickScan",
        "managedDevices.windowsDefenderScan",
        Some(("quickScan", true)),
    ),
    BulkAction::new(
        "signatureUpdate",
        "managedDevices.windowsDefenderUpdateSignatures",
        None,
    ),
    BulkAction::new(
        "customTextNotification",
        "managedDevices.sendCustomNotificationToCompanyPortal",
        None,
    ),
    BulkAction::new("rebootNow", "managedDevices.rebootNow", None),
    BulkAction::new("setDeviceName", "managedDevices.setDeviceName", None),
    BulkAction::new("syncDevice", "managedDevices.syncDevice", None),
    BulkAction::new(
        "initiateOnDemandProactiveRemediation",
        "managedDevices.initiateOnDemandProactiveRemediation",
        None,
    ),
];

/// `executeAction`'s `actionName` values (`managedDeviceRemoteAction`, beta).
pub(crate) const REMOTE_ACTIONS: &[&str] = &[
    "retire",
    "delete",
    "fullScan",
    "quickScan",
    "signatureUpdate",
    "wipe",
    "customTextNotification",
    "rebootNow",
    "setDeviceName",
    "syncDevice",
    "deprovision",
    "disable",
    "reenable",
    "moveDeviceToOrganizationalUnit",
    "activateDeviceEsim",
    "collectDiagnostics",
    "initiateMobileDeviceManagementKeyRecovery",
    "initiateOnDemandProactiveRemediation",
    "initiateDeviceAttestation",
    "unknownFutureValue",
];

const WIPE_V1: &[Prop] = &[
    Prop::new("keepEnrollmentData", Ty::Bool),
    Prop::new("keepUserData", Ty::Bool),
    Prop::secret("macOsUnlockCode", Ty::String),
    Prop::new("persistEsimDataPlan", Ty::Bool),
];

const WIPE_BETA: &[Prop] = &[
    Prop::new("keepEnrollmentData", Ty::Bool),
    Prop::new("keepUserData", Ty::Bool),
    Prop::secret("macOsUnlockCode", Ty::String),
    Prop::new("persistEsimDataPlan", Ty::Bool),
    Prop::new(
        "obliterationBehavior",
        Ty::Enum(&[
            "default",
            "doNotObliterate",
            "obliterateWithWarning",
            "always",
            "unknownFutureValue",
        ]),
    ),
    Prop::new("useProtectedWipe", Ty::Bool),
];

/// An action on one device, in both versions, no parameters, PrivilegedOperations.All.
const fn device_action(name: &'static str, action: &'static str, tier: Tier) -> Operation {
    Operation {
        name,
        action,
        invocation: Invocation::Action,
        binding: Binding::Device,
        tier,
        documented_permission: Some(PRIV_OPS),
        permission: PRIV_OPS,
        versions: BOTH,
        success_status: 204,
        params: &[],
        beta_params: None,
        wrapper: None,
        simple: None,
        maa_policy_type: None,
    }
}

/// `op`, which Intune's Multi Admin Approval holds as the device action `policy_type`.
const fn maa(op: Operation, policy_type: &'static str) -> Operation {
    Operation {
        maa_policy_type: Some(policy_type),
        ..op
    }
}

const fn beta(op: Operation) -> Operation {
    Operation {
        versions: BETA,
        ..op
    }
}

const fn with_params(op: Operation, params: &'static [Prop]) -> Operation {
    Operation { params, ..op }
}

const fn permission(
    op: Operation,
    documented: Option<&'static str>,
    needed: &'static str,
) -> Operation {
    Operation {
        documented_permission: documented,
        permission: needed,
        ..op
    }
}

const fn function(
    name: &'static str,
    action: &'static str,
    documented: Option<&'static str>,
    needed: &'static str,
) -> Operation {
    Operation {
        invocation: Invocation::Function,
        success_status: 200,
        ..permission(
            beta(device_action(name, action, Tier::Disclosure)),
            documented,
            needed,
        )
    }
}

use Tier::{Destructive, Disruptive, Routine};

/// Every operation graphgate knows.
pub static CATALOG: &[Operation] = &[
    // v1.0 (and beta): the 18 actions bound to managedDevice, the DELETE, the user action.
    maa(
        device_action("managedDevices.retire", "retire", Destructive),
        "deviceRetire",
    ),
    // Documented as ReadWrite.All; refused with it on Windows (docs-contrib#2079).
    Operation {
        beta_params: Some(WIPE_BETA),
        ..maa(
            permission(
                with_params(
                    device_action("managedDevices.wipe", "wipe", Destructive),
                    WIPE_V1,
                ),
                Some(MANAGED_DEVICES_RW),
                PRIV_OPS,
            ),
            "deviceWipe",
        )
    },
    Operation {
        invocation: Invocation::Delete,
        ..maa(
            permission(
                device_action("managedDevices.delete", "delete", Destructive),
                Some(MANAGED_DEVICES_RW),
                MANAGED_DEVICES_RW,
            ),
            "deviceDelete",
        )
    },
    device_action("managedDevices.resetPasscode", "resetPasscode", Disruptive),
    device_action("managedDevices.remoteLock", "remoteLock", Disruptive),
    permission(
        device_action(
            "managedDevices.requestRemoteAssistance",
            "requestRemoteAssistance",
            Disruptive,
        ),
        Some(MANAGED_DEVICES_RW),
        MANAGED_DEVICES_RW,
    ),
    device_action(
        "managedDevices.disableLostMode",
        "disableLostMode",
        Disruptive,
    ),
    device_action("managedDevices.locateDevice", "locateDevice", Disruptive),
    device_action(
        "managedDevices.bypassActivationLock",
        "bypassActivationLock",
        Disruptive,
    ),
    device_action("managedDevices.rebootNow", "rebootNow", Disruptive),
    device_action("managedDevices.shutDown", "shutDown", Disruptive),
    device_action(
        "managedDevices.recoverPasscode",
        "recoverPasscode",
        Disruptive,
    ),
    with_params(
        device_action(
            "managedDevices.cleanWindowsDevice",
            "cleanWindowsDevice",
            Destructive,
        ),
        &[Prop::required("keepUserData", Ty::Bool)],
    ),
    device_action(
        "managedDevices.logoutSharedAppleDeviceActiveUser",
        "logoutSharedAppleDeviceActiveUser",
        Disruptive,
    ),
    with_params(
        device_action(
            "managedDevices.deleteUserFromSharedAppleDevice",
            "deleteUserFromSharedAppleDevice",
            Disruptive,
        ),
        &[Prop::new("userPrincipalName", Ty::String).address()],
    ),
    device_action("managedDevices.syncDevice", "syncDevice", Routine),
    with_params(
        device_action(
            "managedDevices.windowsDefenderScan",
            "windowsDefenderScan",
            Routine,
        ),
        &[Prop::required("quickScan", Ty::Bool)],
    ),
    device_action(
        "managedDevices.windowsDefenderUpdateSignatures",
        "windowsDefenderUpdateSignatures",
        Routine,
    ),
    Operation {
        wrapper: Some("updateWindowsDeviceAccountActionParameter"),
        simple: Some(&UPDATE_WINDOWS_DEVICE_ACCOUNT_SIMPLE),
        ..with_params(
            device_action(
                "managedDevices.updateWindowsDeviceAccount",
                "updateWindowsDeviceAccount",
                Disruptive,
            ),
            &[Prop::new(
                "updateWindowsDeviceAccountActionParameter",
                Ty::Complex(&UPDATE_WINDOWS_DEVICE_ACCOUNT_PARAMETER),
            )],
        )
    },
    Operation {
        binding: Binding::User,
        ..device_action(
            "users.removeAllDevicesFromManagement",
            "removeAllDevicesFromManagement",
            Destructive,
        )
    },
    // beta only: the privileged actions.
    beta(with_params(
        device_action(
            "managedDevices.enableLostMode",
            "enableLostMode",
            Disruptive,
        ),
        &[
            Prop::new("message", Ty::String),
            Prop::new("phoneNumber", Ty::String),
            Prop::new("footer", Ty::String),
        ],
    )),
    beta(with_params(
        device_action(
            "managedDevices.playLostModeSound",
            "playLostModeSound",
            Disruptive,
        ),
        &[Prop::new("durationInMinutes", Ty::String)],
    )),
    beta(with_params(
        device_action("managedDevices.setDeviceName", "setDeviceName", Disruptive),
        &[Prop::new("deviceName", Ty::String)],
    )),
    // Documented as DeviceManagementConfiguration.Read.All; the service demands
    // PrivilegedOperations.All (docs-contrib#87).
    beta(permission(
        device_action(
            "managedDevices.rotateLocalAdminPassword",
            "rotateLocalAdminPassword",
            Disruptive,
        ),
        Some(CONFIGURATION_READ),
        PRIV_OPS,
    )),
    beta(permission(
        device_action(
            "managedDevices.rotateBitLockerKeys",
            "rotateBitLockerKeys",
            Disruptive,
        ),
        Some(CONFIGURATION_RW),
        CONFIGURATION_RW,
    )),
    beta(device_action(
        "managedDevices.rotateFileVaultKey",
        "rotateFileVaultKey",
        Disruptive,
    )),
    beta(permission(
        device_action(
            "managedDevices.rotateRecoveryLockPasscode",
            "rotateRecoveryLockPasscode",
            Disruptive,
        ),
        Some(MANAGED_DEVICES_RW),
        MANAGED_DEVICES_RW,
    )),
    beta(with_params(
        device_action(
            "managedDevices.triggerConfigurationManagerAction",
            "triggerConfigurationManagerAction",
            Routine,
        ),
        &[Prop::new(
            "configurationManagerAction",
            Ty::Complex(&CONFIGURATION_MANAGER_ACTION),
        )],
    )),
    beta(permission(
        with_params(
            device_action(
                "managedDevices.sendCustomNotificationToCompanyPortal",
                "sendCustomNotificationToCompanyPortal",
                Disruptive,
            ),
            &[
                Prop::new("notificationTitle", Ty::String),
                Prop::new("notificationBody", Ty::String),
            ],
        ),
        Some(CONFIGURATION_RW),
        CONFIGURATION_RW,
    )),
    beta(permission(
        with_params(
            device_action(
                "managedDevices.initiateOnDemandProactiveRemediation",
                "initiateOnDemandProactiveRemediation",
                Disruptive,
            ),
            &[Prop::new("scriptPolicyId", Ty::String)],
        ),
        Some(CONFIGURATION_READ),
        CONFIGURATION_READ,
    )),
    Operation {
        success_status: 200,
        ..beta(permission(
            with_params(
                device_action(
                    "managedDevices.createDeviceLogCollectionRequest",
                    "createDeviceLogCollectionRequest",
                    Routine,
                ),
                &[Prop::new(
                    "templateType",
                    Ty::Complex(&DEVICE_LOG_COLLECTION_REQUEST),
                )],
            ),
            Some(MANAGED_DEVICES_RW),
            MANAGED_DEVICES_RW,
        ))
    },
    // beta only: the secret-returning functions.
    function(
        "managedDevices.getFileVaultKey",
        "getFileVaultKey",
        Some(CONFIGURATION_READ),
        CONFIGURATION_READ,
    ),
    function(
        "managedDevices.retrieveDeviceLocalAdminAccountDetail",
        "retrieveDeviceLocalAdminAccountDetail",
        None,
        PRIV_OPS,
    ),
    function(
        "managedDevices.retrieveRecoveryLockPasscode",
        "retrieveRecoveryLockPasscode",
        None,
        PRIV_OPS,
    ),
    // beta only: the bulk action, decided per device as the operation its actionName names.
    Operation {
        binding: Binding::Devices,
        success_status: 200,
        ..beta(with_params(
            device_action("managedDevices.executeAction", "executeAction", Destructive),
            &[
                Prop::required("actionName", Ty::Enum(REMOTE_ACTIONS)),
                Prop::new("deviceIds", Ty::StringList),
                Prop::new("keepEnrollmentData", Ty::Bool),
                Prop::new("keepUserData", Ty::Bool),
                Prop::new("persistEsimDataPlan", Ty::Bool),
                Prop::new("notificationTitle", Ty::String),
                Prop::new("notificationBody", Ty::String),
                Prop::new("deviceName", Ty::String),
                Prop::new("carrierUrl", Ty::String),
                Prop::new("deprovisionReason", Ty::String),
                Prop::new("organizationalUnitPath", Ty::String),
            ],
        ))
    },
];
