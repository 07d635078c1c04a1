//! The ready-made requests `serve --emulator` prints: for each demo identity the policy in
//! force names (the API key, the client certificate, the Kubernetes service account), one
//! request that policy allows. Candidates are decided by the gateway's own judgement (the
//! function `policy explain` calls), never guessed; they are shaped so the emulated Graph
//! accepts them too (a device whose platform offers the action, a body with what the CSDL
//! requires), and the least harmful operation comes first.

use graphgate::gateway::explain::evaluate;
use graphgate::identity::stated::Statement;
use graphgate::operation::catalog::{ApiVersion, Binding, CATALOG, Invocation, Operation, Tier};
use graphgate::operation::schema::{Prop, Ty};
use graphgate::policy::{Effect, Mode, Policy, Test};
use graphgate_emulator::demo::{
    DEMO_API_KEY, DEMO_MTLS_URI_SAN, DEMO_TOKEN_AUDIENCE, demo_k8s_subject,
};
use graphgate_emulator::{DEMO_USER_UPN, KUBERNETES_ISSUER, demo_devices, supports};
use serde_json::{Map, Value, json};

/// The kinds of demo identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// `Authorization: Bearer demo-api-key`.
    ApiKey,
    /// The demo client certificate, on the TLS listener.
    Certificate,
    /// The demo service account's projected token.
    ServiceAccount,
}

impl Identity {
    /// Every kind, in the order the banner shows them.
    pub const ALL: [Identity; 3] = [
        Identity::ApiKey,
        Identity::Certificate,
        Identity::ServiceAccount,
    ];

    /// In words, for the banner.
    pub fn describe(self) -> String {
        match self {
            Identity::ApiKey => format!("the demo API key ({DEMO_API_KEY})"),
            Identity::Certificate => {
                format!("the demo client certificate ({DEMO_MTLS_URI_SAN})")
            }
            Identity::ServiceAccount => format!(
                "the demo Kubernetes service account ({})",
                demo_k8s_subject()
            ),
        }
    }
}

/// One request the policy allows.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who makes it.
    pub identity: Identity,
    /// The caller the policy names for that identity.
    pub caller: String,
    /// The rule that allows it.
    pub rule: String,
    /// What it runs.
    pub op: &'static Operation,
    /// Its path (version, device and action).
    pub path: String,
    /// Its JSON body, if it sends one.
    pub body: Option<String>,
    /// `X-Graphgate-Initiator`, where the rule requires a person.
    pub initiator: Option<&'static str>,
    /// `X-Graphgate-Reason`, where the rule requires a reason.
    pub reason: Option<&'static str>,
}

/// The reason stated where a rule requires one.
const DEMO_REASON: &str = "demo: trying graphgate";

/// The caller `policy` names for `identity`, if any.
pub fn caller_of(policy: &Policy, identity: Identity) -> Option<usize> {
    match identity {
        Identity::ApiKey => {
            use sha2::{Digest, Sha256};
            policy.api_key_caller(&Sha256::digest(DEMO_API_KEY.as_bytes()).into())
        }
        // A certificate with a URI SAN is matched on it alone.
        Identity::Certificate => policy.mtls_caller([DEMO_MTLS_URI_SAN], None),
        Identity::ServiceAccount => {
            let subject = demo_k8s_subject();
            let issuer = policy.jwt_issuer_for(Some(KUBERNETES_ISSUER), Some(&subject))?;
            let accepts = policy.jwt_issuers[issuer]
                .audiences
                .iter()
                .any(|a| a == DEMO_TOKEN_AUDIENCE);
            let claim = |name: &str| match name {
                "sub" => Some(std::borrow::Cow::Owned(subject.clone())),
                "iss" => Some(std::borrow::Cow::Borrowed(KUBERNETES_ISSUER)),
                _ => None,
            };
            policy.jwt_caller(issuer, claim).filter(|_| accepts)
        }
    }
}

/// A request `policy` allows `identity`'s caller, the least harmful found first.
pub fn find(policy: &Policy, identity: Identity) -> Option<Call> {
    let caller = &policy.callers.get(caller_of(policy, identity)?)?.name;
    let mut ops: Vec<&'static Operation> = CATALOG
        .iter()
        .filter(|op| op.binding == Binding::Device)
        .collect();
    ops.sort_by_key(|op| harm(op.tier));
    for op in ops {
        for version in op.versions {
            for device in demo_devices().iter().filter(|d| supports(d.os, op.action)) {
                let path = path(op, *version, &device.id);
                if let Some(call) = first_allowed(policy, identity, caller, op, path) {
                    return Some(call);
                }
            }
        }
    }
    None
}

/// Routine operations first, secret reads and destructive ones last.
fn harm(tier: Tier) -> u8 {
    match tier {
        Tier::Routine => 0,
        Tier::Disruptive => 1,
        Tier::Disclosure => 2,
        Tier::Destructive => 3,
    }
}

fn path(op: &Operation, version: ApiVersion, device: &str) -> String {
    let base = format!(
        "/{}/deviceManagement/managedDevices/{device}",
        version.as_str()
    );
    match op.invocation {
        Invocation::Action => format!("{base}/{}", op.action),
        Invocation::Function => format!("{base}/{}()", op.action),
        Invocation::Delete => base,
    }
}

/// The first body (and statement) for `path` the policy allows.
fn first_allowed(
    policy: &Policy,
    identity: Identity,
    caller: &str,
    op: &'static Operation,
    path: String,
) -> Option<Call> {
    let request = format!("{} {path}", op.invocation.method_name());
    // Nothing stated first: a person or a reason only where a rule requires it.
    let statements = [
        (None, None),
        (None, Some(DEMO_REASON)),
        (Some(DEMO_USER_UPN), None),
        (Some(DEMO_USER_UPN), Some(DEMO_REASON)),
    ];
    for body in bodies(policy, caller, op) {
        for (initiator, reason) in statements {
            let said = Statement { initiator, reason };
            let text = body.as_ref().map(Value::to_string);
            let Ok((eval, _)) = evaluate(
                policy,
                caller,
                &request,
                text.as_deref().map(str::as_bytes),
                said,
            ) else {
                continue;
            };
            if eval.allowed() {
                return Some(Call {
                    identity,
                    caller: caller.to_owned(),
                    rule: eval.rule_name().unwrap_or_default().to_owned(),
                    op,
                    path,
                    body: text,
                    initiator,
                    reason,
                });
            }
        }
    }
    None
}

/// Bodies to try: what the operation needs at least, then that with each allowing rule's
/// conditions met.
fn bodies(policy: &Policy, caller: &str, op: &'static Operation) -> Vec<Option<Value>> {
    if !op.takes_body() {
        return vec![None];
    }
    let base = base_body(op);
    let mut out = vec![base.clone()];
    let index = policy.caller_index(caller);
    let rules = policy.rules.iter().filter(|r| {
        r.effect == Effect::Allow
            && r.mode == Mode::Enforce
            && index.is_some_and(|i| r.callers.contains(&i))
            && r.operations.iter().any(|o| std::ptr::eq(*o, op))
    });
    for rule in rules {
        let mut body = base.clone().unwrap_or_else(|| json!({}));
        for condition in &rule.conditions {
            meet(&mut body, op, &condition.param, &condition.test);
        }
        out.push(Some(body));
    }
    out
}

/// The least body the operation takes: nothing for an action without required parameters;
/// a complete device account for the account update; each required parameter otherwise.
fn base_body(op: &'static Operation) -> Option<Value> {
    if let Some(wrapper) = op.wrapper {
        return Some(json!({ wrapper: {
            "deviceAccount": {
                "@odata.type": "#microsoft.graph.windowsDeviceAzureADAccount",
                "password": "Demo-Passw0rd!",
                "userPrincipalName": "room1@contoso.com"
            },
            "deviceAccountEmail": "room1@contoso.com",
            "exchangeServer": "outlook.office365.com",
            "passwordRotationEnabled": true,
            "calendarSyncEnabled": true,
            "sessionInitiationProtocalAddress": "sip:room1@contoso.com"
        }}));
    }
    let required: Map<String, Value> = op
        .params
        .iter()
        .filter(|p| p.required)
        .filter_map(|p| Some((p.name.to_owned(), example(p)?)))
        .collect();
    (!required.is_empty()).then_some(Value::Object(required))
}

/// A value of `prop`'s type.
fn example(prop: &Prop) -> Option<Value> {
    Some(match prop.ty {
        Ty::Bool => json!(false),
        Ty::String if prop.address => json!("room1@contoso.com"),
        Ty::String => json!("demo"),
        Ty::Enum(members) => json!(members.first()?),
        Ty::StringList | Ty::Complex(_) => return None,
    })
}

/// Sets (or removes) the member at `param` so that `test` holds.
fn meet(body: &mut Value, op: &Operation, param: &str, test: &Test) {
    let address = graphgate::operation::schema::param_paths(op.all_params(), op.wrapper)
        .iter()
        .any(|p| p.path == param && p.address);
    let value = match test {
        Test::EqualsBool(b) => json!(b),
        Test::EqualsStr(s) => json!(s),
        Test::OneOf(list) => json!(list.first()),
        Test::Prefix(p) if address && p.contains('@') => json!(format!("{p}contoso.com")),
        Test::Prefix(p) if address => json!(format!("{p}room1@contoso.com")),
        Test::Prefix(p) => json!(format!("{p}demo")),
        Test::Suffix(s) if address && s.starts_with('@') => json!(format!("room1{s}")),
        Test::Suffix(s) if address => json!(format!("room1@demo{s}")),
        Test::Suffix(s) => json!(format!("demo{s}")),
        Test::Present(true) if address => json!("room1@contoso.com"),
        Test::Present(true) => match boolean(op, param) {
            true => json!(true),
            false => json!("Demo-Value-1"),
        },
        Test::Present(false) => Value::Null,
    };
    let mut at = body;
    if let Some(wrapper) = op.wrapper {
        at = &mut at[wrapper];
    }
    let (last, objects) = split_last_member(param);
    for object in objects {
        at = &mut at[object];
    }
    match (value, at.as_object_mut()) {
        (Value::Null, Some(map)) => {
            map.remove(&last);
        }
        (value, _) => at[last] = value,
    }
}

/// `a.b.@odata.type` → (`@odata.type`, [a, b]); `a.b` → (`b`, [a]).
fn split_last_member(param: &str) -> (String, Vec<&str>) {
    let (objects, last) = match param.strip_suffix(".@odata.type") {
        Some(object) => (object, "@odata.type".to_owned()),
        None => match param.rsplit_once('.') {
            Some((objects, last)) => (objects, last.to_owned()),
            None => ("", param.to_owned()),
        },
    };
    let objects = objects.split('.').filter(|s| !s.is_empty()).collect();
    (last, objects)
}

fn boolean(op: &Operation, param: &str) -> bool {
    graphgate::operation::schema::param_paths(op.all_params(), op.wrapper)
        .iter()
        .any(|p| p.path == param && p.boolean)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, "p.yaml").unwrap()
    }

    #[test]
    fn the_demo_policy_allows_each_identity_a_call() {
        let policy = policy(&graphgate_emulator::demo::policy_yaml());
        let found: Vec<(String, &str, Option<String>)> = Identity::ALL
            .iter()
            .map(|i| {
                let call = find(&policy, *i).unwrap();
                (call.caller, call.op.name, call.body)
            })
            .collect();
        assert_eq!(found[0].0, "demo-caller");
        assert_eq!(found[0].1, "managedDevices.updateWindowsDeviceAccount");
        assert_eq!(
            (found[1].0.as_str(), found[1].1),
            ("demo-mtls-caller", "managedDevices.syncDevice")
        );
        assert_eq!(found[1].2, None);
        assert_eq!(found[2].1, "managedDevices.windowsDefenderScan");
        assert_eq!(found[2].2.as_deref(), Some(r#"{"quickScan":true}"#));
    }

    #[test]
    fn conditions_and_requirements_are_met_and_a_stranger_gets_nothing() {
        use sha2::{Digest, Sha256};
        let key: String = Sha256::digest(DEMO_API_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let policy = policy(&format!(
            "version: 1
callers:
  - name: me
    api_key_sha256: \"{key}\"
rules:
  - name: wipe-keeping-data-with-a-ticket
    callers: [me]
    operations: [managedDevices.wipe]
    devices: [\"{}\"]
    when:
      - {{ param: keepUserData, equals: true }}
      - {{ param: obliterationBehavior, one_of: [doNotObliterate] }}
    require: [initiator, reason]
",
            graphgate_emulator::DEMO_IOS_DEVICE_ID
        ));
        let call = find(&policy, Identity::ApiKey).unwrap();
        assert_eq!(call.op.name, "managedDevices.wipe");
        assert!(call.path.starts_with("/beta/"), "{}", call.path);
        assert!(call.path.contains(graphgate_emulator::DEMO_IOS_DEVICE_ID));
        let body: Value = serde_json::from_str(call.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"keepUserData": true, "obliterationBehavior": "doNotObliterate"})
        );
        assert_eq!(
            (call.initiator, call.reason),
            (Some(DEMO_USER_UPN), Some(DEMO_REASON))
        );
        // Nothing for identities the policy does not name.
        assert!(find(&policy, Identity::Certificate).is_none());
        assert!(find(&policy, Identity::ServiceAccount).is_none());
        // A rule on a device the emulator does not hold: nothing the emulator would run.
        let elsewhere = policy_text_for(&key, "11111111-2222-3333-4444-555555555555");
        assert!(
            find(
                &Policy::from_yaml(&elsewhere, "p").unwrap(),
                Identity::ApiKey
            )
            .is_none()
        );
    }

    /// The service account's token carries the demo audience: an issuer accepting another
    /// one would refuse it, so no request is suggested for it.
    #[test]
    fn a_token_the_issuer_would_refuse_gets_no_request() {
        let demo = graphgate_emulator::demo::policy_yaml();
        assert!(find(&policy(&demo), Identity::ServiceAccount).is_some());
        let other = demo.replace("audiences: [graphgate]", "audiences: [api://another]");
        assert_ne!(other, demo);
        assert!(find(&policy(&other), Identity::ServiceAccount).is_none());
    }

    fn policy_text_for(key: &str, device: &str) -> String {
        format!(
            "version: 1\ncallers:\n  - name: me\n    api_key_sha256: \"{key}\"\nrules:\n  - name: r\n    callers: [me]\n    operations: [managedDevices.syncDevice]\n    devices: [\"{device}\"]\n"
        )
    }

    #[test]
    fn nested_members_are_set_where_conditions_name_them() {
        let op =
            graphgate::operation::catalog::by_name("managedDevices.updateWindowsDeviceAccount")
                .unwrap();
        let mut body = base_body(op).unwrap();
        meet(
            &mut body,
            op,
            "deviceAccount.userPrincipalName",
            &Test::Suffix("@fabrikam.com".into()),
        );
        meet(&mut body, op, "exchangeServer", &Test::Present(false));
        let inner = &body["updateWindowsDeviceAccountActionParameter"];
        assert_eq!(
            inner["deviceAccount"]["userPrincipalName"],
            "room1@fabrikam.com"
        );
        assert!(inner.get("exchangeServer").is_none());
        assert_eq!(
            split_last_member("deviceAccount.@odata.type"),
            ("@odata.type".to_owned(), vec!["deviceAccount"])
        );
    }
}
