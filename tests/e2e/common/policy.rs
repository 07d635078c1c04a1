//! A small typed test policy: callers and rules as values, written out as the policy file's
//! text (JSON, which is YAML), instead of policy text patched with `replace`.

use graphgate::identity::api_key_sha256;
use serde_json::{Map, Value, json};

use super::{OTHER_KEY, ROTATOR_KEY};

/// A policy file being put together.
#[derive(Debug, Clone)]
pub struct TestPolicy {
    top: Map<String, Value>,
    callers: Vec<Caller>,
    rules: Vec<Rule>,
}

/// One caller.
#[derive(Debug, Clone)]
pub struct Caller(Map<String, Value>);

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule(Map<String, Value>);

impl TestPolicy {
    /// No callers, no rules.
    pub fn empty() -> Self {
        let mut top = Map::new();
        top.insert("version".into(), json!(1));
        TestPolicy {
            top,
            callers: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// The standard policy: `rooms-rotator` ([`ROTATOR_KEY`]) may update device accounts
    /// (rule `rotator-updates-room-accounts`); `other-service` ([`OTHER_KEY`]) may nothing.
    pub fn standard() -> Self {
        Self::empty()
            .caller(Caller::api_key("rooms-rotator", ROTATOR_KEY))
            .caller(Caller::api_key("other-service", OTHER_KEY))
            .rule(
                Rule::allow("rotator-updates-room-accounts")
                    .callers(&["rooms-rotator"])
                    .operations(&["managedDevices.updateWindowsDeviceAccount"]),
            )
    }

    /// A policy file's text (YAML), to change by name: for policies a helper writes as text
    /// (the JWT harness's issuers and callers).
    pub fn parse(text: &str) -> Self {
        let doc: Value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let Value::Object(mut top) = doc else {
            panic!("not a policy: {text}")
        };
        let mut list = |key: &str| match top.remove(key) {
            Some(Value::Array(entries)) => entries
                .into_iter()
                .map(|e| match e {
                    Value::Object(m) => m,
                    other => panic!("a {key} entry that is not a map: {other}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        let callers = list("callers").into_iter().map(Caller).collect();
        let rules = list("rules").into_iter().map(Rule).collect();
        TestPolicy {
            top,
            callers,
            rules,
        }
    }

    /// Changes every entry of the top-level list `key` (e.g. each of `jwt_issuers`).
    pub fn with_each(mut self, key: &str, mut change: impl FnMut(&mut Map<String, Value>)) -> Self {
        let entries = self.top.get_mut(key).and_then(Value::as_array_mut);
        for entry in entries.into_iter().flatten() {
            if let Value::Object(m) = entry {
                change(m);
            }
        }
        self
    }

    /// Adds a caller.
    pub fn caller(mut self, caller: Caller) -> Self {
        self.callers.push(caller);
        self
    }

    /// Adds a rule (after the others).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Changes the caller named `name`.
    pub fn with_caller(mut self, name: &str, change: impl FnOnce(Caller) -> Caller) -> Self {
        let at = self.callers.iter().position(|c| c.0["name"] == name);
        let at = at.unwrap_or_else(|| panic!("no caller {name}"));
        self.callers[at] = change(self.callers[at].clone());
        self
    }

    /// Changes the rule named `name`.
    pub fn with_rule(mut self, name: &str, change: impl FnOnce(Rule) -> Rule) -> Self {
        let at = self.rules.iter().position(|r| r.0["name"] == name);
        let at = at.unwrap_or_else(|| panic!("no rule {name}"));
        self.rules[at] = change(self.rules[at].clone());
        self
    }

    /// Sets a top-level key (`pacing`, `tenant_budgets`, `jwt_issuers`, ...).
    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.top.insert(key.into(), value);
        self
    }

    /// The policy file's text.
    pub fn yaml(&self) -> String {
        let mut doc = self.top.clone();
        let callers = self.callers.iter().map(|c| Value::Object(c.0.clone()));
        doc.insert("callers".into(), Value::Array(callers.collect()));
        let rules = self.rules.iter().map(|r| Value::Object(r.0.clone()));
        doc.insert("rules".into(), Value::Array(rules.collect()));
        serde_json::to_string_pretty(&Value::Object(doc)).unwrap()
    }
}

impl Caller {
    /// A caller with an API key.
    pub fn api_key(name: &str, key: &str) -> Self {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.insert("api_key_sha256".into(), json!(api_key_sha256(key)));
        Caller(m)
    }

    /// A caller of another kind (`mtls`, `jwt`), with no API key.
    pub fn named(name: &str) -> Self {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        Caller(m)
    }

    /// Sets a key (`rate_limit`, `budget`, `mtls`, `jwt`, ...).
    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    /// Removes a key.
    pub fn without(mut self, key: &str) -> Self {
        self.0.remove(key);
        self
    }
}

impl Rule {
    /// An allow rule.
    pub fn allow(name: &str) -> Self {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        Rule(m)
    }

    /// A deny rule.
    pub fn deny(name: &str) -> Self {
        Self::allow(name).set("effect", json!("deny"))
    }

    /// The callers it names.
    pub fn callers(self, callers: &[&str]) -> Self {
        self.set("callers", json!(callers))
    }

    /// The callers it names, but `name`.
    pub fn without_caller(self, name: &str) -> Self {
        let kept: Vec<Value> = self.0["callers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| *c != name)
            .cloned()
            .collect();
        assert_ne!(
            Some(kept.len()),
            self.0["callers"].as_array().map(Vec::len),
            "the rule names no caller {name}"
        );
        self.set("callers", Value::Array(kept))
    }

    /// The operations it covers.
    pub fn operations(self, operations: &[&str]) -> Self {
        self.set("operations", json!(operations))
    }

    /// Sets a key (`devices`, `when`, `rate_limit`, `budget`, `require`, `mode`, ...).
    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard policy loads as the gateway would load it, with its two callers.
    #[test]
    fn the_standard_policy_loads() {
        let policy =
            graphgate::policy::Policy::from_yaml(&TestPolicy::standard().yaml(), "t").unwrap();
        assert_eq!(policy.callers.len(), 2);
        assert_eq!(policy.rules[0].name, "rotator-updates-room-accounts");
    }
}
