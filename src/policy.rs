//! The allow-list policy (`policy.yaml`): parsed strictly (unknown keys fail with their
//! line and column), validated into typed callers and rules with every error reported at
//! once, and evaluated deny-by-default.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::catalog::{self, Operation};

/// The policy-file format this build reads.
pub const POLICY_VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Spanned<u32>,
    #[serde(default)]
    callers: Vec<CallerEntry>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: Spanned<String>,
    api_key_sha256: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: Spanned<String>,
    callers: Vec<Spanned<String>>,
    operations: Vec<Spanned<String>>,
}

/// One problem in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// A policy file that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub struct PolicyError {
    /// Where the policy came from.
    pub source_name: String,
    /// The problems, in file order.
    pub issues: Vec<PolicyIssue>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} error(s):",
            self.source_name,
            self.issues.len()
        )?;
        for issue in &self.issues {
            write!(f, "\n  {}:{issue}", self.source_name)?;
        }
        Ok(())
    }
}

/// A known caller.
#[derive(Debug)]
pub struct Caller {
    /// The caller's name, used in rules, audit and logs.
    pub name: String,
    /// SHA-256 of its API key.
    pub key_sha256: [u8; 32],
}

/// An allow rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule's name, reported with every decision it makes.
    pub name: String,
    /// Indices into [`Policy::callers`].
    callers: Vec<usize>,
    operations: Vec<&'static Operation>,
}

/// A validated policy, ready to evaluate.
#[derive(Debug)]
pub struct Policy {
    /// Every caller, in file order.
    pub callers: Vec<Caller>,
    /// Every rule, in file order.
    pub rules: Vec<Rule>,
    /// Hex SHA-256 of the file's bytes: the policy version recorded with each decision.
    pub hash: String,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Allowed by the named rule.
    Allow {
        /// The rule.
        rule: &'p str,
    },
    /// No rule allows this operation for this caller.
    NoRuleAllows,
}

impl Policy {
    /// Parses and validates policy text; `source_name` labels errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let fail = |issues| PolicyError {
            source_name: source_name.to_owned(),
            issues,
        };
        let file: PolicyFile = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            fail(vec![PolicyIssue {
                line,
                column,
                message: first_line(&e.to_string()),
            }])
        })?;
        let policy = validate(file, &hex(&Sha256::digest(text.as_bytes()))).map_err(fail)?;
        Ok(policy)
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: name.clone(),
            issues: vec![PolicyIssue {
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::from_yaml(&text, &name)
    }

    /// Decides whether caller `caller` (an index into `callers`) may run `op`.
    pub fn decide(&self, caller: usize, op: &Operation) -> Decision<'_> {
        self.rules
            .iter()
            .find(|r| {
                r.callers.contains(&caller) && r.operations.iter().any(|o| std::ptr::eq(*o, op))
            })
            .map_or(Decision::NoRuleAllows, |r| Decision::Allow {
                rule: &r.name,
            })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_owned()
}

fn issue<T>(at: &Spanned<T>, message: String) -> PolicyIssue {
    PolicyIssue {
        line: at.referenced.line(),
        column: at.referenced.column(),
        message,
    }
}

fn validate(file: PolicyFile, hash: &str) -> Result<Policy, Vec<PolicyIssue>> {
    let mut issues = Vec::new();
    if file.version.value != POLICY_VERSION {
        issues.push(issue(
            &file.version,
            format!(
                "unsupported version {}: this build reads version {POLICY_VERSION}",
                file.version.value
            ),
        ));
    }
    let mut callers: Vec<Caller> = Vec::with_capacity(file.callers.len());
    for (i, entry) in file.callers.iter().enumerate() {
        if file.callers[..i]
            .iter()
            .any(|c| c.name.value == entry.name.value)
        {
            issues.push(issue(
                &entry.name,
                format!("duplicate caller name {:?}", entry.name.value),
            ));
        }
        match parse_sha256(&entry.api_key_sha256.value) {
            Some(key_sha256) => callers.push(Caller {
                name: entry.name.value.clone(),
                key_sha256,
            }),
            None => issues.push(issue(
                &entry.api_key_sha256,
                "api_key_sha256 must be 64 hex characters (the SHA-256 of the key)".into(),
            )),
        }
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
    for (i, entry) in file.rules.iter().enumerate() {
        if file.rules[..i]
            .iter()
            .any(|r| r.name.value == entry.name.value)
        {
            issues.push(issue(
                &entry.name,
                format!("duplicate rule name {:?}", entry.name.value),
            ));
        }
        let mut rule = Rule {
            name: entry.name.value.clone(),
            callers: Vec::new(),
            operations: Vec::new(),
        };
        for c in &entry.callers {
            match file.callers.iter().position(|k| k.name.value == c.value) {
                Some(i) => rule.callers.push(i),
                None => issues.push(issue(c, format!("unknown caller {:?}", c.value))),
            }
        }
        for o in &entry.operations {
            match catalog::by_name(&o.value) {
                Some(op) => rule.operations.push(op),
                None => issues.push(issue(
                    o,
                    format!(
                        "unknown operation {:?}; known operations: {}",
                        o.value,
                        known_operations()
                    ),
                )),
            }
        }
        if entry.callers.is_empty() || entry.operations.is_empty() {
            issues.push(issue(
                &entry.name,
                format!(
                    "rule {:?} can never match: it needs at least one caller and one operation",
                    entry.name.value
                ),
            ));
        }
        rules.push(rule);
    }
    if issues.is_empty() {
        Ok(Policy {
            callers,
            rules,
            hash: hash.to_owned(),
        })
    } else {
        issues.sort_by_key(|i| (i.line, i.column));
        Err(issues)
    }
}

fn known_operations() -> String {
    catalog::CATALOG
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_sha256(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex_text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HASH: &str = "1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011";

    fn yaml(rules: &str) -> String {
        format!(
            "version: 1\ncallers:\n  - name: rotator\n    api_key_sha256: \"{KEY_HASH}\"\nrules:\n{rules}"
        )
    }

    #[test]
    fn valid_policy_allows_only_what_a_rule_names() {
        let p = Policy::from_yaml(&yaml("  - name: r1\n    callers: [rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n"), "p.yaml").unwrap();
        let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
        assert_eq!(p.decide(0, op), Decision::Allow { rule: "r1" });
        assert_eq!(p.callers[0].key_sha256[0], 0x1f);
        assert_eq!(p.hash.len(), 64);
        let empty = Policy::from_yaml(
            &yaml("  []\n").replace("rules:\n  []", "rules: []"),
            "p.yaml",
        )
        .unwrap();
        assert_eq!(empty.decide(0, op), Decision::NoRuleAllows);
    }

    #[test]
    fn unknown_keys_fail_with_line_and_column() {
        let err = Policy::from_yaml(&yaml("  - name: r1\n    callers: [rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    devcies: any\n"), "p.yaml").unwrap_err();
        assert_eq!(err.issues.len(), 1);
        assert_eq!(err.issues[0].line, 9, "{err}");
        assert!(err.issues[0].message.contains("devcies"), "{err}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_positions() {
        let text = format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"xyz\"\n  - name: a\n    api_key_sha256: \"{KEY_HASH}\"\nrules:\n  - name: r\n    callers: [nobody]\n    operations: [managedDevices.wipeEverything]\n"
        );
        let err = Policy::from_yaml(&text, "p.yaml").unwrap_err();
        let lines: Vec<u64> = err.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![4, 5, 9, 10], "{err}");
        let shown = err.to_string();
        assert!(shown.contains("p.yaml:9:"), "{shown}");
        assert!(shown.contains("unknown caller \"nobody\""), "{shown}");
        assert!(
            shown.contains("managedDevices.updateWindowsDeviceAccount"),
            "lists known ops: {shown}"
        );
    }
}
