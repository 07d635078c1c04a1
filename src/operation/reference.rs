//! The catalog as its readers need it, in one serializable description per operation: how
//! Graph invokes it and on which paths, the parameters a body and a policy condition name
//! (types, required, secret), its tier, the permission Microsoft documents and the one
//! graphgate requires, and what Intune's Multi Admin Approval holds of it. `graphgate
//! operations` prints it offline (text, Markdown, JSON: [`render`]), and the operations
//! reference is generated from the same code.

pub mod render;

use serde::Serialize;

use crate::operation::catalog::{
    self, ApiVersion, BULK_ACTIONS, Binding, CATALOG, Invocation, Operation,
};
use crate::operation::route::SHAPES;
use crate::operation::schema::{ComplexType, Prop, Ty};
use crate::operation::simple;

/// One operation, described.
#[derive(Debug, Clone, Serialize)]
pub struct OperationRef {
    /// Its policy and audit name (`managedDevices.wipe`).
    pub name: &'static str,
    /// The operation segment as Graph spells it (`delete` for a DELETE).
    pub action: &'static str,
    /// `action`, `function` or `delete`.
    pub invocation: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// What it acts on: `device`, `user` or `devices` (a bulk request naming them).
    pub binding: &'static str,
    /// Its risk tier.
    pub tier: &'static str,
    /// The API versions offering it.
    pub versions: Vec<&'static str>,
    /// Every Graph path it is accepted on, and the versions of each.
    pub paths: Vec<PathRef>,
    /// Its path on the simplified internal API.
    pub simplified_path: String,
    /// The simplified API's own flat fields, where they differ from Graph's body.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub simplified_fields: Vec<&'static str>,
    /// Whether a request carries a body: `none`, `optional` or `required`.
    pub body: &'static str,
    /// The one member every parameter is wrapped in, where the action wraps them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrapper: Option<&'static str>,
    /// Its parameters, by the dotted names policy conditions use (a wrapper left out).
    pub parameters: Vec<ParamRef>,
    /// The status Graph answers on success.
    pub success_status: u16,
    /// The least application permission Microsoft documents (`None`: undocumented).
    pub permission_documented: Option<&'static str>,
    /// The application permission graphgate requires of its app (readiness checks it).
    pub permission_required: &'static str,
    /// What Intune's Multi Admin Approval holds of it.
    pub maa: MaaRef,
    /// Bulk: the `executeAction` `actionName`s offered, each with the operation it runs
    /// (for `executeAction`), or the `actionName` that runs this operation in bulk.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bulk: Vec<BulkRef>,
}

/// A path shape, with the versions that accept it.
#[derive(Debug, Clone, Serialize)]
pub struct PathRef {
    /// `v1.0`, `beta`.
    pub versions: Vec<&'static str>,
    /// The path after the version, ids as `{placeholders}`.
    pub path: String,
}

/// One parameter (a leaf of the body, or an object's `@odata.type`).
#[derive(Debug, Clone, Serialize)]
pub struct ParamRef {
    /// Dotted, as a policy condition names it (`deviceAccount.password`).
    pub name: String,
    /// `boolean`, `string`, `enum`, `type` (an `@odata.type`) or `string list`.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// The values an enum (or `@odata.type`) takes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<&'static str>,
    /// Must be in every request that carries a body (the CSDL's non-nullable members,
    /// inside members that are themselves required).
    pub required: bool,
    /// A secret: recorded only as a redaction; a policy may test only that it is present.
    pub secret: bool,
    /// An email address (exactly one accepted).
    pub address: bool,
    /// The versions that take it.
    pub versions: Vec<&'static str>,
    /// Whether a policy condition may name it (a bulk request's device list is decided
    /// device by device instead).
    pub condition: bool,
}

/// Multi Admin Approval coverage.
#[derive(Debug, Clone, Serialize)]
pub struct MaaRef {
    /// `device-action`, `app-write` or `never`.
    pub coverage: &'static str,
    /// The device-action policy type, where one holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_type: Option<&'static str>,
    /// In words.
    pub note: String,
}

/// A bulk `actionName` and the operation it runs on each device.
#[derive(Debug, Clone, Serialize)]
pub struct BulkRef {
    /// The `actionName`.
    pub action_name: &'static str,
    /// The operation run on each listed device.
    pub operation: &'static str,
    /// A parameter it implies (`quickScan` implies `quickScan: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implies: Option<String>,
}

/// Every operation, described, in catalog order.
pub fn all() -> Vec<OperationRef> {
    CATALOG.iter().map(describe).collect()
}

/// The operation `name` names: its full name, or its action alone (`wipe`), in any case.
pub fn find(name: &str) -> Option<&'static Operation> {
    catalog::by_name(name).or_else(|| {
        let mut found = CATALOG.iter().filter(|op| {
            op.name.eq_ignore_ascii_case(name) || op.action.eq_ignore_ascii_case(name)
        });
        match (found.next(), found.next()) {
            (Some(op), None) => Some(op),
            _ => None,
        }
    })
}

/// One operation, described.
pub fn describe(op: &'static Operation) -> OperationRef {
    let maa = op.maa();
    OperationRef {
        name: op.name,
        action: op.action,
        invocation: match op.invocation {
            Invocation::Action => "action",
            Invocation::Function => "function",
            Invocation::Delete => "delete",
        },
        method: op.invocation.method_name(),
        binding: match op.binding {
            Binding::Device => "device",
            Binding::User => "user",
            Binding::Devices => "devices",
        },
        tier: op.tier.as_str(),
        versions: op.versions.iter().map(|v| v.as_str()).collect(),
        paths: paths(op),
        simplified_path: simple::simple_path(op).0,
        simplified_fields: op
            .simple
            .map(|s| {
                s.fields
                    .iter()
                    .map(|f| f.name)
                    .chain(s.variant.as_ref().map(|v| v.name))
                    .collect()
            })
            .unwrap_or_default(),
        body: match (op.takes_body(), op.needs_body()) {
            (false, _) => "none",
            (true, false) => "optional",
            (true, true) => "required",
        },
        wrapper: op.wrapper,
        parameters: parameters(op),
        success_status: op.success_status,
        permission_documented: op.documented_permission,
        permission_required: op.permission,
        maa: MaaRef {
            coverage: maa.as_str(),
            policy_type: match maa {
                catalog::MaaCoverage::DeviceAction(policy) => Some(policy),
                _ => None,
            },
            note: maa.describe(),
        },
        bulk: bulk(op),
    }
}

/// Every path shape of the operation's binding, with the action (or `()`) after it.
fn paths(op: &Operation) -> Vec<PathRef> {
    let tail = match op.invocation {
        Invocation::Action => format!("/{}", op.action),
        Invocation::Function => format!("/{}()", op.action),
        Invocation::Delete => String::new(),
    };
    SHAPES
        .iter()
        .filter(|shape| shape.binding == op.binding)
        .map(|shape| PathRef {
            versions: op
                .versions
                .iter()
                .filter(|v| !shape.beta_only || **v == ApiVersion::Beta)
                .map(|v| v.as_str())
                .collect(),
            path: format!("{}{tail}", shape.template),
        })
        .filter(|p| !p.versions.is_empty())
        .collect()
}

/// The parameters of every version, each once, v1.0's first.
fn parameters(op: &Operation) -> Vec<ParamRef> {
    let mut out: Vec<ParamRef> = Vec::new();
    let sets: Vec<(ApiVersion, &'static [Prop])> = op
        .versions
        .iter()
        .map(|v| (*v, op.params_for(*v)))
        .collect();
    for (version, props) in sets {
        let mut found = Vec::new();
        for prop in props {
            let wrapped = op.wrapper == Some(prop.name);
            let prefix = if wrapped { "" } else { prop.name };
            match prop.ty {
                Ty::Complex(ty) if wrapped => complex(ty, "", true, &mut found),
                _ => leaf(prop, prefix, true, &mut found),
            }
        }
        for p in found {
            match out.iter_mut().find(|o| o.name == p.name) {
                Some(known) => known.versions.push(version.as_str()),
                None => out.push(ParamRef {
                    versions: vec![version.as_str()],
                    ..p
                }),
            }
        }
    }
    out
}

fn leaf(prop: &Prop, path: &str, parent_required: bool, out: &mut Vec<ParamRef>) {
    let required = parent_required && prop.required;
    let (ty, values): (&'static str, Vec<&'static str>) = match prop.ty {
        Ty::Complex(ty) => return complex(ty, path, required, out),
        Ty::Bool => ("boolean", Vec::new()),
        Ty::String => ("string", Vec::new()),
        Ty::Enum(members) => ("enum", members.to_vec()),
        Ty::StringList => ("string list", Vec::new()),
    };
    if out.iter().any(|p| p.name == path) {
        return;
    }
    out.push(ParamRef {
        name: path.to_owned(),
        ty,
        values,
        required,
        secret: prop.secret,
        address: prop.address,
        versions: Vec::new(),
        condition: !matches!(prop.ty, Ty::StringList),
    });
}

/// A nested object's `@odata.type` (the type, or one derived from it) and its members, the
/// derived types' included.
fn complex(ty: &'static ComplexType, prefix: &str, required: bool, out: &mut Vec<ParamRef>) {
    if !prefix.is_empty() {
        let path = format!("{prefix}.@odata.type");
        if !out.iter().any(|p| p.name == path) {
            let mut types = Vec::new();
            type_names(ty, &mut types);
            out.push(ParamRef {
                name: path,
                ty: "type",
                values: types,
                required: false,
                secret: false,
                address: false,
                versions: Vec::new(),
                condition: true,
            });
        }
    }
    let join = |name: &str| match prefix {
        "" => name.to_owned(),
        _ => format!("{prefix}.{name}"),
    };
    for prop in ty.props {
        leaf(prop, &join(prop.name), required, out);
    }
    for derived in ty.derived {
        for prop in derived.props {
            // A derived type's own members are never required of the base type.
            leaf(prop, &join(prop.name), false, out);
        }
    }
}

fn type_names(ty: &'static ComplexType, out: &mut Vec<&'static str>) {
    out.push(ty.name);
    for derived in ty.derived {
        type_names(derived, out);
    }
}

/// The bulk side of an operation.
fn bulk(op: &Operation) -> Vec<BulkRef> {
    BULK_ACTIONS
        .iter()
        .filter(|b| op.binding == Binding::Devices || b.operation == op.name)
        .map(|b| BulkRef {
            action_name: b.action_name,
            operation: b.operation,
            implies: b.implied.map(|(param, value)| format!("{param}: {value}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_operation_is_described_with_its_paths_and_parameters() {
        let all = all();
        assert_eq!(all.len(), CATALOG.len());
        for op in &all {
            assert!(!op.paths.is_empty(), "{}", op.name);
            assert!(op.paths.iter().all(|p| p.path.starts_with('/')));
        }
        let wipe = describe(find("WIPE").unwrap());
        assert_eq!(wipe.name, "managedDevices.wipe");
        let names: Vec<&str> = wipe.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "keepEnrollmentData",
                "keepUserData",
                "macOsUnlockCode",
                "persistEsimDataPlan",
                "obliterationBehavior",
                "useProtectedWipe"
            ]
        );
        let keep = &wipe.parameters[1];
        assert_eq!((keep.ty, keep.required), ("boolean", false));
        assert_eq!(keep.versions, ["v1.0", "beta"]);
        assert!(wipe.parameters[2].secret);
        assert_eq!(wipe.parameters[4].versions, ["beta"]);
        assert_eq!(wipe.parameters[4].values[0], "default");
        assert_eq!(wipe.maa.policy_type, Some("deviceWipe"));
        assert_eq!(wipe.permission_required, catalog::PRIV_OPS);
        assert_eq!(
            wipe.permission_documented,
            Some(catalog::MANAGED_DEVICES_RW)
        );
        assert_eq!(wipe.bulk.len(), 1);
        // comanagedDevices is beta's only.
        let co = wipe
            .paths
            .iter()
            .find(|p| p.path.contains("comanagedDevices"))
            .unwrap();
        assert_eq!(co.versions, ["beta"]);
    }

    #[test]
    fn wrapped_and_derived_parameters_are_named_as_conditions_name_them() {
        let op = describe(find("updateWindowsDeviceAccount").unwrap());
        assert_eq!(
            op.wrapper,
            Some("updateWindowsDeviceAccountActionParameter")
        );
        assert_eq!(op.body, "required");
        let names: Vec<&str> = op.parameters.iter().map(|p| p.name.as_str()).collect();
        for name in [
            "deviceAccountEmail",
            "deviceAccount.@odata.type",
            "deviceAccount.password",
            "deviceAccount.userPrincipalName",
            "deviceAccount.domainName",
        ] {
            assert!(names.contains(&name), "{name}: {names:?}");
        }
        assert!(!op.simplified_fields.is_empty());
        // Every name listed is one a policy condition accepts, and every one it accepts is
        // listed, for every operation.
        for op in CATALOG {
            let described = describe(op);
            let mut listed: Vec<&str> = described
                .parameters
                .iter()
                .filter(|p| p.condition)
                .map(|p| p.name.as_str())
                .collect();
            let paths = crate::operation::schema::param_paths(op.all_params(), op.wrapper);
            let mut accepted: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
            listed.sort_unstable();
            accepted.sort_unstable();
            assert_eq!(listed, accepted, "{}", op.name);
            for p in &described.parameters {
                let found = paths.iter().find(|a| a.path == p.name);
                assert!(found.is_none_or(|a| a.secret == p.secret && a.address == p.address));
            }
        }
        let scan = describe(find("managedDevices.windowsDefenderScan").unwrap());
        assert!(scan.parameters[0].required);
        assert_eq!(scan.body, "required");
        let sync = describe(find("syncDevice").unwrap());
        assert_eq!(sync.body, "optional");
        assert!(sync.parameters.is_empty());
    }

    #[test]
    fn maa_holds_three_device_actions_and_never_a_read() {
        for op in all() {
            let expected = match op.name {
                "managedDevices.wipe" | "managedDevices.retire" | "managedDevices.delete" => {
                    "device-action"
                }
                _ if op.method == "GET" => "never",
                _ => "app-write",
            };
            assert_eq!(op.maa.coverage, expected, "{}", op.name);
        }
        let bulk = describe(find("executeAction").unwrap());
        assert_eq!(bulk.bulk.len(), BULK_ACTIONS.len());
        assert!(bulk.parameters.iter().any(|p| !p.condition));
    }
}
