//! The operation catalog: every Graph operation graphgate can forward, as data. An entry
//! lists its name, how Graph invokes it (action, function, DELETE) and on what (a device, a
//! user, the devices collection), its risk tier, the permission Microsoft documents and the
//! one graphgate requires, API versions, success status and body schema; adding an Intune
//! action means adding an entry (`catalog/entries.rs`), not a new code path.

mod entries;

pub use entries::{BULK_ACTIONS, CATALOG};

use crate::operation::schema::Prop;

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
/// Read and write managed devices.
pub const MANAGED_DEVICES_RW: &str = "DeviceManagementManagedDevices.ReadWrite.All";
/// Read and write Intune configuration.
pub const CONFIGURATION_RW: &str = "DeviceManagementConfiguration.ReadWrite.All";
/// Read Intune configuration.
pub const CONFIGURATION_READ: &str = "DeviceManagementConfiguration.Read.All";

/// How Graph invokes an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// An OData action: `POST .../{action}` with a JSON body of parameters.
    Action,
    /// An OData function: `GET .../{function}()`, no body.
    Function,
    /// `DELETE` of the entity itself.
    Delete,
}

impl Invocation {
    /// The HTTP method's name.
    pub fn method_name(self) -> &'static str {
        match self {
            Invocation::Action => "POST",
            Invocation::Function => "GET",
            Invocation::Delete => "DELETE",
        }
    }

    /// The HTTP method.
    pub fn method(self) -> http::Method {
        match self {
            Invocation::Action => http::Method::POST,
            Invocation::Function => http::Method::GET,
            Invocation::Delete => http::Method::DELETE,
        }
    }
}

/// What an operation is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// One managed device (every device path shape).
    Device,
    /// A user (`/users/{id}/...`).
    User,
    /// The managed-devices collection: a bulk operation naming its devices in the body.
    Devices,
}

/// How much harm an operation can do, for policy reviews, `policy explain`, the OpenAPI
/// document and the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Removes data or management: wipe, retire, delete, cleanWindowsDevice,
    /// removeAllDevicesFromManagement.
    Destructive,
    /// Discloses a secret to the caller: the recovery-key and password reads.
    Disclosure,
    /// Interrupts or changes the device or its user's access (lock, passcode, reboot,
    /// lost mode, key rotation, ...).
    Disruptive,
    /// Low impact: sync, scans, signature updates, log collection.
    Routine,
}

impl Tier {
    /// Every tier, most harmful first.
    pub const ALL: [Tier; 4] = [
        Tier::Destructive,
        Tier::Disclosure,
        Tier::Disruptive,
        Tier::Routine,
    ];

    /// The tier's name as policy files and records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Destructive => "destructive",
            Tier::Disclosure => "disclosure",
            Tier::Disruptive => "disruptive",
            Tier::Routine => "routine",
        }
    }

    /// The tier named `name`.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One privileged Graph operation.
#[derive(Debug)]
pub struct Operation {
    /// Policy and audit name: `managedDevices.<action>`, `managedDevices.delete`,
    /// `users.removeAllDevicesFromManagement`.
    pub name: &'static str,
    /// The operation segment as Graph spells it (`delete` for a DELETE, which has none).
    pub action: &'static str,
    /// How Graph invokes it.
    pub invocation: Invocation,
    /// What it is bound to.
    pub binding: Binding,
    /// Its risk tier.
    pub tier: Tier,
    /// The least application permission Microsoft documents for it (`None`: undocumented).
    pub documented_permission: Option<&'static str>,
    /// The application permission graphgate requires of its app for it (readiness checks
    /// this one): the documented one, unless the service was seen to demand another.
    pub permission: &'static str,
    /// API versions that offer it.
    pub versions: &'static [ApiVersion],
    /// HTTP status Graph answers on success.
    pub success_status: u16,
    /// The parameters in v1.0 (or the only version): the top-level members of the body.
    pub params: &'static [Prop],
    /// beta's parameters, where beta takes more than v1.0.
    pub beta_params: Option<&'static [Prop]>,
    /// Where the action wraps all of its parameters in a single complex parameter, its
    /// name; policy conditions then name that parameter's members directly.
    pub wrapper: Option<&'static str>,
    /// A hand-made flat body for the simplified internal API (`/api/v1/...`); without one the
    /// flat body is the Graph body itself (every operation is offered there).
    pub simple: Option<&'static SimpleApi>,
    /// The Intune Multi Admin Approval policy type that holds it as a device action
    /// (`deviceWipe`, `deviceRetire`, `deviceDelete`), where one does (see [`Operation::maa`]).
    pub maa_policy_type: Option<&'static str>,
}

/// What Intune's own Multi Admin Approval (MAA) holds of an operation, as of 2026
/// (`shared/reference/intune-actions.md`): a device-action access policy covers wipe,
/// retire and delete; since 2026 an access policy for app-only Graph writes holds every
/// other POST and DELETE in tenants that use one; a GET is never held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaaCoverage {
    /// Held by a device-action access policy of this type (and as an app-only write).
    DeviceAction(&'static str),
    /// Held only in tenants whose access policies hold app-only Graph writes.
    AppWrite,
    /// Never held: MAA does not hold reads (the secret reads are never gated by it).
    Never,
}

impl MaaCoverage {
    /// A short name: `device-action`, `app-write` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            MaaCoverage::DeviceAction(_) => "device-action",
            MaaCoverage::AppWrite => "app-write",
            MaaCoverage::Never => "never",
        }
    }

    /// In words, for a reader.
    pub fn describe(self) -> String {
        match self {
            MaaCoverage::DeviceAction(policy) => format!(
                "held by a device-action access policy ({policy}), and by one for app-only Graph writes"
            ),
            MaaCoverage::AppWrite => {
                "held only where an access policy holds app-only Graph writes (no device-action policy covers it)".to_owned()
            }
            MaaCoverage::Never => "never held (Multi Admin Approval does not hold reads)".to_owned(),
        }
    }
}

impl Operation {
    /// The parameters `version` takes.
    pub fn params_for(&self, version: ApiVersion) -> &'static [Prop] {
        match (version, self.beta_params) {
            (ApiVersion::Beta, Some(beta)) => beta,
            _ => self.params,
        }
    }

    /// Every parameter in any version (policy conditions may name these).
    pub fn all_params(&self) -> &'static [Prop] {
        self.beta_params.unwrap_or(self.params)
    }

    /// What Intune's Multi Admin Approval holds of it.
    pub fn maa(&self) -> MaaCoverage {
        match (self.maa_policy_type, self.invocation) {
            (Some(policy), _) => MaaCoverage::DeviceAction(policy),
            (None, Invocation::Function) => MaaCoverage::Never,
            (None, _) => MaaCoverage::AppWrite,
        }
    }

    /// Whether the answer carries a secret (the disclosure reads).
    pub fn discloses_secret(&self) -> bool {
        self.tier == Tier::Disclosure
    }

    /// Whether the request carries a JSON body.
    pub fn takes_body(&self) -> bool {
        self.invocation == Invocation::Action
    }

    /// Whether a request without a body is refused: an action whose parameters are wrapped
    /// in one, or that has a required one (the others take no body as `{}`).
    pub fn needs_body(&self) -> bool {
        self.takes_body() && (self.wrapper.is_some() || self.params.iter().any(|p| p.required))
    }
}

/// An `actionName` of the bulk `executeAction` that graphgate offers.
#[derive(Debug)]
pub struct BulkAction {
    /// The `actionName` value.
    pub action_name: &'static str,
    /// The catalog operation it runs on each device (its name).
    pub operation: &'static str,
    /// A parameter of that operation the action name implies (`quickScan` → `quickScan:
    /// true`), which the body may not give.
    pub implied: Option<(&'static str, bool)>,
}

impl BulkAction {
    const fn new(
        action_name: &'static str,
        operation: &'static str,
        implied: Option<(&'static str, bool)>,
    ) -> Self {
        BulkAction {
            action_name,
            operation,
            implied,
        }
    }

    /// The catalog operation it runs.
    pub fn op(&self) -> Option<&'static Operation> {
        by_name(self.operation)
    }
}

/// The bulk action named `action_name` (exactly, as Graph's enum matches it).
pub fn bulk_action(action_name: &str) -> Option<&'static BulkAction> {
    BULK_ACTIONS.iter().find(|a| a.action_name == action_name)
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

pub(crate) static UPDATE_WINDOWS_DEVICE_ACCOUNT_SIMPLE: SimpleApi = SimpleApi {
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

/// The operation bound to `binding` whose operation segment is `action` (case-insensitive,
/// as Graph matches it).
pub fn by_action(binding: Binding, action: &str) -> Option<&'static Operation> {
    CATALOG.iter().find(|op| {
        op.binding == binding
            && op.invocation != Invocation::Delete
            && op.action.eq_ignore_ascii_case(action)
    })
}

/// The operation named `name` (`managedDevices.<action>`), exactly as written.
pub fn by_name(name: &str) -> Option<&'static Operation> {
    CATALOG.iter().find(|op| op.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bulk_action_names_an_operation_and_a_graph_action_name() {
        for bulk in BULK_ACTIONS {
            assert!(entries::REMOTE_ACTIONS.contains(&bulk.action_name));
            let op = bulk.op().unwrap();
            assert_eq!(op.binding, Binding::Device, "{}", bulk.action_name);
            if let Some((param, _)) = bulk.implied {
                assert!(op.all_params().iter().any(|p| p.name == param));
            }
            assert!(std::ptr::eq(bulk_action(bulk.action_name).unwrap(), bulk));
        }
        assert!(bulk_action("deprovision").is_none());
    }

    #[test]
    fn names_follow_the_scheme_and_are_unique() {
        for op in CATALOG {
            let prefix = match op.binding {
                Binding::User => "users",
                Binding::Device | Binding::Devices => "managedDevices",
            };
            assert_eq!(op.name, format!("{prefix}.{}", op.action));
            assert_eq!(CATALOG.iter().filter(|o| o.name == op.name).count(), 1);
            if op.invocation != Invocation::Delete {
                let found = by_action(op.binding, &op.action.to_uppercase()).unwrap();
                assert!(std::ptr::eq(found, op));
            }
            assert!(std::ptr::eq(by_name(op.name).unwrap(), op));
            assert_eq!(
                op.success_status == 200,
                op.invocation == Invocation::Function
                    || op.action == "createDeviceLogCollectionRequest"
                    || op.binding == Binding::Devices,
                "{}",
                op.name
            );
        }
        assert_eq!(CATALOG.len(), 35);
    }

    #[test]
    fn documented_and_required_permissions_differ_where_the_service_demands_more() {
        let differ: Vec<&str> = CATALOG
            .iter()
            .filter(|op| op.documented_permission.is_some_and(|d| d != op.permission))
            .map(|op| op.name)
            .collect();
        assert_eq!(
            differ,
            [
                "managedDevices.wipe",
                "managedDevices.rotateLocalAdminPassword"
            ]
        );
    }
}
