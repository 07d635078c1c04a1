//! Evaluation: deny by default, a matching enforced deny wins, then the first matching
//! enforced allow. Shadow rules are evaluated too and reported when they would change the
//! outcome. Only the rules naming the caller are looked at, and nothing is allocated.

use super::{Condition, Effect, Mode, Person, Policy, Rule, Test};
use crate::operation::catalog::{ApiVersion, Operation};
use crate::operation::route::Recognised;
use crate::operation::schema::{ParamValue, Params};

/// What a decision is made on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Index into [`Policy::callers`].
    pub caller: usize,
    /// The operation.
    pub op: &'static Operation,
    /// The API version.
    pub version: ApiVersion,
    /// The target device (lower-case GUID).
    pub device: &'a str,
    /// The validated body parameters.
    pub params: &'a Params,
    /// The person the request is made for (by UPN, object id or both), if it states one.
    pub initiator: Option<&'a Person>,
}

impl<'a> Facts<'a> {
    /// The facts of request `target` from caller number `caller`, with these parameters,
    /// made for `initiator` if it states one: built here only, so the gateway,
    /// `policy explain` and `policy test` decide on the same facts.
    pub fn of(
        caller: usize,
        target: &'a Recognised,
        params: &'a Params,
        initiator: Option<&'a Person>,
    ) -> Self {
        Facts {
            caller,
            op: target.op,
            version: target.version,
            device: &target.device_id,
            params,
            initiator,
        }
    }
}

/// What shadow rules would have decided, when that differs from the enforced decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowVerdict<'p> {
    /// Whether the request would be allowed.
    pub allowed: bool,
    /// The shadow rule that would decide it.
    pub rule: &'p str,
}

/// The policy's answer for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'p> {
    /// Whether the request may be forwarded.
    pub allowed: bool,
    /// The rule that decided; `None` means no rule allows it (the default deny).
    pub rule: Option<&'p Rule>,
    /// What shadow rules would change, if anything.
    pub shadow: Option<ShadowVerdict<'p>>,
}

impl Decision<'_> {
    /// The deciding rule's name, or `None` for the default deny.
    pub fn rule_name(&self) -> Option<&str> {
        self.rule.map(|r| r.name.as_str())
    }
}

/// Why one rule did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The rule does not cover the operation.
    Operation,
    /// The rule does not cover the API version.
    Version,
    /// The rule does not cover the device.
    Device,
    /// The rule's `initiators` do not cover the request's initiator (or it states none).
    Initiator,
    /// A condition failed.
    Condition(Condition),
}

/// [`Mismatch`] by reference: what [`Policy::decide`] works with, so that skipping a rule
/// copies nothing.
#[derive(Debug, Clone, Copy)]
enum Miss<'r> {
    Operation,
    Version,
    Device,
    Initiator,
    Condition(&'r Condition),
}

impl From<Miss<'_>> for Mismatch {
    fn from(miss: Miss<'_>) -> Self {
        match miss {
            Miss::Operation => Mismatch::Operation,
            Miss::Version => Mismatch::Version,
            Miss::Device => Mismatch::Device,
            Miss::Initiator => Mismatch::Initiator,
            Miss::Condition(c) => Mismatch::Condition(c.clone()),
        }
    }
}

/// Why the policy decided as it did, rule by rule (for `policy explain`).
#[derive(Debug)]
pub struct Explanation<'p> {
    /// The decision.
    pub decision: Decision<'p>,
    /// Every rule naming the caller, and whether it matched.
    pub rules: Vec<(&'p Rule, Result<(), Mismatch>)>,
}

impl Policy {
    /// Decides one request.
    pub fn decide(&self, facts: &Facts<'_>) -> Decision<'_> {
        let mut enforced_allow = None;
        let mut shadow_deny = None;
        let mut shadow_allow = None;
        for rule in self.rules_for(facts.caller) {
            if rule.check(facts).is_err() {
                continue;
            }
            match (rule.effect, rule.mode) {
                (Effect::Deny, Mode::Enforce) => {
                    return Decision {
                        allowed: false,
                        rule: Some(rule),
                        shadow: None,
                    };
                }
                (Effect::Allow, Mode::Enforce) => {
                    enforced_allow.get_or_insert(rule);
                }
                (Effect::Deny, Mode::Shadow) => {
                    shadow_deny.get_or_insert(rule);
                }
                (Effect::Allow, Mode::Shadow) => {
                    shadow_allow.get_or_insert(rule);
                }
            }
        }
        let allowed = enforced_allow.is_some();
        // With shadow rules enforced: a shadow deny would refuse an allowed request, and a
        // shadow allow would let through one that nothing allows today.
        let shadow = match (allowed, shadow_deny, shadow_allow) {
            (true, Some(d), _) => Some(ShadowVerdict {
                allowed: false,
                rule: d.name.as_str(),
            }),
            (false, None, Some(a)) => Some(ShadowVerdict {
                allowed: true,
                rule: a.name.as_str(),
            }),
            _ => None,
        };
        Decision {
            allowed,
            rule: enforced_allow,
            shadow,
        }
    }

    /// Decides one request and says, for every rule naming the caller, why it did or did not match.
    pub fn explain(&self, facts: &Facts<'_>) -> Explanation<'_> {
        Explanation {
            decision: self.decide(facts),
            rules: self
                .rules_for(facts.caller)
                .map(|r| (r, r.check(facts).map_err(Mismatch::from)))
                .collect(),
        }
    }

    pub(super) fn rules_for(&self, caller: usize) -> impl Iterator<Item = &Rule> {
        self.by_caller
            .get(caller)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.rules.get(i))
    }
}

impl Rule {
    /// Whether this rule covers the request; the first reason it does not, if not.
    fn check(&self, f: &Facts<'_>) -> Result<(), Miss<'_>> {
        self.covers(f.op, f.version, f.device)?;
        if let Some(people) = &self.initiators
            && !f.initiator.is_some_and(|who| who.covered_by(people))
        {
            return Err(Miss::Initiator);
        }
        match self.conditions.iter().find(|c| !c.holds(f.params)) {
            Some(failed) => Err(Miss::Condition(failed)),
            None => Ok(()),
        }
    }
}

impl Rule {
    /// Whether this rule covers the operation, version and device, its conditions aside.
    fn covers(&self, op: &Operation, version: ApiVersion, device: &str) -> Result<(), Miss<'_>> {
        if !self.operations.iter().any(|o| std::ptr::eq(*o, op)) {
            return Err(Miss::Operation);
        }
        if !self.versions.contains(&version) {
            return Err(Miss::Version);
        }
        if let Some(devices) = &self.devices
            && devices
                .binary_search_by(|d| d.as_str().cmp(device))
                .is_err()
        {
            return Err(Miss::Device);
        }
        Ok(())
    }

    /// Whether this rule covers the operation, version and device, its conditions aside.
    pub(super) fn in_scope(&self, op: &Operation, version: ApiVersion, device: &str) -> bool {
        self.covers(op, version, device).is_ok()
    }
}

impl Condition {
    fn holds(&self, params: &Params) -> bool {
        let value = params
            .get(&self.param)
            .filter(|v| !matches!(v, ParamValue::Null));
        let text = value.and_then(|v| match v {
            ParamValue::String(s) => Some(s.as_str()),
            ParamValue::Type(t) => Some(*t),
            _ => None,
        });
        match &self.test {
            Test::Present(want) => value.is_some() == *want,
            Test::EqualsBool(b) => matches!(value, Some(ParamValue::Bool(v)) if v == b),
            Test::EqualsStr(s) => text.is_some_and(|t| eq_type_or_text(t, s)),
            Test::OneOf(list) => text.is_some_and(|t| list.iter().any(|s| eq_type_or_text(t, s))),
            Test::Prefix(p) => text.is_some_and(|t| {
                t.len() >= p.len() && t.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }),
            Test::Suffix(s) => text.is_some_and(|t| {
                t.len() >= s.len()
                    && t.as_bytes()[t.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }),
        }
    }
}

/// Type names may be written with or without Graph's leading `#`.
fn eq_type_or_text(value: &str, wanted: &str) -> bool {
    value.eq_ignore_ascii_case(wanted.strip_prefix('#').unwrap_or(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog;
    use crate::operation::schema::{self, Params};

    const DEV: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";

    /// The decision for caller 0 on a Graph body, read as the gateway reads it.
    fn decide(p: &Policy, caller: &str, body: &str) -> (bool, Option<String>) {
        let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
        let value = schema::parse_strict(body.as_bytes()).unwrap();
        let params: Params = schema::validate_request(&value, op.params, op.wrapper).unwrap();
        let d = p.decide(&Facts {
            caller: p.caller_index(caller).unwrap(),
            op,
            version: ApiVersion::V1,
            device: DEV,
            params: &params,
            initiator: None,
        });
        (d.allowed, d.rule_name().map(str::to_owned))
    }

    fn wrapped(inner: &str) -> String {
        format!(r#"{{"updateWindowsDeviceAccountActionParameter":{{{inner}}}}}"#)
    }

    #[test]
    fn the_shipped_policy_allows_one_exchange_server_however_the_others_are_spelt() {
        let p = Policy::from_yaml(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policy.yaml")).unwrap(),
            "policy.yaml",
        )
        .unwrap();
        let with_exchange = |host: &str| {
            wrapped(&format!(
                r##""deviceAccountEmail":"room1@rooms.contoso.com","exchangeServer":"{host}","passwordRotationEnabled":true,"deviceAccount":{{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"x"}}"##
            ))
        };
        assert_eq!(
            decide(&p, "rooms-rotator", &with_exchange("OUTLOOK.office365.com")),
            (true, Some("rotator-updates-room-accounts".into()))
        );
        for host in [
            "exchange.attacker.example",
            "mail.contoso.com",
            "mail.contoso.com.",
            "outlook.office365.com.",
            "outlook.office365.com.attacker.example",
            "exchange.contoso.local",
        ] {
            assert_eq!(
                decide(&p, "rooms-rotator", &with_exchange(host)),
                (false, None),
                "{host}"
            );
        }
    }

    #[test]
    fn prefix_present_false_and_absent_true_through_a_compiled_policy() {
        let p = Policy::from_yaml(
            "version: 1\ncallers:\n  - name: c\n    api_key_sha256: \"1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011\"\nrules:\n  - name: rooms-without-exchange\n    callers: [c]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: deviceAccountEmail, prefix: \"Room\" }\n      - { param: exchangeServer, absent: true }\n  - name: rotation-must-be-stated\n    effect: deny\n    callers: [c]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - { param: passwordRotationEnabled, present: false }\n",
            "p.yaml",
        )
        .unwrap();
        let allowed = (true, Some("rooms-without-exchange".to_owned()));
        let default_deny = (false, None);
        let cases = [
            (
                r#""deviceAccountEmail":"room1@contoso.com","passwordRotationEnabled":true"#,
                &allowed,
            ),
            (
                r#""deviceAccountEmail":"ROOM1@contoso.com","passwordRotationEnabled":false"#,
                &allowed,
            ),
            (
                r#""deviceAccountEmail":"ceo@contoso.com","passwordRotationEnabled":true"#,
                &default_deny,
            ),
            (
                r#""deviceAccountEmail":"ro@contoso.com","passwordRotationEnabled":true"#,
                &default_deny,
            ),
            (
                r#""deviceAccountEmail":"room1@contoso.com","exchangeServer":"outlook.office365.com","passwordRotationEnabled":true"#,
                &default_deny,
            ),
        ];
        for (inner, want) in cases {
            assert_eq!(&decide(&p, "c", &wrapped(inner)), want, "{inner}");
        }
        assert_eq!(
            decide(
                &p,
                "c",
                &wrapped(r#""deviceAccountEmail":"room1@contoso.com""#)
            ),
            (false, Some("rotation-must-be-stated".into()))
        );
    }

    #[test]
    fn a_suffix_on_an_address_must_start_at_a_domain_boundary() {
        let rule = |suffix: &str, param: &str| {
            format!(
                "version: 1\ncallers:\n  - name: c\n    api_key_sha256: \"1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011\"\nrules:\n  - name: r\n    callers: [c]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    when:\n      - {{ param: {param}, suffix: \"{suffix}\" }}\n"
            )
        };
        for ok in ["@rooms.contoso.com", ".contoso.com"] {
            assert!(Policy::from_yaml(&rule(ok, "deviceAccountEmail"), "p").is_ok());
        }
        let err = Policy::from_yaml(&rule("contoso.com", "deviceAccount.userPrincipalName"), "p")
            .unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        assert_eq!(err.issues[0].line, 10, "{err}");
        assert!(
            err.issues[0].message.contains("must start with '@'"),
            "{err}"
        );
        // Not an address: any suffix is a plain text test.
        assert!(Policy::from_yaml(&rule("office365.com", "exchangeServer"), "p").is_ok());
    }
}
