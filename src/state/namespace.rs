//! The state's key names, one scheme for both stores:
//! `graphgate:<cloud>:<tenant>:d:<deployment>:<kind>:...`, so several gateways (clouds,
//! tenants, differently configured deployments of one tenant) can share one Redis without
//! meeting: callers' and rules' counters, budgets and idempotency claims are a deployment's
//! own. The tenant write pacing models Intune's limit per app and tenant, so it is keyed by
//! the app registration instead: `graphgate:<cloud>:<tenant>:pace:<client id>`. Names from
//! the policy are escaped so none can forge another's key; idempotency keys, which callers
//! choose, are hashed.
//!
//! The deployment's name is `--state-namespace`, or by default one derived from the app
//! registration and the policy file's path ([`default_deployment`]): stable across policy
//! edits and restarts (counters must not reset when a rule changes), shared by the
//! replicas of one deployment, different for deployments with their own app or policy file.

use sha2::{Digest, Sha256};

use crate::cloud::Cloud;
use crate::policy::{BudgetWindow, Rate};

/// The key names of one deployment (cloud, tenant, deployment name, app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
    pacing: String,
}

/// The longest deployment name.
const MAX_DEPLOYMENT_CHARS: usize = 64;

/// Whether `name` may name a deployment: 1 to 64 letters, digits, '.', '_' or '-'.
pub fn valid_deployment(name: &str) -> bool {
    (1..=MAX_DEPLOYMENT_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The deployment name used when none is given: `app-` and 16 hex digits of SHA-256 over the
/// app registration's client id and the policy file's absolute path (as given: symlinks are
/// not followed, since a Kubernetes ConfigMap swaps its target on every edit). Nothing of
/// the policy's content goes in, so an edit keeps every counter.
pub fn default_deployment(client_id: &str, policy_path: Option<&std::path::Path>) -> String {
    let mut h = Sha256::new();
    h.update(client_id.to_ascii_lowercase().as_bytes());
    h.update([0]);
    if let Some(path) = policy_path {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        h.update(absolute.as_os_str().as_encoded_bytes());
    }
    let digest = crate::policy::hex(&h.finalize());
    format!("app-{}", &digest[..16])
}

impl Namespace {
    /// The names of a gateway serving `tenant` in `cloud` as the app `client_id`, for the
    /// deployment `deployment`.
    pub fn new(cloud: Cloud, tenant: &str, client_id: &str, deployment: &str) -> Self {
        let tenant = format!("graphgate:{}:{}:", cloud, escape(tenant));
        Namespace {
            pacing: format!("{tenant}pace:{}", escape(&client_id.to_ascii_lowercase())),
            prefix: format!("{tenant}d:{}:", escape(deployment)),
        }
    }

    /// The prefix of every key of this deployment (the pacing's aside).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The claim of `caller`'s idempotency key: a hash, so a caller's key (up to 255
    /// arbitrary characters) neither lengthens nor shapes the name.
    pub fn idempotency(&self, caller: &str, key: &str) -> String {
        // Length-prefixed, so no (caller, key) pair can spell another's.
        let mut h = Sha256::new();
        h.update((caller.len() as u64).to_le_bytes());
        h.update(caller.as_bytes());
        h.update(key.as_bytes());
        format!("{}idem:{}", self.prefix, crate::policy::hex(&h.finalize()))
    }

    /// A rate limiter: owner kind (`caller`, `rule`), owner name, and the rate, so a changed
    /// rate starts a new budget while an unchanged one survives a policy reload.
    pub fn rate(&self, kind: &str, name: &str, rate: Rate) -> String {
        format!(
            "{}rate:{kind}:{}:{}/{}",
            self.prefix,
            escape(name),
            rate.count,
            rate.per.as_secs()
        )
    }

    /// The tenant's write pacing for this app (one sliding window, whatever its rate),
    /// shared by every deployment acting as the app: Intune counts per app and tenant.
    pub fn pacing(&self) -> String {
        self.pacing.clone()
    }

    /// A budget's counter prefix: owner kind (`caller`, `rule`, `tenant`), owner name and
    /// window length. The limit is not part of it: raising a budget keeps today's count.
    pub fn budget(&self, kind: &str, name: &str, window: BudgetWindow) -> String {
        format!(
            "{}budget:{kind}:{}:{}",
            self.prefix,
            escape(name),
            window.as_str()
        )
    }
}

impl Namespace {
    /// An approval (a versioned record), by its id (a GUID the gateway made).
    pub fn approval(&self, id: &str) -> String {
        format!("{}approval:{}", self.prefix, escape(id))
    }

    /// A claim an approval takes: its kind (`idem`, `open`, `glass`) and a hex digest of
    /// what it claims (a caller's idempotency key, an action, a caller).
    pub fn approval_claim(&self, kind: &str, digest: &str) -> String {
        format!("{}approval-claim:{kind}:{digest}", self.prefix)
    }

    /// An index of approvals: `all` (every one kept) or `open` (not yet final).
    pub fn approval_index(&self, which: &str) -> String {
        format!("{}approvals:{which}", self.prefix)
    }

    /// The set of `caller`'s pending approvals (bounded per caller).
    pub fn approvals_pending(&self, caller: &str) -> String {
        format!("{}approvals:pending:{}", self.prefix, escape(caller))
    }
}

/// The counter of one window of a budget whose prefix is `prefix`.
pub fn budget_window(prefix: &str, window_index: u64) -> String {
    format!("{prefix}:{window_index}")
}

/// `name` with `%`, `:` and anything outside printable ASCII percent-encoded, so a name
/// cannot contain the separator.
fn escape(name: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'%')
        .add(b':')
        .add(b'"')
        .add(b'\'');
    percent_encoding::utf8_percent_encode(name, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const APP: &str = "5B3F8A2C-9D1E-4F60-8A7B-C2D3E4F5A6B7";

    #[test]
    fn names_are_namespaced_escaped_and_hashed() {
        let ns = Namespace::new(Cloud::UsGov, "t:1", APP, "rooms");
        let other = Namespace::new(Cloud::Global, "t:1", APP, "rooms");
        assert_eq!(
            ns.pacing(),
            "graphgate:us-gov:t%3A1:pace:5b3f8a2c-9d1e-4f60-8a7b-c2d3e4f5a6b7"
        );
        assert_ne!(ns.pacing(), other.pacing(), "clouds do not share keys");
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(60),
        };
        assert_eq!(
            ns.rate("caller", "a:b", rate),
            "graphgate:us-gov:t%3A1:d:rooms:rate:caller:a%3Ab:5/60"
        );
        assert_eq!(
            ns.budget("tenant", "managedDevices.wipe", BudgetWindow::Day),
            "graphgate:us-gov:t%3A1:d:rooms:budget:tenant:managedDevices.wipe:day"
        );
        let idem = ns.idempotency("caller", "my key");
        assert!(
            idem.starts_with("graphgate:us-gov:t%3A1:d:rooms:idem:"),
            "{idem}"
        );
        assert!(!idem.contains("my key"));
        assert_ne!(
            idem,
            ns.idempotency("caller2", "my key"),
            "keys are per caller"
        );
        assert_ne!(
            ns.idempotency("a", "bc"),
            ns.idempotency("ab", "c"),
            "no pair spells another"
        );
        assert_eq!(budget_window("p", 20_421), "p:20421");
        // Another deployment of the tenant: its own counters and claims, the app's pacing.
        let sibling = Namespace::new(Cloud::UsGov, "t:1", APP, "desks");
        assert_ne!(
            sibling.rate("caller", "a", rate),
            ns.rate("caller", "a", rate)
        );
        assert_ne!(sibling.idempotency("c", "k"), ns.idempotency("c", "k"));
        assert_eq!(sibling.pacing(), ns.pacing());
    }

    #[test]
    fn the_default_deployment_follows_the_app_and_the_policy_file_not_its_content() {
        let at = |p: &str| default_deployment(APP, Some(std::path::Path::new(p)));
        let name = at("/etc/graphgate/policy/policy.yaml");
        assert!(valid_deployment(&name), "{name}");
        assert_eq!(name, at("/etc/graphgate/policy/policy.yaml"), "stable");
        assert_eq!(
            name,
            default_deployment(
                &APP.to_ascii_lowercase(),
                Some("/etc/graphgate/policy/policy.yaml".as_ref())
            ),
            "the client id in any case"
        );
        assert_ne!(
            name,
            at("/etc/graphgate/desks/policy.yaml"),
            "another policy file"
        );
        let other_app = default_deployment(
            "7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9",
            Some("/etc/graphgate/policy/policy.yaml".as_ref()),
        );
        assert_ne!(name, other_app, "another app registration");
        for bad in ["", "a:b", "rooms/desks", &"x".repeat(65)] {
            assert!(!valid_deployment(bad), "{bad:?}");
        }
        assert!(valid_deployment("rooms-prod.eu_1"));
    }
}
