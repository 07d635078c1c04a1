//! The least-privilege check: the application permissions (`roles`) in the gateway's own
//! token against the permissions the operations its policy allows need. A missing one makes
//! readiness fail; an excess one is a warning and a metric.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::policy::{Effect, Mode, Policy};

/// What the gateway's token holds compared with what its policy needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeastPrivilegeReport {
    /// Needed by an allowed operation but not granted: those operations will fail.
    pub missing: Vec<String>,
    /// Granted but needed by no allowed operation: more power than the policy uses.
    pub excess: Vec<String>,
}

impl LeastPrivilegeReport {
    /// Every permission the policy needs is granted.
    pub fn is_sufficient(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Compares `granted` roles with `required` permissions (exact names; Graph permissions do
/// not imply one another). Both lists come back sorted and without duplicates.
pub fn compare<'a>(
    granted: impl IntoIterator<Item = &'a str>,
    required: impl IntoIterator<Item = &'a str>,
) -> LeastPrivilegeReport {
    let granted: BTreeSet<&str> = granted.into_iter().collect();
    let required: BTreeSet<&str> = required.into_iter().collect();
    LeastPrivilegeReport {
        missing: required
            .difference(&granted)
            .map(|s| (*s).to_owned())
            .collect(),
        excess: granted
            .difference(&required)
            .map(|s| (*s).to_owned())
            .collect(),
    }
}

/// The permissions needed by the operations that the policy's enforced allow rules name.
pub fn required_permissions(policy: &Policy) -> BTreeSet<&'static str> {
    policy
        .rules
        .iter()
        .filter(|r| r.effect == Effect::Allow && r.mode == Mode::Enforce && !r.callers.is_empty())
        .flat_map(|r| r.operations.iter().map(|op| op.permission))
        .collect()
}

/// The latest report, kept where readiness and metrics read it, recomputed when a new token
/// arrives or the policy changes.
#[derive(Default)]
pub struct PrivilegeWatch {
    required: Mutex<BTreeSet<&'static str>>,
    /// Needed whatever the policy says (outcome reconciliation's read permission).
    also: Mutex<BTreeSet<&'static str>>,
    granted: Mutex<Option<Vec<String>>>,
    report: ArcSwapOption<LeastPrivilegeReport>,
}

impl PrivilegeWatch {
    /// The latest report; `None` until the first token.
    pub fn report(&self) -> Option<Arc<LeastPrivilegeReport>> {
        self.report.load_full()
    }

    /// The policy changed: new required permissions.
    pub fn set_required(&self, required: BTreeSet<&'static str>) {
        if let Ok(mut r) = self.required.lock() {
            *r = required;
        }
        self.recompute();
    }

    /// `permission` is needed whatever the policy (a feature of the gateway uses it).
    pub fn require_also(&self, permission: &'static str) {
        if let Ok(mut a) = self.also.lock() {
            a.insert(permission);
        }
        self.recompute();
    }

    /// A new token arrived with these roles.
    pub fn observe_roles(&self, roles: &[String]) {
        if let Ok(mut g) = self.granted.lock() {
            *g = Some(roles.to_vec());
        }
        self.recompute();
    }

    fn recompute(&self) {
        let Some(granted) = self.granted.lock().ok().and_then(|g| g.clone()) else {
            return;
        };
        let mut required = self.required.lock().map(|r| r.clone()).unwrap_or_default();
        required.extend(self.also.lock().map(|a| a.clone()).unwrap_or_default());
        let report = compare(granted.iter().map(String::as_str), required);
        let changed = self.report.load().as_deref() != Some(&report);
        if changed {
            log(&report);
        }
        self.report.store(Some(Arc::new(report)));
    }
}

fn log(report: &LeastPrivilegeReport) {
    if !report.missing.is_empty() {
        tracing::error!(
            missing = ?report.missing,
            "the gateway's token lacks application permissions the policy needs: grant them (admin consent) or readiness stays failed"
        );
    }
    if !report.excess.is_empty() {
        tracing::warn!(
            excess = ?report.excess,
            "the gateway's token holds application permissions no allowed operation needs: remove them"
        );
    }
    if report.missing.is_empty() && report.excess.is_empty() {
        tracing::info!("the gateway's token holds exactly the permissions the policy needs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog::PRIV_OPS;

    #[test]
    fn missing_and_excess_are_named() {
        let r = compare(["User.Read.All", "User.Read.All"], [PRIV_OPS]);
        assert_eq!(r.missing, vec![PRIV_OPS]);
        assert_eq!(r.excess, vec!["User.Read.All"]);
        assert!(!r.is_sufficient());
        assert_eq!(
            compare([PRIV_OPS], [PRIV_OPS]),
            LeastPrivilegeReport::default()
        );
        assert!(compare([], []).is_sufficient());
    }

    #[test]
    fn a_policy_needs_the_permissions_of_the_operations_it_allows() {
        let allow = format!(
            "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{}\"\nrules:\n  - name: r\n    callers: [a]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
            "0".repeat(64)
        );
        let policy = Policy::from_yaml(&allow, "t").unwrap();
        assert_eq!(
            required_permissions(&policy)
                .into_iter()
                .collect::<Vec<_>>(),
            vec![PRIV_OPS]
        );
        let none = Policy::from_yaml("version: 1\n", "t").unwrap();
        assert!(required_permissions(&none).is_empty());
    }

    #[test]
    fn the_watch_reports_after_the_first_token_and_follows_the_policy() {
        let w = PrivilegeWatch::default();
        w.set_required([PRIV_OPS].into());
        assert!(w.report().is_none());
        w.observe_roles(&[]);
        assert_eq!(w.report().unwrap().missing, vec![PRIV_OPS]);
        w.set_required(BTreeSet::new());
        assert!(w.report().unwrap().is_sufficient());
        w.observe_roles(&[PRIV_OPS.to_owned()]);
        assert_eq!(w.report().unwrap().excess, vec![PRIV_OPS]);
    }
}
