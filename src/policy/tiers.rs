//! Risk tiers in the policy: a rule may say `tier: destructive` next to its `operations`
//! list. The list stays explicit (a rule grants only the operations it names), so a new
//! catalog entry never becomes allowed by an existing rule without the file being edited;
//! the tier pins what the list is meant to be: a listed operation of another tier is an
//! error, and a catalog operation of that tier that the list leaves out is a warning (at
//! load and in `policy check`), so a reviewer sees that the catalog has grown.

use serde_saphyr::Spanned;

use super::Rule;
use crate::operation::catalog::{Binding, CATALOG, Operation, Tier};

/// The rule's pinned tier, checking that every listed operation belongs to it; `Err` holds
/// the problems (the tier's name unknown, or operations of another tier).
pub(super) fn pinned(
    tier: Option<&Spanned<String>>,
    operations: &[&'static Operation],
) -> Result<Option<Tier>, String> {
    let Some(tier) = tier else { return Ok(None) };
    let Some(parsed) = Tier::parse(&tier.value) else {
        let known: Vec<&str> = Tier::ALL.iter().map(|t| t.as_str()).collect();
        return Err(format!(
            "unknown tier {:?}{}; tiers: {}",
            tier.value,
            crate::words::did_you_mean(&tier.value, known.iter().copied()),
            known.join(", ")
        ));
    };
    let strays: Vec<String> = operations
        .iter()
        .filter(|op| op.tier != parsed)
        .map(|op| format!("{} ({})", op.name, op.tier.as_str()))
        .collect();
    if strays.is_empty() {
        Ok(Some(parsed))
    } else {
        Err(format!(
            "tier {} lists operations of another tier: {}",
            parsed.as_str(),
            strays.join(", ")
        ))
    }
}

/// One warning per rule whose pinned tier has catalog operations its list leaves out.
pub(super) fn warnings(rules: &[Rule]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|rule| {
            let tier = rule.tier?;
            let missing: Vec<&str> = CATALOG
                .iter()
                .filter(|op| op.tier == tier && op.binding != Binding::Devices)
                .filter(|op| !rule.operations.iter().any(|o| std::ptr::eq(*o, *op)))
                .map(|op| op.name)
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "rule '{}' pins tier {} but does not list (so does not grant) {}: add them to its operations to grant them",
                    rule.name,
                    tier.as_str(),
                    missing.join(", ")
                )
            })
        })
        .collect()
}

/// Catalog operations of `tier` (what a pinned list should hold, for the README and tests).
pub fn operations_of(tier: Tier) -> impl Iterator<Item = &'static Operation> {
    CATALOG
        .iter()
        .filter(move |op| op.tier == tier && op.binding != Binding::Devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog::{self, ApiVersion};
    use crate::operation::schema::{self, Params};
    use crate::policy::{Facts, Policy};

    const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
    const OTHER: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

    fn policy(rules: &str) -> Result<Policy, crate::policy::PolicyError> {
        Policy::from_yaml(
            &format!(
                "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"{}\"\nrules:\n{rules}",
                "0".repeat(64)
            ),
            "t",
        )
    }

    fn allowed(p: &Policy, op: &str, device: &str, body: &str) -> bool {
        let op = catalog::by_name(op).unwrap();
        let params: Params = match body.is_empty() {
            true => Params::default(),
            false => schema::validate_request(
                &serde_json::from_str(body).unwrap(),
                op.params_for(ApiVersion::Beta),
                op.wrapper,
            )
            .unwrap(),
        };
        let facts = Facts {
            caller: 0,
            op,
            version: ApiVersion::Beta,
            device,
            params: &params,
            initiator: None,
        };
        p.decide(&facts).allowed
    }

    #[test]
    fn a_pinned_tier_grants_only_its_list_and_warns_about_the_rest() {
        let p = policy(
            "  - name: destroy\n    callers: [ops]\n    tier: destructive\n    operations: [managedDevices.wipe, managedDevices.retire]\n",
        )
        .unwrap();
        assert!(allowed(&p, "managedDevices.wipe", DEV, "{}"));
        // managedDevices.delete is destructive but not listed: not granted, and warned about.
        assert!(!allowed(&p, "managedDevices.delete", DEV, ""));
        assert_eq!(p.warnings.len(), 1);
        for missing in [
            "managedDevices.delete",
            "managedDevices.cleanWindowsDevice",
            "users.removeAllDevicesFromManagement",
        ] {
            assert!(p.warnings[0].contains(missing), "{}", p.warnings[0]);
        }
        let all: Vec<&str> = operations_of(Tier::Destructive).map(|op| op.name).collect();
        let complete = policy(&format!(
            "  - name: destroy\n    callers: [ops]\n    tier: destructive\n    operations: [{}]\n",
            all.join(", ")
        ))
        .unwrap();
        assert!(complete.warnings.is_empty());
    }

    #[test]
    fn a_listed_operation_of_another_tier_or_an_unknown_tier_is_an_error() {
        let e = policy("  - name: r\n    callers: [ops]\n    tier: routine\n    operations: [managedDevices.syncDevice, managedDevices.wipe]\n").unwrap_err();
        assert!(
            e.to_string().contains("managedDevices.wipe (destructive)"),
            "{e}"
        );
        let e = policy("  - name: r\n    callers: [ops]\n    tier: harmless\n    operations: [managedDevices.syncDevice]\n").unwrap_err();
        assert!(e.to_string().contains("unknown tier \"harmless\""), "{e}");
        let e = policy(
            "  - name: r\n    callers: [ops]\n    operations: [managedDevices.executeAction]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("decided device by device"), "{e}");
    }

    /// A catalog entry no rule names is denied, whatever the other rules grant: a rule
    /// naming every other operation (no device list, no condition), a rule pinned to each
    /// tier listing the rest of that tier, in shadow mode too. So adding an entry to the
    /// catalog never makes it allowed without the policy file being edited.
    #[test]
    fn an_operation_no_rule_names_is_denied_by_every_rule() {
        let grantable: Vec<&Operation> = CATALOG
            .iter()
            .filter(|op| op.binding != Binding::Devices)
            .collect();
        for new in &grantable {
            let others = |keep: &dyn Fn(&Operation) -> bool| -> Vec<&str> {
                grantable
                    .iter()
                    .filter(|op| !std::ptr::eq(**op, *new) && keep(op))
                    .map(|op| op.name)
                    .collect()
            };
            let mut rules = format!(
                "  - name: everything-else\n    callers: [ops]\n    operations: [{}]\n  - name: everything-else-shadow\n    mode: shadow\n    callers: [ops]\n    operations: [{0}]\n",
                others(&|_| true).join(", ")
            );
            for tier in Tier::ALL {
                let listed = others(&|op| op.tier == tier);
                if !listed.is_empty() {
                    rules.push_str(&format!(
                        "  - name: pinned-{0}\n    callers: [ops]\n    tier: {0}\n    operations: [{1}]\n",
                        tier.as_str(),
                        listed.join(", ")
                    ));
                }
            }
            let p = policy(&rules).unwrap();
            for &version in new.versions {
                for device in [DEV, OTHER, ""] {
                    let facts = Facts {
                        caller: 0,
                        op: new,
                        version,
                        device,
                        params: &Params::default(),
                        initiator: None,
                    };
                    let d = p.decide(&facts);
                    assert!(!d.allowed, "{} allowed by {:?}", new.name, d.rule_name());
                    assert_eq!(d.rule_name(), None, "{}: the default deny", new.name);
                    assert!(d.shadow.is_none(), "{}: no shadow rule covers it", new.name);
                }
            }
            // And every other operation is allowed by those same rules.
            let other = grantable
                .iter()
                .find(|op| !std::ptr::eq(**op, *new))
                .unwrap();
            let facts = Facts {
                caller: 0,
                op: other,
                version: other.versions[0],
                device: DEV,
                params: &Params::default(),
                initiator: None,
            };
            assert!(p.decide(&facts).allowed, "{} is granted", other.name);
        }
    }

    /// Device lists, parameter conditions and deny rules work for every operation.
    #[test]
    fn device_rules_conditions_and_denies_for_every_operation() {
        for op in CATALOG.iter().filter(|op| op.binding != Binding::Devices) {
            let device = match op.binding {
                Binding::Device => DEV,
                _ => "",
            };
            let devices = match op.binding {
                Binding::Device => format!("    devices: [\"{DEV}\"]\n"),
                _ => String::new(),
            };
            let p = policy(&format!(
                "  - name: r\n    callers: [ops]\n    operations: [{}]\n{devices}",
                op.name
            ))
            .unwrap();
            let body = if op.takes_body()
                && op.wrapper.is_none()
                && op.params.iter().any(|p| p.required)
            {
                // The required parameters, with a value of their type.
                let members: Vec<String> = op
                    .params
                    .iter()
                    .filter(|p| p.required)
                    .map(|p| format!("\"{}\": true", p.name))
                    .collect();
                format!("{{{}}}", members.join(","))
            } else if op.wrapper.is_some() {
                r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccountEmail":"a@contoso.com"}}"#.to_owned()
            } else {
                String::new()
            };
            assert!(allowed(&p, op.name, device, &body), "{}", op.name);
            if op.binding == Binding::Device {
                assert!(
                    !allowed(&p, op.name, OTHER, &body),
                    "{} on another device",
                    op.name
                );
            }
            let denied = policy(&format!(
                "  - name: r\n    callers: [ops]\n    operations: [{0}]\n  - name: no\n    effect: deny\n    callers: [ops]\n    operations: [{0}]\n",
                op.name
            ))
            .unwrap();
            assert!(
                !allowed(&denied, op.name, device, &body),
                "{} denied",
                op.name
            );
        }
        // Only keepUserData: true wipes.
        let p = policy("  - name: r\n    callers: [ops]\n    operations: [managedDevices.wipe]\n    when:\n      - { param: keepUserData, equals: true }\n").unwrap();
        assert!(allowed(
            &p,
            "managedDevices.wipe",
            DEV,
            r#"{"keepUserData":true}"#
        ));
        assert!(!allowed(
            &p,
            "managedDevices.wipe",
            DEV,
            r#"{"keepUserData":false}"#
        ));
        assert!(!allowed(&p, "managedDevices.wipe", DEV, "{}"));
        // beta's extra wipe parameter can be a condition too.
        let p = policy("  - name: r\n    callers: [ops]\n    operations: [managedDevices.wipe]\n    when:\n      - { param: obliterationBehavior, one_of: [doNotObliterate] }\n").unwrap();
        assert!(allowed(
            &p,
            "managedDevices.wipe",
            DEV,
            r#"{"obliterationBehavior":"doNotObliterate"}"#
        ));
        assert!(!allowed(
            &p,
            "managedDevices.wipe",
            DEV,
            r#"{"obliterationBehavior":"always"}"#
        ));
    }
}
