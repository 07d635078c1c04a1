//! The state's key names, one scheme for both stores: `graphgate:<cloud>:<tenant>:<kind>:...`,
//! so several gateways (clouds, tenants) can share one Redis without meeting. Names from the
//! policy are escaped so none can forge another's key; idempotency keys, which callers
//! choose, are hashed.

use sha2::{Digest, Sha256};

use crate::cloud::Cloud;
use crate::policy::{BudgetWindow, Rate};

/// The key prefix of one deployment (cloud and tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// The namespace of a gateway serving `tenant` in `cloud`.
    pub fn new(cloud: Cloud, tenant: &str) -> Self {
        Namespace {
            prefix: format!("graphgate:{}:{}:", cloud, escape(tenant)),
        }
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

    /// The tenant's write pacing (one sliding window, whatever its rate).
    pub fn pacing(&self) -> String {
        format!("{}pace:tenant", self.prefix)
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

    #[test]
    fn names_are_namespaced_escaped_and_hashed() {
        let ns = Namespace::new(Cloud::UsGov, "t:1");
        let other = Namespace::new(Cloud::Global, "t:1");
        assert_eq!(ns.pacing(), "graphgate:us-gov:t%3A1:pace:tenant");
        assert_ne!(ns.pacing(), other.pacing(), "clouds do not share keys");
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(60),
        };
        assert_eq!(
            ns.rate("caller", "a:b", rate),
            "graphgate:us-gov:t%3A1:rate:caller:a%3Ab:5/60"
        );
        assert_eq!(
            ns.budget("tenant", "managedDevices.wipe", BudgetWindow::Day),
            "graphgate:us-gov:t%3A1:budget:tenant:managedDevices.wipe:day"
        );
        let idem = ns.idempotency("caller", "my key");
        assert!(idem.starts_with("graphgate:us-gov:t%3A1:idem:"), "{idem}");
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
    }
}
