//! Deciding before the body is read. A request whose caller, operation, version and device
//! no rule could allow is refused whatever its body says, so the gateway refuses it without
//! reading (or waiting for) the body: a caller with no permission cannot hold a slot by
//! declaring a body it never sends. A bulk `executeAction` names its operation and devices
//! in its body: it is refused unread when no rule lets its caller run any operation
//! `executeAction` can run, on any device.

use super::{Decision, Effect, Mode, Policy};
use crate::operation::catalog::{self, ApiVersion, Binding, Operation};
use crate::operation::route::Recognised;

/// What a request is decided on, apart from its body.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Index into [`Policy::callers`].
    pub caller: usize,
    /// The operation.
    pub op: &'static Operation,
    /// The API version.
    pub version: ApiVersion,
    /// The target device (lower-case GUID).
    pub device: &'a str,
}

impl<'a> Scope<'a> {
    /// The scope of request `target` from caller number `caller`.
    pub fn of(caller: usize, target: &'a Recognised) -> Self {
        Scope {
            caller,
            op: target.op,
            version: target.version,
            device: &target.device_id,
        }
    }
}

impl Policy {
    /// The decision for a request in `scope`, when no body could change it; `None` when it
    /// depends on the body. `Some(d)` means [`Policy::decide`] answers exactly `d` for every
    /// body, so the request can be refused unread.
    ///
    /// Looking at the rules naming the caller that cover the operation, version and device:
    /// - if the first enforced deny among them has no conditions, it decides (deny wins);
    /// - if that deny has conditions (`initiators` count as one: the simplified API states
    ///   the initiator in its body), which rule decides depends on the body;
    /// - otherwise, if no allow rule (enforced, or shadow: its verdict is recorded) is among
    ///   them, the request is denied by default; else the body decides.
    ///
    /// A bulk `executeAction` (whose operation and devices are in its body) is denied by
    /// default when no allow rule naming the caller covers any operation its `actionName`
    /// can name, at its version, on any device; else its body decides.
    pub fn decide_before_body(&self, scope: &Scope<'_>) -> Option<Decision<'_>> {
        if scope.op.binding == Binding::Devices {
            return (!self.may_run_some_bulk_action(scope.caller, scope.version)).then_some(
                Decision {
                    allowed: false,
                    rule: None,
                    shadow: None,
                },
            );
        }
        let mut could_allow = false;
        for rule in self
            .rules_for(scope.caller)
            .filter(|r| r.in_scope(scope.op, scope.version, scope.device))
        {
            match (rule.effect, rule.mode) {
                (Effect::Deny, Mode::Enforce)
                    if rule.conditions.is_empty() && rule.initiators.is_none() =>
                {
                    return Some(Decision {
                        allowed: false,
                        rule: Some(rule),
                        shadow: None,
                    });
                }
                (Effect::Deny, Mode::Enforce) => return None,
                (Effect::Allow, _) => could_allow = true,
                (Effect::Deny, Mode::Shadow) => {}
            }
        }
        (!could_allow).then_some(Decision {
            allowed: false,
            rule: None,
            shadow: None,
        })
    }
}

impl Policy {
    /// Whether some allow rule (enforced or shadow) naming `caller` covers an operation a
    /// bulk `executeAction` can run, at `version`, on some device.
    fn may_run_some_bulk_action(&self, caller: usize, version: ApiVersion) -> bool {
        self.rules_for(caller)
            .filter(|r| r.effect == Effect::Allow && r.versions.contains(&version))
            .filter(|r| r.devices.as_ref().is_none_or(|d| !d.is_empty()))
            .any(|r| {
                catalog::BULK_ACTIONS
                    .iter()
                    .filter_map(|a| a.op())
                    .any(|op| r.operations.iter().any(|o| std::ptr::eq(*o, op)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog;
    use crate::operation::schema::{ParamValue, Params};
    use crate::policy::Facts;

    const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
    const OTHER_DEV: &str = "11111111-2222-3333-4444-555555555555";
    const OP: &str = "operations: [managedDevices.updateWindowsDeviceAccount]";

    fn policy(rules: &str) -> Policy {
        let text = format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{}\"\n  - name: b\n    api_key_sha256: \"{}\"\nrules:\n{rules}",
            "1".repeat(64),
            "2".repeat(64)
        );
        Policy::from_yaml(&text, "p").unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(name: &str, extra: &str) -> String {
        format!("  - name: {name}\n    callers: [a]\n    {OP}\n{extra}")
    }

    fn scope(version: ApiVersion, device: &str) -> Scope<'_> {
        Scope {
            caller: 0,
            op: catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap(),
            version,
            device,
        }
    }

    /// Bodies that satisfy or miss each condition the policies below use.
    fn bodies() -> Vec<Params> {
        let s = |v: &str| ParamValue::String(v.to_owned());
        let mut out = vec![Params(vec![])];
        for email in ["x@rooms.example", "x@evil.example"] {
            for rotation in [true, false] {
                out.push(Params(vec![
                    ("deviceAccountEmail".into(), s(email)),
                    ("passwordRotationEnabled".into(), ParamValue::Bool(rotation)),
                ]));
            }
        }
        out
    }

    /// `decide_before_body` is `Some` exactly when every body gets that same decision.
    fn check(p: &Policy, version: ApiVersion, device: &str) -> Option<(bool, Option<String>)> {
        let sc = scope(version, device);
        let early = p.decide_before_body(&sc);
        let outcomes: Vec<_> = bodies()
            .iter()
            .map(|params| {
                let d = p.decide(&Facts {
                    caller: sc.caller,
                    op: sc.op,
                    version,
                    device,
                    params,
                    initiator: None,
                });
                (
                    d.allowed,
                    d.rule_name().map(str::to_owned),
                    d.shadow.is_some(),
                )
            })
            .collect();
        if let Some(e) = early {
            let expected = (e.allowed, e.rule_name().map(str::to_owned), false);
            assert!(
                outcomes.iter().all(|o| *o == expected),
                "{outcomes:?} vs {expected:?}"
            );
        }
        early.map(|e| (e.allowed, e.rule_name().map(str::to_owned)))
    }

    const COND: &str =
        "    when:\n      - { param: deviceAccountEmail, suffix: \"@rooms.example\" }\n";

    #[test]
    fn no_rule_for_the_caller_or_scope_is_refused_unread() {
        let p = policy(&rule(
            "allow-dev",
            &format!("    devices: [{DEV}]\n    api_versions: [v1.0]\n{COND}"),
        ));
        assert_eq!(
            check(&p, ApiVersion::V1, OTHER_DEV),
            Some((false, None)),
            "other device"
        );
        assert_eq!(
            check(&p, ApiVersion::Beta, DEV),
            Some((false, None)),
            "other version"
        );
        assert_eq!(check(&p, ApiVersion::V1, DEV), None, "the body decides");
        let mut b = scope(ApiVersion::V1, DEV);
        b.caller = 1;
        assert!(
            p.decide_before_body(&b).is_some_and(|d| !d.allowed),
            "caller b has no rule"
        );
    }

    #[test]
    fn an_unconditional_deny_decides_and_a_conditional_one_needs_the_body() {
        let deny = "    effect: deny\n";
        let p = policy(&format!("{}{}", rule("allow", ""), rule("deny-all", deny)));
        assert_eq!(
            check(&p, ApiVersion::V1, DEV),
            Some((false, Some("deny-all".into())))
        );
        let p = policy(&format!(
            "{}{}{}",
            rule("allow", ""),
            rule("deny-some", &format!("{deny}{COND}")),
            rule("deny-all", deny)
        ));
        assert_eq!(
            check(&p, ApiVersion::V1, DEV),
            None,
            "which deny names the refusal"
        );
        let p = policy(&rule("deny-some", &format!("{deny}{COND}")));
        assert_eq!(check(&p, ApiVersion::V1, DEV), None);
    }

    #[test]
    fn a_bulk_request_is_refused_unread_when_no_rule_allows_any_bulk_operation() {
        let bulk = catalog::by_name("managedDevices.executeAction").unwrap();
        let scope = |caller, version| Scope {
            caller,
            op: bulk,
            version,
            device: "",
        };
        let wipe = "  - name: wipe-one\n    callers: [a]\n    operations: [managedDevices.wipe]\n";
        let p = policy(&format!(
            "{wipe}    devices: [{DEV}]\n    api_versions: [beta]\n{}",
            rule("update", "")
        ));
        assert_eq!(
            p.decide_before_body(&scope(0, ApiVersion::Beta))
                .map(|d| d.allowed),
            None,
            "a rule covers wipe on some device: the body decides"
        );
        let denied = p.decide_before_body(&scope(1, ApiVersion::Beta));
        assert!(
            denied.is_some_and(|d| !d.allowed && d.rule.is_none()),
            "caller b: no rule"
        );
        // Caller a's other rule names an operation executeAction cannot run.
        let p = policy(&rule("update", ""));
        assert!(p.decide_before_body(&scope(0, ApiVersion::Beta)).is_some());
        // A deny rule on wipe gives no bulk right; a shadow allow does (its verdict is
        // recorded); a wipe rule for v1.0 only does not cover the beta bulk action.
        let p = policy(&format!("{wipe}    effect: deny\n"));
        assert!(p.decide_before_body(&scope(0, ApiVersion::Beta)).is_some());
        let p = policy(&format!("{wipe}    mode: shadow\n"));
        assert!(p.decide_before_body(&scope(0, ApiVersion::Beta)).is_none());
        let p = policy(&format!("{wipe}    api_versions: [v1.0]\n"));
        assert!(p.decide_before_body(&scope(0, ApiVersion::Beta)).is_some());
    }

    #[test]
    fn shadow_allows_need_the_body_and_shadow_denies_do_not() {
        let p = policy(&rule("trial", &format!("    mode: shadow\n{COND}")));
        assert_eq!(
            check(&p, ApiVersion::V1, DEV),
            None,
            "its verdict is recorded"
        );
        let p = policy(&rule("trial-deny", "    mode: shadow\n    effect: deny\n"));
        assert_eq!(check(&p, ApiVersion::V1, DEV), Some((false, None)));
        let p = policy(&rule("allow", ""));
        assert_eq!(
            check(&p, ApiVersion::V1, DEV),
            None,
            "an allow needs the body read"
        );
    }
}
