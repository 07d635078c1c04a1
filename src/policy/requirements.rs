//! The person and the reason on rules: `require: [initiator, reason]` (an allowed request
//! must state them, or gets 400 naming what is missing) and `initiators: [...]` (the rule
//! covers only requests made for these people: exact UPNs or object ids, or a domain
//! suffix). Parsed and validated here; what a request states is read in `identity::stated`.
//! A [`Person`] is known by a UPN, an object id, or both (a delegated token names its user
//! by both): a rule's `initiators` cover the person if they cover either.

use serde_saphyr::Spanned;

use super::issues::Issues;
use crate::operation::schema::screen::is_address;

/// What an allowed request must state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Require {
    /// The person the caller acts for (`X-Graphgate-Initiator`, or the delegated token's user).
    pub initiator: bool,
    /// Why (`X-Graphgate-Reason`).
    pub reason: bool,
}

/// What a request left unstated that its rule requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// No initiator.
    pub initiator: bool,
    /// No reason.
    pub reason: bool,
}

impl Missing {
    /// Whether nothing is missing.
    pub fn is_none(self) -> bool {
        !self.initiator && !self.reason
    }

    /// The missing items, by name (`initiator`, `reason`).
    pub fn names(self) -> Vec<&'static str> {
        [(self.initiator, "initiator"), (self.reason, "reason")]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect()
    }
}

impl Require {
    /// What of this requirement a request stating `initiator` and `reason` leaves out.
    pub fn missing(self, initiator: bool, reason: bool) -> Missing {
        Missing {
            initiator: self.initiator && !initiator,
            reason: self.reason && !reason,
        }
    }
}

/// The person a request is made for, by the ids that are known: a UPN, an object id (lower
/// case), or both. At least one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The user principal name, when known.
    pub upn: Option<String>,
    /// The object id (lower case), when known.
    pub oid: Option<String>,
}

impl Person {
    /// A person stated by one id: an object id (a GUID, kept in lower case) or a UPN.
    pub fn stated(id: &str) -> Self {
        if crate::operation::route::is_guid(id) {
            Person {
                upn: None,
                oid: Some(id.to_ascii_lowercase()),
            }
        } else {
            Person {
                upn: Some(id.to_owned()),
                oid: None,
            }
        }
    }

    /// The id recorded as the initiator: the UPN, else the object id.
    pub fn primary(&self) -> &str {
        self.upn
            .as_deref()
            .or(self.oid.as_deref())
            .unwrap_or_default()
    }

    /// Every known id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.upn.as_deref().into_iter().chain(self.oid.as_deref())
    }

    /// Whether `id` (a UPN or an object id, any ASCII case) is one of this person's ids.
    pub fn is(&self, id: &str) -> bool {
        self.ids().any(|mine| mine.eq_ignore_ascii_case(id))
    }

    /// Whether one of `patterns` covers one of this person's ids.
    pub fn covered_by(&self, patterns: &[InitiatorPattern]) -> bool {
        self.ids().any(|id| patterns.iter().any(|p| p.covers(id)))
    }
}

/// One entry of a rule's `initiators`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorPattern {
    /// This UPN or object id (ASCII case-insensitive).
    Exact(String),
    /// Initiators whose UPN ends with this (`@domain` exactly that domain, `.domain` its
    /// subdomains), ASCII case-insensitive.
    Suffix(String),
}

impl InitiatorPattern {
    /// Whether `initiator` (a UPN or an object id) is covered.
    pub fn covers(&self, initiator: &str) -> bool {
        match self {
            InitiatorPattern::Exact(who) => who.eq_ignore_ascii_case(initiator),
            InitiatorPattern::Suffix(suffix) => {
                initiator.len() > suffix.len()
                    && initiator.as_bytes()[initiator.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

/// One warning per deny rule that names people by one kind of id only (all object ids, or
/// all UPNs): a request makes known only the ids it has (a stated initiator is one id; a
/// delegated token without `upn` is its object id only), so such a deny does not stop the
/// same person named the other way.
pub(super) fn warnings(rules: &[super::Rule]) -> Vec<String> {
    rules
        .iter()
        .filter(|rule| rule.effect == super::Effect::Deny)
        .filter_map(|rule| {
            let exact = rule.initiators.as_deref()?.iter().filter_map(|p| match p {
                InitiatorPattern::Exact(id) => Some(crate::operation::route::is_guid(id)),
                InitiatorPattern::Suffix(_) => None,
            });
            let (oids, upns) = exact.fold((0, 0), |(o, u), is_oid| match is_oid {
                true => (o + 1, u),
                false => (o, u + 1),
            });
            let (named, slips) = match (oids, upns) {
                (0, 0) => return None,
                (_, 0) => (
                    "object ids",
                    "a caller stating the same person by UPN (X-Graphgate-Initiator or the 'initiator' field)",
                ),
                (0, _) => (
                    "UPNs",
                    "a caller stating the same person by object id, or the person's delegated token without 'upn' (Entra v2)",
                ),
                _ => return None,
            };
            Some(format!(
                "deny rule '{}' names people by {named} only: {slips} is not stopped by it; list each person's UPN and object id",
                rule.name
            ))
        })
        .collect()
}

/// Compiles a rule's `require`. It belongs on allow rules: a deny refuses whatever is stated.
pub(super) fn require(
    entry: Option<&Spanned<Vec<Spanned<String>>>>,
    deny: bool,
    issues: &mut Issues,
) -> Require {
    let mut require = Require::default();
    let Some(list) = entry else { return require };
    if deny {
        issues.at(
            list,
            "require belongs on allow rules: a deny rule refuses whatever the request states",
        );
    }
    for item in &list.value {
        let slot = match item.value.as_str() {
            "initiator" => &mut require.initiator,
            "reason" => &mut require.reason,
            other => {
                issues.at(
                    item,
                    format!("require takes 'initiator' and 'reason', not {other:?}"),
                );
                continue;
            }
        };
        if std::mem::replace(slot, true) {
            issues.at(item, format!("{:?} is required twice", item.value));
        }
    }
    require
}

/// Compiles a rule's `initiators`.
pub(super) fn initiators(
    entry: Option<&Spanned<Vec<Spanned<String>>>>,
    issues: &mut Issues,
) -> Option<Vec<InitiatorPattern>> {
    let list = entry?;
    if list.value.is_empty() {
        issues.at(list, "an empty initiators list can never match: list UPNs, object ids or domain suffixes ('@contoso.com', '.contoso.com')");
    }
    let patterns = list
        .value
        .iter()
        .filter_map(|item| {
            let text = item.value.as_str();
            // A suffix is '@' or '.' and then a domain: "x@<domain>" is then an address.
            let domain = text.get(1..).unwrap_or_default();
            let pattern = if text.starts_with(['@', '.']) && is_address(&format!("x@{domain}")) {
                InitiatorPattern::Suffix(text.to_ascii_lowercase())
            } else if is_address(text) || crate::operation::route::is_guid(text) {
                InitiatorPattern::Exact(text.to_ascii_lowercase())
            } else {
                issues.at(item, format!("initiator {text:?} is not a user principal name (user@domain), an object id (GUID), or a domain suffix starting with '@' (that domain) or '.' (its subdomains)"));
                return None;
            };
            Some(pattern)
        })
        .collect();
    Some(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_exactly_and_by_domain_boundary() {
        let exact = InitiatorPattern::Exact("alice@contoso.com".into());
        assert!(exact.covers("Alice@Contoso.com"));
        assert!(!exact.covers("malice@contoso.com"));
        let domain = InitiatorPattern::Suffix("@contoso.com".into());
        assert!(domain.covers("bob@CONTOSO.com"));
        assert!(!domain.covers("bob@evilcontoso.com"));
        assert!(!domain.covers("bob@it.contoso.com"));
        assert!(!domain.covers("@contoso.com"));
        let sub = InitiatorPattern::Suffix(".contoso.com".into());
        assert!(sub.covers("bob@it.contoso.com"));
        assert!(!sub.covers("bob@contoso.com"));
    }

    #[test]
    fn missing_names_what_the_rule_requires_and_the_request_lacks() {
        let both = Require {
            initiator: true,
            reason: true,
        };
        assert_eq!(both.missing(false, false).names(), ["initiator", "reason"]);
        assert_eq!(both.missing(true, false).names(), ["reason"]);
        assert!(both.missing(true, true).is_none());
        assert!(Require::default().missing(false, false).is_none());
    }
}
