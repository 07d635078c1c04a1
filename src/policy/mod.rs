//! The allow-list policy (`policy.yaml`): who may run which Graph operation, on which
//! devices, with which parameters. Parsed strictly, validated with every error reported at
//! once (each with line and column), and evaluated deny-by-default with deny rules winning.

pub mod approval;
pub mod budget;
mod compile;
mod eval;
mod file;
mod forbidden;
mod issues;
pub mod jwt;
mod prejudge;
pub mod rate;
pub mod requirements;
pub mod tiers;
mod unknown_keys;
pub mod webhooks;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::operation::catalog::{ApiVersion, Operation};
pub use approval::{Approval, ApproverGroup};
pub use budget::{Budget, BudgetWindow, TenantBudget};
pub use eval::{Decision, Explanation, Facts, Mismatch, ShadowVerdict};
pub use forbidden::Forbidden;
pub use jwt::{JwtIdentity, JwtIssuer, KeySource};
pub use prejudge::Scope;
pub use rate::Rate;
pub use requirements::{InitiatorPattern, Missing, Person, Require};
pub use webhooks::{Format as WebhookFormat, Webhook};

/// The policy-file format this build reads.
pub const POLICY_VERSION: u32 = 1;

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
#[derive(Debug, Clone, thiserror::Error)]
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
            "{} has {}:",
            self.source_name,
            crate::words::count(self.issues.len(), "error")
        )?;
        for issue in &self.issues {
            write!(f, "\n  {}:{issue}", self.source_name)?;
        }
        Ok(())
    }
}

/// How a caller may prove its identity with a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MtlsIdentity {
    /// A URI subject-alternative name (e.g. a SPIFFE id), matched exactly.
    UriSan(String),
    /// The subject common name, matched exactly.
    SubjectCn(String),
}

/// A known caller.
#[derive(Debug)]
pub struct Caller {
    /// The caller's name, used in rules, audit and logs.
    pub name: String,
    /// SHA-256 of its API key, if it may use one.
    pub key_sha256: Option<[u8; 32]>,
    /// Its client-certificate identity, if it may use mTLS.
    pub mtls: Option<MtlsIdentity>,
    /// The tokens that are this caller's, if it may present a JWT.
    pub jwt: Option<JwtIdentity>,
    /// Its own request budget, if any.
    pub rate_limit: Option<Rate>,
    /// How many devices it may act on per day or hour, if capped.
    pub budget: Option<Budget>,
}

/// Whether a matching rule lets the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny (wins over any allow).
    Deny,
}

/// Whether a rule is enforced or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decides requests.
    Enforce,
    /// Evaluated and recorded, never enforced.
    Shadow,
}

/// A test on one body parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// Equal to a string (ASCII case-insensitive).
    EqualsStr(String),
    /// Equal to a boolean.
    EqualsBool(bool),
    /// One of these strings (ASCII case-insensitive).
    OneOf(Vec<String>),
    /// Starts with (ASCII case-insensitive).
    Prefix(String),
    /// Ends with (ASCII case-insensitive).
    Suffix(String),
    /// Present and not null (`true`), or absent or null (`false`).
    Present(bool),
}

/// A condition: `param` must pass `test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The parameter's dotted path (see [`crate::operation::schema::Params`]).
    pub param: String,
    /// The test.
    pub test: Test,
}

/// A rule.
#[derive(Debug)]
pub struct Rule {
    /// Position in [`Policy::rules`].
    pub index: usize,
    /// The rule's name, reported with every decision it makes.
    pub name: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Enforced or shadow.
    pub mode: Mode,
    /// Indices into [`Policy::callers`].
    pub callers: Vec<usize>,
    /// Operations it covers.
    pub operations: Vec<&'static Operation>,
    /// Devices it covers (sorted lower-case GUIDs); `None` is any device.
    pub devices: Option<Vec<String>>,
    /// API versions it covers.
    pub versions: Vec<ApiVersion>,
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// The people it covers (`initiators`); `None` covers any request, stated or not.
    pub initiators: Option<Vec<InitiatorPattern>>,
    /// What an allowed request must state (`require`).
    pub require: Require,
    /// Its own request budget, if any.
    pub rate_limit: Option<Rate>,
    /// The risk tier its operations list is pinned to (see [`tiers`]), if any.
    pub tier: Option<crate::operation::catalog::Tier>,
    /// How many devices the requests it admits may act on per day or hour, if capped.
    pub budget: Option<Budget>,
    /// Who must approve its requests before they run (`approval`), if anyone.
    pub approval: Option<Approval>,
    /// Whether a request may run at once with `X-Graphgate-Break-Glass` and be reviewed
    /// afterwards (`break_glass: true`; only with an approval).
    pub break_glass: bool,
}

/// Gateway-wide pacing of writes to the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacing {
    /// Outgoing privileged writes allowed to the tenant: never more than `count` in any
    /// window of `per`, across every replica sharing the state store.
    pub tenant_writes: Rate,
    /// Longest a request waits for a pacing slot before getting 429.
    pub max_wait: std::time::Duration,
}

/// Intune's published limit: 200 writes per 20 s per app per tenant (graph-facts §4).
pub const INTUNE_WRITE_LIMIT: Rate = Rate {
    count: 200,
    per: std::time::Duration::from_secs(20),
};

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            tenant_writes: INTUNE_WRITE_LIMIT,
            max_wait: std::time::Duration::from_secs(2),
        }
    }
}

/// A validated policy, ready to evaluate.
#[derive(Debug)]
pub struct Policy {
    /// Every caller, in file order.
    pub callers: Vec<Caller>,
    /// Every rule, in file order.
    pub rules: Vec<Rule>,
    /// For each caller, the indices of the rules naming it, in file order.
    by_caller: Vec<Vec<usize>>,
    /// Callers by the SHA-256 of their API key (see [`Policy::api_key_caller`]).
    api_keys: HashMap<[u8; 32], usize>,
    /// Callers by client-certificate identity (see [`Policy::mtls_caller`]).
    mtls: MtlsIndex,
    /// Trusted token issuers (`jwt_issuers`), in file order.
    pub jwt_issuers: Vec<JwtIssuer>,
    /// Callers by the claims of their tokens (see [`Policy::jwt_caller`]).
    jwt_callers: jwt::JwtCallers,
    /// Tenant write pacing.
    pub pacing: Pacing,
    /// Tenant-wide budgets per operation.
    pub tenant_budgets: Vec<TenantBudget>,
    /// Hex SHA-256 of the file's bytes: the policy version recorded with each decision.
    pub hash: String,
    /// What is valid but worth a look (a pinned tier's list missing catalog operations).
    pub warnings: Vec<String>,
    /// Named lists of callers that approval groups may name (`approver_groups`).
    pub approver_groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Where approvals' notifications go (`approvals: {webhooks}`).
    pub webhooks: Vec<Webhook>,
    /// Whether any rule has an approval.
    any_approval: bool,
}

impl Policy {
    /// Parses and validates policy text; `source_name` labels errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        compile_text(text, source_name, version_hash(text.as_bytes()))
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        PolicySource::read(path)?.compile()
    }

    /// Whether any rule holds its requests for approval (so the gateway asks nothing more
    /// of a policy without one).
    pub fn has_approvals(&self) -> bool {
        self.any_approval
    }

    /// The index of the caller named `name`.
    pub fn caller_index(&self, name: &str) -> Option<usize> {
        self.callers.iter().position(|c| c.name == name)
    }

    /// The caller whose `api_key_sha256` is `digest`, if any: one hash-map lookup, built at
    /// compile time (a hash given to two callers is refused then).
    ///
    /// The lookup's timing depends only on the digest's bits. The digest is SHA-256 of
    /// whatever key the client sent, so a client cannot steer it towards a stored hash, and
    /// learning how much of a stored hash its own digest shares reveals nothing about the
    /// key behind it (that would take a SHA-256 preimage). [`crate::identity`] still checks
    /// the found caller's full hash in constant time.
    pub fn api_key_caller(&self, digest: &[u8; 32]) -> Option<usize> {
        self.api_keys.get(digest).copied()
    }

    /// The first caller (in file order) whose `mtls` identity a certificate with these URI
    /// SANs and subject CN satisfies: hash-map lookups, whatever the number of callers.
    pub fn mtls_caller<'a>(
        &self,
        uri_sans: impl IntoIterator<Item = &'a str>,
        subject_cn: Option<&str>,
    ) -> Option<usize> {
        let by_uri = uri_sans
            .into_iter()
            .filter_map(|uri| self.mtls.uri_san.get(uri).copied());
        let by_cn = subject_cn.and_then(|cn| self.mtls.subject_cn.get(cn).copied());
        by_uri.chain(by_cn).min()
    }
}

impl Policy {
    /// The issuer that vouches for a token claiming `iss` and `sub`: the one whose `issuer`
    /// is `iss` exactly; failing that, for a JWT-SVID (whose `iss` is optional), the SPIFFE
    /// trust domain of `sub`.
    pub fn jwt_issuer_for(&self, iss: Option<&str>, sub: Option<&str>) -> Option<usize> {
        if let Some(i) = iss.and_then(|iss| self.jwt_issuers.iter().position(|i| i.issuer == iss)) {
            return Some(i);
        }
        let domain = sub?.strip_prefix("spiffe://")?.split('/').next()?;
        self.jwt_issuers
            .iter()
            .position(|i| i.spiffe_trust_domain() == Some(domain))
    }

    /// The one caller of `issuer` whose claims a verified token carries; `claim` looks a
    /// claim up by name (see [`jwt::normalise_claim`]). Hash-map lookups, one per distinct
    /// set of claim names the issuer's callers use.
    pub fn jwt_caller<'c>(
        &self,
        issuer: usize,
        claim: impl Fn(&str) -> Option<std::borrow::Cow<'c, str>>,
    ) -> Option<usize> {
        self.jwt_callers.find(issuer, claim)
    }
}

/// Callers by certificate identity (each identity belongs to one caller).
#[derive(Debug, Default)]
pub(crate) struct MtlsIndex {
    pub(crate) uri_san: HashMap<String, usize>,
    pub(crate) subject_cn: HashMap<String, usize>,
}

/// A policy file's text and its version hash: read, not yet compiled. Reloads compare the
/// hash with the policy in force before paying for a compile.
#[derive(Debug, Clone)]
pub struct PolicySource {
    name: String,
    text: String,
    hash: String,
}

impl PolicySource {
    /// Reads a policy file (no parsing yet).
    pub fn read(path: &Path) -> Result<PolicySource, PolicyError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(PolicySource {
                hash: version_hash(text.as_bytes()),
                name,
                text,
            }),
            Err(e) => Err(PolicyError {
                source_name: name,
                issues: vec![PolicyIssue {
                    line: 0,
                    column: 0,
                    message: format!("cannot read: {e}"),
                }],
            }),
        }
    }

    /// The version the policy would have: [`Policy::hash`] once compiled.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Parses and validates the text (CPU-bound: seconds for a very large policy).
    pub fn compile(&self) -> Result<Policy, PolicyError> {
        compile_text(&self.text, &self.name, self.hash.clone())
    }
}

/// A policy's version: the hex SHA-256 of the file's bytes.
pub fn version_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn compile_text(text: &str, source_name: &str, hash: String) -> Result<Policy, PolicyError> {
    let fail = |issues| PolicyError {
        source_name: source_name.to_owned(),
        issues,
    };
    let parsed: file::PolicyFile =
        serde_saphyr::from_str(text).map_err(|e| fail(unknown_keys::parse_issues(text, &e)))?;
    let policy = compile::compile(parsed, hash).map_err(fail)?;
    for warning in &policy.warnings {
        tracing::warn!(policy = source_name, "{warning}");
    }
    Ok(policy)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
