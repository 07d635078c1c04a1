//! The operation catalog: every Graph action graphgate can forward, as data. An action
//! lists its name, required application permission, API versions, success status and body
//! schema; adding an Intune action means adding an entry here, not a new code path.

use crate::operation::schema::{ComplexType, Prop, Ty};

/// A Graph API version segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `/v1.0`
    V1,
    /// `/beta`
    Beta,
}

impl ApiVersion {
    /// The path segment, as Graph spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }

    /// Parses a version segment (case-insensitively, as Graph does).
    pub fn parse(segment: &str) -> Option<Self> {
        if segment.eq_ignore_ascii_case("v1.0") {
            Some(ApiVersion::V1)
        } else if segment.eq_ignore_ascii_case("beta") {
            Some(ApiVersion::Beta)
        } else {
            None
        }
    }
}

/// Graph's most privileged Intune device permission.
pub const PRIV_OPS: &str = "DeviceManagementManagedDevices.PrivilegedOperations.All";

/// One privileged Graph action, bound to `managedDevice`.
#[derive(Debug)]
pub struct Operation {
    /// Policy and audit name: `managedDevices.<action>`.
    pub name: &'static str,
    /// The action segment as Graph spells it.
    pub action: &'static str,
    /// The application permission the gateway's app needs for it.
    pub permission: &'static str,
    /// API versions that offer the action.
    pub versions: &'static [ApiVersion],
    /// HTTP status Graph answers on success.
    pub success_status: u16,
    /// The action's parameters: the top-level members of the JSON body.
    pub params: &'static [Prop],
    /// Where the action wraps all of its parameters in a single complex parameter, its
    /// name; policy conditions then name that parameter's members directly.
    pub wrapper: Option<&'static str>,
    /// The flat body of the simplified internal API (`/api/v1/...`), if offered.
    pub simple: Option<&'static SimpleApi>,
}

/// A field of a simplified-API body.
#[derive(Debug)]
pub struct SimpleField {
    /// The field's name in the flat body.
    pub name: &'static str,
    /// Where it goes in Graph's parameters (dotted, wrapper left out).
    pub target: &'static str,
    /// `true` for a boolean, `false` for a string.
    pub boolean: bool,
    /// Must be present.
    pub required: bool,
    /// Only valid with this `accountType`-style variant value.
    pub only_with: Option<&'static str>,
    /// One line for the OpenAPI document.
    pub description: &'static str,
}

/// A simplified-API field that selects a derived Graph type (e.g. `accountType`).
#[derive(Debug)]
pub struct SimpleVariant {
    /// The field's name in the flat body.
    pub name: &'static str,
    /// The Graph object whose `@odata.type` it sets (dotted, wrapper left out).
    pub object: &'static str,
    /// Allowed values: (value, Graph type, fields it requires).
    pub values: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// One line for the OpenAPI document.
    pub description: &'static str,
}

/// The simplified internal API of one operation.
#[derive(Debug)]
pub struct SimpleApi {
    /// Plain fields.
    pub fields: &'static [SimpleField],
    /// A type-selecting field, if any.
    pub variant: Option<SimpleVariant>,
}

const fn field(
    name: &'static str,
    target: &'static str,
    boolean: bool,
    required: bool,
    description: &'static str,
) -> SimpleField {
    SimpleField {
        name,
        target,
        boolean,
        required,
        only_with: None,
        description,
    }
}

const fn variant_field(
    name: &'static str,
    target: &'static str,
    only_with: &'static str,
    description: &'static str,
) -> SimpleField {
    SimpleField {
        name,
        target,
        boolean: false,
        required: false,
        only_with: Some(only_with),
        description,
    }
}

static UPDATE_WINDOWS_DEVICE_ACCOUNT_SIMPLE: SimpleApi = SimpleApi {
    fields: &[
        field(
            "deviceAccountEmail",
            "deviceAccountEmail",
            false,
            true,
            "The device account's email address.",
        ),
        field(
            "password",
            "deviceAccount.password",
            false,
            true,
            "The device account's new password (never logged or audited in clear).",
        ),
        field(
            "passwordRotationEnabled",
            "passwordRotationEnabled",
            true,
            false,
            "Whether Intune rotates the password.",
        ),
        field(
            "calendarSyncEnabled",
            "calendarSyncEnabled",
            true,
            false,
            "Whether calendar sync is on.",
        ),
        field(
            "exchangeServer",
            "exchangeServer",
            false,
            false,
            "The Exchange server.",
        ),
        // Graph's wire name is misspelt; the simplified API spells it correctly.
        field(
            "sessionInitiationProtocolAddress",
            "sessionInitiationProtocalAddress",
            false,
            false,
            "The SIP address.",
        ),
        variant_field(
            "userPrincipalName",
            "deviceAccount.userPrincipalName",
            "azureAD",
            "With accountType azureAD: the account's UPN.",
        ),
        variant_field(
            "domainName",
            "deviceAccount.domainName",
            "activeDirectory",
            "With accountType activeDirectory: the domain.",
        ),
        variant_field(
            "userName",
            "deviceAccount.userName",
            "activeDirectory",
            "With accountType activeDirectory: the user name.",
        ),
    ],
    variant: Some(SimpleVariant {
        name: "accountType",
        object: "deviceAccount",
        values: &[
            (
                "azureAD",
                "#microsoft.graph.windowsDeviceAzureADAccount",
                &["userPrincipalName"],
            ),
            (
                "activeDirectory",
                "#microsoft.graph.windowsDeviceADAccount",
                &["domainName", "userName"],
            ),
        ],
        description: "The kind of device account; omit for a plain account.",
    }),
};

const BOTH: &[ApiVersion] = &[ApiVersion::V1, ApiVersion::Beta];

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

/// Every operation graphgate knows.
pub static CATALOG: &[Operation] = &[Operation {
    name: "managedDevices.updateWindowsDeviceAccount",
    action: "updateWindowsDeviceAccount",
    permission: PRIV_OPS,
    versions: BOTH,
    success_status: 204,
    params: &[Prop::new(
        "updateWindowsDeviceAccountActionParameter",
        Ty::Complex(&UPDATE_WINDOWS_DEVICE_ACCOUNT_PARAMETER),
    )],
    wrapper: Some("updateWindowsDeviceAccountActionParameter"),
    simple: Some(&UPDATE_WINDOWS_DEVICE_ACCOUNT_SIMPLE),
}];

/// The operation whose action segment is `action` (case-insensitive, as Graph matches it).
pub fn by_action(action: &str) -> Option<&'static Operation> {
    CATALOG
        .iter()
        .find(|op| op.action.eq_ignore_ascii_case(action))
}

/// The operation named `name` (`managedDevices.<action>`), exactly as written.
pub fn by_name(name: &str) -> Option<&'static Operation> {
    CATALOG.iter().find(|op| op.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_managed_devices_scheme_and_are_unique() {
        for op in CATALOG {
            assert_eq!(op.name, format!("managedDevices.{}", op.action));
            assert_eq!(CATALOG.iter().filter(|o| o.name == op.name).count(), 1);
            assert!(std::ptr::eq(
                by_action(&op.action.to_uppercase()).unwrap(),
                op
            ));
            assert!(std::ptr::eq(by_name(op.name).unwrap(), op));
        }
    }
}
